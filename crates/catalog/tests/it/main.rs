//! Integration tests of the catalog crate: the conformance suite, run against every backend.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod conformance;
mod standby;
