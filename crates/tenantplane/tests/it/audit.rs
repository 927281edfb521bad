//! The audit log across a crash, on the binary: every write acknowledged with 2xx — records
//! and an administrator's user change — has its entry even when the process is killed right
//! after (the entry commits with the write);
//! reads answered more than the writer's flush interval before `kill -9` are all there;
//! the chain verifies after the restart (`tenantplane audit verify`), and an edit of the
//! tenant's file behind the server's back makes the same command fail, naming the entry.

use std::time::Duration;

use serde_json::{Value, json};

use crate::{cli, code, serve};

const TOKEN: &str = "automation-token-0123456789abcdef";

fn send(
    rt: &tokio::runtime::Runtime,
    method: reqwest::Method,
    url: &str,
    token: Option<&str>,
    body: Option<Value>,
) -> (u16, Value) {
    rt.block_on(async {
        let mut rb = reqwest::Client::new().request(method, url);
        if let Some(t) = token {
            rb = rb.bearer_auth(t);
        }
        if let Some(b) = body {
            rb = rb
                .header("content-type", "application/fhir+json")
                .body(b.to_string());
        }
        let r = rb.send().await.unwrap();
        let st = r.status().as_u16();
        (st, r.json().await.unwrap_or(Value::Null))
    })
}

#[test]
fn acknowledged_writes_keep_their_entries_through_kill_9_and_tampering_is_found() {
    use reqwest::Method;
    let rt = tokio::runtime::Runtime::new().unwrap();
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let tf = d.join("token");
    std::fs::write(&tf, TOKEN).unwrap();
    std::fs::write(
        d.join("tenantplane.toml"),
        "[audit]\nflush_interval_ms = 250\n",
    )
    .unwrap();
    let args = ["--bootstrap-token-file", tf.to_str().unwrap()];
    let mut s = serve(d, &args, &[]);
    let (st, v) = send(
        &rt,
        Method::POST,
        &format!("{}/api/v1/tenants", s.url),
        Some(TOKEN),
        Some(
            json!({"slug": "crash-hospital", "display_name": "Crash", "profile": "hospital",
                    "admin_email": "admin@crash.example"}),
        ),
    );
    assert_eq!(st, 201, "{v}");
    let otp = v["initial_admin"]["one_time_password"]
        .as_str()
        .unwrap()
        .to_owned();
    let t = format!("{}/t/crash-hospital", s.url);
    let (st, v) = send(
        &rt,
        Method::POST,
        &format!("{t}/auth/login"),
        None,
        Some(json!({"email": "admin@crash.example", "password": otp})),
    );
    assert_eq!(st, 200, "{v}");
    let first = v["access_token"].as_str().unwrap().to_owned();
    let (st, v) = send(
        &rt,
        Method::POST,
        &format!("{t}/auth/password"),
        Some(&first),
        Some(json!({"current_password": otp, "new_password": "a long and new passphrase"})),
    );
    assert_eq!(st, 200, "{v}");
    let tok = v["access_token"].as_str().unwrap().to_owned();

    // Reads, then more than the flush interval, then writes and at once kill -9.
    let (st, v) = send(
        &rt,
        Method::POST,
        &format!("{t}/fhir/Patient"),
        Some(&tok),
        Some(json!({"resourceType": "Patient", "name": [{"family": "Lida"}]})),
    );
    assert_eq!(st, 201, "{v}");
    let read_id = v["id"].as_str().unwrap().to_owned();
    for _ in 0..20 {
        let (st, _) = send(
            &rt,
            Method::GET,
            &format!("{t}/fhir/Patient/{read_id}"),
            Some(&tok),
            None,
        );
        assert_eq!(st, 200);
    }
    std::thread::sleep(Duration::from_millis(1_500));
    let mut written = vec![read_id.clone()];
    for i in 0..20 {
        let (st, v) = send(
            &rt,
            Method::POST,
            &format!("{t}/fhir/Patient"),
            Some(&tok),
            Some(json!({"resourceType": "Patient", "name": [{"family": format!("Crash{i}")}]})),
        );
        assert_eq!(st, 201, "{v}");
        written.push(v["id"].as_str().unwrap().to_owned());
    }
    // A user created by the administrator: its entry commits with the user.
    let (st, v) = rt.block_on(async {
        let r = reqwest::Client::new()
            .post(format!("{t}/api/tenant/users"))
            .bearer_auth(&tok)
            .json(&json!({"email": "nurse@crash.example", "roles": ["nurse"]}))
            .send()
            .await
            .unwrap();
        (
            r.status().as_u16(),
            r.json::<Value>().await.unwrap_or(Value::Null),
        )
    });
    assert_eq!(st, 201, "{v}");
    let nurse = v["user"]["id"].as_str().unwrap().to_owned();
    s.child.kill().unwrap(); // SIGKILL, right after the last acknowledged write
    s.child.wait().unwrap();

    let s2 = serve(d, &args, &[]);
    let t = format!("{}/t/crash-hospital", s2.url);
    // The chain verifies (and seals what the crash left unsealed).
    let o = cli(
        d,
        &["audit", "verify", "crash-hospital", "-o", "json"],
        &s2.url,
        Some(TOKEN),
    );
    assert_eq!(code(&o), 0, "{}", String::from_utf8_lossy(&o.stderr));
    let report: Value = serde_json::from_slice(&o.stdout).unwrap();
    assert_eq!(report["intact"], true, "{report}");
    assert_eq!(report["unsealed"], 0);
    let (st, v) = send(
        &rt,
        Method::GET,
        &format!("{t}/fhir/AuditEvent?action=C&_count=500"),
        Some(&tok),
        None,
    );
    assert_eq!(st, 200, "{v}");
    let created: Vec<String> = v["entry"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| {
            e["resource"]["entity"][0]["what"]["reference"]
                .as_str()
                .unwrap()
                .to_owned()
        })
        .collect();
    for id in &written {
        assert!(
            created.contains(&format!("Patient/{id}/_history/1")),
            "the acknowledged create of {id} has no entry after kill -9"
        );
    }
    let (st, v) = send(
        &rt,
        Method::GET,
        &format!("{t}/fhir/AuditEvent?entity=Patient/{read_id}&action=R&_count=500"),
        Some(&tok),
        None,
    );
    assert_eq!(st, 200, "{v}");
    assert_eq!(
        v["entry"].as_array().unwrap().len(),
        20,
        "reads older than the flush interval are all there"
    );

    let (st, v) = send(
        &rt,
        Method::GET,
        &format!("{t}/fhir/AuditEvent?type=admin&entity=User/{nurse}"),
        Some(&tok),
        None,
    );
    assert_eq!(st, 200, "{v}");
    assert_eq!(
        v["entry"][0]["resource"]["subtype"][0]["code"], "user-create",
        "the acknowledged user creation has no entry after kill -9: {v}"
    );

    // Behind the server's back: an entry of the tenant's file changed.
    let (st, tenant) = send(
        &rt,
        Method::GET,
        &format!("{}/api/v1/tenants/crash-hospital", s2.url),
        Some(TOKEN),
        None,
    );
    assert_eq!(st, 200);
    let id = tenant["id"].as_str().unwrap();
    let name = format!("{id}.db");
    let mut stack = vec![d.to_path_buf()];
    let mut file = None;
    while let Some(p) = stack.pop() {
        for e in std::fs::read_dir(&p).unwrap().filter_map(Result::ok) {
            let path = e.path();
            if path.is_dir() {
                stack.push(path);
            } else if path
                .file_name()
                .is_some_and(|n| n.to_string_lossy() == name)
            {
                file = Some(path);
            }
        }
    }
    let file = file.expect("the tenant's SQLite file");
    let c = rusqlite::Connection::open(&file).unwrap();
    c.execute_batch(
        "DROP TRIGGER audit_log_sealed_is_final;
         UPDATE audit_log SET agent = 'user/forged' WHERE seq = 5;",
    )
    .unwrap();
    drop(c);
    let o = cli(
        d,
        &["audit", "verify", "crash-hospital"],
        &s2.url,
        Some(TOKEN),
    );
    assert_ne!(code(&o), 0, "a tampered chain must fail the command");
    let out = crate::stdout(&o);
    assert!(out.contains("BROKEN") && out.contains("\"seq\":5"), "{out}");
    // The platform log verifies, and lists the operator's tenant creation.
    let o = cli(d, &["audit", "verify", "--platform"], &s2.url, Some(TOKEN));
    assert_eq!(code(&o), 0, "{}", crate::stdout(&o));
    let o = cli(
        d,
        &["audit", "log", "--tenant", "crash-hospital"],
        &s2.url,
        Some(TOKEN),
    );
    assert_eq!(code(&o), 0);
    assert!(
        crate::stdout(&o).contains("tenant-create"),
        "{}",
        crate::stdout(&o)
    );
}
