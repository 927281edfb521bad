//! Audit sinks plugged in at boot receive every security event and clinical access of real
//! requests, batched per request, with ids only — no handler knows they are there.

use std::sync::{Arc, Mutex};

use reqwest::Method;
use tenantplane_audit::{AuditEvent, AuditSink, ClinicalAction, EventKind};
use tenantplane_core::IsolationMode;
use tenantplane_testkit::{TestServer, TestServerOptions};

use crate::fhir::{hospital, send};

#[derive(Debug, Default)]
struct Collect(Mutex<Vec<Vec<AuditEvent>>>);

impl AuditSink for Collect {
    fn record(&self, events: &[AuditEvent]) {
        self.0.lock().unwrap().push(events.to_vec());
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_sink_added_at_boot_sees_every_event() {
    let sink = Arc::new(Collect::default());
    let s = TestServer::start_with(TestServerOptions {
        audit_sinks: vec![sink.clone()],
        ..Default::default()
    })
    .await
    .unwrap();
    let (t, tok) = hospital(&s, "audited", IsolationMode::Sqlite).await;
    let base = t.url("/fhir");
    let body = r#"{"resourceType":"Patient","name":[{"family":"Sigilo"}]}"#;
    let r = send(
        Method::POST,
        &format!("{base}/Patient"),
        Some(&tok["clinician"]),
        Some(body),
        &[],
    )
    .await;
    assert_eq!(r.status, 201, "{}", r.text);
    let id = r.body["id"].as_str().unwrap().to_owned();
    let r = send(
        Method::GET,
        &format!("{base}/Patient/{id}"),
        Some(&tok["clinician"]),
        None,
        &[],
    )
    .await;
    assert_eq!(r.status, 200);
    let r = send(
        Method::GET,
        &format!("{base}/Patient?_count=5"),
        Some(&tok["clinician"]),
        None,
        &[],
    )
    .await;
    assert_eq!(r.status, 200);
    // A spoofed tenant header from an address that is no trusted proxy.
    let r = reqwest::Client::new()
        .get(format!("{}/api/tenant", s.url()))
        .header("x-tenant-id", "audited")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 404);

    let batches = sink.0.lock().unwrap().clone();
    let tenant = s.client.get_tenant("audited").await.unwrap().id;
    let clinical: Vec<_> = batches
        .iter()
        .flatten()
        .filter_map(|e| match e {
            AuditEvent::Clinical(c) if c.resource_id == id => Some(c.clone()),
            _ => None,
        })
        .collect();
    let actions: Vec<ClinicalAction> = clinical.iter().map(|c| c.action).collect();
    assert_eq!(
        actions,
        [
            ClinicalAction::Create,
            ClinicalAction::Read,
            ClinicalAction::Search
        ]
    );
    assert!(clinical.iter().all(|c| c.tenant_id == tenant
        && c.user_id.is_some()
        && c.resource_type == "Patient"
        && c.request_id.is_some()));
    assert!(
        batches.iter().flatten().any(|e| matches!(e,
            AuditEvent::Security(ev) if ev.kind == EventKind::SpoofedHeader)),
        "{batches:?}"
    );
    // Ids and addresses only: the record's content is in no event.
    let json = serde_json::to_string(&batches).unwrap();
    assert!(!json.contains("Sigilo"));
    // The built-in ring saw the same.
    assert!(
        s.control
            .audit()
            .recent_accesses()
            .iter()
            .any(|c| c.resource_id == id)
    );
}
