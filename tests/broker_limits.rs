//! The embedded broker under a burst many times its queue budget: it holds acknowledgements
//! back instead of dropping, and every message it acknowledged is stored.

mod common;

use cleanfleet_store::DeviceReads;
use std::time::Duration;

use common::*;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_burst_over_the_queue_budget_loses_nothing_acknowledged() {
    let dir = tempfile::tempdir().unwrap();
    let mut config = test_config(dir.path());
    // 128 KiB for ingest's session; ingest commits one message at a time, durably: the
    // devices outrun it and the queue fills.
    config.embedded_broker.session_queue_bytes = 128 * 1024;
    config.embedded_broker.total_queue_bytes = 128 * 1024;
    config.embedded_broker.max_payload_bytes = 64 * 1024;
    config.ingest.batch_max_messages = 1;
    config.store.synchronous = cleanfleet_store::Synchronous::Full;
    let stack = cleanfleet::Stack::start(config, cleanfleet::Parts::ALL)
        .await
        .unwrap();
    stack.ingest_ready(Duration::from_secs(30)).await.unwrap();
    const DEVICES: u64 = 8;
    const MESSAGES: u64 = 150;
    const FIXES: u64 = 10; // about 2.3 KB a message: 2.8 MB in all, 21 times the budget
    let publishers: Vec<_> = (0..DEVICES)
        .map(|d| {
            let mut publisher = Publisher::for_stack(&stack);
            tokio::spawn(async move {
                let device = format!("sw-burst-{d}");
                let messages: Vec<(String, Vec<u8>)> = (0..MESSAGES)
                    .map(|m| {
                        let payload = fix_batch(&device, m * FIXES, FIXES);
                        (fixes_topic(&device), payload.into_bytes())
                    })
                    .collect();
                // Returns once every message was acknowledged.
                publisher.publish_all(&messages).await;
                publisher.disconnect().await;
            })
        })
        .collect();
    for p in publishers {
        p.await.unwrap();
    }
    let api = stack.api_addr.unwrap();
    let metrics = get_text(api, "/metrics").await;
    let waits: u64 = metrics
        .lines()
        .find_map(|l| l.strip_prefix("cleanfleet_broker_publisher_waits_total "))
        .unwrap()
        .parse()
        .unwrap();
    assert!(waits > 0, "the burst never filled the queue: {metrics}");
    let total = DEVICES * MESSAGES * FIXES;
    eventually(
        "every acknowledged fix stored",
        Duration::from_secs(60),
        || async { (stack.store.stats().await.unwrap().fixes == total).then_some(()) },
    )
    .await;
    eprintln!("{waits} publishes waited for room; {total} fixes stored");
    stack.stop().await.unwrap();
}

/// The broker's memory stays within its queue budget when a device floods 600 MB of junk
/// at subscribers that are away (three ingest sessions, persistent, offline): it takes what
/// fits and then holds the device back. Measured on the real `cleanfleet broker` process.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn junk_for_offline_subscribers_does_not_grow_the_broker_past_its_budget() {
    const BUDGET_BYTES: u64 = 32 * 1024 * 1024;
    let dir = tempfile::tempdir().unwrap();
    let cli = |args: &[&str]| cleanfleet_cli(dir.path(), args);
    let secret = |line: String| line.trim().split_once(':').unwrap().1.to_owned();
    let device = secret(cli(&["devices", "add", "--role", "sweeper", "sw-junk"]));
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let broker = KillOnDrop(
        std::process::Command::new(env!("CARGO_BIN_EXE_cleanfleet"))
            .arg("broker")
            .env("CLEANFLEET__DATA_DIR", dir.path())
            .env("CLEANFLEET__METRICS__BROKER_LISTEN", "127.0.0.1:0")
            .env(
                "CLEANFLEET__EMBEDDED_BROKER__LISTEN",
                format!("127.0.0.1:{port}"),
            )
            .env(
                "CLEANFLEET__EMBEDDED_BROKER__SESSION_QUEUE_BYTES",
                BUDGET_BYTES.to_string(),
            )
            .env(
                "CLEANFLEET__EMBEDDED_BROKER__TOTAL_QUEUE_BYTES",
                BUDGET_BYTES.to_string(),
            )
            .env("RUST_LOG", "warn")
            .spawn()
            .unwrap(),
    );
    let addr: std::net::SocketAddr = format!("127.0.0.1:{port}").parse().unwrap();
    eventually("the broker to listen", Duration::from_secs(20), || async {
        tokio::net::TcpStream::connect(addr).await.ok().map(drop)
    })
    .await;
    let login = |id: &str, secret: &str| {
        let mut options = rumqttc::MqttOptions::new(id, "127.0.0.1", port);
        options.set_credentials(id, secret);
        options.set_clean_session(false);
        options.set_keep_alive(Duration::from_secs(30));
        options.set_max_packet_size(2 << 20, 2 << 20);
        options
    };
    // Three ingest sessions subscribe, then go away.
    for n in 1..=3 {
        let name = format!("cleanfleet-ingest-{n}");
        let ingest = secret(cli(&["devices", "add", "--role", "ingest", &name]));
        let (client, mut eventloop) = rumqttc::AsyncClient::new(login(&name, &ingest), 10);
        client
            .subscribe("cleanfleet/v1/#", rumqttc::QoS::AtLeastOnce)
            .await
            .unwrap();
        loop {
            if let rumqttc::Event::Incoming(rumqttc::Packet::SubAck(_)) =
                eventloop.poll().await.unwrap()
            {
                break;
            }
        }
        client.disconnect().await.unwrap();
        let _ = tokio::time::timeout(Duration::from_secs(2), eventloop.poll()).await;
    }
    // 600 messages of 1 MB junk, as fast as the broker takes them, for 15 s.
    let (client, mut eventloop) = rumqttc::AsyncClient::new(login("sw-junk", &device), 700);
    let flood = tokio::spawn(async move {
        for _ in 0..600 {
            let junk = vec![b'x'; 1_000_000];
            let topic = "cleanfleet/v1/sweeper/sw-junk/fixes";
            if client
                .publish(topic, rumqttc::QoS::AtLeastOnce, false, junk)
                .await
                .is_err()
            {
                break;
            }
        }
        client
    });
    let mut acked = 0;
    let _ = tokio::time::timeout(Duration::from_secs(15), async {
        loop {
            match eventloop.poll().await {
                Ok(rumqttc::Event::Incoming(rumqttc::Packet::PubAck(_))) => acked += 1,
                Ok(_) => {}
                Err(_) => tokio::time::sleep(Duration::from_millis(100)).await,
            }
        }
    })
    .await;
    let status = std::fs::read_to_string(format!("/proc/{}/status", broker.0.id())).unwrap();
    let peak_kb: u64 = status
        .lines()
        .find_map(|l| l.strip_prefix("VmHWM:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .unwrap();
    let peak_bytes = peak_kb * 1024;
    eprintln!(
        "{acked} of 600 junk messages taken; broker peak RSS {} MB",
        peak_bytes >> 20
    );
    assert!(acked < 600, "the budget never filled");
    // The budget, plus per connection its read buffer and read-ahead (a few MiB), plus the
    // process itself.
    assert!(
        peak_bytes < BUDGET_BYTES + 48 * 1024 * 1024,
        "peak RSS {} MB for a {} MB budget",
        peak_bytes >> 20,
        BUDGET_BYTES >> 20
    );
    drop(flood);
}
