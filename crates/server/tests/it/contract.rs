//! The OpenAPI document as a contract: schemathesis (installed by `scripts/test.sh`) runs
//! every phase (examples, coverage, fuzzing, stateful) and every check against a running
//! server — the platform operations with an operator token, the tenant-host operations
//! through the tenant's path prefix (the document's own `servers`) with a user token.

use std::{path::PathBuf, process::Command};

use tenantplane_core::IsolationMode;
use tenantplane_testkit::{TestServer, TestServerOptions};

use crate::identity::{T, first_login, tenant_with_admin};

/// The schemathesis CLI: `TP_SCHEMATHESIS`, else the virtual environment `scripts/test.sh`
/// installs it into.
fn schemathesis() -> PathBuf {
    if let Some(p) = std::env::var_os("TP_SCHEMATHESIS") {
        return PathBuf::from(p);
    }
    let home = std::env::var_os("HOME")
        .map(PathBuf::from)
        .unwrap_or_default();
    let venv = std::env::var_os("TP_VENV")
        .map(PathBuf::from)
        .unwrap_or_else(|| home.join(".cache/tenantplane-venv"));
    venv.join("bin/st")
}

/// Operations whose valid-by-schema requests can still be refused for reasons a schema
/// cannot state (a plan that must exist, a reserved slug, requests per month at least
/// per minute, an opaque cursor, one's own last admin role, a provider's state): 400 (or
/// 422) is an accepted answer to positive data there, and nowhere else.
const SEMANTIC: &[(&str, &str)] = &[
    ("POST", "^/api/v1/tenants$"),
    ("PATCH", "^/api/v1/tenants/\\{tenant\\}$"),
    ("PATCH", "^/api/v1/plans/\\{plan\\}$"),
    ("GET", "^/api/v1/tenants$"),
    ("GET", "^/api/tenant/users$"),
    ("POST", "^/api/tenant/users$"),
    ("PATCH", "^/api/tenant/users/\\{id\\}$"),
    ("PUT", "^/api/tenant/sso$"),
    ("GET", "^/auth/sso/(start|callback)$"),
    ("POST", "^/auth/(login|refresh|password|logout)$"),
];

fn config(operator: &str, user: &str) -> String {
    let mut c = format!(
        r#"
workers = 1
continue-on-failure = true
request-timeout = 10
seed = 777

[generation]
max-examples = 25

[[operations]]
include-path-regex = "^/api/v1"
headers = {{ Authorization = "Bearer {operator}" }}

[[operations]]
include-path-regex = "^/(api/tenant|auth/|\\.well-known/)"
headers = {{ Authorization = "Bearer {user}" }}
"#
    );
    for (method, path) in SEMANTIC {
        c.push_str(&format!(
            r#"
[[operations]]
include-method = "{method}"
include-path-regex = "{}"
checks.positive_data_acceptance.expected-statuses = ["2XX", "3XX", "400", "401", "403", "404", "409", "412", "422", "429"]
"#,
            path.replace('\\', "\\\\")
        ));
    }
    c
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn schemathesis_finds_nothing() {
    let st = schemathesis();
    assert!(
        st.exists(),
        "schemathesis is not installed at {} — run ./scripts/test.sh, which installs it",
        st.display()
    );
    let s = TestServer::start_with(TestServerOptions {
        base_domain: Some("localhost".into()),
        limits: Some(tenantplane_server::config::LimitsConfig {
            per_ip_per_minute: 0,
            ..Default::default()
        }),
        ..Default::default()
    })
    .await
    .unwrap();
    // The tenant the document's server variable names by default.
    let (t, otp): (T, String) = tenant_with_admin(&s, "demo-hospital", IsolationMode::Sqlite).await;
    let tokens = first_login(
        &t,
        "admin@demo-hospital.example",
        &otp,
        "a long and new passphrase",
    )
    .await;
    let user = tokens["access_token"].as_str().unwrap().to_owned();
    let dir = tempfile::tempdir().unwrap();
    let cfg = dir.path().join("schemathesis.toml");
    std::fs::write(&cfg, config(&s.token, &user)).unwrap();
    let url = format!("{}/api/v1/openapi.json", s.url());
    // Tenant-host operations first: the platform's run may suspend or delete the tenant.
    let mut failed = Vec::new();
    for surface in ["^/(api/tenant|auth/|\\.well-known/)", "^/api/v1"] {
        let (st, cfg, url, cwd) = (st.clone(), cfg.clone(), url.clone(), dir.path().to_owned());
        let out = tokio::task::spawn_blocking(move || {
            Command::new(&st)
                .arg("--config-file")
                .arg(&cfg)
                .arg("--no-color")
                .args(["run", &url])
                .args(["--include-path-regex", surface])
                .args(["--phases", "examples,coverage,fuzzing,stateful"])
                .args(["--checks", "all"])
                .current_dir(cwd)
                .output()
        })
        .await
        .unwrap()
        .unwrap();
        if !out.status.success() {
            failed.push(format!(
                "{surface}:\n{}\n{}",
                String::from_utf8_lossy(&out.stdout),
                String::from_utf8_lossy(&out.stderr)
            ));
        }
    }
    assert!(
        failed.is_empty(),
        "schemathesis found problems:\n{}",
        failed.join("\n")
    );
}
