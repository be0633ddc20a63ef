//! Matcher fixtures: small hand-made networks with the hard cases (noise, jumps, gaps,
//! U-turns, parallel roads, one-way streets), driven by a seeded virtual vehicle.

use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;

use super::*;
use crate::test_networks::{network, ORIGIN};
use crate::Plane;

fn gaussian(rng: &mut ChaCha8Rng) -> f64 {
    let u1: f64 = 1.0 - rng.random::<f64>();
    let u2: f64 = rng.random();
    (-2.0 * u1.ln()).sqrt() * (std::f64::consts::TAU * u2).cos()
}

/// A drive at `speed_m_s` over `stretches` (traversals, in order), one fix a second with
/// GPS noise σ = `sigma_m`; returns the fixes and where the vehicle truly was at each.
fn drive(
    net: &RoadNetwork,
    stretches: &[Traversal],
    speed_m_s: f64,
    sigma_m: f64,
    seed: u64,
) -> (Vec<Observation>, Vec<Traversal>) {
    let plane = Plane::new(ORIGIN.0, ORIGIN.1);
    let mut rng = ChaCha8Rng::seed_from_u64(seed);
    let mut fixes = Vec::new();
    let mut truth = Vec::new();
    let mut carried_m = 0.0;
    for t in stretches {
        let segment = &net.segments()[t.segment as usize];
        let (a, b) = (
            plane.to_xy(segment.points[0]),
            plane.to_xy(segment.points[1]),
        );
        let (start, end) = if t.forward { (a, b) } else { (b, a) };
        let heading = (end[0] - start[0])
            .atan2(end[1] - start[1])
            .to_degrees()
            .rem_euclid(360.0);
        let mut offset_m = t.from_m + carried_m;
        while offset_m <= t.to_m {
            let f = offset_m / segment.length_m;
            let x = start[0] + f * (end[0] - start[0]) + sigma_m * gaussian(&mut rng);
            let y = start[1] + f * (end[1] - start[1]) + sigma_m * gaussian(&mut rng);
            let (lon, lat) = plane.to_lon_lat([x, y]);
            fixes.push(Observation {
                time_s: fixes.len() as f64,
                lon,
                lat,
                heading_deg: Some(heading),
                speed_kmh: Some(speed_m_s * 3.6),
                hdop: None,
            });
            truth.push(Traversal {
                from_m: offset_m,
                to_m: offset_m,
                ..*t
            });
            offset_m += speed_m_s;
        }
        carried_m = offset_m - t.to_m;
    }
    (fixes, truth)
}

fn full(net: &RoadNetwork, segment: u32, forward: bool) -> Traversal {
    Traversal {
        segment,
        forward,
        from_m: 0.0,
        to_m: net.segments()[segment as usize].length_m,
    }
}

/// Share of fixes matched to the segment and direction they were truly on.
fn on_true_edge(matched: &MatchedTrace, truth: &[Traversal]) -> f64 {
    let hits = matched
        .points
        .iter()
        .zip(truth)
        .filter(|(m, t)| m.is_some_and(|m| m.segment == t.segment && m.forward == t.forward))
        .count();
    hits as f64 / truth.len() as f64
}

/// Legs join up: each starts where its first point was matched and ends at its last, and
/// consecutive traversals meet at a node or continue on one segment.
fn assert_legs_connect(net: &RoadNetwork, matched: &MatchedTrace) {
    for leg in &matched.legs {
        let ts = matched.leg_traversals(leg);
        let (a, b) = (
            matched.points[leg.from_point].unwrap(),
            matched.points[leg.to_point].unwrap(),
        );
        let (first, last) = (ts[0], ts[ts.len() - 1]);
        assert_eq!(
            (first.segment, first.forward),
            (a.segment, a.forward),
            "{leg:?}"
        );
        assert!(
            (first.from_m - a.offset_m).abs() < 1e-6 || ts.len() == 1,
            "{leg:?} {ts:?} {a:?}"
        );
        assert_eq!(
            (last.segment, last.forward),
            (b.segment, b.forward),
            "{leg:?} {ts:?}"
        );
        for w in ts.windows(2) {
            let (s0, s1) = (
                &net.segments()[w[0].segment as usize],
                &net.segments()[w[1].segment as usize],
            );
            assert!(
                s0.end_node(w[0].forward) == s1.start_node(w[1].forward)
                    || w[0].segment == w[1].segment,
                "{w:?}"
            );
        }
        for t in ts {
            assert!(
                t.from_m <= t.to_m && t.to_m <= net.segments()[t.segment as usize].length_m + 1e-6
            );
        }
    }
}

/// Two east-west roads 15 m apart, joined at both ends; the northern one is one-way east
/// when `north_oneway`.
fn parallel_roads(north_oneway: bool) -> RoadNetwork {
    network(
        &[(0.0, 0.0), (400.0, 0.0), (0.0, 15.0), (400.0, 15.0)],
        &[
            (0, 1, false),
            (2, 3, north_oneway),
            (0, 2, false),
            (1, 3, false),
        ],
    )
}

#[test]
fn a_noisy_drive_stays_on_its_road_beside_a_parallel_one() {
    let net = parallel_roads(false);
    let (fixes, truth) = drive(&net, &[full(&net, 0, true)], 8.0, 5.0, 1);
    let matched = Matcher::new(&net, MatchConfig::default()).match_trace(&fixes);
    let share = on_true_edge(&matched, &truth);
    assert!(share >= 0.95, "{share}");
    assert_legs_connect(&net, &matched);
}

#[test]
fn multipath_jumps_do_not_pull_the_match_to_the_parallel_road() {
    let net = parallel_roads(false);
    let (mut fixes, truth) = drive(&net, &[full(&net, 0, true)], 5.0, 3.0, 2);
    let plane = Plane::new(ORIGIN.0, ORIGIN.1);
    for f in fixes.iter_mut().skip(3).step_by(7) {
        let [x, y] = plane.to_xy((f.lon, f.lat));
        (f.lon, f.lat) = plane.to_lon_lat([x, y + 40.0]);
    }
    let matched = Matcher::new(&net, MatchConfig::default()).match_trace(&fixes);
    // Near the corners a fix is as near the short connecting roads: judge the rest.
    let jumped = |i: usize| i >= 3 && (i - 3).is_multiple_of(7);
    let middle = |i: &usize| (15.0..=385.0).contains(&truth[*i].from_m);
    let wrong: Vec<usize> = (0..fixes.len())
        .filter(middle)
        .filter(|&i| !jumped(i))
        .filter(|&i| matched.points[i].is_none_or(|m| (m.segment, m.forward) != (0, true)))
        .collect();
    assert!(
        wrong.is_empty(),
        "fixes {wrong:?} matched off the true road"
    );
    let pulled: Vec<usize> = (0..fixes.len())
        .filter(middle)
        .filter(|&i| matched.points[i].is_some_and(|m| m.segment == 1))
        .collect();
    assert!(
        pulled.is_empty(),
        "fixes {pulled:?} matched to the parallel road"
    );
    // The thrown fixes are outliers: left unmatched, the drive goes on between the others.
    let thrown: Vec<usize> = (0..fixes.len())
        .filter(middle)
        .filter(|&i| jumped(i) && matched.points[i].is_some())
        .collect();
    assert!(thrown.is_empty(), "thrown fixes {thrown:?} were matched");
    assert_legs_connect(&net, &matched);
    let driven_m: f64 = matched.traversals.iter().map(|t| t.to_m - t.from_m).sum();
    assert!((driven_m - 400.0).abs() < 20.0, "{driven_m}");
}

/// A washer-sweeper's fixes were thrown 70 m onto a parallel street for 8 s; that street is
/// out of the search radius of the true one and no drive joins the two in time. The run
/// broke there and started again on the thrown fixes' street; a dead end from it, near the
/// true street, kept a costly way on, so the vehicle was held there: the next 67 s of good
/// fixes were left unmatched (Krems, accuracy harness seed 10, σ 5 m).
#[test]
fn a_multipath_episode_does_not_strand_the_trace_on_the_road_it_was_thrown_to() {
    let net = network(
        &[
            (0.0, 0.0),
            (400.0, 0.0),
            (0.0, 70.0),
            (150.0, 70.0),
            (400.0, 70.0),
            (150.0, 25.0),
        ],
        &[
            (0, 1, false),
            (2, 3, false),
            (3, 4, false),
            (3, 5, false),
            (0, 2, false),
            (1, 4, false),
        ],
    );
    let (mut fixes, truth) = drive(&net, &[full(&net, 0, true)], 2.0, 3.0, 9);
    let plane = Plane::new(ORIGIN.0, ORIGIN.1);
    let thrown = 60..68;
    for f in &mut fixes[thrown.clone()] {
        let [x, y] = plane.to_xy((f.lon, f.lat));
        (f.lon, f.lat) = plane.to_lon_lat([x, y + 70.0]);
    }
    let matched = Matcher::new(&net, MatchConfig::default()).match_trace(&fixes);
    let middle = |i: &usize| (15.0..=385.0).contains(&truth[*i].from_m);
    let wrong: Vec<usize> = (0..fixes.len())
        .filter(middle)
        .filter(|i| !thrown.contains(i))
        .filter(|&i| matched.points[i].is_none_or(|m| (m.segment, m.forward) != (0, true)))
        .collect();
    assert!(
        wrong.is_empty(),
        "fixes {wrong:?} not matched to the true road"
    );
    let matched_thrown: Vec<usize> = thrown
        .clone()
        .filter(|&i| matched.points[i].is_some())
        .collect();
    assert!(
        matched_thrown.is_empty(),
        "thrown fixes {matched_thrown:?} were matched"
    );
    assert_legs_connect(&net, &matched);
    let driven_m: f64 = matched.traversals.iter().map(|t| t.to_m - t.from_m).sum();
    assert!((driven_m - 400.0).abs() < 20.0, "{driven_m}");
}

/// Beyond `max_outlier_s` a vehicle is not held: fixes that stay on the other road are
/// a drive there (here: the trace breaks and starts again on it).
#[test]
fn fixes_that_stay_elsewhere_longer_than_max_outlier_s_are_matched_there() {
    let net = network(
        &[(0.0, 0.0), (400.0, 0.0), (0.0, 70.0), (400.0, 70.0)],
        &[(0, 1, false), (2, 3, false)],
    );
    let (mut fixes, _) = drive(&net, &[full(&net, 0, true)], 2.0, 3.0, 10);
    let plane = Plane::new(ORIGIN.0, ORIGIN.1);
    for f in &mut fixes[60..] {
        let [x, y] = plane.to_xy((f.lon, f.lat));
        (f.lon, f.lat) = plane.to_lon_lat([x, y + 70.0]);
    }
    let config = MatchConfig::default();
    let matched = Matcher::new(&net, config.clone()).match_trace(&fixes);
    let after = 60 + config.max_outlier_s as usize + 2;
    let elsewhere: Vec<usize> = (after..fixes.len() - 10)
        .filter(|&i| matched.points[i].is_none_or(|m| m.segment != 1))
        .collect();
    assert!(
        elsewhere.is_empty(),
        "fixes {elsewhere:?} not matched to road 1"
    );
}

#[test]
fn a_one_way_street_is_not_driven_against_its_direction() {
    let net = parallel_roads(true);
    // Westward on the southern road, with GPS pulled 8 m north (towards the one-way road).
    let (mut fixes, truth) = drive(&net, &[full(&net, 0, false)], 8.0, 3.0, 3);
    let plane = Plane::new(ORIGIN.0, ORIGIN.1);
    for f in &mut fixes {
        let [x, y] = plane.to_xy((f.lon, f.lat));
        (f.lon, f.lat) = plane.to_lon_lat([x, y + 8.0]);
    }
    let matched = Matcher::new(&net, MatchConfig::default()).match_trace(&fixes);
    for m in matched.points.iter().flatten() {
        let segment = &net.segments()[m.segment as usize];
        assert!(m.forward || !segment.oneway, "{m:?} against the one-way");
    }
    assert!(on_true_edge(&matched, &truth) >= 0.9);
}

#[test]
fn a_u_turn_mid_segment_flips_the_direction() {
    let net = network(&[(0.0, 0.0), (400.0, 0.0)], &[(0, 1, false)]);
    let stretches = [
        Traversal {
            segment: 0,
            forward: true,
            from_m: 0.0,
            to_m: 250.0,
        },
        Traversal {
            segment: 0,
            forward: false,
            from_m: 150.0,
            to_m: 400.0,
        },
    ];
    let (fixes, truth) = drive(&net, &stretches, 6.0, 4.0, 4);
    let matched = Matcher::new(&net, MatchConfig::default()).match_trace(&fixes);
    let turn = truth.iter().position(|t| !t.forward).unwrap();
    let wrong: Vec<usize> = matched
        .points
        .iter()
        .zip(&truth)
        .enumerate()
        .filter(|(_, (m, t))| m.is_none_or(|m| m.forward != t.forward))
        .map(|(i, _)| i)
        .collect();
    assert!(
        wrong.iter().all(|&i| i.abs_diff(turn) <= 3),
        "wrong directions at {wrong:?}, turn at {turn}"
    );
    assert_legs_connect(&net, &matched);
}

/// A 3 × 3 block grid of 200 m blocks, all two-way.
fn grid() -> RoadNetwork {
    let mut nodes = Vec::new();
    for j in 0..4 {
        for i in 0..4 {
            nodes.push((i as f64 * 200.0, j as f64 * 200.0));
        }
    }
    let mut segments = Vec::new();
    for j in 0..4u32 {
        for i in 0..4u32 {
            let n = j * 4 + i;
            if i < 3 {
                segments.push((n, n + 1, false));
            }
            if j < 3 {
                segments.push((n, n + 4, false));
            }
        }
    }
    network(&nodes, &segments)
}

/// The traversal from node `a` to node `b` of the grid.
fn grid_edge(net: &RoadNetwork, a: u32, b: u32) -> Traversal {
    let (s, f) = net
        .outgoing(a)
        .find(|&(s, f)| net.segments()[s as usize].end_node(f) == b)
        .unwrap();
    full(net, s, f)
}

#[test]
fn a_gap_of_minutes_breaks_the_trace_and_both_sides_match() {
    let net = grid();
    let route: Vec<Traversal> = [0, 1, 2, 6, 10, 9, 8, 4]
        .windows(2)
        .map(|w| grid_edge(&net, w[0], w[1]))
        .collect();
    let (mut fixes, truth) = drive(&net, &route, 7.0, 5.0, 5);
    // Silence for 3 minutes in the middle: a tunnel, a dead modem.
    let middle = fixes.len() / 2;
    for f in &mut fixes[middle..] {
        f.time_s += 180.0;
    }
    let matched = Matcher::new(&net, MatchConfig::default()).match_trace(&fixes);
    assert!(on_true_edge(&matched, &truth) >= 0.9);
    assert!(
        matched
            .legs
            .iter()
            .all(|l| l.to_point < middle || l.from_point >= middle),
        "no route is inferred across the gap"
    );
    assert_legs_connect(&net, &matched);
}

#[test]
fn turns_through_a_grid_follow_the_route() {
    let net = grid();
    let route: Vec<Traversal> = [0, 4, 5, 6, 10, 14, 15, 11, 7, 3, 2]
        .windows(2)
        .map(|w| grid_edge(&net, w[0], w[1]))
        .collect();
    for seed in 0..5 {
        let (fixes, truth) = drive(&net, &route, 8.0, 8.0, 10 + seed);
        let config = MatchConfig {
            gps_sigma_m: 8.0,
            beta_m: 8.0,
            reverse_tolerance_m: 32.0,
            ..MatchConfig::default()
        };
        let matched = Matcher::new(&net, config).match_trace(&fixes);
        let share = on_true_edge(&matched, &truth);
        assert!(share >= 0.9, "seed {seed}: {share}");
        assert_legs_connect(&net, &matched);
        // The legs cover the drive: their length is the route's, give or take the ends.
        let driven_m: f64 = matched.traversals.iter().map(|t| t.to_m - t.from_m).sum();
        let route_m: f64 = route.iter().map(|t| t.to_m - t.from_m).sum();
        assert!(
            (driven_m - route_m).abs() < 40.0,
            "seed {seed}: {driven_m} vs {route_m}"
        );
    }
}

#[test]
fn the_same_fixes_match_the_same_way() {
    let net = grid();
    let route: Vec<Traversal> = [0, 1, 5, 9, 10]
        .windows(2)
        .map(|w| grid_edge(&net, w[0], w[1]))
        .collect();
    let (fixes, _) = drive(&net, &route, 6.0, 6.0, 9);
    let mut matcher = Matcher::new(&net, MatchConfig::default());
    let first = matcher.match_trace(&fixes);
    let again = matcher.match_trace(&fixes);
    let fresh = Matcher::new(&net, MatchConfig::default()).match_trace(&fixes);
    assert_eq!(first, again);
    assert_eq!(first, fresh);
}

/// A sweeper standing 100 m into a 1 km one-way street while its GPS drifts back 12 m every
/// 10 s. Each step back is jitter (within `reverse_tolerance_m`), but three of them are not: the
/// matcher used to hold the vehicle where it got to *before* routing, found no route from
/// there to the drifted place, and stitched "the rest of this street + the start of the
/// next" — a 900 m drive in 10 s credited as work.
#[test]
fn standing_jitter_back_is_no_teleport() {
    let net = network(
        &[(0.0, 0.0), (1000.0, 0.0), (1000.0, 300.0)],
        &[(0, 1, true), (1, 2, false)],
    );
    let plane = Plane::new(ORIGIN.0, ORIGIN.1);
    let fixes: Vec<Observation> = [100.0, 88.0, 76.0, 64.0, 52.0]
        .iter()
        .enumerate()
        .map(|(i, &x)| {
            let (lon, lat) = plane.to_lon_lat([x, 1.0]);
            Observation {
                time_s: i as f64 * 10.0,
                lon,
                lat,
                heading_deg: Some(90.0),
                speed_kmh: Some(0.5),
                hdop: Some(1.0),
            }
        })
        .collect();
    let matched = Matcher::new(&net, MatchConfig::default()).match_trace(&fixes);
    assert_legs_connect(&net, &matched);
    let driven_m: f64 = matched.traversals.iter().map(|t| t.to_m - t.from_m).sum();
    assert!(
        driven_m < 1.0,
        "{driven_m} m driven: {:?}",
        matched.traversals
    );
    // It stood where it was first seen; the drifting fixes are outliers of that.
    assert!(matched.points[0].is_some());
}

/// How long a trace's errors stay correlated is learned from how far its fixes move from
/// one second to the next beyond what speed and heading explain: white noise of the
/// model's σ shows (almost) none, an AR(1) error correlated by 0.95 per second about 20 s,
/// and a position held while standing is not taken for either.
#[test]
fn the_error_correlation_is_learned_from_the_trace() {
    let net = grid();
    let route: Vec<Traversal> = [0, 1, 2, 3]
        .windows(2)
        .map(|w| grid_edge(&net, w[0], w[1]))
        .collect();
    let matcher = Matcher::new(&net, MatchConfig::default());
    let plane = Plane::new(ORIGIN.0, ORIGIN.1);
    let learned_s = |fixes: &[Observation]| {
        let xy: Vec<[f64; 2]> = fixes
            .iter()
            .map(|o| matcher.index().plane().to_xy((o.lon, o.lat)))
            .collect();
        matcher.learn_errors(fixes, &xy).correlation_s
    };
    // σ = the configured floor, so that only the correlation differs.
    let sigma_m = MatchConfig::default().gps_sigma_m;
    let (white, _) = drive(&net, &route, 2.0, sigma_m, 3);
    let white_s = learned_s(&white);
    assert!(
        white_s < 1.0,
        "white noise learned as correlated over {white_s} s"
    );
    // A receiver that holds its position while the truck stands (static hold) says nothing
    // of how its errors wander: three standing minutes before the drive change nothing.
    let mut held: Vec<Observation> = (0..180)
        .map(|i| Observation {
            time_s: i as f64 - 180.0,
            speed_kmh: Some(0.0),
            heading_deg: None,
            ..white[0]
        })
        .collect();
    held.extend(white.iter().copied());
    let held_s = learned_s(&held);
    assert!(
        held_s < 1.0,
        "a held position learned as correlated over {held_s} s"
    );
    let (mut correlated, _) = drive(&net, &route, 2.0, 0.0, 3);
    let mut rng = ChaCha8Rng::seed_from_u64(4);
    let rho: f64 = 0.95;
    let mut e = [0.0, 0.0];
    for f in &mut correlated {
        for axis in &mut e {
            *axis = rho * *axis + sigma_m * (1.0 - rho * rho).sqrt() * gaussian(&mut rng);
        }
        let [x, y] = plane.to_xy((f.lon, f.lat));
        (f.lon, f.lat) = plane.to_lon_lat([x + e[0], y + e[1]]);
    }
    let correlated_s = learned_s(&correlated);
    let true_s = -1.0 / rho.ln();
    assert!(
        (true_s / 2.0..true_s * 2.0).contains(&correlated_s),
        "learned {correlated_s} s for {true_s} s"
    );
    // Without speeds nothing is learned: the configured value stands.
    let no_speeds: Vec<Observation> = white
        .iter()
        .map(|o| Observation {
            speed_kmh: None,
            ..*o
        })
        .collect();
    assert_eq!(
        learned_s(&no_speeds),
        MatchConfig::default().gps_error_correlation_s
    );
}

/// A sweeper at 2 m/s whose receiver throws six fixes 60 m ahead along its own street: the
/// matcher used to drive out to the throw and back (around the block), adding a detour that
/// the pass rules then rightly refused, and the work there was lost. Held where it was, the
/// vehicle drives the street once.
#[test]
fn a_multipath_throw_along_the_street_is_held_not_driven_to() {
    let net = grid();
    let route: Vec<Traversal> = [0, 1, 2, 3]
        .windows(2)
        .map(|w| grid_edge(&net, w[0], w[1]))
        .collect();
    let (mut fixes, _) = drive(&net, &route, 2.0, 3.0, 21);
    let plane = Plane::new(ORIGIN.0, ORIGIN.1);
    for f in &mut fixes[100..106] {
        let [x, y] = plane.to_xy((f.lon, f.lat));
        (f.lon, f.lat) = plane.to_lon_lat([x + 60.0, y]);
    }
    let matched = Matcher::new(&net, MatchConfig::default()).match_trace(&fixes);
    assert_legs_connect(&net, &matched);
    let driven_m: f64 = matched.traversals.iter().map(|t| t.to_m - t.from_m).sum();
    let route_m: f64 = route.iter().map(|t| t.to_m - t.from_m).sum();
    assert!(
        (driven_m - route_m).abs() < 15.0,
        "{driven_m} m driven for {route_m}"
    );
    assert!(fixes[100..106]
        .iter()
        .zip(&matched.points[100..106])
        .all(|(_, m)| m.is_none()));
}

/// A sweeper slowing (1 m/s) into a dead end falls silent for a minute, U-turns there and is
/// next seen past the junction at 13 km/h. The mean of the speeds at the silence's ends
/// (141 m in 60 s) sent it once round the block beside the junction (190 m) instead of back
/// out of the dead end (61 m): the speeds at the ends of a silence say little of the drive
/// within it, so the expected length leans on the straight line there.
#[test]
fn a_u_turn_in_a_silence_is_not_a_loop_round_the_block() {
    // 0 junction, 1 the dead end 50 m west, 2 east; a triangle block north of the junction.
    let net = network(
        &[
            (0.0, 0.0),
            (-50.0, 0.0),
            (100.0, 0.0),
            (-20.0, 40.0),
            (20.0, 40.0),
        ],
        &[
            (0, 1, false),
            (0, 2, false),
            (0, 3, false),
            (3, 4, false),
            (4, 0, false),
        ],
    );
    let plane = Plane::new(ORIGIN.0, ORIGIN.1);
    let fix = |time_s: f64, x: f64, heading_deg: f64, speed_kmh: f64| {
        let (lon, lat) = plane.to_lon_lat([x, 0.0]);
        Observation {
            time_s,
            lon,
            lat,
            heading_deg: Some(heading_deg),
            speed_kmh: Some(speed_kmh),
            hdop: Some(1.0),
        }
    };
    let mut fixes: Vec<Observation> = (0..15)
        .map(|i| fix(i as f64, -30.0 - i as f64, 270.0, 3.8))
        .collect();
    fixes.extend((0..10).map(|i| fix(74.0 + i as f64, 5.0 + 3.7 * i as f64, 90.0, 13.2)));
    let matched = Matcher::new(&net, MatchConfig::default()).match_trace(&fixes);
    assert_legs_connect(&net, &matched);
    assert!(
        matched.traversals.iter().all(|t| t.segment <= 1),
        "round the block: {:?}",
        matched.traversals
    );
    let driven_m: f64 = matched.traversals.iter().map(|t| t.to_m - t.from_m).sum();
    // 14 m seen, 6 m to the dead end and 50 m back, 38 m seen past the junction.
    assert!(
        (driven_m - 108.0).abs() < 5.0,
        "{driven_m} m: {:?}",
        matched.traversals
    );
}

/// Regression (issue 10, σ 20 m): a fix is searched for roads as far as its own expected
/// error makes an inlier. At HDOP 12 (σ 30 m) fixes 60 m off their road for 40 s had only
/// the road 30 m beyond them as a candidate, so the match had to leave its road for it.
#[test]
fn a_road_within_the_fixes_own_error_stays_a_candidate() {
    // Two east-west roads 90 m apart, joined at both ends.
    let net = network(
        &[(0.0, 0.0), (600.0, 0.0), (0.0, 90.0), (600.0, 90.0)],
        &[(0, 1, false), (2, 3, false), (0, 2, false), (1, 3, false)],
    );
    let (mut fixes, _) = drive(&net, &[full(&net, 0, true)], 2.0, 3.0, 7);
    let plane = Plane::new(ORIGIN.0, ORIGIN.1);
    for (i, f) in fixes.iter_mut().enumerate() {
        f.hdop = Some(12.0);
        if (100..140).contains(&i) {
            let [x, y] = plane.to_xy((f.lon, f.lat));
            (f.lon, f.lat) = plane.to_lon_lat([x, y + 60.0]);
        }
    }
    let matched = Matcher::new(&net, MatchConfig::default()).match_trace(&fixes);
    // None of them is placed on the other road (a fix farther than the search radius from
    // its drive may be left unplaced), and the drive along the road is not broken.
    let wrong = (100..140)
        .filter(|&i| matched.points[i].is_some_and(|m| m.segment != 0))
        .count();
    assert_eq!(wrong, 0, "{wrong} of 40 displaced fixes on another road");
    let driven_m: f64 = matched
        .traversals
        .iter()
        .filter(|t| t.segment == 0 && t.forward)
        .map(|t| t.to_m - t.from_m)
        .sum();
    assert!(driven_m > 0.95 * 600.0, "{driven_m} m of the road driven");
    assert_legs_connect(&net, &matched);
}
