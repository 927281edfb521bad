//! Where versions live: the current one in `fhir_resources` only, the superseded ones in
//! `fhir_history` (records/5). A copy of the current version left in the history by an older
//! binary (where the migration could not remove it) is read once and does not stop the next
//! write.

use super::*;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn current_version_is_read_once_even_with_a_leftover_copy() {
    let s = TestServer::start().await.unwrap();
    let (a, tok) = hospital(&s, "hist-rows", IsolationMode::Sqlite).await;
    let clin = tok["clinician"].clone();
    let r = send(
        Method::POST,
        &a.url("/fhir/Patient"),
        Some(&clin),
        Some(r#"{"resourceType":"Patient","name":[{"family":"One"}]}"#),
        &[],
    )
    .await;
    assert_eq!(r.status, 201, "{}", r.text);
    let id = r.body["id"].as_str().unwrap().to_owned();
    let url = a.url(&format!("/fhir/Patient/{id}"));
    let v2 = format!(r#"{{"resourceType":"Patient","id":"{id}","name":[{{"family":"Two"}}]}}"#);
    assert_eq!(
        send(Method::PUT, &url, Some(&clin), Some(&v2), &[])
            .await
            .status,
        200
    );

    // The store holds version 1 in the history and version 2 as current, once each.
    let tenant = s.client.get_tenant("hist-rows").await.unwrap();
    let file = walk(&s.config.storage.data_dir)
        .into_iter()
        .find(|p| {
            p.file_name()
                .is_some_and(|n| n == format!("{}.db", tenant.id).as_str())
        })
        .expect("the tenant's store file");
    let db = rusqlite::Connection::open(&file).unwrap();
    let versions = |table: &str| -> Vec<i64> {
        db.prepare(&format!(
            "SELECT version FROM {table} WHERE id = ?1 ORDER BY version"
        ))
        .unwrap()
        .query_map([&id], |r| r.get(0))
        .unwrap()
        .collect::<Result<_, _>>()
        .unwrap()
    };
    assert_eq!(versions("fhir_history"), vec![1]);
    assert_eq!(versions("fhir_resources"), vec![2]);
    // What a pre-records/5 binary also kept: the current version in the history.
    db.execute(
        "INSERT INTO fhir_history (type, id, version, last_updated, deleted, doc) \
         SELECT type, id, version, last_updated, deleted, doc FROM fhir_resources WHERE id = ?1",
        [&id],
    )
    .unwrap();
    drop(db);

    let h = send(
        Method::GET,
        &format!("{url}/_history"),
        Some(&clin),
        None,
        &[],
    )
    .await;
    assert_eq!(h.body["total"], 2, "{}", h.text);
    let listed: Vec<&str> = h.body["entry"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["resource"]["meta"]["versionId"].as_str().unwrap())
        .collect();
    assert_eq!(listed, ["2", "1"]);
    for (v, family) in [(1, "One"), (2, "Two")] {
        let r = send(
            Method::GET,
            &format!("{url}/_history/{v}"),
            Some(&clin),
            None,
            &[],
        )
        .await;
        assert_eq!(r.status, 200);
        assert_eq!(r.body["name"][0]["family"], family);
    }
    // Writing over it: the superseded version is already in the history (the copy), which
    // must not fail the update or the delete.
    let v3 = format!(r#"{{"resourceType":"Patient","id":"{id}","name":[{{"family":"Three"}}]}}"#);
    let r = send(Method::PUT, &url, Some(&clin), Some(&v3), &[]).await;
    assert_eq!(r.status, 200, "{}", r.text);
    let r = send(Method::DELETE, &url, Some(&clin), None, &[]).await;
    assert_eq!(r.status, 204, "{}", r.text);
    let h = send(
        Method::GET,
        &format!("{url}/_history"),
        Some(&clin),
        None,
        &[],
    )
    .await;
    assert_eq!(h.body["total"], 4, "{}", h.text);
    let r = send(
        Method::GET,
        &format!("{url}/_history/3"),
        Some(&clin),
        None,
        &[],
    )
    .await;
    assert_eq!(r.body["name"][0]["family"], "Three");
}

fn walk(dir: &std::path::Path) -> Vec<std::path::PathBuf> {
    let mut out = Vec::new();
    for e in std::fs::read_dir(dir).into_iter().flatten().flatten() {
        let p = e.path();
        if p.is_dir() {
            out.extend(walk(&p));
        } else {
            out.push(p);
        }
    }
    out
}
