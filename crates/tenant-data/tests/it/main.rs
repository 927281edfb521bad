//! Integration tests of the tenant-data crate on real SQLite files.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod pg_modes;
mod sqlite_registry;
