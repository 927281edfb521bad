//! Tenant resolution: an in-memory index of every tenant (by custom domain, slug and id),
//! kept fresh from the catalog's change feed, and the pure function that maps a request's
//! `Host`, `X-Tenant-Id` (trusted proxies only) and `/t/{slug}/` prefix to a tenant.
//!
//! Order, first match wins: exact custom domain → `{slug}.{base_domain}` →
//! `X-Tenant-Id` from a trusted proxy → `/t/{slug}/…` path prefix.

use std::{
    collections::HashMap,
    net::IpAddr,
    sync::{Arc, RwLock},
};

use ipnet::IpNet;
use tenantplane_core::{DomainName, Tenant, TenantId};

/// How the tenant was named in the request.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Via {
    /// An exact custom domain.
    CustomDomain,
    /// `{slug}.{base_domain}`.
    Subdomain,
    /// `X-Tenant-Id` from a trusted proxy.
    Header,
    /// `/t/{slug}/…`.
    PathPrefix,
}

impl Via {
    /// Metric label.
    pub fn as_str(self) -> &'static str {
        match self {
            Via::CustomDomain => "custom-domain",
            Via::Subdomain => "subdomain",
            Via::Header => "header",
            Via::PathPrefix => "path",
        }
    }
}

/// What resolution found.
#[derive(Debug, Clone)]
pub enum Resolution {
    /// A tenant; `strip` is the length of a `/t/{slug}` prefix to remove from the path.
    Found {
        /// The tenant at its latest known state.
        tenant: Arc<Tenant>,
        /// How it was named.
        via: Via,
        /// Bytes of path prefix to strip.
        strip: usize,
    },
    /// The request named a tenant that does not exist.
    Unknown(Via),
    /// The request named no tenant at all.
    NoTenant,
}

/// The request facts resolution looks at.
#[derive(Debug, Clone, Copy)]
pub struct RequestFacts<'a> {
    /// The `Host` header (or `:authority`).
    pub host: Option<&'a str>,
    /// The `X-Tenant-Id` header.
    pub tenant_header: Option<&'a str>,
    /// The TCP peer.
    pub peer: Option<IpAddr>,
    /// The request path.
    pub path: &'a str,
}

#[derive(Default)]
struct Inner {
    by_id: HashMap<TenantId, Arc<Tenant>>,
    by_slug: HashMap<Box<str>, Arc<Tenant>>,
    by_domain: HashMap<Box<str>, Arc<Tenant>>,
    /// Tenants by their resource-id hint (`tenantplane_core::id_tags`).
    by_hint: HashMap<u16, Vec<TenantId>>,
    last_seq: u64,
}

/// The in-memory tenant index.
pub struct TenantIndex {
    inner: RwLock<Inner>,
    base_suffix: String,
    trusted: Vec<IpNet>,
}

impl std::fmt::Debug for TenantIndex {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TenantIndex")
            .field("tenants", &self.len())
            .finish_non_exhaustive()
    }
}

impl TenantIndex {
    /// An empty index for `base_domain`, trusting `X-Tenant-Id` from `trusted` peers.
    pub fn new(base_domain: &str, trusted: Vec<IpNet>) -> Self {
        Self {
            inner: RwLock::new(Inner::default()),
            base_suffix: format!(".{base_domain}"),
            trusted,
        }
    }

    /// Number of tenants indexed.
    pub fn len(&self) -> usize {
        self.inner
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .by_id
            .len()
    }

    /// Tenants (not deleted) per placement, for the placement policy and `placement list`.
    pub fn placement_counts(&self) -> HashMap<String, usize> {
        let g = self.inner.read().unwrap_or_else(|p| p.into_inner());
        let mut out = HashMap::new();
        for t in g.by_id.values() {
            if let Some(p) = &t.placement
                && t.status != tenantplane_core::TenantStatus::Deleted
            {
                *out.entry(p.clone()).or_insert(0) += 1;
            }
        }
        out
    }

    /// True when no tenant is indexed.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// The highest catalog change sequence applied.
    pub fn last_seq(&self) -> u64 {
        self.inner
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .last_seq
    }

    /// Applies tenants at their latest state (older versions than indexed are ignored), and
    /// records that the change feed was read up to `seq` (if given).
    pub fn apply(&self, tenants: impl IntoIterator<Item = Tenant>, seq: Option<u64>) {
        let mut g = self.inner.write().unwrap_or_else(|p| p.into_inner());
        for t in tenants {
            if let Some(old) = g.by_id.get(&t.id).cloned() {
                if old.version > t.version {
                    continue;
                }
                for d in &old.custom_domains {
                    if g.by_domain.get(d.as_str()).is_some_and(|x| x.id == old.id) {
                        g.by_domain.remove(d.as_str());
                    }
                }
            }
            let t = Arc::new(t);
            if !g.by_id.contains_key(&t.id) {
                g.by_hint
                    .entry(tenantplane_core::id_tags::hint(t.id))
                    .or_default()
                    .push(t.id);
            }
            for d in &t.custom_domains {
                g.by_domain.insert(d.as_str().into(), t.clone());
            }
            g.by_slug.insert(t.slug.as_str().into(), t.clone());
            g.by_id.insert(t.id, t);
        }
        if let Some(s) = seq {
            g.last_seq = g.last_seq.max(s);
        }
    }

    /// Whether `peer` is one of `server.trusted_proxies`.
    pub fn is_trusted(&self, peer: Option<IpAddr>) -> bool {
        peer.is_some_and(|ip| {
            let ip = match ip {
                IpAddr::V6(v6) => v6.to_ipv4_mapped().map(IpAddr::V4).unwrap_or(ip),
                v4 => v4,
            };
            self.trusted.iter().any(|n| n.contains(&ip))
        })
    }

    /// The other tenant that minted `id`, if any: `id` was presented to `current` and not
    /// found there.
    pub fn foreign_owner(&self, current: TenantId, id: &uuid::Uuid) -> Option<TenantId> {
        let g = self.inner.read().unwrap_or_else(|p| p.into_inner());
        g.by_hint
            .get(&tenantplane_core::id_tags::hint_of(id))?
            .iter()
            .copied()
            .find(|t| *t != current && tenantplane_core::id_tags::minted_by(id, *t))
    }

    /// Resolves a request. Returns the resolution and whether an `X-Tenant-Id` header from
    /// an untrusted peer was ignored.
    pub fn resolve(&self, req: RequestFacts<'_>) -> (Resolution, bool) {
        let g = self.inner.read().unwrap_or_else(|p| p.into_inner());
        let host = req.host.and_then(DomainName::from_host_header);
        if let Some(host) = host.as_deref() {
            if let Some(t) = g.by_domain.get(host) {
                return (found(t, Via::CustomDomain, 0), false);
            }
            if let Some(label) = host.strip_suffix(self.base_suffix.as_str())
                && !label.is_empty()
                && !label.contains('.')
            {
                return match g.by_slug.get(label) {
                    Some(t) => (found(t, Via::Subdomain, 0), false),
                    None => (Resolution::Unknown(Via::Subdomain), false),
                };
            }
        }
        let mut untrusted_header = false;
        if let Some(h) = req.tenant_header {
            if self.is_trusted(req.peer) {
                let h = h.trim();
                let t = match h.parse::<TenantId>() {
                    Ok(id) => g.by_id.get(&id),
                    Err(_) => g.by_slug.get(h),
                };
                return match t {
                    Some(t) => (found(t, Via::Header, 0), false),
                    None => (Resolution::Unknown(Via::Header), false),
                };
            }
            untrusted_header = true;
        }
        if let Some(rest) = req.path.strip_prefix("/t/") {
            let slug = rest.split('/').next().unwrap_or("");
            let strip = 3 + slug.len();
            return match g.by_slug.get(slug) {
                Some(t) if !slug.is_empty() => (found(t, Via::PathPrefix, strip), untrusted_header),
                _ => (Resolution::Unknown(Via::PathPrefix), untrusted_header),
            };
        }
        (Resolution::NoTenant, untrusted_header)
    }

    /// Every indexed tenant.
    pub fn all(&self) -> Vec<Arc<Tenant>> {
        let g = self.inner.read().unwrap_or_else(|p| p.into_inner());
        g.by_id.values().cloned().collect()
    }

    /// A tenant by id or slug, if indexed.
    pub fn find(&self, id_or_slug: &str) -> Option<Arc<Tenant>> {
        let g = self.inner.read().unwrap_or_else(|p| p.into_inner());
        match id_or_slug.parse::<TenantId>() {
            Ok(id) => g.by_id.get(&id).cloned(),
            Err(_) => g.by_slug.get(id_or_slug).cloned(),
        }
    }

    /// A tenant by id, if indexed.
    pub fn get(&self, id: &TenantId) -> Option<Arc<Tenant>> {
        self.inner
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .by_id
            .get(id)
            .cloned()
    }
}

fn found(t: &Arc<Tenant>, via: Via, strip: usize) -> Resolution {
    Resolution::Found {
        tenant: t.clone(),
        via,
        strip,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tenantplane_core::{IsolationMode, Profile, TenantStatus};
    use time::OffsetDateTime;

    fn t(slug: &str, domains: &[&str]) -> Tenant {
        Tenant {
            custom_domains: domains.iter().map(|d| d.parse().unwrap()).collect(),
            status: TenantStatus::Active,
            ..Tenant::new(
                slug.parse().unwrap(),
                slug.into(),
                Profile::Hospital,
                "small".parse().unwrap(),
                IsolationMode::Sqlite,
                OffsetDateTime::UNIX_EPOCH,
            )
        }
    }

    fn facts<'a>(
        host: &'a str,
        header: Option<&'a str>,
        peer: &str,
        path: &'a str,
    ) -> RequestFacts<'a> {
        RequestFacts {
            host: Some(host),
            tenant_header: header,
            peer: peer.parse().ok(),
            path,
        }
    }

    fn slug_of(r: &Resolution) -> Option<(String, Via, usize)> {
        match r {
            Resolution::Found { tenant, via, strip } => {
                Some((tenant.slug.to_string(), *via, *strip))
            }
            _ => None,
        }
    }

    #[test]
    fn precedence_and_spoofing() {
        let idx = TenantIndex::new("tp.example", vec!["10.0.0.0/8".parse().unwrap()]);
        let a = t("alpha", &["records.alpha.org"]);
        let b = t("bravo", &[]);
        idx.apply([a.clone(), b.clone()], Some(2));
        let r = |h, hd, p, path| slug_of(&idx.resolve(facts(h, hd, p, path)).0);
        assert_eq!(
            r("records.alpha.org", None, "1.2.3.4", "/"),
            Some(("alpha".into(), Via::CustomDomain, 0))
        );
        assert_eq!(
            r("RECORDS.alpha.org.:443", None, "1.2.3.4", "/"),
            Some(("alpha".into(), Via::CustomDomain, 0))
        );
        assert_eq!(
            r("bravo.tp.example", None, "1.2.3.4", "/"),
            Some(("bravo".into(), Via::Subdomain, 0))
        );
        // Host wins over header and path.
        assert_eq!(
            r("bravo.tp.example", Some("alpha"), "10.1.1.1", "/t/alpha/x"),
            Some(("bravo".into(), Via::Subdomain, 0))
        );
        // Trusted header.
        assert_eq!(
            r("127.0.0.1", Some("alpha"), "10.1.1.1", "/"),
            Some(("alpha".into(), Via::Header, 0))
        );
        assert_eq!(
            r("127.0.0.1", Some(&a.id.to_string()), "::ffff:10.1.1.1", "/"),
            Some(("alpha".into(), Via::Header, 0))
        );
        // Untrusted header: ignored (and reported), falls through to the path.
        let (res, untrusted) =
            idx.resolve(facts("127.0.0.1", Some("alpha"), "1.2.3.4", "/t/bravo/api"));
        assert!(untrusted);
        assert_eq!(slug_of(&res), Some(("bravo".into(), Via::PathPrefix, 8)));
        let (res, untrusted) = idx.resolve(facts("127.0.0.1", Some("alpha"), "1.2.3.4", "/api"));
        assert!(untrusted);
        assert!(matches!(res, Resolution::NoTenant));
        // Look-alike hosts do not resolve.
        assert!(matches!(
            idx.resolve(facts("alpha.tp.example.evil.org", None, "1.2.3.4", "/"))
                .0,
            Resolution::NoTenant
        ));
        assert!(matches!(
            idx.resolve(facts("x.alpha.tp.example", None, "1.2.3.4", "/"))
                .0,
            Resolution::NoTenant
        ));
        assert!(matches!(
            idx.resolve(facts("evil-records.alpha.org", None, "1.2.3.4", "/"))
                .0,
            Resolution::NoTenant
        ));
        assert!(matches!(
            idx.resolve(facts("nope.tp.example", None, "1.2.3.4", "/t/alpha/"))
                .0,
            Resolution::Unknown(Via::Subdomain)
        ));
        assert!(matches!(
            idx.resolve(facts("h", None, "1.2.3.4", "/t/nope/")).0,
            Resolution::Unknown(Via::PathPrefix)
        ));
        assert!(matches!(
            idx.resolve(facts("h", None, "1.2.3.4", "/t//")).0,
            Resolution::Unknown(Via::PathPrefix)
        ));
    }

    proptest::proptest! {
        #[test]
        fn resolution_never_panics_and_never_invents_tenants(
            host in "\\PC{0,40}", header in proptest::option::of("\\PC{0,40}"), path in "\\PC{0,60}"
        ) {
            let idx = TenantIndex::new("tp.example", vec!["127.0.0.0/8".parse().unwrap()]);
            idx.apply([t("alpha", &["records.alpha.org"])], None);
            let (r, _) = idx.resolve(RequestFacts { host: Some(&host), tenant_header: header.as_deref(), peer: "127.0.0.1".parse().ok(), path: &path });
            if let Resolution::Found { tenant, strip, .. } = r {
                proptest::prop_assert_eq!(tenant.slug.as_str(), "alpha");
                proptest::prop_assert!(strip <= path.len());
            }
        }
    }

    #[test]
    fn updates_move_domains_and_ignore_stale_versions() {
        let idx = TenantIndex::new("tp.example", vec![]);
        let mut a = t("alpha", &["one.example.org"]);
        idx.apply([a.clone()], None);
        a.custom_domains = vec!["two.example.org".parse().unwrap()];
        a.version = 2;
        idx.apply([a.clone()], None);
        let r = |h: &'static str| idx.resolve(facts(h, None, "1.1.1.1", "/")).0;
        assert!(matches!(r("one.example.org"), Resolution::NoTenant));
        assert!(matches!(r("two.example.org"), Resolution::Found { .. }));
        let mut stale = a.clone();
        stale.version = 1;
        stale.custom_domains = vec![];
        idx.apply([stale], Some(9));
        assert!(matches!(r("two.example.org"), Resolution::Found { .. }));
        assert_eq!(idx.last_seq(), 9);
    }
}
