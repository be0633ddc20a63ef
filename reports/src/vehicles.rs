//! Vehicles' days: what each vehicle (or crew wearable) drove and worked on a day. The
//! coverage stage stores a vehicle's day, one row per section it drove in
//! ([`vehicle_day_rows`]), whenever its passes of the day change; reports add up the rows a
//! scope and a viewer select ([`vehicle_days`]), never the passes.

use std::collections::{BTreeMap, BTreeSet};

use cleanfleet_coverage::InvalidReason;
use cleanfleet_model::DeviceId;
use cleanfleet_roads::{RoadNetwork, Zone, Zones};
use cleanfleet_store::{PassRecord, VehicleDayRecord};
use jiff::civil::Date;
use jiff::Timestamp;
use serde::Serialize;
use utoipa::ToSchema;

use crate::days::is_working;

/// Passes further apart than this start a new overspeed event.
pub const OVERSPEED_EVENT_GAP_S: f64 = 60.0;

/// One vehicle's (or crew member's) work on a day.
#[derive(Debug, Clone, Default, PartialEq, Serialize, ToSchema)]
pub struct VehicleDay {
    pub device_id: String,
    /// Every traversal matched to the road, tools on or off.
    pub passes: usize,
    /// Traversals with the tools on.
    pub working_passes: usize,
    pub valid_passes: usize,
    /// Driven on the road network, as matched.
    pub mileage_m: f64,
    pub working_mileage_m: f64,
    pub valid_mileage_m: f64,
    /// Working distance over working time.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub mean_working_speed_kmh: Option<f64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub max_working_speed_kmh: Option<f64>,
    /// Runs of overspeed work (超速作业), however many passes each spans.
    pub overspeed_events: usize,
    /// Sections it worked in.
    pub sections: Vec<String>,
}

/// The rows of `day` from passes of that day (of any devices, in any order): one per device,
/// section it drove in (`None`: outside every section) and road class there, in that order.
/// A pass on a segment this network does not have counts nowhere.
pub fn vehicle_day_rows(
    network: &RoadNetwork,
    zones: &Zones,
    day: Date,
    passes: &[PassRecord],
) -> Vec<VehicleDayRecord> {
    let mut groups: BTreeMap<(&DeviceId, Option<&str>, &str), Vec<&PassRecord>> = BTreeMap::new();
    for p in passes {
        let Some(segment) = network.segments().get(p.segment as usize) else {
            continue;
        };
        let section = zones.section_of(p.segment).map(|z| z.id.as_str());
        let key = (&p.device_id, section, segment.class.as_str());
        groups.entry(key).or_default().push(p);
    }
    groups
        .into_iter()
        .map(|((device_id, section, road_class), mut passes)| {
            // Sums in time order, whatever order the passes came in.
            passes.sort_by_key(|p| (p.start, p.end));
            let mut row = VehicleDayRecord {
                day,
                device_id: device_id.clone(),
                section: section.map(str::to_owned),
                road_class: road_class.to_owned(),
                passes: 0,
                working_passes: 0,
                valid_passes: 0,
                mileage_m: 0.0,
                working_mileage_m: 0.0,
                valid_mileage_m: 0.0,
                working_s: 0.0,
                max_working_speed_kmh: None,
                overspeed_runs: overspeed_runs(passes.iter().copied()),
            };
            for p in &passes {
                let length_m = p.to_m - p.from_m;
                row.passes += 1;
                row.mileage_m += length_m;
                if !is_working(p) {
                    continue;
                }
                row.working_passes += 1;
                row.working_mileage_m += length_m;
                row.working_s += p.end.duration_since(p.start).as_secs_f64();
                row.max_working_speed_kmh = Some(
                    row.max_working_speed_kmh
                        .unwrap_or(0.0)
                        .max(p.max_speed_kmh),
                );
                if p.invalid.is_none() {
                    row.valid_passes += 1;
                    row.valid_mileage_m += length_m;
                }
            }
            row
        })
        .collect()
}

/// The section a vehicle's row is of, among the city's `zones` (`None`: outside every
/// section).
pub fn section_of_row<'a>(zones: &'a Zones, row: &VehicleDayRecord) -> Option<&'a Zone> {
    row.section.as_deref().and_then(|id| zones.section(id))
}

/// Per device, the sum of its `rows` (those a scope and a viewer select, of one day): passes,
/// valid passes, actual and valid mileage, mean and max working speed, overspeed-work events
/// (runs that continue from one section into the next are one); by device id.
pub fn vehicle_days<'a>(rows: impl IntoIterator<Item = &'a VehicleDayRecord>) -> Vec<VehicleDay> {
    let mut by_device: BTreeMap<&str, Vec<&VehicleDayRecord>> = BTreeMap::new();
    for r in rows {
        by_device.entry(&r.device_id).or_default().push(r);
    }
    by_device
        .into_iter()
        .map(|(device_id, rows)| {
            let mut day = VehicleDay {
                device_id: device_id.to_owned(),
                ..VehicleDay::default()
            };
            let mut working_s = 0.0;
            let mut sections = BTreeSet::new();
            for r in &rows {
                day.passes += r.passes as usize;
                day.working_passes += r.working_passes as usize;
                day.valid_passes += r.valid_passes as usize;
                day.mileage_m += r.mileage_m;
                day.working_mileage_m += r.working_mileage_m;
                day.valid_mileage_m += r.valid_mileage_m;
                working_s += r.working_s;
                if let Some(max) = r.max_working_speed_kmh {
                    day.max_working_speed_kmh =
                        Some(day.max_working_speed_kmh.unwrap_or(0.0).max(max));
                }
                if let Some(section) = r.section.as_deref().filter(|_| r.working_passes > 0) {
                    sections.insert(section);
                }
            }
            day.overspeed_events = merged_runs(
                rows.iter()
                    .flat_map(|r| r.overspeed_runs.iter().copied())
                    .collect(),
            )
            .len();
            day.mean_working_speed_kmh =
                (working_s > 0.0).then(|| day.working_mileage_m / working_s * 3.6);
            day.sections = sections.into_iter().map(str::to_owned).collect();
            day
        })
        .collect()
}

/// Runs of overspeed work (超速作业) among one device's passes: passes of overspeed work at
/// most [`OVERSPEED_EVENT_GAP_S`] apart are one run, however many they are. Each run as (start
/// of its first pass, end of its last), by start.
pub fn overspeed_runs<'a>(
    passes: impl IntoIterator<Item = &'a PassRecord>,
) -> Vec<(Timestamp, Timestamp)> {
    merged_runs(
        passes
            .into_iter()
            .filter(|p| p.invalid == Some(InvalidReason::Overspeed))
            .map(|p| (p.start, p.end))
            .collect(),
    )
}

/// One device's runs of overspeed work (from several sections, in any order) merged where one
/// starts at most [`OVERSPEED_EVENT_GAP_S`] after the runs before it end: the runs of all
/// their passes together, since one device's passes do not overlap in time.
pub fn merged_runs(mut runs: Vec<(Timestamp, Timestamp)>) -> Vec<(Timestamp, Timestamp)> {
    runs.sort_unstable();
    let mut merged: Vec<(Timestamp, Timestamp)> = Vec::with_capacity(runs.len());
    for (start, end) in runs {
        match merged.last_mut() {
            Some(last) if start.duration_since(last.1).as_secs_f64() <= OVERSPEED_EVENT_GAP_S => {
                last.1 = last.1.max(end);
            }
            _ => merged.push((start, end)),
        }
    }
    merged
}

#[cfg(test)]
pub(crate) mod tests {
    use proptest::prelude::*;

    use super::*;
    use crate::context::tests::demo_context;
    use crate::{may_see_work, CoverageContext, Scope, ScopeSpec};
    use cleanfleet_coverage::WorkType;
    use cleanfleet_roads::RoadClass;

    const DAY: Date = Date::constant(2027, 1, 15);

    /// A pass of `device` on `segment` from `start_s` after a fixed time, `length_m` long at
    /// 6 km/h.
    pub(crate) fn pass(
        device: &str,
        segment: u32,
        start_s: i64,
        length_m: f64,
        invalid: Option<InvalidReason>,
        max_speed_kmh: f64,
    ) -> PassRecord {
        let start = Timestamp::from_second(1_800_000_000 + start_s).unwrap();
        PassRecord {
            device_id: device.into(),
            segment,
            forward: true,
            from_m: 0.0,
            to_m: length_m,
            start,
            // 6 km/h: 100 m a minute.
            end: start + jiff::SignedDuration::from_secs_f64(length_m / 100.0 * 60.0),
            work: WorkType::Sweep,
            invalid,
            max_speed_kmh,
        }
    }

    /// The day's work per device straight from the passes `keep` selects, pass by pass: what
    /// the rows must add up to.
    fn from_passes(
        ctx: &CoverageContext,
        passes: &[PassRecord],
        keep: impl Fn(&PassRecord) -> bool,
    ) -> Vec<VehicleDay> {
        let mut by_device: BTreeMap<&str, Vec<&PassRecord>> = BTreeMap::new();
        for p in passes.iter().filter(|p| keep(p)) {
            by_device.entry(&p.device_id).or_default().push(p);
        }
        by_device
            .into_iter()
            .map(|(device_id, mut passes)| {
                passes.sort_by_key(|p| p.start);
                let mut day = VehicleDay {
                    device_id: device_id.to_owned(),
                    ..VehicleDay::default()
                };
                let (mut working_s, mut sections) = (0.0, BTreeSet::new());
                let mut last_overspeed: Option<&PassRecord> = None;
                for p in &passes {
                    let length_m = p.to_m - p.from_m;
                    day.passes += 1;
                    day.mileage_m += length_m;
                    if !is_working(p) {
                        continue;
                    }
                    day.working_passes += 1;
                    day.working_mileage_m += length_m;
                    working_s += p.end.duration_since(p.start).as_secs_f64();
                    day.max_working_speed_kmh = Some(
                        day.max_working_speed_kmh
                            .unwrap_or(0.0)
                            .max(p.max_speed_kmh),
                    );
                    if p.invalid.is_none() {
                        day.valid_passes += 1;
                        day.valid_mileage_m += length_m;
                    }
                    if let Some(z) = ctx.zones.section_of(p.segment) {
                        sections.insert(z.id.clone());
                    }
                    if p.invalid == Some(InvalidReason::Overspeed) {
                        let continues = last_overspeed.is_some_and(|l| {
                            p.start.duration_since(l.end).as_secs_f64() <= OVERSPEED_EVENT_GAP_S
                        });
                        day.overspeed_events += usize::from(!continues);
                        last_overspeed = Some(p);
                    }
                }
                day.mean_working_speed_kmh =
                    (working_s > 0.0).then(|| day.working_mileage_m / working_s * 3.6);
                day.sections = sections.into_iter().collect();
                day
            })
            .collect()
    }

    fn assert_same(rows: &[VehicleDay], passes: &[VehicleDay]) -> Result<(), TestCaseError> {
        prop_assert_eq!(rows.len(), passes.len());
        for (a, b) in rows.iter().zip(passes) {
            let close = |x: f64, y: f64| (x - y).abs() < 1e-6;
            prop_assert_eq!(&a.device_id, &b.device_id);
            prop_assert_eq!(
                (
                    a.passes,
                    a.working_passes,
                    a.valid_passes,
                    a.overspeed_events
                ),
                (
                    b.passes,
                    b.working_passes,
                    b.valid_passes,
                    b.overspeed_events
                ),
                "{}",
                a.device_id
            );
            prop_assert!(
                close(a.mileage_m, b.mileage_m) && close(a.valid_mileage_m, b.valid_mileage_m)
            );
            prop_assert!(close(a.working_mileage_m, b.working_mileage_m));
            prop_assert_eq!(a.max_working_speed_kmh, b.max_working_speed_kmh);
            prop_assert_eq!(
                a.mean_working_speed_kmh.is_some(),
                b.mean_working_speed_kmh.is_some()
            );
            if let (Some(x), Some(y)) = (a.mean_working_speed_kmh, b.mean_working_speed_kmh) {
                prop_assert!(close(x, y));
            }
            prop_assert_eq!(&a.sections, &b.sections);
        }
        Ok(())
    }

    #[test]
    fn a_vehicles_day_sums_its_passes_and_counts_overspeed_runs_once() {
        let ctx = demo_context(None);
        let passes = [
            pass("sw-01", 3, 0, 100.0, Some(InvalidReason::ToolOff), 30.0),
            pass("sw-01", 3, 100, 200.0, None, 7.0),
            pass("sw-01", 3, 300, 50.0, Some(InvalidReason::Overspeed), 11.0),
            pass("sw-01", 3, 330, 50.0, Some(InvalidReason::Overspeed), 12.0),
            pass(
                "sw-01",
                3,
                1000,
                100.0,
                Some(InvalidReason::Overspeed),
                10.0,
            ),
            pass("sw-01", 3, 2000, 5.0, Some(InvalidReason::TooShort), 6.0),
        ];
        let rows = vehicle_day_rows(&ctx.network, &ctx.zones, DAY, &passes);
        assert_eq!(rows.len(), 1);
        assert_eq!(rows[0].overspeed_runs.len(), 2);
        let days = vehicle_days(&rows);
        assert_eq!(days.len(), 1);
        let d = &days[0];
        assert_eq!((d.passes, d.working_passes, d.valid_passes), (6, 5, 1));
        assert_eq!(
            (d.mileage_m, d.working_mileage_m, d.valid_mileage_m),
            (505.0, 405.0, 200.0)
        );
        assert_eq!(d.overspeed_events, 2, "two runs of overspeed work");
        assert_eq!(d.max_working_speed_kmh, Some(12.0));
        assert!((d.mean_working_speed_kmh.unwrap() - 6.0).abs() < 1e-9);
        assert_eq!(d.sections, [ctx.zones.section_of(3).unwrap().id.clone()]);
    }

    /// A run of overspeed work that drives on from one section into the next is one event,
    /// though each section's row holds its part.
    #[test]
    fn an_overspeed_run_across_sections_is_one_event() {
        let ctx = demo_context(None);
        let segments = ctx.network.segments();
        let a = segments[0].id;
        let b = segments
            .iter()
            .find(|s| {
                ctx.zones.section_of(s.id).map(|z| &z.id) != ctx.zones.section_of(a).map(|z| &z.id)
            })
            .unwrap()
            .id;
        let overspeed = Some(InvalidReason::Overspeed);
        let passes = [
            pass("sw-01", a, 0, 50.0, overspeed, 12.0),
            pass("sw-01", b, 40, 50.0, overspeed, 12.0),
            pass("sw-01", a, 90, 50.0, overspeed, 12.0),
        ];
        let rows = vehicle_day_rows(&ctx.network, &ctx.zones, DAY, &passes);
        assert!(rows.len() >= 2);
        assert_eq!(vehicle_days(&rows)[0].overspeed_events, 1);
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(64))]

        /// For every viewer and every scope of whole sections and road classes, the rows the
        /// stage stores add up to what the day's passes give, pass by pass.
        #[test]
        fn vehicles_rows_add_up_to_their_passes(
            drawn in prop::collection::vec(
                (0usize..5, 0usize..40, 1.0f64..300.0, 0i64..200, 0usize..5, 4.0f64..20.0),
                0..80,
            ),
        ) {
            const DEVICES: [&str; 5] = ["sw-01", "sw-02", "sw-03", "fl-01", "cw-09"];
            const INVALID: [Option<InvalidReason>; 5] = [
                None,
                None,
                Some(InvalidReason::Overspeed),
                Some(InvalidReason::ToolOff),
                Some(InvalidReason::PoorGps),
            ];
            let ctx = demo_context(None);
            let segments = ctx.network.segments();
            // Each device drives its passes one after another, with pauses between.
            let mut clock = [0i64; 5];
            let passes: Vec<PassRecord> = drawn
                .into_iter()
                .map(|(device, segment, length_m, pause_s, invalid, speed)| {
                    let p = pass(
                        DEVICES[device],
                        segments[segment % segments.len()].id,
                        clock[device] + pause_s,
                        length_m,
                        INVALID[invalid],
                        speed,
                    );
                    clock[device] = p.end.as_second() - 1_800_000_000 + 1;
                    p
                })
                .collect();
            let rows = vehicle_day_rows(&ctx.network, &ctx.zones, DAY, &passes);
            let mut specs = vec![ScopeSpec::default()];
            for z in ctx.zones.sections() {
                specs.push(ScopeSpec { section: Some(z.id.clone()), ..ScopeSpec::default() });
                if let Some(c) = &z.contractor {
                    specs.push(ScopeSpec::contractor(c));
                }
            }
            for class in [RoadClass::I, RoadClass::III] {
                let with_class: Vec<ScopeSpec> = specs
                    .iter()
                    .map(|s| ScopeSpec { class: Some(class), ..s.clone() })
                    .collect();
                specs.extend(with_class);
            }
            let mut viewers: Vec<Option<&str>> = vec![None];
            viewers.extend(ctx.zones.sections().iter().map(|z| z.contractor.as_deref()));
            for spec in &specs {
                let scope = Scope::new(&ctx, spec).unwrap();
                let in_scope = scope.row_filter().expect("whole sections and classes");
                for &viewer in &viewers {
                    let selected = rows.iter().filter(|r| {
                        let section = section_of_row(&ctx.zones, r);
                        in_scope(section, &r.road_class)
                            && crate::may_see_work_in(&ctx.zones, viewer, &r.device_id, section)
                    });
                    let expected = from_passes(&ctx, &passes, |p| {
                        scope.contains(&segments[p.segment as usize])
                            && may_see_work(&ctx.zones, viewer, &p.device_id, p.segment)
                    });
                    assert_same(&vehicle_days(selected), &expected)?;
                }
            }
        }
    }
}
