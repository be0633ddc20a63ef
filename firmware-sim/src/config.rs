use jiff::SignedDuration;
use serde::Deserialize;

use crate::SimError;

/// How many devices of each kind to simulate. The default is the demo fleet.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct FleetMix {
    pub sweepers: u32,
    pub washer_sweepers: u32,
    pub flushers: u32,
    pub sprinklers: u32,
    pub collection_trucks: u32,
    pub bins: u32,
    pub toilets: u32,
    pub weighbridges: u32,
}

impl Default for FleetMix {
    fn default() -> Self {
        FleetMix {
            sweepers: 2,
            washer_sweepers: 1,
            flushers: 1,
            sprinklers: 1,
            collection_trucks: 1,
            bins: 12,
            toilets: 1,
            weighbridges: 1,
        }
    }
}

impl FleetMix {
    pub fn total(&self) -> u64 {
        [
            self.sweepers,
            self.washer_sweepers,
            self.flushers,
            self.sprinklers,
            self.collection_trucks,
            self.bins,
            self.toilets,
            self.weighbridges,
        ]
        .iter()
        .map(|&n| u64::from(n))
        .sum()
    }
}

/// Settings of the simulator; deserializable as the `[sim]` section of a TOML config, where
/// every field is optional.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct SimConfig {
    /// Set by the application from its `[broker] url`, not from the `[sim]` section.
    #[serde(skip)]
    pub broker_host: String,
    #[serde(skip)]
    pub broker_port: u16,
    /// MQTT client ids are `{client_id_prefix}-{device_id}`.
    pub client_id_prefix: String,
    /// Seed of every random choice: the same seed, network and fleet give the same messages.
    pub seed: u64,
    pub fleet: FleetMix,
    /// Seconds between GPS fixes of a vehicle.
    pub fix_interval_s: f64,
    /// Fixes per MQTT message.
    pub batch_fixes: usize,
    /// Seconds between periodic readings of bins and toilets.
    pub reading_interval_s: f64,
    /// History to simulate before now (e.g. "2h"). Its messages are sent late, as devices
    /// that were offline would; then the simulation continues in real time.
    pub backfill: SignedDuration,
    /// How much faster than real time the backfill runs; 0 means as fast as possible.
    pub speedup: f64,
}

impl Default for SimConfig {
    fn default() -> Self {
        SimConfig {
            broker_host: "localhost".into(),
            broker_port: 1883,
            client_id_prefix: "sim".into(),
            seed: 1,
            fleet: FleetMix::default(),
            fix_interval_s: 1.0,
            batch_fixes: 10,
            reading_interval_s: 300.0,
            backfill: SignedDuration::from_hours(2),
            speedup: 0.0,
        }
    }
}

/// Most devices one simulator runs, each with its own MQTT connection.
const MAX_DEVICES: u64 = 10_000;
/// The contract's default `max_fixes_per_message`.
const MAX_BATCH_FIXES: usize = 3600;
/// The contract's default `max_age`: older data is rejected by ingest.
const MAX_BACKFILL: SignedDuration = SignedDuration::from_hours(24 * 30);

impl SimConfig {
    /// Checks every setting, naming the first bad one.
    pub fn validate(&self) -> Result<(), SimError> {
        let bad = |msg: String| Err(SimError::InvalidConfig(msg));
        if self.broker_host.trim().is_empty() {
            return bad("broker_host is empty".into());
        }
        if self.client_id_prefix.is_empty()
            || !self
                .client_id_prefix
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || matches!(c, '_' | '.' | '-'))
        {
            return bad(format!(
                "client_id_prefix {:?} must be 1 or more of A-Z a-z 0-9 _ . -",
                self.client_id_prefix
            ));
        }
        if !(self.fix_interval_s.is_finite() && (0.1..=3600.0).contains(&self.fix_interval_s)) {
            return bad(format!(
                "fix_interval_s {} must be 0.1 to 3600",
                self.fix_interval_s
            ));
        }
        if !(1..=MAX_BATCH_FIXES).contains(&self.batch_fixes) {
            return bad(format!(
                "batch_fixes {} must be 1 to {MAX_BATCH_FIXES}",
                self.batch_fixes
            ));
        }
        if !(self.reading_interval_s.is_finite()
            && (1.0..=86_400.0).contains(&self.reading_interval_s))
        {
            return bad(format!(
                "reading_interval_s {} must be 1 to 86400",
                self.reading_interval_s
            ));
        }
        if self.backfill.is_negative() || self.backfill > MAX_BACKFILL {
            return bad(format!(
                "backfill {:#} must be 0 to 30 days (older data is rejected by ingest)",
                self.backfill
            ));
        }
        // At or below real time the backfill would never catch up with the clock.
        if !(self.speedup == 0.0 || (self.speedup.is_finite() && self.speedup > 1.0)) {
            return bad(format!(
                "speedup {} must be 0 (as fast as possible) or above 1",
                self.speedup
            ));
        }
        let devices = self.fleet.total();
        if devices == 0 || devices > MAX_DEVICES {
            return bad(format!(
                "the fleet has {devices} devices; it must have 1 to {MAX_DEVICES}"
            ));
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(Deserialize)]
    #[serde(deny_unknown_fields)]
    struct File {
        sim: SimConfig,
    }

    #[test]
    fn defaults_are_the_demo_fleet_and_valid() {
        let c = SimConfig::default();
        c.validate().unwrap();
        assert_eq!(c.fleet.total(), 2 + 1 + 1 + 1 + 1 + 12 + 1 + 1);
        assert_eq!(c.batch_fixes, 10);
        assert_eq!(c.client_id_prefix, "sim");
    }

    #[test]
    fn parses_a_partial_toml_section() {
        let f: File = toml::from_str(
            r#"
            [sim]
            seed = 7
            backfill = "30m"
            speedup = 60
            [sim.fleet]
            bins = 40
            "#,
        )
        .unwrap();
        let c = f.sim;
        assert_eq!(c.seed, 7);
        assert_eq!(c.backfill, SignedDuration::from_mins(30));
        assert_eq!(c.speedup, 60.0);
        assert_eq!(c.fleet.bins, 40);
        assert_eq!(c.fleet.sweepers, 2, "unset counts keep the demo default");
        c.validate().unwrap();

        let iso: File = toml::from_str("[sim]\nbackfill = \"PT2H\"").unwrap();
        assert_eq!(iso.sim.backfill, SignedDuration::from_hours(2));
    }

    #[test]
    fn rejects_unknown_fields() {
        let err = toml::from_str::<File>("[sim]\nbroker = \"x\"")
            .err()
            .unwrap();
        assert!(err.to_string().contains("unknown field `broker`"), "{err}");
        let err = toml::from_str::<File>("[sim.fleet]\ncars = 1")
            .err()
            .unwrap();
        assert!(err.to_string().contains("unknown field `cars`"), "{err}");
    }

    #[test]
    fn validation_names_the_bad_setting() {
        let cases: Vec<(SimConfig, &str)> = vec![
            (
                SimConfig {
                    broker_host: " ".into(),
                    ..Default::default()
                },
                "broker_host",
            ),
            (
                SimConfig {
                    client_id_prefix: "a/b".into(),
                    ..Default::default()
                },
                "client_id_prefix",
            ),
            (
                SimConfig {
                    fix_interval_s: 0.0,
                    ..Default::default()
                },
                "fix_interval_s",
            ),
            (
                SimConfig {
                    fix_interval_s: f64::NAN,
                    ..Default::default()
                },
                "fix_interval_s",
            ),
            (
                SimConfig {
                    batch_fixes: 0,
                    ..Default::default()
                },
                "batch_fixes",
            ),
            (
                SimConfig {
                    batch_fixes: 3601,
                    ..Default::default()
                },
                "batch_fixes",
            ),
            (
                SimConfig {
                    reading_interval_s: 0.5,
                    ..Default::default()
                },
                "reading_interval_s",
            ),
            (
                SimConfig {
                    backfill: SignedDuration::from_hours(-1),
                    ..Default::default()
                },
                "backfill",
            ),
            (
                SimConfig {
                    backfill: SignedDuration::from_hours(24 * 31),
                    ..Default::default()
                },
                "backfill",
            ),
            (
                SimConfig {
                    speedup: 0.5,
                    ..Default::default()
                },
                "speedup",
            ),
            (
                SimConfig {
                    speedup: f64::INFINITY,
                    ..Default::default()
                },
                "speedup",
            ),
            (
                SimConfig {
                    fleet: FleetMix {
                        sweepers: 0,
                        washer_sweepers: 0,
                        flushers: 0,
                        sprinklers: 0,
                        collection_trucks: 0,
                        bins: 0,
                        toilets: 0,
                        weighbridges: 0,
                    },
                    ..Default::default()
                },
                "devices",
            ),
        ];
        for (config, field) in cases {
            let err = config.validate().unwrap_err().to_string();
            assert!(err.contains(field), "{err:?} should name {field}");
        }
    }
}
