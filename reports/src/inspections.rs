//! Weight-based cleanliness (以克论净) as users read it: each sample with its road and verdict,
//! each road's result with the cleaning behind it, the litter on it and how soon it went,
//! and the failed samples' map; a contractor sees its own points and never names another
//! contractor's vehicles.

use std::collections::BTreeMap;

use cleanfleet_coverage::SegmentStatus;
use cleanfleet_inspection::{
    last_cleaning, litter_clearances, road_of, road_results, Cleaning, DevicePass, LitterClearance,
    Placement, RoadResult, Sample,
};
use cleanfleet_model::InspectionSample;
use cleanfleet_store::{PassRecord, Source};
use jiff::{SignedDuration, Timestamp};
use serde::Serialize;
use serde_json::{json, Value};
use utoipa::ToSchema;

use crate::{engine_passes, may_see_work, CoverageContext, Scope};

/// The device id a contractor sees for another contractor's vehicle.
pub const ANOTHER_CONTRACTORS: &str = "(another contractor's vehicle)";

/// How far back the last cleaning of a sampled road is looked for.
pub const CLEANING_LOOKBACK: SignedDuration = SignedDuration::from_hours(48);

/// The engine's sample from a device's.
pub fn sample_of(device_id: String, s: InspectionSample) -> Sample {
    Sample {
        device_id,
        sample_id: s.sample_id,
        inspector: s.inspector,
        time: s.time,
        lon: s.lon,
        lat: s.lat,
        grams: s.grams,
        area_m2: s.area_m2,
        litter_count: s.litter_count,
        photo_ref: s.photo_ref,
    }
}

/// A sample with the road it was taken on and its own verdict.
#[derive(Debug, Serialize, ToSchema)]
pub struct SampleView {
    pub device_id: String,
    pub sample_id: String,
    pub inspector: String,
    pub time: Timestamp,
    pub lon: f64,
    pub lat: f64,
    pub grams: f64,
    pub area_m2: f64,
    pub g_per_m2: f64,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub litter_count: Option<u32>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub photo_ref: Option<String>,
    /// The segment it lies on; absent when no road is within `max_distance_to_road_m`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub segment: Option<u32>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub distance_to_road_m: Option<f64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub road: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub class: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub limit_g_per_m2: Option<f64>,
    /// This sample alone is within its road's limit.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub within_limit: Option<bool>,
    /// Who delivered it: the scale's credential, or the inspector app's API token
    /// (`trust`: `credential`, `token`, `topic_only`, `unauthenticated`, `unknown`).
    /// Absent in the answer to a submission.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub source: Option<Source>,
}

/// A sample with its road, its own verdict and, when known, who delivered it.
pub fn sample_view(
    ctx: &CoverageContext,
    s: &Sample,
    placement: Option<Placement>,
    source: Option<&Source>,
) -> SampleView {
    let road = placement.map(|p| road_of(&ctx.network, p.segment));
    let limit = road
        .as_ref()
        .map(|r| ctx.inspection.limits_g_per_m2.of(r.class));
    SampleView {
        device_id: s.device_id.clone(),
        sample_id: s.sample_id.clone(),
        inspector: s.inspector.clone(),
        time: s.time,
        lon: s.lon,
        lat: s.lat,
        grams: s.grams,
        area_m2: s.area_m2,
        g_per_m2: s.g_per_m2(),
        litter_count: s.litter_count,
        photo_ref: s.photo_ref.clone(),
        segment: placement.map(|p| p.segment),
        distance_to_road_m: placement.map(|p| p.distance_m),
        road: road.as_ref().map(|r| r.road.clone()),
        class: road.as_ref().map(|r| r.class.to_string()),
        limit_g_per_m2: limit,
        within_limit: limit.map(|l| s.g_per_m2() <= l),
        source: source.cloned(),
    }
}

/// A road's inspection with the cleaning behind it.
#[derive(Debug, Serialize, ToSchema)]
pub struct InspectionView {
    #[serde(flatten)]
    #[schema(value_type = Object)]
    pub result: RoadResult,
    /// The section and contractor of the first segment sampled.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub section: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub contractor: Option<String>,
    /// How its points fall into sections: a road that crosses a section boundary is judged
    /// once, and a failed one costs each contractor its share of the points.
    pub parts: Vec<InspectionPart>,
    /// The last valid cleaning of the road's sampled segments before the first sample.
    #[serde(skip_serializing_if = "Option::is_none")]
    #[schema(value_type = Object)]
    pub last_cleaned: Option<Cleaning>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub hours_since_cleaned: Option<f64>,
    /// A sampled segment was deep-cleaned that day.
    pub deep_cleaned_that_day: bool,
    /// Each sample that counted litter: how long it stayed until a valid cleaning reached its
    /// place, against `max_litter_dwell_s`.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    #[schema(value_type = Vec<Object>)]
    pub litter_clearance: Vec<LitterClearance>,
}

/// The points of a road inspection that lie in one section (or in none).
#[derive(Debug, Clone, PartialEq, Serialize, ToSchema)]
pub struct InspectionPart {
    #[serde(skip_serializing_if = "Option::is_none")]
    pub section: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub contractor: Option<String>,
    pub points: usize,
}

fn parts_of(ctx: &CoverageContext, result: &RoadResult) -> Vec<InspectionPart> {
    let mut parts: BTreeMap<Option<&str>, InspectionPart> = BTreeMap::new();
    for &segment in &result.sample_segments {
        let section = ctx.zones.section_of(segment);
        parts
            .entry(section.map(|z| z.id.as_str()))
            .or_insert_with(|| InspectionPart {
                section: section.map(|z| z.id.clone()),
                contractor: section.and_then(|z| z.contractor.clone()),
                points: 0,
            })
            .points += 1;
    }
    parts.into_values().collect()
}

/// The segments whose passes [`road_inspections`] looks at for `samples`: those of every road
/// judged on them.
pub fn inspected_segments(
    ctx: &CoverageContext,
    samples: &[(Sample, Option<Placement>, Source)],
) -> Vec<u32> {
    let placed: Vec<(Sample, Placement)> = samples
        .iter()
        .filter_map(|(s, p, _)| Some((s.clone(), (*p)?)))
        .collect();
    let mut segments: Vec<u32> =
        road_results(&ctx.network, &ctx.inspection, &ctx.time_zone, &placed)
            .into_iter()
            .flat_map(|result| result.segments)
            .collect();
    segments.sort_unstable();
    segments.dedup();
    segments
}

/// The day's road inspections in `scope` as `viewer` sees them: every road judged once on all
/// its `samples`' points (placed ones; a viewer sees the roads with a point in its scope),
/// with the last valid cleaning before it among `records` (from [`CLEANING_LOOKBACK`] before
/// the day; at least those of the [`inspected_segments`]), the litter its points counted and
/// when a cleaning reached it (up to `known_until`), and whether it was deep-cleaned that day
/// (`statuses`, the day's).
pub fn road_inspections(
    ctx: &CoverageContext,
    samples: &[(Sample, Option<Placement>, Source)],
    records: &[PassRecord],
    statuses: &[SegmentStatus],
    scope: &Scope,
    viewer: Option<&str>,
    known_until: Timestamp,
) -> Vec<InspectionView> {
    // Every road is judged once on all its points, whichever sections they lie in; a
    // viewer sees the roads with a point in its scope (docs/inspection.md).
    let placed: Vec<(Sample, Placement)> = samples
        .iter()
        .filter_map(|(s, p, _)| Some((s.clone(), (*p)?)))
        .collect();
    let in_scope = |segment: u32| scope.contains(&ctx.network.segments()[segment as usize]);
    // Judged on every pass, so that everyone sees the same result; only the vehicles a
    // contractor may not see are not named to it.
    let passes: Vec<DevicePass> = records
        .iter()
        .zip(engine_passes(&ctx.network, records))
        .map(|(r, pass)| DevicePass {
            device_id: r.device_id.to_string(),
            pass,
        })
        .collect();
    road_results(&ctx.network, &ctx.inspection, &ctx.time_zone, &placed)
        .into_iter()
        .filter(|result| result.points_on(in_scope) > 0)
        .map(|result| {
            let redact = |c: &mut Cleaning| {
                if !may_see_work(&ctx.zones, viewer, &c.device_id, c.segment) {
                    c.device_id = ANOTHER_CONTRACTORS.to_owned();
                }
            };
            let mut last = last_cleaning(
                &passes,
                &result.segments,
                &ctx.rules.covering_work,
                result.time,
            );
            last.iter_mut().for_each(redact);
            let section = ctx.zones.section_of(result.segments[0]);
            // Litter is answered for where it lies: a viewer sees its own points'.
            let points: Vec<&(Sample, Placement)> = placed
                .iter()
                .filter(|(s, p)| {
                    s.inspector == result.inspector
                        && result.samples.contains(&s.sample_id)
                        && result.segments.contains(&p.segment)
                        && in_scope(p.segment)
                })
                .collect();
            let mut litter = litter_clearances(
                &ctx.network,
                &ctx.inspection,
                &passes,
                &ctx.rules.covering_work,
                &points,
                known_until,
            );
            litter
                .iter_mut()
                .filter_map(|l| l.cleared_by.as_mut())
                .for_each(redact);
            InspectionView {
                litter_clearance: litter,
                hours_since_cleaned: last
                    .as_ref()
                    .map(|l| result.time.duration_since(l.time).as_secs_f64() / 3600.0),
                deep_cleaned_that_day: result
                    .segments
                    .iter()
                    .any(|&s| statuses[s as usize].deep_cleaned),
                section: section.map(|z| z.id.clone()),
                contractor: section.and_then(|z| z.contractor.clone()),
                parts: parts_of(ctx, &result),
                last_cleaned: last,
                result,
            }
        })
        .collect()
}

/// The samples of the failed ones of `inspections` that lie in `scope`, as GeoJSON Points.
pub fn failed_sample_features(
    ctx: &CoverageContext,
    inspections: &[InspectionView],
    samples: &[(Sample, Option<Placement>, Source)],
    scope: &Scope,
) -> Vec<Value> {
    let mut features: Vec<Value> = Vec::new();
    for inspection in inspections.iter().filter(|i| !i.result.passed) {
        for (s, p, source) in samples {
            // Of a road across a section boundary, a viewer sees the points in its scope.
            let Some(placement) = p.filter(|p| {
                scope.contains(&ctx.network.segments()[p.segment as usize])
                    && inspection.result.segments.contains(&p.segment)
            }) else {
                continue;
            };
            let ours = inspection.result.samples.contains(&s.sample_id)
                && inspection.result.inspector == s.inspector;
            if !ours {
                continue;
            }
            let v = sample_view(ctx, s, *p, Some(source));
            let section = ctx.zones.section_of(placement.segment);
            features.push(json!({
                "type": "Feature",
                "geometry": {"type": "Point", "coordinates": [s.lon, s.lat]},
                "properties": {
                    "sample": v,
                    "road_result_g_per_m2": inspection.result.result_g_per_m2,
                    "contractor": section.and_then(|z| z.contractor.clone()),
                    "last_cleaned": inspection.last_cleaned,
                },
            }));
        }
    }
    features
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::context::tests::{demo_context, street_of};
    use cleanfleet_coverage::WorkType;
    use cleanfleet_inspection::place;
    use cleanfleet_store::Trust;

    /// A dirty sample on one of acme's streets, cleaned before by green-city's sw-02: the
    /// city sees who cleaned it, acme sees the result but not the other contractor's vehicle.
    #[test]
    fn a_contractor_sees_the_result_but_not_another_contractors_vehicle() {
        let ctx = demo_context(None);
        let street = street_of(&ctx, "acme-cleaning");
        let mid = street.points[street.points.len() / 2];
        let placement = place(&ctx.index, &ctx.inspection, mid.0, mid.1).unwrap();
        let time = Timestamp::from_second(1_800_000_000).unwrap();
        let sample = Sample {
            device_id: "scale-1".into(),
            sample_id: "s1".into(),
            inspector: "li".into(),
            time,
            lon: mid.0,
            lat: mid.1,
            grams: 500.0,
            area_m2: 1.0,
            litter_count: None,
            photo_ref: None,
        };
        let source = Source {
            id: 1,
            trust: Trust::Token,
            via: "api".into(),
            principal: "li".into(),
            credential_issued: None,
        };
        let segment = &ctx.network.segments()[placement.segment as usize];
        let cleaned = PassRecord {
            device_id: "sw-02".into(),
            segment: segment.id,
            forward: true,
            from_m: 0.0,
            to_m: segment.length_m,
            start: time - SignedDuration::from_hours(2),
            end: time - SignedDuration::from_hours(2) + SignedDuration::from_mins(5),
            work: WorkType::Sweep,
            invalid: None,
            max_speed_kmh: 6.0,
        };
        let samples = [(sample, Some(placement), source)];
        // The passes the API reads for it are those of the sampled road's segments.
        assert!(inspected_segments(&ctx, &samples).contains(&segment.id));
        let statuses = crate::DayStatus::idle(&ctx).statuses;
        let inspect = |viewer: Option<&str>| {
            let scope = match viewer {
                Some(c) => crate::Scope::new(&ctx, &crate::ScopeSpec::contractor(c)).unwrap(),
                None => Scope::city(),
            };
            road_inspections(
                &ctx,
                &samples,
                std::slice::from_ref(&cleaned),
                &statuses,
                &scope,
                viewer,
                time,
            )
        };
        let city = inspect(None);
        assert_eq!(city.len(), 1);
        assert!(!city[0].result.passed, "500 g/m² fails every class");
        assert_eq!(city[0].last_cleaned.as_ref().unwrap().device_id, "sw-02");
        assert!((city[0].hours_since_cleaned.unwrap() - 1.0 - 55.0 / 60.0).abs() < 1e-9);
        let acme = inspect(Some("acme-cleaning"));
        assert_eq!(acme.len(), 1);
        assert_eq!(
            acme[0].result, city[0].result,
            "the same result for everyone"
        );
        assert_eq!(
            acme[0].last_cleaned.as_ref().unwrap().device_id,
            ANOTHER_CONTRACTORS
        );
        // The failed sample is on acme's map, and on nobody else's.
        assert_eq!(
            failed_sample_features(&ctx, &acme, &samples, &Scope::city()).len(),
            1
        );
        assert!(inspect(Some("green-city")).is_empty());
    }
}
