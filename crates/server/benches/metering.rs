//! What the request meter adds to a tenant request, side by side with metering off: the
//! same tiny handler behind a router, called in-process (no sockets), with and without the
//! gate's metering (route class, request and response bodies wrapped, the CPU clock read
//! around each poll, the usage recorded into the tenant's minute when the body ends), 1,000
//! tenants' minutes live in the meter, the RED metrics recorded into the Prometheus
//! recorder). Issue 15's target: < 2 µs plus the clock reads.

use std::{hint::black_box, sync::Arc};

use axum::{Router, body::Body, extract::Request, middleware::Next, routing::post};
use criterion::{Criterion, criterion_group, criterion_main};
use http_body_util::BodyExt as _;
use tenantplane_core::TenantId;
use tenantplane_metering::RequestMeter;
use tenantplane_server::usage_meter::Metered;
use tower::ServiceExt as _;

async fn handler(body: String) -> String {
    body
}

fn bench(c: &mut Criterion) {
    // The process-wide Prometheus recorder, as `serve` installs it: the RED metrics cost
    // what they cost in production.
    tenantplane_server::app::install_metrics();
    let rt = tokio::runtime::Builder::new_current_thread()
        .build()
        .unwrap_or_else(|_| unreachable!());
    let meter = Arc::new(RequestMeter::new());
    let tenants: Vec<TenantId> = (0..1_000).map(|_| TenantId::new()).collect();
    // The same middleware layer either way (the gate is one): only the metering differs.
    let plain = Router::new()
        .route("/fhir/Patient/{id}", post(handler))
        .layer(axum::middleware::from_fn(
            |req: Request, next: Next| async move { next.run(req).await },
        ));
    let m = meter.clone();
    let t = tenants.clone();
    let counter = Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let metered = Router::new()
        .route("/fhir/Patient/{id}", post(handler))
        .layer(axum::middleware::from_fn(
            move |mut req: Request, next: Next| {
                let m = m.clone();
                let i = counter.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                let tenant = t[i % t.len()];
                async move {
                    let charge = tenantplane_cpu::Charge::new();
                    let metered = Metered::start(
                        m,
                        tenant,
                        ("bench-hospital".into(), "small".into()),
                        charge.clone(),
                        &mut req,
                    );
                    let res = tenantplane_cpu::metered(charge, next.run(req)).await;
                    metered.finish(res)
                }
            },
        ));
    let rt = &rt;
    let run = |router: Router| {
        move || {
            rt.block_on(async {
                let req = Request::builder()
                    .method("POST")
                    .uri("/fhir/Patient/abc")
                    .body(Body::from("{\"resourceType\":\"Patient\"}"))
                    .unwrap_or_else(|_| unreachable!());
                let res = router
                    .clone()
                    .oneshot(req)
                    .await
                    .unwrap_or_else(|_| unreachable!());
                let bytes = res
                    .into_body()
                    .collect()
                    .await
                    .unwrap_or_else(|_| unreachable!());
                black_box(bytes.to_bytes().len())
            })
        }
    };
    let mut g = c.benchmark_group("tenant_request_in_process");
    let mut p = run(plain);
    g.bench_function("metering_off", |b| b.iter(&mut p));
    let mut q = run(metered);
    g.bench_function("metering_on", |b| b.iter(&mut q));
    g.finish();
    black_box(meter.usage().take().len());
}

criterion_group!(benches, bench);
criterion_main!(benches);
