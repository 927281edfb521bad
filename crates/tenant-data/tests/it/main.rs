//! Integration tests of the tenant-data crate on real SQLite files and a real throwaway
//! PostgreSQL (plus PgBouncer in transaction mode).
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod audit_log;
mod conformance;
mod pg_database;
mod pg_modes;
mod sqlite_registry;
