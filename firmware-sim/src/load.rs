//! Load mode: many devices, each with its own MQTT connection, publishing fix batches at a
//! fixed rate for a fixed time. For ingest benchmarks and capacity checks, not realism: every
//! device drives a straight line at working speed.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use cleanfleet_model::{DeviceKind, Fix, FixBatch, Stream, Topic, WorkState};
use jiff::{SignedDuration, Timestamp};
use rumqttc::{AsyncClient, Event, MqttOptions, Outgoing, Packet, QoS};
use serde::Deserialize;
use tokio::sync::Semaphore;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

use crate::SimError;

/// `cleanfleet load` settings.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct LoadConfig {
    #[serde(skip)]
    pub broker_host: String,
    #[serde(skip)]
    pub broker_port: u16,
    /// The devices' secrets (`device_id:secret` lines); device ids, usernames and client
    /// ids are `load-00001`, ... ([`load_device_ids`]). Default none: no login.
    pub credentials_file: Option<std::path::PathBuf>,
    /// Secrets handed over by the application, before the file's.
    #[serde(skip)]
    pub secrets: std::collections::BTreeMap<String, String>,
    /// Connected devices. Default 1000.
    pub devices: u32,
    /// Seconds between one device's messages. Default 10.
    pub message_interval_s: f64,
    /// Fixes per message (one per second of device time). Default 10.
    pub fixes_per_message: u32,
    /// How long to publish. Default 60 s.
    pub duration_s: f64,
    /// Connections opened at once while ramping up. Default 200.
    pub connect_concurrency: usize,
}

impl Default for LoadConfig {
    fn default() -> Self {
        LoadConfig {
            broker_host: "localhost".into(),
            broker_port: 1883,
            credentials_file: None,
            secrets: Default::default(),
            devices: 1000,
            message_interval_s: 10.0,
            fixes_per_message: 10,
            duration_s: 60.0,
            connect_concurrency: 200,
        }
    }
}

/// Load devices are sweepers.
pub const LOAD_DEVICE_KIND: DeviceKind = DeviceKind::Sweeper;

/// The id (and username and client id) of load device `n` (from 0).
pub fn load_device_id(n: u32) -> String {
    format!("load-{n:05}")
}

/// The ids of a load run's devices.
pub fn load_device_ids(devices: u32) -> impl Iterator<Item = String> {
    (0..devices).map(load_device_id)
}

/// What a load run achieved.
#[derive(Debug, Clone, PartialEq)]
pub struct LoadReport {
    pub devices_connected: u64,
    /// From the first connection attempt until every device was connected.
    pub ramp_up: Duration,
    pub messages_published: u64,
    pub messages_acked: u64,
    pub fixes_published: u64,
    /// From the end of the ramp-up until the last ack (or the shutdown timeout).
    pub publishing: Duration,
}

impl LoadReport {
    pub fn acked_messages_per_s(&self) -> f64 {
        self.messages_acked as f64 / self.publishing.as_secs_f64().max(1e-9)
    }
}

#[derive(Default)]
struct Counters {
    connected: AtomicU64,
    published: AtomicU64,
    acked: AtomicU64,
}

/// How long a stopping load run waits for the broker's outstanding acknowledgements.
const DRAIN_TIMEOUT: Duration = Duration::from_secs(10);

/// Run the load until `duration_s` has passed or `shutdown` is cancelled, then wait (at most
/// [`DRAIN_TIMEOUT`]) for the broker to acknowledge what was published, and disconnect.
pub async fn run_load(
    config: LoadConfig,
    shutdown: CancellationToken,
) -> Result<LoadReport, SimError> {
    if config.devices == 0 || config.fixes_per_message == 0 || config.message_interval_s <= 0.0 {
        return Err(SimError::InvalidConfig(
            "devices, fixes_per_message and message_interval_s must be above 0".into(),
        ));
    }
    let mut config = config;
    crate::add_secrets_from(config.credentials_file.as_deref(), &mut config.secrets)?;
    let config = Arc::new(config);
    let counters = Arc::new(Counters::default());
    let connects = Arc::new(Semaphore::new(config.connect_concurrency.max(1)));
    let all_connected = CancellationToken::new();
    let stop_publishing = CancellationToken::new();
    let started = Instant::now();
    let tasks: Vec<_> = (0..config.devices)
        .map(|n| {
            tokio::spawn(device(
                n,
                config.clone(),
                counters.clone(),
                connects.clone(),
                all_connected.clone(),
                stop_publishing.clone(),
            ))
        })
        .collect();

    let ramp_deadline = started + Duration::from_secs(120);
    while counters.connected.load(Ordering::Relaxed) < u64::from(config.devices) {
        if shutdown.is_cancelled() || Instant::now() > ramp_deadline {
            stop_publishing.cancel();
            all_connected.cancel();
            for t in tasks {
                t.abort();
            }
            return Err(SimError::Connect {
                host: config.broker_host.clone(),
                port: config.broker_port,
                timeout_s: 120,
                detail: format!(
                    "{} of {} devices connected",
                    counters.connected.load(Ordering::Relaxed),
                    config.devices
                ),
            });
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let ramp_up = started.elapsed();
    tracing::info!(
        devices = config.devices,
        ramp_up_s = ramp_up.as_secs_f64(),
        "load: all devices connected"
    );
    all_connected.cancel();
    let publishing_from = Instant::now();
    tokio::select! {
        _ = shutdown.cancelled() => {}
        _ = tokio::time::sleep(Duration::from_secs_f64(config.duration_s)) => {}
    }
    stop_publishing.cancel();
    // What the broker has not acknowledged by then it may never (a broker that restarted
    // without the sessions, or is gone): stop waiting rather than hang.
    let drain_deadline = Instant::now() + DRAIN_TIMEOUT;
    let mut abandoned = 0;
    for mut t in tasks {
        if tokio::time::timeout_at(drain_deadline, &mut t)
            .await
            .is_err()
        {
            t.abort();
            abandoned += 1;
        }
    }
    if abandoned > 0 {
        tracing::warn!(
            devices = abandoned,
            timeout_s = DRAIN_TIMEOUT.as_secs(),
            "load: devices still waiting for acknowledgements were stopped"
        );
    }
    let published = counters.published.load(Ordering::Relaxed);
    Ok(LoadReport {
        devices_connected: counters.connected.load(Ordering::Relaxed),
        ramp_up,
        messages_published: published,
        messages_acked: counters.acked.load(Ordering::Relaxed),
        fixes_published: published * u64::from(config.fixes_per_message),
        publishing: publishing_from.elapsed(),
    })
}

/// One device: connect, wait for the whole fleet, publish on its own phase of the interval,
/// then drain its acks and disconnect.
async fn device(
    n: u32,
    config: Arc<LoadConfig>,
    counters: Arc<Counters>,
    connects: Arc<Semaphore>,
    all_connected: CancellationToken,
    stop: CancellationToken,
) {
    let device_id = load_device_id(n);
    let mut options = MqttOptions::new(
        device_id.clone(),
        config.broker_host.clone(),
        config.broker_port,
    );
    if let Some(secret) = config.secrets.get(&device_id) {
        options.set_credentials(device_id.clone(), secret.clone());
    }
    options
        .set_clean_session(false)
        .set_keep_alive(Duration::from_secs(60))
        .set_max_packet_size(1 << 20, 1 << 20);
    let (client, mut eventloop) = AsyncClient::new(options, 64);
    {
        let _permit = connects.acquire().await;
        loop {
            match eventloop.poll().await {
                Ok(Event::Incoming(Packet::ConnAck(_))) => break,
                Ok(_) => {}
                Err(_) => {
                    if stop.is_cancelled() {
                        return;
                    }
                    tokio::time::sleep(Duration::from_millis(200)).await;
                }
            }
        }
    }
    counters.connected.fetch_add(1, Ordering::Relaxed);
    let topic = Topic::new(LOAD_DEVICE_KIND, device_id.clone(), Stream::Fixes).name();
    let interval = Duration::from_secs_f64(config.message_interval_s);
    // Spread devices over the interval so the load is smooth, not a thundering herd.
    let phase = interval.mul_f64(f64::from(n % 1000) / 1000.0);
    let mut next_send = None;
    let mut seq = 0u64;
    let mut unacked = 0u64;
    let mut stopping = false;
    let mut waiting_for_fleet = true;
    loop {
        let send_at = next_send.unwrap_or_else(|| Instant::now() + Duration::from_secs(3600));
        tokio::select! {
            _ = all_connected.cancelled(), if waiting_for_fleet => {
                waiting_for_fleet = false;
                next_send = Some(Instant::now() + phase);
            }
            _ = stop.cancelled(), if !stopping => {
                stopping = true;
                next_send = None;
                if unacked == 0 {
                    break;
                }
            }
            _ = tokio::time::sleep_until(send_at), if next_send.is_some() => {
                let payload = batch(&device_id, n, seq, config.fixes_per_message, interval);
                seq += u64::from(config.fixes_per_message);
                if client.try_publish(&topic, QoS::AtLeastOnce, false, payload).is_ok() {
                    counters.published.fetch_add(1, Ordering::Relaxed);
                    unacked += 1;
                }
                next_send = Some(send_at + interval);
            }
            event = eventloop.poll() => match event {
                Ok(Event::Incoming(Packet::PubAck(_))) => {
                    counters.acked.fetch_add(1, Ordering::Relaxed);
                    unacked = unacked.saturating_sub(1);
                    if stopping && unacked == 0 {
                        break;
                    }
                }
                Ok(_) => {}
                Err(_) => tokio::time::sleep(Duration::from_millis(200)).await,
            },
        }
    }
    let _ = client.try_disconnect();
    let _ = tokio::time::timeout(Duration::from_secs(5), async {
        loop {
            match eventloop.poll().await {
                Ok(Event::Outgoing(Outgoing::Disconnect)) | Err(_) => break,
                Ok(_) => {}
            }
        }
    })
    .await;
}

/// `count` fixes spread over the last `interval` (so consecutive messages never share a device
/// time), driving north-east at 7 km/h with the brush down.
fn batch(device_id: &str, n: u32, first_seq: u64, count: u32, interval: Duration) -> Vec<u8> {
    let now = Timestamp::now();
    let spacing = SignedDuration::try_from(interval / count).unwrap_or(SignedDuration::ZERO);
    let origin = (
        32.0 + f64::from(n % 100) * 1e-3,
        120.8 + f64::from(n / 100) * 1e-3,
    );
    let fixes = (0..count)
        .map(|i| {
            let seq = first_seq + u64::from(i);
            let step = seq as f64 * 1.4e-5;
            Fix {
                time: now - spacing * i32::try_from(count - 1 - i).unwrap_or(i32::MAX),
                seq: Some(seq),
                lat: origin.0 + step,
                lon: origin.1 + step,
                speed_kmh: Some(7.0),
                heading_deg: Some(45.0),
                hdop: Some(0.9),
                satellites: Some(12),
                work: WorkState {
                    brush: true,
                    vacuum: true,
                    ..WorkState::default()
                },
                water_tank_ratio: None,
                load_kg: None,
                odometer_m: None,
                lifter_cycles: None,
                sos: None,
            }
        })
        .collect();
    serde_json::to_vec(&FixBatch {
        device_id: Some(device_id.to_owned()),
        fixes,
    })
    .expect("a fix batch serializes")
}
