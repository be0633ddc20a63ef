//! The I/O layer: one MQTT connection per device, publishing what the [`Fleet`] produces.

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use cleanfleet_model::{DeviceState, DeviceStatus};
use cleanfleet_roads::{RoadNetwork, Zones};
use jiff::{SignedDuration, Timestamp};
use rumqttc::{
    AsyncClient, Event, EventLoop, LastWill, MqttOptions, Outgoing, Packet, QoS, TlsConfiguration,
    Transport,
};
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

use crate::fleet::{status_topic, Content, DeviceInfo, Fleet, SimMessage};
use crate::{SimConfig, SimError};

/// The firmware version devices announce in their birth message.
pub const FIRMWARE: &str = "cleanfleet-sim/0.1";

/// Every device must have connected once within this time, or `run` fails.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(10);
/// On shutdown, how long to wait for the broker to acknowledge what was published.
const ACK_TIMEOUT: Duration = Duration::from_secs(5);
/// On shutdown, how long a connection may take to send its DISCONNECT.
const DISCONNECT_TIMEOUT: Duration = Duration::from_secs(2);
const KEEP_ALIVE: Duration = Duration::from_secs(30);
/// The contract's default payload limit; rumqttc's own default (10 KiB) is too small for
/// large fix batches.
const MAX_PACKET_BYTES: usize = 256 * 1024;
/// Requests queued per connection before `publish` waits: the back-pressure that keeps a fast
/// backfill from outrunning the broker.
const REQUEST_QUEUE: usize = 256;
/// Simulated time stepped at once in a backfill, small enough to interleave devices and to
/// notice a shutdown promptly.
const MAX_STEP: SignedDuration = SignedDuration::from_secs(10);
const RECONNECT_DELAY: (Duration, Duration) = (Duration::from_millis(500), Duration::from_secs(30));

/// What a [`run`] did.
#[derive(Debug, Clone, PartialEq)]
pub struct SimReport {
    /// QoS 1 messages handed to the MQTT clients, birth messages included.
    pub messages_published: u64,
    /// PUBACKs received from the broker.
    pub messages_acked: u64,
    /// Fixes in the published fix batches.
    pub fixes_published: u64,
    /// Bin and toilet readings published.
    pub readings_published: u64,
    /// Weighbridge tickets published.
    pub tickets_published: u64,
    /// Inspectors' dust samples published.
    pub samples_published: u64,
    /// Failed connection attempts and dropped connections.
    pub connection_errors: u64,
    /// How far simulated time got.
    pub simulated_until: Timestamp,
}

/// Counters shared between a device's connection task and the publisher.
#[derive(Default)]
struct LinkStats {
    published: AtomicU64,
    acked: AtomicU64,
    errors: AtomicU64,
    connected_once: AtomicBool,
    last_error: Mutex<Option<String>>,
}

struct Link {
    device_id: String,
    status_topic: String,
    client: AsyncClient,
    stats: Arc<LinkStats>,
    task: JoinHandle<()>,
}

/// Runs the simulation until `shutdown` is cancelled: connects every device, replays
/// `config.backfill` of history, then publishes in real time. With `zones`, cleaning vehicles
/// work their sections. On shutdown, sends unfinished
/// fix batches, waits (at most 5 s) for the broker to acknowledge every message, and
/// disconnects cleanly; then writes the ground truth if `config.truth_path` is set. With
/// `tls`, every device connects over TLS.
pub async fn run(
    config: SimConfig,
    network: Arc<RoadNetwork>,
    zones: Option<&Zones>,
    tls: Option<TlsConfiguration>,
    shutdown: CancellationToken,
) -> Result<SimReport, SimError> {
    config.validate()?;
    let mut config = config;
    crate::add_secrets_from(config.credentials_file.as_deref(), &mut config.secrets)?;
    // Whole seconds keep fix times short and readable.
    let start = Timestamp::from_second((Timestamp::now() - config.backfill).as_second())
        .expect("now minus at most 30 days is a valid time");
    let mut fleet = Fleet::new(network, &config, start)?;
    if let Some(zones) = zones {
        fleet.assign_sections(zones);
    }
    if config.truth_path.is_some() {
        fleet.record_truth();
    }
    // Stops connections that are retrying, once the simulation is over.
    let closing = CancellationToken::new();
    let links: Vec<Link> = fleet
        .devices()
        .iter()
        .map(|device| connect(&config, tls.as_ref(), device, &closing))
        .collect();
    let mut report = SimReport {
        messages_published: 0,
        messages_acked: 0,
        fixes_published: 0,
        readings_published: 0,
        tickets_published: 0,
        samples_published: 0,
        connection_errors: 0,
        simulated_until: start,
    };

    let result = async {
        wait_connected(&config, &links, &shutdown).await?;
        if shutdown.is_cancelled() {
            return Ok(());
        }
        tracing::info!(
            devices = links.len(),
            from = %start,
            "simulated devices connected; replaying the backfill"
        );
        simulate(&config, &mut fleet, &links, &shutdown, &mut report).await
    }
    .await;

    // Unfinished batches go out on every exit path; a device would not drop its buffer.
    if result.is_ok() {
        let flushed = fleet.flush();
        let sent =
            tokio::time::timeout(ACK_TIMEOUT, publish_all(flushed, &links, &mut report)).await;
        if !matches!(sent, Ok(Ok(()))) {
            tracing::warn!("could not send the last fix batches before shutting down");
        }
        announce_offline(&links).await;
        wait_acked(&links).await;
    }
    let stats: Vec<Arc<LinkStats>> = links.iter().map(|l| l.stats.clone()).collect();
    disconnect(links, &closing).await;
    report.simulated_until = fleet.now();
    for s in stats {
        report.messages_published += s.published.load(Ordering::Relaxed);
        report.messages_acked += s.acked.load(Ordering::Relaxed);
        report.connection_errors += s.errors.load(Ordering::Relaxed);
    }
    let result = result.and_then(|()| match &config.truth_path {
        Some(path) => fleet.write_truth(path),
        None => Ok(()),
    });
    result.map(|()| report)
}

fn connect(
    config: &SimConfig,
    tls: Option<&TlsConfiguration>,
    device: &DeviceInfo,
    closing: &CancellationToken,
) -> Link {
    let status_topic = status_topic(device);
    let offline = serde_json::to_vec(&DeviceStatus {
        device_id: None,
        state: DeviceState::Offline,
        time: None,
        firmware: None,
    })
    .expect("a status serializes");
    // A device logs in as itself: its id is its client id and its username.
    let mut options = MqttOptions::new(
        device.id.clone(),
        config.broker_host.clone(),
        config.broker_port,
    );
    options
        .set_clean_session(false)
        .set_keep_alive(KEEP_ALIVE)
        .set_max_packet_size(MAX_PACKET_BYTES, MAX_PACKET_BYTES)
        .set_last_will(LastWill::new(
            &status_topic,
            offline,
            QoS::AtLeastOnce,
            false,
        ));
    if let Some(tls) = tls {
        options.set_transport(Transport::tls_with_config(tls.clone()));
    }
    if let Some(secret) = config.secrets.get(&device.id) {
        options.set_credentials(device.id.clone(), secret.clone());
    }
    let (client, eventloop) = AsyncClient::new(options, REQUEST_QUEUE);
    let stats = Arc::new(LinkStats::default());
    let task = tokio::spawn(drive_connection(
        eventloop,
        client.clone(),
        status_topic.clone(),
        stats.clone(),
        closing.clone(),
    ));
    Link {
        device_id: device.id.clone(),
        status_topic,
        client,
        stats,
        task,
    }
}

/// Polls one device's connection until it has sent DISCONNECT: announces the device after
/// every (re)connect, counts acknowledgements, and retries with backoff when the link drops.
async fn drive_connection(
    mut eventloop: EventLoop,
    client: AsyncClient,
    status_topic: String,
    stats: Arc<LinkStats>,
    closing: CancellationToken,
) {
    let mut delay = RECONNECT_DELAY.0;
    // One warning per outage; the retries after it are debug noise.
    let mut outage_reported = false;
    loop {
        match eventloop.poll().await {
            Ok(Event::Incoming(Packet::ConnAck(_))) => {
                delay = RECONNECT_DELAY.0;
                outage_reported = false;
                stats.connected_once.store(true, Ordering::Release);
                let birth = serde_json::to_vec(&DeviceStatus {
                    device_id: None,
                    state: DeviceState::Online,
                    time: Some(Timestamp::now()),
                    firmware: Some(FIRMWARE.into()),
                })
                .expect("a status serializes");
                // Publishing from this task must not wait: only this task drains the queue.
                let client = client.clone();
                let topic = status_topic.clone();
                let stats = stats.clone();
                tokio::spawn(async move {
                    if client
                        .publish(topic, QoS::AtLeastOnce, false, birth)
                        .await
                        .is_ok()
                    {
                        stats.published.fetch_add(1, Ordering::Relaxed);
                    }
                });
            }
            Ok(Event::Incoming(Packet::PubAck(_))) => {
                stats.acked.fetch_add(1, Ordering::Relaxed);
            }
            Ok(Event::Outgoing(Outgoing::Disconnect)) => return,
            Ok(_) => {}
            Err(e) => {
                if closing.is_cancelled() {
                    return;
                }
                stats.errors.fetch_add(1, Ordering::Relaxed);
                let message = e.to_string();
                if outage_reported {
                    tracing::debug!(topic = %status_topic, error = %message, "MQTT reconnect failed; retrying in {delay:?}");
                } else {
                    tracing::warn!(topic = %status_topic, error = %message, "MQTT connection failed; retrying");
                    outage_reported = true;
                }
                *stats.last_error.lock().expect("not poisoned") = Some(message);
                tokio::select! {
                    () = closing.cancelled() => return,
                    () = tokio::time::sleep(delay) => {}
                }
                delay = (delay * 2).min(RECONNECT_DELAY.1);
            }
        }
    }
}

async fn wait_connected(
    config: &SimConfig,
    links: &[Link],
    shutdown: &CancellationToken,
) -> Result<(), SimError> {
    let deadline = tokio::time::Instant::now() + CONNECT_TIMEOUT;
    loop {
        let waiting = links
            .iter()
            .find(|l| !l.stats.connected_once.load(Ordering::Acquire));
        let Some(waiting) = waiting else {
            return Ok(());
        };
        if shutdown.is_cancelled() {
            return Ok(());
        }
        if tokio::time::Instant::now() >= deadline {
            let detail = waiting
                .stats
                .last_error
                .lock()
                .expect("not poisoned")
                .clone()
                .unwrap_or_else(|| "no CONNACK".into());
            return Err(SimError::Connect {
                host: config.broker_host.clone(),
                port: config.broker_port,
                timeout_s: CONNECT_TIMEOUT.as_secs(),
                detail: format!("device {}: {detail}", waiting.device_id),
            });
        }
        tokio::select! {
            () = shutdown.cancelled() => {}
            () = tokio::time::sleep(Duration::from_millis(20)) => {}
        }
    }
}

/// Steps the fleet and publishes, paced by the wall clock (and by `speedup` while behind it).
async fn simulate(
    config: &SimConfig,
    fleet: &mut Fleet,
    links: &[Link],
    shutdown: &CancellationToken,
    report: &mut SimReport,
) -> Result<(), SimError> {
    let paced_from = (fleet.now(), tokio::time::Instant::now());
    let paced_clock = || {
        (config.speedup > 0.0).then(|| {
            let elapsed = paced_from.1.elapsed().as_secs_f64() * config.speedup;
            paced_from.0 + SignedDuration::from_secs_f64(elapsed)
        })
    };
    let mut caught_up = false;
    while !shutdown.is_cancelled() {
        let now = Timestamp::now();
        let paced = paced_clock();
        let target = [Some(now), paced, Some(fleet.now() + MAX_STEP)]
            .into_iter()
            .flatten()
            .min()
            .expect("the list is not empty");
        let next = fleet.next_tick();
        if !caught_up && next > now {
            caught_up = true;
            tracing::info!(
                messages = report_total(report),
                "backfill done; continuing in real time"
            );
        }
        if target < next {
            // Sleep until both the wall clock and the paced clock reach the next tick.
            let mut wait = next.duration_since(now);
            if let Some(paced) = paced {
                wait = wait.max(SignedDuration::from_secs_f64(
                    next.duration_since(paced).as_secs_f64() / config.speedup,
                ));
            }
            let wait = Duration::try_from(wait)
                .unwrap_or_default()
                .max(Duration::from_millis(1));
            tokio::select! {
                () = shutdown.cancelled() => {}
                () = tokio::time::sleep(wait) => {}
            }
            continue;
        }
        let messages = fleet.step_until(target);
        tokio::select! {
            () = shutdown.cancelled() => {}
            sent = publish_all(messages, links, report) => sent?,
        }
    }
    Ok(())
}

fn report_total(report: &SimReport) -> u64 {
    report.fixes_published
        + report.readings_published
        + report.tickets_published
        + report.samples_published
}

async fn publish_all(
    messages: Vec<SimMessage>,
    links: &[Link],
    report: &mut SimReport,
) -> Result<(), SimError> {
    for m in messages {
        let link = &links[m.device];
        link.client
            .publish(m.topic, QoS::AtLeastOnce, false, m.payload)
            .await
            .map_err(|source| SimError::Client {
                device_id: link.device_id.clone(),
                source,
            })?;
        link.stats.published.fetch_add(1, Ordering::Relaxed);
        match m.content {
            Content::Fixes(n) => report.fixes_published += n as u64,
            Content::Reading => report.readings_published += 1,
            Content::Ticket => report.tickets_published += 1,
            Content::Sample => report.samples_published += 1,
        }
    }
    Ok(())
}

/// A clean disconnect suppresses the last will, so devices say they are going offline first.
async fn announce_offline(links: &[Link]) {
    let offline = DeviceStatus {
        device_id: None,
        state: DeviceState::Offline,
        time: Some(Timestamp::now()),
        firmware: Some(FIRMWARE.into()),
    };
    let payload = serde_json::to_vec(&offline).expect("a status serializes");
    for link in links {
        let sent = link.client.try_publish(
            link.status_topic.clone(),
            QoS::AtLeastOnce,
            false,
            payload.clone(),
        );
        if sent.is_ok() {
            link.stats.published.fetch_add(1, Ordering::Relaxed);
        }
    }
}

/// Waits, bounded, until the broker has acknowledged everything published.
async fn wait_acked(links: &[Link]) {
    let all_acked = || {
        links.iter().all(|l| {
            l.stats.acked.load(Ordering::Relaxed) >= l.stats.published.load(Ordering::Relaxed)
        })
    };
    let waited = tokio::time::timeout(ACK_TIMEOUT, async {
        while !all_acked() {
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    })
    .await;
    if waited.is_err() {
        let unacked: u64 = links
            .iter()
            .map(|l| {
                l.stats
                    .published
                    .load(Ordering::Relaxed)
                    .saturating_sub(l.stats.acked.load(Ordering::Relaxed))
            })
            .sum();
        tracing::warn!(
            unacked,
            "broker did not acknowledge every message before shutdown"
        );
    }
}

/// Sends DISCONNECT on every connection, so the broker drops the session's last will, and
/// stops the connection tasks.
async fn disconnect(links: Vec<Link>, closing: &CancellationToken) {
    for link in &links {
        // A full queue or a stopped task leaves no clean way out; the task is aborted below.
        let _ = link.client.try_disconnect();
    }
    closing.cancel();
    let deadline = tokio::time::Instant::now() + DISCONNECT_TIMEOUT;
    for mut link in links {
        if tokio::time::timeout_at(deadline, &mut link.task)
            .await
            .is_err()
        {
            link.task.abort();
        }
    }
}
