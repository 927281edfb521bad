//! The tenant's persistent audit log over real HTTP: every event kind lands in the tenant's
//! own hash-chained log, served as FHIR `AuditEvent`s to its auditors only, searchable,
//! never writable; verification through the API finds an edit made behind the server's
//! back; operators' actions are in the platform log too.

use std::time::{Duration, Instant};

use reqwest::Method;
use serde_json::{Value, json};
use tenantplane_core::IsolationMode;
use tenantplane_testkit::TestServer;

use crate::{
    fhir::{assert_outcome, hospital, send},
    identity::{login, post},
};

/// The tenant's audit entries (as an auditor sees them), once at least `want` match `q`.
async fn audit_events(base: &str, token: &str, q: &str, want: usize) -> Vec<Value> {
    let deadline = Instant::now() + Duration::from_secs(15);
    loop {
        let r = send(
            Method::GET,
            &format!("{base}/fhir/AuditEvent?_count=500{q}"),
            Some(token),
            None,
            &[],
        )
        .await;
        assert_eq!(r.status, 200, "{}", r.text);
        let entries: Vec<Value> = r.body["entry"]
            .as_array()
            .cloned()
            .unwrap_or_default()
            .into_iter()
            .map(|e| e["resource"].clone())
            .collect();
        if entries.len() >= want || Instant::now() > deadline {
            return entries;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

fn subtypes(evs: &[Value]) -> Vec<String> {
    evs.iter()
        .map(|e| {
            e["subtype"][0]["code"]
                .as_str()
                .unwrap_or_default()
                .to_owned()
        })
        .collect()
}

async fn operator(s: &TestServer, method: Method, path: &str) -> (u16, Value) {
    let r = reqwest::Client::new()
        .request(method, format!("{}{path}", s.url()))
        .bearer_auth(&s.token)
        .send()
        .await
        .unwrap();
    let st = r.status().as_u16();
    (st, r.json().await.unwrap_or(Value::Null))
}

async fn audit_flow(s: &TestServer, mode: IsolationMode) {
    let tag = mode.as_str();
    let (a, tok) = hospital(s, &format!("audit-a-{tag}"), mode).await;
    let (b, tok_b) = hospital(s, &format!("audit-b-{tag}"), mode).await;
    let base = a.url("");
    let clin = tok["clinician"].as_str();

    // Clinical: create, read, search, update, delete.
    let body = r#"{"resourceType":"Patient","name":[{"family":"Sigilosa","given":["Ana"]}],"birthDate":"1971-02-03"}"#;
    let r = send(
        Method::POST,
        &a.url("/fhir/Patient"),
        Some(clin),
        Some(body),
        &[],
    )
    .await;
    assert_eq!(r.status, 201, "{}", r.text);
    let pid = r.body["id"].as_str().unwrap().to_owned();
    let r = send(
        Method::GET,
        &a.url(&format!("/fhir/Patient/{pid}")),
        Some(clin),
        None,
        &[],
    )
    .await;
    assert_eq!(r.status, 200);
    let r = send(
        Method::GET,
        &a.url("/fhir/Patient?family=Sigilosa"),
        Some(clin),
        None,
        &[],
    )
    .await;
    assert_eq!(r.status, 200);
    let upd =
        format!(r#"{{"resourceType":"Patient","id":"{pid}","name":[{{"family":"Sigilosa"}}]}}"#);
    let r = send(
        Method::PUT,
        &a.url(&format!("/fhir/Patient/{pid}")),
        Some(clin),
        Some(&upd),
        &[],
    )
    .await;
    assert_eq!(r.status, 200, "{}", r.text);
    // A refused write is recorded with its outcome.
    let r = send(
        Method::PUT,
        &a.url(&format!("/fhir/Patient/{pid}")),
        Some(clin),
        Some(&upd),
        &[("if-match", "W/\"1\"")],
    )
    .await;
    assert_eq!(r.status, 412, "{}", r.text);
    let r = send(
        Method::DELETE,
        &a.url(&format!("/fhir/Patient/{pid}")),
        Some(clin),
        None,
        &[],
    )
    .await;
    assert_eq!(r.status, 204);

    // Sign-ins: a failure, a success, a refresh, a logout.
    let email = format!("clinician@audit-a-{tag}.example");
    assert_eq!(login(&a, &email, "not the password").await.0, 401);
    let (st, v) = login(&a, &email, "a long and new passphrase").await;
    assert_eq!(st, 200);
    let refresh = v["refresh_token"].as_str().unwrap().to_owned();
    let (st, _, v) = post(
        &a.url("/auth/refresh"),
        None,
        json!({"refresh_token": refresh}),
    )
    .await;
    assert_eq!(st, 200, "{v}");
    let refresh = v["refresh_token"].as_str().unwrap().to_owned();
    let (st, _, _) = post(
        &a.url("/auth/logout"),
        None,
        json!({"refresh_token": refresh}),
    )
    .await;
    assert_eq!(st, 204);

    // Administration: a role change, a password reset, sessions revoked.
    let admin = tok["admin"].as_str();
    let r = send(
        Method::GET,
        &a.url("/api/tenant/users?limit=50"),
        Some(admin),
        None,
        &[],
    )
    .await;
    let staff = r.body["items"]
        .as_array()
        .unwrap()
        .iter()
        .find(|u| {
            u["email"]
                .as_str()
                .unwrap_or_default()
                .starts_with("staff@")
        })
        .unwrap()["id"]
        .as_str()
        .unwrap()
        .to_owned();
    let r = reqwest::Client::new()
        .patch(a.url(&format!("/api/tenant/users/{staff}")))
        .bearer_auth(admin)
        .json(&json!({"roles": ["nurse"]}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    let (st, _, _) = post(
        &a.url(&format!("/api/tenant/users/{staff}/reset-password")),
        Some(admin),
        json!({}),
    )
    .await;
    assert_eq!(st, 200);
    let (st, _, _) = post(
        &a.url(&format!("/api/tenant/users/{staff}/revoke-sessions")),
        Some(admin),
        json!({}),
    )
    .await;
    assert_eq!(st, 204);

    // A cross-tenant attempt against A: B's token on A's host.
    let r = send(
        Method::GET,
        &a.url(&format!("/fhir/Patient/{pid}")),
        Some(&tok_b["clinician"]),
        None,
        &[],
    )
    .await;
    assert_eq!(r.status, 401);

    // Operators: suspend and resume.
    let slug = format!("audit-a-{tag}");
    assert_eq!(
        operator(s, Method::POST, &format!("/api/v1/tenants/{slug}/suspend"))
            .await
            .0,
        200
    );
    assert_eq!(
        operator(s, Method::POST, &format!("/api/v1/tenants/{slug}/resume"))
            .await
            .0,
        200
    );

    // The auditor sees every kind.
    let aud = tok["auditor"].as_str();
    let want = [
        "create",
        "read",
        "search-type",
        "update",
        "delete",
        "login",
        "login-failed",
        "token-refresh",
        "logout",
        "user-create",
        "user-update",
        "password-reset",
        "sessions-revoke",
        "foreign-token",
        "tenant-suspend",
        "tenant-resume",
    ];
    let deadline = Instant::now() + Duration::from_secs(15);
    let evs = loop {
        let evs = audit_events(&base, aud, "", 20).await;
        let got = subtypes(&evs);
        if want.iter().all(|w| got.iter().any(|g| g == w)) || Instant::now() > deadline {
            break evs;
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    };
    let got = subtypes(&evs);
    for w in want {
        assert!(got.iter().any(|g| g == w), "no {w} in {got:?}");
    }
    // Ids and addresses only: the patient's name and birth date are in no entry.
    let text = serde_json::to_string(&evs).unwrap();
    assert!(
        !text.contains("Sigilosa") && !text.contains("1971-02-03"),
        "{text}"
    );
    assert!(!text.contains("a long and new passphrase"));
    assert!(!text.contains("sso-client-secret-42"));
    // Shape of a clinical entry.
    let created = evs
        .iter()
        .find(|e| e["subtype"][0]["code"] == "create")
        .unwrap();
    assert_eq!(created["resourceType"], "AuditEvent");
    assert_eq!(created["action"], "C");
    assert_eq!(created["outcome"], "0");
    assert_eq!(
        created["entity"][0]["what"]["reference"],
        format!("Patient/{pid}/_history/1")
    );
    assert!(
        created["agent"][0]["who"]["identifier"]["value"]
            .as_str()
            .unwrap()
            .starts_with("user/")
    );
    assert_eq!(created["agent"][0]["network"]["address"], "127.0.0.1");
    // An operator's action on the tenant, with where it came from.
    let suspended = evs
        .iter()
        .find(|e| e["subtype"][0]["code"] == "tenant-suspend")
        .unwrap();
    assert_eq!(
        suspended["agent"][0]["who"]["identifier"]["value"],
        "operator/admin"
    );
    assert_eq!(suspended["agent"][0]["network"]["address"], "127.0.0.1");
    let conflict = evs
        .iter()
        .find(|e| e["subtype"][0]["code"] == "update" && e["outcome"] == "4")
        .expect("the refused update is recorded");
    assert_eq!(conflict["action"], "U");

    // Search by entity (with its versions), action, outcome, agent, date; one by id.
    let by_entity = audit_events(&base, aud, &format!("&entity=Patient/{pid}"), 5).await;
    assert!(by_entity.len() >= 5, "{}", by_entity.len());
    assert!(by_entity.iter().all(|e| {
        e["entity"][0]["what"]["reference"]
            .as_str()
            .unwrap()
            .starts_with(&format!("Patient/{pid}"))
    }));
    let creates = audit_events(&base, aud, "&action=C", 1).await;
    assert!(creates.iter().all(|e| e["action"] == "C"));
    let failed = audit_events(&base, aud, "&outcome=4", 1).await;
    assert!(subtypes(&failed).iter().any(|s| s == "login-failed"));
    let agent = created["agent"][0]["who"]["identifier"]["value"]
        .as_str()
        .unwrap()
        .to_owned();
    let mine = audit_events(&base, aud, &format!("&agent={agent}"), 1).await;
    assert!(
        mine.iter()
            .all(|e| e["agent"][0]["who"]["identifier"]["value"] == agent.as_str())
    );
    let today = time::OffsetDateTime::now_utc().date();
    let dated = audit_events(&base, aud, &format!("&date=ge{today}"), 1).await;
    assert!(!dated.is_empty());
    let future = audit_events(&base, aud, "&date=gt2999-01-01", 0).await;
    assert!(future.is_empty());
    let id = created["id"].as_str().unwrap();
    let r = send(
        Method::GET,
        &a.url(&format!("/fhir/AuditEvent/{id}")),
        Some(aud),
        None,
        &[],
    )
    .await;
    assert_eq!(r.status, 200);
    assert_eq!(r.body["id"], id);
    // Paging: a cursor continues, another tenant's or a forged one is refused.
    let r = send(
        Method::GET,
        &a.url("/fhir/AuditEvent?_count=2"),
        Some(aud),
        None,
        &[],
    )
    .await;
    let next = r.body["link"]
        .as_array()
        .unwrap()
        .iter()
        .find(|l| l["relation"] == "next")
        .unwrap()["url"]
        .as_str()
        .unwrap()
        .to_owned();
    let r2 = send(Method::GET, &next, Some(aud), None, &[]).await;
    assert_eq!(r2.status, 200);
    assert_ne!(
        r.body["entry"][0]["resource"]["id"],
        r2.body["entry"][0]["resource"]["id"]
    );
    let cursor = next.split("_cursor=").nth(1).unwrap();
    let r = send(
        Method::GET,
        &b.url(&format!("/fhir/AuditEvent?_cursor={cursor}")),
        Some(&tok_b["auditor"]),
        None,
        &[],
    )
    .await;
    assert_outcome(&r, 400, "invalid");
    // Bad input: a clear OperationOutcome, never a 500.
    for q in [
        "action=X",
        "outcome=3",
        "date=someday",
        "_count=0",
        "name=x",
        "entity=x",
    ] {
        let r = send(
            Method::GET,
            &a.url(&format!("/fhir/AuditEvent?{q}")),
            Some(aud),
            None,
            &[],
        )
        .await;
        assert_outcome(&r, 400, "invalid");
    }

    // Who may read: the auditor and the administrator; not a nurse or a clinician.
    for role in ["nurse", "clinician"] {
        let r = send(
            Method::GET,
            &a.url("/fhir/AuditEvent"),
            Some(&tok[role]),
            None,
            &[],
        )
        .await;
        assert_outcome(&r, 403, "forbidden");
    }
    let r = send(
        Method::GET,
        &a.url("/fhir/AuditEvent"),
        Some(&tok["admin"]),
        None,
        &[],
    )
    .await;
    assert_eq!(r.status, 200);
    // B's auditor cannot read A's log: not with its token on A's host, nor A's ids on B's.
    let r = send(
        Method::GET,
        &a.url("/fhir/AuditEvent"),
        Some(&tok_b["auditor"]),
        None,
        &[],
    )
    .await;
    assert_eq!(r.status, 401);
    let r = send(
        Method::GET,
        &b.url(&format!("/fhir/AuditEvent/{id}")),
        Some(&tok_b["auditor"]),
        None,
        &[],
    )
    .await;
    assert!(!r.text.contains(&pid), "{}", r.text);
    let b_log = audit_events(&b.url(""), &tok_b["auditor"], "", 1).await;
    assert!(!serde_json::to_string(&b_log).unwrap().contains(&pid));
    // Nobody writes it.
    for m in [Method::POST, Method::PUT, Method::DELETE, Method::PATCH] {
        let url = if m == Method::POST {
            a.url("/fhir/AuditEvent")
        } else {
            a.url(&format!("/fhir/AuditEvent/{id}"))
        };
        let r = send(
            m,
            &url,
            Some(admin),
            Some(r#"{"resourceType":"AuditEvent"}"#),
            &[],
        )
        .await;
        assert_outcome(&r, 405, "not-supported");
    }

    // Verification through the API: intact, everything sealed.
    let (st, v) = operator(
        s,
        Method::POST,
        &format!("/api/v1/tenants/{slug}/audit/verify"),
    )
    .await;
    assert_eq!(st, 200, "{v}");
    assert_eq!(v["intact"], true, "{v}");
    assert_eq!(v["unsealed"], 0);
    assert!(v["checked"].as_u64().unwrap() >= 16, "{v}");

    // The platform log has the operator's actions on A, chained.
    let (st, v) = operator(s, Method::GET, &format!("/api/v1/audit?tenant={slug}")).await;
    assert_eq!(st, 200, "{v}");
    let actions: Vec<&str> = v["items"]
        .as_array()
        .unwrap()
        .iter()
        .map(|i| i["action"].as_str().unwrap())
        .collect();
    for w in [
        "tenant-suspend",
        "tenant-resume",
        "audit-verify",
        "tenant-create",
    ] {
        assert!(actions.contains(&w), "{w} not in {actions:?}");
    }
    // Deleting the tenant is an operator action too.
    assert_eq!(
        operator(s, Method::DELETE, &format!("/api/v1/tenants/{slug}"))
            .await
            .0,
        202
    );
    let (_, v) = operator(
        s,
        Method::GET,
        &format!("/api/v1/audit?tenant={slug}&limit=1"),
    )
    .await;
    assert_eq!(v["items"][0]["action"], "tenant-delete", "{v}");
    let (st, v) = operator(s, Method::POST, "/api/v1/audit/verify").await;
    assert_eq!((st, &v["intact"]), (200, &json!(true)), "{v}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn retention_prunes_behind_a_signed_checkpoint_and_the_chain_goes_on() {
    let s = TestServer::start().await.unwrap();
    let (a, tok) = hospital(&s, "audit-retention", IsolationMode::Sqlite).await;
    let clin = Some(tok["clinician"].as_str());
    let body = r#"{"resourceType":"Patient","name":[{"family":"Old"}]}"#;
    let r = send(Method::POST, &a.url("/fhir/Patient"), clin, Some(body), &[]).await;
    assert_eq!(r.status, 201);
    let t = s.control.index().find("audit-retention").unwrap();
    // Hospitals keep 20 years by default: nothing is due.
    assert_eq!(s.control.audit_retention_days(&t), 7_305);
    let now = tenantplane_audit::now_ms();
    let (_, before) = s.control.verify_audit("audit-retention").await.unwrap();
    assert_eq!(s.control.prune_audit(&t, now).await.unwrap(), None);
    // The plan keeps one day; two days later everything sealed is past it.
    let c = s.control.catalog();
    let mut plan = c.get_plan(&t.plan).await.unwrap().unwrap();
    let v = plan.version;
    plan.quotas.audit_retention_days = Some(1);
    c.update_plan(&plan, v).await.unwrap();
    s.control.refresh_plans().await.unwrap();
    assert_eq!(s.control.audit_retention_days(&t), 1);
    let (_, sealed) = s.control.verify_audit("audit-retention").await.unwrap();
    assert!(sealed.head_seq >= before.head_seq);
    let cut = s
        .control
        .prune_audit(&t, now + 2 * 86_400_000)
        .await
        .unwrap();
    assert_eq!(cut, Some(sealed.head_seq));
    // The chain verifies from the signed checkpoint, and goes on from it.
    let (st, v) = operator(
        &s,
        Method::POST,
        "/api/v1/tenants/audit-retention/audit/verify",
    )
    .await;
    assert_eq!(st, 200, "{v}");
    assert_eq!(v["intact"], true, "{v}");
    assert_eq!(v["checkpointSeq"], sealed.head_seq, "{v}");
    let r = send(Method::POST, &a.url("/fhir/Patient"), clin, Some(body), &[]).await;
    assert_eq!(r.status, 201);
    let (_, v) = operator(
        &s,
        Method::POST,
        "/api/v1/tenants/audit-retention/audit/verify",
    )
    .await;
    assert_eq!(v["intact"], true, "{v}");
    assert!(v["checked"].as_u64().unwrap() >= 1, "{v}");
    // What was pruned is gone from the auditor's view; what came after is there.
    let evs = audit_events(&a.url(""), &tok["auditor"], "&action=C", 1).await;
    assert!(!evs.is_empty());
    assert!(evs.iter().all(|e| {
        e["extension"].as_array().unwrap().iter().any(|x| {
            x["url"] == "urn:tenantplane:audit-chain-seq"
                && x["valueInteger"].as_i64().unwrap() > sealed.head_seq
        })
    }));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_event_kind_reaches_the_tenants_own_log_sqlite() {
    let s = TestServer::start().await.unwrap();
    audit_flow(&s, IsolationMode::Sqlite).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_event_kind_reaches_the_tenants_own_log_pg_shared() {
    let s = TestServer::start_with_pg_data(8).await.unwrap();
    audit_flow(&s, IsolationMode::PgShared).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_edit_behind_the_servers_back_is_found_by_verification() {
    let s = TestServer::start().await.unwrap();
    let (a, tok) = hospital(&s, "audit-tamper", IsolationMode::Sqlite).await;
    let clin = Some(tok["clinician"].as_str());
    for i in 0..5 {
        let body = format!(r#"{{"resourceType":"Patient","name":[{{"family":"P{i}"}}]}}"#);
        let r = send(
            Method::POST,
            &a.url("/fhir/Patient"),
            clin,
            Some(&body),
            &[],
        )
        .await;
        assert_eq!(r.status, 201);
    }
    let (st, v) = operator(
        &s,
        Method::POST,
        "/api/v1/tenants/audit-tamper/audit/verify",
    )
    .await;
    assert_eq!((st, &v["intact"]), (200, &json!(true)), "{v}");
    // Behind the server's back: the file itself, its guard dropped.
    let t = s.control.index().find("audit-tamper").unwrap();
    let path = s.control.data().sqlite().path_of(&t.id);
    let c = rusqlite::Connection::open(path).unwrap();
    c.execute_batch(
        "DROP TRIGGER audit_log_sealed_is_final;
         UPDATE audit_log SET agent = 'user/00000000-0000-0000-0000-000000000000' WHERE seq = 3;",
    )
    .unwrap();
    drop(c);
    let (st, v) = operator(
        &s,
        Method::POST,
        "/api/v1/tenants/audit-tamper/audit/verify",
    )
    .await;
    assert_eq!(st, 200, "{v}");
    assert_eq!(v["intact"], false, "{v}");
    assert_eq!(v["broken"], json!({"kind": "altered", "seq": 3}), "{v}");
}
