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
    // Every $ref points at a schema the document defines.
    fn refs(v: &serde_json::Value, out: &mut Vec<String>) {
        match v {
            serde_json::Value::Object(m) => {
                for (k, v) in m {
                    if k == "$ref" {
                        out.push(v.as_str().unwrap().to_owned());
                    }
                    refs(v, out);
                }
            }
            serde_json::Value::Array(a) => a.iter().for_each(|v| refs(v, out)),
            _ => {}
        }
    }
    let mut all = Vec::new();
    refs(&doc, &mut all);
    assert!(!all.is_empty());
    for r in all {
        let name = r.strip_prefix("#/components/schemas/").unwrap();
        assert!(
            doc["components"]["schemas"].get(name).is_some(),
            "dangling {r}"
        );
    }

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
