//! Rate-limit layer cost: one per-IP check (GCRA, keyed), one per-tenant check, the
//! memory held for 100,000 distinct client addresses, and — side by side — one check of the
//! shared limiter (the GCRA script on a throwaway `redis-server` over loopback).
//!
//! `cargo bench -p tenantplane-server --bench limits`

use std::net::{IpAddr, Ipv4Addr};

use criterion::{Criterion, criterion_group, criterion_main};
use tenantplane_core::TenantId;
use tenantplane_server::{config::LimitsConfig, limits::Limits};

fn rss_kib() -> f64 {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("VmRSS:"))
                .and_then(|l| l.split_whitespace().nth(1)?.parse::<f64>().ok())
        })
        .unwrap_or(0.0)
}

fn bench(c: &mut Criterion) {
    let l = Limits::new(LimitsConfig {
        per_ip_per_minute: u32::MAX,
        ..Default::default()
    });
    let ip = IpAddr::from(Ipv4Addr::new(10, 0, 0, 1));
    c.bench_function("per-IP check (hot address)", |b| {
        b.iter(|| l.check_ip(std::hint::black_box(ip)))
    });
    let t = TenantId::new();
    c.bench_function("per-tenant check", |b| {
        b.iter(|| l.check_tenant(std::hint::black_box(t), 1_000_000_000))
    });
    let before = rss_kib();
    let many = Limits::new(LimitsConfig::default());
    for i in 0..100_000u32 {
        let _ = many.check_ip(IpAddr::from(Ipv4Addr::from(0x0a00_0000 + i)));
    }
    let after = rss_kib();
    eprintln!(
        "limiter memory: {} addresses tracked, RSS +{:.1} MiB",
        many.tracked_ips(),
        (after - before) / 1024.0
    );

    let Ok(redis) = tenantplane_testkit::redis::RedisServer::start() else {
        eprintln!("redis-server not installed: shared-limit benchmark skipped");
        return;
    };
    let Ok(rt) = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
    else {
        return;
    };
    let Ok(shared) = rt.block_on(tenantplane_server::limits::redis::RedisGcra::connect(
        &redis.url(),
        "bench:",
        std::time::Duration::from_millis(500),
    )) else {
        eprintln!("redis did not answer: shared-limit benchmark skipped");
        return;
    };
    let local = Limits::new(LimitsConfig {
        per_ip_per_minute: u32::MAX,
        ..Default::default()
    });
    let mut g = c.benchmark_group("per-IP check, local vs shared (Redis over loopback)");
    g.bench_function("local (governor)", |b| {
        b.iter(|| local.check_ip(std::hint::black_box(ip)))
    });
    g.bench_function("shared (Redis GCRA script)", |b| {
        b.iter(|| {
            rt.block_on(shared.check("ip", "10.0.0.1", u32::MAX))
                .is_ok()
        })
    });
    g.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
