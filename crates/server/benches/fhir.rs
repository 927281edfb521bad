//! FHIR benchmark (not criterion: whole-system scenarios over HTTP on 127.0.0.1 only).
//!
//! `cargo bench -p tenantplane-server --bench fhir`, per mode (sqlite, pg-schema, pg-shared
//! on a throwaway PostgreSQL with fsync off):
//!
//! A. transaction-bundle ingest of the 20 Synthea patients (`crates/tenantplane/sample/synthea`; the
//!    hospital and practitioner batches are loaded first, untimed): resources/s;
//! B. patient read (`GET /fhir/Patient/{id}`), 4 clients for `TP_BENCH_SECS` (5) s: req/s,
//!    p50, p99;
//! C. `Observation?patient=X&category=vital-signs` with `TP_BENCH_TENANTS` (100) tenants
//!    loaded (each: the reference data and 2 patients) on sqlite, `TP_BENCH_PG_TENANTS`
//!    (100) on each PostgreSQL mode (three loaders at a time; ~4 min per 100 tenants there):
//!    p50 and p99 over 4 clients for `TP_BENCH_SECS` s, random tenant and patient each,
//!    twice (cold caches, then steady state).
//!
//! `TP_BENCH_MODES` (default `sqlite,pg-schema,pg-shared`) picks the modes.
//! Prints a Markdown report on stdout. `TP_BENCH_HOLD_SECS` keeps each PostgreSQL mode's
//! loaded cluster that long before C (its address on stderr) for `psql` and `EXPLAIN`;
//! `TENANTPLANE_PG_OPTS` passes server options (e.g. auto_explain) to the throwaway cluster.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::time::{Duration, Instant};

use serde_json::{Value, json};
use tenantplane_core::{IsolationMode, api::CreateTenant};
use tenantplane_testkit::{TestServer, TestServerOptions};

fn env_num(k: &str, d: u64) -> u64 {
    std::env::var(k)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(d)
}

/// The Synthea bundles in load order, each with whether it is a batch.
fn synthea() -> Vec<(bool, String)> {
    tenantplane_testkit::synthea::bundles()
        .unwrap()
        .into_iter()
        .map(|(_, s)| {
            let batch = s.contains("\"type\": \"batch\"") || s.contains("\"type\":\"batch\"");
            (batch, s)
        })
        .collect()
}

struct Hospital {
    url: String,
    token: String,
}

async fn hospital(s: &TestServer, slug: &str, mode: IsolationMode) -> Hospital {
    let v = s
        .client
        .create_tenant(&CreateTenant {
            slug: slug.into(),
            display_name: slug.into(),
            profile: Some(tenantplane_core::Profile::Hospital),
            isolation: Some(mode),
            plan: Some("large".into()),
            admin_email: Some(format!("admin@{slug}.example")),
            ..Default::default()
        })
        .await
        .unwrap();
    let otp = v.initial_admin.unwrap().one_time_password;
    let url = format!("{}/t/{slug}", s.url());
    let c = reqwest::Client::new();
    let t: Value = c
        .post(format!("{url}/auth/login"))
        .json(&json!({"email": format!("admin@{slug}.example"), "password": otp}))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let t: Value = c
        .post(format!("{url}/auth/password"))
        .bearer_auth(t["access_token"].as_str().unwrap())
        .json(&json!({"current_password": otp, "new_password": "a long benchmark passphrase"}))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    Hospital {
        url,
        token: t["access_token"].as_str().unwrap().to_owned(),
    }
}

async fn post_bundle(c: &reqwest::Client, h: &Hospital, b: &str) -> Value {
    let r = c
        .post(format!("{}/fhir", h.url))
        .bearer_auth(&h.token)
        .header("content-type", "application/fhir+json")
        .body(b.to_owned())
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    r.json().await.unwrap()
}

fn first_id(resp: &Value) -> String {
    resp["entry"][0]["response"]["location"]
        .as_str()
        .unwrap()
        .split('/')
        .nth(1)
        .unwrap()
        .to_owned()
}

fn pct(v: &mut [f64], p: f64) -> f64 {
    if v.is_empty() {
        return 0.0;
    }
    v.sort_by(|a, b| a.partial_cmp(b).unwrap());
    let i = ((v.len() as f64 - 1.0) * p).round() as usize;
    v[i]
}

/// Runs `f(i)` from 4 clients for `secs`; returns (requests/s, latencies in ms).
async fn drive<F, Fut>(secs: u64, f: F) -> (f64, Vec<f64>)
where
    F: Fn(u64) -> Fut + Clone + Send + 'static,
    Fut: std::future::Future<Output = bool> + Send,
{
    let deadline = Instant::now() + Duration::from_secs(secs);
    let start = Instant::now();
    let mut tasks = Vec::new();
    for w in 0..4u64 {
        let f = f.clone();
        tasks.push(tokio::spawn(async move {
            let mut lat = Vec::new();
            let mut i = w;
            while Instant::now() < deadline && lat.len() < 200_000 {
                let t = Instant::now();
                assert!(f(i).await);
                lat.push(t.elapsed().as_secs_f64() * 1000.0);
                i += 4;
            }
            lat
        }));
    }
    let mut all = Vec::new();
    for t in tasks {
        all.extend(t.await.unwrap());
    }
    (all.len() as f64 / start.elapsed().as_secs_f64(), all)
}

async fn run_mode(
    s: &TestServer,
    mode: IsolationMode,
    bundles: &[(bool, String)],
    secs: u64,
    tenants: u64,
) {
    let c = reqwest::Client::new();
    let tag = mode.as_str();
    let h = hospital(s, &format!("bench-{tag}"), mode).await;
    for (batch, b) in bundles.iter().filter(|(b, _)| *b) {
        let _ = batch;
        post_bundle(&c, &h, b).await;
    }
    // A. ingest.
    let tx: Vec<&String> = bundles
        .iter()
        .filter(|(b, _)| !*b)
        .map(|(_, s)| s)
        .collect();
    let resources: usize = tx
        .iter()
        .map(|b| {
            serde_json::from_str::<Value>(b).unwrap()["entry"]
                .as_array()
                .unwrap()
                .len()
        })
        .sum();
    let t0 = Instant::now();
    let mut patients = Vec::new();
    for b in &tx {
        patients.push(first_id(&post_bundle(&c, &h, b).await));
    }
    let ingest = t0.elapsed().as_secs_f64();
    // B. patient reads.
    let (url, tok, pids) = (h.url.clone(), h.token.clone(), patients.clone());
    let c2 = c.clone();
    let (rps, mut lat) = drive(secs, move |i| {
        let (c, url, tok) = (c2.clone(), url.clone(), tok.clone());
        let id = pids[(i as usize) % pids.len()].clone();
        async move {
            c.get(format!("{url}/fhir/Patient/{id}"))
                .bearer_auth(&tok)
                .send()
                .await
                .map(|r| r.status().is_success())
                .unwrap_or(false)
        }
    })
    .await;
    println!(
        "| {tag} | {resources} resources in {:.2} s = **{:.0} resources/s** | {:.0} req/s, p50 {:.2} ms, p99 {:.2} ms |",
        ingest,
        resources as f64 / ingest,
        rps,
        pct(&mut lat, 0.5),
        pct(&mut lat, 0.99)
    );
    // C. search across many tenants.
    let n = if mode == IsolationMode::Sqlite {
        tenants
    } else {
        env_num("TP_BENCH_PG_TENANTS", tenants)
    };
    // Three loaders at a time (one waits on PostgreSQL while another validates).
    let t1 = Instant::now();
    let next = std::sync::atomic::AtomicU64::new(0);
    let loader = || async {
        let mut out = Vec::new();
        loop {
            let k = next.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
            if k >= n {
                return out;
            }
            let hh = hospital(s, &format!("many-{tag}-{k}"), mode).await;
            for (_, b) in bundles.iter().filter(|(b, _)| *b) {
                post_bundle(&c, &hh, b).await;
            }
            let mut ps = Vec::new();
            for b in tx.iter().skip((k as usize * 2) % tx.len()).take(2) {
                ps.push(first_id(&post_bundle(&c, &hh, b).await));
            }
            out.push((k, (hh.url, hh.token, ps)));
        }
    };
    let (a, b, d) = tokio::join!(loader(), loader(), loader());
    let mut hs: Vec<_> = a.into_iter().chain(b).chain(d).collect();
    hs.sort_by_key(|(k, _)| *k);
    let hs: Vec<_> = hs.into_iter().map(|(_, h)| h).collect();
    let load = t1.elapsed().as_secs_f64();
    if mode != IsolationMode::Sqlite {
        // Diagnosis: keep the loaded cluster for `psql` / EXPLAIN for a while.
        let hold = env_num("TP_BENCH_HOLD_SECS", 0);
        if hold > 0 {
            eprintln!("holding {hold} s; tenants loaded: {n} in {tag}");
            tokio::time::sleep(Duration::from_secs(hold)).await;
        }
    }
    let hs = std::sync::Arc::new(hs);
    // Twice: the first pass meets cold caches (in pg-schema every pooled connection plans
    // its first query on each tenant's tables against an empty catalog cache), the
    // second the steady state.
    for pass in ["first pass", "second pass"] {
        let (hs, c3) = (hs.clone(), c.clone());
        let (rps, mut lat) = drive(secs, move |i| {
            let hs = hs.clone();
            let c = c3.clone();
            async move {
                let (url, tok, ps) = &hs[(i as usize * 7919) % hs.len()];
                let pid = &ps[(i as usize) % ps.len()];
                c.get(format!(
                    "{url}/fhir/Observation?patient={pid}&category=vital-signs"
                ))
                .bearer_auth(tok)
                .send()
                .await
                .map(|r| r.status().is_success())
                .unwrap_or(false)
            }
        })
        .await;
        println!(
            "| {tag} | search `Observation?patient&category=vital-signs`, {n} tenants loaded ({load:.0} s to load), {pass} | {:.0} req/s, p50 {:.2} ms, p99 {:.2} ms |",
            rps,
            pct(&mut lat, 0.5),
            pct(&mut lat, 0.99)
        );
    }
}

fn main() {
    if std::env::args().any(|a| a == "--list") {
        return;
    }
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    let secs = env_num("TP_BENCH_SECS", 5);
    let tenants = env_num("TP_BENCH_TENANTS", 100);
    let bundles = synthea();
    rt.block_on(async {
        let opts = || TestServerOptions {
            limits: Some(tenantplane_server::config::LimitsConfig {
                per_ip_per_minute: 0,
                per_tenant: false,
                login_per_ip_per_minute: u32::MAX,
                ..Default::default()
            }),
            ..Default::default()
        };
        println!(
            "| mode | A. ingest (20 Synthea patient transactions) | B. patient read (4 clients) |"
        );
        println!("|---|---|---|");
        let modes =
            std::env::var("TP_BENCH_MODES").unwrap_or_else(|_| "sqlite,pg-schema,pg-shared".into());
        let on = |m: IsolationMode| modes.split(',').any(|x| x.trim() == m.as_str());
        if on(IsolationMode::Sqlite) {
            let s = TestServer::start_with(opts()).await.unwrap();
            run_mode(&s, IsolationMode::Sqlite, &bundles, secs, tenants).await;
        }
        if !on(IsolationMode::PgSchema) && !on(IsolationMode::PgShared) {
            return;
        }
        let data_servers = tenantplane_testkit::server::pg_data_server("pg1", 20)
            .await
            .unwrap();
        if env_num("TP_BENCH_HOLD_SECS", 0) > 0 {
            for d in data_servers.values() {
                eprintln!("data server: {}", d.url);
            }
        }
        let s = TestServer::start_with(TestServerOptions {
            data_servers,
            ..opts()
        })
        .await
        .unwrap();
        for mode in [IsolationMode::PgSchema, IsolationMode::PgShared] {
            if on(mode) {
                run_mode(&s, mode, &bundles, secs, tenants).await;
            }
        }
    });
}
