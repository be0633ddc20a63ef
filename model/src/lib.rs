//! The cleanfleet domain model: what devices send (the MQTT message contract, `docs/mqtt.md`)
//! and the rules that decide whether a message is accepted.
//!
//! Everything here is pure: no I/O, no clock. Callers pass the receive time in.

mod message;
mod topic;
mod validate;

pub use message::{
    BinReading, DeviceState, DeviceStatus, Fix, FixBatch, InspectionSample, ToiletReading,
    WeighbridgeTicket, WorkState,
};
pub use topic::{DeviceKind, Stream, Topic, TOPIC_PREFIX};
pub use validate::{decode, Body, Decoded, Limits, RejectReason, Rejection};
