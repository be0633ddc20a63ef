/// Why the simulator could not start or stopped early.
#[derive(Debug, thiserror::Error)]
pub enum SimError {
    #[error("invalid simulator config: {0}")]
    InvalidConfig(String),
    /// Vehicles need a part of the network where they can drive on from every intersection.
    #[error("the road network has no part where a vehicle can keep driving (every road ends in a one-way dead end)")]
    UndrivableNetwork,
    #[error("cannot connect to the MQTT broker at {host}:{port} within {timeout_s} s: {detail}")]
    Connect {
        host: String,
        port: u16,
        timeout_s: u64,
        detail: String,
    },
    /// A device's connection task ended, so its messages cannot be sent.
    #[error("MQTT client of device {device_id} stopped: {source}")]
    Client {
        device_id: String,
        #[source]
        source: rumqttc::ClientError,
    },
    #[error("cannot read the devices' secrets from {}: {detail}", path.display())]
    Secrets {
        path: std::path::PathBuf,
        detail: String,
    },
    #[error("cannot write the ground truth to {}: {source}", path.display())]
    Truth {
        path: std::path::PathBuf,
        #[source]
        source: std::io::Error,
    },
}

#[cfg(test)]
mod tests {
    /// `run` is spawned on tokio and its error wrapped in `anyhow`.
    #[test]
    fn error_is_send_sync_static() {
        fn check<T: std::error::Error + Send + Sync + 'static>() {}
        check::<super::SimError>();
    }
}
