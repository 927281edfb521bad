//! CPU time attributed per tenant: a tenant running heavy searches is charged far more than
//! one sending light requests at the same time, in one process, and the charges never add
//! up to more than the process spent.

use super::*;

/// The process's CPU time (user + system), in nanoseconds, from `/proc/self/stat`.
fn process_cpu_nanos() -> u64 {
    let stat = std::fs::read_to_string("/proc/self/stat").unwrap();
    // Fields after the command name (which may hold spaces) start after the last ')'.
    let rest = &stat[stat.rfind(')').unwrap() + 2..];
    let f: Vec<&str> = rest.split_whitespace().collect();
    // utime and stime are fields 14 and 15 of the line: 11 and 12 after the state.
    let ticks: u64 = f[11].parse::<u64>().unwrap() + f[12].parse::<u64>().unwrap();
    // Linux reports them in USER_HZ, 100 per second on every supported architecture.
    ticks * 10_000_000
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cpu_time_is_charged_to_the_tenant_that_spent_it() {
    let s = TestServer::start().await.unwrap();
    let (a, ta) = hospital(&s, "heavy-hospital", IsolationMode::Sqlite).await;
    let (b, tb) = hospital(&s, "light-hospital", IsolationMode::Sqlite).await;
    // A holds 150 patients (one transaction Bundle); B none.
    let entries: Vec<serde_json::Value> = (0..150)
        .map(|i| {
            json!({"resource": {"resourceType": "Patient", "gender": "female",
                "name": [{"family": format!("Heavy{i}"), "given": ["Ana", "Maria"]}],
                "birthDate": "1980-04-02"},
             "request": {"method": "POST", "url": "Patient"}})
        })
        .collect();
    let bundle =
        json!({"resourceType": "Bundle", "type": "transaction", "entry": entries}).to_string();
    let r = send(
        Method::POST,
        &a.url("/fhir"),
        Some(&ta["clinician"]),
        Some(&bundle),
        &[],
    )
    .await;
    assert_eq!(r.status, 200, "{}", r.text);
    let before = (
        s.client
            .tenant_usage("heavy-hospital")
            .await
            .unwrap()
            .cpu_nanos,
        s.client
            .tenant_usage("light-hospital")
            .await
            .unwrap()
            .cpu_nanos,
        process_cpu_nanos(),
    );
    // At the same time: A reads its 150 patients in a page, B asks for one that does not exist.
    let heavy = async {
        for _ in 0..15 {
            let r = send(
                Method::GET,
                &a.url("/fhir/Patient?gender=female&_count=150&_total=accurate"),
                Some(&ta["clinician"]),
                None,
                &[],
            )
            .await;
            assert_eq!(r.status, 200, "{}", r.text);
        }
    };
    let light = async {
        for _ in 0..15 {
            let r = send(
                Method::GET,
                &b.url("/fhir/Patient/01a24b8b-6ad2-7259-9766-578d800a9291"),
                Some(&tb["clinician"]),
                None,
                &[],
            )
            .await;
            assert_eq!(r.status, 404, "{}", r.text);
        }
    };
    tokio::join!(heavy, light);
    let ua = s
        .client
        .tenant_usage("heavy-hospital")
        .await
        .unwrap()
        .cpu_nanos
        - before.0;
    let ub = s
        .client
        .tenant_usage("light-hospital")
        .await
        .unwrap()
        .cpu_nanos
        - before.1;
    let process = process_cpu_nanos() - before.2;
    assert!(ub > 0, "light requests cost something too");
    assert!(ua > 3 * ub, "heavy {ua} ns vs light {ub} ns");
    // The process also ran the test's client and the usage requests themselves; the
    // tenants' charges are part of what it spent, never more (plus one clock tick of
    // rounding in /proc).
    assert!(
        ua + ub <= process + 10_000_000,
        "charged {} ns, process {process} ns",
        ua + ub
    );
}
