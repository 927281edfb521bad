//! `batch` and `transaction` Bundles on every mode.

use super::{search::ids_of, *};

pub(crate) async fn post_bundle(t: &T, token: &str, b: &Value) -> Resp {
    send(
        Method::POST,
        &t.url("/fhir"),
        Some(token),
        Some(&b.to_string()),
        &[],
    )
    .await
}

pub(crate) fn location_id(r: &Value, i: usize) -> String {
    let loc = r["entry"][i]["response"]["location"].as_str().unwrap();
    loc.split('/').nth(1).unwrap().to_owned()
}

pub(crate) async fn bundle_flow(s: &TestServer, mode: IsolationMode) {
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
pub(crate) async fn bundles_on_sqlite() {
    let s = TestServer::start().await.unwrap();
    bundle_flow(&s, IsolationMode::Sqlite).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
pub(crate) async fn bundles_on_postgres_modes() {
    let s = TestServer::start_with_pg_data(8).await.unwrap();
    for mode in [IsolationMode::PgSchema, IsolationMode::PgShared] {
        bundle_flow(&s, mode).await;
    }
}
