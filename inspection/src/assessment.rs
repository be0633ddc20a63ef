//! Contractor assessment (考核扣分, DOMAIN.md "Assessment and pay"): points deducted from a
//! base score for failed weight checks, missed segments, coverage short of its target and
//! overspeed work, each deduction pointing at the records behind it; and the pay factor the
//! score earns. Pure arithmetic over what the caller gathered.
//!
//! Incidents (a failed weight check, a run of overspeed work, a bin overflow emptied late)
//! count on the day they happen.
//! Shares and misses are judged over the period, on the days that are over and had data: the
//! mean daily share against its target, and the segments left uncovered on every one of those
//! days; a day still under way, or one the platform received nothing for, is not held against
//! the contractor.

use cleanfleet_roads::RoadClass;
use serde::{Deserialize, Serialize};

use crate::ClassLimits;

/// Points per failed weight check by road class, and per other failing.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct DeductionRules {
    /// Per failed road result, by the road's class (same shape as the limits). Default
    /// I 2, II 1.5, III 1, IV 0.5.
    pub failed_weight_check: ClassLimits,
    /// Per segment left uncovered on every day of the period judged. Default 0.05.
    pub missed_segment: f64,
    /// Covered share (by length, mean of the days judged) the contractor must reach. Default
    /// 0.9.
    pub coverage_target: f64,
    /// Per percentage point the period falls short of `coverage_target`. Default 0.5.
    pub coverage_shortfall_per_point: f64,
    /// Deep-cleaned share target (mean of the days judged); none by default.
    pub deep_clean_target: Option<f64>,
    /// Per percentage point the period falls short of `deep_clean_target`. Default 0.2.
    pub deep_clean_shortfall_per_point: f64,
    /// Per run of overspeed work. Default 0.2.
    pub overspeed_event: f64,
    /// Per bin overflow not answered within `[bins] max_response_s`. Default 0.5.
    pub late_overflow_response: f64,
}

impl Default for DeductionRules {
    fn default() -> Self {
        DeductionRules {
            failed_weight_check: ClassLimits {
                i: 2.0,
                ii: 1.5,
                iii: 1.0,
                iv: 0.5,
            },
            missed_segment: 0.05,
            coverage_target: 0.9,
            coverage_shortfall_per_point: 0.5,
            deep_clean_target: None,
            deep_clean_shortfall_per_point: 0.2,
            overspeed_event: 0.2,
            late_overflow_response: 0.5,
        }
    }
}

/// How a score becomes pay: full from `full_pay_from`, `deduction_per_point` of the fee per
/// point below it, `bonus` from `bonus_from` (Haikou's and a township contract's rules).
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct PayRules {
    /// Default 90.
    pub full_pay_from: f64,
    /// Default 0.05 (5 % of the fee per point below `full_pay_from`).
    pub deduction_per_point: f64,
    /// Default 95.
    pub bonus_from: f64,
    /// Default 0.02.
    pub bonus: f64,
}

impl Default for PayRules {
    fn default() -> Self {
        PayRules {
            full_pay_from: 90.0,
            deduction_per_point: 0.05,
            bonus_from: 95.0,
            bonus: 0.02,
        }
    }
}

/// `[assessment]`.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct AssessmentRules {
    /// Default 100.
    pub base_score: f64,
    pub deductions: DeductionRules,
    pub pay: PayRules,
}

impl Default for AssessmentRules {
    fn default() -> Self {
        AssessmentRules {
            base_score: 100.0,
            deductions: DeductionRules::default(),
            pay: PayRules::default(),
        }
    }
}

/// What a contractor's sections showed on one day.
#[derive(Debug, Clone, PartialEq)]
pub struct DayRecord {
    /// Local date.
    pub date: String,
    /// The day's coverage, when the day is over and had data; `None` otherwise.
    pub coverage: Option<DayCoverage>,
    /// Failed road results the contractor answers for, wholly or in part.
    pub failed_checks: Vec<FailedCheck>,
    /// Overspeed-work runs: (device, start time RFC 3339).
    pub overspeed_events: Vec<(String, String)>,
    /// Bin overflows raised that day and answered late (or not yet, past the limit): (bin,
    /// raised RFC 3339).
    pub late_overflow_responses: Vec<(String, String)>,
}

/// A failed road result, and the part of it a contractor answers for.
#[derive(Debug, Clone, PartialEq)]
pub struct FailedCheck {
    pub road: String,
    pub class: RoadClass,
    /// Its sample ids, all of them.
    pub samples: Vec<String>,
    /// Of its points, how many lie in the contractor's sections (a road judged once across
    /// a section boundary costs each contractor its share of the points).
    pub points_here: usize,
    pub points: usize,
}

/// A finished day's coverage of a contractor's sections.
#[derive(Debug, Clone, PartialEq)]
pub struct DayCoverage {
    pub covered_share: f64,
    pub deep_cleaned_share: f64,
    /// Segments not covered.
    pub missed_segments: Vec<u32>,
}

/// One deduction with what it rests on.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Deduction {
    /// The day of an incident; `first/last` (ISO 8601 interval) of the days a period's
    /// shares were judged on.
    pub date: String,
    /// `failed_weight_check`, `missed_segments`, `coverage_shortfall`,
    /// `deep_clean_shortfall`, `overspeed_work`, `late_overflow_response`.
    pub kind: String,
    pub points: f64,
    pub detail: String,
    /// The records behind it: sample ids, segment indexes, `device@time` of overspeed runs
    /// and of late overflow answers,
    /// `date share` of the days a shortfall was judged on.
    pub records: Vec<String>,
}

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Assessment {
    pub base_score: f64,
    pub deducted: f64,
    /// Never below 0.
    pub score: f64,
    /// The share of the fee earned: 1 full pay, above 1 with a bonus.
    pub pay_factor: f64,
    pub deductions: Vec<Deduction>,
}

/// Percentage points, rounded to 0.01 so that shares like 0.8 and 0.9 are exact.
fn points_below(share: f64, target: f64) -> f64 {
    (((target - share) * 100.0).max(0.0) * 100.0).round() / 100.0
}

/// Scores a contractor over the days given (a month, a quarter).
pub fn assess(rules: &AssessmentRules, days: &[DayRecord]) -> Assessment {
    let d = &rules.deductions;
    let mut deductions = Vec::new();
    for day in days {
        for check in &day.failed_checks {
            let FailedCheck {
                road,
                class,
                samples,
                points_here,
                points,
            } = check;
            let share = *points_here as f64 / (*points).max(1) as f64;
            let whole = points_here == points;
            deductions.push(Deduction {
                date: day.date.clone(),
                kind: "failed_weight_check".into(),
                points: d.failed_weight_check.of(*class) * share,
                detail: if whole {
                    format!("{road} (class {class}) over its dust limit")
                } else {
                    format!(
                        "{road} (class {class}) over its dust limit; {points_here} of its \
                         {points} points in these sections"
                    )
                },
                records: samples.clone(),
            });
        }
        let mut incidents = |kind: &str, what: &str, per: f64, events: &[(String, String)]| {
            if !events.is_empty() && per > 0.0 {
                deductions.push(Deduction {
                    date: day.date.clone(),
                    kind: kind.into(),
                    points: per * events.len() as f64,
                    detail: format!("{} {what}", events.len()),
                    records: events
                        .iter()
                        .map(|(device, at)| format!("{device}@{at}"))
                        .collect(),
                });
            }
        };
        incidents(
            "overspeed_work",
            "runs of overspeed work",
            d.overspeed_event,
            &day.overspeed_events,
        );
        incidents(
            "late_overflow_response",
            "bin overflows not emptied in time",
            d.late_overflow_response,
            &day.late_overflow_responses,
        );
    }
    let judged: Vec<(&str, &DayCoverage)> = days
        .iter()
        .filter_map(|day| Some((day.date.as_str(), day.coverage.as_ref()?)))
        .collect();
    if let (Some(first), Some(last)) = (judged.first(), judged.last()) {
        let span = format!("{}/{}", first.0, last.0);
        let mut missed: Vec<u32> = first.1.missed_segments.clone();
        for (_, c) in &judged[1..] {
            missed.retain(|s| c.missed_segments.contains(s));
        }
        if !missed.is_empty() && d.missed_segment > 0.0 {
            deductions.push(Deduction {
                date: span.clone(),
                kind: "missed_segments".into(),
                points: d.missed_segment * missed.len() as f64,
                detail: format!(
                    "{} segments not covered on any of {} days",
                    missed.len(),
                    judged.len()
                ),
                records: missed.iter().map(|s| format!("segment {s}")).collect(),
            });
        }
        let mut shortfall = |kind: &str,
                             what: &str,
                             share: fn(&DayCoverage) -> f64,
                             target: f64,
                             per_point: f64| {
            let mean = judged.iter().map(|(_, c)| share(c)).sum::<f64>() / judged.len() as f64;
            let short = points_below(mean, target);
            if short > 0.0 {
                deductions.push(Deduction {
                    date: span.clone(),
                    kind: kind.into(),
                    points: short * per_point,
                    detail: format!(
                        "{what} {:.2} % on average over {} days against a target of {:.2} %",
                        mean * 100.0,
                        judged.len(),
                        target * 100.0
                    ),
                    records: judged
                        .iter()
                        .map(|(date, c)| format!("{date} {:.2} %", share(c) * 100.0))
                        .collect(),
                });
            }
        };
        shortfall(
            "coverage_shortfall",
            "covered",
            |c| c.covered_share,
            d.coverage_target,
            d.coverage_shortfall_per_point,
        );
        if let Some(target) = d.deep_clean_target {
            shortfall(
                "deep_clean_shortfall",
                "deep-cleaned",
                |c| c.deep_cleaned_share,
                target,
                d.deep_clean_shortfall_per_point,
            );
        }
    }
    let deducted: f64 = deductions.iter().map(|d| d.points).sum();
    let score = (rules.base_score - deducted).max(0.0);
    Assessment {
        base_score: rules.base_score,
        deducted,
        score,
        pay_factor: pay_factor(&rules.pay, score),
        deductions,
    }
}

/// The share of the fee a score earns.
pub fn pay_factor(pay: &PayRules, score: f64) -> f64 {
    if score >= pay.bonus_from {
        1.0 + pay.bonus
    } else if score >= pay.full_pay_from {
        1.0
    } else {
        (1.0 - (pay.full_pay_from - score) * pay.deduction_per_point).max(0.0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn day(date: &str) -> DayRecord {
        DayRecord {
            date: date.into(),
            coverage: Some(DayCoverage {
                covered_share: 0.95,
                deep_cleaned_share: 0.7,
                missed_segments: Vec::new(),
            }),
            failed_checks: Vec::new(),
            overspeed_events: Vec::new(),
            late_overflow_responses: Vec::new(),
        }
    }

    fn lane_check(n: usize) -> FailedCheck {
        FailedCheck {
            road: "Lane".into(),
            class: RoadClass::IV,
            samples: vec![format!("S{n}")],
            points_here: 1,
            points: 1,
        }
    }

    #[test]
    fn a_road_across_a_section_boundary_costs_each_contractor_its_share() {
        let rules = AssessmentRules::default();
        let mut day = day("2026-11-01");
        day.failed_checks = vec![FailedCheck {
            road: "Renmin Road".into(),
            class: RoadClass::II,
            samples: (1..=5).map(|n| format!("S{n}")).collect(),
            points_here: 3,
            points: 5,
        }];
        let a = assess(&rules, &[day]);
        let d = &a.deductions[0];
        assert!((d.points - 1.5 * 3.0 / 5.0).abs() < 1e-12, "{d:?}");
        assert!(d.detail.contains("3 of its 5 points"), "{}", d.detail);
        assert_eq!(d.records.len(), 5);
    }

    fn coverage(day: &mut DayRecord) -> &mut DayCoverage {
        day.coverage.as_mut().unwrap()
    }

    #[test]
    fn pay_factor_at_each_boundary() {
        let pay = PayRules::default();
        assert_eq!(pay_factor(&pay, 100.0), 1.02);
        assert_eq!(pay_factor(&pay, 95.0), 1.02);
        assert_eq!(pay_factor(&pay, 94.99), 1.0);
        assert_eq!(pay_factor(&pay, 90.0), 1.0);
        assert!(
            (pay_factor(&pay, 89.0) - 0.95).abs() < 1e-12,
            "5 % per point below 90"
        );
        assert!((pay_factor(&pay, 85.5) - 0.775).abs() < 1e-12);
        assert_eq!(pay_factor(&pay, 60.0), 0.0, "never below nothing");
    }

    #[test]
    fn deductions_add_up_and_point_at_their_records() {
        let rules = AssessmentRules {
            deductions: DeductionRules {
                deep_clean_target: Some(0.6),
                ..DeductionRules::default()
            },
            ..AssessmentRules::default()
        };
        let mut good = day("2026-11-01");
        coverage(&mut good).missed_segments = vec![3, 4];
        let mut bad = day("2026-11-02");
        *coverage(&mut bad) = DayCoverage {
            covered_share: 0.65,
            deep_cleaned_share: 0.4,
            missed_segments: vec![3, 9],
        };
        bad.failed_checks = vec![FailedCheck {
            road: "Renmin Road".into(),
            class: RoadClass::I,
            samples: vec!["S1".into(), "S2".into()],
            points_here: 2,
            points: 2,
        }];
        bad.overspeed_events = vec![("sw-01".into(), "2026-11-02T01:00:00Z".into())];
        bad.late_overflow_responses = vec![
            ("bin-003".into(), "2026-11-02T09:00:00Z".into()),
            ("bin-007".into(), "2026-11-02T11:00:00Z".into()),
        ];
        let a = assess(&rules, &[good, bad]);
        let by_kind = |k: &str| a.deductions.iter().find(|d| d.kind == k).unwrap();
        assert_eq!(by_kind("failed_weight_check").points, 2.0);
        assert_eq!(by_kind("failed_weight_check").records, ["S1", "S2"]);
        assert_eq!(by_kind("failed_weight_check").date, "2026-11-02");
        let missed = by_kind("missed_segments");
        assert!(
            (missed.points - 0.05).abs() < 1e-12,
            "only 3 was missed on both days"
        );
        assert_eq!(missed.records, ["segment 3"]);
        assert_eq!(missed.date, "2026-11-01/2026-11-02");
        let coverage = by_kind("coverage_shortfall");
        assert!(
            (coverage.points - 5.0).abs() < 1e-9,
            "a mean of 80 %: 10 points short × 0.5"
        );
        assert_eq!(
            coverage.records,
            ["2026-11-01 95.00 %", "2026-11-02 65.00 %"]
        );
        assert!(
            (by_kind("deep_clean_shortfall").points - 1.0).abs() < 1e-9,
            "a mean of 55 %: 5 points short × 0.2"
        );
        assert!((by_kind("overspeed_work").points - 0.2).abs() < 1e-12);
        let late = by_kind("late_overflow_response");
        assert_eq!(late.points, 1.0, "two at 0.5");
        assert_eq!(
            late.records,
            [
                "bin-003@2026-11-02T09:00:00Z",
                "bin-007@2026-11-02T11:00:00Z"
            ]
        );
        assert_eq!(a.deductions.len(), 6);
        assert!((a.deducted - 9.25).abs() < 1e-9);
        assert!((a.score - 90.75).abs() < 1e-9);
        assert_eq!(a.pay_factor, 1.0);
    }

    #[test]
    fn days_under_way_or_without_data_count_incidents_only() {
        let rules = AssessmentRules::default();
        let mut today = day("2026-11-03");
        today.coverage = None;
        today.overspeed_events = vec![("sw-01".into(), "2026-11-03T01:00:00Z".into())];
        let mut silent = day("2026-11-02");
        silent.coverage = None;
        let a = assess(&rules, &[silent, today]);
        assert_eq!(a.deductions.len(), 1, "{a:?}");
        assert_eq!(a.deductions[0].kind, "overspeed_work");
        let mut poor = day("2026-11-01");
        coverage(&mut poor).covered_share = 0.5;
        let mut with_poor = vec![poor];
        with_poor.extend([day("2026-11-02"), day("2026-11-03")].map(|mut d| {
            d.coverage = None;
            d
        }));
        let a = assess(&rules, &with_poor);
        assert_eq!(a.deductions[0].date, "2026-11-01/2026-11-01");
        assert!(
            (a.deductions[0].points - 20.0).abs() < 1e-9,
            "judged on its one day"
        );
    }

    #[test]
    fn a_share_exactly_at_target_deducts_nothing_and_scores_stop_at_zero() {
        let rules = AssessmentRules::default();
        let mut on_target = day("2026-11-01");
        coverage(&mut on_target).covered_share = 0.9;
        assert!(assess(&rules, &[on_target]).deductions.is_empty());
        let mut awful = day("2026-11-01");
        awful.failed_checks = (0..60).map(lane_check).collect();
        coverage(&mut awful).covered_share = 0.0;
        let a = assess(&rules, &[awful]);
        assert_eq!(
            a.deducted, 75.0,
            "45 for coverage, 30 for 60 class IV checks"
        );
        let days: Vec<DayRecord> = (0..3)
            .map(|_| {
                let mut d = day("2026-11-01");
                d.failed_checks = (0..100).map(lane_check).collect();
                d
            })
            .collect();
        let a = assess(&rules, &days);
        assert_eq!(a.score, 0.0);
        assert_eq!(a.pay_factor, 0.0);
    }
}
