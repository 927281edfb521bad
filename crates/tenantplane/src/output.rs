//! Rendering of API objects as a table, JSON or YAML.

use clap::ValueEnum;
use serde::Serialize;
use tenantplane_core::{Plan, api::TenantView};

/// Output formats.
#[derive(Debug, Clone, Copy, ValueEnum, PartialEq, Eq)]
pub enum Output {
    /// Aligned columns for people.
    Table,
    /// JSON.
    Json,
    /// YAML.
    Yaml,
    /// CSV: the table's columns, for spreadsheets.
    Csv,
}

pub fn structured<T: Serialize>(v: &T, out: Output) -> anyhow::Result<bool> {
    match out {
        Output::Json => {
            println!("{}", serde_json::to_string_pretty(v)?);
            Ok(true)
        }
        Output::Yaml => {
            print!("{}", serde_saphyr::to_string(v)?);
            Ok(true)
        }
        Output::Table | Output::Csv => Ok(false),
    }
}

/// Rows as aligned columns, or as CSV with `--output csv`.
pub fn grid(out: Output, headers: &[&str], rows: &[Vec<String>]) -> String {
    if out != Output::Csv {
        return table(headers, rows);
    }
    let mut w = csv::Writer::from_writer(Vec::new());
    let mut ok = w.write_record(headers).is_ok();
    for r in rows {
        ok &= w.write_record(r).is_ok();
    }
    match (ok, w.into_inner()) {
        (true, Ok(bytes)) => String::from_utf8_lossy(&bytes).into_owned(),
        _ => table(headers, rows),
    }
}

/// Prints rows as aligned columns.
pub fn table(headers: &[&str], rows: &[Vec<String>]) -> String {
    let mut widths: Vec<usize> = headers.iter().map(|h| h.chars().count()).collect();
    for r in rows {
        for (i, c) in r.iter().enumerate() {
            if let Some(w) = widths.get_mut(i) {
                *w = (*w).max(c.chars().count());
            }
        }
    }
    let line = |cells: Vec<String>| -> String {
        cells
            .iter()
            .enumerate()
            .map(|(i, c)| {
                let w = widths.get(i).copied().unwrap_or(0);
                format!("{c:<w$}")
            })
            .collect::<Vec<_>>()
            .join("  ")
            .trim_end()
            .to_owned()
    };
    let mut out = line(headers.iter().map(|h| h.to_string()).collect());
    out.push('\n');
    for r in rows {
        out.push_str(&line(r.clone()));
        out.push('\n');
    }
    out
}

fn tenant_row(t: &TenantView) -> Vec<String> {
    vec![
        t.slug.to_string(),
        t.display_name.clone(),
        t.profile.to_string(),
        t.plan.clone(),
        t.status.to_string(),
        t.isolation.to_string(),
        t.domains
            .iter()
            .map(|d| d.name.to_string())
            .collect::<Vec<_>>()
            .join(","),
    ]
}

const TENANT_HEADERS: [&str; 7] = [
    "SLUG",
    "NAME",
    "PROFILE",
    "PLAN",
    "STATUS",
    "ISOLATION",
    "DOMAINS",
];

/// Prints a list of tenants.
pub fn print_tenants(items: &[TenantView], next: Option<&str>, out: Output) -> anyhow::Result<()> {
    #[derive(Serialize)]
    struct Page<'a> {
        items: &'a [TenantView],
        #[serde(skip_serializing_if = "Option::is_none")]
        next_cursor: Option<&'a str>,
    }
    if structured(
        &Page {
            items,
            next_cursor: next,
        },
        out,
    )? {
        return Ok(());
    }
    let rows: Vec<_> = items.iter().map(tenant_row).collect();
    print!("{}", grid(out, &TENANT_HEADERS, &rows));
    if let Some(n) = next {
        eprintln!("(more: --all, or the API's cursor={n})");
    }
    Ok(())
}

/// Prints one tenant.
pub fn print_tenant(t: &TenantView, out: Output) -> anyhow::Result<()> {
    if structured(t, out)? {
        return Ok(());
    }
    let mut rows = vec![
        vec!["id".into(), t.id.to_string()],
        vec!["slug".into(), t.slug.to_string()],
        vec!["name".into(), t.display_name.clone()],
        vec!["profile".into(), t.profile.to_string()],
        vec!["plan".into(), t.plan.clone()],
        vec!["isolation".into(), t.isolation.to_string()],
        vec!["status".into(), t.status.to_string()],
    ];
    if let Some(r) = &t.status_reason {
        rows.push(vec!["reason".into(), r.clone()]);
    }
    if let Some(d) = t.delete_after {
        rows.push(vec!["delete after".into(), d.to_string()]);
    }
    for d in &t.domains {
        rows.push(vec![
            format!(
                "domain ({})",
                serde_json::to_value(d.kind)?.as_str().unwrap_or("")
            ),
            d.name.to_string(),
        ]);
    }
    rows.push(vec!["version".into(), t.version.to_string()]);
    print!("{}", grid(out, &["FIELD", "VALUE"], &rows));
    Ok(())
}

/// Prints plans.
pub fn print_plans(plans: &[Plan], out: Output) -> anyhow::Result<()> {
    if structured(&plans, out)? {
        return Ok(());
    }
    let rows: Vec<_> = plans
        .iter()
        .map(|p| {
            vec![
                p.name.to_string(),
                p.quotas.max_users.to_string(),
                p.quotas.max_patients.to_string(),
                format!("{} GiB", p.quotas.storage_bytes / (1024 * 1024 * 1024)),
                p.quotas.requests_per_minute.to_string(),
                p.quotas.requests_per_month.to_string(),
                p.default_isolation.to_string(),
            ]
        })
        .collect();
    print!(
        "{}",
        grid(
            out,
            &[
                "PLAN",
                "USERS",
                "PATIENTS",
                "STORAGE",
                "REQ/MIN",
                "REQ/MONTH",
                "ISOLATION"
            ],
            &rows
        )
    );
    Ok(())
}

/// `placement list`.
pub fn print_placement(
    p: &tenantplane_core::api::PlacementList,
    out: Output,
) -> anyhow::Result<()> {
    if structured(p, out)? {
        return Ok(());
    }
    let rows: Vec<_> = p
        .servers
        .iter()
        .map(|s| {
            vec![
                s.name.clone(),
                s.modes
                    .iter()
                    .map(|m| m.as_str())
                    .collect::<Vec<_>>()
                    .join(","),
                s.tenants.to_string(),
                format!("{}/{}", s.connections_open, s.budget),
                s.connections_idle.to_string(),
                standby_cell(&s.standby),
            ]
        })
        .collect();
    print!(
        "{}",
        grid(
            out,
            &[
                "SERVER",
                "MODES",
                "TENANTS",
                "OPEN/BUDGET",
                "IDLE",
                "STANDBY READY/SIZE"
            ],
            &rows
        )
    );
    Ok(())
}

/// A server's standby pools: `mode ready/size` each, with stores in other states noted.
fn standby_cell(pools: &[tenantplane_core::api::StandbyPool]) -> String {
    if pools.is_empty() {
        return "-".into();
    }
    pools
        .iter()
        .map(|p| {
            let mut s = format!("{} {}/{}", p.mode, p.ready, p.target);
            for (n, what) in [
                (p.preparing, "preparing"),
                (p.outdated, "outdated"),
                (p.retiring, "retiring"),
            ] {
                if n > 0 {
                    s.push_str(&format!(" +{n} {what}"));
                }
            }
            s
        })
        .collect::<Vec<_>>()
        .join(", ")
}

/// Prints a tenant administrator's one-time credentials (shown once).
pub fn print_admin(a: &tenantplane_core::identity::AdminCredentials) {
    println!();
    println!(
        "Tenant administrator {} ({}):",
        a.email,
        if a.created { "created" } else { "reset" }
    );
    println!("  one-time password: {}", a.one_time_password);
    println!("  It is shown only now; it must be changed at first login (POST /auth/password).");
}

/// Prints a cost report: one line per row and step, then each step's total.
pub fn print_costs(r: &tenantplane_core::usage_api::CostReport, out: Output) -> anyhow::Result<()> {
    if structured(r, out)? {
        return Ok(());
    }
    let mut rows = Vec::new();
    for step in &r.data {
        let start = step.window.start.clone();
        let all = step
            .allocations
            .values()
            .chain(step.idle.values())
            .chain(step.shared.iter());
        for x in all {
            rows.push(vec![
                start.clone(),
                x.name.clone(),
                x.cpu_cost.clone(),
                x.storage_cost.clone(),
                x.network_cost.clone(),
                x.ai_cost.clone(),
                x.api_cost.clone(),
                x.idle_cost.clone(),
                x.shared_cost.clone(),
                x.total_cost.clone(),
            ]);
        }
        rows.push(vec![
            start,
            "(total)".into(),
            String::new(),
            String::new(),
            String::new(),
            String::new(),
            String::new(),
            String::new(),
            String::new(),
            step.total_cost.clone(),
        ]);
    }
    print!(
        "{}",
        table(
            &[
                "STEP", "NAME", "CPU", "STORAGE", "NETWORK", "AI", "API", "IDLE", "SHARED", "TOTAL"
            ],
            &rows
        )
    );
    println!(
        "amounts in {}; window {} – {}",
        r.currency, r.window.start, r.window.end
    );
    Ok(())
}

/// Prints a tenant's statement.
pub fn print_statement(
    s: &tenantplane_core::usage_api::Statement,
    out: Output,
) -> anyhow::Result<()> {
    if structured(s, out)? {
        return Ok(());
    }
    println!(
        "{} — statement {} (plan {}, amounts in {}, up to {})",
        s.display_name, s.month, s.plan, s.currency, s.as_of
    );
    let mut rows: Vec<Vec<String>> = s
        .lines
        .iter()
        .filter(|l| l.amount != "0.000000")
        .map(|l| vec![l.category.clone(), l.amount.clone()])
        .collect();
    rows.push(vec!["month to date".into(), s.total.clone()]);
    rows.push(vec![
        "projected month end".into(),
        s.projected_total.clone(),
    ]);
    rows.push(vec!["previous month".into(), s.previous_total.clone()]);
    rows.push(vec![
        "growth".into(),
        s.growth_pct
            .map(|g| format!("{g:+.1} %"))
            .unwrap_or_else(|| "-".into()),
    ]);
    if let Some(p) = &s.per_user {
        rows.push(vec![format!("per user ({})", s.users), p.clone()]);
    }
    print!("{}", table(&["ITEM", "AMOUNT"], &rows));
    if !s.departments.is_empty() {
        let rows: Vec<Vec<String>> = s
            .departments
            .iter()
            .map(|d| vec![d.department.clone(), d.users.to_string(), d.amount.clone()])
            .collect();
        print!("{}", table(&["DEPARTMENT", "USERS", "AMOUNT"], &rows));
    }
    println!("projection: {}", s.projection_method);
    Ok(())
}

/// What a failed control-plane operation tells the person at the terminal: the problem's
/// detail, as the API would answer it.
pub fn describe(e: tenantplane_control::ControlError) -> String {
    let e = tenantplane_server::problem::ApiError::from(e);
    e.detail.clone().unwrap_or_else(|| e.title.to_owned())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn table_aligns_unicode() {
        let t = table(
            &["A", "B"],
            &[
                vec!["São João".into(), "x".into()],
                vec!["ab".into(), "yy".into()],
            ],
        );
        assert_eq!(t, "A         B\nSão João  x\nab        yy\n");
    }
}
