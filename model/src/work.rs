//! What a pass of a cleaning vehicle does and, when it does not count, why: shared by the
//! coverage engine that decides them, the store that keeps them and the reports.

use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

use crate::{DeviceKind, WorkState};

/// What a pass does to the street.
#[derive(
    Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize, ToSchema,
)]
#[serde(rename_all = "snake_case")]
pub enum WorkType {
    Sweep,
    WashSweep,
    Flush,
    Sprinkle,
    /// A crew member on foot.
    Manual,
}

impl WorkType {
    pub const ALL: [WorkType; 5] = [
        WorkType::Sweep,
        WorkType::WashSweep,
        WorkType::Flush,
        WorkType::Sprinkle,
        WorkType::Manual,
    ];

    /// The name in JSON and in the store.
    pub fn as_str(self) -> &'static str {
        match self {
            WorkType::Sweep => "sweep",
            WorkType::WashSweep => "wash_sweep",
            WorkType::Flush => "flush",
            WorkType::Sprinkle => "sprinkle",
            WorkType::Manual => "manual",
        }
    }

    pub fn parse(name: &str) -> Option<WorkType> {
        WorkType::ALL.into_iter().find(|w| w.as_str() == name)
    }

    /// The work a device of `kind` exists for; `None` for devices that do not clean.
    pub fn of_kind(kind: DeviceKind) -> Option<WorkType> {
        match kind {
            DeviceKind::Sweeper => Some(WorkType::Sweep),
            DeviceKind::WasherSweeper => Some(WorkType::WashSweep),
            DeviceKind::Flusher => Some(WorkType::Flush),
            DeviceKind::Sprinkler => Some(WorkType::Sprinkle),
            DeviceKind::Wearable => Some(WorkType::Manual),
            _ => None,
        }
    }

    /// Whether the tools for this work are on.
    pub fn tools_on(self, work: &WorkState) -> bool {
        match self {
            WorkType::Sweep => work.brush || work.vacuum,
            WorkType::WashSweep => work.brush || work.vacuum || work.water_pump,
            WorkType::Flush => work.water_pump,
            WorkType::Sprinkle => work.spray || work.water_pump,
            // A crew member on shift works while walking their streets.
            WorkType::Manual => true,
        }
    }
}

/// Why a pass does not count.
#[derive(
    Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize, ToSchema,
)]
#[serde(rename_all = "snake_case")]
pub enum InvalidReason {
    /// The tools for the vehicle's work were off.
    ToolOff,
    /// Faster than the work's speed band (超速作业).
    Overspeed,
    /// The match cannot be trusted: too few satellites, the fix farther from the road than
    /// its own error explains, a matched drive longer than the vehicle's speeds allow, a
    /// pass faster than its band allows, or a stretch no fix was matched on.
    PoorGps,
    /// Shorter than `min_pass_length_m` on a longer segment.
    TooShort,
}

impl InvalidReason {
    pub const ALL: [InvalidReason; 4] = [
        InvalidReason::ToolOff,
        InvalidReason::Overspeed,
        InvalidReason::PoorGps,
        InvalidReason::TooShort,
    ];

    /// The name in JSON and in the store.
    pub fn as_str(self) -> &'static str {
        match self {
            InvalidReason::ToolOff => "tool_off",
            InvalidReason::Overspeed => "overspeed",
            InvalidReason::PoorGps => "poor_gps",
            InvalidReason::TooShort => "too_short",
        }
    }

    pub fn parse(name: &str) -> Option<InvalidReason> {
        InvalidReason::ALL.into_iter().find(|r| r.as_str() == name)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn work_types_follow_the_kind_and_its_tools() {
        let brush = WorkState {
            brush: true,
            ..WorkState::default()
        };
        let water = WorkState {
            water_pump: true,
            ..WorkState::default()
        };
        assert_eq!(
            WorkType::of_kind(DeviceKind::Flusher),
            Some(WorkType::Flush)
        );
        assert_eq!(WorkType::of_kind(DeviceKind::CollectionTruck), None);
        assert!(WorkType::Sweep.tools_on(&brush) && !WorkType::Sweep.tools_on(&water));
        assert!(WorkType::Flush.tools_on(&water) && !WorkType::Flush.tools_on(&brush));
        assert!(WorkType::WashSweep.tools_on(&water) && WorkType::WashSweep.tools_on(&brush));
        assert!(!WorkType::Sprinkle.tools_on(&WorkState::default()));
    }

    #[test]
    fn names_match_serde_and_parse_back() {
        for w in WorkType::ALL {
            assert_eq!(serde_json::to_value(w).unwrap(), w.as_str());
            assert_eq!(WorkType::parse(w.as_str()), Some(w));
        }
        for r in InvalidReason::ALL {
            assert_eq!(serde_json::to_value(r).unwrap(), r.as_str());
            assert_eq!(InvalidReason::parse(r.as_str()), Some(r));
        }
        assert_eq!(WorkType::parse("mop"), None);
    }
}
