//! The request meter at the edge: wraps a tenant request's body and its response's body so
//! that, when the response has been sent (or the client went away), what the request used —
//! route class, status, body bytes in and out, wall time, CPU time — is recorded once for
//! its tenant ([`tenantplane_metering::RequestMeter::record_served`]: the usage ledger and
//! the RED metrics).

use std::{
    pin::Pin,
    sync::{
        Arc,
        atomic::{AtomicU64, Ordering},
    },
    task::{Context, Poll},
    time::Instant,
};

use axum::body::Body;
use bytes::Bytes;
use http_body::{Frame, SizeHint};
use tenantplane_core::TenantId;
use tenantplane_metering::{RequestMeter, RouteClass, Served};

pin_project_lite::pin_project! {
    /// A request body that counts the bytes read from it.
    struct CountedBody {
        #[pin]
        inner: Body,
        read: Arc<AtomicU64>,
    }
}

impl http_body::Body for CountedBody {
    type Data = Bytes;
    type Error = axum::Error;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, axum::Error>>> {
        let this = self.project();
        let polled = this.inner.poll_frame(cx);
        if let Poll::Ready(Some(Ok(f))) = &polled
            && let Some(d) = f.data_ref()
        {
            this.read.fetch_add(d.len() as u64, Ordering::Relaxed);
        }
        polled
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.inner.size_hint()
    }
}

/// The header carrying the synthetic uptime probe's key (see [`probe_key`]).
pub const PROBE_HEADER: &str = "x-tenantplane-probe";

/// This process's probe key: random, made at first use, never logged. A tenant request
/// carrying it is the uptime probe's own: it is not charged to the tenant, not counted by
/// the rate limits or the monthly quota.
pub fn probe_key() -> &'static str {
    static KEY: std::sync::OnceLock<String> = std::sync::OnceLock::new();
    KEY.get_or_init(|| {
        use rand::RngCore as _;
        let mut k = [0u8; 24];
        rand::rngs::OsRng.fill_bytes(&mut k);
        k.iter().map(|b| format!("{b:02x}")).collect()
    })
}

/// Whether `headers` carry this process's probe key (compared in constant time).
pub fn is_probe(headers: &axum::http::HeaderMap) -> bool {
    headers.get(PROBE_HEADER).is_some_and(|v| {
        bool::from(subtle::ConstantTimeEq::ct_eq(
            v.as_bytes(),
            probe_key().as_bytes(),
        ))
    })
}

/// The outermost layer: a request's CPU time from the first poll of the whole stack
/// (request id, tracing, host check, limits, dispatch) in a [`tenantplane_cpu::Charge`] the
/// gate hands to the tenant's meter once the tenant is known; platform requests' charges
/// are dropped.
pub async fn meter_cpu(
    mut req: axum::extract::Request,
    next: axum::middleware::Next,
) -> axum::response::Response {
    let charge = tenantplane_cpu::Charge::new();
    req.extensions_mut().insert(charge.clone());
    tenantplane_cpu::metered(charge, next.run(req)).await
}

/// What is known of a request when its response head is ready.
pub struct Metered {
    meter: Arc<RequestMeter>,
    tenant: TenantId,
    slug: Arc<str>,
    plan: Arc<str>,
    class: RouteClass,
    started: Instant,
    read: Arc<AtomicU64>,
    charge: tenantplane_cpu::Charge,
    /// The request's span (request id, tenant, user) for its access log line.
    span: tracing::Span,
}

impl Metered {
    /// Starts metering `req` of `tenant` (`slug` and `plan` label its metrics): its class,
    /// its clock, its body's byte count.
    pub fn start(
        meter: Arc<RequestMeter>,
        tenant: TenantId,
        (slug, plan): (Arc<str>, Arc<str>),
        charge: tenantplane_cpu::Charge,
        req: &mut axum::extract::Request,
    ) -> Self {
        let class = RouteClass::classify(req.method().as_str(), req.uri().path());
        let read = Arc::new(AtomicU64::new(0));
        let body = std::mem::take(req.body_mut());
        *req.body_mut() = Body::new(CountedBody {
            inner: body,
            read: read.clone(),
        });
        Self {
            meter,
            tenant,
            slug,
            plan,
            class,
            started: Instant::now(),
            read,
            charge,
            span: tracing::Span::current(),
        }
    }

    /// Wraps the response so the request is recorded when its body is done.
    pub fn finish(self, res: axum::response::Response) -> axum::response::Response {
        let status = res.status().as_u16();
        res.map(|inner| {
            Body::new(MeteredBody {
                inner,
                sent: 0,
                pending: Some((self, status)),
            })
        })
    }
}

fn record(m: Metered, status: u16, sent: u64) {
    let wall = u64::try_from(m.started.elapsed().as_nanos()).unwrap_or(u64::MAX);
    // One access line per tenant request, in its span (request id, tenant, user): no path
    // or query (a search's parameters can hold health data), no body, no header.
    m.span.in_scope(|| {
        tracing::info!(target: "tenantplane::access",
            class = m.class.as_str(), status, latency_ms = wall as f64 / 1e6,
            bytes_in = m.read.load(Ordering::Relaxed), bytes_out = sent,
            cpu_us = m.charge.nanos() / 1_000, "request");
    });
    m.meter.record_served(
        m.tenant,
        &m.slug,
        &m.plan,
        &Served {
            class: m.class,
            status,
            bytes_in: m.read.load(Ordering::Relaxed),
            bytes_out: sent,
            wall_nanos: wall,
            cpu_nanos: m.charge.nanos(),
        },
    );
}

pin_project_lite::pin_project! {
    /// A response body that records its request when it ends or is dropped.
    struct MeteredBody {
        #[pin]
        inner: Body,
        sent: u64,
        pending: Option<(Metered, u16)>,
    }

    impl PinnedDrop for MeteredBody {
        fn drop(this: Pin<&mut Self>) {
            let this = this.project();
            if let Some((m, status)) = this.pending.take() {
                record(m, status, *this.sent);
            }
        }
    }
}

impl http_body::Body for MeteredBody {
    type Data = Bytes;
    type Error = axum::Error;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, axum::Error>>> {
        let this = self.project();
        let polled = this.inner.poll_frame(cx);
        match &polled {
            Poll::Ready(Some(Ok(f))) => {
                if let Some(d) = f.data_ref() {
                    *this.sent += d.len() as u64;
                }
            }
            Poll::Ready(None) | Poll::Ready(Some(Err(_))) => {
                if let Some((m, status)) = this.pending.take() {
                    record(m, status, *this.sent);
                }
            }
            Poll::Pending => {}
        }
        polled
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.inner.size_hint()
    }
}
