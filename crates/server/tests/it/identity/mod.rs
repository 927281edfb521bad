//! Tenant identity over real HTTP: one-time admin passwords, login, refresh rotation and
//! replay detection, cross-tenant tokens, malformed tokens, user management, quotas, rate
//! limits and lockouts — on SQLite and on the PostgreSQL modes.

use serde_json::{Value, json};
use tenantplane_audit::EventKind;
use tenantplane_core::{IsolationMode, api::CreateTenant};
use tenantplane_testkit::TestServer;

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

mod guards;
