//! The usage ledger across a crash: requests answered more than one flush interval before
//! `kill -9` are all in the ledger after the restart; acknowledged usage events are all
//! there; at most the last interval's requests are lost, never counted twice.

use std::time::Duration;

use serde_json::{Value, json};

use crate::{cli, code, serve};

const TOKEN: &str = "automation-token-0123456789abcdef";

fn get(rt: &tokio::runtime::Runtime, url: &str, token: Option<&str>) -> (u16, Value) {
    rt.block_on(async {
        let mut rb = reqwest::Client::new().get(url);
        if let Some(t) = token {
            rb = rb.bearer_auth(t);
        }
        let r = rb.send().await.unwrap();
        let st = r.status().as_u16();
        (st, r.json().await.unwrap_or(Value::Null))
    })
}

/// Requests of `slug` in the last hour, by the cost report.
fn requests(rt: &tokio::runtime::Runtime, base: &str, slug: &str) -> (u64, Value) {
    let (st, v) = get(
        rt,
        &format!("{base}/api/v1/costs?window=2h&aggregate=tenant"),
        Some(TOKEN),
    );
    assert_eq!(st, 200, "{v}");
    let row = &v["data"][0]["allocations"][slug];
    let n = row["requests"]
        .as_object()
        .map(|m| m.values().map(|x| x.as_u64().unwrap()).sum())
        .unwrap_or(0);
    (n, row["meters"].clone())
}

#[test]
fn the_ledger_loses_at_most_one_flush_interval_to_kill_9() {
    let rt = tokio::runtime::Runtime::new().unwrap();
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let tf = d.join("token");
    std::fs::write(&tf, TOKEN).unwrap();
    std::fs::write(
        d.join("tenantplane.toml"),
        "[metering]\nflush_interval_secs = 1\n\n[costs]\ncurrency = \"BRL\"\n\n[costs.prices]\ncpu_core_hour = \"1\"\nmeters = { \"inference-tokens\" = { category = \"ai\", per_unit = \"0.001\" } }\n",
    )
    .unwrap();
    let args = ["--bootstrap-token-file", tf.to_str().unwrap()];
    let mut s = serve(d, &args, &[]);
    let o = cli(
        d,
        &["tenant", "create", "ledger-hospital", "--name", "L"],
        &s.url,
        Some(TOKEN),
    );
    assert_eq!(code(&o), 0, "{}", String::from_utf8_lossy(&o.stderr));
    let tenant_get = |base: &str| {
        let (st, _) = get(
            &rt,
            &format!("{base}/t/ledger-hospital/.well-known/jwks.json"),
            None,
        );
        assert_eq!(st, 200);
    };
    for _ in 0..40 {
        tenant_get(&s.url);
    }
    // Acknowledged events are written at once, not at the next flush.
    let ack = rt.block_on(async {
        reqwest::Client::new()
            .post(format!("{}/api/v1/usage/events", s.url))
            .bearer_auth(TOKEN)
            .json(
                &json!({"events": [{"tenant": "ledger-hospital", "meter": "inference-tokens",
                "quantity": 1234, "idempotency_key": "crash-1"}]}),
            )
            .send()
            .await
            .unwrap()
            .status()
            .as_u16()
    });
    assert_eq!(ack, 200);
    // Two flush intervals pass: the 40 are in the ledger.
    std::thread::sleep(Duration::from_millis(2_500));
    for _ in 0..25 {
        tenant_get(&s.url);
    }
    s.child.kill().unwrap(); // SIGKILL, right after the last 25
    s.child.wait().unwrap();
    let s2 = serve(d, &args, &[]);
    let (n, meters) = requests(&rt, &s2.url, "ledger-hospital");
    assert!((40..=65).contains(&n), "{n} requests after the crash");
    assert_eq!(meters["inference-tokens"], "1234.000000");
    // A clean stop loses nothing: what this replica served is flushed on SIGTERM.
    let mut s2 = s2;
    for _ in 0..10 {
        tenant_get(&s2.url);
    }
    crate::sigterm(&mut s2);
    drop(s2);
    let s3 = serve(d, &args, &[]);
    let (m, _) = requests(&rt, &s3.url, "ledger-hospital");
    // The cost report's own requests are platform requests, never the tenant's.
    assert_eq!(m, n + 10, "a clean stop lost nothing");
    // The CLI: the report as a table and CSV, the statement as JSON and a printable page.
    let o = cli(
        d,
        &["costs", "report", "--window", "today"],
        &s3.url,
        Some(TOKEN),
    );
    assert_eq!(code(&o), 0, "{}", String::from_utf8_lossy(&o.stderr));
    let out = crate::stdout(&o);
    assert!(
        out.contains("ledger-hospital") && out.contains("amounts in BRL"),
        "{out}"
    );
    let o = cli(
        d,
        &["costs", "report", "--window", "today", "-o", "csv"],
        &s3.url,
        Some(TOKEN),
    );
    assert!(crate::stdout(&o).starts_with("windowStart,windowEnd,kind,name,currency,"));
    let o = cli(
        d,
        &["costs", "statement", "ledger-hospital", "-o", "json"],
        &s3.url,
        Some(TOKEN),
    );
    assert_eq!(code(&o), 0, "{}", String::from_utf8_lossy(&o.stderr));
    let st: Value = serde_json::from_str(&crate::stdout(&o)).unwrap();
    assert_eq!(st["slug"], "ledger-hospital");
    assert_eq!(st["usage"]["meters"]["inference-tokens"], "1234.000000");
    let page = d.join("statement.html");
    let o = cli(
        d,
        &[
            "costs",
            "statement",
            "ledger-hospital",
            "--html",
            page.to_str().unwrap(),
        ],
        &s3.url,
        Some(TOKEN),
    );
    assert_eq!(code(&o), 0);
    assert!(
        std::fs::read_to_string(&page)
            .unwrap()
            .contains("<h1>L</h1>")
    );
    // Bad input: a clear message and the invalid-input exit code.
    let o = cli(
        d,
        &["costs", "report", "--window", "fortnight"],
        &s3.url,
        Some(TOKEN),
    );
    assert_eq!(code(&o), 3, "{}", String::from_utf8_lossy(&o.stderr));
    assert!(String::from_utf8_lossy(&o.stderr).contains("unknown window"));
}
