//! Weight-based cleanliness checks (以克论净, DOMAIN.md "Weight-based cleanliness"): an
//! inspector weighs the dust on a known area at N points of a road; the road's result (mean or
//! median of its points, in g/m²) is compared with the limit for its class. Every result says
//! when and by whom the road was last validly cleaned, and how long the litter an inspector
//! counted stayed before a cleaning passed over it. **Pure: no I/O, no clock.**

pub mod assessment;
pub mod overflow;

use std::collections::BTreeMap;

use cleanfleet_coverage::{Pass, SegmentIndex, WorkType};
use cleanfleet_roads::{RoadClass, RoadNetwork};
use jiff::tz::TimeZone;
use jiff::Timestamp;
use serde::{Deserialize, Serialize};

/// How a road's points make its result.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Aggregate {
    /// Beijing's rule.
    Mean,
    /// Xi'an's rule.
    Median,
}

/// Dust limits per road class, g/m² (a result equal to the limit passes).
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct ClassLimits {
    /// Default 5 (Xi'an 2017).
    pub i: f64,
    /// Default 10.
    pub ii: f64,
    /// Default 15.
    pub iii: f64,
    /// Default 20.
    pub iv: f64,
}

impl Default for ClassLimits {
    fn default() -> Self {
        ClassLimits {
            i: 5.0,
            ii: 10.0,
            iii: 15.0,
            iv: 20.0,
        }
    }
}

impl ClassLimits {
    pub fn of(&self, class: RoadClass) -> f64 {
        match class {
            RoadClass::I => self.i,
            RoadClass::II => self.ii,
            RoadClass::III => self.iii,
            RoadClass::IV => self.iv,
        }
    }
}

/// `[inspection]`: the city's rules for weight checks.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct InspectionRules {
    /// Default `mean`.
    pub aggregate: Aggregate,
    pub limits_g_per_m2: ClassLimits,
    /// Points a road inspection should have (Beijing 5, Xi'an and Zhengzhou 3). Results with
    /// fewer say so. Default 5.
    pub points_per_road: usize,
    /// A sample farther than this from every road is refused. Default 30.
    pub max_distance_to_road_m: f64,
    /// Litter items per 1,000 m² allowed, where cities count litter; none by default.
    pub max_litter_per_1000_m2: Option<f64>,
    /// Counted litter should be cleared within this (a valid cleaning pass over the place).
    /// Default 1200 (20 min).
    pub max_litter_dwell_s: f64,
    /// A pass clears litter this close to its covered stretch. Default 5.
    pub litter_reach_m: f64,
}

impl Default for InspectionRules {
    fn default() -> Self {
        InspectionRules {
            aggregate: Aggregate::Mean,
            limits_g_per_m2: ClassLimits::default(),
            points_per_road: 5,
            max_distance_to_road_m: 30.0,
            max_litter_per_1000_m2: None,
            max_litter_dwell_s: 1200.0,
            litter_reach_m: 5.0,
        }
    }
}

impl InspectionRules {
    /// A description of what is wrong, if anything.
    pub fn check(&self) -> Result<(), String> {
        use cleanfleet_coverage::non_negative;
        let l = &self.limits_g_per_m2;
        for (name, v) in [
            ("limits_g_per_m2.i", l.i),
            ("limits_g_per_m2.ii", l.ii),
            ("limits_g_per_m2.iii", l.iii),
            ("limits_g_per_m2.iv", l.iv),
            ("max_distance_to_road_m", self.max_distance_to_road_m),
            ("max_litter_dwell_s", self.max_litter_dwell_s),
            ("litter_reach_m", self.litter_reach_m),
        ] {
            non_negative(name, v)?;
        }
        if let Some(v) = self.max_litter_per_1000_m2 {
            non_negative("max_litter_per_1000_m2", v)?;
        }
        if self.points_per_road == 0 {
            return Err("points_per_road must be at least 1".into());
        }
        Ok(())
    }
}

/// One weighed sample, as stored.
#[derive(Debug, Clone, PartialEq)]
pub struct Sample {
    /// The scale or app that sent it.
    pub device_id: String,
    pub sample_id: String,
    pub inspector: String,
    pub time: Timestamp,
    pub lon: f64,
    pub lat: f64,
    pub grams: f64,
    pub area_m2: f64,
    pub litter_count: Option<u32>,
    pub photo_ref: Option<String>,
}

impl Sample {
    pub fn g_per_m2(&self) -> f64 {
        self.grams / self.area_m2
    }
}

/// The road a sample was taken on.
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
pub struct Placement {
    pub segment: u32,
    /// Along the segment from its `from_node`.
    pub offset_m: f64,
    pub distance_m: f64,
}

/// The segment a sample lies on: the nearest within `max_distance_to_road_m`, or `None`.
pub fn place(
    index: &SegmentIndex,
    rules: &InspectionRules,
    lon: f64,
    lat: f64,
) -> Option<Placement> {
    let mut candidates = Vec::new();
    index.candidates(
        index.plane().to_xy((lon, lat)),
        rules.max_distance_to_road_m,
        1,
        &mut candidates,
    );
    candidates.first().map(|c| Placement {
        segment: c.segment,
        offset_m: c.offset_m,
        distance_m: c.distance_m,
    })
}

/// A valid cleaning of a road: when, by which device, with what work, on which segment.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Cleaning {
    pub time: Timestamp,
    pub device_id: String,
    pub work: WorkType,
    pub segment: u32,
}

/// A pass with the device that made it (passes are per device in the store).
#[derive(Debug, Clone, PartialEq)]
pub struct DevicePass {
    pub device_id: String,
    pub pass: Pass,
}

/// The last valid pass of `covering` work on any of `segments` that ended by `before`.
pub fn last_cleaning(
    passes: &[DevicePass],
    segments: &[u32],
    covering: &[WorkType],
    before: Timestamp,
) -> Option<Cleaning> {
    let before_s = before.as_millisecond() as f64 / 1000.0;
    passes
        .iter()
        .filter(|p| {
            p.pass.is_valid()
                && covering.contains(&p.pass.work)
                && segments.contains(&p.pass.segment)
                && p.pass.end_s <= before_s
        })
        .max_by(|a, b| {
            a.pass
                .end_s
                .total_cmp(&b.pass.end_s)
                .then_with(|| b.device_id.cmp(&a.device_id))
        })
        .map(|p| Cleaning {
            time: timestamp_of(p.pass.end_s),
            device_id: p.device_id.clone(),
            work: p.pass.work,
            segment: p.pass.segment,
        })
}

/// Litter an inspector counted at a sample, and the cleaning that cleared it.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct LitterClearance {
    pub sample_id: String,
    pub litter_count: u32,
    pub seen: Timestamp,
    /// The first valid cleaning pass over the sample's place after it was seen: when it
    /// reached the place, by which device, with which work.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub cleared_by: Option<Cleaning>,
    /// From seen to cleared; while not cleared, `None`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub dwell_s: Option<f64>,
    /// Cleared within `max_litter_dwell_s`: `false` also when not cleared and the limit has
    /// passed by `known_until`; `None` while it may still be cleared in time.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub in_time: Option<bool>,
}

/// For each sample that counted litter, the first valid pass of `covering` work that reached
/// its place (its segment, in either direction, within `litter_reach_m` of the covered
/// stretch) after it was seen. `known_until`: the passes are complete up to this time.
pub fn litter_clearances(
    network: &RoadNetwork,
    rules: &InspectionRules,
    passes: &[DevicePass],
    covering: &[WorkType],
    samples: &[&(Sample, Placement)],
    known_until: Timestamp,
) -> Vec<LitterClearance> {
    samples
        .iter()
        .filter_map(|(s, place)| {
            let litter_count = s.litter_count.filter(|&n| n > 0)?;
            let seen_s = s.time.as_millisecond() as f64 / 1000.0;
            let length_m = network.segments()[place.segment as usize].length_m;
            let cleared = passes
                .iter()
                .filter(|p| {
                    p.pass.is_valid()
                        && covering.contains(&p.pass.work)
                        && p.pass.segment == place.segment
                })
                .filter_map(|p| {
                    let along_m = if p.pass.forward {
                        place.offset_m
                    } else {
                        length_m - place.offset_m
                    };
                    let reach = rules.litter_reach_m;
                    if along_m < p.pass.from_m - reach || along_m > p.pass.to_m + reach {
                        return None;
                    }
                    let share = if p.pass.to_m > p.pass.from_m {
                        ((along_m - p.pass.from_m) / (p.pass.to_m - p.pass.from_m)).clamp(0.0, 1.0)
                    } else {
                        1.0
                    };
                    let at_s = p.pass.start_s + share * (p.pass.end_s - p.pass.start_s);
                    (at_s >= seen_s).then_some((at_s, p))
                })
                .min_by(|a, b| {
                    a.0.total_cmp(&b.0)
                        .then_with(|| a.1.device_id.cmp(&b.1.device_id))
                });
            let dwell_s = cleared.map(|(at_s, _)| at_s - seen_s);
            let waited_s = known_until.duration_since(s.time).as_secs_f64();
            let in_time = match dwell_s {
                Some(d) => Some(d <= rules.max_litter_dwell_s),
                None if waited_s > rules.max_litter_dwell_s => Some(false),
                None => None,
            };
            Some(LitterClearance {
                sample_id: s.sample_id.clone(),
                litter_count,
                seen: s.time,
                cleared_by: cleared.map(|(at_s, p)| Cleaning {
                    time: timestamp_of(at_s),
                    device_id: p.device_id.clone(),
                    work: p.pass.work,
                    segment: p.pass.segment,
                }),
                dwell_s,
                in_time,
            })
        })
        .collect()
}

fn timestamp_of(seconds: f64) -> Timestamp {
    Timestamp::from_millisecond((seconds * 1000.0).round() as i64).unwrap_or(Timestamp::UNIX_EPOCH)
}

/// A road of the network as inspections see it: a named street of one class, or an unnamed
/// segment.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize)]
pub struct RoadKey {
    /// The street's name, or `segment N` for an unnamed one.
    pub road: String,
    pub class: RoadClass,
}

pub fn road_of(network: &RoadNetwork, segment: u32) -> RoadKey {
    let s = &network.segments()[segment as usize];
    RoadKey {
        road: s
            .name
            .clone()
            .unwrap_or_else(|| format!("segment {}", s.id)),
        class: s.class,
    }
}

/// One road's inspection on one local day by one inspector.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct RoadResult {
    pub road: String,
    pub class: RoadClass,
    /// Local date in the city's time zone.
    pub date: String,
    pub inspector: String,
    /// The samples' ids, in time order.
    pub samples: Vec<String>,
    /// The segment each sample lies on, in the same order.
    pub sample_segments: Vec<u32>,
    /// The segments sampled.
    pub segments: Vec<u32>,
    pub points: usize,
    /// Fewer points than `points_per_road`.
    pub incomplete: bool,
    pub result_g_per_m2: f64,
    pub limit_g_per_m2: f64,
    /// The result is at most the limit.
    pub passed: bool,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub litter_per_1000_m2: Option<f64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub litter_passed: Option<bool>,
    /// The first sample's time.
    pub time: Timestamp,
}

/// A road inspection's samples: keyed by (road, local date, inspector).
type Group<'a> = Vec<&'a (Sample, Placement)>;

/// Groups placed samples into road inspections (road, local day, inspector) and judges each.
/// Deterministic whatever the order of `samples`.
pub fn road_results(
    network: &RoadNetwork,
    rules: &InspectionRules,
    time_zone: &TimeZone,
    samples: &[(Sample, Placement)],
) -> Vec<RoadResult> {
    let mut groups: BTreeMap<(RoadKey, String, String), Group> = BTreeMap::new();
    for entry in samples {
        let (s, p) = entry;
        let date = s.time.to_zoned(time_zone.clone()).date().to_string();
        groups
            .entry((road_of(network, p.segment), date, s.inspector.clone()))
            .or_default()
            .push(entry);
    }
    groups
        .into_iter()
        .map(|((key, date, inspector), mut points)| {
            points.sort_by(|a, b| {
                (a.0.time, &a.0.device_id, &a.0.sample_id).cmp(&(
                    b.0.time,
                    &b.0.device_id,
                    &b.0.sample_id,
                ))
            });
            let values: Vec<f64> = points.iter().map(|(s, _)| s.g_per_m2()).collect();
            let result = aggregate(rules.aggregate, &values);
            let limit = rules.limits_g_per_m2.of(key.class);
            let counted: Vec<&&(Sample, Placement)> = points
                .iter()
                .filter(|(s, _)| s.litter_count.is_some())
                .collect();
            let litter = (!counted.is_empty()).then(|| {
                let items: f64 = counted
                    .iter()
                    .map(|(s, _)| f64::from(s.litter_count.unwrap_or(0)))
                    .sum();
                let area: f64 = counted.iter().map(|(s, _)| s.area_m2).sum();
                items / area * 1000.0
            });
            let mut segments: Vec<u32> = points.iter().map(|(_, p)| p.segment).collect();
            segments.sort_unstable();
            segments.dedup();
            RoadResult {
                road: key.road,
                class: key.class,
                date,
                inspector,
                samples: points.iter().map(|(s, _)| s.sample_id.clone()).collect(),
                sample_segments: points.iter().map(|(_, p)| p.segment).collect(),
                segments,
                points: points.len(),
                incomplete: points.len() < rules.points_per_road,
                result_g_per_m2: result,
                limit_g_per_m2: limit,
                passed: result <= limit,
                litter_per_1000_m2: litter,
                litter_passed: litter
                    .zip(rules.max_litter_per_1000_m2)
                    .map(|(l, max)| l <= max),
                time: points[0].0.time,
            }
        })
        .collect()
}

impl RoadResult {
    /// How many of its points lie on segments `on` holds.
    pub fn points_on(&self, on: impl Fn(u32) -> bool) -> usize {
        self.sample_segments.iter().filter(|&&s| on(s)).count()
    }
}

/// Mean or median of the values (median of an even count: the mean of the middle two).
pub fn aggregate(how: Aggregate, values: &[f64]) -> f64 {
    if values.is_empty() {
        return f64::NAN;
    }
    match how {
        Aggregate::Mean => values.iter().sum::<f64>() / values.len() as f64,
        Aggregate::Median => {
            let mut sorted = values.to_vec();
            sorted.sort_by(f64::total_cmp);
            let n = sorted.len();
            if n % 2 == 1 {
                sorted[n / 2]
            } else {
                (sorted[n / 2 - 1] + sorted[n / 2]) / 2.0
            }
        }
    }
}

#[cfg(test)]
mod tests;
