//! The Synthea sample loads completely on every mode; counts checked against the files.

use super::{bundles::location_id, *};

/// The Synthea bundles, parsed, in load order.
pub fn synthea() -> Vec<(String, Value)> {
    tenantplane_testkit::synthea::bundles()
        .unwrap()
        .into_iter()
        .map(|(name, text)| (name, serde_json::from_str(&text).unwrap()))
        .collect()
}

pub(crate) async fn synthea_flow(s: &TestServer, mode: IsolationMode) {
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
pub(crate) async fn synthea_loads_on_sqlite() {
    let s = TestServer::start().await.unwrap();
    synthea_flow(&s, IsolationMode::Sqlite).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
pub(crate) async fn synthea_loads_on_postgres_modes() {
    let s = TestServer::start_with_pg_data(8).await.unwrap();
    for mode in [IsolationMode::PgSchema, IsolationMode::PgShared] {
        synthea_flow(&s, mode).await;
    }
}
