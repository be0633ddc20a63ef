use std::collections::BTreeMap;
use std::path::PathBuf;

use cleanfleet_model::DeviceKind;
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
    /// Crew members' wearables (`cw-01`, ...), walking the streets and reporting a fix every
    /// 5 s, now and then with an SOS. Default 0.
    pub wearables: u32,
    /// Inspectors' scales (`sc-01`, ...): every 20–40 minutes a road inspection, five 1 m²
    /// samples along one street a few minutes apart. Default 2.
    pub scales: u32,
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
            wearables: 0,
            scales: 2,
        }
    }
}

impl FleetMix {
    /// No devices at all: the base for a fleet of only the kinds a test or scenario names.
    pub const NONE: FleetMix = FleetMix {
        sweepers: 0,
        washer_sweepers: 0,
        flushers: 0,
        sprinklers: 0,
        collection_trucks: 0,
        bins: 0,
        toilets: 0,
        weighbridges: 0,
        wearables: 0,
        scales: 0,
    };

    /// `vehicles` street cleaners only, as the benchmarks drive them: half sweepers, a
    /// quarter washer-sweepers, the rest flushers.
    pub fn street_cleaners(vehicles: u32) -> FleetMix {
        FleetMix {
            sweepers: vehicles / 2,
            washer_sweepers: vehicles / 4,
            flushers: vehicles - vehicles / 2 - vehicles / 4,
            ..FleetMix::NONE
        }
    }

    /// The kinds in the order the fleet registers its devices.
    pub const KINDS: [DeviceKind; 10] = [
        DeviceKind::Sweeper,
        DeviceKind::WasherSweeper,
        DeviceKind::Flusher,
        DeviceKind::Sprinkler,
        DeviceKind::CollectionTruck,
        DeviceKind::Bin,
        DeviceKind::Toilet,
        DeviceKind::Weighbridge,
        DeviceKind::Wearable,
        DeviceKind::Scale,
    ];

    pub fn count(&self, kind: DeviceKind) -> u32 {
        match kind {
            DeviceKind::Sweeper => self.sweepers,
            DeviceKind::WasherSweeper => self.washer_sweepers,
            DeviceKind::Flusher => self.flushers,
            DeviceKind::Sprinkler => self.sprinklers,
            DeviceKind::CollectionTruck => self.collection_trucks,
            DeviceKind::Bin => self.bins,
            DeviceKind::Toilet => self.toilets,
            DeviceKind::Weighbridge => self.weighbridges,
            DeviceKind::Wearable => self.wearables,
            DeviceKind::Scale => self.scales,
        }
    }

    /// The ids of the fleet's devices of `kind`: `sw-01`, `sw-02`, ... (`bin-001`, ...),
    /// zero-padded to at least the kind's width.
    pub fn device_ids(&self, kind: DeviceKind) -> impl Iterator<Item = String> {
        let (prefix, least_width) = match kind {
            DeviceKind::Sweeper => ("sw", 2),
            DeviceKind::WasherSweeper => ("ws", 2),
            DeviceKind::Flusher => ("fl", 2),
            DeviceKind::Sprinkler => ("sp", 2),
            DeviceKind::CollectionTruck => ("ct", 2),
            DeviceKind::Bin => ("bin", 3),
            DeviceKind::Toilet => ("wc", 2),
            DeviceKind::Weighbridge => ("wb", 2),
            DeviceKind::Wearable => ("cw", 2),
            DeviceKind::Scale => ("sc", 2),
        };
        let count = self.count(kind);
        let width = least_width.max(count.to_string().len());
        (1..=count).map(move |n| format!("{prefix}-{n:0width$}"))
    }

    /// Every device of the fleet with its kind, in registration order: what a city would
    /// issue credentials for.
    pub fn devices(&self) -> Vec<(DeviceKind, String)> {
        Self::KINDS
            .into_iter()
            .flat_map(|kind| self.device_ids(kind).map(move |id| (kind, id)))
            .collect()
    }

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
            self.wearables,
            self.scales,
        ]
        .iter()
        .map(|&n| u64::from(n))
        .sum()
    }
}

/// Imperfections of real devices, applied to what they send and never to the ground truth
/// ([`crate::Truth`]). Every fault is drawn from the seed, on streams of its own, so the same
/// seed gives the same faults. The defaults are a clean fleet with a 3 m GPS error.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct FaultConfig {
    /// GPS error of a fix, per axis (normal σ), in metres. Default 3.
    pub gps_sigma_m: f64,
    /// Probability per fix of a multipath jump of 20–60 m in a random direction, reported
    /// with a poor HDOP (6–15) and few satellites (3–6). Default 0.
    pub multipath_jump_rate: f64,
    /// Probability that a fix batch message is sent twice (a retransmit after a lost PUBACK).
    /// Default 0.
    pub duplicate_rate: f64,
    /// Cellular drop-outs of a vehicle per hour online. While offline its messages are
    /// buffered; on reconnecting it sends them late and in shuffled order. Default 0.
    pub offline_rate_per_hour: f64,
    /// How long each drop-out lasts, in seconds. Default 600.
    pub offline_duration_s: f64,
    /// Largest absolute clock error of a device, in seconds: each device gets a constant skew,
    /// uniform in ±`clock_skew_s`, added to the times it reports. Default 0.
    pub clock_skew_s: f64,
    /// Episodes per bin and day of a fill sensor stuck at its last value for 6–48 h.
    /// Default 0.
    pub bin_stuck_per_day: f64,
    /// Times per bin and day a bin is knocked over: it reports `tilted` and a meaningless
    /// fill for 1–6 h, until the crew rights it. Default 0.
    pub bin_tilt_per_day: f64,
    /// Share of bins whose battery starts low (3–15%). Default 0.
    pub bin_low_battery_ratio: f64,
}

impl Default for FaultConfig {
    fn default() -> Self {
        FaultConfig {
            gps_sigma_m: 3.0,
            multipath_jump_rate: 0.0,
            duplicate_rate: 0.0,
            offline_rate_per_hour: 0.0,
            offline_duration_s: 600.0,
            clock_skew_s: 0.0,
            bin_stuck_per_day: 0.0,
            bin_tilt_per_day: 0.0,
            bin_low_battery_ratio: 0.0,
        }
    }
}

/// Ingest rejects device times more than `max_future_s` (300 s by default) ahead of arrival.
const MAX_CLOCK_SKEW_S: f64 = 300.0;

impl FaultConfig {
    /// Checks every setting, naming the first bad one.
    pub fn validate(&self) -> Result<(), SimError> {
        let bad = |msg: String| Err(SimError::InvalidConfig(msg));
        let within = |v: f64, low: f64, high: f64| v.is_finite() && (low..=high).contains(&v);
        if !within(self.gps_sigma_m, 0.0, 100.0) {
            return bad(format!(
                "faults.gps_sigma_m {} must be 0 to 100",
                self.gps_sigma_m
            ));
        }
        for (name, rate) in [
            ("multipath_jump_rate", self.multipath_jump_rate),
            ("duplicate_rate", self.duplicate_rate),
            ("bin_low_battery_ratio", self.bin_low_battery_ratio),
        ] {
            if !within(rate, 0.0, 1.0) {
                return bad(format!("faults.{name} {rate} must be 0 to 1"));
            }
        }
        if !within(self.offline_rate_per_hour, 0.0, 3600.0) {
            return bad(format!(
                "faults.offline_rate_per_hour {} must be 0 to 3600",
                self.offline_rate_per_hour
            ));
        }
        for (name, rate) in [
            ("bin_stuck_per_day", self.bin_stuck_per_day),
            ("bin_tilt_per_day", self.bin_tilt_per_day),
        ] {
            if !within(rate, 0.0, 1440.0) {
                return bad(format!("faults.{name} {rate} must be 0 to 1440"));
            }
        }
        if !within(self.offline_duration_s, 1.0, 86_400.0) {
            return bad(format!(
                "faults.offline_duration_s {} must be 1 to 86400",
                self.offline_duration_s
            ));
        }
        if !within(self.clock_skew_s, 0.0, MAX_CLOCK_SKEW_S) {
            return bad(format!(
                "faults.clock_skew_s {} must be 0 to {MAX_CLOCK_SKEW_S} (ingest rejects times further ahead)",
                self.clock_skew_s
            ));
        }
        Ok(())
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
    /// The simulated devices' secrets, one `device_id:secret` per line as `cleanfleet
    /// devices add` prints them. Each device logs in as itself (username and client id its
    /// id) with its own secret; a device without one connects without a login, which only a
    /// broker that allows anonymous access takes. Default none.
    pub credentials_file: Option<PathBuf>,
    /// Secrets handed over by the application (the demo issues its fleet's own), before the
    /// file's.
    #[serde(skip)]
    pub secrets: BTreeMap<String, String>,
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
    /// GPS noise and device faults; the default is a clean fleet.
    pub faults: FaultConfig,
    /// Where [`crate::run`] writes the ground truth ([`crate::Truth`], JSON lines) on
    /// shutdown; `None` records none.
    pub truth_path: Option<PathBuf>,
}

impl Default for SimConfig {
    fn default() -> Self {
        SimConfig {
            broker_host: "localhost".into(),
            broker_port: 1883,
            credentials_file: None,
            secrets: BTreeMap::new(),
            seed: 1,
            fleet: FleetMix::default(),
            fix_interval_s: 1.0,
            batch_fixes: 10,
            reading_interval_s: 300.0,
            backfill: SignedDuration::from_hours(2),
            speedup: 0.0,
            faults: FaultConfig::default(),
            truth_path: None,
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
        self.faults.validate()?;
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
        assert_eq!(c.fleet.total(), 2 + 1 + 1 + 1 + 1 + 12 + 1 + 1 + 2);
        assert_eq!(c.batch_fixes, 10);
        assert_eq!(c.credentials_file, None);
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
    fn faults_default_to_a_clean_fleet_and_parse() {
        let c = SimConfig::default();
        assert_eq!(c.faults.gps_sigma_m, 3.0);
        assert_eq!(c.faults.multipath_jump_rate, 0.0);
        assert_eq!(c.faults.duplicate_rate, 0.0);
        assert_eq!(c.faults.offline_rate_per_hour, 0.0);
        assert_eq!(c.faults.clock_skew_s, 0.0);
        assert_eq!(c.truth_path, None);

        let f: File = toml::from_str(
            r#"
            [sim]
            truth_path = "/tmp/truth.jsonl"
            [sim.faults]
            duplicate_rate = 0.1
            clock_skew_s = 5
            "#,
        )
        .unwrap();
        assert_eq!(f.sim.faults.duplicate_rate, 0.1);
        assert_eq!(f.sim.faults.clock_skew_s, 5.0);
        assert_eq!(
            f.sim.faults.gps_sigma_m, 3.0,
            "unset faults keep the default"
        );
        assert_eq!(f.sim.truth_path, Some(PathBuf::from("/tmp/truth.jsonl")));
        f.sim.validate().unwrap();

        let err = toml::from_str::<File>("[sim.faults]\njitter = 1")
            .err()
            .unwrap();
        assert!(err.to_string().contains("unknown field `jitter`"), "{err}");
    }

    #[test]
    fn noisy_day_scenario_parses() {
        let f: File = toml::from_str(include_str!("../scenarios/noisy-day.toml")).unwrap();
        let c = f.sim;
        c.validate().unwrap();
        assert_eq!(c.seed, 2026);
        assert_eq!(c.backfill, SignedDuration::from_hours(24));
        assert_eq!(c.fleet.total(), 85);
        assert_eq!((c.fleet.wearables, c.fleet.scales), (6, 2));
        assert_eq!(
            c.faults,
            FaultConfig {
                gps_sigma_m: 5.0,
                multipath_jump_rate: 0.01,
                duplicate_rate: 0.05,
                offline_rate_per_hour: 0.5,
                offline_duration_s: 900.0,
                clock_skew_s: 20.0,
                bin_stuck_per_day: 0.2,
                bin_tilt_per_day: 0.1,
                bin_low_battery_ratio: 0.05,
            }
        );
        assert_eq!(c.truth_path, Some(PathBuf::from("noisy-day.truth.jsonl")));
    }

    #[test]
    fn validation_names_the_bad_setting() {
        let faults = |faults: FaultConfig| SimConfig {
            faults,
            ..Default::default()
        };
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
                faults(FaultConfig {
                    gps_sigma_m: -1.0,
                    ..Default::default()
                }),
                "gps_sigma_m",
            ),
            (
                faults(FaultConfig {
                    multipath_jump_rate: 1.5,
                    ..Default::default()
                }),
                "multipath_jump_rate",
            ),
            (
                faults(FaultConfig {
                    duplicate_rate: f64::NAN,
                    ..Default::default()
                }),
                "duplicate_rate",
            ),
            (
                faults(FaultConfig {
                    offline_rate_per_hour: -0.1,
                    ..Default::default()
                }),
                "offline_rate_per_hour",
            ),
            (
                faults(FaultConfig {
                    offline_duration_s: 0.0,
                    ..Default::default()
                }),
                "offline_duration_s",
            ),
            (
                faults(FaultConfig {
                    clock_skew_s: 301.0,
                    ..Default::default()
                }),
                "clock_skew_s",
            ),
            (
                SimConfig {
                    fleet: FleetMix::NONE,
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
