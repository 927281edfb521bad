//! Per-tenant single sign-on against a fake OpenID Connect provider (wiremock): discovery,
//! JWKS and a token endpoint that checks the client secret and the PKCE verifier. Covers
//! the full authorization-code flow, claim → role mapping, linking and creation of users,
//! and ID tokens that must be refused: wrong key, unknown key, another tenant's client id,
//! another issuer, a mismatched nonce, expired, `alg: none`/HS256; a flow cookie carried to
//! another tenant; a provider that is down. None of them signs anyone in or changes data.

use std::collections::HashMap;

use base64::{Engine as _, engine::general_purpose::URL_SAFE_NO_PAD};
use jsonwebtoken::{Algorithm, EncodingKey, Header};
use reqwest::redirect::Policy;
use serde_json::{Value, json};
use tenantplane_audit::EventKind;
use tenantplane_core::IsolationMode;
use tenantplane_server::config::IdentitySettings;
use tenantplane_testkit::{TestServer, TestServerOptions};

use crate::identity::{T, first_login, get, tenant_with_admin};

mod idp;

use idp::*;

struct Flow {
    state: String,
    nonce: String,
    challenge: String,
    redirect_uri: String,
    cookie: String,
}

fn no_redirects() -> reqwest::Client {
    reqwest::Client::builder()
        .redirect(Policy::none())
        .build()
        .unwrap()
}

async fn begin(t: &T, idp: &Idp, client_id: &str) -> Flow {
    let r = no_redirects()
        .get(t.url("/auth/sso/start"))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 302);
    let loc = r.headers()["location"].to_str().unwrap().to_owned();
    assert!(
        loc.starts_with(&format!("{}/authorize?", idp.server.uri())),
        "{loc}"
    );
    let set_cookie = r.headers()["set-cookie"].to_str().unwrap().to_owned();
    assert!(set_cookie.contains("HttpOnly") && set_cookie.contains("SameSite=Lax"));
    assert!(
        set_cookie.contains(&format!("Path=/t/{}/auth/sso", t.slug)),
        "{set_cookie}"
    );
    let cookie = set_cookie.split(';').next().unwrap().to_owned();
    let q: HashMap<String, String> = reqwest::Url::parse(&loc)
        .unwrap()
        .query_pairs()
        .into_owned()
        .collect();
    assert_eq!(q["response_type"], "code");
    assert_eq!(q["client_id"], client_id);
    assert_eq!(q["code_challenge_method"], "S256");
    assert_eq!(q["scope"], "openid email profile");
    assert!(q["state"].len() >= 43 && q["nonce"].len() >= 43);
    Flow {
        state: q["state"].clone(),
        nonce: q["nonce"].clone(),
        challenge: q["code_challenge"].clone(),
        redirect_uri: q["redirect_uri"].clone(),
        cookie,
    }
}

/// The provider authorizes the flow with `id_token`; the browser comes back to `t`.
async fn callback(
    t: &T,
    idp: &Idp,
    flow: &Flow,
    id_token: String,
) -> (u16, Option<tenantplane_core::api::Problem>, Value) {
    let code = URL_SAFE_NO_PAD.encode(rand::random::<[u8; 16]>());
    idp.grants.0.lock().unwrap().insert(
        code.clone(),
        Grant {
            challenge: flow.challenge.clone(),
            redirect_uri: flow.redirect_uri.clone(),
            id_token,
        },
    );
    let (st, _, p, v) = crate::raw(
        no_redirects()
            .get(t.url(&format!(
                "/auth/sso/callback?code={code}&state={}&session_state=x",
                flow.state
            )))
            .header("cookie", &flow.cookie),
    )
    .await;
    (st, p, v)
}

async fn put_sso(
    t: &T,
    token: &str,
    body: Value,
) -> (u16, Option<tenantplane_core::api::Problem>, Value) {
    let (st, _, p, v) = crate::raw(
        reqwest::Client::new()
            .put(t.url("/api/tenant/sso"))
            .bearer_auth(token)
            .json(&body),
    )
    .await;
    (st, p, v)
}

fn settings(t: &T, idp: &Idp, client: &str) -> Value {
    json!({
        "issuer": idp.server.uri(),
        "client_id": client,
        "client_secret": SECRET,
        "redirect_uri": format!("{}/auth/sso/callback", t.url("")),
        "roles_claim": "groups",
        "role_map": {"doctors": ["clinician"], "nursing": ["nurse"], "it": ["tenant-admin"]},
        "default_roles": ["staff"],
        "auto_create": true,
    })
}

async fn user_count(t: &T, admin: &str) -> usize {
    let (st, _, v) = get(&t.url("/api/tenant/users?limit=200"), admin).await;
    assert_eq!(st, 200, "{v}");
    v["items"].as_array().unwrap().len()
}

async fn sso_flow(s: &TestServer, idp: &Idp, mode: IsolationMode) {
    let tag = mode.as_str();
    let (a, otp) = tenant_with_admin(s, &format!("sso-a-{tag}"), mode).await;
    let (b, otp_b) = tenant_with_admin(s, &format!("sso-b-{tag}"), mode).await;
    let tok = first_login(
        &a,
        &format!("admin@sso-a-{tag}.example"),
        &otp,
        "a long and new passphrase",
    )
    .await;
    let admin = tok["access_token"].as_str().unwrap().to_owned();
    let tok_b = first_login(
        &b,
        &format!("admin@sso-b-{tag}.example"),
        &otp_b,
        "another long passphrase",
    )
    .await;
    let admin_b = tok_b["access_token"].as_str().unwrap().to_owned();

    // Not configured yet.
    let r = no_redirects()
        .get(a.url("/auth/sso/start"))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 404);
    let (st, p, _) = get(&a.url("/api/tenant/sso"), &admin).await;
    assert_eq!((st, p.unwrap().code()), (404, "sso-not-configured"));

    // Bad settings are refused field by field and store nothing.
    let mut bad = settings(&a, idp, CLIENT_A);
    bad["issuer"] = json!("ftp://idp.example");
    bad["role_map"] = json!({"doctors": ["surgeon"]});
    bad["redirect_uri"] = json!("not a url");
    let (st, p, _) = put_sso(&a, &admin, bad).await;
    assert_eq!(st, 400);
    let ptrs: Vec<_> = p.unwrap().errors.into_iter().map(|e| e.pointer).collect();
    assert!(
        ptrs.contains(&"/issuer".to_owned()) && ptrs.contains(&"/redirect_uri".to_owned()),
        "{ptrs:?}"
    );
    let (st, p, _) = put_sso(&a, &admin, json!({"issuer": idp.server.uri(), "client_id": CLIENT_A, "redirect_uri": "http://x/cb", "surprise": 1})).await;
    assert_eq!((st, p.unwrap().code()), (400, "malformed-body"));
    assert_eq!(get(&a.url("/api/tenant/sso"), &admin).await.0, 404);

    // Configure both tenants with the same provider, each with its own client.
    let (st, _, v) = put_sso(&a, &admin, settings(&a, idp, CLIENT_A)).await;
    assert_eq!(st, 200, "{v}");
    assert_eq!(v["client_secret_set"], true);
    assert!(
        !v.to_string().contains("odd+chars"),
        "the secret is never shown"
    );
    // A's settings do not exist for B (same store server in the pg modes).
    assert_eq!(get(&b.url("/api/tenant/sso"), &admin_b).await.0, 404);
    assert_eq!(
        no_redirects()
            .get(b.url("/auth/sso/start"))
            .send()
            .await
            .unwrap()
            .status(),
        404
    );
    let (st, _, v) = put_sso(&b, &admin_b, settings(&b, idp, CLIENT_B)).await;
    assert_eq!(st, 200, "{v}");
    let (st, _, v) = get(&a.url("/api/tenant/sso"), &admin).await;
    assert_eq!(st, 200);
    assert_eq!(v["client_id"], CLIENT_A);
    assert!(!v.to_string().contains("odd+chars"));

    // A doctor signs in: a user is created with the mapped role.
    let before = user_count(&a, &admin).await;
    let flow = begin(&a, idp, CLIENT_A).await;
    let claims = idp.claims(
        CLIENT_A,
        &flow.nonce,
        "doc-1",
        "Doc.One@Hospital.example",
        &["doctors"],
    );
    let (st, _, v) = callback(&a, idp, &flow, idp.good.sign(&claims)).await;
    assert_eq!(st, 200, "{v}");
    assert_eq!(v["password_change_required"], false);
    let access = v["access_token"].as_str().unwrap().to_owned();
    let (st, _, me) = get(&a.url("/api/tenant/me"), &access).await;
    assert_eq!(st, 200);
    assert_eq!(me["email"], "doc.one@hospital.example");
    assert_eq!(me["roles"], json!(["clinician"]));
    assert_eq!(me["display_name"], "Dr doc-1");
    assert_eq!(user_count(&a, &admin).await, before + 1);
    // The refresh token works like a password login's.
    let (st, _, v2) = crate::identity::post(
        &a.url("/auth/refresh"),
        None,
        json!({"refresh_token": v["refresh_token"]}),
    )
    .await;
    assert_eq!(st, 200, "{v2}");
    // The same person again (now also in the nursing group): the same user, roles follow
    // the provider.
    let flow = begin(&a, idp, CLIENT_A).await;
    let claims = idp.claims(
        CLIENT_A,
        &flow.nonce,
        "doc-1",
        "doc.one@hospital.example",
        &["doctors", "nursing"],
    );
    let (st, _, v) = callback(&a, idp, &flow, idp.good.sign(&claims)).await;
    assert_eq!(st, 200, "{v}");
    let (_, _, me2) = get(
        &a.url("/api/tenant/me"),
        v["access_token"].as_str().unwrap(),
    )
    .await;
    assert_eq!(me2["id"], me["id"]);
    assert_eq!(me2["roles"], json!(["clinician", "nurse"]));
    // An SSO-only account has no password that works.
    let (st, _) = crate::identity::login(&a, "doc.one@hospital.example", "!sso-only").await;
    assert_eq!(st, 401);

    // An existing account is linked by its (verified) e-mail address.
    let (st, _, created) = crate::identity::post(
        &a.url("/api/tenant/users"),
        Some(&admin),
        json!({"email": "nurse.n@hospital.example", "roles": ["nurse"]}),
    )
    .await;
    assert_eq!(st, 201, "{created}");
    let flow = begin(&a, idp, CLIENT_A).await;
    let claims = idp.claims(
        CLIENT_A,
        &flow.nonce,
        "nurse-9",
        "nurse.n@hospital.example",
        &["nursing"],
    );
    let (st, _, v) = callback(&a, idp, &flow, idp.good.sign(&claims)).await;
    assert_eq!(st, 200, "{v}");
    let nurse = v["access_token"].as_str().unwrap().to_owned();
    let (_, _, me3) = get(&a.url("/api/tenant/me"), &nurse).await;
    assert_eq!(me3["id"], created["user"]["id"]);
    // A nurse may not see or change the settings.
    let (st, p, _) = get(&a.url("/api/tenant/sso"), &nurse).await;
    assert_eq!((st, p.unwrap().code()), (403, "forbidden"));
    assert_eq!(
        put_sso(&a, &nurse, settings(&a, idp, "hijack")).await.0,
        403
    );
    // ...but not by an unverified one.
    let flow = begin(&a, idp, CLIENT_A).await;
    let mut claims = idp.claims(
        CLIENT_A,
        &flow.nonce,
        "someone",
        "admin@sso-a-{tag}.example",
        &["it"],
    );
    claims["email"] = json!(format!("admin@sso-a-{tag}.example"));
    claims["email_verified"] = json!(false);
    let (st, p, _) = callback(&a, idp, &flow, idp.good.sign(&claims)).await;
    assert_eq!((st, p.unwrap().code()), (401, "sso-rejected"));

    // Tokens that must be refused. None signs in, none creates a user.
    let count = user_count(&a, &admin).await;
    let foreign_before = s
        .control
        .audit()
        .recent_security()
        .iter()
        .filter(|e| e.kind == EventKind::ForeignIdToken)
        .count();
    let now = time::OffsetDateTime::now_utc().unix_timestamp();
    type Case<'a> = (&'static str, Box<dyn Fn(&Flow) -> String + 'a>);
    let cases: Vec<Case> = vec![
        (
            "wrong key (same kid)",
            Box::new(|f: &Flow| {
                idp.impostor.sign(&idp.claims(
                    CLIENT_A,
                    &f.nonce,
                    "x1",
                    "x1@hospital.example",
                    &["doctors"],
                ))
            }),
        ),
        (
            "unpublished key",
            Box::new(|f: &Flow| {
                idp.stranger.sign(&idp.claims(
                    CLIENT_A,
                    &f.nonce,
                    "x2",
                    "x2@hospital.example",
                    &["doctors"],
                ))
            }),
        ),
        (
            "another tenant's client",
            Box::new(|f: &Flow| {
                idp.good.sign(&idp.claims(
                    CLIENT_B,
                    &f.nonce,
                    "x3",
                    "x3@hospital.example",
                    &["doctors"],
                ))
            }),
        ),
        (
            "another issuer",
            Box::new(|f: &Flow| {
                let mut c = idp.claims(
                    CLIENT_A,
                    &f.nonce,
                    "x4",
                    "x4@hospital.example",
                    &["doctors"],
                );
                c["iss"] = json!("https://evil.example");
                idp.good.sign(&c)
            }),
        ),
        (
            "mismatched nonce",
            Box::new(|_f: &Flow| {
                idp.good.sign(&idp.claims(
                    CLIENT_A,
                    "another-flows-nonce",
                    "x5",
                    "x5@hospital.example",
                    &["doctors"],
                ))
            }),
        ),
        (
            "expired",
            Box::new(move |f: &Flow| {
                let mut c = idp.claims(
                    CLIENT_A,
                    &f.nonce,
                    "x6",
                    "x6@hospital.example",
                    &["doctors"],
                );
                c["exp"] = json!(now - 3600);
                c["iat"] = json!(now - 7200);
                idp.good.sign(&c)
            }),
        ),
        (
            "several audiences, azp another client",
            Box::new(|f: &Flow| {
                let mut c = idp.claims(
                    CLIENT_A,
                    &f.nonce,
                    "x7",
                    "x7@hospital.example",
                    &["doctors"],
                );
                c["aud"] = json!([CLIENT_A, CLIENT_B]);
                c["azp"] = json!(CLIENT_B);
                idp.good.sign(&c)
            }),
        ),
        (
            "alg none",
            Box::new(|f: &Flow| {
                let c = idp.claims(
                    CLIENT_A,
                    &f.nonce,
                    "x8",
                    "x8@hospital.example",
                    &["doctors"],
                );
                format!(
                    "{}.{}.",
                    URL_SAFE_NO_PAD.encode(r#"{"alg":"none","typ":"JWT"}"#),
                    URL_SAFE_NO_PAD.encode(c.to_string())
                )
            }),
        ),
        (
            "HS256 with the client secret",
            Box::new(|f: &Flow| {
                let c = idp.claims(
                    CLIENT_A,
                    &f.nonce,
                    "x9",
                    "x9@hospital.example",
                    &["doctors"],
                );
                let mut h = Header::new(Algorithm::HS256);
                h.kid = Some("hmac".into());
                jsonwebtoken::encode(&h, &c, &EncodingKey::from_secret(SECRET.as_bytes())).unwrap()
            }),
        ),
        ("garbage", Box::new(|_f: &Flow| "not.a.jwt".to_owned())),
    ];
    for (name, make) in &cases {
        let flow = begin(&a, idp, CLIENT_A).await;
        let (st, p, v) = callback(&a, idp, &flow, make(&flow)).await;
        assert_eq!(st, 401, "{name}: {v}");
        let p = p.unwrap();
        assert_eq!(p.code(), "sso-rejected", "{name}");
        assert!(!v.to_string().contains("x1@"), "{name}");
    }
    assert_eq!(user_count(&a, &admin).await, count, "nothing was created");
    let foreign_after = s
        .control
        .audit()
        .recent_security()
        .iter()
        .filter(|e| e.kind == EventKind::ForeignIdToken && e.tenant_id.is_some())
        .count();
    // Another tenant's client, another issuer, the foreign azp.
    assert_eq!(foreign_after, foreign_before + 3);

    // Flow misuse: the state of one flow with the cookie of another; a cookie carried to
    // another tenant; no cookie; a provider error; a replayed code.
    let f1 = begin(&a, idp, CLIENT_A).await;
    let f2 = begin(&a, idp, CLIENT_A).await;
    let mixed = Flow {
        cookie: f2.cookie.clone(),
        ..f1
    };
    let token = idp.good.sign(&idp.claims(
        CLIENT_A,
        &mixed.nonce,
        "y1",
        "y1@hospital.example",
        &["doctors"],
    ));
    let (st, p, _) = callback(&a, idp, &mixed, token).await;
    assert_eq!((st, p.unwrap().code()), (400, "sso-invalid-state"));
    let fb = begin(&b, idp, CLIENT_B).await;
    let carried = Flow {
        cookie: f2.cookie.clone(),
        state: f2.state.clone(),
        ..fb
    };
    let token = idp.good.sign(&idp.claims(
        CLIENT_B,
        &f2.nonce,
        "y2",
        "y2@hospital.example",
        &["doctors"],
    ));
    let (st, p, _) = callback(&b, idp, &carried, token).await;
    assert_eq!((st, p.unwrap().code()), (400, "sso-invalid-state"));
    let (st, _, p, _) = crate::raw(
        no_redirects().get(a.url(&format!("/auth/sso/callback?code=c&state={}", f2.state))),
    )
    .await;
    assert_eq!((st, p.unwrap().code()), (400, "sso-invalid-state"));
    let (st, _, p, _) = crate::raw(
        no_redirects()
            .get(a.url("/auth/sso/callback?error=access_denied&state=s"))
            .header("cookie", &f2.cookie),
    )
    .await;
    assert_eq!((st, p.unwrap().code()), (401, "sso-denied"));
    // A code the provider does not know (or already used) is the provider's refusal.
    let (st, _, p, _) = crate::raw(
        no_redirects()
            .get(a.url(&format!(
                "/auth/sso/callback?code=unknown&state={}",
                f2.state
            )))
            .header("cookie", &f2.cookie),
    )
    .await;
    assert_eq!((st, p.unwrap().code()), (502, "sso-provider-error"));
    assert_eq!(user_count(&a, &admin).await, count);

    // Tenant B's own sign-in works with its client and lands in B only.
    let flow = begin(&b, idp, CLIENT_B).await;
    let claims = idp.claims(
        CLIENT_B,
        &flow.nonce,
        "doc-1",
        "doc.one@hospital.example",
        &["doctors"],
    );
    let (st, _, v) = callback(&b, idp, &flow, idp.good.sign(&claims)).await;
    assert_eq!(st, 200, "{v}");
    let (_, _, me_b) = get(
        &b.url("/api/tenant/me"),
        v["access_token"].as_str().unwrap(),
    )
    .await;
    assert_ne!(
        me_b["id"], me["id"],
        "the same person is two unrelated accounts"
    );
    // B's token is not valid on A.
    assert_eq!(
        get(
            &a.url("/api/tenant/me"),
            v["access_token"].as_str().unwrap()
        )
        .await
        .0,
        401
    );

    // A person in no mapped group and no default roles: refused.
    let mut strict = settings(&a, idp, CLIENT_A);
    strict["default_roles"] = json!([]);
    strict.as_object_mut().unwrap().remove("client_secret");
    let (st, _, v) = put_sso(&a, &admin, strict).await;
    assert_eq!(st, 200, "{v}");
    assert_eq!(
        v["client_secret_set"], true,
        "an update without a secret keeps it"
    );
    let flow = begin(&a, idp, CLIENT_A).await;
    let claims = idp.claims(
        CLIENT_A,
        &flow.nonce,
        "z1",
        "z1@hospital.example",
        &["visitors"],
    );
    let (st, p, _) = callback(&a, idp, &flow, idp.good.sign(&claims)).await;
    assert_eq!((st, p.unwrap().code()), (403, "sso-no-role"));
    // Disabled locally: refused even though the provider says yes.
    let (st, _, _) = crate::raw(
        reqwest::Client::new()
            .patch(a.url(&format!("/api/tenant/users/{}", me["id"].as_str().unwrap())))
            .bearer_auth(&admin)
            .json(&json!({"disabled": true})),
    )
    .await
    .into_status3();
    assert_eq!(st, 200);
    let flow = begin(&a, idp, CLIENT_A).await;
    let claims = idp.claims(
        CLIENT_A,
        &flow.nonce,
        "doc-1",
        "doc.one@hospital.example",
        &["doctors"],
    );
    let (st, p, _) = callback(&a, idp, &flow, idp.good.sign(&claims)).await;
    assert_eq!((st, p.unwrap().code()), (403, "account-disabled"));

    // Removing SSO ends it.
    let (st, _, _) = crate::raw(
        reqwest::Client::new()
            .delete(a.url("/api/tenant/sso"))
            .bearer_auth(&admin),
    )
    .await
    .into_status3();
    assert_eq!(st, 204);
    assert_eq!(
        no_redirects()
            .get(a.url("/auth/sso/start"))
            .send()
            .await
            .unwrap()
            .status(),
        404
    );
    // A's token means nothing on B's settings.
    assert_eq!(get(&b.url("/api/tenant/sso"), &admin).await.0, 401);
}

trait Status3 {
    fn into_status3(self) -> (u16, Option<tenantplane_core::api::Problem>, Value);
}

impl Status3 for (u16, String, Option<tenantplane_core::api::Problem>, Value) {
    fn into_status3(self) -> (u16, Option<tenantplane_core::api::Problem>, Value) {
        (self.0, self.2, self.3)
    }
}

fn options() -> TestServerOptions {
    TestServerOptions {
        identity: Some(IdentitySettings {
            argon2_memory_kib: 8 * 1024,
            argon2_iterations: 1,
            sso_allow_http: true,
            ..Default::default()
        }),
        ..Default::default()
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sso_on_sqlite() {
    let idp = Idp::start().await;
    let s = TestServer::start_with(options()).await.unwrap();
    sso_flow(&s, &idp, IsolationMode::Sqlite).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sso_on_postgres_shared() {
    let idp = Idp::start().await;
    let s = TestServer::start_with(TestServerOptions {
        data_servers: tenantplane_testkit::server::pg_data_server("pg1", 8)
            .await
            .unwrap(),
        ..options()
    })
    .await
    .unwrap();
    sso_flow(&s, &idp, IsolationMode::PgShared).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn provider_down_is_a_502_and_https_is_required_by_default() {
    let idp = Idp::start().await;
    let s = TestServer::start_with(options()).await.unwrap();
    let (a, otp) = tenant_with_admin(&s, "sso-down", IsolationMode::Sqlite).await;
    let tok = first_login(
        &a,
        "admin@sso-down.example",
        &otp,
        "a long and new passphrase",
    )
    .await;
    let admin = tok["access_token"].as_str().unwrap().to_owned();
    let mut cfg = settings(&a, &idp, CLIENT_A);
    // A provider that does not answer.
    cfg["issuer"] = json!("http://127.0.0.1:9");
    assert_eq!(put_sso(&a, &admin, cfg).await.0, 200);
    let (st, _, p, _) = crate::raw(no_redirects().get(a.url("/auth/sso/start"))).await;
    assert_eq!((st, p.unwrap().code()), (502, "sso-provider-error"));
    drop(idp);

    // Without the development switch, http providers are refused at configuration.
    let s2 = TestServer::start().await.unwrap();
    let (c, otp) = tenant_with_admin(&s2, "sso-https", IsolationMode::Sqlite).await;
    let tok = first_login(
        &c,
        "admin@sso-https.example",
        &otp,
        "a long and new passphrase",
    )
    .await;
    let admin = tok["access_token"].as_str().unwrap().to_owned();
    let idp = Idp::start().await;
    let (st, p, _) = put_sso(&c, &admin, settings(&c, &idp, CLIENT_A)).await;
    assert_eq!(st, 400);
    let ptrs: Vec<_> = p.unwrap().errors.into_iter().map(|e| e.pointer).collect();
    assert_eq!(ptrs, vec!["/issuer", "/redirect_uri"]);
}
