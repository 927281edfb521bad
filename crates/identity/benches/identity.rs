//! Identity micro-benchmarks: access-token verification (signature + claims), token
//! signing, and Argon2id at the product's default cost.
//!
//! `cargo bench -p tenantplane-identity --bench identity`

use criterion::{Criterion, criterion_group, criterion_main};
use tenantplane_core::{TenantId, UserId};
use tenantplane_identity::{
    keys::{KeyStatus, PlatformKey},
    password::{Argon2Params, Hasher},
    tokens,
};

fn bench(c: &mut Criterion) {
    let platform = PlatformKey::generate();
    let tenant = TenantId::new();
    let keys = tenantplane_identity::keys::bench_keys(&platform, tenant);
    let claims = tokens::claims(
        tenant,
        UserId::new(),
        uuid::Uuid::now_v7(),
        vec!["clinician".parse().unwrap_or_else(|_| unreachable!())],
        900,
        false,
    );
    let Ok(token) = tokens::sign(&keys, &claims) else {
        return;
    };
    let _ = KeyStatus::Active;
    c.bench_function("access token verify (EdDSA + claims)", |b| {
        b.iter(|| tokens::verify(std::hint::black_box(&token), &keys).is_ok())
    });
    let cache = tokens::VerifiedCache::new();
    c.bench_function("access token verify, cached (same token again)", |b| {
        b.iter(|| cache.verify(std::hint::black_box(&token), &keys).is_ok())
    });
    c.bench_function("access token sign", |b| {
        b.iter(|| tokens::sign(&keys, std::hint::black_box(&claims)).is_ok())
    });
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build();
    let Ok(rt) = rt else { return };
    let Ok(h) = Hasher::new(Argon2Params::default(), 2) else {
        return;
    };
    let Ok(hash) = rt.block_on(h.hash("correct horse battery staple".into())) else {
        return;
    };
    let mut g = c.benchmark_group("argon2id default (m=19456 KiB, t=2, p=1)");
    g.sample_size(20);
    g.bench_function("verify", |b| {
        b.iter(|| {
            rt.block_on(h.verify("correct horse battery staple".into(), Some(hash.clone())))
                .is_ok()
        })
    });
    g.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
