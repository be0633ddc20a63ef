//! The embedded broker under a burst many times its queue budget: it holds acknowledgements
//! back instead of dropping, and every message it acknowledged is stored.

mod common;

use std::time::Duration;

use cleanfleet_store::Store;
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
