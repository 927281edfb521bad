//! The tenant's directory: its departments. The first component living in tenant stores,
//! seeded at provisioning from the departments given at creation.
//!
//! Written once per dialect against a [`TenantDb`] (ADR 003); the PostgreSQL table carries
//! `tenant_id` leading its keys under forced row-level security, so the same SQL serves the
//! three PostgreSQL modes.

use time::OffsetDateTime;
use uuid::Uuid;

use crate::{DataError, Result, data::TenantDb, migrate::Migration};

/// The directory's migrations.
pub const MIGRATIONS: &[Migration] = &[Migration {
    component: "directory",
    version: 1,
    name: "departments",
    sqlite: "CREATE TABLE departments (
        id TEXT PRIMARY KEY,
        name TEXT NOT NULL UNIQUE,
        created_at TEXT NOT NULL
    ) STRICT;",
    postgres: "CREATE TABLE departments (
        tenant_id uuid NOT NULL DEFAULT NULLIF(current_setting('app.tenant_id', true), '')::uuid,
        id uuid NOT NULL,
        name text NOT NULL,
        created_at timestamptz NOT NULL,
        PRIMARY KEY (tenant_id, id),
        UNIQUE (tenant_id, name));
      ALTER TABLE departments ENABLE ROW LEVEL SECURITY;
      ALTER TABLE departments FORCE ROW LEVEL SECURITY;
      CREATE POLICY tenant_isolation ON departments
        USING (tenant_id = NULLIF(current_setting('app.tenant_id', true), '')::uuid)
        WITH CHECK (tenant_id = NULLIF(current_setting('app.tenant_id', true), '')::uuid);",
}];

/// A department.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct Department {
    /// Identity.
    pub id: Uuid,
    /// Unique name within the tenant.
    pub name: String,
    /// Creation time.
    #[serde(with = "time::serde::rfc3339")]
    pub created_at: OffsetDateTime,
}

fn ts(t: OffsetDateTime) -> String {
    t.format(&time::format_description::well_known::Rfc3339)
        .unwrap_or_default()
}

fn parse_ts(s: &str) -> OffsetDateTime {
    OffsetDateTime::parse(s, &time::format_description::well_known::Rfc3339)
        .unwrap_or(OffsetDateTime::UNIX_EPOCH)
}

fn sqlite_row(r: &rusqlite::Row<'_>) -> rusqlite::Result<Department> {
    let id: String = r.get(0)?;
    let at: String = r.get(2)?;
    Ok(Department {
        id: Uuid::parse_str(&id).unwrap_or_default(),
        name: r.get(1)?,
        created_at: parse_ts(&at),
    })
}

fn pg_row(r: &tokio_postgres::Row) -> Department {
    Department {
        id: r.get(0),
        name: r.get(1),
        created_at: r.get(2),
    }
}

/// All departments, by name.
pub async fn list(db: TenantDb<'_>) -> Result<Vec<Department>> {
    match db {
        TenantDb::Sqlite(s) => {
            s.run(|c| {
                let mut st = c.prepare_cached(
                    "SELECT id, name, created_at FROM departments ORDER BY name, id",
                )?;
                st.query_map([], sqlite_row)?.collect()
            })
            .await
        }
        TenantDb::Pg(p) => {
            p.transaction(|tx| {
                Box::pin(async move {
                    Ok(tx
                        .query(
                            "SELECT id, name, created_at FROM departments ORDER BY name, id",
                            &[],
                        )
                        .await?
                        .iter()
                        .map(pg_row)
                        .collect())
                })
            })
            .await
        }
    }
}

/// Number of departments.
pub async fn count(db: TenantDb<'_>) -> Result<u64> {
    match db {
        TenantDb::Sqlite(s) => s
            .run(|c| {
                c.query_row("SELECT count(*) FROM departments", [], |r| {
                    r.get::<_, i64>(0)
                })
            })
            .await
            .map(|n| n as u64),
        TenantDb::Pg(p) => {
            p.transaction(|tx| {
                Box::pin(async move {
                    Ok(tx
                        .query_one("SELECT count(*) FROM departments", &[])
                        .await?
                        .get::<_, i64>(0) as u64)
                })
            })
            .await
        }
    }
}

/// One department.
pub async fn get(db: TenantDb<'_>, id: Uuid) -> Result<Option<Department>> {
    match db {
        TenantDb::Sqlite(s) => {
            s.run(move |c| {
                let mut st =
                    c.prepare_cached("SELECT id, name, created_at FROM departments WHERE id = ?1")?;
                let mut rows = st.query_map([id.to_string()], sqlite_row)?;
                rows.next().transpose()
            })
            .await
        }
        TenantDb::Pg(p) => {
            p.transaction(move |tx| {
                Box::pin(async move {
                    Ok(tx
                        .query_opt(
                            "SELECT id, name, created_at FROM departments WHERE id = $1",
                            &[&id],
                        )
                        .await?
                        .as_ref()
                        .map(pg_row))
                })
            })
            .await
        }
    }
}

/// Creates a department; [`DataError::Conflict`] if the name is taken.
pub async fn create(db: TenantDb<'_>, name: &str) -> Result<Department> {
    let d = Department {
        id: db.mint_id(),
        name: name.to_owned(),
        created_at: OffsetDateTime::now_utc()
            .replace_nanosecond(0)
            .unwrap_or(OffsetDateTime::UNIX_EPOCH),
    };
    let inserted = insert_many(db, std::slice::from_ref(&d)).await?;
    if inserted == 0 {
        return Err(DataError::Conflict(format!("department '{name}' exists")));
    }
    Ok(d)
}

/// Inserts departments whose names are not taken yet; returns how many were inserted.
async fn insert_many(db: TenantDb<'_>, ds: &[Department]) -> Result<u64> {
    let ds = ds.to_vec();
    match db {
        TenantDb::Sqlite(s) => {
            s.run(move |c| {
                let tx = c.transaction()?;
                let mut n = 0;
                {
                    let mut st = tx.prepare_cached(
                        "INSERT INTO departments (id, name, created_at) VALUES (?1, ?2, ?3) \
                         ON CONFLICT DO NOTHING",
                    )?;
                    for d in &ds {
                        n += st.execute((d.id.to_string(), &d.name, ts(d.created_at)))? as u64;
                    }
                }
                tx.commit()?;
                Ok(n)
            })
            .await
        }
        TenantDb::Pg(p) => {
            p.transaction(move |tx| {
                Box::pin(async move {
                    let st = tx
                        .prepare(
                            "INSERT INTO departments (id, name, created_at) VALUES ($1, $2, $3) \
                             ON CONFLICT DO NOTHING",
                        )
                        .await?;
                    let mut n = 0;
                    for d in &ds {
                        n += tx.execute(&st, &[&d.id, &d.name, &d.created_at]).await?;
                    }
                    Ok(n)
                })
            })
            .await
        }
    }
}

/// Seeds departments by name (idempotent: names present are skipped). Returns how many
/// were added.
pub async fn seed(db: TenantDb<'_>, names: &[String]) -> Result<u64> {
    let at = OffsetDateTime::now_utc()
        .replace_nanosecond(0)
        .unwrap_or(OffsetDateTime::UNIX_EPOCH);
    let ds: Vec<Department> = names
        .iter()
        .map(|n| Department {
            id: db.mint_id(),
            name: n.clone(),
            created_at: at,
        })
        .collect();
    insert_many(db, &ds).await
}

/// Renames a department; `false` if it does not exist, [`DataError::Conflict`] if the name is
/// taken.
pub async fn rename(db: TenantDb<'_>, id: Uuid, name: &str) -> Result<bool> {
    let name = name.to_owned();
    let r = match db {
        TenantDb::Sqlite(s) => {
            let name = name.clone();
            s.run(move |c| {
                c.execute(
                    "UPDATE OR IGNORE departments SET name = ?2 WHERE id = ?1",
                    (id.to_string(), &name),
                )
                .map(|n| n as u64)
            })
            .await
        }
        TenantDb::Pg(p) => {
            let name = name.clone();
            p.transaction(move |tx| {
                Box::pin(async move {
                    tx.execute(
                        "UPDATE departments SET name = $2 WHERE id = $1 AND NOT EXISTS \
                         (SELECT 1 FROM departments WHERE name = $2 AND id <> $1)",
                        &[&id, &name],
                    )
                    .await
                })
            })
            .await
        }
    }?;
    if r == 1 {
        return Ok(true);
    }
    match get(db, id).await? {
        None => Ok(false),
        Some(d) if d.name == name => Ok(true),
        Some(_) => Err(DataError::Conflict(format!("department '{name}' exists"))),
    }
}

/// Deletes a department; `false` if it did not exist.
pub async fn delete(db: TenantDb<'_>, id: Uuid) -> Result<bool> {
    let n = match db {
        TenantDb::Sqlite(s) => {
            s.run(move |c| {
                c.execute("DELETE FROM departments WHERE id = ?1", [id.to_string()])
                    .map(|n| n as u64)
            })
            .await
        }
        TenantDb::Pg(p) => {
            p.transaction(move |tx| {
                Box::pin(async move {
                    tx.execute("DELETE FROM departments WHERE id = $1", &[&id])
                        .await
                })
            })
            .await
        }
    }?;
    Ok(n == 1)
}
