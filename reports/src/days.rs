//! A day's status of every segment and the work done on it: what day reports are made of.
//! The coverage stage stores a segment's day ([`segment_day`]) whenever that segment's passes
//! of the day change, so that a report reads at most one row per segment and day, never
//! passes; [`DayStatus::from_passes`] computes the same from the passes themselves.

use cleanfleet_coverage::{
    segment_status, status_of, CoverageRules, CoverageSummary, InvalidReason, MissReason,
    SegmentStatus,
};
use cleanfleet_roads::{RoadNetwork, Segment};
use cleanfleet_store::{PassRecord, SegmentDayRecord};
use jiff::civil::Date;
use jiff::Timestamp;

use crate::{engine_passes, CoverageContext};

/// The work on a segment in a day: passes with the tools on, valid ones, their mileage.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct SegmentWork {
    pub working_passes: u32,
    pub valid_passes: u32,
    pub valid_mileage_m: f64,
}

impl SegmentWork {
    fn add(&mut self, other: &SegmentWork) {
        self.working_passes += other.working_passes;
        self.valid_passes += other.valid_passes;
        self.valid_mileage_m += other.valid_mileage_m;
    }

    /// Of one segment's passes, in their order.
    fn of<'a>(passes: impl IntoIterator<Item = &'a PassRecord>) -> SegmentWork {
        let mut work = SegmentWork::default();
        for p in passes.into_iter().filter(|p| is_working(p)) {
            work.working_passes += 1;
            if p.invalid.is_none() {
                work.valid_passes += 1;
                work.valid_mileage_m += p.to_m - p.from_m;
            }
        }
        work
    }
}

/// With the tools on (every pass but a `tool_off` one).
pub(crate) fn is_working(r: &PassRecord) -> bool {
    r.invalid != Some(InvalidReason::ToolOff)
}

/// Every segment's status and work on one day, in segment order.
#[derive(Debug, Clone, PartialEq)]
pub struct DayStatus {
    pub statuses: Vec<SegmentStatus>,
    pub work: Vec<SegmentWork>,
}

impl DayStatus {
    /// A day without passes: every segment's status from none.
    pub fn idle(ctx: &CoverageContext) -> DayStatus {
        DayStatus {
            statuses: segment_status(&ctx.network, &[], &ctx.rules),
            work: vec![SegmentWork::default(); ctx.network.segments().len()],
        }
    }

    /// From the day's passes (those starting in it), of any vehicles in any order.
    pub fn from_passes(ctx: &CoverageContext, records: &[PassRecord]) -> DayStatus {
        let statuses = segment_status(
            &ctx.network,
            &engine_passes(&ctx.network, records),
            &ctx.rules,
        );
        let mut by_segment: Vec<Vec<&PassRecord>> = vec![Vec::new(); statuses.len()];
        for r in records {
            if let Some(passes) = by_segment.get_mut(r.segment as usize) {
                passes.push(r);
            }
        }
        DayStatus {
            statuses,
            work: by_segment
                .iter()
                .map(|passes| SegmentWork::of(passes.iter().copied()))
                .collect(),
        }
    }

    /// From those of `records` that start in `from..to`.
    pub fn between(
        ctx: &CoverageContext,
        records: &[PassRecord],
        from: Timestamp,
        to: Timestamp,
    ) -> DayStatus {
        let within: Vec<PassRecord> = records
            .iter()
            .filter(|r| from <= r.start && r.start < to)
            .cloned()
            .collect();
        DayStatus::from_passes(ctx, &within)
    }

    /// `idle` ([`DayStatus::idle`]) with the stored rows of the day in place of its segments';
    /// a row of a segment this network does not have is ignored.
    pub fn from_rows(idle: &DayStatus, rows: &[SegmentDayRecord]) -> DayStatus {
        let mut day = idle.clone();
        for row in rows {
            let Some(status) = day.statuses.get_mut(row.segment as usize) else {
                continue;
            };
            *status = SegmentStatus {
                segment: row.segment,
                covered: row.covered,
                mechanised: row.mechanised,
                deep_cleaned: row.deep_cleaned,
                covered_ratio: row.covered_ratio,
                missed: row.missed.as_deref().and_then(MissReason::parse),
            };
            day.work[row.segment as usize] = SegmentWork {
                working_passes: row.working_passes,
                valid_passes: row.valid_passes,
                valid_mileage_m: row.valid_mileage_m,
            };
        }
        day
    }

    /// The shares of the segments `in_scope` selects, and the work on them.
    pub fn summary(
        &self,
        network: &RoadNetwork,
        in_scope: impl Fn(&Segment) -> bool,
    ) -> (CoverageSummary, SegmentWork) {
        let summary = CoverageSummary::of(network, &self.statuses, &in_scope);
        let mut work = SegmentWork::default();
        for (segment, w) in network.segments().iter().zip(&self.work) {
            if in_scope(segment) {
                work.add(w);
            }
        }
        (summary, work)
    }
}

/// `segment`'s row for `day` from `passes`, all of its passes starting that day (by start
/// time, as the store returns them); `None` when it has none (its status is then that of no
/// passes).
pub fn segment_day(
    network: &RoadNetwork,
    rules: &CoverageRules,
    day: Date,
    segment: u32,
    passes: &[PassRecord],
) -> Option<SegmentDayRecord> {
    let s = network.segments().get(segment as usize)?;
    debug_assert!(passes.iter().all(|p| p.segment == segment));
    if passes.is_empty() {
        return None;
    }
    let engine = engine_passes(network, passes);
    let status = status_of(s, &engine.iter().collect::<Vec<_>>(), rules);
    let work = SegmentWork::of(passes);
    Some(SegmentDayRecord {
        day,
        segment,
        covered: status.covered,
        mechanised: status.mechanised,
        deep_cleaned: status.deep_cleaned,
        covered_ratio: status.covered_ratio,
        missed: status.missed.map(|m| m.as_str().to_owned()),
        working_passes: work.working_passes,
        valid_passes: work.valid_passes,
        valid_mileage_m: work.valid_mileage_m,
    })
}

#[cfg(test)]
pub(crate) mod tests {
    use proptest::prelude::*;

    use super::*;
    use crate::context::tests::demo_context;
    use cleanfleet_coverage::WorkType;

    /// The segments' and vehicles' rows the coverage stage stores for `day` from its passes.
    pub(crate) fn rows_of_day(
        ctx: &CoverageContext,
        day: Date,
        passes: &[PassRecord],
    ) -> (
        Vec<SegmentDayRecord>,
        Vec<cleanfleet_store::VehicleDayRecord>,
    ) {
        let mut segments: Vec<u32> = passes.iter().map(|p| p.segment).collect();
        segments.sort_unstable();
        segments.dedup();
        let segment_rows = segments
            .iter()
            .filter_map(|&s| {
                let of_segment: Vec<PassRecord> =
                    passes.iter().filter(|p| p.segment == s).cloned().collect();
                segment_day(&ctx.network, &ctx.rules, day, s, &of_segment)
            })
            .collect();
        let vehicle_rows = crate::vehicle_day_rows(&ctx.network, &ctx.zones, day, passes);
        (segment_rows, vehicle_rows)
    }

    const WORK: [WorkType; 4] = [
        WorkType::Sweep,
        WorkType::WashSweep,
        WorkType::Flush,
        WorkType::Sprinkle,
    ];
    const INVALID: [Option<InvalidReason>; 4] = [
        None,
        None,
        Some(InvalidReason::Overspeed),
        Some(InvalidReason::ToolOff),
    ];

    /// A pass of the demo town from drawn numbers: on a segment, a stretch of it, some time
    /// of a day, some work, valid or not.
    fn pass(
        ctx: &CoverageContext,
        (segment, forward, a, b, start_s, work, invalid, device): (
            usize,
            bool,
            f64,
            f64,
            i64,
            usize,
            usize,
            u8,
        ),
    ) -> PassRecord {
        let segments = ctx.network.segments();
        let s = &segments[segment % segments.len()];
        let (a, b) = (a.min(b) * s.length_m, a.max(b) * s.length_m);
        let start = Timestamp::from_second(1_800_000_000 + start_s).unwrap();
        PassRecord {
            device_id: format!("sw-{device:02}").into(),
            segment: s.id,
            forward,
            from_m: a,
            to_m: b,
            start,
            end: start + jiff::SignedDuration::from_secs_f64((b - a) / 1.5),
            work: WORK[work % WORK.len()],
            invalid: INVALID[invalid % INVALID.len()],
            max_speed_kmh: 6.0,
        }
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(64))]

        /// What the stage stores, segment by segment, is what the day's passes give, in
        /// any order they arrive.
        #[test]
        fn stored_segments_days_are_the_days_passes(
            drawn in prop::collection::vec(
                (0usize..40, any::<bool>(), 0.0f64..1.0, 0.0f64..1.0, 0i64..80_000,
                 0usize..4, 0usize..4, 0u8..4),
                0..120,
            ),
            seed in any::<u64>(),
        ) {
            let ctx = demo_context(None);
            let mut records: Vec<PassRecord> = drawn.into_iter().map(|d| pass(&ctx, d)).collect();
            // As the store returns them: by start, then device.
            records.sort_by(|a, b| (a.start, &a.device_id).cmp(&(b.start, &b.device_id)));
            let day = Date::constant(2027, 1, 15);
            let segments: std::collections::BTreeSet<u32> =
                records.iter().map(|r| r.segment).collect();
            let (rows, _) = rows_of_day(&ctx, day, &records);
            prop_assert_eq!(rows.len(), segments.len());
            let stored = DayStatus::from_rows(&DayStatus::idle(&ctx), &rows);
            prop_assert_eq!(&stored, &DayStatus::from_passes(&ctx, &records));

            // Shuffled: the same statuses and counts; mileage summed in another order.
            let mut shuffled = records.clone();
            let mut state = seed | 1;
            for i in (1..shuffled.len()).rev() {
                state ^= state << 13;
                state ^= state >> 7;
                state ^= state << 17;
                shuffled.swap(i, (state % (i as u64 + 1)) as usize);
            }
            let recomputed = DayStatus::from_passes(&ctx, &shuffled);
            prop_assert_eq!(&stored.statuses, &recomputed.statuses);
            for (a, b) in stored.work.iter().zip(&recomputed.work) {
                prop_assert_eq!((a.working_passes, a.valid_passes), (b.working_passes, b.valid_passes));
                prop_assert!((a.valid_mileage_m - b.valid_mileage_m).abs() < 1e-6);
            }
        }
    }

    #[test]
    fn a_segment_without_passes_has_no_row_and_the_idle_status() {
        let ctx = demo_context(None);
        let day = Date::constant(2027, 1, 15);
        assert_eq!(segment_day(&ctx.network, &ctx.rules, day, 3, &[]), None);
        let idle = DayStatus::idle(&ctx);
        assert_eq!(
            DayStatus::from_rows(&idle, &[]),
            DayStatus::from_passes(&ctx, &[])
        );
        assert!(idle
            .statuses
            .iter()
            .all(|s| !s.covered || ctx.network.segments()[s.segment as usize].length_m <= 0.0));
    }
}
