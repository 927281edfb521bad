//! Versioned migrations per component and dialect, and the per-database runner.

use std::collections::BTreeMap;

use sha2::{Digest, Sha256};

use crate::{DataError, Result};

/// The row-level-security statements of a PostgreSQL table with a `tenant_id` column:
/// enabled, forced (also for the owner), and one policy matching the transaction's
/// `app.tenant_id`. For the `postgres` text of component migrations: `concat!(…,
/// tenant_rls!("users"), …)`.
#[macro_export]
macro_rules! tenant_rls {
    ($t:literal) => {
        concat!(
            "ALTER TABLE ",
            $t,
            " ENABLE ROW LEVEL SECURITY;\n",
            "ALTER TABLE ",
            $t,
            " FORCE ROW LEVEL SECURITY;\n",
            "CREATE POLICY tenant_isolation ON ",
            $t,
            " USING (tenant_id = NULLIF(current_setting('app.tenant_id', true), '')::uuid)",
            " WITH CHECK (tenant_id = NULLIF(current_setting('app.tenant_id', true), '')::uuid);\n"
        )
    };
}

/// One migration step of one component, in both dialects.
#[derive(Debug, Clone, Copy)]
pub struct Migration {
    /// Owning component, e.g. `records`.
    pub component: &'static str,
    /// 1, 2, 3… without gaps, per component.
    pub version: u32,
    /// Short description.
    pub name: &'static str,
    /// SQL for SQLite.
    pub sqlite: &'static str,
    /// SQL for PostgreSQL (runs with the tenant's schema on the search path).
    pub postgres: &'static str,
}

/// SQL dialects.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Dialect {
    /// SQLite.
    Sqlite,
    /// PostgreSQL.
    Postgres,
}

impl Migration {
    /// The SQL of this step in `d`.
    pub fn sql(&self, d: Dialect) -> &'static str {
        match d {
            Dialect::Sqlite => self.sqlite,
            Dialect::Postgres => self.postgres,
        }
    }

    /// Hex SHA-256 of the step's SQL in `d` (detects edits to applied migrations).
    pub fn checksum(&self, d: Dialect) -> String {
        hex::encode(Sha256::digest(self.sql(d).as_bytes()))
    }
}

/// The migrations every tenant database must have, grouped by component.
#[derive(Debug, Clone, Default)]
pub struct MigrationSet {
    /// Components in registration order (a component may build on the tables of the ones
    /// registered before it), each with its steps in version order.
    by_component: Vec<(&'static str, Vec<Migration>)>,
}

impl MigrationSet {
    /// Builds a set, checking that each component's versions are 1..=n without gaps.
    pub fn new(migrations: impl IntoIterator<Item = Migration>) -> Result<Self> {
        let mut by_component: Vec<(&'static str, Vec<Migration>)> = Vec::new();
        for m in migrations {
            match by_component.iter_mut().find(|(c, _)| *c == m.component) {
                Some((_, ms)) => ms.push(m),
                None => by_component.push((m.component, vec![m])),
            }
        }
        for (c, ms) in by_component.iter_mut() {
            ms.sort_by_key(|m| m.version);
            for (i, m) in ms.iter().enumerate() {
                if m.version as usize != i + 1 {
                    return Err(DataError::Migration {
                        component: (*c).to_owned(),
                        version: m.version,
                        message: "versions must run 1, 2, 3… without gaps or repeats".into(),
                    });
                }
            }
        }
        Ok(Self { by_component })
    }

    /// All steps, component by component, in version order.
    pub fn iter(&self) -> impl Iterator<Item = &Migration> {
        self.by_component.iter().flat_map(|(_, ms)| ms.iter())
    }

    /// The version the binary needs per component.
    pub fn targets(&self) -> BTreeMap<&'static str, u32> {
        self.by_component
            .iter()
            .map(|(c, ms)| (*c, ms.len() as u32))
            .collect()
    }

    /// One number summarising the whole set: the total number of steps. A tenant whose
    /// recorded schema version equals it is up to date.
    pub fn schema_version(&self) -> u32 {
        self.by_component.iter().map(|(_, m)| m.len() as u32).sum()
    }
}

const LEDGER_SQLITE: &str = "CREATE TABLE IF NOT EXISTS tp_migrations (
    component TEXT NOT NULL,
    version INTEGER NOT NULL,
    name TEXT NOT NULL,
    checksum TEXT NOT NULL,
    applied_at TEXT NOT NULL,
    PRIMARY KEY (component, version)
) STRICT";

/// What a run did.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct MigrationReport {
    /// Steps applied now, as `component/version`.
    pub applied: Vec<String>,
    /// The database's schema version afterwards (see [`MigrationSet::schema_version`]).
    pub schema_version: u32,
}

/// Applies every missing step of `set` to one SQLite database. Each step and its ledger row
/// commit together, so a crash leaves every step either fully applied or not at all, and a
/// re-run continues where it stopped. Applied steps whose SQL changed are refused.
pub fn migrate_sqlite(
    conn: &mut rusqlite::Connection,
    set: &MigrationSet,
) -> Result<MigrationReport> {
    conn.execute_batch(LEDGER_SQLITE)?;
    let mut applied_now = Vec::new();
    for m in set.iter() {
        let existing: Option<String> = {
            let mut stmt = conn.prepare_cached(
                "SELECT checksum FROM tp_migrations WHERE component = ?1 AND version = ?2",
            )?;
            let mut rows = stmt.query(rusqlite::params![m.component, m.version])?;
            match rows.next()? {
                Some(r) => Some(r.get(0)?),
                None => None,
            }
        };
        let sum = m.checksum(Dialect::Sqlite);
        match existing {
            Some(s) if s == sum => continue,
            Some(_) => {
                return Err(DataError::ChecksumMismatch {
                    component: m.component.into(),
                    version: m.version,
                });
            }
            None => {}
        }
        let fail = |e: rusqlite::Error| DataError::Migration {
            component: m.component.into(),
            version: m.version,
            message: e.to_string(),
        };
        let tx = conn
            .transaction_with_behavior(rusqlite::TransactionBehavior::Immediate)
            .map_err(fail)?;
        tx.execute_batch(m.sqlite).map_err(fail)?;
        let now = time::OffsetDateTime::now_utc()
            .format(&time::format_description::well_known::Rfc3339)
            .unwrap_or_default();
        tx.execute(
            "INSERT INTO tp_migrations (component, version, name, checksum, applied_at) \
             VALUES (?1, ?2, ?3, ?4, ?5)",
            rusqlite::params![m.component, m.version, m.name, sum, now],
        )
        .map_err(fail)?;
        tx.commit().map_err(fail)?;
        applied_now.push(format!("{}/{}", m.component, m.version));
    }
    let version: u32 = conn.query_row("SELECT count(*) FROM tp_migrations", [], |r| r.get(0))?;
    Ok(MigrationReport {
        applied: applied_now,
        schema_version: version,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    const A1: Migration = Migration {
        component: "a",
        version: 1,
        name: "t",
        sqlite: "CREATE TABLE t (id INTEGER PRIMARY KEY, v TEXT)",
        postgres: "CREATE TABLE t (id BIGINT PRIMARY KEY, v TEXT)",
    };
    const A2: Migration = Migration {
        component: "a",
        version: 2,
        name: "index",
        sqlite: "CREATE INDEX t_v ON t (v)",
        postgres: "CREATE INDEX t_v ON t (v)",
    };
    const B1: Migration = Migration {
        component: "b",
        version: 1,
        name: "u",
        sqlite: "CREATE TABLE u (id INTEGER PRIMARY KEY)",
        postgres: "CREATE TABLE u (id BIGINT PRIMARY KEY)",
    };

    #[test]
    fn gaps_are_refused() {
        assert!(MigrationSet::new([A2]).is_err());
        assert!(MigrationSet::new([A1, A1]).is_err());
        let set = MigrationSet::new([B1, A2, A1]).unwrap();
        assert_eq!(set.schema_version(), 3);
        assert_eq!(set.targets().get("a"), Some(&2));
    }

    #[test]
    fn components_run_in_registration_order() {
        // "b" builds on "z"'s table: registered after it, it runs after it, whatever the names.
        const Z1: Migration = Migration {
            component: "z",
            version: 1,
            name: "base",
            sqlite: "CREATE TABLE base (id INTEGER PRIMARY KEY, name TEXT)",
            postgres: "",
        };
        const B_ON_Z: Migration = Migration {
            component: "b",
            version: 1,
            name: "index on base",
            sqlite: "CREATE INDEX base_name ON base (name)",
            postgres: "",
        };
        let set = MigrationSet::new([Z1, B_ON_Z]).unwrap();
        let order: Vec<_> = set.iter().map(|m| m.component).collect();
        assert_eq!(order, ["z", "b"]);
        let mut c = rusqlite::Connection::open_in_memory().unwrap();
        assert_eq!(migrate_sqlite(&mut c, &set).unwrap().schema_version, 2);
    }

    #[test]
    fn runs_once_and_resumes() {
        let mut c = rusqlite::Connection::open_in_memory().unwrap();
        let r = migrate_sqlite(&mut c, &MigrationSet::new([A1]).unwrap()).unwrap();
        assert_eq!(r.applied, ["a/1"]);
        let r = migrate_sqlite(&mut c, &MigrationSet::new([A1, A2, B1]).unwrap()).unwrap();
        assert_eq!(r.applied, ["a/2", "b/1"]);
        assert_eq!(r.schema_version, 3);
        let r = migrate_sqlite(&mut c, &MigrationSet::new([A1, A2, B1]).unwrap()).unwrap();
        assert!(r.applied.is_empty());
    }

    #[test]
    fn a_failing_step_applies_nothing_and_edits_are_detected() {
        let mut c = rusqlite::Connection::open_in_memory().unwrap();
        let bad = Migration {
            version: 2,
            sqlite: "CREATE TABLE x (id INTEGER); INSERT INTO nope VALUES (1)",
            ..A2
        };
        let err = migrate_sqlite(&mut c, &MigrationSet::new([A1, bad]).unwrap()).unwrap_err();
        assert!(matches!(err, DataError::Migration { version: 2, .. }));
        let x: i64 = c
            .query_row(
                "SELECT count(*) FROM sqlite_master WHERE name = 'x'",
                [],
                |r| r.get(0),
            )
            .unwrap();
        assert_eq!(x, 0, "the failed step was rolled back");
        let edited = Migration {
            sqlite: "CREATE TABLE t (id INTEGER PRIMARY KEY, v TEXT, w TEXT)",
            ..A1
        };
        assert!(matches!(
            migrate_sqlite(&mut c, &MigrationSet::new([edited]).unwrap()),
            Err(DataError::ChecksumMismatch { .. })
        ));
    }
}
