//! Decoding and validation of one MQTT message. A message is accepted or rejected as a whole:
//! a rejected message is kept raw in the dead-letter store, so nothing in it is lost, and no
//! half of it is stored.

use std::fmt;

use jiff::{SignedDuration, Timestamp};
use serde::de::DeserializeOwned;

use crate::message::*;
use crate::topic::{is_valid_device_id, DeviceKind, Stream, TOPIC_PREFIX};

/// Why a message was rejected. The label is a bounded Prometheus label value and a stable API
/// string: never rename one.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum RejectReason {
    OversizePayload,
    UnknownTopic,
    UnknownKind,
    InvalidDeviceId,
    UnknownStream,
    MalformedJson,
    NonFiniteNumber,
    MissingField,
    UnknownField,
    WrongType,
    DeviceIdMismatch,
    OutOfRange,
    EmptyBatch,
    TooManyFixes,
    TimestampInFuture,
    TimestampTooOld,
    InconsistentValues,
    /// A fix at the same device time as another (in the batch, or stored) at another place.
    ConflictingFix,
}

impl RejectReason {
    pub const ALL: [RejectReason; 18] = [
        RejectReason::OversizePayload,
        RejectReason::UnknownTopic,
        RejectReason::UnknownKind,
        RejectReason::InvalidDeviceId,
        RejectReason::UnknownStream,
        RejectReason::MalformedJson,
        RejectReason::NonFiniteNumber,
        RejectReason::MissingField,
        RejectReason::UnknownField,
        RejectReason::WrongType,
        RejectReason::DeviceIdMismatch,
        RejectReason::OutOfRange,
        RejectReason::EmptyBatch,
        RejectReason::TooManyFixes,
        RejectReason::TimestampInFuture,
        RejectReason::TimestampTooOld,
        RejectReason::InconsistentValues,
        RejectReason::ConflictingFix,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            RejectReason::OversizePayload => "oversize_payload",
            RejectReason::UnknownTopic => "unknown_topic",
            RejectReason::UnknownKind => "unknown_kind",
            RejectReason::InvalidDeviceId => "invalid_device_id",
            RejectReason::UnknownStream => "unknown_stream",
            RejectReason::MalformedJson => "malformed_json",
            RejectReason::NonFiniteNumber => "non_finite_number",
            RejectReason::MissingField => "missing_field",
            RejectReason::UnknownField => "unknown_field",
            RejectReason::WrongType => "wrong_type",
            RejectReason::DeviceIdMismatch => "device_id_mismatch",
            RejectReason::OutOfRange => "out_of_range",
            RejectReason::EmptyBatch => "empty_batch",
            RejectReason::TooManyFixes => "too_many_fixes",
            RejectReason::TimestampInFuture => "timestamp_in_future",
            RejectReason::TimestampTooOld => "timestamp_too_old",
            RejectReason::InconsistentValues => "inconsistent_values",
            RejectReason::ConflictingFix => "conflicting_fix",
        }
    }

    pub fn parse(s: &str) -> Option<RejectReason> {
        RejectReason::ALL.into_iter().find(|r| r.as_str() == s)
    }
}

impl fmt::Display for RejectReason {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A rejected message: the reason and a sentence naming the offending field.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
#[error("{reason}: {detail}")]
pub struct Rejection {
    pub reason: RejectReason,
    pub detail: String,
}

fn reject(reason: RejectReason, detail: impl Into<String>) -> Rejection {
    Rejection {
        reason,
        detail: detail.into(),
    }
}

/// Acceptance limits. Defaults are documented in `docs/mqtt.md`.
#[derive(Debug, Clone, PartialEq)]
pub struct Limits {
    pub max_payload_bytes: usize,
    pub max_fixes_per_message: usize,
    /// How far ahead of the receive time a device clock may be.
    pub max_future: SignedDuration,
    /// How old buffered data may be when it finally arrives.
    pub max_age: SignedDuration,
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            max_payload_bytes: 256 * 1024,
            max_fixes_per_message: 3600,
            max_future: SignedDuration::from_mins(5),
            max_age: SignedDuration::from_hours(24 * 30),
        }
    }
}

/// The content of an accepted message.
#[derive(Debug, Clone, PartialEq)]
pub enum Body {
    Fixes(Vec<Fix>),
    Bin(BinReading),
    Toilet(ToiletReading),
    Ticket(WeighbridgeTicket),
    Sample(InspectionSample),
    Status(DeviceStatus),
}

impl Body {
    pub fn stream(&self) -> Stream {
        match self {
            Body::Fixes(_) => Stream::Fixes,
            Body::Bin(_) | Body::Toilet(_) => Stream::Reading,
            Body::Ticket(_) => Stream::Ticket,
            Body::Sample(_) => Stream::Sample,
            Body::Status(_) => Stream::Status,
        }
    }
}

/// An accepted message.
#[derive(Debug, Clone, PartialEq)]
pub struct Decoded {
    pub kind: DeviceKind,
    pub device_id: String,
    pub body: Body,
}

/// Decode and validate one message received at `received`.
pub fn decode(
    topic: &str,
    payload: &[u8],
    received: Timestamp,
    limits: &Limits,
) -> Result<Decoded, Rejection> {
    if payload.len() > limits.max_payload_bytes {
        return Err(reject(
            RejectReason::OversizePayload,
            format!(
                "payload is {} bytes; the limit is {}",
                payload.len(),
                limits.max_payload_bytes
            ),
        ));
    }
    let (kind, device_id, stream) = parse_topic(topic)?;
    let window = TimeWindow { received, limits };
    let (body, claimed_id) = match stream {
        Stream::Status => {
            let s: DeviceStatus = parse_json(payload)?;
            if let Some(t) = s.time {
                window.check("time", t)?;
            }
            let id = s.device_id.clone();
            (Body::Status(s), id)
        }
        Stream::Fixes => {
            let b: FixBatch = parse_json(payload)?;
            check_fixes(&b.fixes, &window)?;
            (Body::Fixes(b.fixes), b.device_id)
        }
        Stream::Reading if kind == DeviceKind::Bin => {
            let r: BinReading = parse_json(payload)?;
            check_bin(&r, &window)?;
            let id = r.device_id.clone();
            (Body::Bin(r), id)
        }
        Stream::Reading => {
            let r: ToiletReading = parse_json(payload)?;
            check_toilet(&r, &window)?;
            let id = r.device_id.clone();
            (Body::Toilet(r), id)
        }
        Stream::Ticket => {
            let t: WeighbridgeTicket = parse_json(payload)?;
            check_ticket(&t, &window)?;
            let id = t.device_id.clone();
            (Body::Ticket(t), id)
        }
        Stream::Sample => {
            let s: InspectionSample = parse_json(payload)?;
            check_sample(&s, &window)?;
            let id = s.device_id.clone();
            (Body::Sample(s), id)
        }
    };
    if let Some(claimed) = claimed_id {
        if claimed != device_id {
            return Err(reject(
                RejectReason::DeviceIdMismatch,
                format!("device_id: payload says {claimed:?}, topic says {device_id:?}"),
            ));
        }
    }
    Ok(Decoded {
        kind,
        device_id,
        body,
    })
}

fn parse_topic(topic: &str) -> Result<(DeviceKind, String, Stream), Rejection> {
    let rest = topic
        .strip_prefix(TOPIC_PREFIX)
        .and_then(|r| r.strip_prefix('/'))
        .ok_or_else(|| {
            reject(
                RejectReason::UnknownTopic,
                format!("topic {topic:?} does not start with {TOPIC_PREFIX}/"),
            )
        })?;
    let parts: Vec<&str> = rest.split('/').collect();
    let [kind, device_id, stream] = parts[..] else {
        return Err(reject(
            RejectReason::UnknownTopic,
            format!("topic {topic:?} is not {TOPIC_PREFIX}/{{kind}}/{{device_id}}/{{stream}}"),
        ));
    };
    let kind: DeviceKind = kind.parse().map_err(|()| {
        reject(
            RejectReason::UnknownKind,
            format!("device kind {kind:?} is not one of the contract's kinds"),
        )
    })?;
    if !is_valid_device_id(device_id) {
        return Err(reject(
            RejectReason::InvalidDeviceId,
            format!("device id {device_id:?} must be 1-64 of A-Z a-z 0-9 _ . - starting with a letter or digit"),
        ));
    }
    let stream = stream
        .parse::<Stream>()
        .ok()
        .filter(|s| *s == Stream::Status || *s == kind.data_stream())
        .ok_or_else(|| {
            reject(
                RejectReason::UnknownStream,
                format!(
                    "stream {stream:?} is not one a {kind} publishes (status, {})",
                    kind.data_stream().as_str()
                ),
            )
        })?;
    Ok((kind, device_id.to_owned(), stream))
}

fn parse_json<T: DeserializeOwned>(payload: &[u8]) -> Result<T, Rejection> {
    let mut de = serde_json::Deserializer::from_slice(payload);
    let value = serde_path_to_error::deserialize(&mut de).map_err(|e| {
        let path = e.path().to_string();
        let inner = e.into_inner();
        let msg = inner.to_string();
        let at = |msg: String| {
            if path == "." {
                msg
            } else {
                format!("{path}: {msg}")
            }
        };
        if inner.classify() == serde_json::error::Category::Data {
            let reason = if msg.starts_with("missing field") {
                RejectReason::MissingField
            } else if msg.starts_with("unknown field") {
                RejectReason::UnknownField
            } else if msg.starts_with("invalid value: integer") {
                // A well-typed integer outside its type: `satellites: 300`, `seq: -1`.
                RejectReason::OutOfRange
            } else {
                RejectReason::WrongType
            };
            reject(reason, at(msg))
        } else {
            json_syntax_rejection(payload, &inner)
        }
    })?;
    de.end().map_err(|e| json_syntax_rejection(payload, &e))?;
    Ok(value)
}

fn json_syntax_rejection(payload: &[u8], err: &serde_json::Error) -> Rejection {
    if err.to_string().starts_with("number out of range") {
        // `1e400`: a number, but beyond f64.
        reject(RejectReason::OutOfRange, err.to_string())
    } else if names_non_finite_number(payload, err) {
        reject(
            RejectReason::NonFiniteNumber,
            format!("NaN and Infinity are not numbers in JSON ({err})"),
        )
    } else {
        reject(RejectReason::MalformedJson, err.to_string())
    }
}

/// Whether a JSON syntax error sits on a `NaN` or `Infinity` token, as written by encoders
/// (Python's `json.dumps` among them) that let non-finite floats through.
fn names_non_finite_number(payload: &[u8], err: &serde_json::Error) -> bool {
    let line_start = payload
        .split(|b| *b == b'\n')
        .take(err.line().saturating_sub(1))
        .map(|l| l.len() + 1)
        .sum::<usize>();
    let at = (line_start + err.column()).saturating_sub(1);
    let from = at.saturating_sub(1);
    let window = &payload[from.min(payload.len())..(at + 9).min(payload.len())];
    let text = String::from_utf8_lossy(window);
    text.contains("NaN") || text.contains("Infinity")
}

struct TimeWindow<'a> {
    received: Timestamp,
    limits: &'a Limits,
}

impl TimeWindow<'_> {
    fn check(&self, field: &str, t: Timestamp) -> Result<(), Rejection> {
        let ahead = t.duration_since(self.received);
        if ahead > self.limits.max_future {
            return Err(reject(
                RejectReason::TimestampInFuture,
                format!(
                    "{field}: {t} is {}s ahead of the receive time {}; the limit is {}s",
                    ahead.as_secs(),
                    self.received,
                    self.limits.max_future.as_secs()
                ),
            ));
        }
        if -ahead > self.limits.max_age {
            return Err(reject(
                RejectReason::TimestampTooOld,
                format!(
                    "{field}: {t} is {}s older than the receive time {}; the limit is {}s",
                    (-ahead).as_secs(),
                    self.received,
                    self.limits.max_age.as_secs()
                ),
            ));
        }
        Ok(())
    }
}

fn range(field: &str, value: f64, lo: f64, hi: f64) -> Result<(), Rejection> {
    if !value.is_finite() {
        return Err(reject(
            RejectReason::NonFiniteNumber,
            format!("{field}: {value} is not a finite number"),
        ));
    }
    if value < lo || value > hi {
        return Err(reject(
            RejectReason::OutOfRange,
            format!("{field}: {value} is outside {lo}..{hi}"),
        ));
    }
    Ok(())
}

fn opt_range(field: &str, value: Option<f64>, lo: f64, hi: f64) -> Result<(), Rejection> {
    value.map_or(Ok(()), |v| range(field, v, lo, hi))
}

fn check_position(prefix: &str, lat: f64, lon: f64) -> Result<(), Rejection> {
    range(&format!("{prefix}lat"), lat, -90.0, 90.0)?;
    range(&format!("{prefix}lon"), lon, -180.0, 180.0)
}

fn check_fixes(fixes: &[Fix], window: &TimeWindow) -> Result<(), Rejection> {
    if fixes.is_empty() {
        return Err(reject(
            RejectReason::EmptyBatch,
            "fixes: the batch is empty",
        ));
    }
    let max = window.limits.max_fixes_per_message;
    if fixes.len() > max {
        return Err(reject(
            RejectReason::TooManyFixes,
            format!(
                "fixes: {} fixes in one message; the limit is {max}",
                fixes.len()
            ),
        ));
    }
    for (i, f) in fixes.iter().enumerate() {
        let p = format!("fixes[{i}].");
        check_position(&p, f.lat, f.lon)?;
        opt_range(&format!("{p}speed_kmh"), f.speed_kmh, 0.0, 300.0)?;
        opt_range(&format!("{p}heading_deg"), f.heading_deg, 0.0, 360.0)?;
        opt_range(&format!("{p}hdop"), f.hdop, 0.0, 100.0)?;
        opt_range(
            &format!("{p}water_tank_ratio"),
            f.water_tank_ratio,
            0.0,
            1.0,
        )?;
        opt_range(&format!("{p}load_kg"), f.load_kg, 0.0, 100_000.0)?;
        opt_range(&format!("{p}odometer_m"), f.odometer_m, 0.0, 1e10)?;
        window.check(&format!("{p}time"), f.time)?;
    }
    // Two places at one time: which is true is unknown, so the message is refused whole.
    // Each fix is compared with the first of its time, as the store compares it with the
    // one it keeps.
    let mut by_time: Vec<usize> = (0..fixes.len()).collect();
    by_time.sort_by_key(|&i| (fixes[i].time, i));
    let mut first = by_time.first().copied();
    for &i in by_time.iter().skip(1) {
        let kept = first.expect("set for the first fix");
        let (a, b) = (&fixes[kept], &fixes[i]);
        if a.time != b.time {
            first = Some(i);
            continue;
        }
        let apart_m = a.apart_m(b.lat, b.lon);
        if apart_m > SAME_PLACE_M {
            return Err(reject(
                RejectReason::ConflictingFix,
                format!(
                    "fixes[{i}].time: the same time {} as fixes[{kept}], {apart_m:.1} m away",
                    b.time
                ),
            ));
        }
    }
    Ok(())
}

fn check_bin(r: &BinReading, window: &TimeWindow) -> Result<(), Rejection> {
    range("fill_ratio", r.fill_ratio, 0.0, 1.0)?;
    opt_range("temperature_c", r.temperature_c, -60.0, 1000.0)?;
    opt_range("battery_ratio", r.battery_ratio, 0.0, 1.0)?;
    window.check("time", r.time)
}

fn check_toilet(r: &ToiletReading, window: &TimeWindow) -> Result<(), Rejection> {
    opt_range("nh3_mg_m3", r.nh3_mg_m3, 0.0, 1000.0)?;
    opt_range("h2s_mg_m3", r.h2s_mg_m3, 0.0, 1000.0)?;
    opt_range("water_m3", r.water_m3, 0.0, 1e9)?;
    opt_range("power_kwh", r.power_kwh, 0.0, 1e9)?;
    window.check("time", r.time)
}

fn check_id(field: &str, id: &str) -> Result<(), Rejection> {
    if id.is_empty() || id.len() > 64 {
        return Err(reject(
            RejectReason::OutOfRange,
            format!("{field}: must be 1-64 characters"),
        ));
    }
    Ok(())
}

/// Net weight may differ from gross − tare by this much (scale rounding).
const TICKET_NET_TOLERANCE_KG: f64 = 1.0;

fn check_ticket(t: &WeighbridgeTicket, window: &TimeWindow) -> Result<(), Rejection> {
    check_id("ticket_id", &t.ticket_id)?;
    check_id("vehicle_id", &t.vehicle_id)?;
    range("gross_kg", t.gross_kg, 0.0, 200_000.0)?;
    range("tare_kg", t.tare_kg, 0.0, 200_000.0)?;
    range("net_kg", t.net_kg, 0.0, 200_000.0)?;
    if (t.gross_kg - t.tare_kg - t.net_kg).abs() > TICKET_NET_TOLERANCE_KG {
        return Err(reject(
            RejectReason::InconsistentValues,
            format!(
                "net_kg: {} is not gross_kg − tare_kg = {}",
                t.net_kg,
                t.gross_kg - t.tare_kg
            ),
        ));
    }
    if t.time_out < t.time_in {
        return Err(reject(
            RejectReason::InconsistentValues,
            format!("time_out: {} is before time_in {}", t.time_out, t.time_in),
        ));
    }
    window.check("time_in", t.time_in)?;
    window.check("time_out", t.time_out)
}

fn check_sample(s: &InspectionSample, window: &TimeWindow) -> Result<(), Rejection> {
    check_id("sample_id", &s.sample_id)?;
    check_id("inspector", &s.inspector)?;
    check_position("", s.lat, s.lon)?;
    range("grams", s.grams, 0.0, 100_000.0)?;
    if !(s.area_m2.is_finite() && s.area_m2 > 0.0 && s.area_m2 <= 100.0) {
        return Err(reject(
            RejectReason::OutOfRange,
            format!("area_m2: {} must be above 0 and at most 100", s.area_m2),
        ));
    }
    window.check("time", s.time)
}

#[cfg(test)]
mod tests;
