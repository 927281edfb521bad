//! The asynchronous audit writer: the sink that puts every event in its tenant's own
//! hash-chained log (`tenantplane_tenant_data::audit_log`).
//!
//! Entries of writes are already in the store, committed with the change they record; for
//! those the sink only asks for a seal. Every other event (reads, searches, sign-ins,
//! denied attempts) is queued — a bounded queue, never blocking a request — and written by
//! [`run`] in one transaction per tenant and batch, sealed in the same transaction, at the
//! latest `flush` after it was queued.
//!
//! The loss window, stated: an event queued but not written yet is lost if the process is
//! killed (`kill -9`, power loss) — at most `flush` of events (250 ms by default). A full
//! queue (the stores far behind) drops the newest events and counts them in
//! `tenantplane_audit_dropped_total{reason="queue-full"}`; a store that refuses a batch three
//! times counts `reason="store"`. Both are alerted on (`deploy/prometheus/rules.yml`). A
//! graceful stop writes everything queued.

use std::{collections::HashMap, sync::Arc, time::Duration};

use tenantplane_audit::{AuditEvent, AuditSink, Entry};
use tenantplane_core::TenantId;
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;

use crate::Control;

enum Job {
    /// An event to write (made into its entry on the writer's side, off the request path).
    Write(TenantId, Box<AuditEvent>),
    Seal(TenantId),
}

/// The sending half: an [`AuditSink`] plugged into the audit log at boot.
#[derive(Debug, Clone)]
pub struct AuditQueue {
    tx: mpsc::Sender<Job>,
}

impl std::fmt::Debug for Job {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::Write(t, _) => write!(f, "Write({t})"),
            Self::Seal(t) => write!(f, "Seal({t})"),
        }
    }
}

/// The receiving half, for [`run`].
#[derive(Debug)]
pub struct AuditQueueReceiver {
    rx: mpsc::Receiver<Job>,
}

impl AuditQueueReceiver {
    /// Receives and discards until every sender is gone; how many (benchmarks of the
    /// request path, where the writer's database work is measured apart).
    /// Like the writer, it wakes every 250 ms and takes what came meanwhile.
    pub fn discard_blocking(mut self) -> usize {
        let mut n = 0;
        loop {
            std::thread::sleep(std::time::Duration::from_millis(250));
            while self.rx.try_recv().is_ok() {
                n += 1;
            }
            if self.rx.is_closed() && self.rx.is_empty() {
                return n;
            }
        }
    }
}

/// A queue of `capacity` events.
pub fn queue(capacity: usize) -> (AuditQueue, AuditQueueReceiver) {
    let (tx, rx) = mpsc::channel(capacity.max(1));
    (AuditQueue { tx }, AuditQueueReceiver { rx })
}

impl AuditSink for AuditQueue {
    fn record(&self, events: &[AuditEvent]) {
        let mut sealed: Option<TenantId> = None;
        for ev in events {
            let Some(tenant) = ev.tenant_id() else {
                continue;
            };
            let job = if ev.in_store() {
                if sealed == Some(tenant) {
                    continue;
                }
                sealed = Some(tenant);
                Job::Seal(tenant)
            } else {
                Job::Write(tenant, Box::new(ev.clone()))
            };
            if self.tx.try_send(job).is_err() {
                metrics::counter!("tenantplane_audit_dropped_total", "reason" => "queue-full")
                    .increment(1);
            }
        }
    }
}

/// How the writer runs.
#[derive(Debug, Clone, Copy)]
pub struct WriterPolicy {
    /// The longest an event waits in the queue (the loss window).
    pub flush: Duration,
    /// Events written per batch at most.
    pub batch: usize,
}

impl Default for WriterPolicy {
    fn default() -> Self {
        Self {
            flush: Duration::from_millis(250),
            batch: 5_000,
        }
    }
}

/// Writes queued events until `done` is cancelled, then writes what is left and returns.
pub async fn run(
    control: Arc<Control>,
    mut q: AuditQueueReceiver,
    policy: WriterPolicy,
    done: CancellationToken,
) {
    let mut buf: Vec<Job> = Vec::with_capacity(policy.batch);
    loop {
        let stopping = tokio::select! {
            n = q.rx.recv_many(&mut buf, policy.batch) => {
                if n == 0 {
                    true
                } else {
                    // Let the flush window fill without listening (senders then wake no
                    // one), then take what came, up to a batch.
                    let until = tokio::time::Instant::now() + policy.flush;
                    tokio::select! {
                        () = tokio::time::sleep_until(until) => {}
                        _ = done.cancelled() => {}
                    }
                    while buf.len() < policy.batch {
                        match q.rx.try_recv() {
                            Ok(j) => buf.push(j),
                            Err(_) => break,
                        }
                    }
                    false
                }
            }
            _ = done.cancelled() => true,
        };
        if stopping {
            // Everything still queued (senders live as long as the server).
            while let Ok(j) = q.rx.try_recv() {
                buf.push(j);
            }
        }
        metrics::gauge!("tenantplane_audit_queue_depth").set(q.rx.len() as f64);
        write(&control, std::mem::take(&mut buf)).await;
        if stopping {
            break;
        }
    }
}

async fn write(control: &Control, jobs: Vec<Job>) {
    if jobs.is_empty() {
        return;
    }
    let mut by_tenant: HashMap<TenantId, Vec<Entry>> = HashMap::new();
    for j in jobs {
        match j {
            Job::Write(t, e) => by_tenant.entry(t).or_default().push(Entry::of(&e)),
            Job::Seal(t) => {
                by_tenant.entry(t).or_default();
            }
        }
    }
    for (tenant, entries) in by_tenant {
        let Some(t) = control.index().get(&tenant) else {
            // Erased with its store (or never known here): nothing to write to.
            metrics::counter!("tenantplane_audit_dropped_total", "reason" => "no-tenant")
                .increment(entries.len() as u64);
            continue;
        };
        let n = entries.len() as u64;
        let mut tries = 0;
        loop {
            tries += 1;
            let started = std::time::Instant::now();
            let r = match control.data().handle(&t) {
                Ok(db) if entries.is_empty() => tenantplane_tenant_data::audit_log::seal(db)
                    .await
                    .map(|_| ()),
                Ok(db) => tenantplane_tenant_data::audit_log::append(db, entries.clone())
                    .await
                    .map(|_| ()),
                Err(e) => Err(e),
            };
            match r {
                Ok(()) => {
                    metrics::counter!("tenantplane_audit_written_total").increment(n);
                    metrics::histogram!("tenantplane_audit_write_duration_seconds")
                        .record(started.elapsed().as_secs_f64());
                    break;
                }
                Err(e) if tries < 3 => {
                    tracing::warn!(tenant_id = %tenant, error = %e, "audit batch not written; retrying");
                    tokio::time::sleep(Duration::from_millis(100 * tries)).await;
                }
                Err(e) => {
                    tracing::error!(tenant_id = %tenant, error = %e, entries = n,
                        "audit batch not written");
                    metrics::counter!("tenantplane_audit_dropped_total", "reason" => "store")
                        .increment(n);
                    break;
                }
            }
        }
    }
}
