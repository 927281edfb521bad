//! Kubernetes mode: for tenants run as namespaces (or Kamaji control planes), container
//! usage and requests per namespace and the cluster's nodes are read from a Prometheus HTTP
//! API (`/api/v1/query_range`: cAdvisor's `container_cpu_usage_seconds_total` and
//! `container_memory_working_set_bytes`, kube-state-metrics'
//! `kube_pod_container_resource_requests`, `kube_node_status_capacity`, `kube_node_labels`,
//! `kube_namespace_labels`) and allocated the OpenCost way: each container is charged
//! `max(request, usage)` of CPU and memory at every step, its namespace maps to a tenant
//! (by a namespace label, or a namespace named like the tenant's slug), and the nodes —
//! priced by instance type from the price sheet's machines — are the capacity of the
//! cluster, whose unused part is the cluster's idle. The same report then covers tenants
//! served in-process and tenants run in the cluster.

use std::collections::{BTreeMap, HashMap};

use serde::Deserialize;
use tenantplane_costs::{Money, PriceSheet, Usage, allocate::Properties};

use crate::{Control, ControlError, ControlResult};

/// Where the cluster's metrics are.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct KubeSettings {
    /// Base URL of the Prometheus HTTP API (e.g. `http://prometheus:9090`).
    pub prometheus_url: String,
    /// The cluster's name in reports.
    pub cluster: String,
    /// A namespace label carrying the tenant's slug (as kube-state-metrics exports it, e.g.
    /// `label_tenantplane_io_tenant`); without it, a namespace named like a tenant's slug is
    /// that tenant's.
    pub tenant_label: Option<String>,
    /// Query resolution in seconds (the step of `query_range`, and the window of `rate()`:
    /// at least twice the scrape interval).
    pub resolution_secs: u64,
}

#[derive(Deserialize)]
struct PromResponse {
    status: String,
    data: Option<PromData>,
    error: Option<String>,
}

#[derive(Deserialize)]
struct PromData {
    result: Vec<PromSeries>,
}

#[derive(Deserialize)]
struct PromSeries {
    metric: HashMap<String, String>,
    values: Vec<(f64, String)>,
}

/// What a window of the cluster used, per step timestamp.
#[derive(Debug, Default)]
pub(crate) struct KubeWindow {
    /// (timestamp, unit key) → usage in that step.
    pub usage: Vec<(i64, String, Usage)>,
    /// (timestamp, node capacity cost of the step).
    pub capacity: Vec<(i64, Money)>,
    /// Unit key → properties.
    pub units: BTreeMap<String, Properties>,
}

fn unavailable(what: &str) -> ControlError {
    ControlError::Upstream(format!("Prometheus: {what}"))
}

impl Control {
    async fn prom(
        &self,
        k: &KubeSettings,
        query: &str,
        start: i64,
        end: i64,
    ) -> ControlResult<Vec<PromSeries>> {
        let url = format!(
            "{}/api/v1/query_range",
            k.prometheus_url.trim_end_matches('/')
        );
        let res = crate::http()
            .get(&url)
            .query(&[
                ("query", query.to_owned()),
                ("start", start.to_string()),
                ("end", end.to_string()),
                ("step", k.resolution_secs.max(1).to_string()),
            ])
            .send()
            .await
            .map_err(|e| {
                tracing::warn!(error = %e, "Prometheus unreachable");
                unavailable("unreachable")
            })?;
        let body: PromResponse = res.json().await.map_err(|e| {
            tracing::warn!(error = %e, "Prometheus answer unreadable");
            unavailable("unreadable answer")
        })?;
        if body.status != "success" {
            tracing::warn!(
                error = body.error.as_deref().unwrap_or(""),
                query,
                "Prometheus query failed"
            );
            return Err(unavailable("query failed"));
        }
        Ok(body.data.map(|d| d.result).unwrap_or_default())
    }

    /// The cluster's usage and capacity in `[start, end)`, one sample per resolution step.
    pub(crate) async fn kube_window(
        &self,
        k: &KubeSettings,
        sheet: &PriceSheet,
        start: i64,
        end: i64,
    ) -> ControlResult<KubeWindow> {
        let res = k.resolution_secs.max(1) as i64;
        // Samples at t stand for [t, t + res): the last one starts before `end`.
        let (first, last) = (start, end - 1);
        if last < first {
            return Ok(KubeWindow::default());
        }
        // rate() over one step: a resolution of at least twice the scrape interval.
        let r = format!("{res}s");
        let container = "container!=\"\",container!=\"POD\"";
        let q_cpu = format!(
            "sum by (namespace, pod, container) (rate(container_cpu_usage_seconds_total{{{container}}}[{r}]))"
        );
        let q_mem = format!(
            "sum by (namespace, pod, container) (container_memory_working_set_bytes{{{container}}})"
        );
        let q_req = |res: &str| {
            format!(
                "sum by (namespace, pod, container) (kube_pod_container_resource_requests{{resource=\"{res}\"}})"
            )
        };
        let (cpu, mem, req_cpu, req_mem) = (
            self.prom(k, &q_cpu, first, last).await?,
            self.prom(k, &q_mem, first, last).await?,
            self.prom(k, &q_req("cpu"), first, last).await?,
            self.prom(k, &q_req("memory"), first, last).await?,
        );
        let nodes = self
            .prom(
                k,
                "max by (node) (kube_node_status_capacity{resource=\"cpu\"})",
                first,
                last,
            )
            .await?;
        let types = self
            .prom(
                k,
                "max by (node, label_node_kubernetes_io_instance_type) (kube_node_labels)",
                first,
                last,
            )
            .await?;
        let ns_labels = match &k.tenant_label {
            Some(l) => {
                self.prom(
                    k,
                    &format!("max by (namespace, {l}) (kube_namespace_labels)"),
                    first,
                    last,
                )
                .await?
            }
            None => Vec::new(),
        };
        // (namespace, pod, container) → timestamp → value.
        type Series = HashMap<(String, String, String), BTreeMap<i64, f64>>;
        let index = |v: Vec<PromSeries>| -> Series {
            let mut out: Series = HashMap::new();
            for s in v {
                let key = |l: &str| s.metric.get(l).cloned().unwrap_or_default();
                let e = out
                    .entry((key("namespace"), key("pod"), key("container")))
                    .or_default();
                for (t, x) in &s.values {
                    if let Ok(x) = x.parse::<f64>()
                        && x.is_finite()
                    {
                        e.insert(*t as i64, x.max(0.0));
                    }
                }
            }
            out
        };
        let (cpu, mem, req_cpu, req_mem) = (index(cpu), index(mem), index(req_cpu), index(req_mem));
        let mut tenant_of_ns: HashMap<String, String> = HashMap::new();
        if let Some(l) = &k.tenant_label {
            for s in &ns_labels {
                if let (Some(ns), Some(slug)) = (s.metric.get("namespace"), s.metric.get(l))
                    && !slug.is_empty()
                {
                    tenant_of_ns.insert(ns.clone(), slug.clone());
                }
            }
        }
        let mut out = KubeWindow::default();
        let mut containers: Vec<&(String, String, String)> = cpu
            .keys()
            .chain(mem.keys())
            .chain(req_cpu.keys())
            .chain(req_mem.keys())
            .collect();
        containers.sort();
        containers.dedup();
        let mut per: BTreeMap<(i64, String), Usage> = BTreeMap::new();
        for key in containers {
            let ns = &key.0;
            let unit = format!("k8s:{}/{ns}", k.cluster);
            if !out.units.contains_key(&unit) {
                let slug = match &k.tenant_label {
                    Some(_) => tenant_of_ns.get(ns).cloned(),
                    None => Some(ns.clone()),
                };
                let tenant = slug.as_deref().and_then(|s| self.index.find(s));
                let mut p = Properties::from([
                    ("source".to_owned(), "kubernetes".to_owned()),
                    ("cluster".to_owned(), k.cluster.clone()),
                    ("namespace".to_owned(), ns.clone()),
                ]);
                match tenant {
                    Some(t) => {
                        p.insert("tenant".into(), t.slug.to_string());
                        p.insert("tenant_id".into(), t.id.to_string());
                        p.insert("plan".into(), t.plan.to_string());
                        p.insert("profile".into(), t.profile.to_string());
                    }
                    None => {
                        p.insert("tenant".into(), format!("__unmapped__/{ns}"));
                    }
                }
                out.units.insert(unit.clone(), p);
            }
            let empty = BTreeMap::new();
            let (c, m) = (
                cpu.get(key).unwrap_or(&empty),
                mem.get(key).unwrap_or(&empty),
            );
            let (rc, rm) = (
                req_cpu.get(key).unwrap_or(&empty),
                req_mem.get(key).unwrap_or(&empty),
            );
            let mut times: Vec<i64> = c
                .keys()
                .chain(m.keys())
                .chain(rc.keys())
                .chain(rm.keys())
                .copied()
                .collect();
            times.sort_unstable();
            times.dedup();
            for t in times {
                let at = |s: &BTreeMap<i64, f64>| s.get(&t).copied().unwrap_or(0.0);
                let cores = at(c).max(at(rc));
                let bytes = at(m).max(at(rm));
                let u = per.entry((t, unit.clone())).or_default();
                u.cpu_nanos = u
                    .cpu_nanos
                    .saturating_add((cores * res as f64 * 1e9) as u64);
                u.ram_byte_seconds = u
                    .ram_byte_seconds
                    .saturating_add((bytes * res as f64) as u64);
            }
        }
        out.usage = per.into_iter().map(|((t, unit), u)| (t, unit, u)).collect();
        // Nodes: the price of their instance type, per sample.
        let type_of: HashMap<String, String> = types
            .iter()
            .filter_map(|s| {
                Some((
                    s.metric.get("node")?.clone(),
                    s.metric
                        .get("label_node_kubernetes_io_instance_type")?
                        .clone(),
                ))
            })
            .collect();
        let mut cap: BTreeMap<i64, i128> = BTreeMap::new();
        for s in &nodes {
            let Some(node) = s.metric.get("node") else {
                continue;
            };
            let Some(ty) = type_of.get(node) else {
                tracing::warn!(node = %node, "a node without an instance type is not in the capacity");
                continue;
            };
            for (t, _) in &s.values {
                let t = *t as i64;
                let at = time::OffsetDateTime::from_unix_timestamp(t).ok();
                // The price of its instance type in force then.
                let hourly = at
                    .and_then(|at| sheet.at(at).ok())
                    .and_then(|p| p.nodes.iter().find(|n| &n.name == ty))
                    .map(|n| n.hourly.micros());
                match hourly {
                    Some(h) => {
                        *cap.entry(t).or_default() += i128::from(h) * i128::from(res) / 3_600
                    }
                    None => tracing::debug!(node = %node, instance_type = %ty, "unpriced node"),
                }
            }
        }
        out.capacity = cap
            .into_iter()
            .map(|(t, c)| (t, Money::from_micros(i64::try_from(c).unwrap_or(i64::MAX))))
            .collect();
        Ok(out)
    }
}
