//! FHIR search over HTTP on every mode: parameters, paging, cursors, includes.

use super::*;

pub(crate) fn ids_of(b: &Value) -> Vec<String> {
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

pub(crate) async fn search_flow(s: &TestServer, mode: IsolationMode) {
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
    // `name` matches every part: family and given (stored once, as `family`/`given` rows).
    assert_eq!(count!("name=jo"), 2, "given names João and José");
    assert_eq!(count!("name=silv"), 3);
    assert_eq!(count!("name:exact=Maria"), 1);
    assert_eq!(count!("name:contains=ouz"), 1, "Souza");
    assert_eq!(
        count!("name=maria&family=silva"),
        1,
        "AND across parameters"
    );
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
                let other_type = send(
                    Method::GET,
                    &a.url(&format!(
                        "/fhir/Observation?_count=2&_sort=_lastUpdated&_cursor={cursor}"
                    )),
                    Some(clin),
                    None,
                    &[],
                )
                .await;
                assert_outcome(&other_type, 400, "invalid");
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
pub(crate) async fn search_on_sqlite() {
    let s = TestServer::start().await.unwrap();
    search_flow(&s, IsolationMode::Sqlite).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
pub(crate) async fn search_on_postgres_modes() {
    let s = TestServer::start_with_pg_data(8).await.unwrap();
    for mode in [IsolationMode::PgSchema, IsolationMode::PgShared] {
        search_flow(&s, mode).await;
    }
}
