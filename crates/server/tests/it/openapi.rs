//! The OpenAPI document is a reviewed contract (insta snapshot); the docs page is local.

use tenantplane_testkit::TestServer;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn openapi_document_and_docs_page() {
    let s = TestServer::start().await.unwrap();
    let doc: serde_json::Value = reqwest::get(format!("{}/api/v1/openapi.json", s.url()))
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(doc["openapi"], "3.1.0");
    insta::assert_json_snapshot!("openapi", doc);

    let html = reqwest::get(format!("{}/api/v1/docs", s.url()))
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(html.contains("/api/v1/tenants/{tenant}/{action}"));
    assert!(!html.contains("<script"), "no scripts, no CDN");
    assert!(!html.contains("https://"), "nothing loaded from elsewhere");

    let health: serde_json::Value = reqwest::get(format!("{}/healthz", s.url()))
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(health["status"], "ok");
    let ready: serde_json::Value = reqwest::get(format!("{}/readyz", s.url()))
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(
        (ready["status"].as_str(), ready["catalog"].as_str()),
        (Some("ok"), Some("sqlite"))
    );
}
