//! The FHIR R4 API over real HTTP, on SQLite, pg-schema and pg-shared: capability
//! statement, create/read/vread/update/delete/history with ETag, Last-Modified, Location,
//! `If-Match` and `Prefer`; OperationOutcome errors (each bad request changes nothing);
//! permissions per role; audit events; the module switch; another hospital's ids; the
//! patient and storage quotas, also under concurrent writes.

use reqwest::Method;
use serde_json::{Value, json};
use tenantplane_audit::EventKind;
use tenantplane_core::{IsolationMode, api::CreateTenant};
use tenantplane_testkit::TestServer;

use crate::{
    identity::{T, first_login, post, tenant_with_admin},
    new_tenant,
};

mod bundles;
mod cpu_usage;
mod history_rows;
mod module_and_quotas;
mod search;
mod store_samples;
mod synthea;
mod usage_ledger;

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
        .control
        .audit()
        .recent_security()
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
        .control
        .audit()
        .recent_security()
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
    let evs = s.control.audit().recent_accesses();
    let mine: Vec<_> = evs.iter().filter(|e| e.resource_id == id).collect();
    assert!(
        mine.iter()
            .any(|e| e.action == tenantplane_audit::ClinicalAction::Create)
    );
    assert!(
        mine.iter()
            .any(|e| e.action == tenantplane_audit::ClinicalAction::Delete)
    );
    assert!(
        mine.iter()
            .filter(|e| e.action == tenantplane_audit::ClinicalAction::Read)
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
