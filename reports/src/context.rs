//! What reports judge by besides the stored passes.

use std::sync::{Arc, OnceLock};

use cleanfleet_coverage::{CoverageRules, MatchConfig, SectionPlan, SegmentIndex};
use cleanfleet_inspection::assessment::AssessmentRules;
use cleanfleet_inspection::overflow::BinRules;
use cleanfleet_inspection::InspectionRules;
use cleanfleet_roads::{RoadNetwork, Zones};
use jiff::tz::TimeZone;

/// The city's road network, its zones and the rules its numbers follow.
pub struct CoverageContext {
    pub network: Arc<RoadNetwork>,
    /// The network's R-tree, to place inspectors' samples.
    pub index: Arc<SegmentIndex>,
    pub inspection: InspectionRules,
    pub assessment: AssessmentRules,
    pub bins: BinRules,
    pub zones: Arc<Zones>,
    pub rules: CoverageRules,
    /// The coverage stage's matcher settings, to match tracks on request the same way.
    pub matcher: MatchConfig,
    pub plans: Vec<SectionPlan>,
    pub time_zone: TimeZone,
    /// Its IANA name, as configured.
    pub time_zone_name: String,
    /// What reports render the same way on every request, made on first use.
    pub rendered: Rendered,
}

/// Renderings of what does not change while the process runs.
#[derive(Debug, Default)]
pub struct Rendered {
    /// Each segment's GeoJSON Feature as JSON text without its properties' closing braces,
    /// by segment ([`crate::status_features_json`]).
    pub(crate) feature_heads: OnceLock<Vec<String>>,
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use cleanfleet_roads::ZoneConfig;

    /// The demo town's network, with `sections` (the demo's when `None`).
    pub(crate) fn demo_context(sections: Option<Vec<ZoneConfig>>) -> CoverageContext {
        let network = Arc::new(RoadNetwork::demo());
        let (demo, grids) = Zones::demo_configs(&network);
        let sections = sections.unwrap_or(demo);
        CoverageContext {
            zones: Arc::new(Zones::new(&network, &sections, &grids).unwrap()),
            index: Arc::new(SegmentIndex::new(&network)),
            inspection: InspectionRules::default(),
            assessment: AssessmentRules::default(),
            bins: BinRules::default(),
            network,
            rules: CoverageRules::default(),
            matcher: MatchConfig::default(),
            plans: Vec::new(),
            time_zone: TimeZone::UTC,
            time_zone_name: "UTC".into(),
            rendered: Rendered::default(),
        }
    }

    /// The first segment of `contractor`'s sections.
    pub(crate) fn street_of<'a>(
        ctx: &'a CoverageContext,
        contractor: &str,
    ) -> &'a cleanfleet_roads::Segment {
        ctx.network
            .segments()
            .iter()
            .find(|s| {
                ctx.zones
                    .section_of(s.id)
                    .and_then(|z| z.contractor.as_deref())
                    == Some(contractor)
            })
            .expect("the contractor has a street")
    }
}
