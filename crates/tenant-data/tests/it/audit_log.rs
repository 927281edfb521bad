//! The audit log's conformance suite, in all four modes: append and seal, entries written
//! inside a component's transaction, search, the triggers, tamper detection behind the
//! server's back, pruning behind signed checkpoints, and isolation between tenants.

use tenantplane_audit::{
    Category, Entry,
    chain::{Break, CheckpointKey},
};
use tenantplane_core::{IsolationMode, Tenant};
use tenantplane_tenant_data::{
    TenantDb,
    audit_log::{self, AuditQuery},
    pg::{tenant_database, tenant_schema},
};

use crate::conformance::Env;

fn key() -> CheckpointKey {
    CheckpointKey::from_seed([3; 32])
}

fn read(patient: &str, at: i64) -> Entry {
    let mut e = Entry::now(Category::Clinical, "read", "R", "user/u1".into())
        .entity(format!("Patient/{patient}"))
        .origin(Some("127.0.0.1".into()), Some("req-1".into()));
    e.recorded_ms = at;
    e
}

fn now() -> i64 {
    tenantplane_audit::now_ms()
}

/// Runs `sql` behind the server's back (a superuser, or the file itself), triggers off.
async fn behind_the_back(env: &Env, t: &Tenant, set: &str, seq: i64) {
    if env.mode == IsolationMode::Sqlite {
        let path = env.data.sqlite().path_of(&t.id);
        let c = rusqlite::Connection::open(path).unwrap();
        c.execute_batch(&format!(
            "DROP TRIGGER IF EXISTS audit_log_sealed_is_final;
             DROP TRIGGER IF EXISTS audit_log_pruned_only_past_a_checkpoint;
             {}",
            if set == "DELETE" {
                format!("DELETE FROM audit_log WHERE seq = {seq}")
            } else {
                format!("UPDATE audit_log SET {set} WHERE seq = {seq}")
            }
        ))
        .unwrap();
        return;
    }
    let url = env.pg_url.clone().unwrap();
    let url = match env.mode {
        IsolationMode::PgDatabase => {
            let (base, _) = url.rsplit_once('/').unwrap();
            format!("{base}/{}", tenant_database(&t.id))
        }
        _ => url,
    };
    let (c, conn) = tokio_postgres::connect(&url, tokio_postgres::NoTls)
        .await
        .unwrap();
    tokio::spawn(conn);
    let schema = match env.mode {
        IsolationMode::PgSchema => format!("\"{}\"", tenant_schema(&t.id)),
        IsolationMode::PgShared => "tp_shared".into(),
        _ => tenantplane_tenant_data::pg::DATABASE_SCHEMA.into(),
    };
    let stmt = if set == "DELETE" {
        format!(
            "DELETE FROM audit_log WHERE seq = {seq} AND tenant_id = '{}'",
            t.id
        )
    } else {
        format!(
            "UPDATE audit_log SET {set} WHERE seq = {seq} AND tenant_id = '{}'",
            t.id
        )
    };
    c.batch_execute(&format!(
        "SET session_replication_role = replica; SET search_path = {schema}; {stmt}"
    ))
    .await
    .unwrap();
}

async fn verify(env: &Env, t: &Tenant) -> audit_log::Verification {
    audit_log::verify(env.data.handle(t).unwrap(), &key())
        .await
        .unwrap()
}

pub async fn appended_entries_are_sealed_searchable_and_verify(env: Env) {
    let t = env.tenant("audited").await;
    let db = env.data.handle(&t).unwrap();
    let empty = verify(&env, &t).await;
    assert_eq!((empty.head_seq, empty.broken.clone()), (0, None));
    let at = now();
    audit_log::append(db, (0..3).map(|i| read(&format!("p{i}"), at + i)).collect())
        .await
        .unwrap();
    let mut login = Entry::now(Category::Login, "login-failed", "E", "anonymous".into())
        .outcome(4)
        .detail(&serde_json::json!({"username": "ana"}));
    login.recorded_ms = at + 10;
    audit_log::append(db, vec![login.clone()]).await.unwrap();
    let v = verify(&env, &t).await;
    assert_eq!(
        (v.checked, v.head_seq, v.unsealed, v.broken),
        (4, 4, 0, None)
    );

    // Newest first; every filter.
    let all = audit_log::search(
        db,
        AuditQuery {
            limit: 10,
            ..Default::default()
        },
    )
    .await
    .unwrap();
    assert_eq!(all.len(), 4);
    assert_eq!(all[0].entry, login);
    assert_eq!(all[0].seq, Some(4));
    assert!(all.windows(2).all(|w| w[0].id > w[1].id));
    let q = |f: fn(&mut AuditQuery)| {
        let mut q = AuditQuery {
            limit: 10,
            ..Default::default()
        };
        f(&mut q);
        audit_log::search(db, q)
    };
    assert_eq!(
        q(|q| q.entity = Some("Patient/p1".into()))
            .await
            .unwrap()
            .len(),
        1
    );
    assert_eq!(
        q(|q| q.agent = Some("user/u1".into())).await.unwrap().len(),
        3
    );
    assert_eq!(q(|q| q.outcome = Some(4)).await.unwrap().len(), 1);
    assert_eq!(q(|q| q.code = Some("R".into())).await.unwrap().len(), 3);
    assert_eq!(
        q(|q| q.category = Some(Category::Login))
            .await
            .unwrap()
            .len(),
        1
    );
    let page = audit_log::search(
        db,
        AuditQuery {
            limit: 2,
            before_id: Some(all[1].id),
            ..Default::default()
        },
    )
    .await
    .unwrap();
    assert_eq!(page, all[2..4].to_vec());
    let window = audit_log::search(
        db,
        AuditQuery {
            since_ms: Some(at + 1),
            until_ms: Some(at + 2),
            limit: 10,
            ..Default::default()
        },
    )
    .await
    .unwrap();
    assert_eq!(window.len(), 1);
    assert_eq!(window[0].entry.entity.as_deref(), Some("Patient/p1"));
}

pub async fn entries_written_in_a_components_transaction_are_sealed_later(env: Env) {
    let t = env.tenant("in-tx").await;
    let db = env.data.handle(&t).unwrap();
    let e = read("x", now());
    match db {
        TenantDb::Sqlite(s) => {
            let e = e.clone();
            s.run(move |c| {
                let tx = c.transaction()?;
                audit_log::insert_sqlite(&tx, &[e])?;
                tx.commit()
            })
            .await
            .unwrap();
        }
        TenantDb::Pg(p) => {
            let e = e.clone();
            p.transaction(move |tx| Box::pin(async move { audit_log::insert_pg(tx, &[e]).await }))
                .await
                .unwrap();
        }
    }
    // A rolled-back change leaves no entry.
    if let TenantDb::Sqlite(s) = db {
        let e = e.clone();
        s.run(move |c| {
            let tx = c.transaction()?;
            audit_log::insert_sqlite(&tx, &[e])?;
            tx.rollback()
        })
        .await
        .unwrap();
    }
    let v = verify(&env, &t).await;
    assert_eq!((v.unsealed, v.head_seq), (1, 0));
    assert_eq!(audit_log::seal(db).await.unwrap(), 1);
    let v = verify(&env, &t).await;
    assert_eq!((v.unsealed, v.head_seq, v.broken), (0, 1, None));
    assert_eq!(audit_log::seal(db).await.unwrap(), 0);
}

pub async fn the_log_refuses_changes_and_verification_finds_edits_behind_its_back(env: Env) {
    let t = env.tenant("tampered").await;
    let db = env.data.handle(&t).unwrap();
    let at = now();
    audit_log::append(db, (0..5).map(|i| read(&format!("p{i}"), at + i)).collect())
        .await
        .unwrap();
    // Through the store, a sealed entry cannot be changed or deleted.
    let refused = match db {
        TenantDb::Sqlite(s) => s
            .run(|c| c.execute("UPDATE audit_log SET agent = 'user/x' WHERE seq = 2", []))
            .await
            .is_err(),
        TenantDb::Pg(p) => p
            .transaction(|tx| {
                Box::pin(async move {
                    tx.execute("UPDATE audit_log SET agent = 'user/x' WHERE seq = 2", &[])
                        .await
                })
            })
            .await
            .is_err(),
    };
    assert!(refused, "a sealed entry was changed through the store");
    let refused = match db {
        TenantDb::Sqlite(s) => s
            .run(|c| c.execute("DELETE FROM audit_log WHERE seq = 5", []))
            .await
            .is_err(),
        TenantDb::Pg(p) => p
            .transaction(|tx| {
                Box::pin(
                    async move { tx.execute("DELETE FROM audit_log WHERE seq = 5", &[]).await },
                )
            })
            .await
            .is_err(),
    };
    assert!(refused, "an entry was deleted through the store");
    assert_eq!(verify(&env, &t).await.broken, None);

    // Behind the server's back: the first altered entry is named.
    behind_the_back(&env, &t, "agent = 'user/someone-else'", 3).await;
    assert_eq!(
        verify(&env, &t).await.broken,
        Some(Break::Altered { seq: 3 })
    );
    // Pruning a broken chain is refused: no checkpoint vouches for it.
    let pruned = audit_log::prune(db, now() + 60_000, &key()).await.unwrap();
    assert_eq!(pruned, Err(Break::Altered { seq: 3 }));
}

pub async fn a_removed_entry_is_found(env: Env) {
    let t = env.tenant("gapped").await;
    let db = env.data.handle(&t).unwrap();
    audit_log::append(
        db,
        (0..4).map(|i| read(&format!("p{i}"), now() + i)).collect(),
    )
    .await
    .unwrap();
    behind_the_back(&env, &t, "DELETE", 2).await;
    assert_eq!(
        verify(&env, &t).await.broken,
        Some(Break::Gap { after: 1, next: 3 })
    );
    behind_the_back(&env, &t, "DELETE", 4).await;
    let v = verify(&env, &t).await;
    assert!(matches!(v.broken, Some(Break::Gap { .. })), "{v:?}");
}

pub async fn pruning_keeps_the_rest_verifiable_behind_a_signed_checkpoint(env: Env) {
    let t = env.tenant("pruned").await;
    let db = env.data.handle(&t).unwrap();
    let old = now() - 10 * 86_400_000;
    audit_log::append(
        db,
        (0..6).map(|i| read(&format!("old{i}"), old + i)).collect(),
    )
    .await
    .unwrap();
    audit_log::append(
        db,
        (0..3)
            .map(|i| read(&format!("new{i}"), now() + i))
            .collect(),
    )
    .await
    .unwrap();
    let cut = now() - 86_400_000;
    assert_eq!(
        audit_log::prune(db, cut, &key()).await.unwrap(),
        Ok(Some(6))
    );
    // Nothing more to prune.
    assert_eq!(audit_log::prune(db, cut, &key()).await.unwrap(), Ok(None));
    let left = audit_log::search(
        db,
        AuditQuery {
            limit: 100,
            ..Default::default()
        },
    )
    .await
    .unwrap();
    assert_eq!(left.len(), 3);
    let v = verify(&env, &t).await;
    assert_eq!(
        (v.checkpoint_seq, v.checked, v.head_seq, v.broken),
        (6, 3, 9, None)
    );
    // Entries past the checkpoint cannot be deleted through the store.
    let refused = match db {
        TenantDb::Sqlite(s) => s
            .run(|c| c.execute("DELETE FROM audit_log WHERE seq = 7", []))
            .await
            .is_err(),
        TenantDb::Pg(p) => p
            .transaction(|tx| {
                Box::pin(
                    async move { tx.execute("DELETE FROM audit_log WHERE seq = 7", &[]).await },
                )
            })
            .await
            .is_err(),
    };
    assert!(refused);
    // The chain goes on from the checkpoint.
    audit_log::append(db, vec![read("later", now())])
        .await
        .unwrap();
    assert_eq!(verify(&env, &t).await.broken, None);
    // A checkpoint signed by another key does not hold.
    let other = audit_log::verify(db, &CheckpointKey::from_seed([9; 32]))
        .await
        .unwrap();
    assert_eq!(other.broken, Some(Break::BadCheckpoint { seq: 6 }));
}

pub async fn tenants_never_see_each_others_entries(env: Env) {
    let a = env.tenant("audit-a").await;
    let b = env.tenant("audit-b").await;
    let (da, dbb) = (env.data.handle(&a).unwrap(), env.data.handle(&b).unwrap());
    audit_log::append(da, vec![read("a1", now()), read("a2", now())])
        .await
        .unwrap();
    audit_log::append(dbb, vec![read("b1", now())])
        .await
        .unwrap();
    let got = audit_log::search(
        dbb,
        AuditQuery {
            limit: 10,
            ..Default::default()
        },
    )
    .await
    .unwrap();
    assert_eq!(got.len(), 1);
    assert_eq!(got[0].entry.entity.as_deref(), Some("Patient/b1"));
    // A's ids are not B's.
    let a_rows = audit_log::search(
        da,
        AuditQuery {
            limit: 10,
            ..Default::default()
        },
    )
    .await
    .unwrap();
    for r in &a_rows {
        let hit = audit_log::search(
            dbb,
            AuditQuery {
                id: Some(r.id),
                limit: 1,
                ..Default::default()
            },
        )
        .await
        .unwrap();
        assert!(
            hit.iter()
                .all(|h| h.entry.entity.as_deref() == Some("Patient/b1"))
        );
    }
    let (va, vb) = (verify(&env, &a).await, verify(&env, &b).await);
    assert_eq!((va.head_seq, va.broken), (2, None));
    assert_eq!((vb.head_seq, vb.broken), (1, None));
    // Erasing B leaves A's log whole.
    env.data.drop_tenant(&b).await.unwrap();
    assert_eq!(verify(&env, &a).await.broken, None);
}

macro_rules! audit_log_conformance {
    ($($mode:ident => $iso:expr),* $(,)?) => {
        $(
            mod $mode {
                use super::*;

                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn appended_entries_are_sealed_searchable_and_verify() {
                    super::appended_entries_are_sealed_searchable_and_verify(Env::new($iso).await).await;
                }

                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn entries_written_in_a_components_transaction_are_sealed_later() {
                    super::entries_written_in_a_components_transaction_are_sealed_later(Env::new($iso).await).await;
                }

                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn the_log_refuses_changes_and_verification_finds_edits_behind_its_back() {
                    super::the_log_refuses_changes_and_verification_finds_edits_behind_its_back(Env::new($iso).await).await;
                }

                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn a_removed_entry_is_found() {
                    super::a_removed_entry_is_found(Env::new($iso).await).await;
                }

                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn pruning_keeps_the_rest_verifiable_behind_a_signed_checkpoint() {
                    super::pruning_keeps_the_rest_verifiable_behind_a_signed_checkpoint(Env::new($iso).await).await;
                }

                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn tenants_never_see_each_others_entries() {
                    super::tenants_never_see_each_others_entries(Env::new($iso).await).await;
                }
            }
        )*
    };
}

audit_log_conformance! {
    sqlite => IsolationMode::Sqlite,
    pg_database => IsolationMode::PgDatabase,
    pg_schema => IsolationMode::PgSchema,
    pg_shared => IsolationMode::PgShared,
}
