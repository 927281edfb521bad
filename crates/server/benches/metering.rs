//! What the request meter adds to a tenant request, side by side with metering off: the
//! same tiny handler behind a router, called in-process (no sockets), with and without the
//! gate's metering (route class, request and response bodies wrapped, the CPU clock read
//! around each poll, the usage recorded into the tenant's minute when the body ends), 1,000
//! tenants' minutes live in the meter, the RED metrics recorded into the Prometheus
//! recorder). Issue 15's target: < 2 µs plus the clock reads. A third variant adds what
//! issue 16's audit puts on the request path of a read: the clinical access recorded through
//! the audit log (telemetry counter and log line, the entry made and queued for the
//! asynchronous writer, whose database work is measured apart by `tenantplane-tenant-data`'s
//! `--bench audit`).

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
    // The audit log as `serve` builds it: tenants labelled by slug, the writer's queue (its
    // receiving end drained by a thread, as the writer task would).
    let (queue, rx) = tenantplane_control::audit_writer::queue(65_536);
    let drain = std::thread::spawn(move || rx.discard_blocking());
    let audit = Arc::new(
        tenantplane_audit::AuditLog::with_telemetry(
            10_000,
            50_000,
            tenantplane_audit::TelemetrySink::labelled(Arc::new(|_| Some("bench-hospital".into()))),
        )
        .with_sink(Arc::new(queue)),
    );
    let m = meter.clone();
    let t = tenants.clone();
    let counter = Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let log = audit.clone();
    let audited = Router::new()
        .route("/fhir/Patient/{id}", post(handler))
        .layer(axum::middleware::from_fn(
            move |mut req: Request, next: Next| {
                let m = m.clone();
                let log = log.clone();
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
                    log.access(tenantplane_audit::ClinicalAccess {
                        at: time::OffsetDateTime::now_utc(),
                        tenant_id: tenant,
                        user_id: Some(tenantplane_core::UserId::new()),
                        operator: None,
                        action: tenantplane_audit::ClinicalAction::Read,
                        resource_type: "Patient",
                        resource_id: "abc".into(),
                        status: 200,
                        peer: Some(std::net::IpAddr::from([10, 1, 2, 3])),
                        request_id: Some("bench-request".into()),
                        in_store: false,
                    });
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
    let mut r = run(audited);
    g.bench_function("metering_and_audit_on", |b| b.iter(&mut r));
    g.finish();
    black_box(meter.usage().take().len());
    drop(r);
    drop(audit);
    black_box(drain.join().unwrap_or(0));
}

criterion_group!(benches, bench);
criterion_main!(benches);
