//! What guards tenant identity: bad tokens, lockouts, rate limits, the user quota, and keys
//! that survive a restart.

use reqwest::{Method, StatusCode};
use serde_json::{Value, json};
use tenantplane_audit::EventKind;
use tenantplane_core::{IsolationMode, api::CreateTenant};
use tenantplane_testkit::{TestServer, TestServerOptions};

use super::*;
use crate::new_tenant;

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

/// A page cursor of the user list opens only in the tenant that issued it: another
/// tenant's (or an altered one) is refused like a random string, and pages nothing there.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn user_list_cursors_are_the_issuing_tenants_only() {
    let s = TestServer::start().await.unwrap();
    let mut tokens = Vec::new();
    let mut tenants = Vec::new();
    for slug in ["cursor-a", "cursor-b"] {
        let (t, otp) = tenant_with_admin(&s, slug, IsolationMode::Sqlite).await;
        let email = format!("admin@{slug}.example");
        let v = first_login(&t, &email, &otp, "a long new passphrase 1").await;
        let admin = v["access_token"].as_str().unwrap().to_owned();
        for n in 0..2 {
            let (st, _, v) = post(
                &t.url("/api/tenant/users"),
                Some(&admin),
                json!({"email": format!("u{n}@{slug}.example"), "roles": ["clinician"]}),
            )
            .await;
            assert_eq!(st, 201, "{v}");
        }
        tokens.push(admin);
        tenants.push(t);
    }
    let (st, _, page) = get(&tenants[0].url("/api/tenant/users?limit=1"), &tokens[0]).await;
    assert_eq!(st, 200, "{page}");
    let cursor = page["next_cursor"].as_str().unwrap().to_owned();
    let (st, _, next) = get(
        &tenants[0].url(&format!("/api/tenant/users?limit=1&cursor={cursor}")),
        &tokens[0],
    )
    .await;
    assert_eq!(st, 200, "{next}");
    assert_ne!(next["items"][0]["id"], page["items"][0]["id"]);
    let mut altered = cursor.clone();
    altered.pop();
    for (c, why) in [(&cursor, "another tenant's"), (&altered, "altered")] {
        let (st, p, v) = get(
            &tenants[1].url(&format!("/api/tenant/users?limit=1&cursor={c}")),
            &tokens[1],
        )
        .await;
        assert_eq!(st, 400, "{why}: {v}");
        assert_eq!(p.unwrap().errors[0].pointer, "/cursor", "{why}");
    }
}
