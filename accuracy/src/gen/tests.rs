use std::collections::{HashMap, HashSet};

use cleanfleet_roads::RoadClass;

use super::drive::{drive, Drive, TrackPoint};
use super::*;

fn config(hours: f64) -> GenConfig {
    GenConfig {
        seed: 11,
        shift_hours: hours,
        ..GenConfig::default()
    }
}

/// One vehicle's plan driven on the demo town, with its noise-free track.
fn drive_one(net: &RoadNetwork, work: WorkType, hours: f64, overspeed_share: f64) -> Drive {
    let rules = CoverageRules::default();
    let geometry = Geometry::new(net);
    let graph = Graph::new(net);
    let both_sided: Vec<bool> = net.segments().iter().map(|s| rules.sides(s) == 2).collect();
    let centre = graph.core_nodes()[40];
    let district = plan::district(&graph, centre, 8_000.0);
    let band_kmh = rules.band_kmh(work);
    let pace = Pace {
        work_mps: band_kmh / 3.6,
        transit_mps: 40.0 / 3.6,
    };
    let shift_s = hours * 3600.0;
    let pieces = plan::plan(
        &graph,
        &district,
        &both_sided,
        centre,
        &pace,
        shift_s,
        0.05,
        &mut stream(5, 1),
    );
    let shift = Shift {
        start_s: 100.0,
        end_s: 100.0 + shift_s,
        band_kmh,
        overspeed_share,
    };
    drive(net, &geometry, &pieces, &shift, &mut stream(5, 2))
}

/// A vehicle standing at the demo town's centre for `hours`, one point a second.
fn standing_track(hours: f64) -> Vec<TrackPoint> {
    (0..(hours * 3600.0) as usize)
        .map(|k| TrackPoint {
            time_s: 1000.0 + k as f64,
            xy: [0.0, 0.0],
            speed_kmh: 0.0,
            course_deg: 0.0,
            tools_on: false,
        })
        .collect()
}

fn noise(sigma_m: f64, dropout_share: f64, multipath_per_hour: f64) -> Noise {
    Noise {
        sigma_m,
        correlation_s: (10.0, 30.0),
        dropout_share,
        dropout_gap_s: (10.0, 120.0),
        multipath_per_hour,
    }
}

/// Fixes of receivers `0..receivers` for `track`, each with its error from the truth.
fn errors(track: &[TrackPoint], noise: &Noise, receivers: u64) -> Vec<Vec<(GenFix, [f64; 2])>> {
    let net = RoadNetwork::demo();
    let geometry = Geometry::new(&net);
    let at: HashMap<u64, [f64; 2]> = track.iter().map(|p| (p.time_s as u64, p.xy)).collect();
    (0..receivers)
        .map(|r| {
            gps::observe(track, &geometry, noise, &mut stream(9, r))
                .into_iter()
                .map(|f| {
                    let xy = geometry.xy((f.lon, f.lat));
                    let truth = at[&(f.time_s as u64)];
                    (f, [xy[0] - truth[0], xy[1] - truth[1]])
                })
                .collect()
        })
        .collect()
}

fn median(mut xs: Vec<f64>) -> f64 {
    xs.sort_by(f64::total_cmp);
    xs[xs.len() / 2]
}

#[test]
fn the_same_seed_gives_the_same_fleet_and_another_seed_another() {
    let net = RoadNetwork::demo();
    let a = generate(&net, &config(0.5));
    assert_eq!(a, generate(&net, &config(0.5)));
    let other = generate(
        &net,
        &GenConfig {
            seed: 12,
            ..config(0.5)
        },
    );
    assert_ne!(a, other);
    let ids: Vec<&str> = a.iter().map(|r| r.id.as_str()).collect();
    assert_eq!(
        ids,
        [
            "sweeper-1",
            "sweeper-2",
            "washer-sweeper-1",
            "flusher-1",
            "washer-sweeper-2",
            "flusher-2",
            "sweeper-3",
            "sprinkler-1"
        ]
    );
    // The GPS settings change the fixes, never what the trucks did.
    let noisier = generate(
        &net,
        &GenConfig {
            gps_sigma_m: 20.0,
            ..config(0.5)
        },
    );
    for (x, y) in a.iter().zip(&noisier) {
        assert_eq!(x.truth, y.truth);
        assert_ne!(x.fixes, y.fixes);
    }
}

#[test]
fn truth_is_contiguous_drivable_and_adds_up_to_the_distance_driven() {
    let net = RoadNetwork::demo();
    let runs = generate(&net, &config(1.0));
    for run in &runs {
        assert!(!run.truth.is_empty(), "{}", run.id);
        assert_eq!(run.truth[0].start_s, run.fixes[0].time_s);
        for w in run.truth.windows(2) {
            let (a, b) = (&w[0], &w[1]);
            assert!(a.end_s > a.start_s, "{a:?}");
            assert_eq!(a.end_s, b.start_s, "{} {a:?} {b:?}", run.id);
            let length_m = net.segments()[a.segment as usize].length_m;
            let same_way = (a.segment, a.forward) == (b.segment, b.forward);
            if same_way && b.from_m > 0.0 {
                // Cut by tools or band, not by place.
                assert_eq!(a.to_m, b.from_m, "{a:?} {b:?}");
            } else if a.segment == b.segment && a.forward != b.forward {
                // Turned back: in the middle or at a node.
                assert!((b.from_m - (length_m - a.to_m)).abs() < 1e-9, "{a:?} {b:?}");
            } else {
                let seg = |s: &TruthStretch| &net.segments()[s.segment as usize];
                assert!((a.to_m - length_m).abs() < 1e-9, "{a:?}");
                assert_eq!(b.from_m, 0.0);
                assert_eq!(seg(a).end_node(a.forward), seg(b).start_node(b.forward));
            }
        }
        for s in &run.truth {
            let segment = &net.segments()[s.segment as usize];
            assert!(
                s.forward || !segment.oneway,
                "one-way driven backwards: {s:?}"
            );
            assert!(0.0 <= s.from_m && s.from_m <= s.to_m && s.to_m <= segment.length_m + 1e-9);
            // The mean speed is at most the fastest.
            let mean_kmh = s.length_m() / (s.end_s - s.start_s) * 3.6;
            assert!(mean_kmh <= s.max_speed_kmh + 1e-9, "{s:?}");
        }
        let total_m: f64 = run.truth.iter().map(TruthStretch::length_m).sum();
        assert!(
            (total_m - run.driven_m).abs() < 1e-6 * run.driven_m,
            "{}",
            run.id
        );
        assert!(
            run.driven_m > 3_000.0,
            "{} drove {} m",
            run.id,
            run.driven_m
        );
    }
}

#[test]
fn stretch_lengths_over_durations_are_the_true_speeds_and_work_stays_in_its_band() {
    let net = RoadNetwork::demo();
    let rules = CoverageRules::default();
    let work = WorkType::Sweep;
    let band_kmh = rules.band_kmh(work);
    let d = drive_one(&net, work, 2.0, 0.1);
    let speed_at: HashMap<u64, &TrackPoint> =
        d.track.iter().map(|p| (p.time_s as u64, p)).collect();
    let (mut checked, mut within, mut over) = (0, 0, 0);
    for s in &d.truth {
        // The track's speeds at the whole seconds inside the stretch.
        let inside: Vec<&TrackPoint> = (s.start_s.ceil() as u64 + 1..=s.end_s.floor() as u64)
            .filter_map(|t| speed_at.get(&t).copied())
            .collect();
        for p in &inside {
            assert!(p.speed_kmh <= s.max_speed_kmh + 1e-9, "{s:?} {p:?}");
            assert_eq!(p.tools_on, s.tools_on, "{s:?} {p:?}");
            if s.is_work(work, &rules) {
                assert!(p.speed_kmh <= band_kmh, "{s:?} {p:?}");
            }
        }
        if s.tools_on {
            if s.max_speed_kmh > band_kmh {
                over += 1;
            } else {
                within += 1;
            }
        }
        if s.end_s - s.start_s >= 60.0 {
            let sampled_kmh = inside.iter().map(|p| p.speed_kmh).sum::<f64>() / inside.len() as f64;
            let mean_kmh = s.length_m() / (s.end_s - s.start_s) * 3.6;
            assert!(
                (sampled_kmh - mean_kmh).abs() < 0.5,
                "{s:?}: {sampled_kmh} km/h sampled"
            );
            checked += 1;
        }
    }
    assert!(
        checked > 20 && within > 20 && over > 2,
        "{checked} {within} {over}"
    );
    // Every overspeed stretch stays within the brief's 2 × band (plus braking).
    assert!(d
        .truth
        .iter()
        .filter(|s| s.tools_on)
        .all(|s| s.max_speed_kmh <= 2.0 * band_kmh));
}

#[test]
fn fleets_work_overlapping_districts_both_sides_of_main_roads_and_some_overspeed() {
    let net = RoadNetwork::demo();
    let rules = CoverageRules::default();
    let runs = generate(&net, &config(2.0));
    let mut workers: HashMap<u32, HashSet<&str>> = HashMap::new();
    let mut directions: HashMap<u32, HashSet<bool>> = HashMap::new();
    let (mut tools_s, mut over_s) = (0.0, 0.0);
    for run in &runs {
        for s in run
            .truth
            .iter()
            .filter(|s| s.tools_on && s.length_m() > 0.0)
        {
            workers.entry(s.segment).or_default().insert(&run.id);
            let segment = &net.segments()[s.segment as usize];
            if rules.sides(segment) == 2 {
                directions.entry(s.segment).or_default().insert(s.forward);
            }
            tools_s += s.end_s - s.start_s;
            if s.max_speed_kmh > rules.band_kmh(run.work) {
                over_s += s.end_s - s.start_s;
            }
        }
    }
    let shared = workers.values().filter(|w| w.len() >= 3).count();
    assert!(
        shared >= 10,
        "{shared} segments worked by 3 or more vehicles"
    );
    let both = directions.values().filter(|d| d.len() == 2).count();
    assert!(
        both * 10 >= directions.len() * 6,
        "{both} of {}",
        directions.len()
    );
    let share = over_s / tools_s;
    assert!((0.02..0.12).contains(&share), "overspeed share {share}");
    assert!(net
        .segments()
        .iter()
        .any(|s| s.class == RoadClass::I && directions.get(&s.id).is_some_and(|d| d.len() == 2)));
}

#[test]
fn trailers_drive_their_flushers_route_20_to_90_minutes_later() {
    let net = RoadNetwork::demo();
    let runs = generate(&net, &config(2.0));
    let by_id: HashMap<&str, &VehicleRun> = runs.iter().map(|r| (r.id.as_str(), r)).collect();
    // Each traversal of a segment (consecutive stretches on one segment and direction merged)
    // with when it began.
    let traversals = |run: &VehicleRun| {
        let mut out: Vec<((u32, bool), f64)> = Vec::new();
        for s in run.truth.iter().filter(|s| s.length_m() > 0.0) {
            let continues = out
                .last()
                .is_some_and(|&(key, _)| key == (s.segment, s.forward))
                && s.from_m > 0.0;
            if !continues {
                out.push(((s.segment, s.forward), s.start_s));
            }
        }
        out
    };
    let trailers: Vec<&VehicleRun> = runs.iter().filter(|r| r.follows.is_some()).collect();
    assert_eq!(trailers.len(), 2);
    for trailer in trailers {
        let flusher = by_id[trailer.follows.as_deref().unwrap()];
        assert_eq!(flusher.work, WorkType::Flush);
        assert!(matches!(
            trailer.work,
            WorkType::Sweep | WorkType::WashSweep
        ));
        let (ours, theirs) = (traversals(trailer), traversals(flusher));
        assert!(ours.len() > 20 && ours.len() <= theirs.len());
        let lag_s = trailer.truth[0].start_s - flusher.truth[0].start_s;
        assert!((1200.0..=5400.0).contains(&lag_s), "{lag_s}");
        for (t, f) in ours.iter().zip(&theirs) {
            assert_eq!(t.0, f.0, "{} leaves {}'s route", trailer.id, flusher.id);
            assert!(
                t.1 - f.1 >= 1200.0,
                "{} only {} s behind",
                trailer.id,
                t.1 - f.1
            );
        }
        // Tools follow the flusher's plan.
        let tools = |r: &VehicleRun| r.truth.iter().filter(|s| s.tools_on).count() > 0;
        assert!(tools(trailer));
    }
}

#[test]
fn gps_error_has_the_configured_sigma_and_is_autocorrelated() {
    let sigma_m = 10.0;
    let track = standing_track(4.0);
    for fixes in errors(&track, &noise(sigma_m, 0.0, 0.0), 4) {
        assert_eq!(fixes.len(), track.len());
        for axis in 0..2 {
            let e: Vec<f64> = fixes.iter().map(|(_, e)| e[axis]).collect();
            let n = e.len() as f64;
            let mean = e.iter().sum::<f64>() / n;
            let var = e.iter().map(|x| (x - mean).powi(2)).sum::<f64>() / n;
            assert!(
                (0.75 * sigma_m..1.25 * sigma_m).contains(&var.sqrt()),
                "σ {}",
                var.sqrt()
            );
            let lag1 = e
                .windows(2)
                .map(|w| (w[0] - mean) * (w[1] - mean))
                .sum::<f64>()
                / ((n - 1.0) * var);
            assert!(lag1 > 0.8, "lag-1 correlation {lag1}");
        }
        // Standing: no heading, speeds near zero.
        assert!(fixes
            .iter()
            .all(|(f, _)| f.heading_deg.is_none() && f.speed_kmh.unwrap() < 2.0));
    }
}

#[test]
fn multipath_throws_runs_of_3_to_10_fixes_30_to_80_m_off() {
    let per_hour = 10.0;
    // At σ 2 m nothing but multipath is 25 m off.
    let fixes = &errors(&standing_track(4.0), &noise(2.0, 0.0, per_hour), 1)[0];
    let mut runs = Vec::new();
    let mut length = 0;
    let off_m = fixes.iter().map(|(_, e)| e[0].hypot(e[1]));
    for d_m in off_m.chain([0.0]) {
        if d_m > 25.0 {
            length += 1;
        } else if length > 0 {
            runs.push(length);
            length = 0;
        }
    }
    // Two episodes can follow each other without a clean fix between.
    assert!(runs.iter().all(|n| (3..=20).contains(n)), "{runs:?}");
    let episodes = runs.len() as f64;
    assert!(
        (0.6 * 4.0 * per_hour..1.4 * 4.0 * per_hour).contains(&episodes),
        "{runs:?}"
    );
    let farthest = fixes
        .iter()
        .map(|(_, e)| e[0].hypot(e[1]))
        .fold(0.0, f64::max);
    assert!(farthest < 100.0, "{farthest}");
}

#[test]
fn drop_outs_last_10_to_120_s_and_take_about_their_share() {
    let share = 0.10;
    let track = standing_track(4.0);
    let (mut dropped, mut total) = (0.0, 0.0);
    for fixes in errors(&track, &noise(10.0, share, 0.0), 8) {
        for w in fixes.windows(2) {
            let missing_s = w[1].0.time_s - w[0].0.time_s - 1.0;
            assert!(
                missing_s == 0.0 || (10.0..=120.0).contains(&missing_s),
                "{missing_s}"
            );
        }
        dropped += (track.len() - fixes.len()) as f64;
        total += track.len() as f64;
    }
    assert!(
        (dropped / total - share).abs() < 0.03,
        "{}",
        dropped / total
    );
    // The generated fleet's fixes have the same gaps.
    let runs = generate(&RoadNetwork::demo(), &config(1.0));
    for run in &runs {
        for w in run.fixes.windows(2) {
            let missing_s = w[1].time_s - w[0].time_s - 1.0;
            assert!(
                missing_s == 0.0 || (10.0..=120.0).contains(&missing_s),
                "{missing_s}"
            );
        }
    }
}

#[test]
fn hdop_is_a_geometry_factor_not_the_error_in_metres() {
    let track = standing_track(2.0);
    let medians = |sigma_m: f64| -> Vec<f64> {
        errors(&track, &noise(sigma_m, 0.0, 0.0), 8)
            .into_iter()
            .map(|fixes| median(fixes.iter().map(|(f, _)| f.hdop.unwrap()).collect()))
            .collect()
    };
    let canyon = medians(20.0);
    let open_sky = medians(5.0);
    assert!(
        canyon.iter().all(|h| (5.0..=16.0).contains(h)),
        "{canyon:?}"
    );
    assert!(
        open_sky.iter().all(|h| (1.0..=4.0).contains(h)),
        "{open_sky:?}"
    );
    // Each receiver has its own UERE: the same error, different HDOPs.
    let (lo, hi) = canyon.iter().fold((f64::INFINITY, 0.0f64), |(lo, hi), &h| {
        (lo.min(h), hi.max(h))
    });
    assert!(hi / lo > 1.2, "{canyon:?}");
    // Within a receiver, error ÷ HDOP scatters widely.
    let fixes = &errors(&track, &noise(10.0, 0.0, 0.0), 1)[0];
    let ratios: Vec<f64> = fixes
        .iter()
        .map(|(f, e)| e[0].hypot(e[1]) / f.hdop.unwrap())
        .collect();
    let mean = ratios.iter().sum::<f64>() / ratios.len() as f64;
    let sd = (ratios.iter().map(|r| (r - mean).powi(2)).sum::<f64>() / ratios.len() as f64).sqrt();
    assert!(sd / mean > 0.3, "{}", sd / mean);
    // Fewer satellites when HDOP is high.
    let middle = median(fixes.iter().map(|(f, _)| f.hdop.unwrap()).collect());
    let sats = |high: bool| {
        let s: Vec<f64> = fixes
            .iter()
            .filter(|(f, _)| (f.hdop.unwrap() > middle) == high)
            .map(|(f, _)| f64::from(f.satellites.unwrap()))
            .collect();
        s.iter().sum::<f64>() / s.len() as f64
    };
    assert!(sats(true) < sats(false));
}

#[test]
fn moving_fixes_report_speed_and_heading_and_convert_for_the_pipeline() {
    let net = RoadNetwork::demo();
    let runs = generate(&net, &config(0.5));
    let run = &runs[0];
    let moving = run.fixes.iter().filter(|f| f.heading_deg.is_some()).count();
    assert!(moving * 2 > run.fixes.len());
    assert!(run
        .fixes
        .iter()
        .filter(|f| f.heading_deg.is_none())
        .all(|f| f.speed_kmh.unwrap() < 1.5 + 2.0));
    let observations = run.observations();
    let states = run.fix_states();
    assert_eq!(observations.len(), run.fixes.len());
    for ((f, o), s) in run.fixes.iter().zip(&observations).zip(&states) {
        assert_eq!(
            (o.time_s, o.lon, o.lat, o.hdop),
            (f.time_s, f.lon, f.lat, f.hdop)
        );
        assert_eq!(
            (s.time_s, s.tools_on, s.satellites),
            (f.time_s, f.tools_on, f.satellites)
        );
    }
}

/// One two-way lane of about 160 m between two dead ends.
fn lane() -> RoadNetwork {
    let nodes = vec![(7.0, 43.0), (7.002, 43.0)];
    let points = nodes.clone();
    let segment = cleanfleet_roads::Segment {
        id: 0,
        osm_way_id: None,
        name: None,
        class: RoadClass::IV,
        oneway: false,
        from_node: 0,
        to_node: 1,
        length_m: 162.6,
        points,
        width_m: 5.0,
    };
    RoadNetwork::new(nodes, vec![segment]).unwrap()
}

/// The vehicle's stops on the lane: how long (seconds, from its track) and where (metres
/// from node 0), and how often it turned back.
fn stops(net: &RoadNetwork, u_turn_share: f64) -> (Vec<(f64, f64)>, usize) {
    let graph = Graph::new(net);
    let geometry = Geometry::new(net);
    let pace = Pace {
        work_mps: 8.0 / 3.6,
        transit_mps: 40.0 / 3.6,
    };
    let pieces = plan::plan(
        &graph,
        &[true],
        &[false],
        0,
        &pace,
        1800.0,
        u_turn_share,
        &mut stream(3, 1),
    );
    let shift = Shift {
        start_s: 0.0,
        end_s: 1800.0,
        band_kmh: 8.0,
        overspeed_share: 0.0,
    };
    let d = drive(net, &geometry, &pieces, &shift, &mut stream(3, 2));
    let origin = geometry.at(0, 0.0).0;
    let mut out = Vec::new();
    let mut standing: Option<(f64, [f64; 2])> = None;
    for p in d.track.iter().skip(1) {
        match (standing, p.speed_kmh == 0.0) {
            (None, true) => standing = Some((p.time_s, p.xy)),
            (Some((since_s, xy)), false) => {
                out.push((
                    p.time_s - since_s,
                    (xy[0] - origin[0]).hypot(xy[1] - origin[1]),
                ));
                standing = None;
            }
            _ => {}
        }
    }
    let turned = d
        .truth
        .windows(2)
        .filter(|w| w[0].forward != w[1].forward)
        .count();
    (out, turned)
}

#[test]
fn dead_ends_and_u_turns_stop_and_turn_back() {
    let net = lane();
    let length_m = net.segments()[0].length_m;
    // Stops are counted in whole seconds of the track.
    let lasted = |s: f64, range: (f64, f64)| (range.0 - 1.0..=range.1 + 1.0).contains(&s);
    let (at_ends, turned) = stops(&net, 0.0);
    assert!(
        at_ends.len() >= 5 && turned == at_ends.len(),
        "{at_ends:?} {turned}"
    );
    for &(stand_s, at_m) in &at_ends {
        assert!(lasted(stand_s, (5.0, 60.0)), "{stand_s}");
        assert!(at_m < 1.0 || (at_m - length_m).abs() < 1.0, "{at_m}");
    }
    // Always turning in the middle: short stops 30–70 % along, between the dead-end stops at
    // node 0.
    let (all, turned) = stops(&net, 1.0);
    let middle: Vec<_> = all.iter().filter(|(_, at_m)| *at_m > 1.0).collect();
    assert!(middle.len() >= 5 && turned == all.len(), "{all:?} {turned}");
    for &&(stand_s, at_m) in &middle {
        assert!(lasted(stand_s, (3.0, 15.0)), "{stand_s}");
        assert!((0.3 * length_m..=0.7 * length_m).contains(&at_m), "{at_m}");
    }
}
