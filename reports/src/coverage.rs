//! Coverage reports: a day's shares of a scope, the segments' map, per vehicle, per section,
//! day by day over a range, and the city's zones.

use std::collections::HashSet;

use cleanfleet_coverage::{CoverageSummary, Pass, SegmentStatus};
use cleanfleet_roads::{RoadNetwork, Segment, Zone};
use cleanfleet_store::PassRecord;
use jiff::civil::Date;
use jiff::tz::TimeZone;
use jiff::Timestamp;
use serde::Serialize;
use serde_json::{json, Value};
use utoipa::ToSchema;

use crate::{CoverageContext, DayStatus, Scope};

/// A day-by-day report spans at most this many days.
pub const MAX_RANGE_DAYS: i32 = 92;

/// The start of `date` and of the day after in `time_zone`.
pub fn day_bounds(time_zone: &TimeZone, date: Date) -> Result<(Timestamp, Timestamp), jiff::Error> {
    let start = date.to_zoned(time_zone.clone())?.timestamp();
    let end = date.tomorrow()?.to_zoned(time_zone.clone())?.timestamp();
    Ok((start, end))
}

/// Stored passes as the engine's, dropping any that do not fit this network (computed on
/// another one before the store was told).
pub fn engine_passes(network: &RoadNetwork, records: &[PassRecord]) -> Vec<Pass> {
    let seconds = |t: Timestamp| t.as_millisecond() as f64 / 1000.0;
    records
        .iter()
        .filter(|r| (r.segment as usize) < network.segments().len())
        .map(|r| Pass {
            segment: r.segment,
            forward: r.forward,
            from_m: r.from_m,
            to_m: r.to_m,
            start_s: seconds(r.start),
            end_s: seconds(r.end),
            work: r.work,
            invalid: r.invalid,
            max_speed_kmh: r.max_speed_kmh,
        })
        .collect()
}

#[derive(Debug, Clone, PartialEq, Serialize, ToSchema)]
pub struct Share {
    pub length_m: f64,
    pub area_m2: f64,
    pub share_by_length: f64,
    pub share_by_area: f64,
}

#[derive(Debug, Clone, PartialEq, Serialize, ToSchema)]
pub struct Missed {
    pub reason: String,
    pub segments: usize,
    pub length_m: f64,
}

/// A day's coverage of a scope.
#[derive(Debug, Clone, PartialEq, Serialize, ToSchema)]
pub struct DayCoverage {
    /// `city`, or `class:I` etc.
    pub scope: String,
    pub segments: usize,
    pub total_length_m: f64,
    pub total_area_m2: f64,
    pub covered: Share,
    pub mechanised: Share,
    pub deep_cleaned: Share,
    /// Segments not covered, by reason.
    pub missed: Vec<Missed>,
    /// Traversals with the tools on.
    pub passes: usize,
    pub valid_passes: usize,
}

/// The day's covered, mechanised and deep-cleaned shares of `scope`, by length and by area,
/// with the segments missed and why.
pub fn day_coverage(ctx: &CoverageContext, day: &DayStatus, scope: &Scope) -> DayCoverage {
    let (s, work) = day.summary(&ctx.network, |s| scope.contains(s));
    let share = |length_m: f64, area_m2: f64| Share {
        length_m,
        area_m2,
        share_by_length: ratio(length_m, s.total_length_m),
        share_by_area: ratio(area_m2, s.total_area_m2),
    };
    let mut missed: Vec<Missed> = Vec::new();
    for status in &day.statuses {
        let segment = &ctx.network.segments()[status.segment as usize];
        let Some(reason) = status.missed.filter(|_| scope.contains(segment)) else {
            continue;
        };
        let reason = reason.as_str();
        match missed.iter_mut().find(|m| m.reason == reason) {
            Some(m) => {
                m.segments += 1;
                m.length_m += segment.length_m;
            }
            None => missed.push(Missed {
                reason: reason.to_owned(),
                segments: 1,
                length_m: segment.length_m,
            }),
        }
    }
    missed.sort_by(|a, b| a.reason.cmp(&b.reason));
    DayCoverage {
        scope: scope.name().to_owned(),
        segments: s.segments,
        total_length_m: s.total_length_m,
        total_area_m2: s.total_area_m2,
        covered: share(s.covered_length_m, s.covered_area_m2),
        mechanised: share(s.mechanised_length_m, s.mechanised_area_m2),
        deep_cleaned: share(s.deep_cleaned_length_m, s.deep_cleaned_area_m2),
        missed,
        passes: work.working_passes as usize,
        valid_passes: work.valid_passes as usize,
    }
}

/// Every segment in `scope` with its status, as the JSON text of an array of GeoJSON
/// Features of LineStrings: each segment's feature ([`segment_feature`]) is rendered once
/// per process, a request adds its status.
pub fn status_features_json(
    ctx: &CoverageContext,
    statuses: &[SegmentStatus],
    scope: &Scope,
) -> String {
    let heads = ctx.rendered.feature_heads.get_or_init(|| {
        ctx.network
            .segments()
            .iter()
            .map(|s| {
                let feature = segment_feature(ctx, s);
                let properties = feature["properties"].to_string();
                // Left open after the properties, for the status.
                format!(
                    r#"{{"type":"Feature","geometry":{},"properties":{}"#,
                    feature["geometry"],
                    &properties[..properties.len() - 1]
                )
            })
            .collect()
    });
    let mut out = String::from("[");
    for status in statuses {
        let s = &ctx.network.segments()[status.segment as usize];
        if !scope.contains(s) {
            continue;
        }
        if out.len() > 1 {
            out.push(',');
        }
        out.push_str(&heads[s.id as usize]);
        let missed = match status.missed {
            Some(reason) => format!("\"{}\"", reason.as_str()),
            None => "null".to_owned(),
        };
        out.push_str(&format!(
            ",\"covered\":{},\"covered_ratio\":{},\"mechanised\":{},\"deep_cleaned\":{},\"missed\":{missed}}}}}",
            status.covered,
            json!(status.covered_ratio),
            status.mechanised,
            status.deep_cleaned,
        ));
    }
    out.push(']');
    out
}

/// A segment as a GeoJSON Feature: its line, attributes, section, contractor and grid cell.
pub fn segment_feature(ctx: &CoverageContext, s: &Segment) -> Value {
    let section = ctx.zones.section_of(s.id);
    json!({
        "type": "Feature",
        "geometry": {
            "type": "LineString",
            "coordinates": s.points.iter().map(|&(lon, lat)| json!([lon, lat])).collect::<Vec<_>>(),
        },
        "properties": {
            "segment": s.id,
            "osm_way_id": s.osm_way_id,
            "name": s.name,
            "class": s.class.to_string(),
            "oneway": s.oneway,
            "length_m": s.length_m,
            "width_m": s.width_m,
            "section": section.map(|z| z.id.clone()),
            "contractor": section.and_then(|z| z.contractor.clone()),
            "grid": ctx.zones.grid_of(s.id).map(|z| z.id.clone()),
        },
    })
}

/// One day's shares (of length and of area) in a range.
#[derive(Debug, Clone, PartialEq, Serialize, ToSchema)]
pub struct DayShares {
    pub date: String,
    pub covered_share_by_length: f64,
    pub covered_share_by_area: f64,
    pub mechanised_rate_by_length: f64,
    pub mechanised_rate_by_area: f64,
    pub deep_cleaned_share_by_length: f64,
    pub deep_cleaned_share_by_area: f64,
    pub valid_passes: usize,
}

/// Day by day over a range, and the means of the days.
#[derive(Debug, Clone, PartialEq, Serialize, ToSchema)]
pub struct DailyCoverage {
    pub scope: String,
    pub segments: usize,
    pub total_length_m: f64,
    pub total_area_m2: f64,
    pub days: Vec<DayShares>,
    /// Means of the days' shares.
    pub mean: DayShares,
}

/// Each of `days` (in order, at least one): its covered, mechanised and deep-cleaned shares
/// of `scope` and valid passes, and their means.
pub fn daily_coverage(
    ctx: &CoverageContext,
    scope: &Scope,
    days: impl IntoIterator<Item = (Date, DayStatus)>,
) -> DailyCoverage {
    // The scope's extent: the same on every day (a status per segment each day).
    let mut totals = CoverageSummary::default();
    let mut rows = Vec::new();
    let (mut first, mut last) = (None, None);
    for (date, day) in days {
        let (s, work) = day.summary(&ctx.network, |s| scope.contains(s));
        rows.push(shares(date.to_string(), &s, work.valid_passes as usize));
        totals = s;
        first.get_or_insert(date);
        last = Some(date);
    }
    let n = rows.len().max(1) as f64;
    let mean = |f: fn(&DayShares) -> f64| rows.iter().map(f).sum::<f64>() / n;
    let mean_row = DayShares {
        date: match (first, last) {
            (Some(first), Some(last)) => format!("{first}/{last}"),
            _ => String::new(),
        },
        covered_share_by_length: mean(|r| r.covered_share_by_length),
        covered_share_by_area: mean(|r| r.covered_share_by_area),
        mechanised_rate_by_length: mean(|r| r.mechanised_rate_by_length),
        mechanised_rate_by_area: mean(|r| r.mechanised_rate_by_area),
        deep_cleaned_share_by_length: mean(|r| r.deep_cleaned_share_by_length),
        deep_cleaned_share_by_area: mean(|r| r.deep_cleaned_share_by_area),
        valid_passes: rows.iter().map(|r| r.valid_passes).sum::<usize>() / rows.len().max(1),
    };
    DailyCoverage {
        scope: scope.name().to_owned(),
        segments: totals.segments,
        total_length_m: totals.total_length_m,
        total_area_m2: totals.total_area_m2,
        days: rows,
        mean: mean_row,
    }
}

fn shares(date: String, s: &CoverageSummary, valid_passes: usize) -> DayShares {
    DayShares {
        date,
        covered_share_by_length: ratio(s.covered_length_m, s.total_length_m),
        covered_share_by_area: ratio(s.covered_area_m2, s.total_area_m2),
        mechanised_rate_by_length: ratio(s.mechanised_length_m, s.total_length_m),
        mechanised_rate_by_area: ratio(s.mechanised_area_m2, s.total_area_m2),
        deep_cleaned_share_by_length: ratio(s.deep_cleaned_length_m, s.total_length_m),
        deep_cleaned_share_by_area: ratio(s.deep_cleaned_area_m2, s.total_area_m2),
        valid_passes,
    }
}

/// A section's day: its coverage against its plan.
#[derive(Debug, Clone, PartialEq, Serialize, ToSchema)]
pub struct SectionDay {
    pub section: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub contractor: Option<String>,
    pub segments: usize,
    pub length_m: f64,
    pub covered_share_by_length: f64,
    pub covered_share_by_area: f64,
    pub mechanised_rate_by_length: f64,
    pub deep_cleaned_share_by_length: f64,
    /// Segments not covered (漏扫).
    pub missed_segments: usize,
    /// Traversals with the tools on.
    pub passes: usize,
    pub valid_passes: usize,
    pub valid_mileage_m: f64,
    /// From `[[coverage.plans]]`; absent without a plan.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub planned_passes: Option<f64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub planned_mileage_m: Option<f64>,
}

/// Per section with segments in `scope` (only those count): coverage shares, missed
/// segments, passes and valid passes and mileage against the plan.
pub fn section_days(ctx: &CoverageContext, day: &DayStatus, scope: &Scope) -> Vec<SectionDay> {
    let mut sections = Vec::new();
    for zone in ctx.zones.sections() {
        let members: HashSet<u32> = zone
            .segments
            .iter()
            .copied()
            .filter(|&s| scope.contains(&ctx.network.segments()[s as usize]))
            .collect();
        if members.is_empty() {
            continue;
        }
        let (s, work) = day.summary(&ctx.network, |seg| members.contains(&seg.id));
        let plan = ctx.plans.iter().find(|p| p.section == zone.id);
        let sides = |id: &u32| ctx.rules.sides(&ctx.network.segments()[*id as usize]);
        let sides_m: f64 = members
            .iter()
            .map(|id| f64::from(sides(id)) * ctx.network.segments()[*id as usize].length_m)
            .sum();
        let sides: u32 = members.iter().map(sides).sum();
        sections.push(SectionDay {
            section: zone.id.clone(),
            name: zone.name.clone(),
            contractor: zone.contractor.clone(),
            segments: s.segments,
            length_m: s.total_length_m,
            covered_share_by_length: s.covered_share_by_length(),
            covered_share_by_area: s.covered_share_by_area(),
            mechanised_rate_by_length: s.mechanised_rate_by_length(),
            deep_cleaned_share_by_length: s.deep_cleaned_share_by_length(),
            missed_segments: day
                .statuses
                .iter()
                .filter(|st| members.contains(&st.segment) && !st.covered)
                .count(),
            passes: work.working_passes as usize,
            valid_passes: work.valid_passes as usize,
            valid_mileage_m: work.valid_mileage_m,
            planned_passes: plan.map(|p| p.passes_per_side * f64::from(sides)),
            planned_mileage_m: plan.map(|p| p.passes_per_side * sides_m),
        });
    }
    sections
}

/// A section or grid cell with the extent of its streets.
#[derive(Debug, Clone, PartialEq, Serialize, ToSchema)]
pub struct ZoneView {
    pub id: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub contractor: Option<String>,
    pub segments: usize,
    pub length_m: f64,
    pub area_m2: f64,
}

#[derive(Debug, Clone, PartialEq, Serialize, ToSchema)]
pub struct ZoneList {
    pub sections: Vec<ZoneView>,
    pub grids: Vec<ZoneView>,
}

/// The city's sections (with their contractors) and grid cells as `viewer` may see them: a
/// contractor its own sections and no grid cells (they are the city's).
pub fn zone_list(ctx: &CoverageContext, viewer: Option<&str>) -> ZoneList {
    let view = |zone: &Zone| {
        let segments = || {
            zone.segments
                .iter()
                .map(|&s| &ctx.network.segments()[s as usize])
        };
        ZoneView {
            id: zone.id.clone(),
            name: zone.name.clone(),
            contractor: zone.contractor.clone(),
            segments: zone.segments.len(),
            length_m: segments().map(|s| s.length_m).sum(),
            area_m2: segments().map(|s| s.length_m * s.width_m).sum(),
        }
    };
    let visible = |z: &&Zone| viewer.is_none() || z.contractor.as_deref() == viewer;
    ZoneList {
        sections: ctx
            .zones
            .sections()
            .iter()
            .filter(visible)
            .map(view)
            .collect(),
        grids: match viewer {
            None => ctx.zones.grids().iter().map(view).collect(),
            Some(_) => Vec::new(),
        },
    }
}

fn ratio(part: f64, whole: f64) -> f64 {
    if whole > 0.0 {
        part / whole
    } else {
        0.0
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::context::tests::demo_context;
    use crate::vehicles::tests::pass;
    use cleanfleet_coverage::MissReason;

    /// The rendered text is each segment's feature with its status among the properties.
    #[test]
    fn status_features_are_segment_features_with_their_status() {
        let ctx = demo_context(None);
        let mut statuses = DayStatus::idle(&ctx).statuses;
        statuses[3].covered = true;
        statuses[3].covered_ratio = 0.97;
        statuses[3].missed = None;
        statuses[5].missed = Some(MissReason::Partial);
        let section = ctx.zones.sections()[0].id.clone();
        let scopes = [
            Scope::city(),
            Scope::new(
                &ctx,
                &crate::ScopeSpec {
                    section: Some(section),
                    ..Default::default()
                },
            )
            .unwrap(),
        ];
        for scope in &scopes {
            for _ in 0..2 {
                let text = status_features_json(&ctx, &statuses, scope);
                let features: Vec<Value> = serde_json::from_str(&text).unwrap();
                let expected: Vec<Value> = statuses
                    .iter()
                    .map(|st| (st, &ctx.network.segments()[st.segment as usize]))
                    .filter(|(_, s)| scope.contains(s))
                    .map(|(st, s)| {
                        let mut feature = segment_feature(&ctx, s);
                        let properties = &mut feature["properties"];
                        properties["covered"] = json!(st.covered);
                        properties["covered_ratio"] = json!(st.covered_ratio);
                        properties["mechanised"] = json!(st.mechanised);
                        properties["deep_cleaned"] = json!(st.deep_cleaned);
                        properties["missed"] = json!(st.missed.map(MissReason::as_str));
                        feature
                    })
                    .collect();
                assert!(!expected.is_empty());
                // Both through the same text, as a client reads them (serde_json's default
                // parsing may round a float's last digit).
                let expected: Vec<Value> =
                    serde_json::from_str(&Value::from(expected).to_string()).unwrap();
                assert_eq!(features.len(), expected.len());
                for (a, b) in features.iter().zip(&expected) {
                    assert_eq!(a, b, "{}", scope.name());
                }
            }
        }
    }

    #[test]
    fn a_day_by_day_report_judges_each_day_by_its_own_passes() {
        let ctx = demo_context(None);
        let segment = &ctx.network.segments()[3];
        let pass = |start_s: i64| PassRecord {
            to_m: segment.length_m,
            end: Timestamp::from_second(1_800_000_000 + start_s + 600).unwrap(),
            ..pass("sw-01", 3, start_s, segment.length_m, None, 6.0)
        };
        // Both directions (a main road needs both), on the first day only.
        let records = [
            pass(0),
            PassRecord {
                forward: false,
                ..pass(700)
            },
        ];
        let first = Timestamp::from_second(1_800_000_000 - 3600).unwrap();
        let day_s = jiff::SignedDuration::from_hours(24);
        let date = Date::constant(2027, 1, 15);
        let days = [
            (date, first, first + day_s),
            (
                date.tomorrow().unwrap(),
                first + day_s,
                first + day_s + day_s,
            ),
        ];
        let days =
            days.map(|(date, from, to)| (date, DayStatus::between(&ctx, &records, from, to)));
        let report = daily_coverage(&ctx, &Scope::city(), days);
        assert_eq!(report.days.len(), 2);
        let (one, two) = (&report.days[0], &report.days[1]);
        let expected = segment.length_m / report.total_length_m;
        assert!(
            (one.covered_share_by_length - expected).abs() < 1e-12,
            "{one:?}"
        );
        assert_eq!((one.valid_passes, two.valid_passes), (2, 0));
        assert_eq!(two.covered_share_by_length, 0.0);
        assert!((report.mean.covered_share_by_length - expected / 2.0).abs() < 1e-12);
        assert_eq!(report.mean.date, "2027-01-15/2027-01-16");
    }
}
