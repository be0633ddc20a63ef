//! The configuration file (`deploy/cleanfleet.example.toml` documents every key) with
//! environment overrides: `CLEANFLEET__SECTION__KEY=value` sets `[section] key = value`
//! (the value is read as TOML, falling back to a string).

use std::path::{Path, PathBuf};

use cleanfleet_api::ApiConfig;
use cleanfleet_ingest::{BrokerConfig, IngestConfig};
use cleanfleet_inspection::InspectionRules;
use cleanfleet_roads::ZoneConfig;
use cleanfleet_sim::{LoadConfig, SimConfig};
use cleanfleet_store::{DeadLetterCaps, Synchronous};

use crate::coverage::CoverageConfig;
use serde::Deserialize;

pub const ENV_PREFIX: &str = "CLEANFLEET__";

#[derive(Debug, Clone, PartialEq, Deserialize, Default)]
#[serde(deny_unknown_fields, default)]
pub struct Config {
    /// Where the embedded store and other state live. Default `data`.
    pub data_dir: DataDir,
    /// `tracing` filter (overridden by `RUST_LOG`). Default `info`.
    pub log: LogFilter,
    /// The broker that ingest and the simulator connect to.
    pub broker: BrokerConfig,
    /// The in-process broker started by `demo` and `broker`.
    pub embedded_broker: cleanfleet_broker::BrokerConfig,
    pub ingest: IngestConfig,
    pub store: StoreConfig,
    pub api: ApiConfig,
    pub sim: SimConfig,
    /// `cleanfleet load`: many devices at a fixed rate, for capacity tests.
    pub load: LoadConfig,
    pub roads: RoadsConfig,
    pub coverage: CoverageConfig,
    /// Weight-based cleanliness checks (以克论净): how road results are made and judged.
    pub inspection: InspectionRules,
    /// Contractor assessment: deductions and how the score becomes pay.
    pub assessment: cleanfleet_inspection::assessment::AssessmentRules,
    /// Smart bins: when one overflows and how soon it must be emptied.
    pub bins: cleanfleet_inspection::overflow::BinRules,
    /// Where a stage without the API serves its own `/metrics` and `/readyz`.
    pub metrics: MetricsConfig,
}

/// `[metrics]`: the probe ports of `cleanfleet broker`, `ingest` and `coverage` run as
/// separate processes (the API serves its own probes on `[api] listen`). One port each, so
/// that all three can run on one host from one config file.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct MetricsConfig {
    /// Default `127.0.0.1:9101`.
    pub broker_listen: std::net::SocketAddr,
    /// Default `127.0.0.1:9102`.
    pub ingest_listen: std::net::SocketAddr,
    /// Default `127.0.0.1:9103`.
    pub coverage_listen: std::net::SocketAddr,
}

impl Default for MetricsConfig {
    fn default() -> Self {
        let local = |port| std::net::SocketAddr::from(([127, 0, 0, 1], port));
        MetricsConfig {
            broker_listen: local(9101),
            ingest_listen: local(9102),
            coverage_listen: local(9103),
        }
    }
}

/// `[roads]`: the city's road network, which the simulated fleet drives and coverage is
/// measured on.
#[derive(Debug, Clone, Default, PartialEq, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct RoadsConfig {
    /// The road network: an OpenStreetMap PBF extract (`.osm.pbf`) or GeoJSON lines with
    /// OSM-style tags (`.geojson`); the built-in demo town when unset. `--roads` overrides it.
    pub file: Option<PathBuf>,
    /// Sections and grid cells as GeoJSON polygons with properties `kind` (`section` or
    /// `grid`), `id`, `name`, `contractor`; read before `sections` and `grids`.
    pub zones_geojson: Option<PathBuf>,
    /// Sections (标段) with their contractor: `polygons`, `segments` and/or `osm_ways`.
    pub sections: Vec<ZoneConfig>,
    /// Grid cells (网格), like sections without a contractor.
    pub grids: Vec<ZoneConfig>,
}

#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(transparent)]
pub struct DataDir(pub PathBuf);

impl Default for DataDir {
    fn default() -> Self {
        DataDir("data".into())
    }
}

#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(transparent)]
pub struct LogFilter(pub String);

impl Default for LogFilter {
    fn default() -> Self {
        LogFilter("info".into())
    }
}

#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct StoreConfig {
    /// Only `sqlite` for now.
    pub backend: StoreBackend,
    /// SQLite file. Default `<data_dir>/cleanfleet.sqlite`.
    pub path: Option<PathBuf>,
    /// `full` (default: a commit survives power loss) or `normal`.
    pub synchronous: Synchronous,
    /// Device data older than this is deleted hourly; 0 keeps everything. Default 400 days.
    pub retention_days: u32,
    /// Caps on what the dead-letter store keeps (`[store.dead_letters]`); a rejected message
    /// beyond them is counted, not kept.
    pub dead_letters: DeadLetterCaps,
}

impl Default for StoreConfig {
    fn default() -> Self {
        StoreConfig {
            backend: StoreBackend::Sqlite,
            path: None,
            synchronous: Synchronous::Full,
            retention_days: 400,
            dead_letters: DeadLetterCaps::default(),
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum StoreBackend {
    Sqlite,
}

impl Config {
    pub fn sqlite_path(&self) -> PathBuf {
        self.store
            .path
            .clone()
            .unwrap_or_else(|| self.data_dir.0.join("cleanfleet.sqlite"))
    }

    /// Read the file (if any), apply environment overrides, check everything.
    pub fn load(
        file: Option<&Path>,
        env: impl IntoIterator<Item = (String, String)>,
    ) -> Result<Config, ConfigError> {
        let table = match file {
            Some(path) => {
                let text = std::fs::read_to_string(path).map_err(|e| ConfigError::Read {
                    path: path.display().to_string(),
                    source: e,
                })?;
                toml::from_str::<toml::Table>(&text).map_err(|e| ConfigError::Parse {
                    origin: path.display().to_string(),
                    message: e.to_string(),
                })?
            }
            None => toml::Table::new(),
        };
        let overrides: Vec<(String, Vec<String>, String)> = env
            .into_iter()
            .filter_map(|(key, raw)| {
                let path = key.strip_prefix(ENV_PREFIX)?;
                let parts = path.split("__").map(|p| p.to_ascii_lowercase()).collect();
                Some((key, parts, raw))
            })
            .collect();
        let origin = || {
            file.map(|p| p.display().to_string())
                .unwrap_or_else(|| "defaults and environment".into())
        };
        // An override is read as a TOML value (`7`, `true`, `"x"`), unless the key wants a
        // string: `PASSWORD=123456` must stay a string. Try typed first, then each override
        // as plain text until the whole config is valid.
        let build = |as_text: &[bool]| -> Result<Config, ConfigError> {
            let mut table = table.clone();
            for ((key, parts, raw), text) in overrides.iter().zip(as_text) {
                let value = if *text {
                    toml::Value::String(raw.clone())
                } else {
                    parse_env_value(raw)
                };
                set_path(&mut table, parts, value).map_err(|message| ConfigError::Parse {
                    origin: key.clone(),
                    message,
                })?;
            }
            Config::deserialize(toml::Value::Table(table)).map_err(|e| ConfigError::Parse {
                origin: origin(),
                message: e.to_string(),
            })
        };
        let mut as_text = vec![false; overrides.len()];
        let first = build(&as_text);
        if first.is_ok() {
            return first;
        }
        for i in 0..overrides.len() {
            as_text[i] = true;
            if let Ok(config) = build(&as_text) {
                return Ok(config);
            }
            as_text[i] = false;
        }
        first
    }
}

fn parse_env_value(raw: &str) -> toml::Value {
    toml::from_str::<toml::Table>(&format!("v = {raw}"))
        .ok()
        .and_then(|mut t| t.remove("v"))
        .unwrap_or_else(|| toml::Value::String(raw.to_owned()))
}

fn set_path(table: &mut toml::Table, path: &[String], value: toml::Value) -> Result<(), String> {
    match path {
        [] => Err("empty key".into()),
        [last] => {
            table.insert(last.clone(), value);
            Ok(())
        }
        [first, rest @ ..] => {
            let entry = table
                .entry(first.clone())
                .or_insert_with(|| toml::Value::Table(toml::Table::new()));
            match entry {
                toml::Value::Table(inner) => set_path(inner, rest, value),
                _ => Err(format!("{first} is not a section")),
            }
        }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("cannot read the config file {path}: {source}")]
    Read {
        path: String,
        source: std::io::Error,
    },
    #[error("invalid configuration in {origin}: {message}")]
    Parse { origin: String, message: String },
}

#[cfg(test)]
mod tests {
    use super::*;

    fn example_path() -> PathBuf {
        Path::new(env!("CARGO_MANIFEST_DIR")).join("deploy/cleanfleet.example.toml")
    }

    #[test]
    fn shipped_example_config_parses_and_matches_the_defaults() {
        let config = Config::load(Some(&example_path()), []).unwrap();
        assert_eq!(config, Config::default());
    }

    #[test]
    fn environment_overrides_the_file() {
        let env = [
            (
                "CLEANFLEET__API__LISTEN".to_owned(),
                "127.0.0.1:9999".to_owned(),
            ),
            (
                "CLEANFLEET__INGEST__BATCH_MAX_MESSAGES".to_owned(),
                "7".to_owned(),
            ),
            (
                "CLEANFLEET__BROKER__URL".to_owned(),
                "mqtt://broker:1884".to_owned(),
            ),
            (
                "CLEANFLEET__DATA_DIR".to_owned(),
                "/var/lib/cleanfleet".to_owned(),
            ),
            ("UNRELATED".to_owned(), "x".to_owned()),
        ];
        let config = Config::load(Some(&example_path()), env).unwrap();
        assert_eq!(config.api.listen.port(), 9999);
        assert_eq!(config.ingest.batch_max_messages, 7);
        assert_eq!(config.broker.url, "mqtt://broker:1884");
        assert_eq!(
            config.sqlite_path(),
            Path::new("/var/lib/cleanfleet/cleanfleet.sqlite")
        );
    }

    #[test]
    fn unknown_keys_are_errors_that_name_the_key() {
        let env = [("CLEANFLEET__INGEST__BATCH_SIZE".to_owned(), "7".to_owned())];
        let err = Config::load(None, env).unwrap_err().to_string();
        assert!(err.contains("batch_size"), "{err}");
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("c.toml");
        std::fs::write(&file, "[api]\nlisten = \"not an address\"\n").unwrap();
        let err = Config::load(Some(&file), []).unwrap_err().to_string();
        assert!(err.contains("listen") || err.contains("address"), "{err}");
    }

    #[test]
    fn every_simulator_scenario_is_a_valid_config() {
        let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("firmware-sim/scenarios");
        let mut checked = 0;
        for entry in std::fs::read_dir(&dir).unwrap() {
            let path = entry.unwrap().path();
            if path.extension().is_some_and(|e| e == "toml") {
                let config = Config::load(Some(&path), std::iter::empty())
                    .unwrap_or_else(|e| panic!("{}: {e}", path.display()));
                config.sim.validate().unwrap();
                checked += 1;
            }
        }
        assert!(checked >= 2, "{checked} scenarios");
    }
}
