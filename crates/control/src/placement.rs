//! Placement of new tenants, and the tenant-store migrations of this binary's components.

use std::collections::{BTreeMap, HashMap};

use tenantplane_core::IsolationMode;
use tenantplane_tenant_data::migrate::{Migration, MigrationSet};

/// Every component's migrations, in registration order (a component may build on the
/// tables of those before it).
pub fn component_migrations() -> Vec<Migration> {
    let mut all = tenantplane_tenant_data::builtin_migrations();
    all.extend_from_slice(tenantplane_identity::schema::MIGRATIONS);
    all.extend_from_slice(tenantplane_records::schema::MIGRATIONS);
    all
}

/// Every component's migrations, as embedded in this binary.
pub fn migrations() -> Result<MigrationSet, tenantplane_tenant_data::DataError> {
    MigrationSet::new(component_migrations())
}

/// Where a new tenant of `mode` goes: `None` for sqlite; otherwise the server accepting the
/// mode with the fewest tenants (ties by name). `Err` when no server accepts it.
pub fn place(
    servers: &BTreeMap<String, Vec<IsolationMode>>,
    counts: &HashMap<String, usize>,
    mode: IsolationMode,
) -> Result<Option<String>, String> {
    if mode == IsolationMode::Sqlite {
        return Ok(None);
    }
    servers
        .iter()
        .filter(|(_, modes)| modes.contains(&mode))
        .min_by_key(|(name, _)| (counts.get(*name).copied().unwrap_or(0), (*name).clone()))
        .map(|(name, _)| Some(name.clone()))
        .ok_or_else(|| format!("no database server accepts {mode} tenants (see [data.servers])"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn placement_prefers_the_emptiest_server_accepting_the_mode() {
        let all = vec![
            IsolationMode::PgShared,
            IsolationMode::PgSchema,
            IsolationMode::PgDatabase,
        ];
        let mut servers = BTreeMap::new();
        servers.insert("a".to_string(), all);
        servers.insert("b".to_string(), vec![IsolationMode::PgShared]);
        let mut counts = HashMap::new();
        assert_eq!(place(&servers, &counts, IsolationMode::Sqlite), Ok(None));
        assert_eq!(
            place(&servers, &counts, IsolationMode::PgShared),
            Ok(Some("a".into()))
        );
        counts.insert("a".to_string(), 3);
        assert_eq!(
            place(&servers, &counts, IsolationMode::PgShared),
            Ok(Some("b".into()))
        );
        assert_eq!(
            place(&servers, &counts, IsolationMode::PgDatabase),
            Ok(Some("a".into()))
        );
        servers.clear();
        assert!(place(&servers, &counts, IsolationMode::PgSchema).is_err());
    }
}
