//! The embedded MQTT broker (rumqttd) for the single-machine default.

use std::collections::HashMap;
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::time::{Duration, Instant};

use anyhow::{bail, Context};
use rumqttd::{Broker, Config, ConnectionSettings, RouterConfig, ServerSettings};

use crate::config::EmbeddedBrokerConfig;

/// Start the broker on its own threads and wait until it accepts connections. It runs until
/// the process exits: ingest and devices disconnect from it during an ordered shutdown.
pub fn start(config: &EmbeddedBrokerConfig) -> anyhow::Result<SocketAddr> {
    let listen = free_port(config.listen)?;
    let server = ServerSettings {
        name: "v4-1".into(),
        listen,
        tls: None,
        next_connection_delay_ms: 0,
        connections: ConnectionSettings {
            connection_timeout_ms: 60_000,
            max_payload_size: config.max_payload_bytes,
            max_inflight_count: config.max_inflight,
            auth: None,
            external_auth: None,
            dynamic_filters: true,
        },
    };
    let broker_config = Config {
        id: 0,
        router: RouterConfig {
            max_connections: config.max_connections,
            max_outgoing_packet_count: 200,
            max_segment_size: 100 * 1024 * 1024,
            max_segment_count: 10,
            custom_segment: None,
            initialized_filters: None,
            shared_subscriptions_strategy: Default::default(),
        },
        v4: Some(HashMap::from([("v4-1".to_owned(), server)])),
        ..Default::default()
    };
    let mut broker = Broker::new(broker_config);
    std::thread::Builder::new()
        .name("mqtt-broker".into())
        .spawn(move || {
            if let Err(e) = broker.start() {
                tracing::error!(error = %e, "embedded MQTT broker stopped");
            }
        })
        .context("cannot start the broker thread")?;
    wait_until_listening(listen)?;
    tracing::info!(%listen, "embedded MQTT broker listening");
    Ok(listen)
}

/// rumqttd binds inside its own thread and reports neither the port it got nor a failure to
/// bind: check the address is free (and pick a port for port 0) first.
fn free_port(addr: SocketAddr) -> anyhow::Result<SocketAddr> {
    let listener = TcpListener::bind(addr).with_context(|| {
        format!("cannot listen on {addr} for MQTT (is another broker running?)")
    })?;
    Ok(listener.local_addr()?)
}

fn wait_until_listening(addr: SocketAddr) -> anyhow::Result<()> {
    let deadline = Instant::now() + Duration::from_secs(10);
    while Instant::now() < deadline {
        if TcpStream::connect_timeout(&addr, Duration::from_millis(200)).is_ok() {
            return Ok(());
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    bail!("the embedded MQTT broker did not start listening on {addr} (is the port taken?)")
}
