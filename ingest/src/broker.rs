use std::time::Duration;

use rumqttc::MqttOptions;
use serde::Deserialize;

use crate::IngestError;

/// How to reach the MQTT broker. Shared by everything in cleanfleet that connects to it.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct BrokerConfig {
    /// `mqtt://host:port` (or `tcp://`). Default `mqtt://127.0.0.1:1883`, the embedded broker.
    pub url: String,
    pub username: Option<String>,
    pub password: Option<String>,
    /// MQTT keep-alive. Default 30 s.
    pub keep_alive_s: u64,
}

impl Default for BrokerConfig {
    fn default() -> Self {
        BrokerConfig {
            url: "mqtt://127.0.0.1:1883".into(),
            username: None,
            password: None,
            keep_alive_s: 30,
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BrokerAddress {
    pub host: String,
    pub port: u16,
}

impl BrokerConfig {
    pub fn address(&self) -> Result<BrokerAddress, IngestError> {
        let bad = |why: &str| IngestError::BrokerUrl {
            url: self.url.clone(),
            why: why.into(),
        };
        let rest = self
            .url
            .strip_prefix("mqtt://")
            .or_else(|| self.url.strip_prefix("tcp://"))
            .ok_or_else(|| bad("it must start with mqtt:// or tcp://"))?;
        let rest = rest.trim_end_matches('/');
        let (host, port) = match rest.rsplit_once(':') {
            Some((host, port)) => (
                host,
                port.parse::<u16>()
                    .map_err(|_| bad("the port must be a number from 0 to 65535"))?,
            ),
            None => (rest, 1883),
        };
        let host = host.trim_start_matches('[').trim_end_matches(']');
        if host.is_empty() {
            return Err(bad("the host is missing"));
        }
        Ok(BrokerAddress {
            host: host.to_owned(),
            port,
        })
    }

    /// MQTT options for a persistent-session client with this id.
    pub fn mqtt_options(&self, client_id: &str) -> Result<MqttOptions, IngestError> {
        let addr = self.address()?;
        let mut options = MqttOptions::new(client_id, addr.host, addr.port);
        options.set_keep_alive(Duration::from_secs(self.keep_alive_s.max(5)));
        options.set_clean_session(false);
        if let Some(user) = &self.username {
            options.set_credentials(user, self.password.clone().unwrap_or_default());
        }
        Ok(options)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(url: &str) -> Result<BrokerAddress, IngestError> {
        BrokerConfig {
            url: url.into(),
            ..Default::default()
        }
        .address()
    }

    #[test]
    fn broker_urls() {
        let a = parse("mqtt://broker.example:1884").unwrap();
        assert_eq!((a.host.as_str(), a.port), ("broker.example", 1884));
        assert_eq!(parse("tcp://10.0.0.1").unwrap().port, 1883);
        assert_eq!(parse("mqtt://[::1]:1883/").unwrap().host, "::1");
        assert!(parse("http://x:1").is_err());
        assert!(parse("mqtt://x:99999").is_err());
        assert!(parse("mqtt://:1883").is_err());
    }
}
