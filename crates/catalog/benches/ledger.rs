//! The usage ledger's size and speed, on both catalogs:
//!
//! - bytes per tenant per day: a busy tenant's day of minute rows (every route class,
//!   4xx/5xx, bytes, wall and CPU time, two custom meters: 15 meters a minute) written
//!   through `add_usage` in flush-sized batches, then rolled up to hours;
//! - flush throughput (rows per second of `add_usage`);
//! - the cost report's read: a 30-day window of hour rows for every tenant, in daily steps.
//!
//! `cargo bench -p tenantplane-catalog --bench ledger` (`TP_LEDGER_TENANTS`, default 100).
//! PostgreSQL is the testkit's throwaway cluster (sizes do not depend on fsync).
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::time::Instant;

use tenantplane_catalog::{
    Catalog,
    usage::{HOUR, MINUTE, UsageQuery, UsageRow},
};
use tenantplane_core::TenantId;

const METERS: [&str; 15] = [
    "requests:fhir-read",
    "requests:fhir-search",
    "requests:fhir-write",
    "requests:bundle",
    "requests:auth",
    "requests:tenant-admin",
    "requests:other",
    "status:4xx",
    "status:5xx",
    "bytes_in",
    "bytes_out",
    "wall_nanos",
    "cpu_nanos",
    "meter:inference-tokens",
    "meter:gpu-seconds",
];

/// 2026-11-01T00:00:00Z.
const DAY0: i64 = 1_793_491_200;

async fn bytes(c: &Catalog, sqlite: Option<&std::path::Path>, pg: Option<&str>) -> u64 {
    match (sqlite, pg) {
        (Some(p), _) => {
            // The file after a checkpoint and vacuum (pages in use).
            let conn = rusqlite::Connection::open(p).unwrap();
            conn.execute_batch("PRAGMA wal_checkpoint(TRUNCATE); VACUUM;")
                .unwrap();
            let pages: i64 = conn
                .query_row("PRAGMA page_count", [], |r| r.get(0))
                .unwrap();
            let size: i64 = conn
                .query_row("PRAGMA page_size", [], |r| r.get(0))
                .unwrap();
            (pages * size) as u64
        }
        (_, Some(url)) => {
            let (client, conn) = tokio_postgres::connect(url, tokio_postgres::NoTls)
                .await
                .unwrap();
            tokio::spawn(conn);
            client
                .batch_execute("VACUUM FULL usage_ledger")
                .await
                .unwrap();
            let r = client
                .query_one("SELECT pg_total_relation_size('usage_ledger')::bigint", &[])
                .await
                .unwrap();
            let _ = c;
            r.get::<_, i64>(0) as u64
        }
        _ => 0,
    }
}

async fn run(name: &str, c: Catalog, sqlite: Option<&std::path::Path>, pg: Option<&str>, n: usize) {
    let tenants: Vec<TenantId> = (0..n).map(|_| TenantId::new()).collect();
    let empty = bytes(&c, sqlite, pg).await;
    // One day of minute rows, flushed as a replica would every 5 s: each flush holds the
    // current minute of every tenant.
    let t0 = Instant::now();
    let mut rows_written = 0u64;
    for m in 0..1_440i64 {
        let mut batch = Vec::with_capacity(n * METERS.len());
        for t in &tenants {
            for (i, meter) in METERS.iter().enumerate() {
                batch.push(UsageRow {
                    tenant: *t,
                    bucket: DAY0 + m * MINUTE,
                    span: MINUTE,
                    meter: (*meter).to_owned(),
                    value: 1_000 + i as i64 * 7 + m,
                });
            }
        }
        rows_written += batch.len() as u64;
        c.add_usage(&batch).await.unwrap();
    }
    let write = t0.elapsed();
    let minute_bytes = bytes(&c, sqlite, pg).await - empty;
    let t1 = Instant::now();
    let moved = c.roll_up(DAY0 + 86_400).await.unwrap();
    let rollup = t1.elapsed();
    let hour_bytes = bytes(&c, sqlite, pg).await - empty;
    // 29 more days of hour rows, then the month's report read in daily steps.
    for d in 1..30i64 {
        let mut batch = Vec::new();
        for h in 0..24i64 {
            for t in &tenants {
                for meter in METERS {
                    batch.push(UsageRow {
                        tenant: *t,
                        bucket: DAY0 + d * 86_400 + h * HOUR,
                        span: HOUR,
                        meter: meter.to_owned(),
                        value: 60_000,
                    });
                }
            }
        }
        c.add_usage(&batch).await.unwrap();
    }
    let t2 = Instant::now();
    let sums = c
        .usage(&UsageQuery {
            from: DAY0,
            to: DAY0 + 30 * 86_400,
            step: 86_400,
            tenant: None,
        })
        .await
        .unwrap();
    let read = t2.elapsed();
    let t3 = Instant::now();
    let one = c
        .usage(&UsageQuery {
            from: DAY0,
            to: DAY0 + 30 * 86_400,
            step: 30 * 86_400,
            tenant: Some(tenants[0]),
        })
        .await
        .unwrap();
    let read_one = t3.elapsed();
    println!(
        "{name}: {n} tenants | minute rows: {} bytes/tenant/day ({rows_written} rows written in {:.2} s = {:.0} rows/s) \
         | rolled up ({moved} rows in {:.2} s): {} bytes/tenant/day | 30-day report read, daily steps: {} sums in {:.0} ms; one tenant's month: {} sums in {:.1} ms",
        minute_bytes / n as u64,
        write.as_secs_f64(),
        rows_written as f64 / write.as_secs_f64(),
        rollup.as_secs_f64(),
        hour_bytes / n as u64,
        sums.len(),
        read.as_secs_f64() * 1e3,
        one.len(),
        read_one.as_secs_f64() * 1e3,
    );
}

fn main() {
    let n: usize = std::env::var("TP_LEDGER_TENANTS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(100);
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    rt.block_on(async {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("catalog.db");
        let c = tenantplane_catalog::open(path.to_str().unwrap(), 4)
            .await
            .unwrap();
        c.migrate().await.unwrap();
        run("sqlite", c, Some(&path), None, n).await;
        let url = tenantplane_testkit::pg::fresh_database().await.unwrap();
        let c = tenantplane_catalog::open(&url, 4).await.unwrap();
        c.migrate().await.unwrap();
        run("postgres", c, None, Some(&url), n).await;
    });
}
