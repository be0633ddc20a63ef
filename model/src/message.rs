//! Payloads of contract v1. Field names carry their unit; every struct rejects unknown fields so
//! that a misspelt field is an error instead of silently missing data.

use jiff::Timestamp;
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

/// Which tools of a cleaning vehicle are working. Missing flags are off.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields, default)]
pub struct WorkState {
    /// Brush / sweep disc down.
    pub brush: bool,
    /// Vacuum fan on.
    pub vacuum: bool,
    /// Water pump on (flushing, washing).
    pub water_pump: bool,
    /// Spray bar on (sprinkling, dust suppression).
    pub spray: bool,
}

impl WorkState {
    pub fn any(&self) -> bool {
        self.brush || self.vacuum || self.water_pump || self.spray
    }
}

/// One GPS fix with the vehicle's work state at that instant.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct Fix {
    /// Device time of the fix.
    pub time: Timestamp,
    /// The device's own message counter; informative (idempotency uses device time).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub seq: Option<u64>,
    pub lat: f64,
    pub lon: f64,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub speed_kmh: Option<f64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub heading_deg: Option<f64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub hdop: Option<f64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub satellites: Option<u8>,
    #[serde(default)]
    pub work: WorkState,
    /// Water tank fill, 0..1.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub water_tank_ratio: Option<f64>,
    /// Hopper, box or on-board weighing load.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub load_kg: Option<f64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub odometer_m: Option<f64>,
    /// Cumulative lifter cycles of a collection truck.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub lifter_cycles: Option<u64>,
    /// SOS button of a crew wearable.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sos: Option<bool>,
}

/// Two fixes of one device time closer than this are one fix sent twice; farther apart, the
/// device reported two places at once and one of them is wrong.
pub const SAME_PLACE_M: f64 = 0.5;

/// Metres between two places (equirectangular: exact enough at the distances that decide
/// whether two reports are one place).
pub fn apart_m((lat_a, lon_a): (f64, f64), (lat_b, lon_b): (f64, f64)) -> f64 {
    const M_PER_DEG: f64 = 6_371_008.8 * std::f64::consts::PI / 180.0;
    let north_m = (lat_b - lat_a) * M_PER_DEG;
    let east_m = (lon_b - lon_a) * M_PER_DEG * ((lat_a + lat_b) / 2.0).to_radians().cos();
    north_m.hypot(east_m)
}

impl Fix {
    /// Metres between this fix and (`lat`, `lon`).
    pub fn apart_m(&self, lat: f64, lon: f64) -> f64 {
        apart_m((self.lat, self.lon), (lat, lon))
    }
}

/// Topic stream `fixes`: a batch of fixes from one vehicle or wearable.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct FixBatch {
    /// When present it must equal the topic's device id.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub device_id: Option<String>,
    pub fixes: Vec<Fix>,
}

/// Topic stream `reading` of a smart bin.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct BinReading {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub device_id: Option<String>,
    pub time: Timestamp,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub seq: Option<u64>,
    /// Fill level 0..1, as FIWARE `fillingLevel`.
    pub fill_ratio: f64,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub temperature_c: Option<f64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tilted: Option<bool>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub lid_open: Option<bool>,
    /// Battery charge 0..1.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub battery_ratio: Option<f64>,
}

/// Topic stream `reading` of a public toilet.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct ToiletReading {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub device_id: Option<String>,
    pub time: Timestamp,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub seq: Option<u64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub nh3_mg_m3: Option<f64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub h2s_mg_m3: Option<f64>,
    /// People inside now.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub occupancy: Option<u32>,
    /// Visitors since the previous reading.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub footfall: Option<u32>,
    /// Cumulative water meter.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub water_m3: Option<f64>,
    /// Cumulative power meter.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub power_kwh: Option<f64>,
}

/// Topic stream `ticket` of a transfer-station weighbridge.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct WeighbridgeTicket {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub device_id: Option<String>,
    /// Unique per weighbridge; the idempotency key.
    pub ticket_id: String,
    /// The weighed vehicle (its device id or plate).
    pub vehicle_id: String,
    pub time_in: Timestamp,
    pub time_out: Timestamp,
    pub gross_kg: f64,
    pub tare_kg: f64,
    pub net_kg: f64,
}

/// Topic stream `sample` of an inspector's scale: dust weighed from a known area.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct InspectionSample {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub device_id: Option<String>,
    /// Unique per scale; the idempotency key.
    pub sample_id: String,
    pub time: Timestamp,
    pub lat: f64,
    pub lon: f64,
    pub grams: f64,
    #[serde(default = "one_square_metre")]
    pub area_m2: f64,
    pub inspector: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub litter_count: Option<u32>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub photo_ref: Option<String>,
}

fn one_square_metre() -> f64 {
    1.0
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum DeviceState {
    Online,
    Offline,
}

impl DeviceState {
    pub fn as_str(self) -> &'static str {
        match self {
            DeviceState::Online => "online",
            DeviceState::Offline => "offline",
        }
    }
}

/// Topic stream `status`: the birth message (`online`) and the MQTT last will (`offline`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct DeviceStatus {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub device_id: Option<String>,
    pub state: DeviceState,
    /// Absent in a last will, which is written when the device connects.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub time: Option<Timestamp>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub firmware: Option<String>,
}
