//! The cleanfleet domain model: what devices send (the MQTT message contract, `docs/mqtt.md`)
//! and the rules that decide whether a message is accepted.
//!
//! Everything here is pure: no I/O, no clock. Callers pass the receive time in.

mod ids;
mod message;
mod topic;
mod validate;
mod work;

pub use ids::DeviceId;
pub use message::{
    apart_m, BinReading, DeviceState, DeviceStatus, Fix, FixBatch, InspectionSample, ToiletReading,
    WeighbridgeTicket, WorkState, SAME_PLACE_M,
};
pub use topic::{is_valid_device_id, DeviceKind, Stream, Topic, TOPIC_PREFIX};
pub use validate::{decode, Body, Decoded, Limits, RejectReason, Rejection};
pub use work::{InvalidReason, WorkType};

/// Coverage is computed in chunks of one device's fixes over one hour of device time.
pub const COVERAGE_CHUNK_MS: i64 = 3_600_000;
/// A chunk is matched with this much of the fixes before and after it as context, so a fix
/// landing this close to a chunk makes the chunk stale too.
pub const COVERAGE_CONTEXT_MS: i64 = 600_000;

/// Where time-dependent logic gets "now", so that tests can fix it.
pub trait Clock: Send + Sync + 'static {
    fn now(&self) -> jiff::Timestamp;
}

/// The system's wall clock.
#[derive(Debug, Clone, Copy, Default)]
pub struct SystemClock;

impl Clock for SystemClock {
    fn now(&self) -> jiff::Timestamp {
        jiff::Timestamp::now()
    }
}
