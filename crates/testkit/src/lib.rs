//! Test harness for Tenantplane.
//!
//! - [`pg`]: a throwaway PostgreSQL cluster started from the locally installed binaries, one
//!   per test binary, with a fresh database per test.
//! - [`server`]: boots the real server in-process on an ephemeral loopback port with a
//!   temporary data directory and hands back a typed client.

pub mod pg;
pub mod prometheus;
pub mod proxy;
pub mod redis;
pub mod server;
pub mod synthea;

pub use server::{TestServer, TestServerOptions};
