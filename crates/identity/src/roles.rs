//! Roles as data in the tenant's store: seeded with the built-in roles at provisioning,
//! read to turn a user's role names into permissions.

use std::collections::BTreeSet;

use tenantplane_core::{Permission, Profile, Role, RoleName, identity::builtin_roles_for};

use crate::{IdentityError, Result, TenantDb};

fn parse(s: &str) -> rusqlite::Result<Role> {
    serde_json::from_str(s).map_err(|e| rusqlite::Error::ToSqlConversionFailure(Box::new(e)))
}

/// Inserts the built-in roles of the tenant's `profile` that are missing (idempotent).
/// Returns how many were added.
pub async fn seed(db: TenantDb<'_>, profile: Profile) -> Result<u64> {
    let roles: Vec<(String, serde_json::Value)> = builtin_roles_for(profile)
        .into_iter()
        .map(|r| {
            serde_json::to_value(&r)
                .map(|v| (r.name.to_string(), v))
                .map_err(|e| IdentityError::Internal(e.to_string()))
        })
        .collect::<Result<_>>()?;
    Ok(match db {
        TenantDb::Sqlite(s) => {
            s.run(move |c| {
                let tx = c.transaction()?;
                let mut n = 0;
                {
                    let mut st = tx.prepare_cached(
                        "INSERT INTO roles (name, doc) VALUES (?1, ?2) ON CONFLICT DO NOTHING",
                    )?;
                    for (name, doc) in &roles {
                        n += st.execute((name, doc.to_string()))? as u64;
                    }
                }
                tx.commit()?;
                Ok(n)
            })
            .await?
        }
        TenantDb::Pg(p) => {
            // One statement (multi-row), one round trip with the transaction around it.
            use tokio_postgres::types::Type;
            let (names, docs): (Vec<String>, Vec<serde_json::Value>) = roles.into_iter().unzip();
            p.query_once(
                "INSERT INTO roles (name, doc) SELECT * FROM unnest($1::text[], $2::jsonb[]) \
                 ON CONFLICT DO NOTHING RETURNING 1",
                &[(&names, Type::TEXT_ARRAY), (&docs, Type::JSONB_ARRAY)],
            )
            .await?
            .len() as u64
        }
    })
}

/// Every role of the tenant, by name. A store migrated from before roles existed is seeded
/// on first use with the roles every profile has (provisioning seeds the profile's own).
pub async fn list(db: TenantDb<'_>) -> Result<Vec<Role>> {
    let r = list_stored(db).await?;
    if !r.is_empty() {
        return Ok(r);
    }
    seed(db, Profile::Other).await?;
    list_stored(db).await
}

async fn list_stored(db: TenantDb<'_>) -> Result<Vec<Role>> {
    Ok(match db {
        TenantDb::Sqlite(s) => {
            s.run(|c| {
                let mut st = c.prepare_cached("SELECT doc FROM roles ORDER BY name")?;
                st.query_map([], |r| parse(&r.get::<_, String>(0)?))?
                    .collect::<rusqlite::Result<Vec<_>>>()
            })
            .await?
        }
        TenantDb::Pg(p) => {
            let rows = p
                .transaction(|tx| {
                    Box::pin(
                        async move { tx.query("SELECT doc FROM roles ORDER BY name", &[]).await },
                    )
                })
                .await?;
            rows.into_iter()
                .map(|r| {
                    serde_json::from_value::<Role>(r.get(0))
                        .map_err(|e| IdentityError::Internal(format!("role record: {e}")))
                })
                .collect::<Result<Vec<_>>>()?
        }
    })
}

/// The permissions granted by `names` among `roles`.
pub fn permissions(roles: &[Role], names: &[RoleName]) -> BTreeSet<Permission> {
    roles
        .iter()
        .filter(|r| names.contains(&r.name))
        .flat_map(|r| r.permissions.iter().copied())
        .collect()
}
