use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use rumqttc::{MqttOptions, TlsConfiguration, Transport};
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::CertificateDer;
use rustls::{ClientConfig, RootCertStore};
use serde::Deserialize;

use crate::IngestError;

/// How to reach the MQTT broker. Shared by everything in cleanfleet that connects to it.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct BrokerConfig {
    /// `mqtt://host:port` (or `tcp://`; port 1883 if left out), or `mqtts://host:port` (or
    /// `ssl://`; port 8883) for TLS. Default `mqtt://127.0.0.1:1883`, the embedded broker.
    pub url: String,
    pub username: Option<String>,
    pub password: Option<String>,
    /// For `mqtts://`: a PEM file of the CA certificates to trust; default the system's
    /// trust store.
    pub ca_file: Option<PathBuf>,
    /// MQTT keep-alive. Default 30 s.
    pub keep_alive_s: u64,
    /// The broker lets a login publish only under its own device id, as cleanfleet's own
    /// broker (`cleanfleet broker`) and Mosquitto and EMQX with the shipped configurations
    /// do: records are then stored as the device credential's (provenance `credential`).
    /// Default false: records are stored as `topic_only`, the topic's word. Ingest in the
    /// same process as the embedded broker sets it itself.
    pub binds_logins: bool,
}

impl Default for BrokerConfig {
    fn default() -> Self {
        BrokerConfig {
            url: "mqtt://127.0.0.1:1883".into(),
            username: None,
            password: None,
            ca_file: None,
            keep_alive_s: 30,
            binds_logins: false,
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BrokerAddress {
    pub host: String,
    pub port: u16,
    pub tls: bool,
}

impl BrokerConfig {
    pub fn address(&self) -> Result<BrokerAddress, IngestError> {
        let bad = |why: &str| IngestError::BrokerUrl {
            url: self.url.clone(),
            why: why.into(),
        };
        let (rest, tls) = [
            ("mqtt://", false),
            ("tcp://", false),
            ("mqtts://", true),
            ("ssl://", true),
        ]
        .into_iter()
        .find_map(|(scheme, tls)| Some((self.url.strip_prefix(scheme)?, tls)))
        .ok_or_else(|| bad("it must start with mqtt://, tcp://, mqtts:// or ssl://"))?;
        let rest = rest.trim_end_matches('/');
        let (host, port) = match rest.rsplit_once(':') {
            Some((host, port)) => (
                host,
                port.parse::<u16>()
                    .map_err(|_| bad("the port must be a number from 0 to 65535"))?,
            ),
            None => (rest, if tls { 8883 } else { 1883 }),
        };
        let host = host.trim_start_matches('[').trim_end_matches(']');
        if host.is_empty() {
            return Err(bad("the host is missing"));
        }
        Ok(BrokerAddress {
            host: host.to_owned(),
            port,
            tls,
        })
    }

    /// The TLS set-up for an `mqtts://` URL, `None` for a plain one. Build it once and share
    /// it: loading the trust store reads files.
    pub fn tls(&self) -> Result<Option<TlsConfiguration>, IngestError> {
        if !self.address()?.tls {
            return Ok(None);
        }
        let tls_error = |why: String| IngestError::BrokerTls(why);
        let mut roots = RootCertStore::empty();
        match &self.ca_file {
            Some(path) => {
                let certificates = CertificateDer::pem_file_iter(path)
                    .and_then(|certs| certs.collect::<Result<Vec<_>, _>>())
                    .map_err(|e| tls_error(format!("ca_file {}: {e}", path.display())))?;
                if certificates.is_empty() {
                    return Err(tls_error(format!(
                        "ca_file {} holds no PEM certificate",
                        path.display()
                    )));
                }
                for certificate in certificates {
                    roots
                        .add(certificate)
                        .map_err(|e| tls_error(format!("ca_file {}: {e}", path.display())))?;
                }
            }
            None => {
                let native = rustls_native_certs::load_native_certs();
                let (added, _) = roots.add_parsable_certificates(native.certs);
                if added == 0 {
                    return Err(tls_error(
                        "the system trust store has no certificate; set [broker] ca_file".into(),
                    ));
                }
            }
        }
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let config = ClientConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()
            .map_err(|e| tls_error(e.to_string()))?
            .with_root_certificates(roots)
            .with_no_client_auth();
        Ok(Some(TlsConfiguration::Rustls(Arc::new(config))))
    }

    /// MQTT options for a persistent-session client with this id, over TLS for `mqtts://`.
    pub fn mqtt_options(&self, client_id: &str) -> Result<MqttOptions, IngestError> {
        let addr = self.address()?;
        let mut options = MqttOptions::new(client_id, addr.host, addr.port);
        if let Some(tls) = self.tls()? {
            options.set_transport(Transport::tls_with_config(tls));
        }
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
        let tls = parse("mqtts://broker.example").unwrap();
        assert_eq!((tls.port, tls.tls), (8883, true));
        assert!(parse("ssl://broker.example:8884").unwrap().tls);
        assert!(!parse("mqtt://broker.example").unwrap().tls);
        assert!(parse("http://x:1").is_err());
        assert!(parse("mqtt://x:99999").is_err());
        assert!(parse("mqtt://:1883").is_err());
    }
}
