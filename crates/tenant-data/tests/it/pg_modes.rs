//! pg-schema and pg-shared against a real throwaway PostgreSQL: isolation enforced by the
//! handle and by row-level security, transaction-scoped context on pooled connections,
//! connection budget.

use std::time::Duration;

use tenantplane_core::{IsolationMode, Profile, Tenant};
use tenantplane_tenant_data::{
    DataError,
    migrate::{Migration, MigrationSet},
    pg::{PgServer, PgServerConfig, tenant_schema},
};

const NOTES: Migration = Migration {
    component: "notes",
    version: 1,
    name: "notes",
    sqlite: "CREATE TABLE notes (id INTEGER PRIMARY KEY, body TEXT NOT NULL)",
    postgres: "CREATE TABLE notes (
        tenant_id uuid NOT NULL DEFAULT NULLIF(current_setting('app.tenant_id', true), '')::uuid,
        id bigint GENERATED ALWAYS AS IDENTITY,
        body text NOT NULL,
        PRIMARY KEY (tenant_id, id));
      ALTER TABLE notes ENABLE ROW LEVEL SECURITY;
      ALTER TABLE notes FORCE ROW LEVEL SECURITY;
      CREATE POLICY tenant_isolation ON notes
        USING (tenant_id = NULLIF(current_setting('app.tenant_id', true), '')::uuid)
        WITH CHECK (tenant_id = NULLIF(current_setting('app.tenant_id', true), '')::uuid);",
};

fn tenant(slug: &str, mode: IsolationMode) -> Tenant {
    Tenant::new(
        slug.parse().unwrap(),
        slug.into(),
        Profile::Hospital,
        "small".parse().unwrap(),
        mode,
        time::OffsetDateTime::now_utc(),
    )
}

async fn server(budget: usize, wait_ms: u64) -> PgServer {
    let url = tenantplane_testkit::pg::fresh_database().await.unwrap();
    PgServer::connect(
        PgServerConfig {
            app_role: "tp_app".into(),
            budget,
            wait: Duration::from_millis(wait_ms),
            ..PgServerConfig::new("pg1", url)
        },
        std::sync::Arc::new(set()),
    )
    .await
    .unwrap()
}

fn set() -> MigrationSet {
    MigrationSet::new([NOTES]).unwrap()
}

/// A server with one connection, and a pg-shared and a pg-schema tenant provisioned on it.
async fn one_connection_two_tenants() -> (PgServer, Tenant, Tenant) {
    let s = server(1, 2000).await;
    let a = tenant("alpha-hospital", IsolationMode::PgShared);
    let b = tenant("bravo-hospital", IsolationMode::PgSchema);
    s.provision(&a).await.unwrap();
    s.provision(&b).await.unwrap();
    (s, a, b)
}

async fn insert(s: &PgServer, t: &Tenant, body: &str) {
    let body = body.to_owned();
    s.transaction(t, move |tx| {
        Box::pin(async move {
            tx.execute("INSERT INTO notes (body) VALUES ($1)", &[&body])
                .await
        })
    })
    .await
    .unwrap();
}

async fn count(s: &PgServer, t: &Tenant) -> i64 {
    s.transaction(t, |tx| {
        Box::pin(async move {
            Ok(tx
                .query_one("SELECT count(*) FROM notes", &[])
                .await?
                .get(0))
        })
    })
    .await
    .unwrap()
}

async fn isolation(mode: IsolationMode) {
    let s = server(4, 2000).await;
    let a = tenant("alpha-hospital", mode);
    let b = tenant("bravo-hospital", mode);
    for t in [&a, &b] {
        s.provision(t).await.unwrap();
    }
    assert!(
        s.provision(&a).await.unwrap().applied.is_empty(),
        "idempotent"
    );
    insert(&s, &a, "a1").await;
    insert(&s, &a, "a2").await;
    insert(&s, &b, "b1").await;
    assert_eq!((count(&s, &a).await, count(&s, &b).await), (2, 1));
    // B's unfiltered delete and update touch only B's rows.
    let n = s
        .transaction(&b, |tx| {
            Box::pin(async move { tx.execute("UPDATE notes SET body = 'x'", &[]).await })
        })
        .await
        .unwrap();
    assert_eq!(n, 1);
    let n = s
        .transaction(&b, |tx| {
            Box::pin(async move { tx.execute("DELETE FROM notes", &[]).await })
        })
        .await
        .unwrap();
    assert_eq!(n, 1);
    assert_eq!(count(&s, &a).await, 2);
    // Writing a row for another tenant is refused by the policy.
    let other = a.id.as_uuid().to_owned();
    let e = s
        .transaction(&b, move |tx| {
            Box::pin(async move {
                tx.execute(
                    "INSERT INTO notes (tenant_id, body) VALUES ($1, 'spoof')",
                    &[&other],
                )
                .await
            })
        })
        .await;
    assert!(matches!(e, Err(DataError::Db(_))), "{e:?}");
    assert_eq!(count(&s, &a).await, 2);

    // The application role, with no tenant set, sees nothing — and pooled connections keep
    // no context after a tenant transaction.
    let c = s.raw_app_client(None).await.unwrap();
    let table = match mode {
        IsolationMode::PgSchema => format!("\"{}\".notes", tenant_schema(&a.id)),
        _ => "tp_shared.notes".into(),
    };
    let n: i64 = c
        .query_one(&format!("SELECT count(*) FROM {table}"), &[])
        .await
        .unwrap()
        .get(0);
    assert_eq!(n, 0, "a query that forgets the tenant returns nothing");
    let ctx: Option<String> = c
        .query_one(
            "SELECT NULLIF(current_setting('app.tenant_id', true), '')",
            &[],
        )
        .await
        .unwrap()
        .get(0);
    assert_eq!(ctx, None);

    s.drop_tenant(&a).await.unwrap();
    s.drop_tenant(&a).await.unwrap();
    assert_eq!(count(&s, &b).await, 0);
    if mode == IsolationMode::PgShared {
        assert_eq!(count(&s, &a).await, 0, "rows deleted");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pg_schema_isolation() {
    isolation(IsolationMode::PgSchema).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pg_shared_isolation() {
    isolation(IsolationMode::PgShared).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_connection_interleaved_tenants_never_leak_context() {
    let (s, a, b) = one_connection_two_tenants().await;
    for i in 0..20 {
        let (t, other) = if i % 2 == 0 { (&a, &b) } else { (&b, &a) };
        insert(&s, t, "x").await;
        let seen: String = s
            .transaction(other, |tx| {
                Box::pin(async move {
                    Ok(tx
                        .query_one("SELECT current_setting('app.tenant_id')", &[])
                        .await?
                        .get(0))
                })
            })
            .await
            .unwrap();
        assert_eq!(seen, other.id.to_string());
    }
    assert_eq!((count(&s, &a).await, count(&s, &b).await), (10, 10));
}

/// `query_once` (BEGIN, context, statement, COMMIT pipelined in one round trip) on one
/// pooled connection: each call sees its own tenant's context and rows, a failing statement
/// leaves the connection clean and writes nothing, a write commits.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_round_trip_statements_keep_tenants_apart_on_one_connection() {
    use tokio_postgres::types::Type;
    let (s, a, b) = one_connection_two_tenants().await;
    insert(&s, &a, "a1").await;
    for i in 0..10 {
        let t = if i % 2 == 0 { &a } else { &b };
        let rows = s
            .query_once(
                t,
                "SELECT current_setting('app.tenant_id'), (SELECT count(*) FROM notes)",
                &[],
            )
            .await
            .unwrap();
        let (seen, n): (String, i64) = (rows[0].get(0), rows[0].get(1));
        assert_eq!(seen, t.id.to_string());
        assert_eq!(n, if i % 2 == 0 { 1 } else { 0 });
    }
    // A failing statement: an error, nothing written, the connection clean for the next.
    let body = "b1".to_owned();
    let e = s
        .query_once(
            &b,
            "INSERT INTO notes (body) VALUES ($1), (NULL)",
            &[(&body, Type::TEXT)],
        )
        .await;
    assert!(e.is_err());
    assert_eq!(count(&s, &b).await, 0);
    let rows = s
        .query_once(&a, "SELECT current_setting('app.tenant_id')", &[])
        .await
        .unwrap();
    assert_eq!(rows[0].get::<_, String>(0), a.id.to_string());
    // A write commits; outside a transaction the connection has no context.
    s.query_once(
        &b,
        "INSERT INTO notes (body) VALUES ($1)",
        &[(&body, Type::TEXT)],
    )
    .await
    .unwrap();
    assert_eq!((count(&s, &a).await, count(&s, &b).await), (1, 1));
    let c = s.raw_app_client(None).await.unwrap();
    let ctx: Option<String> = c
        .query_one("SELECT current_setting('app.tenant_id', true)", &[])
        .await
        .unwrap()
        .get(0);
    assert!(ctx.unwrap_or_default().is_empty());
}

/// `query_text_once` (the context and the statement as one simple-protocol message, values
/// as literals): tenants apart on one connection, hostile values stored and compared
/// exactly (never read as SQL), a failing statement writes nothing and leaves no context.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_message_statements_keep_tenants_apart_and_values_exact() {
    use tenantplane_tenant_data::literal::TextRow;
    use tokio_postgres::types::Type;
    let (s, a, b) = one_connection_two_tenants().await;
    insert(&s, &a, "a1").await;
    for i in 0..10 {
        let t = if i % 2 == 0 { &a } else { &b };
        let rows = s
            .query_text_once(
                t,
                "SELECT current_setting('app.tenant_id'), (SELECT count(*) FROM notes)",
                &[],
            )
            .await
            .unwrap();
        assert_eq!(rows.len(), 1);
        assert_eq!(rows[0].text(0), Some(t.id.to_string()));
        assert_eq!(rows[0].int(1).unwrap(), if i % 2 == 0 { 1 } else { 0 });
    }
    let hostile = [
        "it's",
        "$q$); DELETE FROM notes; --",
        "$q$",
        "x$q",
        "\\' OR 1=1 --",
        "{\"a\",NULL}",
        "Gonçalves 名前 🙂",
        "",
    ];
    for v in hostile {
        let v = v.to_owned();
        s.query_text_once(
            &b,
            "INSERT INTO notes (body) VALUES ($1)",
            &[(&v, Type::TEXT)],
        )
        .await
        .unwrap();
        let rows = s
            .query_text_once(
                &b,
                "SELECT body FROM notes WHERE body = $1",
                &[(&v, Type::TEXT)],
            )
            .await
            .unwrap();
        assert_eq!(rows.len(), 1, "{v:?}");
        assert_eq!(rows[0].text(0).as_deref(), Some(v.as_str()));
    }
    // Arrays and NULL, as the creates use them.
    let many: Vec<Option<&str>> = vec![Some("p\"q"), Some("$q$"), Some("r\\s")];
    let rows = s
        .query_text_once(
            &b,
            "INSERT INTO notes (body) SELECT * FROM unnest($1::text[]) RETURNING body",
            &[(&many, Type::TEXT_ARRAY)],
        )
        .await
        .unwrap();
    let got: Vec<Option<String>> = rows.iter().map(|r| r.text(0)).collect();
    let want: Vec<Option<String>> = many.iter().map(|m| m.map(str::to_owned)).collect();
    assert_eq!(got, want);
    assert_eq!(count(&s, &b).await, (hostile.len() + many.len()) as i64);
    assert_eq!(count(&s, &a).await, 1, "nothing of b's reached a");
    // A failing statement: nothing written, no context left on the connection.
    let body = "late".to_owned();
    assert!(
        s.query_text_once(
            &b,
            "INSERT INTO notes (body) VALUES ($1), (NULL)",
            &[(&body, Type::TEXT)],
        )
        .await
        .is_err()
    );
    assert_eq!(count(&s, &b).await, (hostile.len() + many.len()) as i64);
    let c = s.raw_app_client(None).await.unwrap();
    let ctx: Option<String> = c
        .query_one("SELECT current_setting('app.tenant_id', true)", &[])
        .await
        .unwrap()
        .get(0);
    assert!(ctx.unwrap_or_default().is_empty());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn exhausted_budget_waits_then_reports_busy() {
    let s = std::sync::Arc::new(server(1, 200).await);
    let a = tenant("alpha-hospital", IsolationMode::PgShared);
    s.provision(&a).await.unwrap();
    let (s2, a2) = (s.clone(), a.clone());
    let holder = tokio::spawn(async move {
        s2.transaction(&a2, |tx| {
            Box::pin(async move { tx.execute("SELECT pg_sleep(1)", &[]).await })
        })
        .await
    });
    tokio::time::sleep(Duration::from_millis(100)).await;
    let e = s
        .transaction(&a, |tx| {
            Box::pin(async move { tx.execute("SELECT 1", &[]).await })
        })
        .await;
    assert!(matches!(e, Err(DataError::Busy)), "{e:?}");
    holder.await.unwrap().unwrap();
    assert_eq!(
        count(&s, &a).await,
        0,
        "served again once the connection is free"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn foreign_schemas_are_not_adopted() {
    let url = tenantplane_testkit::pg::fresh_database().await.unwrap();
    let t = tenant("alpha-hospital", IsolationMode::PgSchema);
    let (c, conn) = tokio_postgres::connect(&url, tokio_postgres::NoTls)
        .await
        .unwrap();
    tokio::spawn(conn);
    c.batch_execute(&format!(
        "CREATE SCHEMA \"{0}\"; CREATE TABLE \"{0}\".payroll (id int)",
        tenant_schema(&t.id)
    ))
    .await
    .unwrap();
    let s = PgServer::connect(
        PgServerConfig {
            app_url: None,
            app_role: "tp_app".into(),
            budget: 2,
            wait: Duration::from_secs(1),
            ..PgServerConfig::new("pg1", url)
        },
        std::sync::Arc::new(set()),
    )
    .await
    .unwrap();
    assert!(matches!(s.provision(&t).await, Err(DataError::Foreign(_))));
    // An empty schema of the right name is adopted.
    let t2 = tenant("bravo-hospital", IsolationMode::PgSchema);
    c.batch_execute(&format!("CREATE SCHEMA \"{}\"", tenant_schema(&t2.id)))
        .await
        .unwrap();
    s.provision(&t2).await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn behind_pgbouncer_transaction_mode_interleaved_tenants_stay_apart() {
    let url = tenantplane_testkit::pg::fresh_database().await.unwrap();
    let db = url.rsplit('/').next().unwrap().to_owned();
    // One server connection shared by many client connections: the worst case for leaks.
    let bouncer = tokio::task::spawn_blocking(|| {
        tenantplane_testkit::pg::pgbouncer(1, &["tp_app", "postgres"])
    })
    .await
    .unwrap()
    .unwrap();
    let s = std::sync::Arc::new(
        PgServer::connect(
            PgServerConfig {
                app_url: Some(bouncer.url("tp_app", &db)),
                app_role: "tp_app".into(),
                budget: 8,
                wait: Duration::from_secs(10),
                ..PgServerConfig::new("pg1", url)
            },
            std::sync::Arc::new(set()),
        )
        .await
        .unwrap(),
    );
    let tenants = [
        tenant("alpha-hospital", IsolationMode::PgSchema),
        tenant("bravo-hospital", IsolationMode::PgShared),
        tenant("charlie-hospital", IsolationMode::PgSchema),
        tenant("delta-hospital", IsolationMode::PgShared),
    ];
    for t in &tenants {
        s.provision(t).await.unwrap();
    }
    let mut tasks = Vec::new();
    for (i, t) in tenants.iter().enumerate() {
        for _ in 0..(i + 1) * 5 {
            let (s, t) = (s.clone(), t.clone());
            tasks.push(tokio::spawn(async move {
                let me = t.id.to_string();
                // The one-round-trip and one-message paths through the bouncer as well.
                let rows = s
                    .query_once(&t, "SELECT current_setting('app.tenant_id')", &[])
                    .await
                    .unwrap();
                assert_eq!(rows[0].get::<_, String>(0), me);
                let rows = s
                    .query_text_once(&t, "SELECT current_setting('app.tenant_id')", &[])
                    .await
                    .unwrap();
                assert_eq!(rows[0].get(0), Some(me.as_str()));
                s.transaction(&t, move |tx| {
                    Box::pin(async move {
                        let seen: String = tx
                            .query_one("SELECT current_setting('app.tenant_id')", &[])
                            .await?
                            .get(0);
                        assert_eq!(
                            seen, me,
                            "context of another tenant on a shared server connection"
                        );
                        tx.execute("INSERT INTO notes (body) VALUES ('x')", &[])
                            .await
                    })
                })
                .await
                .unwrap();
            }));
        }
    }
    for t in tasks {
        t.await.unwrap();
    }
    for (i, t) in tenants.iter().enumerate() {
        assert_eq!(count(&s, t).await, ((i + 1) * 5) as i64, "{}", t.slug);
    }
    // Outside a tenant transaction, the bounced connection has no tenant context.
    let c = s.raw_app_client(None).await.unwrap();
    let n: i64 = c
        .query_one("SELECT count(*) FROM tp_shared.notes", &[])
        .await
        .unwrap()
        .get(0);
    assert_eq!(n, 0);
}
