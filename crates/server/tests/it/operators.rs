//! Operator accounts: bootstrap, creation, token reset and disabling.

use std::time::Duration;

use tenantplane_core::{OperatorRole, api::CreateOperator};
use tenantplane_testkit::TestServer;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn operator_tokens_lifecycle() {
    let s = TestServer::start().await.unwrap();
    let me = s.client.me().await.unwrap();
    assert_eq!(
        (me.name.as_str(), me.role),
        ("admin", OperatorRole::PlatformAdmin)
    );
    let stored = s.control.catalog().list_operators().await.unwrap();
    assert_eq!(stored.len(), 1);
    assert_ne!(stored[0].token_hash, s.token, "only a hash is stored");

    let creds = s
        .client
        .create_operator(&CreateOperator {
            name: "ops@hospital".into(),
            role: None,
        })
        .await
        .unwrap();
    let ops = s.client.with_token(Some(creds.token.clone()));
    assert_eq!(ops.me().await.unwrap().name, "ops@hospital");
    let e = s
        .client
        .create_operator(&CreateOperator {
            name: "ops@hospital".into(),
            role: None,
        })
        .await
        .unwrap_err();
    assert_eq!(e.problem().unwrap().code(), "operator-name-taken");
    let e = s
        .client
        .create_operator(&CreateOperator {
            name: "Bad Name".into(),
            role: None,
        })
        .await
        .unwrap_err();
    assert_eq!(e.problem().unwrap().errors[0].pointer, "/name");

    let reset = s.client.reset_operator("ops@hospital").await.unwrap();
    assert_ne!(reset.token, creds.token);
    assert_eq!(
        ops.me().await.unwrap_err().problem().unwrap().status,
        401,
        "old token dead"
    );
    let ops2 = s.client.with_token(Some(reset.token));
    ops2.me().await.unwrap();

    s.client.disable_operator("ops@hospital").await.unwrap();
    assert_eq!(ops2.me().await.unwrap_err().problem().unwrap().status, 401);
    let e = s.client.disable_operator("admin").await.unwrap_err();
    assert_eq!(e.problem().unwrap().code(), "self-disable");
    let list = s.client.list_operators().await.unwrap();
    assert_eq!(list.items.len(), 2);
    let json = serde_json::to_string(&list).unwrap();
    assert!(
        !json.contains("token"),
        "listings never show tokens or hashes"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn graceful_shutdown_finishes_in_flight_requests_and_frees_the_port() {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let s = TestServer::start().await.unwrap();
    let addr = s.addr;
    // Start a request whose body is still arriving when shutdown begins.
    let body = serde_json::to_vec(&crate::new_tenant("late-hospital")).unwrap();
    let mut conn = tokio::net::TcpStream::connect(addr).await.unwrap();
    let head = format!(
        "POST /api/v1/tenants HTTP/1.1\r\nHost: 127.0.0.1\r\nAuthorization: Bearer {}\r\n\
         Content-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n",
        s.token,
        body.len()
    );
    conn.write_all(head.as_bytes()).await.unwrap();
    conn.write_all(&body[..10]).await.unwrap();
    tokio::time::sleep(Duration::from_millis(100)).await;
    let stopping = tokio::spawn(s.stop());
    tokio::time::sleep(Duration::from_millis(200)).await;
    assert!(
        !stopping.is_finished(),
        "the server waits for the in-flight request"
    );
    conn.write_all(&body[10..]).await.unwrap();
    let mut response = String::new();
    conn.read_to_string(&mut response).await.unwrap();
    assert!(response.starts_with("HTTP/1.1 201"), "{response}");
    stopping.await.unwrap().unwrap();
    assert!(
        tokio::net::TcpStream::connect(addr).await.is_err(),
        "listener closed"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn slow_requests_time_out_with_a_problem_and_change_nothing() {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let s = TestServer::start_with(tenantplane_testkit::TestServerOptions {
        request_timeout_secs: Some(1),
        ..Default::default()
    })
    .await
    .unwrap();
    let body = serde_json::to_vec(&crate::new_tenant("slow-hospital")).unwrap();
    let mut conn = tokio::net::TcpStream::connect(s.addr).await.unwrap();
    let head = format!(
        "POST /api/v1/tenants HTTP/1.1\r\nHost: 127.0.0.1\r\nAuthorization: Bearer {}\r\n\
         Content-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n",
        s.token,
        body.len()
    );
    conn.write_all(head.as_bytes()).await.unwrap();
    conn.write_all(&body[..5]).await.unwrap();
    let mut response = String::new();
    conn.read_to_string(&mut response).await.unwrap();
    assert!(response.starts_with("HTTP/1.1 503"), "{response}");
    assert!(response.contains("application/problem+json"), "{response}");
    assert!(
        response.contains("urn:tenantplane:problem:unavailable"),
        "{response}"
    );
    let e = s.client.get_tenant("slow-hospital").await.unwrap_err();
    assert_eq!(e.problem().unwrap().status, 404);
}
