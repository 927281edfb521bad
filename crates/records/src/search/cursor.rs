//! The page cursor of a search: the last key of a page, sealed (`tenantplane_core::cursor`)
//! to the tenant, the resource type and the sort, so it continues only the search it came
//! from.

use tenantplane_core::{TenantId, cursor};

use super::Key;
use crate::resource::ResourceType;

#[derive(serde::Serialize, serde::Deserialize)]
struct SearchCursor {
    s: String,
    lu: i64,
    id: String,
}

fn kind(rtype: ResourceType) -> String {
    format!("search:{rtype}")
}

/// The cursor of the page after `key`.
pub fn seal_cursor(tenant: TenantId, rtype: ResourceType, sort: &str, key: &Key) -> String {
    let c = SearchCursor {
        s: sort.to_owned(),
        lu: key.lu,
        id: key.id.clone(),
    };
    cursor::seal(cursor::Scope::Tenant(tenant), &kind(rtype), &c)
}

/// The key a cursor continues from, if this tenant issued it for this type and sort.
pub fn open_cursor(tenant: TenantId, rtype: ResourceType, sort: &str, c: &str) -> Option<Key> {
    let c: SearchCursor = cursor::open(cursor::Scope::Tenant(tenant), &kind(rtype), c)?;
    (c.s == sort).then_some(Key { lu: c.lu, id: c.id })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_cursor_continues_only_its_own_search() {
        let t = TenantId::new();
        let p = ResourceType::parse("Patient").unwrap_or_else(|| unreachable!());
        let o = ResourceType::parse("Observation").unwrap_or_else(|| unreachable!());
        let k = Key {
            lu: 42,
            id: "x".into(),
        };
        let c = seal_cursor(t, p, "_id", &k);
        assert_eq!(open_cursor(t, p, "_id", &c).map(|k| k.lu), Some(42));
        assert!(open_cursor(t, o, "_id", &c).is_none(), "another type");
        assert!(
            open_cursor(t, p, "-_lastUpdated", &c).is_none(),
            "another sort"
        );
        assert!(
            open_cursor(TenantId::new(), p, "_id", &c).is_none(),
            "another tenant"
        );
    }
}
