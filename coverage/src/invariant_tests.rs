//! Property tests of the physical invariants (DOMAIN.md, "GPS quality"; issue 10) on random
//! networks and random drives: whatever the roads and the GPS do, a matched trace is a drive
//! a vehicle could make, and what is credited as work is what the fixes support.
//!
//! The drives here are deliberately rough (AR(1) noise up to σ 20 m, multipath jumps,
//! drop-outs, stops, U-turns, overspeed with the tools on); they test invariants, not
//! accuracy, which `cleanfleet-accuracy` measures.

use cleanfleet_roads::{RoadClass, RoadNetwork, Segment};
use proptest::prelude::*;
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;

use crate::matcher::MatchedTrace;
use crate::{
    chunked_passes, derive_passes, CoverageRules, FixState, MatchConfig, Matcher, Observation,
    Pass, Plane, WorkType,
};

const ORIGIN: (f64, f64) = (120.86, 32.0);
/// Lengths and offsets computed two ways agree to this.
const EPSILON_M: f64 = 1e-6;

fn gaussian(rng: &mut ChaCha8Rng) -> f64 {
    let u1: f64 = 1.0 - rng.random::<f64>();
    let u2: f64 = rng.random();
    (-2.0 * u1.ln()).sqrt() * (std::f64::consts::TAU * u2).cos()
}

/// A jittered grid of `cols` × `rows` nodes with some streets missing, bent streets, one-way
/// streets and every road class.
fn random_network(rng: &mut ChaCha8Rng, cols: u32, rows: u32) -> RoadNetwork {
    let plane = Plane::new(ORIGIN.0, ORIGIN.1);
    let spacing_m = rng.random_range(40.0..220.0);
    let xy: Vec<[f64; 2]> = (0..rows)
        .flat_map(|j| (0..cols).map(move |i| (i, j)))
        .map(|(i, j)| {
            [
                i as f64 * spacing_m + rng.random_range(-0.2..0.2) * spacing_m,
                j as f64 * spacing_m + rng.random_range(-0.2..0.2) * spacing_m,
            ]
        })
        .collect();
    let mut pairs = Vec::new();
    for j in 0..rows {
        for i in 0..cols {
            let n = j * cols + i;
            if i + 1 < cols && rng.random_bool(0.85) {
                pairs.push((n, n + 1));
            }
            if j + 1 < rows && rng.random_bool(0.85) {
                pairs.push((n, n + cols));
            }
        }
    }
    if pairs.is_empty() {
        pairs.push((0, 1));
    }
    let classes = [RoadClass::I, RoadClass::II, RoadClass::III, RoadClass::IV];
    let segments = pairs
        .iter()
        .enumerate()
        .map(|(id, &(from, to))| {
            let (a, b) = (xy[from as usize], xy[to as usize]);
            // A bend halfway, off the straight line by up to a fifth of the street.
            let bend = rng.random_range(-0.2..0.2);
            let mid = [
                (a[0] + b[0]) / 2.0 - (b[1] - a[1]) * bend,
                (a[1] + b[1]) / 2.0 + (b[0] - a[0]) * bend,
            ];
            let length_m = distance(a, mid) + distance(mid, b);
            Segment {
                id: id as u32,
                osm_way_id: None,
                name: None,
                class: classes[rng.random_range(0..classes.len())],
                oneway: rng.random_bool(0.25),
                from_node: from,
                to_node: to,
                points: [a, mid, b].iter().map(|&p| plane.to_lon_lat(p)).collect(),
                length_m,
                width_m: rng.random_range(4.0..20.0),
            }
        })
        .collect();
    let nodes = xy.iter().map(|&p| plane.to_lon_lat(p)).collect();
    RoadNetwork::new(nodes, segments).unwrap()
}

fn distance(a: [f64; 2], b: [f64; 2]) -> f64 {
    (b[0] - a[0]).hypot(b[1] - a[1])
}

/// The point `along_m` from the start of `segment` in the driving direction, in the plane.
fn position(
    net: &RoadNetwork,
    plane: &Plane,
    segment: u32,
    forward: bool,
    along_m: f64,
) -> [f64; 2] {
    let s = &net.segments()[segment as usize];
    let mut points: Vec<[f64; 2]> = s.points.iter().map(|&p| plane.to_xy(p)).collect();
    if !forward {
        points.reverse();
    }
    let mut left_m = along_m.clamp(0.0, s.length_m);
    for w in points.windows(2) {
        let piece_m = distance(w[0], w[1]);
        if left_m <= piece_m || piece_m == 0.0 {
            let t = if piece_m > 0.0 { left_m / piece_m } else { 0.0 };
            return [
                w[0][0] + t * (w[1][0] - w[0][0]),
                w[0][1] + t * (w[1][1] - w[0][1]),
            ];
        }
        left_m -= piece_m;
    }
    points[points.len() - 1]
}

/// A random drive of `duration_s` from `start_s`, one fix a second less the drop-outs, with
/// GPS noise of σ `sigma_m`; and the distance truly driven with the tools on.
fn random_drive(
    net: &RoadNetwork,
    rng: &mut ChaCha8Rng,
    work: WorkType,
    sigma_m: f64,
    no_speed_share: f64,
    start_s: f64,
    duration_s: f64,
) -> (Vec<Observation>, Vec<FixState>, f64) {
    let plane = Plane::new(ORIGIN.0, ORIGIN.1);
    let band_kmh = CoverageRules::default().band_kmh(work);
    let (mut observations, mut states) = (Vec::new(), Vec::new());
    let mut worked_m = 0.0;
    let mut segment = rng.random_range(0..net.segments().len() as u32);
    let mut forward = net.segments()[segment as usize].oneway || rng.random_bool(0.5);
    let mut along_m = 0.0;
    let (mut speed_kmh, mut tools_on, mut mode_left_s) = (0.0, true, 0.0);
    let (mut noise, rho) = ([0.0, 0.0], 0.95f64);
    let (mut jump, mut jump_left, mut gap_left) = ([0.0, 0.0], 0u32, 0u32);
    let mut t = start_s;
    while t < start_s + duration_s {
        if mode_left_s <= 0.0 {
            // Work in the band, transit, overspeed with the tools on, or a stop.
            let (kmh, on) = match rng.random_range(0..10) {
                0..=5 => (rng.random_range(1.5..band_kmh * 0.95), true),
                6 | 7 => (rng.random_range(15.0..40.0), false),
                8 => (rng.random_range(band_kmh * 1.3..band_kmh * 2.0), true),
                _ => (0.0, rng.random_bool(0.5)),
            };
            (speed_kmh, tools_on) = (kmh, on);
            mode_left_s = rng.random_range(5.0..120.0);
        }
        mode_left_s -= 1.0;
        let step_m = speed_kmh / 3.6;
        if tools_on && speed_kmh <= band_kmh {
            worked_m += step_m;
        }
        along_m += step_m;
        let length_m = net.segments()[segment as usize].length_m;
        if along_m < length_m && rng.random_bool(0.002) && !net.segments()[segment as usize].oneway
        {
            // A U-turn in the middle of the street.
            forward = !forward;
            along_m = length_m - along_m;
        }
        while along_m >= net.segments()[segment as usize].length_m {
            along_m -= net.segments()[segment as usize].length_m;
            let node = net.segments()[segment as usize].end_node(forward);
            let next: Vec<(u32, bool)> =
                net.outgoing(node).filter(|&(s, _)| s != segment).collect();
            (segment, forward) = if next.is_empty() {
                // A dead end: back the way it came when it may, else stand at the end.
                if net.segments()[segment as usize].oneway {
                    along_m = net.segments()[segment as usize].length_m;
                    speed_kmh = 0.0;
                    break;
                }
                (segment, !forward)
            } else {
                next[rng.random_range(0..next.len())]
            };
        }
        let truth = position(net, &plane, segment, forward, along_m);
        let innovation = sigma_m * (1.0 - rho * rho).sqrt();
        noise = [
            rho * noise[0] + innovation * gaussian(rng),
            rho * noise[1] + innovation * gaussian(rng),
        ];
        if jump_left == 0 && rng.random_bool(0.01) {
            let (angle, off_m) = (
                rng.random_range(0.0..std::f64::consts::TAU),
                rng.random_range(30.0..80.0),
            );
            jump = [off_m * angle.cos(), off_m * angle.sin()];
            jump_left = rng.random_range(3..9);
        }
        let offset = if jump_left > 0 {
            jump_left -= 1;
            jump
        } else {
            [0.0, 0.0]
        };
        if gap_left == 0 && rng.random_bool(0.005) {
            gap_left = rng.random_range(10..150);
        }
        if gap_left > 0 {
            gap_left -= 1;
        } else {
            let (lon, lat) = plane.to_lon_lat([
                truth[0] + noise[0] + offset[0],
                truth[1] + noise[1] + offset[1],
            ]);
            let s = &net.segments()[segment as usize];
            let ahead = position(
                net,
                &plane,
                segment,
                forward,
                (along_m + 1.0).min(s.length_m),
            );
            let course = (ahead[0] - truth[0])
                .atan2(ahead[1] - truth[1])
                .to_degrees();
            let hdop = (sigma_m / 2.5 * (0.3 * gaussian(rng)).exp()).clamp(0.6, 25.0);
            // Some devices send no speed, some fixes lack one.
            let reported_kmh = (!rng.random_bool(no_speed_share))
                .then(|| (speed_kmh + 0.3 * gaussian(rng)).max(0.0));
            observations.push(Observation {
                time_s: t,
                lon,
                lat,
                heading_deg: Some((course + 3.0 * gaussian(rng)).rem_euclid(360.0)),
                speed_kmh: reported_kmh,
                hdop: Some(hdop),
            });
            states.push(FixState {
                time_s: t,
                speed_kmh: reported_kmh,
                satellites: Some(rng.random_range(4..14)),
                tools_on,
            });
        }
        t += 1.0;
    }
    (observations, states, worked_m)
}

/// Every leg is a drive on the network: its traversals stay on their segments, follow one
/// another at nodes, along a segment or by turning back on it, start and end at the places
/// its fixes were matched, and the next leg starts where it ended.
fn check_connected(net: &RoadNetwork, m: &MatchedTrace) -> Result<(), String> {
    let close = |a: f64, b: f64| (a - b).abs() <= EPSILON_M;
    let mut previous_end: Option<(usize, (u32, bool, f64))> = None;
    for leg in &m.legs {
        let ts = m.leg_traversals(leg);
        let (Some(a), Some(b)) = (m.points[leg.from_point], m.points[leg.to_point]) else {
            return Err(format!("{leg:?} joins an unmatched point"));
        };
        let (Some(first), Some(last)) = (ts.first(), ts.last()) else {
            return Err(format!("{leg:?} has no traversal"));
        };
        if (first.segment, first.forward) != (a.segment, a.forward)
            || !close(first.from_m, a.offset_m)
        {
            return Err(format!("{leg:?} starts at {first:?}, not at its fix {a:?}"));
        }
        if (last.segment, last.forward) != (b.segment, b.forward) || !close(last.to_m, b.offset_m) {
            return Err(format!("{leg:?} ends at {last:?}, not at its fix {b:?}"));
        }
        for t in ts {
            let s = &net.segments()[t.segment as usize];
            if !(t.from_m >= -EPSILON_M
                && t.from_m <= t.to_m + EPSILON_M
                && t.to_m <= s.length_m + EPSILON_M)
            {
                return Err(format!(
                    "{t:?} is not within its segment of {} m",
                    s.length_m
                ));
            }
            if s.oneway && !t.forward {
                return Err(format!("{t:?} drives against a one-way street"));
            }
        }
        for w in ts.windows(2) {
            let (s0, s1) = (
                &net.segments()[w[0].segment as usize],
                &net.segments()[w[1].segment as usize],
            );
            let joined = if (w[0].segment, w[0].forward) == (w[1].segment, w[1].forward) {
                close(w[1].from_m, w[0].to_m)
            } else if w[0].segment == w[1].segment {
                close(w[1].from_m, s0.length_m - w[0].to_m)
            } else {
                close(w[0].to_m, s0.length_m)
                    && close(w[1].from_m, 0.0)
                    && s0.end_node(w[0].forward) == s1.start_node(w[1].forward)
            };
            if !joined {
                return Err(format!("{:?} then {:?} do not join", w[0], w[1]));
            }
        }
        if let Some((to_point, (segment, forward, at_m))) = previous_end {
            if to_point == leg.from_point
                && ((segment, forward) != (first.segment, first.forward)
                    || !close(at_m, first.from_m))
            {
                return Err(format!("{leg:?} does not start where the leg before ended"));
            }
        }
        previous_end = Some((leg.to_point, (last.segment, last.forward, last.to_m)));
    }
    Ok(())
}

/// The physical invariants of one vehicle's passes, computed as the coverage stage does
/// (hour by hour with context).
fn check_passes(
    net: &RoadNetwork,
    work: WorkType,
    states: &[FixState],
    passes: &[Pass],
    rules: &CoverageRules,
) -> Result<(), String> {
    let band_m_s = rules.band_kmh(work) / 3.6;
    let mut sorted: Vec<&Pass> = passes.iter().collect();
    sorted.sort_by(|a, b| a.start_s.total_cmp(&b.start_s));
    for w in sorted.windows(2) {
        if w[1].start_s < w[0].end_s - 1e-6 {
            return Err(format!("{:?} and {:?} overlap in time", w[0], w[1]));
        }
    }
    for p in passes.iter().filter(|p| p.is_valid()) {
        let s = &net.segments()[p.segment as usize];
        if !(p.from_m >= -EPSILON_M && p.from_m <= p.to_m && p.to_m <= s.length_m + EPSILON_M) {
            return Err(format!("{p:?} is not within its segment"));
        }
        let allowed_m = band_m_s * (p.end_s - p.start_s) * rules.max_implied_speed_ratio;
        if p.length_m() > allowed_m + EPSILON_M {
            return Err(format!(
                "{p:?} is faster than its band allows ({allowed_m} m)"
            ));
        }
        // Fixes before and after every instant of it, never further apart than max_gap_s.
        let before = states.iter().rev().find(|f| f.time_s <= p.start_s + 1e-6);
        let after = states.iter().find(|f| f.time_s >= p.end_s - 1e-6);
        let (Some(before), Some(after)) = (before, after) else {
            return Err(format!("{p:?} lies outside its fixes"));
        };
        let within: Vec<f64> = states
            .iter()
            .map(|f| f.time_s)
            .filter(|&t| t >= before.time_s && t <= after.time_s)
            .collect();
        if within.windows(2).any(|w| w[1] - w[0] > rules.max_gap_s) {
            return Err(format!("{p:?} spans a silence longer than max_gap_s"));
        }
    }
    Ok(())
}

/// A vehicle's valid mileage is never more than its fixes' reported speeds (or its band,
/// across silences) imply over its legs (× `max_implied_speed_ratio`, plus
/// `path_slack_sigmas` of the legs' expected errors).
fn check_mileage(
    work: WorkType,
    states: &[FixState],
    matched: &MatchedTrace,
    passes: &[Pass],
    rules: &CoverageRules,
) -> Result<(), String> {
    let allowed_m: f64 = matched
        .legs
        .iter()
        .map(|leg| {
            let (a, b) = (&states[leg.from_point], &states[leg.to_point]);
            // At most the faster of the reported speeds and the band (the rule is tighter
            // between fixes close in time).
            let fastest_kmh = [a.speed_kmh, b.speed_kmh]
                .into_iter()
                .flatten()
                .fold(rules.band_kmh(work), f64::max);
            let reported_m = fastest_kmh / 3.6 * (b.time_s - a.time_s);
            let error_m = |point: usize| matched.points[point].map_or(0.0, |m| m.error_m);
            let slack_m = error_m(leg.from_point).hypot(error_m(leg.to_point));
            reported_m * rules.max_implied_speed_ratio + rules.path_slack_sigmas * slack_m
        })
        .sum();
    let valid_m: f64 = passes
        .iter()
        .filter(|p| p.is_valid())
        .map(Pass::length_m)
        .sum();
    if valid_m > allowed_m + EPSILON_M {
        return Err(format!(
            "valid mileage {valid_m} m, the fixes allow {allowed_m} m"
        ));
    }
    Ok(())
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(64))]

    #[test]
    fn matched_drives_are_connected_and_credited_work_is_physical(
        seed in any::<u64>(),
        cols in 2u32..6,
        rows in 2u32..6,
        sigma_m in prop::sample::select(vec![2.0, 5.0, 10.0, 20.0]),
        work in prop::sample::select(vec![WorkType::Sweep, WorkType::Flush, WorkType::Sprinkle]),
        duration_s in 600.0..2400.0f64,
        no_speed_share in prop::sample::select(vec![0.0, 0.1, 1.0]),
    ) {
        let mut rng = ChaCha8Rng::seed_from_u64(seed);
        let net = random_network(&mut rng, cols, rows);
        // Across an hour, so that chunks meet in the middle of the drive.
        let start_s = 1_767_225_600.0 - rng.random_range(0.0..duration_s);
        let (observations, states, _) = random_drive(&net, &mut rng, work, sigma_m, no_speed_share, start_s, duration_s);
        let (config, rules) = (MatchConfig::default(), CoverageRules::default());
        let mut matcher = Matcher::new(&net, config.clone());
        let matched = matcher.match_trace(&observations);
        prop_assert_eq!(check_connected(&net, &matched), Ok(()));
        let whole = derive_passes(&net, work, &states, &matched, &rules);
        prop_assert_eq!(check_passes(&net, work, &states, &whole, &rules), Ok(()));
        prop_assert_eq!(check_mileage(work, &states, &matched, &whole, &rules), Ok(()));
        let chunked = chunked_passes(&net, &mut matcher, &rules, work, &observations, &states);
        prop_assert_eq!(check_passes(&net, work, &states, &chunked, &rules), Ok(()));
    }
}
