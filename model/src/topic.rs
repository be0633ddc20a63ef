use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

/// Every topic of contract v1 starts with this.
pub const TOPIC_PREFIX: &str = "cleanfleet/v1";

/// The kind of device, the third level of a topic.
#[derive(
    Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize, ToSchema,
)]
#[serde(rename_all = "snake_case")]
pub enum DeviceKind {
    Sweeper,
    WasherSweeper,
    Flusher,
    Sprinkler,
    CollectionTruck,
    Wearable,
    Bin,
    Toilet,
    Weighbridge,
    Scale,
}

impl DeviceKind {
    pub const ALL: [DeviceKind; 10] = [
        DeviceKind::Sweeper,
        DeviceKind::WasherSweeper,
        DeviceKind::Flusher,
        DeviceKind::Sprinkler,
        DeviceKind::CollectionTruck,
        DeviceKind::Wearable,
        DeviceKind::Bin,
        DeviceKind::Toilet,
        DeviceKind::Weighbridge,
        DeviceKind::Scale,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            DeviceKind::Sweeper => "sweeper",
            DeviceKind::WasherSweeper => "washer_sweeper",
            DeviceKind::Flusher => "flusher",
            DeviceKind::Sprinkler => "sprinkler",
            DeviceKind::CollectionTruck => "collection_truck",
            DeviceKind::Wearable => "wearable",
            DeviceKind::Bin => "bin",
            DeviceKind::Toilet => "toilet",
            DeviceKind::Weighbridge => "weighbridge",
            DeviceKind::Scale => "scale",
        }
    }

    /// Vehicles and wearables report GPS fixes.
    pub fn reports_fixes(self) -> bool {
        matches!(
            self,
            DeviceKind::Sweeper
                | DeviceKind::WasherSweeper
                | DeviceKind::Flusher
                | DeviceKind::Sprinkler
                | DeviceKind::CollectionTruck
                | DeviceKind::Wearable
        )
    }

    pub fn is_vehicle(self) -> bool {
        self.reports_fixes() && self != DeviceKind::Wearable
    }

    /// The data stream a device of this kind publishes besides `status`.
    pub fn data_stream(self) -> Stream {
        match self {
            k if k.reports_fixes() => Stream::Fixes,
            DeviceKind::Bin | DeviceKind::Toilet => Stream::Reading,
            DeviceKind::Weighbridge => Stream::Ticket,
            _ => Stream::Sample,
        }
    }
}

impl fmt::Display for DeviceKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for DeviceKind {
    type Err = ();
    fn from_str(s: &str) -> Result<Self, ()> {
        DeviceKind::ALL
            .into_iter()
            .find(|k| k.as_str() == s)
            .ok_or(())
    }
}

/// The last level of a topic: what the message carries.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Stream {
    Fixes,
    Reading,
    Ticket,
    Sample,
    Status,
}

impl Stream {
    pub const ALL: [Stream; 5] = [
        Stream::Fixes,
        Stream::Reading,
        Stream::Ticket,
        Stream::Sample,
        Stream::Status,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            Stream::Fixes => "fixes",
            Stream::Reading => "reading",
            Stream::Ticket => "ticket",
            Stream::Sample => "sample",
            Stream::Status => "status",
        }
    }
}

impl FromStr for Stream {
    type Err = ();
    fn from_str(s: &str) -> Result<Self, ()> {
        Stream::ALL.into_iter().find(|k| k.as_str() == s).ok_or(())
    }
}

/// A parsed topic `cleanfleet/v1/{kind}/{device_id}/{stream}`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Topic {
    pub kind: DeviceKind,
    pub device_id: String,
    pub stream: Stream,
}

impl Topic {
    pub fn new(kind: DeviceKind, device_id: impl Into<String>, stream: Stream) -> Self {
        Topic {
            kind,
            device_id: device_id.into(),
            stream,
        }
    }

    /// The topic name a device publishes to.
    pub fn name(&self) -> String {
        format!(
            "{TOPIC_PREFIX}/{}/{}/{}",
            self.kind,
            self.device_id,
            self.stream.as_str()
        )
    }
}

/// A device id: 1 to 64 characters of `A-Z a-z 0-9 _ . -`, starting with a letter or digit.
pub fn is_valid_device_id(id: &str) -> bool {
    let mut chars = id.chars();
    matches!(chars.next(), Some(c) if c.is_ascii_alphanumeric())
        && id.len() <= 64
        && chars.all(|c| c.is_ascii_alphanumeric() || matches!(c, '_' | '.' | '-'))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn kind_names_round_trip() {
        for kind in DeviceKind::ALL {
            assert_eq!(kind.as_str().parse::<DeviceKind>(), Ok(kind));
        }
        for stream in Stream::ALL {
            assert_eq!(stream.as_str().parse::<Stream>(), Ok(stream));
        }
    }

    #[test]
    fn device_id_rules() {
        assert!(is_valid_device_id("sw-01"));
        assert!(is_valid_device_id("A.b_c-9"));
        assert!(!is_valid_device_id(""));
        assert!(!is_valid_device_id("-lead"));
        assert!(!is_valid_device_id("has space"));
        assert!(!is_valid_device_id(&"x".repeat(65)));
        assert!(is_valid_device_id(&"x".repeat(64)));
    }

    #[test]
    fn topic_name() {
        let t = Topic::new(DeviceKind::WasherSweeper, "ws-7", Stream::Fixes);
        assert_eq!(t.name(), "cleanfleet/v1/washer_sweeper/ws-7/fixes");
    }
}
