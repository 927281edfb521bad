//! Audit events: what the platform records about who did what.
//!
//! Two kinds of event form one family ([`AuditEvent`]):
//! - [`SecurityEvent`]s — denied cross-tenant attempts (a foreign tenant's token, a spoofed
//!   `X-Tenant-Id`, a foreign resource id or ID token), refresh-token replays, login lockouts;
//! - [`ClinicalAccess`]es — who read or wrote which medical record, when and from where.
//!
//! Events carry ids and addresses only — never tokens, passwords or record content.
//!
//! Every event goes to the [`AuditLog`], which keeps the recent ones in bounded rings (one
//! [`Ring`] per kind, so a burst of record reads never evicts a lockout) and hands each batch
//! to its [`AuditSink`]s: the [`TelemetrySink`] (metrics and log lines) always, others (the
//! persistent, hash-chained log) plugged in at boot. Handlers only ever call
//! [`AuditLog::security`], [`AuditLog::access`] and [`AuditLog::accesses`].

#![forbid(unsafe_code)]

mod event;
mod log;
mod ring;
mod telemetry;

pub use event::{AuditEvent, ClinicalAccess, ClinicalAction, EventKind, SecurityEvent};
pub use log::{AuditLog, AuditSink};
pub use ring::Ring;
pub use telemetry::TelemetrySink;
