//! The FHIR R4 API over real HTTP, on SQLite, pg-schema and pg-shared: capability
//! statement, create/read/vread/update/delete/history with ETag, Last-Modified, Location,
//! `If-Match` and `Prefer`; OperationOutcome errors (each bad request changes nothing);
//! permissions per role; audit events; the module switch; another hospital's ids; the
//! patient and storage quotas, also under concurrent writes.

use reqwest::Method;
use serde_json::{Value, json};
use tenantplane_core::{IsolationMode, api::CreateTenant};
use tenantplane_server::events::EventKind;
use tenantplane_testkit::TestServer;

use crate::{
    identity::{T, first_login, post, tenant_with_admin},
    new_tenant,
};

const FHIR: &str = "application/fhir+json";

pub(crate) struct Resp {
    pub(crate) status: u16,
    pub(crate) headers: reqwest::header::HeaderMap,
    pub(crate) body: Value,
    pub(crate) text: String,
}

pub(crate) async fn send(
    method: Method,
    url: &str,
    token: Option<&str>,
    body: Option<&str>,
    extra: &[(&str, &str)],
) -> Resp {
    let mut rb = reqwest::Client::new().request(method, url);
    if let Some(t) = token {
        rb = rb.bearer_auth(t);
    }
    if let Some(b) = body {
        rb = rb.header("content-type", FHIR).body(b.to_owned());
    }
    for (k, v) in extra {
        rb = rb.header(*k, *v);
    }
    resp(rb).await
}

/// Sends `rb` and collects the answer.
pub(crate) async fn resp(rb: reqwest::RequestBuilder) -> Resp {
    let r = rb.send().await.unwrap();
    let status = r.status().as_u16();
    let headers = r.headers().clone();
    let text = r.text().await.unwrap();
    let body = serde_json::from_str(&text).unwrap_or(Value::Null);
    Resp {
        status,
        headers,
        body,
        text,
    }
}

pub(crate) fn assert_outcome(r: &Resp, status: u16, code: &str) {
    assert_eq!(r.status, status, "{}", r.text);
    assert!(
        r.headers["content-type"]
            .to_str()
            .unwrap()
            .starts_with(FHIR),
        "{:?}",
        r.headers
    );
    assert_eq!(r.body["resourceType"], "OperationOutcome", "{}", r.text);
    assert_eq!(r.body["issue"][0]["code"], code, "{}", r.text);
    assert_eq!(r.body["issue"][0]["severity"], "error");
}

/// A tenant with an admin and one user per role; returns tokens by role.
pub(crate) async fn hospital(
    s: &TestServer,
    slug: &str,
    mode: IsolationMode,
) -> (T, std::collections::HashMap<&'static str, String>) {
    let (t, otp) = tenant_with_admin(s, slug, mode).await;
    let admin = first_login(
        &t,
        &format!("admin@{slug}.example"),
        &otp,
        "a long and new passphrase",
    )
    .await;
    let admin = admin["access_token"].as_str().unwrap().to_owned();
    let mut tokens = std::collections::HashMap::new();
    for role in ["clinician", "nurse", "auditor", "staff"] {
        let email = format!("{role}@{slug}.example");
        let (st, _, v) = post(
            &t.url("/api/tenant/users"),
            Some(&admin),
            json!({"email": email, "roles": [role]}),
        )
        .await;
        assert_eq!(st, 201, "{v}");
        let tok = first_login(
            &t,
            &email,
            v["one_time_password"].as_str().unwrap(),
            "a long and new passphrase",
        )
        .await;
        tokens.insert(role, tok["access_token"].as_str().unwrap().to_owned());
    }
    tokens.insert("admin", admin);
    (t, tokens)
}

const PATIENT: &str = r#"{"resourceType":"Patient","id":"ignored-on-create","meta":{"versionId":"99","profile":["http://hl7.org/fhir/StructureDefinition/Patient"]},"identifier":[{"system":"urn:oid:2.16.840.1.113883.4.1","value":"999-01-0001"}],"name":[{"family":"Silva","given":["Maria"]}],"gender":"female","birthDate":"1980-04-02","extension":[{"url":"http://example.org/fhir/weight-precision","valueDecimal":72.50}]}"#;

async fn fhir_flow(s: &TestServer, mode: IsolationMode) {
    let tag = mode.as_str();
    let (a, tok) = hospital(s, &format!("fhir-a-{tag}"), mode).await;
    let (b, tok_b) = hospital(s, &format!("fhir-b-{tag}"), mode).await;
    let clin = tok["clinician"].as_str();

    // Capability statement, no token needed.
    let r = send(Method::GET, &a.url("/fhir/metadata"), None, None, &[]).await;
    assert_eq!(r.status, 200);
    assert!(
        r.headers["content-type"]
            .to_str()
            .unwrap()
            .starts_with(FHIR)
    );
    assert_eq!(r.body["resourceType"], "CapabilityStatement");
    assert_eq!(r.body["fhirVersion"], "4.0.1");
    let types: Vec<&str> = r.body["rest"][0]["resource"]
        .as_array()
        .unwrap()
        .iter()
        .map(|x| x["type"].as_str().unwrap())
        .collect();
    for t in [
        "Patient",
        "Observation",
        "ExplanationOfBenefit",
        "Provenance",
    ] {
        assert!(types.contains(&t), "{t}");
    }
    // It lists exactly the search parameters and system interactions supported.
    let patient = r.body["rest"][0]["resource"]
        .as_array()
        .unwrap()
        .iter()
        .find(|x| x["type"] == "Patient")
        .unwrap();
    let names: Vec<&str> = patient["searchParam"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| p["name"].as_str().unwrap())
        .collect();
    for p in [
        "_id",
        "_lastUpdated",
        "identifier",
        "name",
        "family",
        "given",
        "birthdate",
        "gender",
    ] {
        assert!(names.contains(&p), "{p} in {names:?}");
    }
    let sys: Vec<&str> = r.body["rest"][0]["interaction"]
        .as_array()
        .unwrap()
        .iter()
        .map(|i| i["code"].as_str().unwrap())
        .collect();
    assert_eq!(sys, ["transaction", "batch"]);

    // Create.
    let r = send(
        Method::POST,
        &a.url("/fhir/Patient"),
        Some(clin),
        Some(PATIENT),
        &[],
    )
    .await;
    assert_eq!(r.status, 201, "{}", r.text);
    let id = r.body["id"].as_str().unwrap().to_owned();
    assert_ne!(id, "ignored-on-create");
    assert_eq!(r.body["meta"]["versionId"], "1");
    assert_eq!(
        r.body["meta"]["profile"][0],
        "http://hl7.org/fhir/StructureDefinition/Patient"
    );
    assert!(
        r.text.contains("\"valueDecimal\":72.50"),
        "decimals keep their precision: {}",
        r.text
    );
    assert_eq!(r.headers["etag"], "W/\"1\"");
    assert!(r.headers.contains_key("last-modified"));
    assert_eq!(
        r.headers["location"],
        format!("{}/t/{}/fhir/Patient/{id}/_history/1", s.url(), a.slug).as_str()
    );
    let created = r.text.clone();

    // Read: the same bytes; auditors read too; staff and anonymous callers do not.
    let url = a.url(&format!("/fhir/Patient/{id}"));
    let r = send(Method::GET, &url, Some(clin), None, &[]).await;
    assert_eq!((r.status, r.text.as_str()), (200, created.as_str()));
    assert_eq!(r.headers["etag"], "W/\"1\"");
    assert_eq!(
        send(Method::GET, &url, Some(&tok["auditor"]), None, &[])
            .await
            .status,
        200
    );
    assert_outcome(
        &send(Method::GET, &url, Some(&tok["staff"]), None, &[]).await,
        403,
        "forbidden",
    );
    assert_outcome(
        &send(Method::GET, &url, None, None, &[]).await,
        401,
        "login",
    );
    assert_outcome(
        &send(Method::GET, &url, Some("garbage.token.here"), None, &[]).await,
        401,
        "login",
    );

    // Bad input: each is an OperationOutcome and changes nothing.
    type Case<'a> = (Method, String, Option<&'a str>, &'a str, u16, &'a str);
    let bad: Vec<Case<'_>> = vec![
        (
            Method::POST,
            a.url("/fhir/Patient"),
            Some("{not json"),
            "clinician",
            400,
            "structure",
        ),
        (
            Method::POST,
            a.url("/fhir/Patient"),
            Some(r#"{"resourceType":"Observation"}"#),
            "clinician",
            400,
            "structure",
        ),
        (
            Method::POST,
            a.url("/fhir/Patient"),
            Some(r#"{"resourceType":"Patient","id":"bad id"}"#),
            "clinician",
            400,
            "structure",
        ),
        (
            Method::POST,
            a.url("/fhir/Patient"),
            Some(r#"{"resourceType":"Patient","gender":"female","gender":"male"}"#),
            "clinician",
            400,
            "structure",
        ),
        (
            Method::POST,
            a.url("/fhir/Unicorn"),
            Some(r#"{"resourceType":"Unicorn"}"#),
            "clinician",
            404,
            "not-supported",
        ),
        (
            Method::POST,
            a.url("/fhir/Patient"),
            Some(PATIENT),
            "auditor",
            403,
            "forbidden",
        ),
        (
            Method::POST,
            a.url("/fhir/Patient"),
            Some(PATIENT),
            "staff",
            403,
            "forbidden",
        ),
        (
            Method::PUT,
            url.clone(),
            Some(PATIENT),
            "clinician",
            400,
            "structure",
        ),
        (
            Method::DELETE,
            url.clone(),
            None,
            "auditor",
            403,
            "forbidden",
        ),
    ];
    let history_before = send(
        Method::GET,
        &format!("{url}/_history"),
        Some(clin),
        None,
        &[],
    )
    .await
    .body["total"]
        .clone();
    for (m, u, body, role, status, code) in bad {
        let r = send(m.clone(), &u, Some(&tok[role]), body, &[]).await;
        assert_outcome(&r, status, code);
        if let Some(e) = r.body["issue"][0].get("expression") {
            assert!(e[0].is_string());
        }
    }
    let r = reqwest::Client::new()
        .post(a.url("/fhir/Patient"))
        .bearer_auth(clin)
        .header("content-type", "application/xml")
        .body("<Patient/>")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 415);
    let r = send(
        Method::POST,
        &a.url("/fhir/Patient"),
        Some(clin),
        Some(r#"{"resourceType":"Patient","Name":[]}"#),
        &[],
    )
    .await;
    assert_outcome(&r, 400, "structure");
    assert_eq!(r.body["issue"][0]["expression"][0], "Patient.Name");
    // The R4 schema: each failing element named, the values never echoed.
    let r = send(
        Method::POST,
        &a.url("/fhir/Patient"),
        Some(clin),
        Some(r#"{"resourceType":"Patient","gender":"sometimes","birthDate":"1980-13-45","name":[{"family":["Silva"]}]}"#),
        &[],
    )
    .await;
    assert_outcome(&r, 400, "invalid");
    let exprs: Vec<&str> = r.body["issue"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|i| i["expression"][0].as_str())
        .collect();
    for e in [
        "Patient.gender",
        "Patient.birthDate",
        "Patient.name[0].family",
    ] {
        assert!(exprs.contains(&e), "{e} in {exprs:?}");
    }
    assert!(
        !r.text.contains("sometimes")
            && !r.text.contains("1980-13-45")
            && !r.text.contains("Silva"),
        "{}",
        r.text
    );
    assert_eq!(
        send(
            Method::GET,
            &format!("{url}/_history"),
            Some(clin),
            None,
            &[]
        )
        .await
        .body["total"],
        history_before
    );

    // Update with If-Match; stale versions are refused; unknown ids cannot be created by PUT.
    let v2 = PATIENT
        .replace("ignored-on-create", &id)
        .replace("Maria", "Maria José");
    let r = send(
        Method::PUT,
        &url,
        Some(&tok["nurse"]),
        Some(&v2),
        &[("if-match", "W/\"1\"")],
    )
    .await;
    assert_eq!(r.status, 200, "{}", r.text);
    assert_eq!(r.body["meta"]["versionId"], "2");
    assert_eq!(r.headers["etag"], "W/\"2\"");
    assert_outcome(
        &send(
            Method::PUT,
            &url,
            Some(clin),
            Some(&v2),
            &[("if-match", "W/\"1\"")],
        )
        .await,
        412,
        "conflict",
    );
    assert_outcome(
        &send(
            Method::PUT,
            &url,
            Some(clin),
            Some(&v2),
            &[("if-match", "three")],
        )
        .await,
        400,
        "invalid",
    );
    let other = uuid::Uuid::now_v7().to_string();
    let r = send(
        Method::PUT,
        &a.url(&format!("/fhir/Patient/{other}")),
        Some(clin),
        Some(&PATIENT.replace("ignored-on-create", &other)),
        &[],
    )
    .await;
    assert_outcome(&r, 405, "not-supported");
    // Prefer: return=minimal.
    let r = send(
        Method::PUT,
        &url,
        Some(clin),
        Some(&v2),
        &[("prefer", "return=minimal")],
    )
    .await;
    assert_eq!((r.status, r.text.as_str()), (200, ""));
    assert_eq!(r.headers["etag"], "W/\"3\"");

    // vread and history.
    let r = send(
        Method::GET,
        &format!("{url}/_history/1"),
        Some(clin),
        None,
        &[],
    )
    .await;
    assert_eq!((r.status, r.text.as_str()), (200, created.as_str()));
    let r = send(
        Method::GET,
        &format!("{url}/_history/2"),
        Some(clin),
        None,
        &[],
    )
    .await;
    assert_eq!(r.body["name"][0]["given"][0], "Maria José");
    assert_outcome(
        &send(
            Method::GET,
            &format!("{url}/_history/9"),
            Some(clin),
            None,
            &[],
        )
        .await,
        404,
        "not-found",
    );
    let h = send(
        Method::GET,
        &format!("{url}/_history"),
        Some(clin),
        None,
        &[],
    )
    .await;
    assert_eq!(h.body["resourceType"], "Bundle");
    assert_eq!(h.body["type"], "history");
    assert_eq!(h.body["total"], 3);
    let versions: Vec<&str> = h.body["entry"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["resource"]["meta"]["versionId"].as_str().unwrap())
        .collect();
    assert_eq!(versions, ["3", "2", "1"]);
    assert_eq!(h.body["entry"][2]["request"]["method"], "POST");

    // Another hospital: A's id does not exist there, reading it is a recorded attempt.
    let foreign_before = s
        .service
        .events
        .recent()
        .iter()
        .filter(|e| e.kind == EventKind::ForeignResource)
        .count();
    let url_b = b.url(&format!("/fhir/Patient/{id}"));
    let r = send(Method::GET, &url_b, Some(&tok_b["clinician"]), None, &[]).await;
    assert_outcome(&r, 404, "not-found");
    let random = send(
        Method::GET,
        &b.url(&format!("/fhir/Patient/{}", uuid::Uuid::now_v7())),
        Some(&tok_b["clinician"]),
        None,
        &[],
    )
    .await;
    assert_eq!(
        r.text, random.text,
        "a foreign id and a random id look the same"
    );
    assert_outcome(
        &send(Method::DELETE, &url_b, Some(&tok_b["clinician"]), None, &[]).await,
        404,
        "not-found",
    );
    assert_outcome(
        &send(
            Method::PUT,
            &url_b,
            Some(&tok_b["clinician"]),
            Some(&v2),
            &[],
        )
        .await,
        405,
        "not-supported",
    );
    let foreign_after = s
        .service
        .events
        .recent()
        .iter()
        .filter(|e| e.kind == EventKind::ForeignResource)
        .count();
    assert_eq!(foreign_after, foreign_before + 3);
    // A's token is not valid on B's FHIR endpoint.
    assert_outcome(
        &send(Method::GET, &url_b, Some(clin), None, &[]).await,
        401,
        "login",
    );
    // A is unchanged by all of it.
    assert_eq!(
        send(Method::GET, &url, Some(clin), None, &[]).await.headers["etag"],
        "W/\"3\""
    );

    // Delete: then 410; history keeps every version.
    let r = send(Method::DELETE, &url, Some(clin), None, &[]).await;
    assert_eq!(r.status, 204);
    assert_eq!(r.headers["etag"], "W/\"4\"");
    assert_outcome(
        &send(Method::GET, &url, Some(clin), None, &[]).await,
        410,
        "deleted",
    );
    assert_eq!(
        send(Method::DELETE, &url, Some(clin), None, &[])
            .await
            .status,
        204,
        "idempotent"
    );
    assert_eq!(
        send(
            Method::GET,
            &format!("{url}/_history/2"),
            Some(clin),
            None,
            &[]
        )
        .await
        .status,
        200
    );
    assert_eq!(
        send(
            Method::GET,
            &format!("{url}/_history"),
            Some(clin),
            None,
            &[]
        )
        .await
        .body["total"],
        4
    );

    // What the server answers is valid R4 too.
    for body in [
        send(Method::GET, &a.url("/fhir/metadata"), None, None, &[])
            .await
            .body,
        send(
            Method::GET,
            &format!("{url}/_history"),
            Some(clin),
            None,
            &[],
        )
        .await
        .body,
        send(
            Method::GET,
            &format!("{url}/_history/2"),
            Some(clin),
            None,
            &[],
        )
        .await
        .body,
        send(
            Method::GET,
            &a.url("/fhir/Patient?_count=1&_total=accurate"),
            Some(clin),
            None,
            &[],
        )
        .await
        .body,
        send(Method::GET, &url, Some(clin), None, &[]).await.body,
        send(
            Method::POST,
            &a.url("/fhir/Patient"),
            Some(clin),
            Some("{"),
            &[],
        )
        .await
        .body,
    ] {
        if let Err(e) = tenantplane_records::validate::check_any(&body) {
            panic!("{} does not validate: {e:?}", body["resourceType"]);
        }
    }

    // Every access was audited, with ids only.
    let evs = s.service.audit.recent();
    let mine: Vec<_> = evs.iter().filter(|e| e.resource_id == id).collect();
    assert!(
        mine.iter()
            .any(|e| e.action == tenantplane_server::audit::ClinicalAction::Create)
    );
    assert!(
        mine.iter()
            .any(|e| e.action == tenantplane_server::audit::ClinicalAction::Delete)
    );
    assert!(
        mine.iter()
            .filter(|e| e.action == tenantplane_server::audit::ClinicalAction::Read)
            .count()
            >= 2
    );
    let dump = serde_json::to_string(&evs).unwrap();
    assert!(
        !dump.contains("Silva") && !dump.contains("999-01-0001"),
        "no health data in audit events"
    );

    // Unknown interactions.
    assert_outcome(
        &send(
            Method::GET,
            &a.url("/fhir/Patient/x/y/z"),
            Some(clin),
            None,
            &[],
        )
        .await,
        404,
        "not-supported",
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn fhir_on_sqlite() {
    let s = TestServer::start().await.unwrap();
    fhir_flow(&s, IsolationMode::Sqlite).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn fhir_on_postgres_modes() {
    let s = TestServer::start_with_pg_data(8).await.unwrap();
    for mode in [IsolationMode::PgSchema, IsolationMode::PgShared] {
        fhir_flow(&s, mode).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn records_module_is_per_tenant() {
    let s = TestServer::start().await.unwrap();
    s.client
        .create_tenant(&CreateTenant {
            profile: Some(tenantplane_core::Profile::Council),
            ..new_tenant("camara")
        })
        .await
        .unwrap();
    let url = format!("{}/t/camara/fhir/metadata", s.url());
    assert_outcome(
        &send(Method::GET, &url, None, None, &[]).await,
        404,
        "not-found",
    );
    let mut settings = tenantplane_core::Settings::new();
    settings.insert("records".into(), json!(true));
    s.client
        .update_tenant(
            "camara",
            &tenantplane_core::api::UpdateTenant {
                settings: Some(settings),
                ..Default::default()
            },
            None,
        )
        .await
        .unwrap();
    let mut ok = false;
    for _ in 0..50 {
        if send(Method::GET, &url, None, None, &[]).await.status == 200 {
            ok = true;
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }
    assert!(ok, "switched on by the operator");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn patient_and_storage_quotas_hold_under_concurrent_writes() {
    let s = TestServer::start().await.unwrap();
    let plan = s
        .client
        .list_plans()
        .await
        .unwrap()
        .items
        .into_iter()
        .find(|p| p.name.as_str() == "small")
        .unwrap();
    s.client
        .update_plan(
            "small",
            &tenantplane_core::api::UpdatePlan {
                display_name: None,
                quotas: Some(tenantplane_core::Quotas {
                    max_patients: 3,
                    storage_bytes: 20_000,
                    ..plan.quotas
                }),
                default_isolation: None,
            },
        )
        .await
        .unwrap();
    let (a, tok) = hospital(&s, "fhir-quota", IsolationMode::Sqlite).await;
    // Wait for the plan cache.
    for _ in 0..50 {
        if s.service
            .quotas(&"small".parse().unwrap())
            .is_some_and(|q| q.max_patients == 3)
        {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }
    let clin = tok["clinician"].clone();
    let mut tasks = Vec::new();
    for _ in 0..8 {
        let (u, t) = (a.url("/fhir/Patient"), clin.clone());
        tasks.push(tokio::spawn(async move {
            send(Method::POST, &u, Some(&t), Some(PATIENT), &[]).await
        }));
    }
    let mut created = Vec::new();
    let mut refused = 0;
    for t in tasks {
        let r = t.await.unwrap();
        match r.status {
            201 => created.push(r.body["id"].as_str().unwrap().to_owned()),
            403 => {
                assert_outcome(&r, 403, "too-costly");
                assert!(r.text.contains("max_patients"), "{}", r.text);
                refused += 1;
            }
            other => panic!("unexpected {other}: {}", r.text),
        }
    }
    assert_eq!((created.len(), refused), (3, 5));
    // Deleting one frees a place.
    let r = send(
        Method::DELETE,
        &a.url(&format!("/fhir/Patient/{}", created[0])),
        Some(&clin),
        None,
        &[],
    )
    .await;
    assert_eq!(r.status, 204);
    assert_eq!(
        send(
            Method::POST,
            &a.url("/fhir/Patient"),
            Some(&clin),
            Some(PATIENT),
            &[]
        )
        .await
        .status,
        201
    );
    let u = s.client.tenant_usage("fhir-quota").await.unwrap();
    assert_eq!((u.patients, u.patients_limit), (3, 3));
    assert!(u.storage_bytes > 0 && u.storage_limit == 20_000, "{u:?}");
    // Storage: other resources fill the bytes quota; then writes are refused.
    let obs = r#"{"resourceType":"Observation","status":"final","code":{"text":"note"},"valueString":"PAD"}"#.replace("PAD", &"x".repeat(3000));
    let mut last = 0;
    for _ in 0..10 {
        last = send(
            Method::POST,
            &a.url("/fhir/Observation"),
            Some(&clin),
            Some(&obs),
            &[],
        )
        .await
        .status;
        if last == 403 {
            break;
        }
    }
    assert_eq!(last, 403);
    let r = send(
        Method::POST,
        &a.url("/fhir/Observation"),
        Some(&clin),
        Some(&obs),
        &[],
    )
    .await;
    assert_outcome(&r, 403, "too-costly");
    assert!(r.text.contains("storage_bytes"), "{}", r.text);
    let u2 = s.client.tenant_usage("fhir-quota").await.unwrap();
    assert!(
        u2.storage_bytes <= 20_000 && u2.storage_bytes > u.storage_bytes,
        "{u2:?}"
    );
}

fn ids_of(b: &Value) -> Vec<String> {
    b["entry"]
        .as_array()
        .map(|a| {
            a.iter()
                .filter(|e| e["search"]["mode"] == "match")
                .map(|e| e["resource"]["id"].as_str().unwrap().to_owned())
                .collect()
        })
        .unwrap_or_default()
}

async fn search_flow(s: &TestServer, mode: IsolationMode) {
    let tag = mode.as_str();
    let (a, tok) = hospital(s, &format!("srch-a-{tag}"), mode).await;
    let (b, tok_b) = hospital(s, &format!("srch-b-{tag}"), mode).await;
    let clin = tok["clinician"].as_str();
    let mk = |family: &str, given: &str, gender: &str, birth: &str, mrn: &str| {
        json!({"resourceType": "Patient", "identifier": [{"system": "urn:mrn", "value": mrn}],
               "name": [{"family": family, "given": [given]}], "gender": gender, "birthDate": birth})
        .to_string()
    };
    let people = [
        ("Silva", "Maria", "female", "1980-04-02", "M1"),
        ("Silveira", "João", "male", "1975-01-20", "M2"),
        ("Gonçalves", "Ana", "female", "2001-12-31", "M3"),
        ("Souza", "Pedro", "male", "1990-06-15", "M4"),
        ("Silva", "José", "male", "1962-09-09", "M5"),
    ];
    let mut pids = Vec::new();
    for (f, g, sex, bd, mrn) in people {
        let r = send(
            Method::POST,
            &a.url("/fhir/Patient"),
            Some(clin),
            Some(&mk(f, g, sex, bd, mrn)),
            &[],
        )
        .await;
        assert_eq!(r.status, 201, "{}", r.text);
        pids.push(r.body["id"].as_str().unwrap().to_owned());
    }
    // Observations of the first patient: 3 vital signs, 1 laboratory.
    let obs = |cat: &str, code: &str, date: &str, pid: &str| {
        json!({"resourceType": "Observation", "status": "final",
               "category": [{"coding": [{"system": "http://terminology.hl7.org/CodeSystem/observation-category", "code": cat}]}],
               "code": {"coding": [{"system": "http://loinc.org", "code": code}]},
               "subject": {"reference": format!("Patient/{pid}")}, "effectiveDateTime": date,
               "valueQuantity": {"value": 72.0, "unit": "/min"}})
        .to_string()
    };
    for (cat, code, date) in [
        ("vital-signs", "8867-4", "2020-01-10T10:00:00Z"),
        ("vital-signs", "8867-4", "2021-05-01T10:00:00Z"),
        ("vital-signs", "8480-6", "2022-07-01"),
        ("laboratory", "2345-7", "2021-05-01T11:00:00+02:00"),
    ] {
        let r = send(
            Method::POST,
            &a.url("/fhir/Observation"),
            Some(clin),
            Some(&obs(cat, code, date, &pids[0])),
            &[],
        )
        .await;
        assert_eq!(r.status, 201, "{}", r.text);
    }
    let aud = tok["auditor"].clone();
    let clin_s = tok["clinician"].clone();
    macro_rules! get {
        ($q:expr) => {
            send(
                Method::GET,
                &a.url(&format!("/fhir/Patient?{}", $q)),
                Some(&aud),
                None,
                &[],
            )
            .await
        };
    }
    macro_rules! count {
        ($q:expr) => {{
            let r = get!($q);
            assert_eq!(r.status, 200, "{}: {}", $q, r.text);
            assert_eq!(r.body["type"], "searchset");
            ids_of(&r.body).len()
        }};
    }
    macro_rules! oq {
        ($q:expr) => {
            send(
                Method::GET,
                &a.url(&format!("/fhir/Observation?{}", $q)),
                Some(&clin_s),
                None,
                &[],
            )
            .await
        };
    }
    assert_eq!(count!("family=silv"), 3, "starts-with, case-insensitive");
    assert_eq!(count!("family:exact=Silva"), 2);
    assert_eq!(count!("family:contains=ILV"), 3);
    assert_eq!(count!("name=goncalves"), 1, "accents ignored");
    assert_eq!(count!("given=joao"), 1);
    assert_eq!(count!("gender=male"), 3);
    assert_eq!(count!("gender=male&family=silva"), 1, "AND");
    assert_eq!(count!("gender=female,male"), 5, "OR");
    assert_eq!(count!("birthdate=ge1980-01-01"), 3);
    assert_eq!(count!("birthdate=lt1980"), 2);
    assert_eq!(count!("birthdate=1980-04"), 1, "partial dates");
    assert_eq!(count!("birthdate=eq1980-04-02"), 1);
    assert_eq!(count!("birthdate=ne1980-04-02"), 4);
    // ap: within 10 % of the distance from now (here ± 4.6 years).
    assert_eq!(count!("birthdate=ap1980-04-02"), 1);
    // _lastUpdated (days around now, so the test holds across midnight).
    let day = |d: i64| {
        tenantplane_records::resource::instant(
            time::OffsetDateTime::now_utc() + time::Duration::days(d),
        )[..10]
            .to_owned()
    };
    assert_eq!(count!(format!("_lastUpdated=ge{}", day(-1))), 5);
    assert_eq!(count!("_lastUpdated=lt2000"), 0);
    assert_eq!(count!(format!("_lastUpdated=sa{}", day(1))), 0);
    assert_eq!(count!("identifier=urn:mrn|M3"), 1);
    assert_eq!(count!("identifier=M3"), 1);
    assert_eq!(count!("identifier=|M3"), 0, "no-system match");
    assert_eq!(count!("identifier=urn:other|M3"), 0);
    let id_q = format!("_id={},{}", pids[1], pids[2]);
    let r = get!(&id_q);
    assert_eq!(ids_of(&r.body).len(), 2);

    // Observation searches from the IPA list.
    let p0 = &pids[0].clone();
    assert_eq!(
        ids_of(&oq!(format!("patient={p0}&category=vital-signs")).body).len(),
        3
    );
    assert_eq!(
        ids_of(&oq!(format!("patient=Patient/{p0}&code=http://loinc.org|8867-4")).body).len(),
        2
    );
    assert_eq!(
        ids_of(
            &oq!(format!(
                "subject=Patient/{p0}&category=vital-signs&date=ge2021-01-01"
            ))
            .body
        )
        .len(),
        2
    );
    assert_eq!(
        ids_of(&oq!(format!("patient={p0}&date=2021-05-01")).body).len(),
        2,
        "a day covers both times"
    );
    assert_eq!(ids_of(&oq!(format!("patient={}", pids[1])).body).len(), 0);
    // _include / _revinclude / _total / _summary / _elements.
    let r = oq!(format!(
        "patient={p0}&category=laboratory&_include=Observation:patient"
    ));
    let modes: Vec<&str> = r.body["entry"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["search"]["mode"].as_str().unwrap())
        .collect();
    assert_eq!(modes, ["match", "include"]);
    assert_eq!(r.body["entry"][1]["resource"]["id"], p0.as_str());
    let r = get!(&format!("_id={p0}&_revinclude=Observation:patient"));
    assert_eq!(r.body["entry"].as_array().unwrap().len(), 5);
    let r = get!("family=silv&_total=accurate&_count=1");
    assert_eq!(
        (r.body["total"].as_u64(), ids_of(&r.body).len()),
        (Some(3), 1)
    );
    let r = get!("gender=male&_summary=count");
    assert_eq!(r.body["total"], 3);
    assert!(r.body["entry"].as_array().unwrap().is_empty());
    let r = get!(&format!("_id={p0}&_elements=gender"));
    let res = &r.body["entry"][0]["resource"];
    assert_eq!(res["gender"], "female");
    assert!(res.get("name").is_none() && res.get("id").is_some());
    assert_eq!(res["meta"]["tag"][0]["code"], "SUBSETTED");
    // Unknown parameters: ignored and left out of the self link; strict handling refuses.
    let r = get!("family=silv&shoe-size=42");
    assert_eq!(ids_of(&r.body).len(), 3);
    assert!(
        !r.body["link"][0]["url"]
            .as_str()
            .unwrap()
            .contains("shoe-size")
    );
    let r = send(
        Method::GET,
        &a.url("/fhir/Patient?shoe-size=42"),
        Some(clin),
        None,
        &[("prefer", "handling=strict")],
    )
    .await;
    assert_outcome(&r, 400, "structure");
    assert_outcome(&get!("birthdate=someday"), 400, "structure");
    assert_outcome(&get!("_sort=name"), 400, "structure");

    // Paging with a cursor: every match once, in order, stable while others are written.
    let mut seen = Vec::new();
    let mut url = a.url("/fhir/Patient?_count=2&_sort=_lastUpdated");
    let mut pages = 0;
    loop {
        let r = send(Method::GET, &url, Some(clin), None, &[]).await;
        assert_eq!(r.status, 200, "{}", r.text);
        seen.extend(ids_of(&r.body));
        pages += 1;
        if pages == 1 {
            // A write between pages does not shift what follows.
            let r = send(
                Method::POST,
                &a.url("/fhir/Patient"),
                Some(clin),
                Some(&mk("Late", "Lia", "female", "2000-01-01", "M6")),
                &[],
            )
            .await;
            pids.push(r.body["id"].as_str().unwrap().to_owned());
        }
        let next = r.body["link"]
            .as_array()
            .unwrap()
            .iter()
            .find(|l| l["relation"] == "next")
            .map(|l| l["url"].as_str().unwrap().to_owned());
        match next {
            Some(n) => {
                // The link is absolute; the cursor works only here.
                let path = n
                    .split_once("/t/")
                    .map(|(_, p)| format!("{}/t/{p}", s.url()))
                    .unwrap();
                let cursor = path.split("_cursor=").nth(1).unwrap().to_owned();
                let on_b = send(
                    Method::GET,
                    &b.url(&format!(
                        "/fhir/Patient?_count=2&_sort=_lastUpdated&_cursor={cursor}"
                    )),
                    Some(&tok_b["clinician"]),
                    None,
                    &[],
                )
                .await;
                assert_outcome(&on_b, 400, "invalid");
                let other_sort = send(
                    Method::GET,
                    &a.url(&format!("/fhir/Patient?_count=2&_cursor={cursor}")),
                    Some(clin),
                    None,
                    &[],
                )
                .await;
                assert_outcome(&other_sort, 400, "invalid");
                url = path;
            }
            None => break,
        }
        assert!(pages < 10);
    }
    let mut uniq = seen.clone();
    uniq.sort();
    uniq.dedup();
    assert_eq!(uniq.len(), seen.len(), "no duplicates: {seen:?}");
    assert_eq!(
        seen.len(),
        6,
        "the five, and the one written while paging (it is newest)"
    );
    let r = get!("_sort=-_lastUpdated&_count=1");
    assert_eq!(ids_of(&r.body), vec![pids[5].clone()]);
    // POST _search.
    let r = reqwest::Client::new()
        .post(a.url("/fhir/Patient/_search"))
        .bearer_auth(clin)
        .header("content-type", "application/x-www-form-urlencoded")
        .body("family=silv&gender=male")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    let v: Value = r.json().await.unwrap();
    assert_eq!(ids_of(&v).len(), 2);
    // Staff cannot search; another hospital sees none of A's records.
    assert_outcome(
        &send(
            Method::GET,
            &a.url("/fhir/Patient?family=silva"),
            Some(&tok["staff"]),
            None,
            &[],
        )
        .await,
        403,
        "forbidden",
    );
    let r = send(
        Method::GET,
        &b.url("/fhir/Patient?family=silva"),
        Some(&tok_b["clinician"]),
        None,
        &[],
    )
    .await;
    assert_eq!(ids_of(&r.body).len(), 0);
    let r = send(
        Method::GET,
        &b.url(&format!(
            "/fhir/Observation?patient={p0}&_include=Observation:patient"
        )),
        Some(&tok_b["clinician"]),
        None,
        &[],
    )
    .await;
    assert_eq!(r.body["entry"].as_array().unwrap().len(), 0);
    // Deleted resources leave the index.
    let r = send(
        Method::DELETE,
        &a.url(&format!("/fhir/Patient/{}", pids[4])),
        Some(clin),
        None,
        &[],
    )
    .await;
    assert_eq!(r.status, 204);
    assert_eq!(count!("family:exact=Silva"), 1);
    // Updates re-index.
    let r = send(
        Method::GET,
        &a.url(&format!("/fhir/Patient/{}", pids[3])),
        Some(clin),
        None,
        &[],
    )
    .await;
    let mut p = r.body.clone();
    p["name"][0]["family"] = json!("Silvano");
    let r = send(
        Method::PUT,
        &a.url(&format!("/fhir/Patient/{}", pids[3])),
        Some(clin),
        Some(&p.to_string()),
        &[],
    )
    .await;
    assert_eq!(r.status, 200, "{}", r.text);
    assert_eq!(count!("family=souza"), 0);
    assert_eq!(count!("family=silvano"), 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn search_on_sqlite() {
    let s = TestServer::start().await.unwrap();
    search_flow(&s, IsolationMode::Sqlite).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn search_on_postgres_modes() {
    let s = TestServer::start_with_pg_data(8).await.unwrap();
    for mode in [IsolationMode::PgSchema, IsolationMode::PgShared] {
        search_flow(&s, mode).await;
    }
}

async fn post_bundle(t: &T, token: &str, b: &Value) -> Resp {
    send(
        Method::POST,
        &t.url("/fhir"),
        Some(token),
        Some(&b.to_string()),
        &[],
    )
    .await
}

fn location_id(r: &Value, i: usize) -> String {
    let loc = r["entry"][i]["response"]["location"].as_str().unwrap();
    loc.split('/').nth(1).unwrap().to_owned()
}

async fn bundle_flow(s: &TestServer, mode: IsolationMode) {
    let tag = mode.as_str();
    let (a, tok) = hospital(s, &format!("bndl-a-{tag}"), mode).await;
    let (b, tok_b) = hospital(s, &format!("bndl-b-{tag}"), mode).await;
    let clin = tok["clinician"].as_str();
    let total = |t: &'static str, q: &'static str| {
        let url = a.url(&format!("/fhir/{t}?_summary=count&{q}"));
        let tk = tok["auditor"].clone();
        async move {
            send(Method::GET, &url, Some(&tk), None, &[]).await.body["total"]
                .as_u64()
                .unwrap()
        }
    };
    // A practitioner to refer to conditionally.
    let prac = json!({"resourceType": "Practitioner", "identifier": [{"system": "http://hl7.org/fhir/sid/us-npi", "value": "9999"}], "name": [{"family": "House"}]});
    assert_eq!(
        send(
            Method::POST,
            &a.url("/fhir/Practitioner"),
            Some(clin),
            Some(&prac.to_string()),
            &[]
        )
        .await
        .status,
        201
    );
    let tx = json!({"resourceType": "Bundle", "type": "transaction", "entry": [
        {"fullUrl": "urn:uuid:11111111-1111-1111-1111-111111111111",
         "resource": {"resourceType": "Patient", "identifier": [{"system": "urn:mrn", "value": "T1"}], "name": [{"family": "Transact"}]},
         "request": {"method": "POST", "url": "Patient", "ifNoneExist": "identifier=urn:mrn|T1"}},
        {"fullUrl": "urn:uuid:22222222-2222-2222-2222-222222222222",
         "resource": {"resourceType": "Encounter", "status": "finished", "class": {"code": "AMB"},
                      "subject": {"reference": "urn:uuid:11111111-1111-1111-1111-111111111111"},
                      "participant": [{"individual": {"reference": "Practitioner?identifier=http://hl7.org/fhir/sid/us-npi|9999"}}]},
         "request": {"method": "POST", "url": "Encounter"}},
        {"resource": {"resourceType": "Observation", "status": "final", "code": {"text": "x"},
                      "subject": {"reference": "urn:uuid:11111111-1111-1111-1111-111111111111"},
                      "encounter": {"reference": "urn:uuid:22222222-2222-2222-2222-222222222222"},
                      "valueQuantity": {"value": 3.10}},
         "request": {"method": "POST", "url": "Observation"}}
    ]});
    // serde_json would round 3.10; the client's text keeps it.
    let tx_text = tx.to_string().replace("\"value\":3.1}", "\"value\":3.10}");
    assert!(tx_text.contains("3.10"));
    let r = send(
        Method::POST,
        &a.url("/fhir"),
        Some(clin),
        Some(&tx_text),
        &[],
    )
    .await;
    assert_eq!(r.status, 200, "{}", r.text);
    assert_eq!(r.body["type"], "transaction-response");
    assert_eq!(r.body["entry"][0]["response"]["status"], "201 Created");
    let pid = location_id(&r.body, 0);
    let eid = location_id(&r.body, 1);
    let oid = location_id(&r.body, 2);
    let enc = send(
        Method::GET,
        &a.url(&format!("/fhir/Encounter/{eid}")),
        Some(clin),
        None,
        &[],
    )
    .await;
    assert_eq!(enc.body["subject"]["reference"], format!("Patient/{pid}"));
    assert!(
        enc.body["participant"][0]["individual"]["reference"]
            .as_str()
            .unwrap()
            .starts_with("Practitioner/")
    );
    let obs = send(
        Method::GET,
        &a.url(&format!("/fhir/Observation/{oid}")),
        Some(clin),
        None,
        &[],
    )
    .await;
    assert!(
        obs.text.contains("\"value\":3.10"),
        "lossless through bundles: {}",
        obs.text
    );
    assert!(!obs.text.contains("urn:uuid"));
    let r = send(
        Method::GET,
        &a.url(&format!("/fhir/Observation?patient={pid}&encounter={eid}")),
        Some(clin),
        None,
        &[],
    )
    .await;
    assert_eq!(ids_of(&r.body), vec![oid.clone()]);
    // The same transaction again: the patient exists (ifNoneExist), the rest is new.
    let r = post_bundle(&a, clin, &tx).await;
    assert_eq!(r.status, 200, "{}", r.text);
    assert_eq!(r.body["entry"][0]["response"]["status"], "200 OK");
    assert_eq!(location_id(&r.body, 0), pid);
    assert_eq!(total("Patient", "identifier=urn:mrn|T1").await, 1);
    assert_eq!(total("Encounter", "").await, 2);

    // Atomic: one bad entry and nothing of the bundle is written.
    let before = (total("Patient", "").await, total("Observation", "").await);
    let cases = [
        (
            json!({"resourceType": "Bundle", "type": "transaction", "entry": [
            {"resource": {"resourceType": "Patient"}, "request": {"method": "POST", "url": "Patient"}},
            {"resource": {"resourceType": "Observation", "status": "final", "code": {}, "subject": {"reference": "urn:uuid:99999999-0000-0000-0000-000000000000"}}, "request": {"method": "POST", "url": "Observation"}}]}),
            400,
        ),
        (
            json!({"resourceType": "Bundle", "type": "transaction", "entry": [
            {"resource": {"resourceType": "Patient"}, "request": {"method": "POST", "url": "Patient"}},
            {"resource": {"resourceType": "Observation", "status": "final", "code": {}, "subject": {"reference": "Practitioner?identifier=nobody|0"}}, "request": {"method": "POST", "url": "Observation"}}]}),
            412,
        ),
        (
            json!({"resourceType": "Bundle", "type": "transaction", "entry": [
            {"resource": {"resourceType": "Patient"}, "request": {"method": "POST", "url": "Patient"}},
            {"resource": {"resourceType": "Patient", "id": pid, "name": [{"family": "Late"}]}, "request": {"method": "PUT", "url": format!("Patient/{pid}"), "ifMatch": "W/\"7\""}}]}),
            412,
        ),
        (
            json!({"resourceType": "Bundle", "type": "transaction", "entry": [
            {"resource": {"resourceType": "Patient"}, "request": {"method": "POST", "url": "Patient"}},
            {"resource": {"resourceType": "Observation", "status": 3}, "request": {"method": "POST", "url": "Patient"}}]}),
            400,
        ),
        (json!({"resourceType": "Bundle", "type": "document"}), 400),
        (json!({"resourceType": "Patient"}), 400),
    ];
    for (bundle, status) in cases {
        let r = post_bundle(&a, clin, &bundle).await;
        assert_eq!(r.status, status, "{}", r.text);
        assert_eq!(r.body["resourceType"], "OperationOutcome");
    }
    assert_eq!(
        (total("Patient", "").await, total("Observation", "").await),
        before,
        "nothing written"
    );
    assert_eq!(
        send(
            Method::GET,
            &a.url(&format!("/fhir/Patient/{pid}")),
            Some(clin),
            None,
            &[]
        )
        .await
        .headers["etag"],
        "W/\"1\""
    );

    // Batch: entries stand alone; failures are reported per entry.
    let batch = json!({"resourceType": "Bundle", "type": "batch", "entry": [
        {"resource": {"resourceType": "Patient", "name": [{"family": "Batch"}]}, "request": {"method": "POST", "url": "Patient"}},
        {"resource": {"resourceType": "Patient", "id": "nope", "name": [{"family": "X"}]}, "request": {"method": "PUT", "url": "Patient/nope"}},
        {"request": {"method": "GET", "url": format!("Patient/{pid}")}},
        {"request": {"method": "DELETE", "url": format!("Observation/{oid}")}}
    ]});
    let r = post_bundle(&a, clin, &batch).await;
    assert_eq!(r.status, 200, "{}", r.text);
    assert_eq!(r.body["type"], "batch-response");
    let st: Vec<&str> = r.body["entry"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["response"]["status"].as_str().unwrap())
        .collect();
    assert_eq!(
        st,
        ["201 Created", "404 Not Found", "200 OK", "204 No Content"]
    );
    assert_eq!(
        r.body["entry"][1]["response"]["outcome"]["resourceType"],
        "OperationOutcome"
    );
    assert_eq!(total("Patient", "family=batch").await, 1);

    // Permissions and isolation: auditors cannot post bundles; B's conditional references
    // and ifNoneExist never see A's resources.
    assert_outcome(
        &post_bundle(&a, &tok["auditor"], &batch).await,
        403,
        "forbidden",
    );
    let r = post_bundle(&b, &tok_b["clinician"], &tx).await;
    assert_eq!(r.status, 412, "A's practitioner is not B's: {}", r.text);
    let r = post_bundle(
        &b,
        &tok_b["clinician"],
        &json!({"resourceType": "Bundle", "type": "batch", "entry": [
        {"request": {"method": "GET", "url": format!("Patient/{pid}")}}]}),
    )
    .await;
    assert_eq!(r.body["entry"][0]["response"]["status"], "404 Not Found");
    let only_patient =
        json!({"resourceType": "Bundle", "type": "transaction", "entry": [tx["entry"][0].clone()]});
    let r = post_bundle(&b, &tok_b["clinician"], &only_patient).await;
    assert_eq!(
        r.body["entry"][0]["response"]["status"], "201 Created",
        "A's T1 does not exist for B"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bundles_on_sqlite() {
    let s = TestServer::start().await.unwrap();
    bundle_flow(&s, IsolationMode::Sqlite).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bundles_on_postgres_modes() {
    let s = TestServer::start_with_pg_data(8).await.unwrap();
    for mode in [IsolationMode::PgSchema, IsolationMode::PgShared] {
        bundle_flow(&s, mode).await;
    }
}

/// The Synthea bundles, parsed, in load order.
pub fn synthea() -> Vec<(String, Value)> {
    tenantplane_testkit::synthea::bundles()
        .unwrap()
        .into_iter()
        .map(|(name, text)| (name, serde_json::from_str(&text).unwrap()))
        .collect()
}

async fn synthea_flow(s: &TestServer, mode: IsolationMode) {
    let tag = mode.as_str();
    let (a, tok) = hospital(s, &format!("syn-a-{tag}"), mode).await;
    let (b, tok_b) = hospital(s, &format!("syn-b-{tag}"), mode).await;
    let clin = tok["clinician"].as_str();
    let bundles = synthea();
    assert_eq!(bundles.len(), 22);
    // Expected counts, from the files: conditional creates count once per condition.
    let mut expected: std::collections::BTreeMap<String, usize> = Default::default();
    let mut conds: std::collections::BTreeSet<(String, String)> = Default::default();
    for (_, b) in &bundles {
        for e in b["entry"].as_array().unwrap() {
            let t = e["resource"]["resourceType"].as_str().unwrap().to_owned();
            match e["request"]["ifNoneExist"].as_str() {
                Some(c) => {
                    if conds.insert((t.clone(), c.to_owned())) {
                        *expected.entry(t).or_default() += 1;
                    }
                }
                None => *expected.entry(t).or_default() += 1,
            }
        }
    }
    let mut patients = Vec::new();
    for (name, bundle) in &bundles {
        let r = send(
            Method::POST,
            &a.url("/fhir"),
            Some(clin),
            Some(&bundle.to_string()),
            &[],
        )
        .await;
        assert_eq!(
            r.status,
            200,
            "{name}: {}",
            &r.text[..r.text.len().min(2000)]
        );
        let entries = r.body["entry"].as_array().unwrap();
        assert_eq!(entries.len(), bundle["entry"].as_array().unwrap().len());
        for e in entries {
            let st = e["response"]["status"].as_str().unwrap();
            assert!(
                st.starts_with("201") || st.starts_with("200"),
                "{name}: {e}"
            );
        }
        if bundle["type"] == "transaction" {
            patients.push((location_id(&r.body, 0), bundle.clone()));
        }
    }
    let count = |t: String, q: String| {
        let url = a.url(&format!("/fhir/{t}?_summary=count&{q}"));
        let tk = tok["auditor"].clone();
        async move {
            let r = send(Method::GET, &url, Some(&tk), None, &[]).await;
            assert_eq!(r.status, 200, "{}", r.text);
            r.body["total"].as_u64().unwrap() as usize
        }
    };
    for (t, n) in &expected {
        assert_eq!(count(t.clone(), String::new()).await, *n, "{t}");
    }
    assert_eq!(patients.len(), 20);
    // Per patient: their observations, vital signs, encounters, conditions, from the file.
    for (pid, bundle) in patients.iter().take(5) {
        let of = |t: &str, pred: &dyn Fn(&Value) -> bool| {
            bundle["entry"]
                .as_array()
                .unwrap()
                .iter()
                .filter(|e| e["resource"]["resourceType"] == t && pred(&e["resource"]))
                .count()
        };
        let vital = |r: &Value| {
            r["category"].as_array().is_some_and(|c| {
                c.iter().any(|c| {
                    c["coding"]
                        .as_array()
                        .is_some_and(|cs| cs.iter().any(|x| x["code"] == "vital-signs"))
                })
            })
        };
        assert_eq!(
            count("Observation".into(), format!("patient={pid}")).await,
            of("Observation", &|_| true)
        );
        assert_eq!(
            count(
                "Observation".into(),
                format!("patient={pid}&category=vital-signs")
            )
            .await,
            of("Observation", &vital)
        );
        assert_eq!(
            count("Encounter".into(), format!("patient={pid}")).await,
            of("Encounter", &|_| true)
        );
        assert_eq!(
            count("Condition".into(), format!("patient={pid}")).await,
            of("Condition", &|_| true)
        );
        assert_eq!(
            count("Immunization".into(), format!("patient={pid}")).await,
            of("Immunization", &|_| true)
        );
    }
    // Reloading the reference data creates nothing new (ifNoneExist).
    let before = count("Organization".into(), String::new()).await;
    let r = send(
        Method::POST,
        &a.url("/fhir"),
        Some(clin),
        Some(&bundles[0].1.to_string()),
        &[],
    )
    .await;
    assert_eq!(r.status, 200);
    assert_eq!(count("Organization".into(), String::new()).await, before);
    // The other hospital has none of it, and A's patient ids are unknown there.
    let r = send(
        Method::GET,
        &b.url("/fhir/Observation?_summary=count"),
        Some(&tok_b["clinician"]),
        None,
        &[],
    )
    .await;
    assert_eq!(r.body["total"], 0);
    let r = send(
        Method::GET,
        &b.url(&format!(
            "/fhir/Observation?patient={}&_summary=count",
            patients[0].0
        )),
        Some(&tok_b["clinician"]),
        None,
        &[],
    )
    .await;
    assert_eq!(r.body["total"], 0);
    // A patient transaction needs the reference data: on B it fails whole (412), nothing written.
    let r = send(
        Method::POST,
        &b.url("/fhir"),
        Some(&tok_b["clinician"]),
        Some(&patients[0].1.to_string()),
        &[],
    )
    .await;
    assert_eq!(r.status, 412, "{}", &r.text[..r.text.len().min(500)]);
    let r = send(
        Method::GET,
        &b.url("/fhir/Patient?_summary=count"),
        Some(&tok_b["clinician"]),
        None,
        &[],
    )
    .await;
    assert_eq!(r.body["total"], 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn synthea_loads_on_sqlite() {
    let s = TestServer::start().await.unwrap();
    synthea_flow(&s, IsolationMode::Sqlite).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn synthea_loads_on_postgres_modes() {
    let s = TestServer::start_with_pg_data(8).await.unwrap();
    for mode in [IsolationMode::PgSchema, IsolationMode::PgShared] {
        synthea_flow(&s, mode).await;
    }
}
