//! Page cursors: the one codec of every paged listing (tenants, users, FHIR searches).
//!
//! A cursor is `base64url(payload JSON) "." base64url(MAC)`: opaque to clients, sealed with
//! the deployment's key to the scope that issued it (one tenant, or the platform) and to what
//! it pages (`kind`). Another tenant's cursor, another listing's, or an altered one opens
//! to nothing, like a random string.

use base64::Engine as _;
use serde::{Serialize, de::DeserializeOwned};

use crate::{TenantId, id_tags};

/// Who issued a cursor.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Scope {
    /// The platform (operator listings).
    Platform,
    /// One tenant.
    Tenant(TenantId),
}

#[derive(Serialize)]
struct SealedRef<'a, T> {
    k: &'a str,
    p: &'a T,
}

#[derive(serde::Deserialize)]
struct Sealed<T> {
    k: String,
    p: T,
}

fn mac(scope: Scope, body: &[u8]) -> [u8; 16] {
    match scope {
        Scope::Platform => id_tags::platform_mac(body),
        Scope::Tenant(t) => id_tags::seal_mac(t, body),
    }
}

/// The cursor for `payload` of a listing of `kind` issued in `scope`.
pub fn seal<T: Serialize>(scope: Scope, kind: &str, payload: &T) -> String {
    let b64 = base64::engine::general_purpose::URL_SAFE_NO_PAD;
    let body = serde_json::to_vec(&SealedRef {
        k: kind,
        p: payload,
    })
    .unwrap_or_default();
    format!("{}.{}", b64.encode(&body), b64.encode(mac(scope, &body)))
}

/// The payload of a cursor issued in `scope` for a listing of `kind`; `None` for anything
/// else.
pub fn open<T: DeserializeOwned>(scope: Scope, kind: &str, cursor: &str) -> Option<T> {
    let b64 = base64::engine::general_purpose::URL_SAFE_NO_PAD;
    let (body, tag) = cursor.split_once('.')?;
    let body = b64.decode(body).ok()?;
    let tag = b64.decode(tag).ok()?;
    let want = mac(scope, &body);
    if !bool::from(subtle::ConstantTimeEq::ct_eq(
        tag.as_slice(),
        want.as_slice(),
    )) {
        return None;
    }
    let s: Sealed<T> = serde_json::from_slice(&body).ok()?;
    (s.k == kind).then_some(s.p)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cursors_open_only_where_they_were_issued() {
        let a = Scope::Tenant(TenantId::new());
        let b = Scope::Tenant(TenantId::new());
        let c = seal(a, "users", &"ann@example.org");
        assert_eq!(
            open::<String>(a, "users", &c).as_deref(),
            Some("ann@example.org")
        );
        assert_eq!(open::<String>(b, "users", &c), None, "another tenant's");
        assert_eq!(open::<String>(Scope::Platform, "users", &c), None);
        assert_eq!(open::<String>(a, "search", &c), None, "another listing's");
        let mut altered = c.clone();
        altered.replace_range(0..1, if c.starts_with('A') { "B" } else { "A" });
        assert_eq!(open::<String>(a, "users", &altered), None);
        assert_eq!(open::<String>(a, "users", "garbage"), None);
        assert_eq!(open::<String>(a, "users", ""), None);
    }
}
