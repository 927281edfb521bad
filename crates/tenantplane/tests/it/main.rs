//! End-to-end tests of the `tenantplane` binary: real processes, real signals, real HTTP.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod architecture;
mod attribution;
mod audit;
mod ledger;
mod logs;
mod monitoring;

use std::{
    io::{BufRead, BufReader},
    path::Path,
    process::{Child, Command, Output, Stdio},
    sync::mpsc,
    time::Duration,
};

const BIN: &str = env!("CARGO_BIN_EXE_tenantplane");

struct Running {
    child: Child,
    url: String,
    stdout: Vec<String>,
}

impl Drop for Running {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Starts `tenantplane serve` in `cwd`, waits for "listening", returns it with its stdout.
fn serve(cwd: &Path, extra: &[&str], env: &[(&str, &str)]) -> Running {
    let port = tenantplane_testkit::pg::free_port().unwrap();
    let listen = format!("127.0.0.1:{port}");
    let mut cmd = Command::new(BIN);
    cmd.current_dir(cwd)
        .args(["serve", "--listen", &listen])
        .args(extra)
        .env("RUST_LOG", "warn")
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::null());
    for (k, v) in env {
        cmd.env(k, v);
    }
    let mut child = cmd.spawn().unwrap();
    let out = child.stdout.take().unwrap();
    let (tx, rx) = mpsc::channel();
    std::thread::spawn(move || {
        for line in BufReader::new(out).lines() {
            let Ok(line) = line else { break };
            if tx.send(line).is_err() {
                break;
            }
        }
    });
    let mut stdout = Vec::new();
    loop {
        let line = rx
            .recv_timeout(Duration::from_secs(30))
            .expect("server did not start");
        let done = line.contains("listening on");
        stdout.push(line);
        if done {
            break;
        }
    }
    Running {
        child,
        url: format!("http://{listen}"),
        stdout,
    }
}

fn token_of(r: &Running) -> Option<String> {
    r.stdout
        .iter()
        .find_map(|l| l.trim().strip_prefix("tpo_").map(|t| format!("tpo_{t}")))
}

fn cli(cwd: &Path, args: &[&str], server: &str, token: Option<&str>) -> Output {
    let mut cmd = Command::new(BIN);
    cmd.current_dir(cwd)
        .args(args)
        .env("TENANTPLANE_SERVER", server)
        .env("TENANTPLANE_CLI_CONFIG", cwd.join("cli.toml"))
        .env_remove("TENANTPLANE_TOKEN");
    if let Some(t) = token {
        cmd.env("TENANTPLANE_TOKEN", t);
    }
    cmd.output().unwrap()
}

fn code(o: &Output) -> i32 {
    o.status.code().unwrap_or(-1)
}

fn stdout(o: &Output) -> String {
    String::from_utf8_lossy(&o.stdout).into_owned()
}

fn sigterm(r: &mut Running) -> std::process::ExitStatus {
    let st = Command::new("kill")
        .args(["-TERM", &r.child.id().to_string()])
        .status()
        .unwrap();
    assert!(st.success());
    for _ in 0..200 {
        if let Some(s) = r.child.try_wait().unwrap() {
            return s;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    panic!("server did not stop on SIGTERM");
}

#[test]
fn zero_config_first_start_cli_and_restart() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let mut s = serve(d, &[], &[]);
    let token = token_of(&s).expect("first start prints a token");
    assert!(
        d.join("tenantplane-data/catalog.db").exists(),
        "default data dir"
    );

    let o = cli(
        d,
        &[
            "tenant",
            "create",
            "alpha-hospital",
            "--name",
            "Alpha Hospital",
            "--profile",
            "hospital",
            "--domain",
            "records.alpha.example",
            "--setting",
            "departments=4",
            "--primary-color",
            "#003366",
            "-o",
            "json",
        ],
        &s.url,
        Some(&token),
    );
    assert_eq!(code(&o), 0, "{}", String::from_utf8_lossy(&o.stderr));
    let t: serde_json::Value = serde_json::from_str(&stdout(&o)).unwrap();
    assert_eq!(
        (t["status"].as_str(), t["settings"]["departments"].as_i64()),
        (Some("active"), Some(4))
    );

    // Exit codes: conflict 5, not found 4, invalid 3, no token 6.
    assert_eq!(
        code(&cli(
            d,
            &["tenant", "create", "alpha-hospital", "--name", "Again"],
            &s.url,
            Some(&token)
        )),
        5
    );
    assert_eq!(
        code(&cli(
            d,
            &["tenant", "show", "nobody-here"],
            &s.url,
            Some(&token)
        )),
        4
    );
    let o = cli(
        d,
        &["tenant", "create", "Bad Slug", "--name", "x"],
        &s.url,
        Some(&token),
    );
    assert_eq!(code(&o), 3);
    assert!(String::from_utf8_lossy(&o.stderr).contains("Invalid request"));
    assert_eq!(code(&cli(d, &["tenant", "list"], &s.url, None)), 6);
    assert_eq!(
        code(&cli(
            d,
            &["tenant", "list"],
            "http://127.0.0.1:1",
            Some(&token)
        )),
        7
    );

    let o = cli(d, &["tenant", "list", "-o", "yaml"], &s.url, Some(&token));
    assert_eq!(code(&o), 0);
    assert!(stdout(&o).contains("slug: alpha-hospital"));
    let o = cli(d, &["tenant", "list"], &s.url, Some(&token));
    assert!(stdout(&o).lines().next().unwrap().starts_with("SLUG"));
    assert_eq!(
        code(&cli(
            d,
            &["tenant", "suspend", "alpha-hospital", "--reason", "audit"],
            &s.url,
            Some(&token)
        )),
        0
    );
    assert_eq!(
        code(&cli(
            d,
            &["tenant", "suspend", "alpha-hospital"],
            &s.url,
            Some(&token)
        )),
        5
    );
    assert_eq!(
        code(&cli(
            d,
            &["tenant", "resume", "alpha-hospital"],
            &s.url,
            Some(&token)
        )),
        0
    );
    assert_eq!(
        code(&cli(
            d,
            &["domain", "add", "alpha-hospital", "portal.alpha.example"],
            &s.url,
            Some(&token)
        )),
        0
    );
    assert_eq!(
        code(&cli(
            d,
            &["plan", "update", "small", "--max-users", "75", "-o", "json"],
            &s.url,
            Some(&token)
        )),
        0
    );
    let o = cli(d, &["plan", "list", "-o", "json"], &s.url, Some(&token));
    assert!(stdout(&o).contains("\"max_users\": 75"));

    // Graceful stop on SIGTERM, then a restart keeps everything and prints no new token.
    assert!(sigterm(&mut s).success());
    let mut s2 = serve(d, &[], &[]);
    assert!(
        token_of(&s2).is_none(),
        "the token is shown only on first start"
    );
    let o = cli(
        d,
        &["tenant", "show", "alpha-hospital", "-o", "json"],
        &s2.url,
        Some(&token),
    );
    assert_eq!(code(&o), 0);
    assert!(stdout(&o).contains("portal.alpha.example"));
    assert!(sigterm(&mut s2).success());

    // Lost credentials: reset offline, the old token dies, the new one works.
    let o = Command::new(BIN)
        .current_dir(d)
        .args(["operator", "reset", "admin"])
        .output()
        .unwrap();
    assert_eq!(code(&o), 0);
    let new_token = stdout(&o)
        .lines()
        .find_map(|l| l.trim().strip_prefix("tpo_").map(|t| format!("tpo_{t}")))
        .unwrap();
    let s3 = serve(d, &[], &[]);
    assert_eq!(code(&cli(d, &["tenant", "list"], &s3.url, Some(&token))), 6);
    assert_eq!(
        code(&cli(d, &["tenant", "list"], &s3.url, Some(&new_token))),
        0
    );

    // login stores the server and token (0600) for later commands.
    let tf = d.join("tok");
    std::fs::write(&tf, &new_token).unwrap();
    let o = cli(
        d,
        &[
            "login",
            "--server",
            &s3.url,
            "--token-file",
            tf.to_str().unwrap(),
        ],
        &s3.url,
        None,
    );
    assert_eq!(code(&o), 0, "{}", String::from_utf8_lossy(&o.stderr));
    assert_eq!(code(&cli(d, &["tenant", "list"], &s3.url, None)), 0);
}

#[test]
fn acknowledged_writes_survive_kill_9() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let tf = d.join("token");
    std::fs::write(&tf, "automation-token-0123456789abcdef").unwrap();
    let mut s = serve(d, &["--bootstrap-token-file", tf.to_str().unwrap()], &[]);
    assert!(token_of(&s).is_none(), "a supplied token is never printed");
    let token = "automation-token-0123456789abcdef";
    for i in 0..15 {
        let o = cli(
            d,
            &[
                "tenant",
                "create",
                &format!("durable-{i:02}"),
                "--name",
                "D",
            ],
            &s.url,
            Some(token),
        );
        assert_eq!(code(&o), 0);
    }
    s.child.kill().unwrap(); // SIGKILL
    s.child.wait().unwrap();
    let s2 = serve(d, &["--bootstrap-token-file", tf.to_str().unwrap()], &[]);
    let o = cli(
        d,
        &["tenant", "list", "--all", "-o", "json"],
        &s2.url,
        Some(token),
    );
    let v: serde_json::Value = serde_json::from_str(&stdout(&o)).unwrap();
    assert_eq!(v["items"].as_array().unwrap().len(), 15);
}

#[test]
fn configuration_layers_and_redaction() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let run = |args: &[&str], env: &[(&str, &str)]| {
        let mut c = Command::new(BIN);
        c.current_dir(d).args(args);
        for (k, v) in env {
            c.env(k, v);
        }
        c.output().unwrap()
    };
    std::fs::write(
        d.join("tenantplane.toml"),
        "[server]\nbase_domain = \"from-file.example\"\nlisten = \"127.0.0.1:9999\"\n",
    )
    .unwrap();
    let o = run(
        &["config", "print"],
        &[("TENANTPLANE__SERVER__LISTEN", "127.0.0.1:7777")],
    );
    assert_eq!(code(&o), 0, "{}", String::from_utf8_lossy(&o.stderr));
    let out = stdout(&o);
    assert!(out.contains("base_domain = \"from-file.example\""), "{out}");
    assert!(
        out.contains("listen = \"127.0.0.1:7777\""),
        "env beats file: {out}"
    );
    let o = run(
        &[
            "config",
            "print",
            "--listen",
            "127.0.0.1:6666",
            "--catalog",
            "postgres://tp:s3cret@db.internal/catalog",
        ],
        &[("TENANTPLANE__SERVER__LISTEN", "127.0.0.1:7777")],
    );
    let out = stdout(&o);
    assert!(
        out.contains("listen = \"127.0.0.1:6666\""),
        "flags beat env: {out}"
    );
    assert!(
        out.contains("postgres://tp:***@db.internal/catalog") && !out.contains("s3cret"),
        "{out}"
    );
    // Unknown keys are refused, in the file and in the environment.
    let o = run(&["config", "print"], &[("TENANTPLANE__SERVER__LISTN", "x")]);
    assert_ne!(code(&o), 0);
    assert!(String::from_utf8_lossy(&o.stderr).contains("listn"));
    std::fs::write(d.join("tenantplane.toml"), "[server]\ncolour = \"blue\"\n").unwrap();
    let o = run(&["config", "print"], &[]);
    assert_ne!(code(&o), 0);
    assert!(String::from_utf8_lossy(&o.stderr).contains("colour"));
    let o = run(&["--config", "missing.toml", "config", "print"], &[]);
    assert_ne!(code(&o), 0);
    // A default plan that does not exist stops the server at start, with the reason.
    std::fs::remove_file(d.join("tenantplane.toml")).unwrap();
    let o = run(
        &["serve", "--listen", "127.0.0.1:0"],
        &[("TENANTPLANE__TENANTS__DEFAULT_PLAN", "gold")],
    );
    assert_ne!(code(&o), 0);
    assert!(String::from_utf8_lossy(&o.stderr).contains("default_plan"));
}

#[test]
fn demo_creates_the_seed_tenants_idempotently() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let port = tenantplane_testkit::pg::free_port().unwrap().to_string();
    let listen = format!("127.0.0.1:{port}");
    // A small FHIR sample: the reference data and one patient of the Synthea set.
    let sample = d.join("sample");
    std::fs::create_dir(&sample).unwrap();
    let synthea = tenantplane_testkit::synthea::dir();
    let mut names: Vec<_> = std::fs::read_dir(&synthea)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    names.sort();
    let patient = names.iter().find(|n| !n.starts_with("0-")).unwrap().clone();
    for n in names
        .iter()
        .filter(|n| n.starts_with("0-"))
        .chain(std::iter::once(&patient))
    {
        std::fs::copy(synthea.join(n), sample.join(n)).unwrap();
    }
    let sample_arg = sample.to_string_lossy().into_owned();
    let mut last_out = String::new();
    for _ in 0..2 {
        let o = Command::new(BIN)
            .current_dir(d)
            .args([
                "demo",
                "--no-serve",
                "--listen",
                &listen,
                "--records-data",
                &sample_arg,
            ])
            .env("RUST_LOG", "warn")
            .output()
            .unwrap();
        assert_eq!(code(&o), 0, "{}", String::from_utf8_lossy(&o.stderr));
        let out = stdout(&o);
        for name in [
            "Real Hospital Português",
            "Hospital Santa Maria",
            "Hospital São João",
            "Câmara Municipal de Santarém",
        ] {
            assert!(out.contains(name), "{out}");
        }
        assert!(out.contains("/t/hospital-santa-maria/api/tenant"));
        for role in ["tenant-admin", "clinician", "nurse", "staff", "auditor"] {
            assert!(
                out.contains(&format!("{role}@hospital-sao-joao.example")),
                "{out}"
            );
        }
        last_out = out;
    }
    // One user per role, with the password printed by the last run.
    let nurse_pw = last_out
        .lines()
        .find(|l| l.contains("nurse@real-hospital-portugues.example"))
        .and_then(|l| l.split_whitespace().last())
        .unwrap()
        .to_owned();
    let s = serve(d, &[], &[]);
    let rt = tokio::runtime::Runtime::new().unwrap();
    let st = rt.block_on(async {
        reqwest::Client::new()
            .post(format!("{}/t/real-hospital-portugues/auth/login", s.url))
            .json(&serde_json::json!({"email": "nurse@real-hospital-portugues.example", "password": nurse_pw}))
            .send()
            .await
            .unwrap()
            .status()
            .as_u16()
    });
    assert_eq!(st, 200, "a demo user logs in with the printed password");
    // The sample was loaded once (the second run found patients and skipped it).
    let fhir_count = |slug: &str, pw: &str, email: &str| {
        rt.block_on(async {
            let c = reqwest::Client::new();
            let tok: serde_json::Value = c
                .post(format!("{}/t/{slug}/auth/login", s.url))
                .json(&serde_json::json!({"email": email, "password": pw}))
                .send()
                .await
                .unwrap()
                .json()
                .await
                .unwrap();
            let v: serde_json::Value = c
                .get(format!("{}/t/{slug}/fhir/Patient?_summary=count", s.url))
                .bearer_auth(tok["access_token"].as_str().unwrap())
                .send()
                .await
                .unwrap()
                .json()
                .await
                .unwrap();
            v["total"].as_u64().unwrap()
        })
    };
    assert!(last_out.contains("FHIR resources") || last_out.contains("real-hospital-portugues"));
    assert_eq!(
        fhir_count(
            "real-hospital-portugues",
            &nurse_pw,
            "nurse@real-hospital-portugues.example"
        ),
        1
    );
    let sj_pw = last_out
        .lines()
        .find(|l| l.contains("nurse@hospital-sao-joao.example"))
        .and_then(|l| l.split_whitespace().last())
        .unwrap()
        .to_owned();
    let o = Command::new(BIN)
        .current_dir(d)
        .args(["operator", "create", "loader", "--role", "platform-admin"])
        .output()
        .unwrap();
    let admin_token = stdout(&o)
        .lines()
        .find_map(|l| l.trim().strip_prefix("tpo_").map(|t| format!("tpo_{t}")))
        .unwrap();
    let o = Command::new(BIN)
        .current_dir(d)
        .args(["operator", "create", "viewer", "--role", "billing-viewer"])
        .output()
        .unwrap();
    let token = stdout(&o)
        .lines()
        .find_map(|l| l.trim().strip_prefix("tpo_").map(|t| format!("tpo_{t}")))
        .unwrap();
    std::thread::sleep(Duration::from_millis(5200)); // operator cache TTL
    let o = cli(d, &["tenant", "list", "-o", "json"], &s.url, Some(&token));
    let v: serde_json::Value = serde_json::from_str(&stdout(&o)).unwrap();
    let items = v["items"].as_array().unwrap();
    assert_eq!(items.len(), 4);
    let sm = items
        .iter()
        .find(|t| t["slug"] == "hospital-santa-maria")
        .unwrap();
    assert_eq!(sm["settings"]["daily_users"], 500);
    assert_eq!(sm["steps"].as_array().unwrap().len(), 5, "{sm}");
    // `fhir load` through the control plane: batches first, then the transaction.
    let patient_file = sample.join(&patient).to_string_lossy().into_owned();
    let o = cli(
        d,
        &[
            "fhir",
            "load",
            "--tenant",
            "hospital-sao-joao",
            &patient_file,
            &sample_arg,
        ],
        &s.url,
        Some(&admin_token),
    );
    assert_eq!(code(&o), 0, "{}", String::from_utf8_lossy(&o.stderr));
    assert!(stdout(&o).contains("loaded 4 bundles"), "{}", stdout(&o));
    assert_eq!(
        fhir_count(
            "hospital-sao-joao",
            &sj_pw,
            "nurse@hospital-sao-joao.example"
        ),
        3,
        "one from the demo, two loaded"
    );
    // A read-only operator cannot import.
    let o = cli(
        d,
        &[
            "fhir",
            "load",
            "--tenant",
            "hospital-sao-joao",
            &patient_file,
        ],
        &s.url,
        Some(&token),
    );
    assert_ne!(code(&o), 0);
    // The departments were seeded into the tenant's own store.
    let depts = rt
        .block_on(tenantplane_client::Client::new(&s.url, None).departments("hospital-santa-maria"))
        .unwrap();
    assert_eq!(depts.items.len(), 8);
    assert!(depts.items.iter().any(|d| d.name == "Cuidados Intensivos"));
    // Placement (asks the server) and fleet status (reads the catalog, next to the server).
    let o = cli(
        d,
        &["placement", "list", "-o", "json"],
        &s.url,
        Some(&token),
    );
    let p: serde_json::Value = serde_json::from_str(&stdout(&o)).unwrap();
    assert_eq!(p["servers"][0]["name"], "embedded");
    assert_eq!(p["servers"][0]["tenants"], 4);
    let o = Command::new(BIN)
        .current_dir(d)
        .args(["migrate", "status", "-o", "json"])
        .output()
        .unwrap();
    let st: serde_json::Value = serde_json::from_str(&stdout(&o)).unwrap();
    assert_eq!(
        (st["up_to_date"].as_u64(), st["behind"].as_u64()),
        (Some(4), Some(0))
    );
    let o = Command::new(BIN)
        .current_dir(d)
        .args(["migrate", "run", "--progress", "json"])
        .output()
        .unwrap();
    assert_eq!(code(&o), 0);
    let last = stdout(&o).lines().last().unwrap().to_owned();
    let done: serde_json::Value = serde_json::from_str(&last).unwrap();
    assert_eq!(
        (done["event"].as_str(), done["migrated"].as_u64()),
        (Some("done"), Some(0))
    );
    // A billing-viewer reads but cannot write.
    assert_eq!(
        code(&cli(
            d,
            &["tenant", "suspend", "hospital-santa-maria"],
            &s.url,
            Some(&token)
        )),
        6
    );
}

#[test]
fn postgres_catalog_from_the_command_line() {
    let rt = tokio::runtime::Runtime::new().unwrap();
    let url = rt
        .block_on(tenantplane_testkit::pg::fresh_database())
        .unwrap();
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let s = serve(d, &["--catalog", &url], &[]);
    let token = token_of(&s).unwrap();
    assert_eq!(
        code(&cli(
            d,
            &["tenant", "create", "pg-hospital", "--name", "PG"],
            &s.url,
            Some(&token)
        )),
        0
    );
    let ready: serde_json::Value = rt.block_on(async {
        reqwest::get(format!("{}/readyz", s.url))
            .await
            .unwrap()
            .json()
            .await
            .unwrap()
    });
    assert_eq!(ready["catalog"], "postgres");
    assert!(!d.join("tenantplane-data/catalog.db").exists());
}

#[test]
fn cli_help_is_a_reviewed_contract() {
    for args in [
        vec!["--help"],
        vec!["tenant", "--help"],
        vec!["tenant", "create", "--help"],
        vec!["serve", "--help"],
        vec!["costs", "report", "--help"],
        vec!["costs", "statement", "--help"],
    ] {
        let o = Command::new(BIN).args(&args).output().unwrap();
        assert_eq!(code(&o), 0);
        insta::assert_snapshot!(
            format!("help-{}", args.join("-").replace("--", "")),
            stdout(&o)
        );
    }
}
