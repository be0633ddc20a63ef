//! A contractor's assessment over a period (a month, a quarter): each day's coverage of its
//! sections, failed dust checks, overspeed work and late answers to overflowing bins, the
//! deductions and score they give, and the devices the numbers rest on with who delivered
//! their records.

use std::collections::{BTreeMap, BTreeSet, HashSet};

use cleanfleet_coverage::CoverageSummary;
use cleanfleet_inspection::assessment::{assess, DayCoverage, DayRecord, FailedCheck};
use cleanfleet_inspection::overflow::OverflowAlert;
use cleanfleet_inspection::{road_results, Placement, RoadResult, Sample};
use cleanfleet_roads::Zone;
use cleanfleet_store::{OverspeedDayRecord, SegmentDayRecord, Source};
use jiff::civil::Date;
use jiff::Timestamp;
use serde::Serialize;
use utoipa::ToSchema;

use crate::{may_see_work_in, merged_runs, CoverageContext, DayStatus, ReportError};

/// What is known of a day of the period.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DayState {
    /// Over, with stored work: its shares are judged.
    Judged,
    /// Over, with no stored work at all: its shares are not judged (a silent fleet is an
    /// outage, not a day of zero coverage).
    NoData,
    /// Today: its incidents count, its shares once it is over.
    InProgress,
}

/// A day of the period, its bounds in the city's time zone, and what is known of it.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct PeriodDay {
    pub date: Date,
    pub start: Timestamp,
    pub end: Timestamp,
    pub state: DayState,
}

/// `contractor`'s sections among the city's.
fn contractor_sections<'a>(
    ctx: &'a CoverageContext,
    contractor: &'a str,
) -> impl Iterator<Item = &'a Zone> {
    ctx.zones
        .sections()
        .iter()
        .filter(move |z| z.contractor.as_deref() == Some(contractor))
}

/// The segments of `contractor`'s sections; not found when it has none.
pub fn contractor_segments(
    ctx: &CoverageContext,
    contractor: &str,
) -> Result<HashSet<u32>, ReportError> {
    let members: HashSet<u32> = contractor_sections(ctx, contractor)
        .flat_map(|z| z.segments.iter().copied())
        .collect();
    if members.is_empty() {
        return Err(ReportError::NotFound {
            resource: "contractor",
            id: contractor.to_owned(),
        });
    }
    Ok(members)
}

/// What a contractor's assessment reads of the stored days: the days of its sections'
/// segments, and who worked in which of its sections (by section id); not found when it has
/// no sections. (It also reads every vehicle's day with overspeed work: a device it owns
/// answers for its overspeed work everywhere.)
pub fn assessment_reads(
    ctx: &CoverageContext,
    contractor: &str,
) -> Result<(Vec<u32>, Vec<String>), ReportError> {
    let segments = contractor_segments(ctx, contractor)?;
    let sections = contractor_sections(ctx, contractor)
        .map(|z| z.id.clone())
        .collect();
    Ok((segments.into_iter().collect(), sections))
}

/// The rows of `date` among `rows` in day order.
fn of_day<T>(rows: &[T], day: impl Fn(&T) -> Date, date: Date) -> &[T] {
    let first = rows.partition_point(|r| day(r) < date);
    let end = rows.partition_point(|r| day(r) <= date);
    &rows[first..end]
}

/// What a contractor's assessment over a period rests on, as the store gives it.
#[derive(Debug, Clone, Copy)]
pub struct PeriodRecords<'a> {
    /// The period's stored segments' days (at least those of its segments), in day order.
    pub segment_days: &'a [SegmentDayRecord],
    /// The period's vehicles' days with overspeed work, in day order.
    pub overspeed_days: &'a [OverspeedDayRecord],
    /// The devices with passes in its sections on the period's days.
    pub on_its_streets: &'a [String],
    /// Inspectors' samples, placed.
    pub samples: &'a [(Sample, Placement)],
    /// Overflows it answered late.
    pub late_alerts: &'a [OverflowAlert],
}

/// `contractor`'s assessment over `days` from `records` of the period ([`assessment_reads`]
/// names what to read). Roads are judged once on all their points; the
/// contractor answers for those with a point in its sections, for its share of the points.
/// Its evidence names every device the numbers rest on and what of theirs is used, without
/// sources yet ([`PeriodAssessment::with_sources`]).
pub fn assess_period(
    ctx: &CoverageContext,
    contractor: &str,
    days: &[PeriodDay],
    records: PeriodRecords,
) -> Result<PeriodAssessment, ReportError> {
    let PeriodRecords {
        segment_days: segment_rows,
        overspeed_days: overspeed_rows,
        on_its_streets,
        samples,
        late_alerts,
    } = records;
    let members = contractor_segments(ctx, contractor)?;
    debug_assert!(segment_rows.is_sorted_by_key(|r| r.day));
    debug_assert!(overspeed_rows.is_sorted_by_key(|r| r.day));
    let results: Vec<RoadResult> =
        road_results(&ctx.network, &ctx.inspection, &ctx.time_zone, samples)
            .into_iter()
            .filter(|r| r.points_on(|s| members.contains(&s)) > 0)
            .collect();
    let theirs = |r: &OverspeedDayRecord| {
        let section = r.section.as_deref().and_then(|id| ctx.zones.section(id));
        may_see_work_in(&ctx.zones, Some(contractor), &r.device_id, section)
    };
    let idle = DayStatus::idle(ctx);
    let mut records_of_days = Vec::with_capacity(days.len());
    for day in days {
        let coverage = (day.state == DayState::Judged).then(|| {
            let rows = of_day(segment_rows, |r| r.day, day.date);
            let statuses = DayStatus::from_rows(&idle, rows).statuses;
            let s = CoverageSummary::of(&ctx.network, &statuses, |seg| members.contains(&seg.id));
            DayCoverage {
                covered_share: s.covered_share_by_length(),
                deep_cleaned_share: s.deep_cleaned_share_by_length(),
                missed_segments: statuses
                    .iter()
                    .filter(|st| members.contains(&st.segment) && !st.covered)
                    .map(|st| st.segment)
                    .collect(),
            }
        });
        // Each device's runs of overspeed work the contractor answers for, across sections.
        let mut runs: BTreeMap<&str, Vec<(Timestamp, Timestamp)>> = BTreeMap::new();
        for r in of_day(overspeed_rows, |r| r.day, day.date)
            .iter()
            .filter(|r| theirs(r))
        {
            runs.entry(&r.device_id).or_default().extend(&r.runs);
        }
        let (start, stop) = (day.start, day.end);
        let date = day.date.to_string();
        records_of_days.push(DayRecord {
            coverage,
            failed_checks: results
                .iter()
                .filter(|r| r.date == date && !r.passed)
                .map(|r| FailedCheck {
                    road: r.road.clone(),
                    class: r.class,
                    samples: r.samples.clone(),
                    points_here: r.points_on(|s| members.contains(&s)),
                    points: r.points,
                })
                .collect(),
            overspeed_events: runs
                .into_iter()
                .flat_map(|(device, runs)| {
                    merged_runs(runs)
                        .into_iter()
                        .map(move |(start, _)| (device.to_owned(), start.to_string()))
                })
                .collect(),
            late_overflow_responses: late_alerts
                .iter()
                .filter(|a| start <= a.raised && a.raised < stop)
                .map(|a| (a.device_id.clone(), a.raised.to_string()))
                .collect(),
            date,
        });
    }
    // The devices whose records the numbers rest on, and what of theirs is used: passes on
    // the contractor's streets, and overspeed work it answers for.
    let mut uses: BTreeMap<&str, BTreeSet<&'static str>> = BTreeMap::new();
    let overspeeding = overspeed_rows.iter().filter(|r| theirs(r));
    for device in on_its_streets
        .iter()
        .map(String::as_str)
        .chain(overspeeding.map(|r| r.device_id.as_str()))
    {
        uses.entry(device).or_default().insert("passes");
    }
    for (sample, _) in samples.iter().filter(|(s, _)| {
        results
            .iter()
            .any(|r| r.inspector == s.inspector && r.samples.contains(&s.sample_id))
    }) {
        uses.entry(&sample.device_id).or_default().insert("samples");
    }
    for alert in late_alerts {
        uses.entry(&alert.device_id)
            .or_default()
            .insert("bin_readings");
    }
    let named = |state: DayState| {
        days.iter()
            .filter(move |d| d.state == state)
            .map(|d| d.date.to_string())
    };
    Ok(PeriodAssessment {
        assessment: assess(&ctx.assessment, &records_of_days),
        days_assessed: days.len(),
        days_judged: records_of_days
            .iter()
            .filter(|d| d.coverage.is_some())
            .count(),
        days_without_data: named(DayState::NoData).collect(),
        in_progress: named(DayState::InProgress).next(),
        evidence: uses
            .into_iter()
            .map(|(device, uses)| DeviceEvidence {
                device_id: device.to_owned(),
                uses: uses.into_iter().collect(),
                sources: Vec::new(),
                verified: false,
            })
            .collect(),
    })
}

impl PeriodAssessment {
    /// The evidence's devices, to look up who delivered their records.
    pub fn evidence_devices(&self) -> Vec<String> {
        self.evidence.iter().map(|e| e.device_id.clone()).collect()
    }

    /// With each device's `sources` (device, source) over the period: verified when it has
    /// some and every one is a device credential or an API token.
    pub fn with_sources(mut self, sources: Vec<(String, Source)>) -> PeriodAssessment {
        let mut by_device: BTreeMap<String, Vec<Source>> = BTreeMap::new();
        for (device, source) in sources {
            by_device.entry(device).or_default().push(source);
        }
        for e in &mut self.evidence {
            e.sources = by_device.remove(&e.device_id).unwrap_or_default();
            e.verified = !e.sources.is_empty() && e.sources.iter().all(|s| s.trust.is_verified());
        }
        self
    }
}

/// A device whose records an assessment rests on, and who delivered them.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct DeviceEvidence {
    pub device_id: String,
    /// What of its records the assessment uses: `passes` (its work, from its fixes),
    /// `samples`, `bin_readings`.
    pub uses: Vec<&'static str>,
    /// Every source of its records on the period's days (UTC days, whole).
    pub sources: Vec<Source>,
    /// Every one of them is a device credential or an API token.
    pub verified: bool,
}

/// A contractor's assessment over a period, and which of its days its shares rest on.
#[derive(Debug, Clone)]
pub struct PeriodAssessment {
    pub assessment: cleanfleet_inspection::assessment::Assessment,
    /// Days of the period up to today: their incidents count.
    pub days_assessed: usize,
    /// Of those, the days over and with data: the shares and misses rest on them.
    pub days_judged: usize,
    /// Days over with no stored work at all: their shares are not judged.
    pub days_without_data: Vec<String>,
    /// Today, when in the period: its incidents count, its shares once it is over.
    pub in_progress: Option<String>,
    /// The devices its numbers rest on, by id, with their records' provenance.
    pub evidence: Vec<DeviceEvidence>,
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::context::tests::{demo_context, street_of};
    use crate::days::tests::rows_of_day;
    use cleanfleet_coverage::{InvalidReason, WorkType};
    use cleanfleet_store::{PassRecord, Trust};
    use jiff::SignedDuration;

    /// Three days: one over with data, one over without, today. The contractor's own truck
    /// worked too fast on another contractor's street on the first: that is its overspeed
    /// work (one event), and the truck is evidence; another contractor's valid pass there is
    /// neither. For the street's contractor both trucks are evidence, the overspeed is not
    /// its. Only credentials and tokens make evidence verified.
    #[test]
    fn a_period_judges_days_with_data_and_names_its_evidence() {
        let ctx = demo_context(None);
        let day_s = SignedDuration::from_hours(24);
        let start = Timestamp::from_second(1_800_000_000).unwrap();
        let date = Date::constant(2027, 1, 15);
        let days: Vec<PeriodDay> = [DayState::Judged, DayState::NoData, DayState::InProgress]
            .iter()
            .enumerate()
            .map(|(i, &state)| PeriodDay {
                date: date.checked_add(jiff::Span::new().days(i as i64)).unwrap(),
                start: start + day_s * i as i32,
                end: start + day_s * (i as i32 + 1),
                state,
            })
            .collect();
        let green_street = street_of(&ctx, "green-city").id;
        let pass = |device: &str, invalid: Option<InvalidReason>, at_s: i64| PassRecord {
            device_id: device.into(),
            segment: green_street,
            forward: true,
            from_m: 0.0,
            to_m: 50.0,
            start: start + SignedDuration::from_secs(at_s),
            end: start + SignedDuration::from_secs(at_s + 10),
            work: WorkType::Sweep,
            invalid,
            max_speed_kmh: 14.0,
        };
        let records = [
            pass("sw-01", Some(InvalidReason::Overspeed), 3600),
            pass("sw-01", Some(InvalidReason::Overspeed), 3630),
            pass("sw-02", None, 7200),
        ];
        let (segment_rows, vehicle_rows) = rows_of_day(&ctx, date, &records);
        // What the store gives for what `assessment_reads` names: its segments' days, the
        // vehicles' days with overspeed work, who worked in its sections.
        let assess = |contractor| {
            let (segments, sections) = assessment_reads(&ctx, contractor)?;
            let segment_rows: Vec<_> = segment_rows
                .iter()
                .filter(|r| segments.contains(&r.segment))
                .cloned()
                .collect();
            let overspeed_rows: Vec<_> = vehicle_rows
                .iter()
                .filter(|r| !r.overspeed_runs.is_empty())
                .map(|r| OverspeedDayRecord {
                    day: r.day,
                    device_id: r.device_id.clone(),
                    section: r.section.clone(),
                    runs: r.overspeed_runs.clone(),
                })
                .collect();
            let on_its_streets: BTreeSet<String> = vehicle_rows
                .iter()
                .filter(|r| {
                    r.passes > 0 && r.section.as_ref().is_some_and(|s| sections.contains(s))
                })
                .map(|r| r.device_id.to_string())
                .collect();
            assess_period(
                &ctx,
                contractor,
                &days,
                PeriodRecords {
                    segment_days: &segment_rows,
                    overspeed_days: &overspeed_rows,
                    on_its_streets: &on_its_streets.into_iter().collect::<Vec<_>>(),
                    samples: &[],
                    late_alerts: &[],
                },
            )
        };
        let period = assess("acme-cleaning").unwrap();
        assert_eq!((period.days_assessed, period.days_judged), (3, 1));
        // The street's own contractor: both worked there; acme's overspeed is acme's.
        let green = assess("green-city").unwrap();
        assert_eq!(green.evidence_devices(), ["sw-01", "sw-02"]);
        assert!(!green
            .assessment
            .deductions
            .iter()
            .any(|d| d.kind == "overspeed_work"));
        assert_eq!(period.days_without_data, ["2027-01-16"]);
        assert_eq!(period.in_progress.as_deref(), Some("2027-01-17"));
        let overspeed: Vec<_> = period
            .assessment
            .deductions
            .iter()
            .filter(|d| d.kind == "overspeed_work")
            .collect();
        assert_eq!(overspeed.len(), 1, "{:?}", period.assessment.deductions);
        assert_eq!(period.evidence_devices(), ["sw-01"]);
        assert_eq!(period.evidence[0].uses, ["passes"]);
        let source = |trust| Source {
            id: 1,
            trust,
            via: "mqtt://broker".into(),
            principal: "sw-01".into(),
            credential_issued: None,
        };
        let with = |sources: Vec<(String, Source)>| {
            let period = assess("acme-cleaning").unwrap();
            period.with_sources(sources).evidence[0].verified
        };
        assert!(with(vec![("sw-01".into(), source(Trust::Credential))]));
        assert!(!with(vec![
            ("sw-01".into(), source(Trust::Credential)),
            ("sw-01".into(), source(Trust::TopicOnly)),
        ]));
        assert!(!with(Vec::new()), "no known source is not verified");
        assert_eq!(
            assess("nobody").unwrap_err(),
            ReportError::NotFound {
                resource: "contractor",
                id: "nobody".into()
            }
        );
    }
}
