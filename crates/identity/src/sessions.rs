//! Refresh tokens: opaque 256-bit values, stored as SHA-256 hashes, each usable once.
//!
//! A login starts a *family*; every refresh marks the presented token used and issues its
//! successor in the same family, atomically. Presenting a used token again means it was
//! copied — by a thief or by the user after a thief — so the whole family is revoked and
//! both must log in again (OAuth 2.0 Security BCP, refresh token rotation).

use base64::{Engine as _, engine::general_purpose::URL_SAFE_NO_PAD};
use rand::RngCore;
use sha2::{Digest, Sha256};
use tenantplane_core::UserId;
use uuid::Uuid;

use crate::{Result, TenantDb, unix_now};

/// Prefix of refresh tokens (helps secret scanners).
pub const PREFIX: &str = "tpr_";

/// A new refresh token and its stored hash.
pub fn generate() -> (String, String) {
    let mut b = [0u8; 32];
    rand::rngs::OsRng.fill_bytes(&mut b);
    let token = format!("{PREFIX}{}", URL_SAFE_NO_PAD.encode(b));
    let h = hash(&token);
    (token, h)
}

/// Hex SHA-256 of a token.
pub fn hash(token: &str) -> String {
    hex::encode(Sha256::digest(token.as_bytes()))
}

/// Whether `token` has the shape of one of ours (checked before any lookup).
pub fn well_formed(token: &str) -> bool {
    token.len() == PREFIX.len() + 43
        && token.starts_with(PREFIX)
        && token[PREFIX.len()..]
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
}

/// What presenting a refresh token led to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Rotation {
    /// Valid: it is now used and `new_hash` (already stored) succeeds it.
    Rotated {
        /// The user.
        user: UserId,
        /// The family (session id).
        family: Uuid,
    },
    /// It was already used: the family has been revoked.
    Replayed {
        /// The user.
        user: UserId,
        /// The revoked family.
        family: Uuid,
    },
    /// Unknown, expired or revoked.
    Invalid,
}

/// Stores a new token of `family` for `user`, and drops this user's long-expired tokens.
pub async fn insert(
    db: TenantDb<'_>,
    hash: String,
    family: Uuid,
    user: UserId,
    ttl_secs: u64,
) -> Result<()> {
    let now = unix_now();
    let exp = now + ttl_secs as i64;
    match db {
        TenantDb::Sqlite(s) => {
            s.run(move |c| {
                let tx = c.transaction()?;
                tx.execute(
                    "DELETE FROM refresh_tokens WHERE user_id = ?1 AND expires_at < ?2",
                    (user.to_string(), now - 86_400),
                )?;
                tx.execute(
                    "INSERT INTO refresh_tokens (hash, family, user_id, issued_at, expires_at) \
                     VALUES (?1, ?2, ?3, ?4, ?5)",
                    (&hash, family.to_string(), user.to_string(), now, exp),
                )?;
                tx.commit()
            })
            .await?
        }
        TenantDb::Pg(p) => {
            p.transaction(move |tx| {
                Box::pin(async move {
                    tx.execute(
                        "DELETE FROM refresh_tokens WHERE user_id = $1 AND expires_at < $2",
                        &[user.as_uuid(), &(now - 86_400)],
                    )
                    .await?;
                    tx.execute(
                        "INSERT INTO refresh_tokens (hash, family, user_id, issued_at, expires_at) \
                         VALUES ($1, $2, $3, $4, $5)",
                        &[&hash, &family, user.as_uuid(), &now, &exp],
                    )
                    .await?;
                    Ok(())
                })
            })
            .await?
        }
    }
    Ok(())
}

/// Presents the token whose hash is `old`: on success marks it used and stores `new_hash`
/// as its successor, in one transaction; on replay revokes the family.
pub async fn rotate(
    db: TenantDb<'_>,
    old: String,
    new_hash: String,
    ttl_secs: u64,
) -> Result<Rotation> {
    let now = unix_now();
    let exp = now + ttl_secs as i64;
    Ok(match db {
        TenantDb::Sqlite(s) => {
            s.run(move |c| {
                let tx = c.transaction_with_behavior(rusqlite::TransactionBehavior::Immediate)?;
                let row: Option<(String, String, i64, Option<i64>, i64)> = tx
                    .query_row(
                        "SELECT family, user_id, expires_at, used_at, revoked FROM refresh_tokens WHERE hash = ?1",
                        [&old],
                        |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?, r.get(3)?, r.get(4)?)),
                    )
                    .ok();
                let Some((family, user, expires, used, revoked)) = row else {
                    return Ok(Rotation::Invalid);
                };
                let (Ok(fam), Ok(uid)) = (family.parse::<Uuid>(), user.parse::<UserId>()) else {
                    return Ok(Rotation::Invalid);
                };
                if revoked != 0 || expires <= now {
                    return Ok(Rotation::Invalid);
                }
                if used.is_some() {
                    tx.execute("UPDATE refresh_tokens SET revoked = 1 WHERE family = ?1", [&family])?;
                    tx.commit()?;
                    return Ok(Rotation::Replayed { user: uid, family: fam });
                }
                tx.execute("UPDATE refresh_tokens SET used_at = ?1 WHERE hash = ?2", (now, &old))?;
                tx.execute(
                    "INSERT INTO refresh_tokens (hash, family, user_id, issued_at, expires_at) \
                     VALUES (?1, ?2, ?3, ?4, ?5)",
                    (&new_hash, &family, &user, now, exp),
                )?;
                tx.commit()?;
                Ok(Rotation::Rotated { user: uid, family: fam })
            })
            .await?
        }
        TenantDb::Pg(p) => {
            p.transaction(move |tx| {
                Box::pin(async move {
                    // FOR UPDATE: two concurrent presentations of one token serialise here;
                    // the second sees `used_at` and revokes the family.
                    let Some(r) = tx
                        .query_opt(
                            "SELECT family, user_id, expires_at, used_at, revoked FROM refresh_tokens \
                             WHERE hash = $1 FOR UPDATE",
                            &[&old],
                        )
                        .await?
                    else {
                        return Ok(Rotation::Invalid);
                    };
                    let family: Uuid = r.get(0);
                    let user = UserId::from_uuid(r.get(1));
                    let expires: i64 = r.get(2);
                    let used: Option<i64> = r.get(3);
                    let revoked: bool = r.get(4);
                    if revoked || expires <= now {
                        return Ok(Rotation::Invalid);
                    }
                    if used.is_some() {
                        tx.execute("UPDATE refresh_tokens SET revoked = true WHERE family = $1", &[&family])
                            .await?;
                        return Ok(Rotation::Replayed { user, family });
                    }
                    tx.execute("UPDATE refresh_tokens SET used_at = $1 WHERE hash = $2", &[&now, &old])
                        .await?;
                    tx.execute(
                        "INSERT INTO refresh_tokens (hash, family, user_id, issued_at, expires_at) \
                         VALUES ($1, $2, $3, $4, $5)",
                        &[&new_hash, &family, user.as_uuid(), &now, &exp],
                    )
                    .await?;
                    Ok(Rotation::Rotated { user, family })
                })
            })
            .await?
        }
    })
}

/// Revokes the family of the token whose hash is `hash` (logout). Returns whether one was
/// found.
pub async fn revoke_by_token(db: TenantDb<'_>, hash: String) -> Result<bool> {
    let n = match db {
        TenantDb::Sqlite(s) => {
            s.run(move |c| {
                c.execute(
                    "UPDATE refresh_tokens SET revoked = 1 WHERE family = \
                     (SELECT family FROM refresh_tokens WHERE hash = ?1)",
                    [&hash],
                )
            })
            .await? as u64
        }
        TenantDb::Pg(p) => {
            p.transaction(move |tx| {
                Box::pin(async move {
                    tx.execute(
                        "UPDATE refresh_tokens SET revoked = true WHERE family = \
                         (SELECT family FROM refresh_tokens WHERE hash = $1)",
                        &[&hash],
                    )
                    .await
                })
            })
            .await?
        }
    };
    Ok(n > 0)
}

/// Revokes every refresh token of `user`. Returns how many were live.
pub async fn revoke_user(db: TenantDb<'_>, user: UserId) -> Result<u64> {
    let now = unix_now();
    Ok(match db {
        TenantDb::Sqlite(s) => {
            s.run(move |c| {
                c.execute(
                    "UPDATE refresh_tokens SET revoked = 1 WHERE user_id = ?1 AND revoked = 0 \
                     AND used_at IS NULL AND expires_at > ?2",
                    (user.to_string(), now),
                )
            })
            .await? as u64
        }
        TenantDb::Pg(p) => {
            p.transaction(move |tx| {
                Box::pin(async move {
                    tx.execute(
                        "UPDATE refresh_tokens SET revoked = true WHERE user_id = $1 AND NOT revoked \
                         AND used_at IS NULL AND expires_at > $2",
                        &[user.as_uuid(), &now],
                    )
                    .await
                })
            })
            .await?
        }
    })
}

/// Whether the family `family` has been revoked (or has no live token).
pub async fn family_live(db: TenantDb<'_>, family: Uuid) -> Result<bool> {
    let now = unix_now();
    Ok(match db {
        TenantDb::Sqlite(s) => {
            s.run(move |c| {
                c.query_row(
                    "SELECT count(*) FROM refresh_tokens WHERE family = ?1 AND revoked = 0 \
                     AND used_at IS NULL AND expires_at > ?2",
                    (family.to_string(), now),
                    |r| r.get::<_, i64>(0),
                )
            })
            .await?
                > 0
        }
        TenantDb::Pg(p) => {
            p.transaction(move |tx| {
                Box::pin(async move {
                    Ok(tx
                        .query_one(
                            "SELECT count(*) FROM refresh_tokens WHERE family = $1 AND NOT revoked \
                             AND used_at IS NULL AND expires_at > $2",
                            &[&family, &now],
                        )
                        .await?
                        .get::<_, i64>(0)
                        > 0)
                })
            })
            .await?
        }
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tokens_are_256_bit_and_hashed() {
        let (a, ha) = generate();
        let (b, _) = generate();
        assert_ne!(a, b);
        assert!(well_formed(&a));
        assert_eq!(ha, hash(&a));
        assert!(!well_formed("tpr_short"));
        assert!(!well_formed(&format!("tpo_{}", &a[4..])));
    }
}
