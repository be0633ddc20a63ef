//! Ground truth: what really happened in the simulation, before any GPS error or device fault,
//! to score what ingest and the API derive from the messages.

use std::io::{self, Write};

use cleanfleet_model::{DeviceKind, WorkState};
use jiff::{SignedDuration, Timestamp};
use serde::Serialize;

/// DOMAIN.md's default deep-cleaning recipe: a sweep at most this long after a flush.
pub const DEEP_CLEAN_WITHIN: SignedDuration = SignedDuration::from_hours(2);

/// What really happened, recorded from [`crate::Fleet::record_truth`] on.
///
/// Device times in messages are skewed by each device's clock error; times here are true
/// simulated times. `seq` joins a path point to the fix the vehicle sent for it.
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct Truth {
    /// Every device, in [`crate::Fleet::devices`] order.
    pub devices: Vec<DeviceTruth>,
    /// One point per vehicle and tick, in time order.
    pub path: Vec<PathPoint>,
    /// Each bin's fill whenever it changed (sampled each minute and after a collection).
    pub bin_fill: Vec<BinFill>,
    pub collections: Vec<Collection>,
    /// Finished cellular drop-outs of vehicles.
    pub offline: Vec<OfflinePeriod>,
    /// SOS presses of wearables.
    pub sos: Vec<SosEvent>,
    /// Dust samples of inspectors' scales.
    pub samples: Vec<SampleTruth>,
    /// Continuous traversals of one segment in one direction with the tools on, in order of
    /// their end; see [`WorkPass`].
    pub passes: Vec<WorkPass>,
    /// Bin sensor faults, in order of their start.
    pub bin_faults: Vec<BinFault>,
}

/// A device and its constant clock error.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct DeviceTruth {
    pub device_id: String,
    pub kind: DeviceKind,
    /// Added to every time the device reports.
    pub clock_skew_s: f64,
}

/// Where a vehicle really was at a tick, or a wearable at a fix.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct PathPoint {
    /// Index in [`Truth::devices`].
    pub device: usize,
    /// The `seq` of the fix sent for this point.
    pub seq: u64,
    pub time: Timestamp,
    pub lon: f64,
    pub lat: f64,
    pub speed_kmh: f64,
    pub work: WorkState,
    /// The fix sent for this point suffered a multipath jump.
    pub multipath: bool,
    /// The road a vehicle was on; `None` for a wearable (crews walk the pavements).
    #[serde(flatten, skip_serializing_if = "Option::is_none")]
    pub on: Option<OnSegment>,
}

/// A place on the road network.
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
pub struct OnSegment {
    /// [`cleanfleet_roads::RoadNetwork::segments`] index.
    pub segment: u32,
    /// Driving from the segment's `from_node` to its `to_node`.
    pub forward: bool,
    /// Distance from the start of the segment in the driving direction.
    pub offset_m: f64,
}

/// A vehicle really worked along `segment` in one direction from `from_m` to `to_m`
/// (distances from the start in the driving direction), without stopping its tools.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct WorkPass {
    /// The vehicle; its kind says the work (sweep, wash-sweep, flush, sprinkle).
    pub device: usize,
    pub segment: u32,
    pub forward: bool,
    pub from_m: f64,
    pub to_m: f64,
    pub start: Timestamp,
    pub end: Timestamp,
    /// Worked faster than the tool's band: the pass does not count (DOMAIN.md).
    pub overspeed: bool,
}

/// A stretch of a segment deep-cleaned by the default recipe: a flusher's pass, then a
/// sweeper's or washer-sweeper's pass in the same direction within [`DEEP_CLEAN_WITHIN`].
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct DeepClean {
    pub segment: u32,
    pub forward: bool,
    /// The part both passes covered.
    pub from_m: f64,
    pub to_m: f64,
    pub flusher: usize,
    pub sweeper: usize,
    pub flushed_until: Timestamp,
    pub swept_from: Timestamp,
}

/// A bin's sensor misbehaved from `from` until `until`.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct BinFault {
    pub device: usize,
    pub fault: BinFaultKind,
    pub from: Timestamp,
    /// `None` while it lasts (a low battery lasts).
    pub until: Option<Timestamp>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum BinFaultKind {
    /// The fill sensor repeats its last value.
    StuckSensor,
    /// The bin was knocked over: `tilted` is reported and the fill reading is meaningless.
    Tilt,
    /// The battery started low (reported below 0.15).
    LowBattery,
}

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct BinFill {
    pub device: usize,
    pub time: Timestamp,
    pub fill_ratio: f64,
}

/// A collection truck emptied a bin.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Collection {
    /// The bin.
    pub device: usize,
    /// The truck.
    pub truck: usize,
    pub time: Timestamp,
    /// Fill before the collection.
    pub fill_ratio: f64,
    /// Fill left behind.
    pub residue_ratio: f64,
}

/// A vehicle could not send from `from` until `until`.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct OfflinePeriod {
    pub device: usize,
    pub from: Timestamp,
    pub until: Timestamp,
}

/// A crew member pressed the SOS button of a wearable: the fix with `seq` carries `sos`.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct SosEvent {
    pub device: usize,
    pub seq: u64,
    pub time: Timestamp,
    pub lon: f64,
    pub lat: f64,
}

/// A dust sample an inspector's scale took.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct SampleTruth {
    /// The scale.
    pub device: usize,
    pub sample_id: String,
    pub time: Timestamp,
    /// The road segment sampled ([`cleanfleet_roads::RoadNetwork::segments`] index).
    pub segment: u32,
    /// Where it was taken, as reported.
    pub lon: f64,
    pub lat: f64,
    pub grams: f64,
    /// When a working cleaning vehicle was last on the segment; `None` if not since the
    /// simulation started.
    pub last_cleaned: Option<Timestamp>,
}

/// One line of the JSON-lines form: the record with `type` and the device's id.
#[derive(Serialize)]
#[serde(tag = "type", rename_all = "snake_case")]
enum Line<'a> {
    Device {
        #[serde(flatten)]
        device: &'a DeviceTruth,
    },
    Path {
        device_id: &'a str,
        #[serde(flatten)]
        point: &'a PathPoint,
    },
    BinFill {
        device_id: &'a str,
        #[serde(flatten)]
        fill: &'a BinFill,
    },
    Collection {
        device_id: &'a str,
        truck_id: &'a str,
        #[serde(flatten)]
        collection: &'a Collection,
    },
    Offline {
        device_id: &'a str,
        #[serde(flatten)]
        period: &'a OfflinePeriod,
    },
    Sos {
        device_id: &'a str,
        #[serde(flatten)]
        sos: &'a SosEvent,
    },
    Sample {
        device_id: &'a str,
        #[serde(flatten)]
        sample: &'a SampleTruth,
    },
    Pass {
        device_id: &'a str,
        kind: DeviceKind,
        #[serde(flatten)]
        pass: &'a WorkPass,
    },
    DeepClean {
        /// The flusher's.
        device_id: &'a str,
        sweeper_id: &'a str,
        #[serde(flatten)]
        deep: &'a DeepClean,
    },
    BinFault {
        device_id: &'a str,
        #[serde(flatten)]
        fault: &'a BinFault,
    },
}

impl Truth {
    /// Every stretch deep-cleaned by the default recipe (see [`DeepClean`]), by segment,
    /// direction and time.
    pub fn deep_cleaned(&self) -> Vec<DeepClean> {
        let kind = |p: &WorkPass| self.devices[p.device].kind;
        let valid = |p: &&WorkPass| !p.overspeed;
        let mut flushes: Vec<&WorkPass> = self
            .passes
            .iter()
            .filter(valid)
            .filter(|p| kind(p) == DeviceKind::Flusher)
            .collect();
        let mut sweeps: Vec<&WorkPass> = self
            .passes
            .iter()
            .filter(valid)
            .filter(|p| matches!(kind(p), DeviceKind::Sweeper | DeviceKind::WasherSweeper))
            .collect();
        let key = |p: &&WorkPass| (p.segment, p.forward, p.start);
        flushes.sort_by_key(key);
        sweeps.sort_by_key(key);
        let mut out = Vec::new();
        for flush in &flushes {
            let same_side =
                sweeps.partition_point(|s| (s.segment, s.forward) < (flush.segment, flush.forward));
            for sweep in sweeps[same_side..]
                .iter()
                .take_while(|s| (s.segment, s.forward) == (flush.segment, flush.forward))
            {
                let soon_after = sweep.start >= flush.start
                    && sweep.start.duration_since(flush.end) <= DEEP_CLEAN_WITHIN;
                let (from_m, to_m) = (flush.from_m.max(sweep.from_m), flush.to_m.min(sweep.to_m));
                if soon_after && to_m > from_m {
                    out.push(DeepClean {
                        segment: flush.segment,
                        forward: flush.forward,
                        from_m,
                        to_m,
                        flusher: flush.device,
                        sweeper: sweep.device,
                        flushed_until: flush.end,
                        swept_from: sweep.start,
                    });
                }
            }
        }
        out
    }

    /// Writes the truth as JSON lines, one record per line with a `type` (`device`, `path`,
    /// `bin_fill`, `collection`, `offline`, `sos`, `sample`, `pass`, `deep_clean`,
    /// `bin_fault`) and the `device_id`: devices first, then each kind of record in time
    /// order.
    pub fn write_json_lines<W: Write>(&self, mut out: W) -> io::Result<()> {
        let id = |device: usize| self.devices[device].device_id.as_str();
        let mut line = |record: Line| -> io::Result<()> {
            serde_json::to_writer(&mut out, &record)?;
            out.write_all(b"\n")
        };
        for device in &self.devices {
            line(Line::Device { device })?;
        }
        for point in &self.path {
            line(Line::Path {
                device_id: id(point.device),
                point,
            })?;
        }
        for fill in &self.bin_fill {
            line(Line::BinFill {
                device_id: id(fill.device),
                fill,
            })?;
        }
        for collection in &self.collections {
            line(Line::Collection {
                device_id: id(collection.device),
                truck_id: id(collection.truck),
                collection,
            })?;
        }
        for period in &self.offline {
            line(Line::Offline {
                device_id: id(period.device),
                period,
            })?;
        }
        for sos in &self.sos {
            line(Line::Sos {
                device_id: id(sos.device),
                sos,
            })?;
        }
        for sample in &self.samples {
            line(Line::Sample {
                device_id: id(sample.device),
                sample,
            })?;
        }
        for pass in &self.passes {
            line(Line::Pass {
                device_id: id(pass.device),
                kind: self.devices[pass.device].kind,
                pass,
            })?;
        }
        for deep in &self.deep_cleaned() {
            line(Line::DeepClean {
                device_id: id(deep.flusher),
                sweeper_id: id(deep.sweeper),
                deep,
            })?;
        }
        for fault in &self.bin_faults {
            line(Line::BinFault {
                device_id: id(fault.device),
                fault,
            })?;
        }
        out.flush()
    }
}
