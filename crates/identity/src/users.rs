//! Tenant user records in the tenant's own store.
//!
//! Indexed columns (id, e-mail, version) plus the record as JSON; the Argon2id hash sits in
//! its own column and never leaves this module except for verification. Writes are
//! compare-and-swap on `version`; creation checks the plan's user quota inside the same
//! transaction (SQLite: an IMMEDIATE transaction; PostgreSQL: a per-tenant advisory lock),
//! so concurrent creations never exceed it.

use serde::{Deserialize, Serialize};
use tenantplane_core::{Email, RoleName, UserId};
use time::OffsetDateTime;
use uuid::Uuid;

use crate::{IdentityError, Result, TenantDb};

/// A user as stored (without the password hash).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct UserRecord {
    /// Identity.
    pub id: UserId,
    /// Login e-mail (unique in the tenant).
    pub email: Email,
    /// Display name.
    pub display_name: String,
    /// Roles.
    pub roles: Vec<RoleName>,
    /// Department ids.
    #[serde(default)]
    pub departments: Vec<Uuid>,
    /// Cannot log in.
    #[serde(default)]
    pub disabled: bool,
    /// The password is a one-time password.
    #[serde(default)]
    pub password_change_required: bool,
    /// Access tokens issued before this Unix time are refused (revoke-all, disable).
    #[serde(default)]
    pub tokens_valid_after: i64,
    /// Creation.
    #[serde(with = "time::serde::rfc3339")]
    pub created_at: OffsetDateTime,
    /// Last change.
    #[serde(with = "time::serde::rfc3339")]
    pub updated_at: OffsetDateTime,
    /// CAS version.
    pub version: u64,
}

impl UserRecord {
    /// The wire view.
    pub fn view(&self) -> tenantplane_core::identity::UserView {
        tenantplane_core::identity::UserView {
            id: self.id,
            email: self.email.clone(),
            display_name: self.display_name.clone(),
            roles: self.roles.clone(),
            departments: self.departments.clone(),
            disabled: self.disabled,
            password_change_required: self.password_change_required,
            created_at: self.created_at,
            updated_at: self.updated_at,
            version: self.version,
        }
    }
}

fn to_doc(u: &UserRecord) -> Result<serde_json::Value> {
    serde_json::to_value(u).map_err(|e| IdentityError::Internal(format!("user record: {e}")))
}

fn from_text(s: &str) -> rusqlite::Result<UserRecord> {
    serde_json::from_str(s).map_err(|e| rusqlite::Error::ToSqlConversionFailure(Box::new(e)))
}

fn pg_doc(v: serde_json::Value) -> Result<UserRecord> {
    serde_json::from_value(v).map_err(|e| IdentityError::Internal(format!("user record: {e}")))
}

enum Insert {
    Ok,
    Taken,
    Quota(u64),
}

/// Inserts `u` with password hash `hash`, if fewer than `max_users` users exist.
pub async fn create(db: TenantDb<'_>, u: &UserRecord, hash: &str, max_users: u64) -> Result<()> {
    let doc = to_doc(u)?;
    let (id, email, version, hash) = (u.id, u.email.to_string(), u.version as i64, hash.to_owned());
    // An audit entry pending for this change commits with it, naming the new user.
    let audit: Vec<tenantplane_audit::Entry> = tenantplane_tenant_data::audit_log::take_pending()
        .into_iter()
        .map(|mut e| {
            e.entity.get_or_insert_with(|| format!("User/{id}"));
            e
        })
        .collect();
    let r = match db {
        TenantDb::Sqlite(s) => {
            let text = doc.to_string();
            s.run(move |c| {
                let tx = c.transaction_with_behavior(rusqlite::TransactionBehavior::Immediate)?;
                let n: i64 = tx.query_row("SELECT count(*) FROM users", [], |r| r.get(0))?;
                if n as u64 >= max_users {
                    return Ok(Insert::Quota(n as u64));
                }
                let ins = tx.execute(
                    "INSERT INTO users (id, email, version, password_hash, doc) VALUES (?1, ?2, ?3, ?4, ?5) \
                     ON CONFLICT DO NOTHING",
                    (id.to_string(), &email, version, &hash, &text),
                )?;
                if ins == 1 {
                    tenantplane_tenant_data::audit_log::insert_sqlite(&tx, &audit)?;
                }
                tx.commit()?;
                Ok(if ins == 1 { Insert::Ok } else { Insert::Taken })
            })
            .await?
        }
        TenantDb::Pg(p) => {
            p.transaction(move |tx| {
                Box::pin(async move {
                    tx.execute(
                        "SELECT pg_advisory_xact_lock(hashtextextended('tp-users:' || current_setting('app.tenant_id', true), 0))",
                        &[],
                    )
                    .await?;
                    let n: i64 = tx
                        .query_one("SELECT count(*) FROM users", &[])
                        .await?
                        .get(0);
                    if n as u64 >= max_users {
                        return Ok(Insert::Quota(n as u64));
                    }
                    let ins = tx
                        .execute(
                            "INSERT INTO users (id, email, version, password_hash, doc) VALUES ($1, $2, $3, $4, $5) \
                             ON CONFLICT DO NOTHING",
                            &[id.as_uuid(), &email, &version, &hash, &doc],
                        )
                        .await?;
                    if ins == 1 {
                        tenantplane_tenant_data::audit_log::insert_pg(tx, &audit).await?;
                    }
                    Ok(if ins == 1 { Insert::Ok } else { Insert::Taken })
                })
            })
            .await?
        }
    };
    match r {
        Insert::Ok => Ok(()),
        Insert::Taken => Err(IdentityError::EmailTaken),
        Insert::Quota(current) => Err(IdentityError::QuotaExceeded {
            limit: max_users,
            current,
        }),
    }
}

const COLS: &str = "doc, password_hash";

/// A user and its password hash, by e-mail.
pub async fn by_email(db: TenantDb<'_>, email: &Email) -> Result<Option<(UserRecord, String)>> {
    let email = email.to_string();
    Ok(match db {
        TenantDb::Sqlite(s) => {
            s.run(move |c| {
                let mut st =
                    c.prepare_cached(&format!("SELECT {COLS} FROM users WHERE email = ?1"))?;
                let mut rows = st.query_map([&email], |r| {
                    Ok((from_text(&r.get::<_, String>(0)?)?, r.get::<_, String>(1)?))
                })?;
                rows.next().transpose()
            })
            .await?
        }
        TenantDb::Pg(p) => {
            let row = p
                .transaction(move |tx| {
                    Box::pin(async move {
                        tx.query_opt(
                            &format!("SELECT {COLS} FROM users WHERE email = $1"),
                            &[&email],
                        )
                        .await
                    })
                })
                .await?;
            match row {
                Some(r) => Some((pg_doc(r.get(0))?, r.get(1))),
                None => None,
            }
        }
    })
}

/// A user and its password hash, by id.
pub async fn get(db: TenantDb<'_>, id: UserId) -> Result<Option<(UserRecord, String)>> {
    Ok(match db {
        TenantDb::Sqlite(s) => {
            s.run(move |c| {
                let mut st =
                    c.prepare_cached(&format!("SELECT {COLS} FROM users WHERE id = ?1"))?;
                let mut rows = st.query_map([id.to_string()], |r| {
                    Ok((from_text(&r.get::<_, String>(0)?)?, r.get::<_, String>(1)?))
                })?;
                rows.next().transpose()
            })
            .await?
        }
        TenantDb::Pg(p) => {
            let row = p
                .transaction(move |tx| {
                    Box::pin(async move {
                        tx.query_opt(
                            &format!("SELECT {COLS} FROM users WHERE id = $1"),
                            &[id.as_uuid()],
                        )
                        .await
                    })
                })
                .await?;
            match row {
                Some(r) => Some((pg_doc(r.get(0))?, r.get(1))),
                None => None,
            }
        }
    })
}

/// Users ordered by e-mail, after `after` (exclusive), at most `limit`.
pub async fn list(
    db: TenantDb<'_>,
    after: Option<String>,
    limit: usize,
) -> Result<Vec<UserRecord>> {
    let after = after.unwrap_or_default();
    let lim = limit as i64;
    Ok(match db {
        TenantDb::Sqlite(s) => {
            s.run(move |c| {
                let mut st = c.prepare_cached(
                    "SELECT doc FROM users WHERE email > ?1 ORDER BY email LIMIT ?2",
                )?;
                st.query_map((&after, lim), |r| from_text(&r.get::<_, String>(0)?))?
                    .collect::<rusqlite::Result<Vec<_>>>()
            })
            .await?
        }
        TenantDb::Pg(p) => {
            let rows = p
                .transaction(move |tx| {
                    Box::pin(async move {
                        tx.query(
                            "SELECT doc FROM users WHERE email > $1 ORDER BY email COLLATE \"C\" LIMIT $2",
                            &[&after, &lim],
                        )
                        .await
                    })
                })
                .await?;
            rows.into_iter()
                .map(|r| pg_doc(r.get(0)))
                .collect::<Result<Vec<_>>>()?
        }
    })
}

/// Number of users.
pub async fn count(db: TenantDb<'_>) -> Result<u64> {
    Ok(match db {
        TenantDb::Sqlite(s) => {
            s.run(|c| c.query_row("SELECT count(*) FROM users", [], |r| r.get::<_, i64>(0)))
                .await? as u64
        }
        TenantDb::Pg(p) => {
            p.transaction(|tx| {
                Box::pin(async move {
                    Ok(tx
                        .query_one("SELECT count(*) FROM users", &[])
                        .await?
                        .get::<_, i64>(0) as u64)
                })
            })
            .await?
        }
    })
}

/// Writes `u` if the stored version is `u.version - 1`; a new password hash when given.
pub async fn update(db: TenantDb<'_>, u: &UserRecord, new_hash: Option<String>) -> Result<()> {
    let doc = to_doc(u)?;
    let (id, version) = (u.id, u.version as i64);
    let prev = version - 1;
    // An audit entry pending for this change commits with it.
    let audit = tenantplane_tenant_data::audit_log::take_pending();
    let n = match db {
        TenantDb::Sqlite(s) => {
            let text = doc.to_string();
            s.run(move |c| {
                let tx = c.transaction()?;
                let n = tx.execute(
                    "UPDATE users SET doc = ?1, version = ?2, password_hash = coalesce(?3, password_hash) \
                     WHERE id = ?4 AND version = ?5",
                    (&text, version, new_hash, id.to_string(), prev),
                )?;
                if n == 1 {
                    tenantplane_tenant_data::audit_log::insert_sqlite(&tx, &audit)?;
                }
                tx.commit()?;
                Ok(n)
            })
            .await? as u64
        }
        TenantDb::Pg(p) => {
            p.transaction(move |tx| {
                Box::pin(async move {
                    let n = tx
                        .execute(
                            "UPDATE users SET doc = $1, version = $2, password_hash = coalesce($3, password_hash) \
                             WHERE id = $4 AND version = $5",
                            &[&doc, &version, &new_hash, id.as_uuid(), &prev],
                        )
                        .await?;
                    if n == 1 {
                        tenantplane_tenant_data::audit_log::insert_pg(tx, &audit).await?;
                    }
                    Ok(n)
                })
            })
            .await?
        }
    };
    if n == 1 {
        return Ok(());
    }
    match get(db, id).await? {
        None => Err(IdentityError::NotFound),
        Some((cur, _)) => Err(IdentityError::VersionMismatch {
            current: cur.version,
        }),
    }
}
