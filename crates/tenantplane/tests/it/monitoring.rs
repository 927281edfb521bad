//! The shipped Prometheus rules (`deploy/prometheus`): valid for `promtool check rules`,
//! every alert unit-tested by `promtool test rules`, and every metric they (and the Grafana
//! dashboards) read emitted somewhere in the code (a renamed metric would silence an alert).
//! The Alertmanager example (`deploy/alertmanager`) is valid for `amtool check-config` and
//! routes each tenant's alerts to its contacts and the NOC (`amtool config routes test`).

use std::{path::PathBuf, process::Command};

fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../..")
}

fn promtool() -> &'static str {
    ["/usr/bin/promtool", "/usr/local/bin/promtool"]
        .into_iter()
        .find(|p| std::path::Path::new(p).exists())
        .expect("promtool is not installed (apt-get install -y prometheus; scripts/test.sh does)")
}

#[test]
fn prometheus_rules_check_and_pass_their_unit_tests() {
    let dir = root().join("deploy/prometheus");
    for args in [
        ["check", "rules", "rules.yml"],
        ["test", "rules", "rules_test.yml"],
    ] {
        let o = Command::new(promtool())
            .args(args)
            .current_dir(&dir)
            .output()
            .unwrap();
        assert!(
            o.status.success(),
            "promtool {}: {}{}",
            args.join(" "),
            String::from_utf8_lossy(&o.stdout),
            String::from_utf8_lossy(&o.stderr)
        );
    }
    // Every alert has a unit test.
    let rules = std::fs::read_to_string(dir.join("rules.yml")).unwrap();
    let tests = std::fs::read_to_string(dir.join("rules_test.yml")).unwrap();
    for alert in rules
        .lines()
        .filter_map(|l| l.trim().strip_prefix("- alert: "))
    {
        assert!(
            tests.contains(&format!("alertname: {alert}")),
            "no unit test for {alert}"
        );
    }
}

fn amtool() -> &'static str {
    ["/usr/bin/amtool", "/usr/local/bin/amtool"]
        .into_iter()
        .find(|p| std::path::Path::new(p).exists())
        .expect("amtool is not installed (apt-get install -y prometheus-alertmanager; scripts/test.sh does)")
}

#[test]
fn the_alertmanager_example_routes_each_tenants_alerts_to_its_contacts() {
    let dir = root().join("deploy/alertmanager");
    let o = Command::new(amtool())
        .args(["check-config", "alertmanager.yml"])
        .current_dir(&dir)
        .output()
        .unwrap();
    assert!(
        o.status.success(),
        "{}{}",
        String::from_utf8_lossy(&o.stdout),
        String::from_utf8_lossy(&o.stderr)
    );
    for (labels, receivers) in [
        (
            &[
                "tenant=hospital-sao-lucas",
                "alertname=TenantDown",
                "severity=page",
            ][..],
            "noc-pager,tenant-hospital-sao-lucas,noc",
        ),
        (
            &[
                "tenant=camara-campinas",
                "alertname=TenantUptimeBelowSla",
                "severity=ticket",
            ][..],
            "tenant-camara-campinas,noc",
        ),
        (&["tenant=no-route-yet", "severity=ticket"][..], "noc"),
        (
            &["alertname=TenantStoresBusy", "severity=ticket"][..],
            "noc",
        ),
    ] {
        let o = Command::new(amtool())
            .args(["config", "routes", "test", "--config.file=alertmanager.yml"])
            .args(labels)
            .current_dir(&dir)
            .output()
            .unwrap();
        assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
        assert_eq!(
            String::from_utf8_lossy(&o.stdout).trim(),
            receivers,
            "{labels:?}"
        );
    }
}

#[test]
fn every_metric_the_rules_read_is_emitted() {
    let mut rules = std::fs::read_to_string(root().join("deploy/prometheus/rules.yml")).unwrap();
    for d in ["fleet.json", "tenant.json"] {
        rules.push_str(&std::fs::read_to_string(root().join("deploy/grafana").join(d)).unwrap());
    }
    let mut source = String::new();
    let mut stack = vec![root().join("crates")];
    while let Some(d) = stack.pop() {
        for e in std::fs::read_dir(d).unwrap() {
            let p = e.unwrap().path();
            if p.is_dir() {
                if !p.ends_with("target") && !p.ends_with("tests") {
                    stack.push(p);
                }
            } else if p.extension().is_some_and(|x| x == "rs") {
                source.push_str(&std::fs::read_to_string(&p).unwrap());
            }
        }
    }
    let mut names: Vec<&str> = rules
        .split(|c: char| !(c.is_ascii_alphanumeric() || c == '_'))
        .filter(|w| w.starts_with("tenantplane_"))
        .collect();
    names.sort_unstable();
    names.dedup();
    assert!(names.len() >= 6, "{names:?}");
    for n in names {
        let base = n
            .trim_end_matches("_bucket")
            .trim_end_matches("_sum")
            .trim_end_matches("_count");
        assert!(
            source.contains(&format!("\"{base}\"")),
            "{n} is read by the rules but emitted nowhere"
        );
    }
}
