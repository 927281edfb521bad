//! Every bad input gets a stable problem and changes nothing.

use reqwest::Method;
use tenantplane_client::ListQuery;
use tenantplane_core::api::TenantView;
use tenantplane_testkit::{TestServer, TestServerOptions};

use crate::{new_tenant, raw};

async fn snapshot(s: &TestServer) -> Vec<TenantView> {
    s.client
        .list_all_tenants(&ListQuery::default())
        .await
        .unwrap()
}

async fn expect_problem(
    rb: reqwest::RequestBuilder,
    status: u16,
    code: &str,
) -> tenantplane_core::api::Problem {
    let (st, ct, p, body) = raw(rb).await;
    assert_eq!(st, status, "{body}");
    assert_eq!(ct, "application/problem+json");
    let p = p.unwrap();
    assert_eq!(p.code(), code, "{body}");
    assert_eq!(p.status, status);
    assert!(!p.title.is_empty());
    p
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_inputs_are_refused_and_change_nothing() {
    let s = TestServer::start_with(TestServerOptions {
        max_body_bytes: Some(4096),
        ..Default::default()
    })
    .await
    .unwrap();
    let c = &s.client;
    let mut a = new_tenant("alpha-hospital");
    a.custom_domains = vec!["alpha.example.org".into()];
    c.create_tenant(&a).await.unwrap();
    c.create_tenant(&new_tenant("bravo-hospital"))
        .await
        .unwrap();
    let before = snapshot(&s).await;

    let post = || c.request(Method::POST, "/api/v1/tenants");
    // Invalid and reserved slugs, several errors at once.
    let p = expect_problem(
        post().json(&serde_json::json!({"slug": "Admin!", "display_name": " "})),
        400,
        "validation-failed",
    )
    .await;
    let pointers: Vec<_> = p.errors.iter().map(|e| e.pointer.as_str()).collect();
    assert_eq!(pointers, ["/slug", "/display_name"]);
    let p = expect_problem(post().json(&new_tenant("admin")), 400, "validation-failed").await;
    assert!(p.errors[0].detail.contains("reserved"));
    expect_problem(post().json(&new_tenant("ab")), 400, "validation-failed").await;
    // Unknown plan, bad branding, bad domain, domain under the base domain.
    let p = expect_problem(
        post().json(&serde_json::json!({
            "slug": "charlie-hospital", "display_name": "C", "plan": "gold",
            "branding": {"primary_color": "red", "logo_url": "http://x"},
            "custom_domains": ["not a domain", "x.tp.test"]
        })),
        400,
        "validation-failed",
    )
    .await;
    let pointers: Vec<_> = p.errors.iter().map(|e| e.pointer.as_str()).collect();
    assert_eq!(
        pointers,
        [
            "/plan",
            "/custom_domains/0",
            "/custom_domains/1",
            "/branding/logo_url",
            "/branding/primary_color"
        ]
    );
    // Duplicate slug; domain owned by another tenant.
    expect_problem(
        post().json(&new_tenant("alpha-hospital")),
        409,
        "slug-taken",
    )
    .await;
    let mut d = new_tenant("delta-hospital");
    d.custom_domains = vec!["alpha.example.org".into()];
    expect_problem(post().json(&d), 409, "domain-taken").await;
    expect_problem(
        c.request(Method::POST, "/api/v1/tenants/bravo-hospital/domains")
            .json(&serde_json::json!({"domain": "alpha.example.org"})),
        409,
        "domain-taken",
    )
    .await;
    // Arrays are not objects (serde would read a struct from a sequence), nested ones
    // neither.
    expect_problem(
        c.request(Method::PATCH, "/api/v1/tenants/alpha-hospital")
            .json(&serde_json::json!({"branding": [null, null]})),
        400,
        "malformed-body",
    )
    .await;
    expect_problem(
        c.request(Method::PATCH, "/api/v1/plans/small")
            .json(&serde_json::json!({"quotas": [1, 1, 1, 1, 1]})),
        400,
        "malformed-body",
    )
    .await;
    // A value that is no ETag of ours never matches (412), but only once the body is
    // found valid: a bad body is still 400.
    expect_problem(
        c.request(Method::PATCH, "/api/v1/tenants/alpha-hospital")
            .header("if-match", "three")
            .json(&serde_json::json!({"display_name": "Z"})),
        412,
        "version-mismatch",
    )
    .await;
    expect_problem(
        c.request(Method::PATCH, "/api/v1/tenants/alpha-hospital")
            .header("if-match", "three")
            .json(&serde_json::json!({"display_name": 5})),
        400,
        "malformed-body",
    )
    .await;
    for (path, body) in [
        (
            "/api/v1/tenants",
            serde_json::json!(["charlie-hospital", "C"]),
        ),
        ("/api/v1/operators", serde_json::json!(["ops.bob"])),
        (
            "/api/v1/tenants/alpha-hospital/suspend",
            serde_json::json!([null]),
        ),
        ("/api/v1/tenants", serde_json::json!("charlie-hospital")),
    ] {
        expect_problem(
            c.request(Method::POST, path).json(&body),
            400,
            "malformed-body",
        )
        .await;
    }
    assert!(
        c.list_operators()
            .await
            .unwrap()
            .items
            .iter()
            .all(|o| o.name != "ops.bob")
    );
    // Malformed JSON, wrong types, unknown fields.
    expect_problem(
        post()
            .header("content-type", "application/json")
            .body("{\"slug\": "),
        400,
        "malformed-body",
    )
    .await;
    let p = expect_problem(
        post().json(&serde_json::json!({"slug": 5, "display_name": "x"})),
        400,
        "malformed-body",
    )
    .await;
    assert_eq!(p.errors[0].pointer, "/slug");
    let p = expect_problem(
        post().json(
            &serde_json::json!({"slug": "echo-hospital", "display_name": "x", "colour": "blue"}),
        ),
        400,
        "malformed-body",
    )
    .await;
    assert!(p.detail.unwrap().contains("colour"));
    let p = expect_problem(
        post().json(&serde_json::json!({"slug": "echo-hospital", "display_name": "x", "branding": {"primary_color": 1}})),
        400,
        "malformed-body",
    )
    .await;
    assert_eq!(p.errors[0].pointer, "/branding/primary_color");
    expect_problem(
        post().json(
            &serde_json::json!({"slug": "echo-hospital", "display_name": "x", "profile": "bank"}),
        ),
        400,
        "malformed-body",
    )
    .await;
    // Wrong media type, body over the limit.
    expect_problem(post().body("slug=x"), 415, "unsupported-media-type").await;
    let big = serde_json::json!({"slug": "foxtrot-hospital", "display_name": "x", "settings": {"blob": "a".repeat(10_000)}});
    expect_problem(post().json(&big), 413, "body-too-large").await;
    // Missing and wrong tokens.
    let anon = s.anonymous();
    let (st, _, p, _) = raw(anon
        .request(Method::POST, "/api/v1/tenants")
        .json(&new_tenant("golf-hospital")))
    .await;
    assert_eq!(
        (st, p.unwrap().code().to_owned()),
        (401, "unauthorized".to_owned())
    );
    let wrong = s
        .client
        .with_token(Some("tpo_wrongwrongwrongwrongwrongwrong".into()));
    expect_problem(
        wrong.request(Method::GET, "/api/v1/tenants"),
        401,
        "unauthorized",
    )
    .await;
    expect_problem(
        anon.request(Method::GET, "/api/v1/tenants")
            .header("authorization", "Basic abc"),
        401,
        "unauthorized",
    )
    .await;
    // Illegal transition lists the allowed ones.
    let p = expect_problem(
        c.request(Method::POST, "/api/v1/tenants/alpha-hospital/resume"),
        409,
        "illegal-transition",
    )
    .await;
    let allowed: Vec<_> = p
        .allowed_transitions
        .unwrap()
        .iter()
        .map(|s| s.as_str())
        .collect();
    assert_eq!(allowed, ["suspended", "deleting", "failed"]);
    expect_problem(
        c.request(Method::POST, "/api/v1/tenants/alpha-hospital/restore"),
        409,
        "illegal-transition",
    )
    .await;
    // Stale and malformed If-Match.
    expect_problem(
        c.request(Method::PATCH, "/api/v1/tenants/alpha-hospital")
            .header("if-match", "\"99\"")
            .json(&serde_json::json!({"display_name": "Z"})),
        412,
        "version-mismatch",
    )
    .await;
    expect_problem(
        c.request(Method::PATCH, "/api/v1/tenants/alpha-hospital")
            .header("if-match", "W/\"1\"")
            .json(&serde_json::json!({"display_name": "Z"})),
        412,
        "version-mismatch",
    )
    .await;
    expect_problem(
        c.request(Method::POST, "/api/v1/tenants/alpha-hospital/suspend")
            .json(&serde_json::json!({"reason": "x".repeat(600)})),
        400,
        "validation-failed",
    )
    .await;
    // Bad query parameters.
    expect_problem(
        c.request(Method::GET, "/api/v1/tenants?limit=0"),
        400,
        "validation-failed",
    )
    .await;
    expect_problem(
        c.request(Method::GET, "/api/v1/tenants?limit=abc"),
        400,
        "invalid-query",
    )
    .await;
    expect_problem(
        c.request(Method::GET, "/api/v1/tenants?status=gone"),
        400,
        "invalid-query",
    )
    .await;
    expect_problem(
        c.request(Method::GET, "/api/v1/tenants?cursor=zzz"),
        400,
        "validation-failed",
    )
    .await;
    expect_problem(
        c.request(Method::GET, "/api/v1/tenants?colour=blue"),
        400,
        "invalid-query",
    )
    .await;
    // Unknown resources and routes.
    expect_problem(
        c.request(Method::GET, "/api/v1/tenants/nobody-here"),
        404,
        "not-found",
    )
    .await;
    expect_problem(
        c.request(Method::GET, "/api/v1/tenants/NOT_A_SLUG"),
        404,
        "not-found",
    )
    .await;
    expect_problem(c.request(Method::GET, "/api/v1/nothing"), 404, "not-found").await;
    expect_problem(
        c.request(Method::POST, "/api/v1/tenants/alpha-hospital/explode"),
        404,
        "not-found",
    )
    .await;
    expect_problem(
        c.request(Method::PUT, "/api/v1/tenants"),
        405,
        "method-not-allowed",
    )
    .await;
    // Plans: invalid quotas.
    let p = expect_problem(
        c.request(Method::PATCH, "/api/v1/plans/small").json(&serde_json::json!({"quotas": {
            "max_users": 0, "max_patients": 1, "storage_bytes": 1, "requests_per_minute": 10, "requests_per_month": 5}})),
        400,
        "validation-failed",
    )
    .await;
    assert_eq!(p.errors.len(), 2);
    expect_problem(
        c.request(Method::PATCH, "/api/v1/plans/gold")
            .json(&serde_json::json!({"display_name": "Gold"})),
        404,
        "not-found",
    )
    .await;

    assert_eq!(
        snapshot(&s).await,
        before,
        "no bad input changed any tenant"
    );
    let plans = c.list_plans().await.unwrap();
    assert!(plans.items.iter().all(|p| p.version == 1));
}
