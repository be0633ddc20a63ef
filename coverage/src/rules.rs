//! The coverage rules a city configures (DOMAIN.md, "Coverage rules"), with its defaults.

use cleanfleet_roads::RoadClass;
use serde::Deserialize;

use crate::passes::WorkType;

/// Top speed at which each work counts, km/h.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct SpeedBands {
    /// Default 8 (sweeping ≤ 8 km/h).
    pub sweep: f64,
    /// Default 8.
    pub wash_sweep: f64,
    /// Default 15.
    pub flush: f64,
    /// Default 12 (published bands: 10–15).
    pub sprinkle: f64,
    /// Default 6 (walking).
    pub manual: f64,
}

impl Default for SpeedBands {
    fn default() -> Self {
        SpeedBands {
            sweep: 8.0,
            wash_sweep: 8.0,
            flush: 15.0,
            sprinkle: 12.0,
            manual: 6.0,
        }
    }
}

/// The deep-cleaning recipe: a pass of `first`, then within `within_s` a pass of `then` over
/// the same part: on the same side of a street cleaned on both sides, in either direction on
/// one cleaned as one side.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct DeepCleanRule {
    /// Default `["flush"]`.
    pub first: Vec<WorkType>,
    /// Default `["sweep", "wash_sweep"]`.
    pub then: Vec<WorkType>,
    /// Default 7200 (2 h).
    pub within_s: f64,
}

impl Default for DeepCleanRule {
    fn default() -> Self {
        DeepCleanRule {
            first: vec![WorkType::Flush],
            then: vec![WorkType::Sweep, WorkType::WashSweep],
            within_s: 7200.0,
        }
    }
}

#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct CoverageRules {
    pub speed_band_kmh: SpeedBands,
    /// Fixes with fewer satellites are poor GPS. Default 4.
    pub min_satellites: u8,
    /// A fix matched farther from its road than this many of its expected errors (HDOP ×
    /// UERE, `[coverage.matcher]`), plus half the carriageway, is poor GPS. Default 3.
    pub max_match_sigmas: f64,
    /// A valid pass's length ÷ duration is at most its work's speed band × this; a pass,
    /// and the drive between two fixes, at most the distance the reported speeds imply
    /// over it × this (across a silence: the band's), plus `path_slack_sigmas`; beyond, the
    /// matched path is wrong: poor GPS. So a vehicle's valid mileage never exceeds what
    /// its fixes imply by more than this share plus the slack once per pass. Default 1.25.
    pub max_implied_speed_ratio: f64,
    /// That slack, in the expected errors of the fixes behind the pass. Default 1.
    pub path_slack_sigmas: f64,
    /// A valid pass shorter than this (and than `covered_ratio` of its segment) is too
    /// short. Default 10.
    pub min_pass_length_m: f64,
    /// Nothing is credited across a silence longer than this: a drive across a shorter
    /// one counts when the tools were on at both ends and the matched route agrees with the
    /// speeds reported there. Default 180 (the matcher's `max_gap_s`).
    pub max_gap_s: f64,
    /// Work reported over its band for less than this in a row is the speed's measurement
    /// noise at the top of the band, not overspeed. Default 5.
    pub overspeed_min_s: f64,
    /// A stretch longer than this between two fixes on a street neither was on (the matched
    /// path only runs through it) is poor GPS, unless the vehicle could not have got from
    /// one fix to the other within what they allow without it. Default 25.
    pub max_unsupported_pass_m: f64,
    /// A side of a segment is covered when valid passes cover this share of it. Default 0.9.
    pub covered_ratio: f64,
    /// Two-way segments of these classes need a valid pass in each direction. Default
    /// `["I", "II"]`.
    pub both_sides_classes: Vec<RoadClass>,
    /// Work that covers a street. Default sweep, wash-sweep, flush and manual (sprinkling
    /// suppresses dust but does not clean).
    pub covering_work: Vec<WorkType>,
    /// Work that counts for the mechanised cleaning rate. Default sweep, wash-sweep, flush.
    pub mechanised_work: Vec<WorkType>,
    pub deep_clean: DeepCleanRule,
}

impl Default for CoverageRules {
    fn default() -> Self {
        CoverageRules {
            speed_band_kmh: SpeedBands::default(),
            min_satellites: 4,
            max_match_sigmas: 3.0,
            max_implied_speed_ratio: 1.25,
            path_slack_sigmas: 1.0,
            min_pass_length_m: 10.0,
            max_gap_s: 180.0,
            overspeed_min_s: 5.0,
            max_unsupported_pass_m: 25.0,
            covered_ratio: 0.9,
            both_sides_classes: vec![RoadClass::I, RoadClass::II],
            covering_work: vec![
                WorkType::Sweep,
                WorkType::WashSweep,
                WorkType::Flush,
                WorkType::Manual,
            ],
            mechanised_work: vec![WorkType::Sweep, WorkType::WashSweep, WorkType::Flush],
            deep_clean: DeepCleanRule::default(),
        }
    }
}

/// What a section's contract plans per day (DOMAIN.md: planned passes, speed, mileage).
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SectionPlan {
    /// The section's id (`[roads] sections` or the zones file).
    pub section: String,
    /// Planned traversals of each side of each of its segments (a main road has two
    /// sides). Planned passes and mileage follow from it.
    pub passes_per_side: f64,
}

/// A setting's check: `Ok` when `v` is a finite number above 0, else the error naming `name`.
pub fn positive(name: &str, v: f64) -> Result<(), String> {
    if v.is_finite() && v > 0.0 {
        Ok(())
    } else {
        Err(format!("{name} must be a number above 0, not {v}"))
    }
}

/// `Ok` when `v` is a finite number of 0 or more.
pub fn non_negative(name: &str, v: f64) -> Result<(), String> {
    if v.is_finite() && v >= 0.0 {
        Ok(())
    } else {
        Err(format!("{name} must be a number of 0 or more, not {v}"))
    }
}

impl CoverageRules {
    /// Checks every number, naming the first that makes no sense.
    pub fn check(&self) -> Result<(), String> {
        let b = &self.speed_band_kmh;
        for (name, v) in [
            ("speed_band_kmh.sweep", b.sweep),
            ("speed_band_kmh.wash_sweep", b.wash_sweep),
            ("speed_band_kmh.flush", b.flush),
            ("speed_band_kmh.sprinkle", b.sprinkle),
            ("speed_band_kmh.manual", b.manual),
            ("max_match_sigmas", self.max_match_sigmas),
            ("max_implied_speed_ratio", self.max_implied_speed_ratio),
            ("max_gap_s", self.max_gap_s),
        ] {
            positive(name, v)?;
        }
        for (name, v) in [
            ("path_slack_sigmas", self.path_slack_sigmas),
            ("min_pass_length_m", self.min_pass_length_m),
            ("overspeed_min_s", self.overspeed_min_s),
            ("max_unsupported_pass_m", self.max_unsupported_pass_m),
            ("deep_clean.within_s", self.deep_clean.within_s),
        ] {
            non_negative(name, v)?;
        }
        if !(self.covered_ratio > 0.0 && self.covered_ratio <= 1.0) {
            return Err(format!(
                "covered_ratio must be above 0 and at most 1, not {}",
                self.covered_ratio
            ));
        }
        Ok(())
    }

    /// Sides of a segment that are cleaned separately: 2 for a two-way road of a class in
    /// `both_sides_classes`, else 1.
    pub fn sides(&self, segment: &cleanfleet_roads::Segment) -> u32 {
        if !segment.oneway && self.both_sides_classes.contains(&segment.class) {
            2
        } else {
            1
        }
    }

    pub fn band_kmh(&self, work: WorkType) -> f64 {
        let b = &self.speed_band_kmh;
        match work {
            WorkType::Sweep => b.sweep,
            WorkType::WashSweep => b.wash_sweep,
            WorkType::Flush => b.flush,
            WorkType::Sprinkle => b.sprinkle,
            WorkType::Manual => b.manual,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::MatchConfig;

    #[test]
    fn settings_that_make_no_sense_are_refused_by_name() {
        assert_eq!(CoverageRules::default().check(), Ok(()));
        assert_eq!(MatchConfig::default().check(), Ok(()));
        let rules = CoverageRules {
            covered_ratio: 1.5,
            ..CoverageRules::default()
        };
        assert!(rules.check().unwrap_err().contains("covered_ratio"));
        let mut bands = CoverageRules::default();
        bands.speed_band_kmh.flush = f64::NAN;
        assert!(bands.check().unwrap_err().contains("speed_band_kmh.flush"));
        // A zero error would divide by zero in the emission and the fusion.
        let matcher = MatchConfig {
            gps_sigma_m: 0.0,
            ..MatchConfig::default()
        };
        assert!(matcher.check().unwrap_err().contains("gps_sigma_m"));
    }
}
