//! A tenant's stored single sign-on: its settings (with the client secret sealed) and the
//! links between the provider's subjects and the tenant's users.

use tenantplane_core::{UserId, sso::SsoSettings};

use crate::{IdentityError, Result, TenantDb, unix_now};

/// The stored SSO settings of a tenant.
#[derive(Debug, Clone)]
pub struct StoredSettings {
    /// The settings.
    pub settings: SsoSettings,
    /// The sealed client secret.
    pub sealed_secret: Option<Vec<u8>>,
    /// Version.
    pub version: u64,
}

/// Reads the tenant's settings.
pub async fn get(db: TenantDb<'_>) -> Result<Option<StoredSettings>> {
    let row: Option<(String, Option<Vec<u8>>, i64)> = match db {
        TenantDb::Sqlite(s) => {
            s.run(|c| {
                use rusqlite::OptionalExtension;
                c.query_row(
                    "SELECT doc, sealed_secret, version FROM sso_config WHERE id = 1",
                    [],
                    |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)),
                )
                .optional()
            })
            .await?
        }
        TenantDb::Pg(p) => {
            p.transaction(|tx| {
                Box::pin(async move {
                    let r = tx
                        .query_opt(
                            "SELECT doc::text, sealed_secret, version FROM sso_config WHERE id = 1",
                            &[],
                        )
                        .await?;
                    Ok(r.map(|r| (r.get(0), r.get(1), r.get(2))))
                })
            })
            .await?
        }
    };
    let Some((doc, sealed_secret, version)) = row else {
        return Ok(None);
    };
    let settings = serde_json::from_str(&doc)
        .map_err(|e| IdentityError::Internal(format!("stored sso settings: {e}")))?;
    Ok(Some(StoredSettings {
        settings,
        sealed_secret,
        version: version as u64,
    }))
}

/// Writes the settings. `expected` is the version read (`None`: must not exist yet);
/// returns the new version.
pub async fn put(
    db: TenantDb<'_>,
    settings: &SsoSettings,
    sealed_secret: Option<Vec<u8>>,
    expected: Option<u64>,
) -> Result<u64> {
    let doc = serde_json::to_string(settings)
        .map_err(|e| IdentityError::Internal(format!("sso settings: {e}")))?;
    let next = expected.unwrap_or(0) as i64 + 1;
    let exp = expected.map(|v| v as i64);
    let changed = match db {
        TenantDb::Sqlite(s) => {
            s.run(move |c| match exp {
                None => c.execute(
                    "INSERT INTO sso_config (id, version, doc, sealed_secret) VALUES (1, ?1, ?2, ?3) \
                     ON CONFLICT (id) DO NOTHING",
                    (next, &doc, &sealed_secret),
                ),
                Some(v) => c.execute(
                    "UPDATE sso_config SET version = ?1, doc = ?2, sealed_secret = ?3 \
                     WHERE id = 1 AND version = ?4",
                    (next, &doc, &sealed_secret, v),
                ),
            })
            .await?
        }
        TenantDb::Pg(p) => {
            p.transaction(move |tx| {
                Box::pin(async move {
                    let n = match exp {
                        None => {
                            tx.execute(
                                "INSERT INTO sso_config (id, version, doc, sealed_secret) \
                                 VALUES (1, $1, $2::text::jsonb, $3) ON CONFLICT DO NOTHING",
                                &[&next, &doc, &sealed_secret],
                            )
                            .await?
                        }
                        Some(v) => {
                            tx.execute(
                                "UPDATE sso_config SET version = $1, doc = $2::text::jsonb, \
                                 sealed_secret = $3 WHERE id = 1 AND version = $4",
                                &[&next, &doc, &sealed_secret, &v],
                            )
                            .await?
                        }
                    };
                    Ok(n as usize)
                })
            })
            .await?
        }
    };
    if changed == 0 {
        let current = get(db).await?.map(|s| s.version).unwrap_or(0);
        return Err(IdentityError::VersionMismatch { current });
    }
    Ok(next as u64)
}

/// Removes the settings (and every link to provider accounts).
pub async fn delete(db: TenantDb<'_>) -> Result<bool> {
    let n = match db {
        TenantDb::Sqlite(s) => {
            s.run(|c| {
                let tx = c.transaction()?;
                let n = tx.execute("DELETE FROM sso_config", [])?;
                tx.execute("DELETE FROM sso_links", [])?;
                tx.commit()?;
                Ok(n)
            })
            .await?
        }
        TenantDb::Pg(p) => {
            p.transaction(|tx| {
                Box::pin(async move {
                    let n = tx.execute("DELETE FROM sso_config", &[]).await?;
                    tx.execute("DELETE FROM sso_links", &[]).await?;
                    Ok(n as usize)
                })
            })
            .await?
        }
    };
    Ok(n > 0)
}

/// The local user linked to a provider account.
pub async fn linked_user(db: TenantDb<'_>, issuer: &str, subject: &str) -> Result<Option<UserId>> {
    let (i, s) = (issuer.to_owned(), subject.to_owned());
    let id: Option<String> = match db {
        TenantDb::Sqlite(sq) => {
            sq.run(move |c| {
                use rusqlite::OptionalExtension;
                c.query_row(
                    "SELECT user_id FROM sso_links WHERE issuer = ?1 AND subject = ?2",
                    (&i, &s),
                    |r| r.get(0),
                )
                .optional()
            })
            .await?
        }
        TenantDb::Pg(p) => {
            p.transaction(move |tx| {
                Box::pin(async move {
                    let r = tx
                        .query_opt(
                            "SELECT user_id::text FROM sso_links WHERE issuer = $1 AND subject = $2",
                            &[&i, &s],
                        )
                        .await?;
                    Ok(r.map(|r| r.get(0)))
                })
            })
            .await?
        }
    };
    Ok(id.and_then(|t| t.parse().ok()))
}

/// Links a provider account to a local user (replacing an earlier link of that account).
pub async fn link(db: TenantDb<'_>, issuer: &str, subject: &str, user: UserId) -> Result<()> {
    let (i, s, u, now) = (
        issuer.to_owned(),
        subject.to_owned(),
        user.to_string(),
        unix_now(),
    );
    match db {
        TenantDb::Sqlite(sq) => {
            sq.run(move |c| {
                c.execute(
                    "INSERT INTO sso_links (issuer, subject, user_id, created_at) VALUES (?1, ?2, ?3, ?4) \
                     ON CONFLICT (issuer, subject) DO UPDATE SET user_id = excluded.user_id",
                    (&i, &s, &u, now),
                )
            })
            .await?;
        }
        TenantDb::Pg(p) => {
            p.transaction(move |tx| {
                Box::pin(async move {
                    tx.execute(
                        "INSERT INTO sso_links (issuer, subject, user_id, created_at) \
                         VALUES ($1, $2, $3::text::uuid, $4) \
                         ON CONFLICT (tenant_id, issuer, subject) DO UPDATE SET user_id = excluded.user_id",
                        &[&i, &s, &u, &now],
                    )
                    .await?;
                    Ok(())
                })
            })
            .await?;
        }
    }
    Ok(())
}
