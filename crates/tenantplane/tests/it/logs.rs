//! Logs as an operator reads them: JSON lines, one access line per tenant request with
//! its request id, tenant, user (when signed in), route class and latency — and never a
//! password, a token or health data, even when requests carry them.

use std::process::{Command, Stdio};
use std::time::Duration;

use serde_json::{Value, json};

use crate::{BIN, cli, code};

const TOKEN: &str = "automation-token-0123456789abcdef";

#[test]
fn json_logs_carry_ids_and_never_secrets_or_health_data() {
    let rt = tokio::runtime::Runtime::new().unwrap();
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let tf = d.join("token");
    std::fs::write(&tf, TOKEN).unwrap();
    let port = tenantplane_testkit::pg::free_port().unwrap();
    let log = d.join("server.log");
    let mut child = Command::new(BIN)
        .current_dir(d)
        .args([
            "serve",
            "--listen",
            &format!("127.0.0.1:{port}"),
            "--bootstrap-token-file",
            tf.to_str().unwrap(),
        ])
        .env("TENANTPLANE__LOG__FORMAT", "json")
        .env(
            "RUST_LOG",
            "debug,hyper=info,h2=info,tower=info,reqwest=info",
        )
        .env("NO_COLOR", "1")
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(std::fs::File::create(&log).unwrap())
        .spawn()
        .unwrap();
    let base = format!("http://127.0.0.1:{port}");
    for _ in 0..200 {
        if std::net::TcpStream::connect(("127.0.0.1", port)).is_ok() {
            break;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    let o = cli(
        d,
        &[
            "tenant",
            "create",
            "quiet-hospital",
            "--name",
            "Q",
            "--profile",
            "hospital",
            "--admin-email",
            "admin@quiet.example",
        ],
        &base,
        Some(TOKEN),
    );
    assert_eq!(code(&o), 0, "{}", String::from_utf8_lossy(&o.stderr));
    let created: String = String::from_utf8_lossy(&o.stdout).into_owned();
    let otp = created
        .split_whitespace()
        .skip_while(|w| !w.contains("password"))
        .find(|w| {
            w.len() >= 12
                && w.chars()
                    .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_')
        })
        .map(str::to_owned);
    assert!(otp.is_some(), "no one-time password in: {created}");
    let secret_password = "Quillfeather-Secret-Passphrase-42";
    let fake_token = "eyJhbGciOiJFZERTQSJ9.SECRET-TOKEN-ZEBEDIAH.c2ln";
    rt.block_on(async {
        let c = reqwest::Client::new();
        let t = format!("{base}/t/quiet-hospital");
        // A failed sign-in carrying a password; a request carrying a bogus bearer token; a
        // search whose query names a patient.
        c.post(format!("{t}/auth/login"))
            .json(&json!({"email": "admin@quiet.example", "password": secret_password}))
            .send()
            .await
            .unwrap();
        c.get(format!(
            "{t}/fhir/Patient?name=Zebediah%20Quillfeather&birthdate=1950-01-01"
        ))
        .bearer_auth(fake_token)
        .send()
        .await
        .unwrap();
        // A signed-in request (the first password change), so a user id is known.
        if let Some(otp) = &otp {
            let r: Value = c
                .post(format!("{t}/auth/login"))
                .json(&json!({"email": "admin@quiet.example", "password": otp}))
                .send()
                .await
                .unwrap()
                .json()
                .await
                .unwrap();
            if let Some(access) = r["access_token"].as_str() {
                c.post(format!("{t}/auth/password"))
                    .bearer_auth(access)
                    .json(&json!({"current_password": otp, "new_password": secret_password}))
                    .send()
                    .await
                    .unwrap();
            }
        }
        tokio::time::sleep(Duration::from_millis(500)).await;
    });
    let _ = Command::new("kill")
        .args(["-TERM", &child.id().to_string()])
        .status();
    let _ = child.wait();
    let text = std::fs::read_to_string(&log).unwrap();
    for secret in [
        secret_password,
        "SECRET-TOKEN-ZEBEDIAH",
        "Zebediah",
        "Quillfeather",
        "1950-01-01",
        TOKEN,
    ] {
        assert!(
            !text.contains(secret),
            "{secret} leaked into the logs:\n{text}"
        );
    }
    if let Some(otp) = &otp {
        assert!(!text.contains(otp.as_str()), "the one-time password leaked");
    }
    // Every line is JSON; access lines carry request id, tenant, class and latency.
    let lines: Vec<Value> = text
        .lines()
        .map(|l| serde_json::from_str(l).unwrap_or_else(|_| panic!("not JSON: {l}")))
        .collect();
    let access: Vec<&Value> = lines
        .iter()
        .filter(|l| l["target"] == "tenantplane::access")
        .collect();
    assert!(access.len() >= 2, "{text}");
    for a in &access {
        assert!(
            a["span"]["request_id"]
                .as_str()
                .is_some_and(|r| r.len() >= 32),
            "{a}"
        );
        assert!(a["span"]["tenant_id"].as_str().is_some(), "{a}");
        assert!(
            a["fields"]["class"].is_string() && a["fields"]["latency_ms"].is_number(),
            "{a}"
        );
    }
    if otp.is_some() {
        assert!(
            access.iter().any(|a| a["span"]["user_id"].is_string()),
            "a signed-in request names its user"
        );
    }
}
