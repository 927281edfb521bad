//! Budgets and alerts over HTTP: thresholds raised once however often budgets are
//! evaluated, webhooks signed with the budget's secret and retried with backoff against a
//! local receiver that fails at first, 4xx not retried, the delivery log, spend spikes
//! against a tenant's own baseline, bad budgets refused.

use std::sync::{Arc, Mutex};

use axum::{Router, body::Bytes, extract::State, http::HeaderMap, routing::post};
use hmac::{Hmac, Mac};
use reqwest::Method;
use serde_json::{Value, json};
use sha2::Sha256;
use tenantplane_catalog::usage::{HOUR, UsageRow};
use tenantplane_testkit::{TestServer, TestServerOptions};

use super::report::costs_config;
use crate::{new_tenant, raw};

#[derive(Clone, Default)]
struct Receiver {
    got: Arc<Mutex<Vec<(HeaderMap, Bytes)>>>,
    fail_first: Arc<Mutex<usize>>,
}

async fn receive(
    State(r): State<Receiver>,
    headers: HeaderMap,
    body: Bytes,
) -> axum::http::StatusCode {
    r.got.lock().unwrap().push((headers, body));
    let mut left = r.fail_first.lock().unwrap();
    if *left > 0 {
        *left -= 1;
        return axum::http::StatusCode::INTERNAL_SERVER_ERROR;
    }
    axum::http::StatusCode::NO_CONTENT
}

async fn receiver(fail_first: usize) -> (String, Receiver) {
    let r = Receiver::default();
    *r.fail_first.lock().unwrap() = fail_first;
    let app = Router::new()
        .route("/hook", post(receive))
        .with_state(r.clone());
    let l = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = l.local_addr().unwrap();
    tokio::spawn(async move { axum::serve(l, app).await.unwrap() });
    (format!("http://{addr}"), r)
}

fn verify(secret: &str, headers: &HeaderMap, body: &[u8]) -> bool {
    let sig = headers["tenantplane-signature"].to_str().unwrap();
    let (t, v1) = sig.split_once(',').unwrap();
    let (t, v1) = (
        t.strip_prefix("t=").unwrap(),
        v1.strip_prefix("v1=").unwrap(),
    );
    let mut mac = <Hmac<Sha256> as Mac>::new_from_slice(secret.as_bytes()).unwrap();
    mac.update(format!("{t}.").as_bytes());
    mac.update(body);
    let want: String = mac
        .finalize()
        .into_bytes()
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect();
    want == v1
}

async fn server() -> TestServer {
    let mut costs = costs_config();
    costs.budget_interval_secs = 0;
    costs.webhook_backoff_secs = 1;
    costs.webhook_max_attempts = 4;
    TestServer::start_with(TestServerOptions {
        costs: Some(costs),
        ..Default::default()
    })
    .await
    .unwrap()
}

async fn wait_for<F: Fn(&Value) -> bool>(s: &TestServer, query: &str, done: F) -> Value {
    for _ in 0..150 {
        let (_, _, _, v) = raw(s
            .client
            .request(Method::GET, &format!("/api/v1/alerts?{query}")))
        .await;
        if done(&v) {
            return v;
        }
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }
    panic!("alerts did not settle");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn thresholds_alert_once_and_webhooks_retry_until_delivered() {
    let s = server().await;
    let (url, rx) = receiver(2).await;
    let t = s
        .client
        .create_tenant(&new_tenant("budget-hospital"))
        .await
        .unwrap();
    let now = time::OffsetDateTime::now_utc().unix_timestamp();
    s.control
        .catalog()
        .add_usage(&[UsageRow {
            tenant: t.id,
            bucket: now - now % 60,
            span: 60,
            meter: "cpu_nanos".into(),
            value: 36_000_000_000_000,
        }])
        .await
        .unwrap();
    let (st, _, _, b) = raw(s
        .client
        .request(Method::POST, "/api/v1/budgets")
        .json(&json!({
            "name": "ICU budget", "tenant": "budget-hospital", "amount": "2",
            "thresholds": [50, 80, 100], "webhook_url": format!("{url}/hook")
        })))
    .await;
    assert_eq!(st, 201, "{b}");
    let secret = b["webhook_secret"].as_str().unwrap().to_owned();
    assert!(secret.starts_with("whsec_"));
    // The secret is shown once.
    let (_, _, _, list) = raw(s.client.request(Method::GET, "/api/v1/budgets")).await;
    assert!(list["items"][0].get("webhook_secret").is_none());
    assert!(!list.to_string().contains(&secret));
    // Evaluated three times (as several replicas would): three alerts, each raised once.
    for _ in 0..3 {
        s.control
            .evaluate_budgets(time::OffsetDateTime::now_utc())
            .await
            .unwrap();
    }
    let v = wait_for(&s, "tenant=budget-hospital", |v| {
        v["items"]
            .as_array()
            .is_some_and(|a| a.len() == 3 && a.iter().all(|x| x["delivery"] == "delivered"))
    })
    .await;
    let mut thresholds: Vec<u64> = v["items"]
        .as_array()
        .unwrap()
        .iter()
        .map(|a| a["threshold"].as_u64().unwrap())
        .collect();
    thresholds.sort();
    assert_eq!(thresholds, [50, 80, 100]);
    assert!(
        v["items"]
            .as_array()
            .unwrap()
            .iter()
            .all(|a| a["kind"] == "actual")
    );
    // The receiver got every alert at least once, two 500s retried, all signed.
    let got = rx.got.lock().unwrap().clone();
    assert_eq!(got.len(), 5, "three alerts, two of them retried once");
    for (h, body) in &got {
        assert!(verify(&secret, h, body), "signature");
        let p: Value = serde_json::from_slice(body).unwrap();
        assert_eq!(p["tenant"]["slug"], "budget-hospital");
        assert_eq!(
            h["tenantplane-event-id"].to_str().unwrap(),
            p["id"].as_str().unwrap()
        );
    }
    let mut ids: Vec<&str> = got
        .iter()
        .map(|(h, _)| h["tenantplane-event-id"].to_str().unwrap())
        .collect();
    ids.sort();
    ids.dedup();
    assert_eq!(ids.len(), 3);
    // The delivery log of a retried alert: 500, then 204.
    let retried = v["items"]
        .as_array()
        .unwrap()
        .iter()
        .find(|a| a["attempts"] == 2)
        .unwrap();
    let (st, _, _, log) = raw(s.client.request(
        Method::GET,
        &format!(
            "/api/v1/alerts/{}/deliveries",
            retried["id"].as_str().unwrap()
        ),
    ))
    .await;
    assert_eq!(st, 200);
    let statuses: Vec<u64> = log["items"]
        .as_array()
        .unwrap()
        .iter()
        .map(|d| d["status"].as_u64().unwrap())
        .collect();
    assert_eq!(statuses, [500, 204]);
    assert!(!log.to_string().contains(&secret));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn refusals_are_not_retried_and_spikes_are_caught() {
    let s = server().await;
    let (url, rx) = receiver(0).await;
    let t = s
        .client
        .create_tenant(&new_tenant("spiky-clinic"))
        .await
        .unwrap();
    let now = time::OffsetDateTime::now_utc();
    let today = now.replace_time(time::Time::MIDNIGHT).unix_timestamp();
    // A week of one core-hour a day before yesterday, then ten yesterday.
    let mut rows = Vec::new();
    for d in 2..9 {
        rows.push(UsageRow {
            tenant: t.id,
            bucket: today - d * 86_400 + 3 * HOUR,
            span: HOUR,
            meter: "cpu_nanos".into(),
            value: 3_600_000_000_000,
        });
    }
    rows.push(UsageRow {
        tenant: t.id,
        bucket: today - 86_400 + 3 * HOUR,
        span: HOUR,
        meter: "cpu_nanos".into(),
        value: 36_000_000_000_000,
    });
    s.control.catalog().add_usage(&rows).await.unwrap();
    // A receiver path that does not exist (404): one attempt, marked failed.
    let (st, _, _, b) = raw(s
        .client
        .request(Method::POST, "/api/v1/budgets")
        .json(&json!({
            "name": "spikes", "tenant": "spiky-clinic", "amount": "1000000", "on": ["actual"],
            "spike_factor": 2.0, "spike_min": "1", "webhook_url": format!("{url}/nowhere")
        })))
    .await;
    assert_eq!(st, 201, "{b}");
    s.control.evaluate_budgets(now).await.unwrap();
    let v = wait_for(&s, "tenant=spiky-clinic", |v| {
        v["items"]
            .as_array()
            .is_some_and(|a| !a.is_empty() && a.iter().all(|x| x["delivery"] == "failed"))
    })
    .await;
    let spike = v["items"]
        .as_array()
        .unwrap()
        .iter()
        .find(|a| a["kind"] == "spike")
        .expect("a spike alert");
    assert_eq!(spike["payload"]["type"], "spend.spike");
    assert_eq!(spike["attempts"], 1, "a 4xx is not retried");
    assert!(spike["last_error"].as_str().unwrap().contains("404"));
    assert!(
        rx.got.lock().unwrap().is_empty(),
        "the handler never saw it"
    );
    // Without a webhook: listed, not sent.
    raw(s
        .client
        .request(Method::POST, "/api/v1/budgets")
        .json(&json!({
            "name": "quiet", "plan": "small", "amount": "0.000001", "on": ["actual"]
        })))
    .await;
    s.control.evaluate_budgets(now).await.unwrap();
    let (_, _, _, all) = raw(s.client.request(Method::GET, "/api/v1/alerts")).await;
    assert!(
        all["items"]
            .as_array()
            .unwrap()
            .iter()
            .any(|a| a["delivery"] == "not_sent")
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_budgets_change_nothing() {
    let s = server().await;
    s.client
        .create_tenant(&new_tenant("careful-hospital"))
        .await
        .unwrap();
    let post = |body: Value| {
        s.client
            .request(Method::POST, "/api/v1/budgets")
            .json(&body)
    };
    for (body, pointer) in [
        (json!({"name": "x", "amount": "5"}), "/tenant"),
        (
            json!({"name": "x", "tenant": "careful-hospital", "plan": "small", "amount": "5"}),
            "/tenant",
        ),
        (
            json!({"name": "x", "tenant": "nobody", "amount": "5"}),
            "/tenant",
        ),
        (
            json!({"name": "x", "plan": "platinum", "amount": "5"}),
            "/plan",
        ),
        (
            json!({"name": "x", "tenant": "careful-hospital", "amount": "-5"}),
            "/amount",
        ),
        (
            json!({"name": "x", "tenant": "careful-hospital", "amount": "1e9"}),
            "/amount",
        ),
        (
            json!({"name": "x", "tenant": "careful-hospital", "amount": "5", "thresholds": [0]}),
            "/thresholds",
        ),
        (
            json!({"name": "x", "tenant": "careful-hospital", "amount": "5", "period": "daily"}),
            "/period",
        ),
        (
            json!({"name": "x", "tenant": "careful-hospital", "amount": "5", "on": ["hoped"]}),
            "/on",
        ),
        (
            json!({"name": "x", "tenant": "careful-hospital", "amount": "5", "webhook_url": "ftp://x"}),
            "/webhook_url",
        ),
        (
            json!({"name": "x", "tenant": "careful-hospital", "amount": "5", "spike_factor": 0.5}),
            "/spike_factor",
        ),
        (
            json!({"name": "", "tenant": "careful-hospital", "amount": "5"}),
            "/name",
        ),
    ] {
        let (st, _, p, v) = raw(post(body.clone())).await;
        assert_eq!(st, 400, "{body}: {v}");
        assert!(
            p.unwrap().errors.iter().any(|e| e.pointer == pointer),
            "{body}: {v}"
        );
    }
    let (_, _, _, list) = raw(s.client.request(Method::GET, "/api/v1/budgets")).await;
    assert_eq!(
        list["items"].as_array().unwrap().len(),
        0,
        "nothing was stored"
    );
    for path in [
        "/api/v1/budgets/not-an-id",
        "/api/v1/budgets/0190e0e0-0000-7000-8000-000000000000",
    ] {
        let (st, ..) = raw(s.client.request(Method::DELETE, path)).await;
        assert_eq!(st, 404);
    }
    let (st, ..) = raw(s
        .client
        .request(Method::GET, "/api/v1/alerts?tenant=nobody"))
    .await;
    assert_eq!(st, 404);
    let (st, ..) = raw(s.client.request(
        Method::GET,
        "/api/v1/alerts/0190e0e0-0000-7000-8000-000000000000/deliveries",
    ))
    .await;
    assert_eq!(st, 404);
}
