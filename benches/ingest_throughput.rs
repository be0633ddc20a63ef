//! End-to-end ingest throughput: MQTT clients publish fix batches at QoS 1 to the embedded
//! broker over loopback; ingest validates and commits them to a SQLite file
//! (synchronous = full); the clock stops when the last fix is committed.
//!
//! `cargo bench --bench ingest_throughput` (figures in docs/benchmarks.md).
//! Environment: BENCH_FIXES (total fixes, default 400000), BENCH_CLIENTS (default 4).

use cleanfleet_store::DeviceReads;
use std::time::{Duration, Instant};

use cleanfleet::config::Config;
use cleanfleet::{Parts, Stack};
use rumqttc::{AsyncClient, Event, MqttOptions, Packet, QoS};

fn env_or(name: &str, default: u64) -> u64 {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

fn batch_payload(device: &str, first: u64, count: u64, base_s: i64) -> Vec<u8> {
    let mut out = format!(r#"{{"device_id":"{device}","fixes":["#);
    for seq in first..first + count {
        if seq > first {
            out.push(',');
        }
        let time = jiff::Timestamp::from_second(base_s + seq as i64).unwrap();
        out.push_str(&format!(
            r#"{{"time":"{time}","seq":{seq},"lat":{lat:.6},"lon":120.86,"speed_kmh":7.5,"heading_deg":90,"hdop":0.8,"satellites":12,"work":{{"brush":true,"vacuum":true}}}}"#,
            lat = 32.0 + (seq % 1000) as f64 * 1e-5
        ));
    }
    out.push_str("]}");
    out.into_bytes()
}

/// Publish `messages` batches of `per_message` fixes as device `device` (logged in with
/// `secret`), 100 in flight.
async fn publish(
    broker: std::net::SocketAddr,
    device: String,
    secret: String,
    messages: u64,
    per_message: u64,
) {
    let mut options = MqttOptions::new(device.clone(), broker.ip().to_string(), broker.port());
    options.set_credentials(device.clone(), secret);
    options.set_max_packet_size(1 << 20, 1 << 20);
    options.set_inflight(100);
    let (client, mut eventloop) = AsyncClient::new(options, 200);
    let base_s = jiff::Timestamp::now().as_second() - 20 * 86_400;
    let topic = format!("cleanfleet/v1/sweeper/{device}/fixes");
    let producer = tokio::spawn(async move {
        for m in 0..messages {
            let payload = batch_payload(&device, m * per_message, per_message, base_s);
            client
                .publish(&topic, QoS::AtLeastOnce, false, payload)
                .await
                .unwrap();
        }
        client
    });
    let mut acked = 0;
    while acked < messages {
        let event = eventloop.poll().await.expect("publisher lost the broker");
        if let Event::Incoming(Packet::PubAck(_)) = event {
            acked += 1;
        }
    }
    let client = producer.await.unwrap();
    client.disconnect().await.unwrap();
    let _ = tokio::time::timeout(Duration::from_secs(2), eventloop.poll()).await;
}

async fn run(total_fixes: u64, per_message: u64, clients: u64) {
    let dir = tempfile::tempdir().unwrap();
    let mut config = Config::default();
    config.data_dir.0 = dir.path().to_path_buf();
    config.embedded_broker.listen = "127.0.0.1:0".parse().unwrap();
    let stack = Stack::start(
        config,
        Parts {
            embedded_broker: true,
            ingest: true,
            ..Parts::NONE
        },
    )
    .await
    .unwrap();
    let broker = stack.broker_addr.unwrap();
    stack.ingest_ready(Duration::from_secs(30)).await.unwrap();

    let sweeper = cleanfleet_identity::Role::Device(cleanfleet_model::DeviceKind::Sweeper);
    let devices = (0..clients).map(|c| (sweeper, format!("sw-{c:03}")));
    let secrets = cleanfleet_store::credentials::provision(
        stack.store.as_ref(),
        devices,
        jiff::Timestamp::now(),
    )
    .await
    .unwrap();
    let messages_per_client = total_fixes / per_message / clients;
    let total = messages_per_client * per_message * clients;
    let started = Instant::now();
    let publishers: Vec<_> = (0..clients)
        .map(|c| {
            let device = format!("sw-{c:03}");
            tokio::spawn(publish(
                broker,
                device.clone(),
                secrets[&device].clone(),
                messages_per_client,
                per_message,
            ))
        })
        .collect();
    for p in publishers {
        p.await.unwrap();
    }
    let published = started.elapsed();
    let store = stack.store.clone();
    loop {
        if store.stats().await.unwrap().fixes >= total {
            break;
        }
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    let committed = started.elapsed();
    let metrics = stack.ingest_metrics.clone().unwrap();
    let batches = metrics.batch_size.get_sample_count();
    let mean_batch = metrics.batch_size.get_sample_sum() / batches.max(1) as f64;
    let file_bytes = std::fs::metadata(stack.store.path())
        .map(|m| m.len())
        .unwrap_or(0)
        + std::fs::metadata(stack.store.path().with_extension("sqlite-wal"))
            .map(|m| m.len())
            .unwrap_or(0);
    stack.stop().await.unwrap();
    println!(
        "fixes/message {per_message:>3} | clients {clients} | {total:>7} fixes in {:>6.2} s | \
         {:>8.0} fixes/s committed | {:>7.0} messages/s | publish done at {:>6.2} s | \
         mean commit batch {:>5.1} messages ({} commits) | {:.0} bytes/fix on disk",
        committed.as_secs_f64(),
        total as f64 / committed.as_secs_f64(),
        (total / per_message) as f64 / committed.as_secs_f64(),
        published.as_secs_f64(),
        mean_batch,
        batches,
        file_bytes as f64 / total as f64,
    );
}

fn main() {
    // `cargo bench` passes --bench; `cargo test --benches` would run this too: keep it short then.
    let quick = std::env::args().any(|a| a == "--test");
    let total = if quick {
        2_000
    } else {
        env_or("BENCH_FIXES", 400_000)
    };
    let clients = env_or("BENCH_CLIENTS", 4);
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .unwrap();
    println!("cleanfleet end-to-end ingest: MQTT QoS 1 -> validate -> SQLite (WAL, synchronous=full), {} cores", std::thread::available_parallelism().map(|n| n.get()).unwrap_or(1));
    for per_message in [1, 10, 50] {
        runtime.block_on(run(total, per_message, clients));
    }
}
