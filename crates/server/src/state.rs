//! Narrow views of the server's state, one per surface: a handler's signature says what it
//! may touch. The composition module builds each view from the whole state (`FromRef`);
//! nothing else sees the whole.
//!
//! - operator API and platform routes: the control plane (`Arc<Control>`) and the
//!   configuration (`Arc<Config>`);
//! - tenant surfaces (FHIR, users and sessions, SSO, the tenant's profile): [`TenantSide`],
//!   plus the rate limits (`Arc<Limits>`) where a handler counts logins;
//! - the gate that resolves tenants: [`GateState`].

use std::sync::Arc;

use tenantplane_audit::AuditLog;
use tenantplane_control::{PlanQuotas, TenantIndex};
use tenantplane_identity::Identity;
use tenantplane_metering::RequestMeter;
use tenantplane_tenant_data::TenantData;

use crate::{config::PublicUrl, limits::Limits};

/// What a tenant-side handler may touch: the tenant stores (through its `TenantCtx`),
/// identity, the audit log, the tenant index (only to tell whether an unknown id belongs to
/// another tenant) and the plans' quotas.
#[derive(Clone, Debug)]
pub struct TenantSide {
    /// Tenant data stores.
    pub data: Arc<TenantData>,
    /// Users, keys, tokens, SSO.
    pub identity: Arc<Identity>,
    /// Where security events and record accesses go.
    pub audit: Arc<AuditLog>,
    /// The tenant index.
    pub index: Arc<TenantIndex>,
    /// Every plan's quotas.
    pub plans: Arc<PlanQuotas>,
    /// Each tenant's concurrent expensive requests.
    pub heavy: Arc<crate::limits::heavy::HeavyGate>,
}

/// The platform's external URL, shared (the listener's real port is learnt at start).
#[derive(Clone, Debug)]
pub struct Links(pub Arc<arc_swap::ArcSwap<PublicUrl>>);

impl Links {
    /// The current external URL.
    pub fn public(&self) -> Arc<PublicUrl> {
        self.0.load_full()
    }
}

/// The platform's base domain (tenant subdomains live under it).
#[derive(Clone, Debug)]
pub struct BaseDomain(pub Arc<str>);

/// What the gate needs to resolve a tenant and admit its request.
#[derive(Clone, Debug)]
pub struct GateState {
    /// The tenant index.
    pub index: Arc<TenantIndex>,
    /// Every plan's quotas.
    pub plans: Arc<PlanQuotas>,
    /// Per-tenant rate limits.
    pub limits: Arc<Limits>,
    /// Monthly request counts.
    pub meter: Arc<RequestMeter>,
    /// Where spoofed-header events go.
    pub audit: Arc<AuditLog>,
    /// The platform's external URL.
    pub links: Links,
    /// The base domain.
    pub base_domain: BaseDomain,
}
