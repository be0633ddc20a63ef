//! The API stays up under idle and slow clients: thousands of idle connections and a
//! hundred that send their headers a byte at a time do not keep a dispatcher's request from
//! being answered within a second.

mod common;

use std::time::{Duration, Instant};

use common::*;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn idle_and_slow_connections_do_not_lock_the_api_out() {
    let dir = tempfile::tempdir().unwrap();
    let mut config = test_config(dir.path());
    config.api.connections.max_connections = 256;
    config.api.connections.header_read_timeout_s = 2;
    let stack = cleanfleet::Stack::start(config, cleanfleet::Parts::ALL)
        .await
        .unwrap();
    let api = stack.api_addr.unwrap();

    // 4,000 connections that never send a byte, and 100 that send their headers slowly.
    let mut idle = Vec::new();
    for _ in 0..4_000 {
        idle.push(TcpStream::connect(api).await.unwrap());
    }
    let mut slow = Vec::new();
    for _ in 0..100 {
        let mut stream = TcpStream::connect(api).await.unwrap();
        stream
            .write_all(b"GET /api/v1/devices HTTP/1.1\r\n")
            .await
            .unwrap();
        slow.push(stream);
    }
    let started = Instant::now();
    let (status, _) = get_json(api, "/api/v1/devices").await;
    let answered = started.elapsed();
    assert_eq!(status, 200);
    assert!(
        answered < Duration::from_secs(1),
        "answered in {answered:?}"
    );

    // A client that never finishes its headers, or never sends a byte, is closed after the
    // header timeout (2 s here).
    let mut silent = TcpStream::connect(api).await.unwrap();
    let slowest = slow.last_mut().unwrap();
    for (what, stream) in [("slow-header", slowest), ("silent", &mut silent)] {
        let mut buf = [0u8; 256];
        let closed = tokio::time::timeout(Duration::from_secs(10), async {
            loop {
                match stream.read(&mut buf).await {
                    Ok(0) | Err(_) => break,
                    Ok(_) => {}
                }
            }
        })
        .await;
        assert!(
            closed.is_ok(),
            "a {what} connection was held past its timeout"
        );
    }
    let metrics = get_text(api, "/metrics").await;
    let open: i64 = metrics
        .lines()
        .find_map(|l| l.strip_prefix("cleanfleet_api_connections "))
        .unwrap()
        .parse()
        .unwrap();
    assert!(open <= 256, "{open} connections open over the limit of 256");
    assert!(
        metrics.contains(r#"cleanfleet_api_connections_closed_total{reason="idle_evicted"}"#),
        "{metrics}"
    );
    drop((idle, slow));
    stack.stop().await.unwrap();
}
