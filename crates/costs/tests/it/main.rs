//! The allocation engine's integration tests: OpenCost's canonical mock set, and the
//! properties every report must hold.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod chargeback;
mod golden;
mod properties;
