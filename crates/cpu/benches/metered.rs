//! What metering adds to a request: a future that yields once (two polls), run plain and
//! metered, on a current-thread runtime (issue 15's target: < 2 µs plus the clock reads).

use std::hint::black_box;

use criterion::{Criterion, criterion_group, criterion_main};
use tenantplane_cpu::{Charge, metered};

fn bench(c: &mut Criterion) {
    let rt = tokio::runtime::Builder::new_current_thread()
        .build()
        .unwrap_or_else(|_| unreachable!());
    let mut g = c.benchmark_group("request_future_two_polls");
    g.bench_function("plain", |b| {
        b.iter(|| rt.block_on(async { tokio::task::yield_now().await }))
    });
    g.bench_function("metered", |b| {
        b.iter(|| {
            let charge = Charge::new();
            rt.block_on(metered(charge.clone(), async {
                tokio::task::yield_now().await
            }));
            black_box(charge.nanos())
        })
    });
    g.bench_function("one_thread_clock_read", |b| {
        b.iter(|| black_box(cpu_time::ThreadTime::now()))
    });
    g.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
