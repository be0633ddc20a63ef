//! The API stays up under idle and slow clients: 20,000 idle connections and 200 that send
//! their headers a byte at a time do not keep a dispatcher's request from being answered
//! within a second. The idle ones are held by two child processes of 10,000 each (this test
//! binary again, running [`holds_idle_connections_for_the_parent`]): one process may have
//! only 20,000 files open here.

mod common;

use std::io::{BufRead, Read};
use std::process::{Command, Stdio};
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

    // 20,000 connections that never send a byte, and 200 that send their headers slowly.
    let mut holders: Vec<std::process::Child> = (0..2)
        .map(|_| {
            Command::new(std::env::current_exe().unwrap())
                .args([
                    "--ignored",
                    "--exact",
                    "holds_idle_connections_for_the_parent",
                    "--nocapture",
                ])
                .env(HOLD_ADDR, api.to_string())
                .env(HOLD_COUNT, IDLE_PER_HOLDER.to_string())
                .stdin(Stdio::piped())
                .stdout(Stdio::piped())
                .stderr(Stdio::inherit())
                .spawn()
                .unwrap()
        })
        .collect();
    let opening = Instant::now();
    let (mut holders, mut outputs) = tokio::task::spawn_blocking(move || {
        let mut outputs = Vec::new();
        for holder in &mut holders {
            let mut out = std::io::BufReader::new(holder.stdout.take().unwrap()).lines();
            let held = out
                .by_ref()
                .map_while(Result::ok)
                // libtest may print the test's name before it on the same line.
                .any(|line| line.ends_with(&format!("held {IDLE_PER_HOLDER}")));
            assert!(held, "a holder could not open its connections");
            outputs.push(out);
        }
        (holders, outputs)
    })
    .await
    .unwrap();
    println!(
        "{} idle connections opened in {:.1} s",
        2 * IDLE_PER_HOLDER,
        opening.elapsed().as_secs_f64()
    );
    let mut slow = Vec::new();
    for _ in 0..200 {
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
    println!("a request answered in {answered:?} beside them");
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
    drop(slow);
    for (holder, out) in holders.iter_mut().zip(&mut outputs) {
        drop(holder.stdin.take());
        out.for_each(drop);
        assert!(holder.wait().unwrap().success());
    }
    stack.stop().await.unwrap();
}

const HOLD_ADDR: &str = "CLEANFLEET_TEST_HOLD_ADDR";
const HOLD_COUNT: &str = "CLEANFLEET_TEST_HOLD_COUNT";
const IDLE_PER_HOLDER: usize = 10_000;

/// Run only as a child of `idle_and_slow_connections_do_not_lock_the_api_out`: opens the
/// connections it is told to, says so, and holds them until its stdin closes.
#[test]
#[ignore = "a helper process of idle_and_slow_connections_do_not_lock_the_api_out"]
fn holds_idle_connections_for_the_parent() {
    let addr = std::env::var(HOLD_ADDR).expect("run by the parent test");
    let count: usize = std::env::var(HOLD_COUNT).unwrap().parse().unwrap();
    let held: Vec<std::net::TcpStream> = (0..count)
        .map(|_| std::net::TcpStream::connect(&addr).unwrap())
        .collect();
    println!("held {}", held.len());
    let _ = std::io::stdin().read_to_end(&mut Vec::new());
}
