//! Login throughput over real HTTP (loopback): the in-process server with the product's
//! default Argon2id cost (m = 19456 KiB, t = 2, p = 1), one tenant, one user.
//!
//! Reports one login's latency (criterion) and logins per second with 1, 2 and 4 clients
//! for 5 s each (bounded in count and time, 127.0.0.1 only).
//!
//! `cargo bench -p tenantplane-server --bench login`

use std::time::{Duration, Instant};

use criterion::{Criterion, criterion_group, criterion_main};
use tenantplane_core::api::CreateTenant;
use tenantplane_server::config::{IdentitySettings, LimitsConfig};
use tenantplane_testkit::{TestServer, TestServerOptions};

const PASSWORD: &str = "a long benchmark passphrase";

async fn setup() -> anyhow::Result<(TestServer, String)> {
    let s = TestServer::start_with(TestServerOptions {
        identity: Some(IdentitySettings::default()),
        limits: Some(LimitsConfig {
            per_ip_per_minute: 0,
            login_per_ip_per_minute: u32::MAX,
            per_tenant: false,
            ..Default::default()
        }),
        ..Default::default()
    })
    .await?;
    let v = s
        .client
        .create_tenant(&CreateTenant {
            slug: "bench-login".into(),
            display_name: "Bench".into(),
            admin_email: Some("admin@bench.example".into()),
            ..Default::default()
        })
        .await?;
    let otp = v
        .initial_admin
        .ok_or_else(|| anyhow::anyhow!("no admin"))?
        .one_time_password;
    let url = format!("{}/t/bench-login", s.url());
    let c = reqwest::Client::new();
    let t: serde_json::Value = c
        .post(format!("{url}/auth/login"))
        .json(&serde_json::json!({"email": "admin@bench.example", "password": otp}))
        .send()
        .await?
        .json()
        .await?;
    let access = t["access_token"].as_str().unwrap_or_default().to_owned();
    c.post(format!("{url}/auth/password"))
        .bearer_auth(access)
        .json(&serde_json::json!({"current_password": otp, "new_password": PASSWORD}))
        .send()
        .await?
        .error_for_status()?;
    Ok((s, url))
}

async fn login(c: &reqwest::Client, url: &str) -> bool {
    c.post(format!("{url}/auth/login"))
        .json(&serde_json::json!({"email": "admin@bench.example", "password": PASSWORD}))
        .send()
        .await
        .map(|r| r.status().is_success())
        .unwrap_or(false)
}

fn bench(c: &mut Criterion) {
    let Ok(rt) = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
    else {
        return;
    };
    let (server, url) = match rt.block_on(setup()) {
        Ok(x) => x,
        Err(e) => {
            eprintln!("setup failed: {e:#}");
            return;
        }
    };
    let client = reqwest::Client::new();
    let mut g = c.benchmark_group("login over HTTP (argon2id m=19456 KiB, t=2, p=1)");
    g.sample_size(20);
    g.bench_function("one login", |b| {
        b.iter(|| rt.block_on(login(&client, &url)))
    });
    g.finish();
    for clients in [1usize, 2, 4] {
        let (ok, secs) = rt.block_on(async {
            let start = Instant::now();
            let deadline = start + Duration::from_secs(5);
            let mut tasks = Vec::new();
            for _ in 0..clients {
                let (c, u) = (client.clone(), url.clone());
                tasks.push(tokio::spawn(async move {
                    let mut n = 0u64;
                    while Instant::now() < deadline && n < 10_000 {
                        if login(&c, &u).await {
                            n += 1;
                        }
                    }
                    n
                }));
            }
            let mut total = 0;
            for t in tasks {
                total += t.await.unwrap_or(0);
            }
            (total, start.elapsed().as_secs_f64())
        });
        eprintln!(
            "login throughput, {clients} client(s): {ok} logins in {secs:.1} s = {:.1} logins/s",
            ok as f64 / secs
        );
    }
    drop(server);
}

criterion_group!(benches, bench);
criterion_main!(benches);
