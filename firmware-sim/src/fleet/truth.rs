//! Ground truth: what really happened in the simulation, before any GPS error or device fault,
//! to score what ingest and the API derive from the messages.

use std::io::{self, Write};

use cleanfleet_model::{DeviceKind, WorkState};
use jiff::Timestamp;
use serde::Serialize;

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
}

impl Truth {
    /// Writes the truth as JSON lines, one record per line with a `type` (`device`, `path`,
    /// `bin_fill`, `collection`, `offline`, `sos`, `sample`) and the `device_id`: devices first, then each
    /// kind of record in time order.
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
        out.flush()
    }
}
