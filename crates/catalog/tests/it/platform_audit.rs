//! The platform audit log's conformance cases (part of `catalog_conformance!`).

use tenantplane_audit::{
    Category, Entry,
    chain::{ChainCheck, platform_genesis},
};
use tenantplane_catalog::{Catalog, platform_audit::PlatformAuditQuery};

fn op(action: &str, tenant: &str, at: i64) -> Entry {
    let mut e = Entry::now(Category::Operator, action, "E", "operator/ops".into())
        .entity(format!("Tenant/{tenant}"));
    e.recorded_ms = at;
    e
}

pub async fn platform_audit_chains_concurrent_appends(c: Catalog) {
    assert_eq!(c.platform_audit_head().await.unwrap(), None);
    // Concurrent appends each link to the one before.
    let mut tasks = Vec::new();
    for i in 0..8 {
        let c = c.clone();
        tasks.push(tokio::spawn(async move {
            c.append_platform_audit(&op("tenant-suspend", &format!("t{}", i % 2), 1_000 + i))
                .await
                .unwrap()
        }));
    }
    let mut seqs = Vec::new();
    for t in tasks {
        seqs.push(t.await.unwrap());
    }
    seqs.sort_unstable();
    assert_eq!(seqs, (1..=8).collect::<Vec<i64>>());
    let (head, hash) = c.platform_audit_head().await.unwrap().unwrap();
    assert_eq!(head, 8);
    let rows = c.platform_audit_after(0, 100).await.unwrap();
    let mut walk = ChainCheck::start(0, platform_genesis());
    for r in &rows {
        assert!(walk.next(r.seq, &r.entry, &r.hash));
    }
    let v = walk.finish(head, &hash);
    assert_eq!((v.checked, v.broken), (8, None));
    // Listing: newest first, filters, paging.
    let q = |f: fn(&mut PlatformAuditQuery)| {
        let mut q = PlatformAuditQuery {
            limit: 100,
            ..Default::default()
        };
        f(&mut q);
        q
    };
    let all = c.platform_audit(&q(|_| {})).await.unwrap();
    assert_eq!(all.len(), 8);
    assert!(all.windows(2).all(|w| w[0].seq > w[1].seq));
    let t0 = c
        .platform_audit(&q(|q| q.entity = Some("Tenant/t0".into())))
        .await
        .unwrap();
    assert_eq!(t0.len(), 4);
    let page = c
        .platform_audit(&q(|q| {
            q.before_seq = Some(3);
            q.limit = 5;
        }))
        .await
        .unwrap();
    assert_eq!(page.iter().map(|e| e.seq).collect::<Vec<_>>(), [2, 1]);
    let none = c
        .platform_audit(&q(|q| q.agent = Some("operator/else".into())))
        .await
        .unwrap();
    assert!(none.is_empty());
}
