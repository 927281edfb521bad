//! `/api/v1/placement` and `/api/v1/migrations`: where tenants live and how up to date their
//! stores are.

use std::sync::Arc;

use tenantplane_control::Control;

use axum::{Json, extract::State};
use tenantplane_core::{
    IsolationMode,
    api::{PlacementList, PlacementServer},
};

use tenantplane_control::fleet;

use crate::{config::Config, context::OperatorCtx, problem::ApiResult};

/// Servers with their tenant counts and standby pools (from the catalog) and connection use
/// (live, this replica).
#[utoipa::path(get, path = "/api/v1/placement", tag = "placement", security(("operator_token" = [])),
    responses((status = 200, description = "The embedded store and every database server", body = PlacementList)))]
pub async fn list(
    State(control): State<Arc<Control>>,
    State(config): State<Arc<Config>>,
    _op: OperatorCtx,
) -> ApiResult<Json<PlacementList>> {
    let mut counts: std::collections::HashMap<Option<String>, u64> = Default::default();
    for c in control.catalog().tenant_counts().await? {
        if c.status != tenantplane_core::TenantStatus::Deleted {
            *counts.entry(c.placement).or_default() += c.count;
        }
    }
    let mut pools: std::collections::HashMap<
        Option<String>,
        Vec<tenantplane_core::api::StandbyPool>,
    > = Default::default();
    for (server, pool) in control.standby_pools().await? {
        pools.entry(server).or_default().push(pool);
    }
    let sqlite = control.data().sqlite();
    let mut servers = vec![PlacementServer {
        name: "embedded".into(),
        modes: vec![IsolationMode::Sqlite],
        tenants: counts.get(&None).copied().unwrap_or(0),
        connections_open: sqlite.open_count() as u64,
        connections_idle: 0,
        budget: sqlite.max_open() as u64,
        standby: pools.remove(&None).unwrap_or_default(),
    }];
    for (name, cfg) in &config.data.servers {
        let usage = control
            .data()
            .server(name)
            .map(|p| p.usage())
            .unwrap_or_default();
        servers.push(PlacementServer {
            name: name.clone(),
            modes: cfg.modes.clone(),
            tenants: counts.get(&Some(name.clone())).copied().unwrap_or(0),
            connections_open: usage.open as u64,
            connections_idle: usage.idle as u64,
            budget: cfg.budget as u64,
            standby: pools.remove(&Some(name.clone())).unwrap_or_default(),
        });
    }
    Ok(Json(PlacementList { servers }))
}

/// Fleet migration status: tenants per isolation mode and schema version, from the catalog.
#[utoipa::path(get, path = "/api/v1/migrations", tag = "placement", security(("operator_token" = [])),
    responses((status = 200, description = "Versions × tenant counts", body = Object)))]
pub async fn status(
    State(control): State<Arc<Control>>,
    _op: OperatorCtx,
) -> ApiResult<Json<fleet::FleetStatus>> {
    Ok(Json(fleet::status(&control).await?))
}
