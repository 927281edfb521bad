//! Attribution accuracy, on the real binary: tenant A makes CPU-heavy requests (sign-in
//! attempts, each an Argon2id hash) while tenant B sends light ones, at the same time, in
//! one server process; the CPU attributed to the two adds up to the process's own CPU time
//! (from /proc) within 10 %, and A is charged far more than B.

use std::time::Duration;

use serde_json::{Value, json};

use crate::{cli, code, serve};

const TOKEN: &str = "automation-token-0123456789abcdef";

/// The process's CPU time (user + system), in nanoseconds, from /proc.
fn process_cpu_nanos(pid: u32) -> u64 {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap();
    let rest = &stat[stat.rfind(')').unwrap() + 2..];
    let f: Vec<&str> = rest.split_whitespace().collect();
    (f[11].parse::<u64>().unwrap() + f[12].parse::<u64>().unwrap()) * 10_000_000
}

async fn cpu_of(base: &str, slug: &str) -> u64 {
    let v: Value = reqwest::Client::new()
        .get(format!("{base}/api/v1/tenants/{slug}/usage"))
        .bearer_auth(TOKEN)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    v["cpu_nanos"].as_u64().unwrap()
}

#[test]
fn attributed_cpu_matches_the_process_within_ten_percent() {
    let rt = tokio::runtime::Runtime::new().unwrap();
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let tf = d.join("token");
    std::fs::write(&tf, TOKEN).unwrap();
    let s = serve(
        d,
        &["--bootstrap-token-file", tf.to_str().unwrap()],
        &[
            ("TENANTPLANE__LIMITS__PER_IP_PER_MINUTE", "0"),
            ("TENANTPLANE__LIMITS__LOGIN_PER_IP_PER_MINUTE", "1000000"),
            ("TENANTPLANE__LIMITS__PER_TENANT", "false"),
            ("TENANTPLANE__METERING__FLUSH_INTERVAL_SECS", "1"),
        ],
    );
    for slug in ["heavy-a", "light-b"] {
        let o = cli(
            d,
            &["tenant", "create", slug, "--name", slug],
            &s.url,
            Some(TOKEN),
        );
        assert_eq!(code(&o), 0, "{}", String::from_utf8_lossy(&o.stderr));
    }
    let pid = s.child.id();
    let base = s.url.clone();
    let (measured, a, b) = rt.block_on(async {
        let c = reqwest::Client::new();
        // Warm up both tenants (first use opens their stores).
        for slug in ["heavy-a", "light-b"] {
            c.get(format!("{base}/t/{slug}/.well-known/jwks.json")).send().await.unwrap();
        }
        tokio::time::sleep(Duration::from_millis(1_500)).await;
        let (a0, b0) = (cpu_of(&base, "heavy-a").await, cpu_of(&base, "light-b").await);
        let p0 = process_cpu_nanos(pid);
        let heavy = async {
            for i in 0..60 {
                let r = c
                    .post(format!("{base}/t/heavy-a/auth/login"))
                    .json(&json!({"email": format!("nobody{i}@heavy.example"), "password": "not the password"}))
                    .send()
                    .await
                    .unwrap();
                assert_eq!(r.status().as_u16(), 401);
            }
        };
        let light = async {
            for _ in 0..300 {
                let r = c.get(format!("{base}/t/light-b/.well-known/jwks.json")).send().await.unwrap();
                assert_eq!(r.status().as_u16(), 200);
            }
        };
        tokio::join!(heavy, light);
        let p1 = process_cpu_nanos(pid);
        // Everything flushed (1 s interval), then read.
        tokio::time::sleep(Duration::from_millis(2_500)).await;
        let (a1, b1) = (cpu_of(&base, "heavy-a").await, cpu_of(&base, "light-b").await);
        (p1 - p0, a1 - a0, b1 - b0)
    });
    let attributed = a + b;
    eprintln!("process {measured} ns, attributed {attributed} ns (A {a}, B {b})");
    assert!(a > 10 * b, "heavy {a} ns vs light {b} ns");
    // /proc counts in 10 ms ticks: allow one tick each way.
    let tick = 10_000_000;
    assert!(
        attributed <= measured + 2 * tick,
        "charged more than spent: {attributed} > {measured}"
    );
    assert!(
        attributed as f64 >= 0.9 * measured as f64 - tick as f64,
        "attributed {attributed} ns of {measured} ns: under 90 %"
    );
}
