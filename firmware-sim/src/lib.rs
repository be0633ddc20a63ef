//! Simulated cleanfleet devices that behave like firmware: cleaning vehicles and collection
//! trucks driving a road network, smart bins, public toilets, weighbridges, crew members'
//! wearables and inspectors' scales, publishing
//! contract-v1 messages (`docs/mqtt.md`) over real MQTT.
//!
//! The model ([`Fleet`]) is pure and deterministic: it steps in simulated time from a seed and
//! yields messages. [`run`] connects one MQTT client per device and publishes them, first
//! replaying [`SimConfig::backfill`] of history as fast as allowed, then in real time.

mod config;
mod drive;
mod error;
mod fleet;
mod load;
mod mqtt;

pub use config::{FaultConfig, FleetMix, SimConfig};
pub use error::SimError;
pub use fleet::{
    BinFault, BinFaultKind, BinFill, Collection, Content, DeepClean, DeviceInfo, DeviceTruth,
    Fleet, OfflinePeriod, OnSegment, PathPoint, SampleTruth, SimMessage, SosEvent, Truth, WorkPass,
    DEEP_CLEAN_WITHIN, SAMPLE_BASE_G, SAMPLE_CAP_H, SAMPLE_G_PER_HOUR, SOS_PER_HOUR,
};
pub use load::{
    load_device_id, load_device_ids, run_load, LoadConfig, LoadReport, LOAD_DEVICE_KIND,
};
pub use mqtt::{run, SimReport, FIRMWARE};

/// Adds the secrets of a `device_id:secret` file (`cleanfleet devices add` prints them) to
/// `secrets`, where a device has none yet: the application's own come first.
pub(crate) fn add_secrets_from(
    file: Option<&std::path::Path>,
    secrets: &mut std::collections::BTreeMap<String, String>,
) -> Result<(), SimError> {
    let Some(path) = file else {
        return Ok(());
    };
    let error = |detail: String| SimError::Secrets {
        path: path.to_owned(),
        detail,
    };
    let text = std::fs::read_to_string(path).map_err(|e| error(e.to_string()))?;
    let from_file = cleanfleet_identity::parse_secrets(&text).map_err(|e| error(e.to_string()))?;
    for (device, secret) in from_file {
        secrets.entry(device).or_insert(secret);
    }
    Ok(())
}
