//! Audit events: what the platform records about who did what.
//!
//! Three kinds of event form one family ([`AuditEvent`]):
//! - [`SecurityEvent`]s — denied cross-tenant attempts (a foreign tenant's token, a spoofed
//!   `X-Tenant-Id`, a foreign resource id or ID token), refresh-token replays, login lockouts;
//! - [`ClinicalAccess`]es — who read or wrote which medical record, when and from where;
//! - [`Activity`] — sign-ins and sessions, administrators' changes, operators' actions.
//!
//! Each event has a stored form, an [`Entry`] in FHIR `AuditEvent`'s vocabulary, kept in the
//! tenant's own store in a hash chain ([`chain`]) with signed checkpoints for pruning.
//!
//! Events carry ids and addresses only — never tokens, passwords or record content.
//!
//! Every event goes to the [`AuditLog`], which keeps the recent ones in bounded rings (one
//! [`Ring`] per kind, so a burst of record reads never evicts a lockout) and hands each batch
//! to its [`AuditSink`]s: the [`TelemetrySink`] (metrics and log lines) always, others (the
//! persistent, hash-chained log) plugged in at boot. Handlers only ever call
//! [`AuditLog::security`], [`AuditLog::access`] and [`AuditLog::accesses`].

#![forbid(unsafe_code)]

pub mod chain;
mod entry;
mod event;
mod log;
mod ring;
mod telemetry;

pub use entry::{Category, Entry, code_of, now_ms, outcome_of_status};
pub use event::{Activity, AuditEvent, ClinicalAccess, ClinicalAction, EventKind, SecurityEvent};
pub use log::{AuditLog, AuditSink};
pub use ring::Ring;
pub use telemetry::{TelemetrySink, TenantLabel};
