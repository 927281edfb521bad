//! Tenant identity over real HTTP: one-time admin passwords, login, refresh rotation and
//! replay detection, cross-tenant tokens, malformed tokens, user management, quotas, rate
//! limits and lockouts — on SQLite and on the PostgreSQL modes.

use reqwest::{Method, StatusCode};
use serde_json::{Value, json};
use tenantplane_audit::EventKind;
use tenantplane_core::{IsolationMode, api::CreateTenant};
use tenantplane_testkit::{TestServer, TestServerOptions};

use crate::{new_tenant, raw};

pub(crate) struct T {
    pub(crate) base: String,
    pub(crate) slug: String,
}

impl T {
    pub(crate) fn url(&self, path: &str) -> String {
        format!("{}/t/{}{}", self.base, self.slug, path)
    }
}

pub(crate) async fn tenant_with_admin(
    s: &TestServer,
    slug: &str,
    mode: IsolationMode,
) -> (T, String) {
    let req = CreateTenant {
        isolation: Some(mode),
        admin_email: Some(format!("Admin@{slug}.example")),
        departments: vec!["Emergência".into()],
        ..new_tenant(slug)
    };
    let v = s.client.create_tenant(&req).await.unwrap();
    let admin = v
        .initial_admin
        .expect("one-time admin password returned once");
    assert_eq!(admin.email.as_str(), format!("admin@{slug}.example"));
    assert!(admin.created);
    // Never shown again.
    assert!(
        s.client
            .get_tenant(slug)
            .await
            .unwrap()
            .initial_admin
            .is_none()
    );
    (
        T {
            base: s.url(),
            slug: slug.into(),
        },
        admin.one_time_password,
    )
}

pub(crate) async fn post(
    url: &str,
    token: Option<&str>,
    body: Value,
) -> (u16, Option<tenantplane_core::api::Problem>, Value) {
    let mut rb = reqwest::Client::new().post(url).json(&body);
    if let Some(t) = token {
        rb = rb.bearer_auth(t);
    }
    let (st, _, p, v) = raw(rb).await;
    (st, p, v)
}

pub(crate) async fn get(
    url: &str,
    token: &str,
) -> (u16, Option<tenantplane_core::api::Problem>, Value) {
    let (st, _, p, v) = raw(reqwest::Client::new().get(url).bearer_auth(token)).await;
    (st, p, v)
}

pub(crate) async fn login(t: &T, email: &str, password: &str) -> (u16, Value) {
    let (st, _, v) = post(
        &t.url("/auth/login"),
        None,
        json!({"email": email, "password": password}),
    )
    .await;
    (st, v)
}

/// Logs in with the one-time password and sets `new`; returns the fresh token pair.
pub(crate) async fn first_login(t: &T, email: &str, otp: &str, new: &str) -> Value {
    let (st, v) = login(t, email, otp).await;
    assert_eq!(st, 200, "{v}");
    assert_eq!(v["password_change_required"], true);
    let access = v["access_token"].as_str().unwrap();
    // Nothing but the password change is allowed yet.
    let (st, p, _) = get(&t.url("/api/tenant/users"), access).await;
    assert_eq!((st, p.unwrap().code()), (403, "password-change-required"));
    let (st, p, _) = post(
        &t.url("/auth/password"),
        Some(access),
        json!({"current_password": otp, "new_password": "short"}),
    )
    .await;
    assert_eq!(st, 400);
    assert_eq!(p.unwrap().errors[0].pointer, "/new_password");
    let (st, _, v) = post(
        &t.url("/auth/password"),
        Some(access),
        json!({"current_password": otp, "new_password": new}),
    )
    .await;
    assert_eq!(st, 200, "{v}");
    assert_eq!(v["password_change_required"], false);
    // The one-time password is gone.
    assert_eq!(login(t, email, otp).await.0, 401);
    v
}

async fn identity_flow(s: &TestServer, mode: IsolationMode) {
    let tag = mode.as_str();
    let (a, otp) = tenant_with_admin(s, &format!("ida-{tag}"), mode).await;
    let (b, otp_b) = tenant_with_admin(s, &format!("idb-{tag}"), mode).await;
    let admin_a = format!("admin@ida-{tag}.example");
    let admin_b = format!("admin@idb-{tag}.example");
    let tok = first_login(&a, &admin_a, &otp, "a long and new passphrase").await;
    let tok_b = first_login(&b, &admin_b, &otp_b, "another long passphrase").await;
    let access = tok["access_token"].as_str().unwrap().to_owned();
    let access_b = tok_b["access_token"].as_str().unwrap().to_owned();

    // JWKS: one Ed25519 key per tenant, different between tenants.
    let ja: Value = reqwest::get(a.url("/.well-known/jwks.json"))
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let jb: Value = reqwest::get(b.url("/.well-known/jwks.json"))
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(ja["keys"].as_array().unwrap().len(), 1);
    assert_eq!(ja["keys"][0]["crv"], "Ed25519");
    assert_ne!(ja["keys"][0]["x"], jb["keys"][0]["x"]);

    // The admin manages users.
    let (st, _, me) = get(&a.url("/api/tenant/me"), &access).await;
    assert_eq!(st, 200);
    assert_eq!(me["roles"], json!(["tenant-admin"]));
    let depts: Value = reqwest::get(a.url("/api/tenant/departments"))
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let dept = depts["items"][0]["id"].as_str().unwrap().to_owned();
    let (st, _, nurse) = post(
        &a.url("/api/tenant/users"),
        Some(&access),
        json!({"email": "Nurse.Ana@ida.example", "roles": ["nurse"], "departments": [dept], "display_name": "Ana"}),
    )
    .await;
    assert_eq!(st, 201, "{nurse}");
    let nurse_id = nurse["user"]["id"].as_str().unwrap().to_owned();
    let nurse_otp = nurse["one_time_password"].as_str().unwrap().to_owned();
    assert_eq!(nurse["user"]["departments"], json!([dept]));
    // Same address again (other case): taken. Same address in tenant B: another account.
    let (st, p, _) = post(
        &a.url("/api/tenant/users"),
        Some(&access),
        json!({"email": "nurse.ana@IDA.example", "roles": ["nurse"]}),
    )
    .await;
    assert_eq!((st, p.unwrap().code()), (409, "email-taken"));
    let (st, _, _) = post(
        &b.url("/api/tenant/users"),
        Some(&access_b),
        json!({"email": "nurse.ana@ida.example", "roles": ["staff"]}),
    )
    .await;
    assert_eq!(st, 201);
    // Bad input changes nothing.
    let users_before = get(&a.url("/api/tenant/users"), &access).await.2["items"]
        .as_array()
        .unwrap()
        .len();
    for (body, pointer) in [
        (
            json!({"email": "\u{0430}dmin@ida.example", "roles": ["nurse"]}),
            "/email",
        ),
        (
            json!({"email": "x@ida.example", "roles": ["surgeon"]}),
            "/roles/0",
        ),
        (json!({"email": "x@ida.example", "roles": []}), "/roles"),
        (
            json!({"email": "x@ida.example", "roles": ["nurse"], "departments": [uuid::Uuid::new_v4()]}),
            "/departments/0",
        ),
    ] {
        let (st, p, _) = post(&a.url("/api/tenant/users"), Some(&access), body).await;
        let p = p.unwrap();
        assert_eq!((st, p.code()), (400, "validation-failed"));
        assert_eq!(p.errors[0].pointer, pointer);
    }
    // A department of tenant B is not a department of A.
    let depts_b: Value = reqwest::get(b.url("/api/tenant/departments"))
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let foreign_events = |s: &TestServer| {
        s.control
            .audit()
            .recent_security()
            .into_iter()
            .filter(|e| e.kind == EventKind::ForeignResource)
            .collect::<Vec<_>>()
    };
    let before = foreign_events(s).len();
    let (st, _, _) = post(&a.url("/api/tenant/users"), Some(&access), json!({"email": "y@ida.example", "roles": ["nurse"], "departments": [depts_b["items"][0]["id"]]})).await;
    assert_eq!(st, 400);
    // ...and using it is a recorded cross-tenant attempt naming B (for the operator only).
    let evs = foreign_events(s);
    assert_eq!(evs.len(), before + 1);
    let b_id = s.client.get_tenant(&b.slug).await.unwrap().id;
    let a_id = s.client.get_tenant(&a.slug).await.unwrap().id;
    assert_eq!(
        evs[before].claimed_tenant.as_deref(),
        Some(b_id.to_string().as_str())
    );
    assert_eq!(evs[before].tenant_id, Some(a_id));
    assert_eq!(
        get(&a.url("/api/tenant/users"), &access).await.2["items"]
            .as_array()
            .unwrap()
            .len(),
        users_before
    );

    // B's admin cannot see or touch A's users, by id or listing.
    let before_id = foreign_events(s).len();
    let (st, p, _) = get(&b.url(&format!("/api/tenant/users/{nurse_id}")), &access_b).await;
    let p = p.unwrap();
    assert_eq!((st, p.code()), (404, "not-found"));
    assert_eq!(foreign_events(s).len(), before_id + 1);
    let before = foreign_events(s).len();
    let (st, p_random, _) = get(
        &b.url(&format!("/api/tenant/users/{}", uuid::Uuid::now_v7())),
        &access_b,
    )
    .await;
    assert_eq!(st, 404, "a foreign id and a missing id look the same");
    assert_eq!(p_random.unwrap().detail, p.detail);
    // The foreign id was recorded, the random one was not.
    let evs = foreign_events(s);
    assert_eq!(evs.len(), before);
    assert_eq!(
        evs.last().unwrap().claimed_tenant.as_deref(),
        Some(a_id.to_string().as_str())
    );
    assert_eq!(evs.last().unwrap().tenant_id, Some(b_id));
    let listed = get(&b.url("/api/tenant/users"), &access_b).await.2;
    assert!(
        listed["items"]
            .as_array()
            .unwrap()
            .iter()
            .all(|u| u["id"] != nurse_id.as_str())
    );

    // The nurse logs in; she cannot manage users.
    let nt = first_login(
        &a,
        "nurse.ana@ida.example",
        &nurse_otp,
        "nurse passphrase 2026",
    )
    .await;
    let nurse_access = nt["access_token"].as_str().unwrap().to_owned();
    let (st, p, _) = post(
        &a.url("/api/tenant/users"),
        Some(&nurse_access),
        json!({"email": "z@ida.example", "roles": ["nurse"]}),
    )
    .await;
    assert_eq!((st, p.unwrap().code()), (403, "forbidden"));

    // Refresh rotates; a replayed refresh token revokes the family and the user's tokens.
    let r1 = nt["refresh_token"].as_str().unwrap().to_owned();
    let (st, _, r2) = post(&a.url("/auth/refresh"), None, json!({"refresh_token": r1})).await;
    assert_eq!(st, 200);
    let r2_refresh = r2["refresh_token"].as_str().unwrap().to_owned();
    assert_ne!(r2_refresh, r1);
    let (st, p, _) = post(&a.url("/auth/refresh"), None, json!({"refresh_token": r1})).await;
    assert_eq!((st, p.unwrap().code()), (401, "invalid-refresh-token"));
    let (st, _, _) = post(
        &a.url("/auth/refresh"),
        None,
        json!({"refresh_token": r2_refresh}),
    )
    .await;
    assert_eq!(st, 401, "the whole family is revoked after a replay");
    let (st, _, _) = get(
        &a.url("/api/tenant/me"),
        r2["access_token"].as_str().unwrap(),
    )
    .await;
    assert_eq!(st, 401, "access tokens of the user are revoked too");
    assert!(
        s.control
            .audit()
            .recent_security()
            .iter()
            .any(|e| e.kind == EventKind::RefreshReplay)
    );
    // A refresh token of tenant A is unknown on tenant B.
    let (st, _, _) = post(
        &b.url("/auth/refresh"),
        None,
        json!({"refresh_token": tok["refresh_token"]}),
    )
    .await;
    assert_eq!(st, 401);

    // Cross-tenant token: refused exactly like garbage, and recorded.
    let before = s
        .control
        .audit()
        .recent_security()
        .iter()
        .filter(|e| e.kind == EventKind::ForeignToken)
        .count();
    let (st, p_foreign, _) = get(&b.url("/api/tenant/me"), &access).await;
    let (st2, p_garbage, _) = get(&b.url("/api/tenant/me"), "eyJhbGciOiJFZERTQSJ9.e30.c2ln").await;
    assert_eq!((st, st2), (401, 401));
    assert_eq!(p_foreign.unwrap().detail, p_garbage.unwrap().detail);
    let foreign: Vec<_> = s
        .control
        .audit()
        .recent_security()
        .into_iter()
        .filter(|e| e.kind == EventKind::ForeignToken)
        .collect();
    assert_eq!(foreign.len(), before + 1);
    let ev = foreign.last().unwrap();
    assert_eq!(
        ev.tenant_id.unwrap().to_string(),
        s.client.get_tenant(&b.slug).await.unwrap().id.to_string()
    );
    // Operators and tenant users never cross.
    let (st, _, _) = get(
        &a.url("/api/tenant/me"),
        tenantplane_testkit::server::TEST_TOKEN,
    )
    .await;
    assert_eq!(st, 401);
    let (st, _, _) = get(&format!("{}/api/v1/tenants", s.url()), &access).await;
    assert_eq!(st, 401);

    // Disabling the nurse (after re-login) cuts her token and her logins.
    let (st, v) = login(&a, "nurse.ana@ida.example", "nurse passphrase 2026").await;
    assert_eq!(st, 200, "{v}");
    let nurse_access = v["access_token"].as_str().unwrap().to_owned();
    assert_eq!(get(&a.url("/api/tenant/me"), &nurse_access).await.0, 200);
    let (st, _, _) = raw(reqwest::Client::new()
        .patch(a.url(&format!("/api/tenant/users/{nurse_id}")))
        .bearer_auth(&access)
        .json(&json!({"disabled": true})))
    .await
    .into_status();
    assert_eq!(st, 200);
    assert_eq!(get(&a.url("/api/tenant/me"), &nurse_access).await.0, 401);
    assert_eq!(
        login(&a, "nurse.ana@ida.example", "nurse passphrase 2026")
            .await
            .0,
        401
    );
    // The admin cannot disable itself.
    let my_id = me["id"].as_str().unwrap();
    let (st, _, _) = raw(reqwest::Client::new()
        .patch(a.url(&format!("/api/tenant/users/{my_id}")))
        .bearer_auth(&access)
        .json(&json!({"disabled": true})))
    .await
    .into_status();
    assert_eq!(st, 400);

    // Key rotation: old tokens keep working, JWKS publishes both.
    let (st, _, _) = post(&a.url("/api/tenant/keys/rotate"), Some(&access), json!({})).await;
    assert_eq!(st, 200);
    assert_eq!(get(&a.url("/api/tenant/me"), &access).await.0, 200);
    let ja: Value = reqwest::get(a.url("/.well-known/jwks.json"))
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(ja["keys"].as_array().unwrap().len(), 2);
    let (st, v) = login(&a, &admin_a, "a long and new passphrase").await;
    assert_eq!(st, 200);
    assert_eq!(
        get(
            &a.url("/api/tenant/me"),
            v["access_token"].as_str().unwrap()
        )
        .await
        .0,
        200
    );

    // Operator admin reset: new one-time password, sessions revoked.
    let creds = s.client.admin_reset(&a.slug, None).await.unwrap();
    assert!(!creds.created);
    assert_eq!(creds.email.as_str(), admin_a);
    assert_eq!(get(&a.url("/api/tenant/me"), &access).await.0, 401);
    first_login(
        &a,
        &admin_a,
        &creds.one_time_password,
        "a third long passphrase",
    )
    .await;
    let created = s
        .client
        .admin_reset(&a.slug, Some("second.admin@ida.example".into()))
        .await
        .unwrap();
    assert!(created.created);
}

trait IntoStatus {
    fn into_status(self) -> (u16, Option<tenantplane_core::api::Problem>, Value);
}

impl IntoStatus for (u16, String, Option<tenantplane_core::api::Problem>, Value) {
    fn into_status(self) -> (u16, Option<tenantplane_core::api::Problem>, Value) {
        (self.0, self.2, self.3)
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn identity_on_sqlite() {
    let s = TestServer::start().await.unwrap();
    identity_flow(&s, IsolationMode::Sqlite).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn identity_on_postgres_modes() {
    let s = TestServer::start_with_pg_data(8).await.unwrap();
    for mode in [
        IsolationMode::PgShared,
        IsolationMode::PgSchema,
        IsolationMode::PgDatabase,
    ] {
        identity_flow(&s, mode).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_tokens_are_401_and_change_nothing() {
    use tenantplane_identity::tokens;
    let s = TestServer::start().await.unwrap();
    let (a, otp) = tenant_with_admin(&s, "badtok", IsolationMode::Sqlite).await;
    let v = first_login(
        &a,
        "admin@badtok.example",
        &otp,
        "a long and new passphrase",
    )
    .await;
    let good = v["access_token"].as_str().unwrap().to_owned();
    let t = s.control.get("badtok").await.unwrap();
    let db = s.control.data().handle(&t).unwrap();
    let keys = s.control.identity().keys(t.id, db).await.unwrap();
    let claims = |exp_off: i64, nbf_off: i64| {
        let mut c = tokens::AccessClaims {
            ..serde_json::from_value(
                serde_json::from_slice::<Value>(
                    &base64::Engine::decode(
                        &base64::engine::general_purpose::URL_SAFE_NO_PAD,
                        good.split('.').nth(1).unwrap(),
                    )
                    .unwrap(),
                )
                .unwrap(),
            )
            .unwrap()
        };
        let now = time::OffsetDateTime::now_utc().unix_timestamp();
        c.exp = now + exp_off;
        c.nbf = now + nbf_off;
        c
    };
    let expired = tokens::sign(&keys, &claims(-3600, -7200)).unwrap();
    let future = tokens::sign(&keys, &claims(7200, 3600)).unwrap();
    let mut parts: Vec<String> = good.split('.').map(str::to_owned).collect();
    let none_header = base64::Engine::encode(
        &base64::engine::general_purpose::URL_SAFE_NO_PAD,
        br#"{"alg":"none","typ":"at+jwt"}"#,
    );
    let alg_none = format!("{none_header}.{}.", parts[1]);
    let hs_header = base64::Engine::encode(
        &base64::engine::general_purpose::URL_SAFE_NO_PAD,
        br#"{"alg":"HS256","typ":"at+jwt","kid":"x"}"#,
    );
    let hs = format!("{hs_header}.{}.{}", parts[1], parts[2]);
    let kid_header = base64::Engine::encode(
        &base64::engine::general_purpose::URL_SAFE_NO_PAD,
        br#"{"alg":"EdDSA","typ":"at+jwt","kid":"nope"}"#,
    );
    let wrong_kid = format!("{kid_header}.{}.{}", parts[1], parts[2]);
    let mut sig = parts[2].clone().into_bytes();
    sig[5] = if sig[5] == b'A' { b'B' } else { b'A' };
    parts[2] = String::from_utf8(sig).unwrap();
    let tampered = parts.join(".");
    let oversized = format!("{good}{}", "A".repeat(5000));
    for (name, tok) in [
        ("expired", expired.as_str()),
        ("not yet valid", future.as_str()),
        ("alg none", alg_none.as_str()),
        ("hs256", hs.as_str()),
        ("wrong kid", wrong_kid.as_str()),
        ("tampered", tampered.as_str()),
        ("oversized", oversized.as_str()),
        ("garbage", "not-a-jwt"),
    ] {
        let (st, p, _) = get(&a.url("/api/tenant/me"), tok).await;
        assert_eq!(st, 401, "{name}");
        assert_eq!(p.unwrap().code(), "unauthorized", "{name}");
    }
    assert_eq!(get(&a.url("/api/tenant/me"), &good).await.0, 200);
    // Oversized or malformed credentials at login are refused without a lookup.
    let (st, p, _) = post(
        &a.url("/auth/login"),
        None,
        json!({"email": "admin@badtok.example", "password": "x".repeat(10_000)}),
    )
    .await;
    assert_eq!(
        (st, p.unwrap().errors[0].pointer.as_str()),
        (400, "/password")
    );
    let (st, _, _) = post(
        &a.url("/auth/login"),
        None,
        json!({"email": "admin@badtok.example"}),
    )
    .await;
    assert_eq!(st, 400);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unknown_user_and_wrong_password_look_the_same_and_lock_out() {
    let s = TestServer::start_with(TestServerOptions {
        limits: Some(tenantplane_server::config::LimitsConfig {
            login_failures_before_lockout: 3,
            ..Default::default()
        }),
        ..Default::default()
    })
    .await
    .unwrap();
    let (a, _otp) = tenant_with_admin(&s, "lockout", IsolationMode::Sqlite).await;
    let (st1, _, v1) = post(
        &a.url("/auth/login"),
        None,
        json!({"email": "admin@lockout.example", "password": "wrong password!"}),
    )
    .await;
    let (st2, _, v2) = post(
        &a.url("/auth/login"),
        None,
        json!({"email": "ghost@lockout.example", "password": "wrong password!"}),
    )
    .await;
    let (st3, _, v3) = post(
        &a.url("/auth/login"),
        None,
        json!({"email": "not an email", "password": "wrong password!"}),
    )
    .await;
    assert_eq!((st1, st2, st3), (401, 401, 401));
    assert_eq!(v1, v2);
    assert_eq!(v2, v3);
    for email in ["admin@lockout.example", "ghost@lockout.example"] {
        for _ in 0..3 {
            let _ = post(
                &a.url("/auth/login"),
                None,
                json!({"email": email, "password": "wrong password!"}),
            )
            .await;
        }
        let res = reqwest::Client::new()
            .post(a.url("/auth/login"))
            .json(&json!({"email": email, "password": "wrong password!"}))
            .send()
            .await
            .unwrap();
        assert_eq!(res.status(), StatusCode::TOO_MANY_REQUESTS, "{email}");
        assert!(res.headers().get("retry-after").is_some());
    }
    assert!(
        s.control
            .audit()
            .recent_security()
            .iter()
            .any(|e| e.kind == EventKind::LoginLockout)
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rate_limits_per_ip_and_per_tenant() {
    let s = TestServer::start_with(TestServerOptions {
        limits: Some(tenantplane_server::config::LimitsConfig {
            per_ip_per_minute: 20,
            ..Default::default()
        }),
        ..Default::default()
    })
    .await
    .unwrap();
    s.client
        .create_tenant(&new_tenant("limited"))
        .await
        .unwrap();
    let c = reqwest::Client::new();
    let mut codes = Vec::new();
    let mut last = None;
    for _ in 0..30 {
        let r = c
            .get(format!("{}/t/limited/api/tenant", s.url()))
            .send()
            .await
            .unwrap();
        codes.push(r.status().as_u16());
        last = Some(r);
    }
    assert!(codes.iter().filter(|c| **c == 200).count() <= 20);
    assert_eq!(*codes.last().unwrap(), 429);
    let r = last.unwrap();
    assert!(r.headers().get("retry-after").is_some());
    assert_eq!(r.headers()["ratelimit-policy"], "\"ip\";q=20;w=60");
    assert!(
        r.headers()["ratelimit"]
            .to_str()
            .unwrap()
            .starts_with("\"ip\";r=0;t=")
    );
    let p: tenantplane_core::api::Problem = r.json().await.unwrap();
    assert_eq!(p.code(), "rate-limited");
    // Health checks are never limited.
    assert_eq!(
        c.get(format!("{}/healthz", s.url()))
            .send()
            .await
            .unwrap()
            .status(),
        200
    );

    // Per tenant: the plan's requests_per_minute.
    let s = TestServer::start().await.unwrap();
    s.client
        .update_plan(
            "small",
            &tenantplane_core::api::UpdatePlan {
                display_name: None,
                quotas: Some(tenantplane_core::Quotas {
                    requests_per_minute: 5,
                    ..tenantplane_core::plan::builtin_plans()[0].quotas
                }),
                default_isolation: None,
            },
        )
        .await
        .unwrap();
    s.client
        .create_tenant(&CreateTenant {
            plan: Some("small".into()),
            ..new_tenant("tiny-plan")
        })
        .await
        .unwrap();
    s.client
        .create_tenant(&CreateTenant {
            plan: Some("medium".into()),
            ..new_tenant("big-plan")
        })
        .await
        .unwrap();
    let mut tiny = Vec::new();
    for _ in 0..8 {
        tiny.push(
            c.get(format!("{}/t/tiny-plan/api/tenant", s.url()))
                .send()
                .await
                .unwrap(),
        );
    }
    let limited = tiny.iter().filter(|r| r.status() == 429).count();
    assert!(limited >= 2, "{limited}");
    let r = tiny.last().unwrap();
    assert_eq!(r.headers()["ratelimit-policy"], "\"tenant\";q=5;w=60");
    // The other tenant is not affected.
    assert_eq!(
        c.get(format!("{}/t/big-plan/api/tenant", s.url()))
            .send()
            .await
            .unwrap()
            .status(),
        200
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn user_quota_holds_under_concurrent_creation() {
    let s = TestServer::start().await.unwrap();
    s.client
        .update_plan(
            "small",
            &tenantplane_core::api::UpdatePlan {
                display_name: None,
                quotas: Some(tenantplane_core::Quotas {
                    max_users: 4,
                    ..tenantplane_core::plan::builtin_plans()[0].quotas
                }),
                default_isolation: None,
            },
        )
        .await
        .unwrap();
    let req = CreateTenant {
        plan: Some("small".into()),
        admin_email: Some("admin@quota.example".into()),
        ..new_tenant("quota")
    };
    let created = s.client.create_tenant(&req).await.unwrap();
    let otp = created
        .initial_admin
        .clone()
        .unwrap_or_else(|| panic!("{created:?}"))
        .one_time_password;
    let a = T {
        base: s.url(),
        slug: "quota".into(),
    };
    let v = first_login(&a, "admin@quota.example", &otp, "a long and new passphrase").await;
    let access = v["access_token"].as_str().unwrap().to_owned();
    let mut tasks = Vec::new();
    for i in 0..8 {
        let url = a.url("/api/tenant/users");
        let access = access.clone();
        tasks.push(tokio::spawn(async move {
            post(
                &url,
                Some(&access),
                json!({"email": format!("u{i}@quota.example"), "roles": ["staff"]}),
            )
            .await
        }));
    }
    let mut created = 0;
    for t in tasks {
        let (st, p, _) = t.await.unwrap();
        match st {
            201 => created += 1,
            403 => {
                let p = p.unwrap();
                assert_eq!(p.code(), "quota-exceeded");
                assert_eq!(
                    (p.quota.as_deref(), p.limit, p.current),
                    (Some("max_users"), Some(4), Some(4))
                );
            }
            other => panic!("{other}"),
        }
    }
    assert_eq!(
        created, 3,
        "the admin plus three users fill a quota of four"
    );
    let list = get(&a.url("/api/tenant/users"), &access).await.2;
    assert_eq!(list["items"].as_array().unwrap().len(), 4);
    let _ = Method::GET;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn identity_survives_a_restart_with_the_same_platform_key() {
    let s = TestServer::start().await.unwrap();
    let (a, otp) = tenant_with_admin(&s, "restart-id", IsolationMode::Sqlite).await;
    let tok = first_login(
        &a,
        "admin@restart-id.example",
        &otp,
        "a long and new passphrase",
    )
    .await;
    let access = tok["access_token"].as_str().unwrap().to_owned();
    let refresh = tok["refresh_token"].as_str().unwrap().to_owned();
    let (_, _, jwks) = get(&a.url("/.well-known/jwks.json"), &access).await;
    let key_file = s.config.storage.data_dir.join("platform.key");
    let key_before = std::fs::read_to_string(&key_file).unwrap();
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        let mode = std::fs::metadata(&key_file).unwrap().permissions().mode();
        assert_eq!(mode & 0o077, 0, "the platform key file is private");
    }
    let opts = TestServerOptions {
        data_dir: Some(s.config.storage.data_dir.clone()),
        ..Default::default()
    };
    let _dir = s.stop().await.unwrap();
    let s2 = TestServer::start_with(opts).await.unwrap();
    let a2 = T {
        base: s2.url(),
        slug: a.slug.clone(),
    };
    assert_eq!(
        std::fs::read_to_string(&key_file).unwrap(),
        key_before,
        "the key is reused"
    );
    // The same keys open and verify: the access token issued before the restart still
    // works, the JWKS is unchanged, the refresh token rotates, and the password logs in.
    let (st, _, me) = get(&a2.url("/api/tenant/me"), &access).await;
    assert_eq!(st, 200, "{me}");
    assert_eq!(me["email"], "admin@restart-id.example");
    let (_, _, jwks2) = get(&a2.url("/.well-known/jwks.json"), &access).await;
    assert_eq!(jwks, jwks2);
    let (st, _, v) = post(
        &a2.url("/auth/refresh"),
        None,
        json!({"refresh_token": refresh}),
    )
    .await;
    assert_eq!(st, 200, "{v}");
    let (st, _) = login(&a2, "admin@restart-id.example", "a long and new passphrase").await;
    assert_eq!(st, 200);
}
