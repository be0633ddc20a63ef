use cleanfleet_coverage::InvalidReason;

use super::*;

fn t(s: &str) -> Timestamp {
    s.parse().unwrap()
}

fn sample(id: &str, inspector: &str, time: &str, grams: f64) -> Sample {
    Sample {
        device_id: "sc-01".into(),
        sample_id: id.into(),
        inspector: inspector.into(),
        time: t(time),
        lon: 0.0,
        lat: 0.0,
        grams,
        area_m2: 1.0,
        litter_count: None,
        photo_ref: None,
    }
}

/// Two segments of one named road of `class` in the demo town, and one of another road.
fn segments_of(net: &RoadNetwork, class: RoadClass) -> (u32, u32, u32) {
    let named: Vec<_> = net
        .segments()
        .iter()
        .filter(|s| s.class == class && s.name.is_some())
        .collect();
    let first = named[0];
    let same = named
        .iter()
        .find(|s| s.id != first.id && s.name == first.name)
        .unwrap();
    let other = named.iter().find(|s| s.name != first.name).unwrap();
    (first.id, same.id, other.id)
}

fn at(segment: u32) -> Placement {
    Placement {
        segment,
        offset_m: 0.0,
        distance_m: 2.0,
    }
}

#[test]
fn mean_and_median() {
    assert_eq!(aggregate(Aggregate::Mean, &[1.0, 2.0, 6.0]), 3.0);
    assert_eq!(aggregate(Aggregate::Median, &[6.0, 1.0, 2.0]), 2.0);
    assert_eq!(aggregate(Aggregate::Median, &[4.0, 1.0, 2.0, 10.0]), 3.0);
    assert!(aggregate(Aggregate::Mean, &[]).is_nan());
}

#[test]
fn each_class_limit_is_inclusive() {
    let net = RoadNetwork::demo();
    let rules = InspectionRules::default();
    for (class, limit) in [
        (RoadClass::I, 5.0),
        (RoadClass::II, 10.0),
        (RoadClass::III, 15.0),
        (RoadClass::IV, 20.0),
    ] {
        let Some(segment) = net.segments().iter().find(|s| s.class == class) else {
            panic!("no class {class:?} road in the demo town");
        };
        let judge = |grams: f64| {
            let samples = [(
                sample("a", "insp-1", "2026-11-21T02:00:00Z", grams),
                at(segment.id),
            )];
            road_results(&net, &rules, &TimeZone::UTC, &samples)[0].clone()
        };
        let on = judge(limit);
        assert_eq!((on.limit_g_per_m2, on.passed), (limit, true), "{class:?}");
        assert!(!judge(limit + 0.01).passed, "{class:?}");
    }
}

#[test]
fn a_roads_points_make_one_result_per_day_and_inspector() {
    let net = RoadNetwork::demo();
    let (a, b, other) = segments_of(&net, RoadClass::II);
    let rules = InspectionRules {
        aggregate: Aggregate::Median,
        points_per_road: 3,
        ..InspectionRules::default()
    };
    let samples = vec![
        (sample("1", "insp-1", "2026-11-21T02:00:00Z", 4.0), at(a)),
        (sample("2", "insp-1", "2026-11-21T02:10:00Z", 14.0), at(b)),
        (sample("3", "insp-1", "2026-11-21T02:20:00Z", 12.0), at(a)),
        // Another inspector, another road, another local day (UTC+8: 16:30Z is the 22nd).
        (sample("4", "insp-2", "2026-11-21T02:30:00Z", 1.0), at(a)),
        (
            sample("5", "insp-1", "2026-11-21T02:40:00Z", 1.0),
            at(other),
        ),
        (sample("6", "insp-1", "2026-11-21T16:30:00Z", 1.0), at(a)),
    ];
    let shanghai = TimeZone::get("Asia/Shanghai").unwrap();
    let results = road_results(&net, &rules, &shanghai, &samples);
    assert_eq!(results.len(), 4, "{results:#?}");
    let main = results
        .iter()
        .find(|r| r.inspector == "insp-1" && r.points == 3)
        .unwrap();
    assert_eq!(main.samples, ["1", "2", "3"]);
    assert_eq!(main.result_g_per_m2, 12.0, "the median of 4, 14, 12");
    assert!(!main.passed && !main.incomplete);
    assert_eq!(main.date, "2026-11-21");
    assert_eq!(main.segments.len(), 2);
    assert!(results
        .iter()
        .any(|r| r.date == "2026-11-22" && r.incomplete));

    // Any order gives the same results.
    let mut reversed = samples.clone();
    reversed.reverse();
    assert_eq!(road_results(&net, &rules, &shanghai, &reversed), results);
}

#[test]
fn grams_per_square_metre_and_litter_per_thousand() {
    let net = RoadNetwork::demo();
    let (a, _, _) = segments_of(&net, RoadClass::III);
    let mut half = sample("1", "insp-1", "2026-11-21T02:00:00Z", 4.0);
    half.area_m2 = 0.5;
    half.litter_count = Some(1);
    let mut other = sample("2", "insp-1", "2026-11-21T02:05:00Z", 2.0);
    other.litter_count = Some(2);
    let rules = InspectionRules {
        max_litter_per_1000_m2: Some(2.0),
        ..InspectionRules::default()
    };
    let r = &road_results(
        &net,
        &rules,
        &TimeZone::UTC,
        &[(half, at(a)), (other, at(a))],
    )[0];
    assert_eq!(r.result_g_per_m2, 5.0, "mean of 8 and 2 g/m²");
    assert_eq!(r.litter_per_1000_m2, Some(2000.0), "3 items on 1.5 m²");
    assert_eq!(r.litter_passed, Some(false));
}

#[test]
fn samples_are_placed_on_the_nearest_road_or_refused() {
    let net = RoadNetwork::demo();
    let index = SegmentIndex::new(&net);
    let rules = InspectionRules::default();
    let s = &net.segments()[40];
    let lon = s.points[0].0;
    let mid = (
        (s.points[0].0 + s.points[1].0) / 2.0,
        (s.points[0].1 + s.points[1].1) / 2.0,
    );
    assert_eq!(place(&index, &rules, mid.0, mid.1).unwrap().segment, 40);
    // 0.01° of latitude is 1.1 km: far from every road of the town's edge.
    let far = net.bbox().max().y + 0.01;
    assert!(place(&index, &rules, lon, far).is_none());
}

fn pass(segment: u32, end_s: f64, work: WorkType, invalid: Option<InvalidReason>) -> Pass {
    Pass {
        segment,
        forward: true,
        from_m: 0.0,
        to_m: 100.0,
        start_s: end_s - 60.0,
        end_s,
        work,
        invalid,
        max_speed_kmh: 6.0,
    }
}

#[test]
fn the_last_valid_cleaning_before_the_sample() {
    let at_s = |s: &str| t(s).as_millisecond() as f64 / 1000.0;
    let passes = vec![
        DevicePass {
            device_id: "sw-01".into(),
            pass: pass(7, at_s("2026-11-21T01:00:00Z"), WorkType::Sweep, None),
        },
        DevicePass {
            device_id: "fl-01".into(),
            pass: pass(8, at_s("2026-11-21T01:30:00Z"), WorkType::Flush, None),
        },
        DevicePass {
            device_id: "sw-02".into(),
            pass: pass(
                7,
                at_s("2026-11-21T01:45:00Z"),
                WorkType::Sweep,
                Some(InvalidReason::Overspeed),
            ),
        },
        DevicePass {
            device_id: "sp-01".into(),
            pass: pass(7, at_s("2026-11-21T01:50:00Z"), WorkType::Sprinkle, None),
        },
        DevicePass {
            device_id: "sw-02".into(),
            pass: pass(7, at_s("2026-11-21T03:00:00Z"), WorkType::Sweep, None),
        },
    ];
    let covering = [
        WorkType::Sweep,
        WorkType::WashSweep,
        WorkType::Flush,
        WorkType::Manual,
    ];
    let last = last_cleaning(&passes, &[7, 8], &covering, t("2026-11-21T02:00:00Z")).unwrap();
    assert_eq!(
        (last.device_id.as_str(), last.work, last.segment),
        ("fl-01", WorkType::Flush, 8)
    );
    assert_eq!(last.time, t("2026-11-21T01:30:00Z"));
    let only_7 = last_cleaning(&passes, &[7], &covering, t("2026-11-21T02:00:00Z")).unwrap();
    assert_eq!(
        only_7.device_id, "sw-01",
        "overspeed and sprinkling do not clean"
    );
    assert!(last_cleaning(&passes, &[7], &covering, t("2026-11-21T00:00:00Z")).is_none());
}

#[test]
fn litter_dwells_until_the_first_valid_cleaning_reaches_its_place() {
    let net = RoadNetwork::demo();
    let segment = net.segments().iter().find(|s| s.length_m > 120.0).unwrap();
    let (id, length_m) = (segment.id, segment.length_m);
    let rules = InspectionRules::default();
    let at_s = |s: &str| t(s).as_millisecond() as f64 / 1000.0;
    let covering = [WorkType::Sweep, WorkType::Manual];
    // 1 m/s over 0..100 m in the driving direction, starting at `start`.
    let drive = |device: &str, forward: bool, from_m: f64, start: &str, work, invalid| {
        let start_s = at_s(start);
        DevicePass {
            device_id: device.into(),
            pass: Pass {
                segment: id,
                forward,
                from_m,
                to_m: from_m + 100.0,
                start_s,
                end_s: start_s + 100.0,
                work,
                invalid,
                max_speed_kmh: 3.6,
            },
        }
    };
    let littered = |sample_id: &str, time: &str, count: Option<u32>| {
        let mut s = sample(sample_id, "insp-1", time, 2.0);
        s.litter_count = count;
        (
            s,
            Placement {
                segment: id,
                offset_m: 30.0,
                distance_m: 1.0,
            },
        )
    };
    let samples = [
        littered("a", "2026-11-21T10:00:00Z", Some(3)),
        littered("b", "2026-11-21T11:00:00Z", Some(1)),
        littered("c", "2026-11-21T12:00:00Z", Some(2)),
        littered("clean", "2026-11-21T10:00:00Z", Some(0)),
        littered("uncounted", "2026-11-21T10:00:00Z", None),
    ];
    let samples: Vec<&(Sample, Placement)> = samples.iter().collect();
    let passes = vec![
        // Before "a" was seen: cleans nothing of it.
        drive(
            "sw-01",
            true,
            0.0,
            "2026-11-21T09:59:00Z",
            WorkType::Sweep,
            None,
        ),
        // Too fast, sprinkling only, or short of the place by more than 5 m: none clears.
        drive(
            "sw-02",
            true,
            0.0,
            "2026-11-21T10:01:00Z",
            WorkType::Sweep,
            Some(InvalidReason::Overspeed),
        ),
        drive(
            "sp-01",
            true,
            0.0,
            "2026-11-21T10:01:00Z",
            WorkType::Sprinkle,
            None,
        ),
        drive(
            "sw-03",
            true,
            36.0,
            "2026-11-21T10:01:00Z",
            WorkType::Sweep,
            None,
        ),
        // Reaches 30 m at 10:05:30 (dwell 330 s) ...
        drive(
            "sw-01",
            true,
            0.0,
            "2026-11-21T10:05:00Z",
            WorkType::Sweep,
            None,
        ),
        // ... and a crew member walking the other way reaches it at 10:06:40, 100 m in.
        drive(
            "cw-01",
            false,
            length_m - 130.0,
            "2026-11-21T10:05:00Z",
            WorkType::Manual,
            None,
        ),
        // "b" waits exactly the limit: 11:00:00 + 1200 s, reached 30 m in.
        drive(
            "cw-01",
            true,
            0.0,
            "2026-11-21T11:19:30Z",
            WorkType::Manual,
            None,
        ),
        // "c" waits one second longer than the limit.
        drive(
            "sw-01",
            true,
            0.0,
            "2026-11-21T12:19:31Z",
            WorkType::Sweep,
            None,
        ),
    ];
    let run = |passes: &[DevicePass], known_until: &str| {
        litter_clearances(&net, &rules, passes, &covering, &samples, t(known_until))
    };
    let all = run(&passes, "2026-11-22T00:00:00Z");
    assert_eq!(
        all.iter().map(|c| c.sample_id.as_str()).collect::<Vec<_>>(),
        ["a", "b", "c"],
        "only samples that counted litter"
    );
    let a = &all[0];
    let by = a.cleared_by.as_ref().unwrap();
    assert_eq!((by.device_id.as_str(), by.work), ("sw-01", WorkType::Sweep));
    assert_eq!(by.time, t("2026-11-21T10:05:30Z"));
    assert_eq!(
        (a.dwell_s, a.in_time, a.litter_count),
        (Some(330.0), Some(true), 3)
    );
    assert_eq!(
        (all[1].dwell_s, all[1].in_time),
        (Some(1200.0), Some(true)),
        "the limit is inclusive"
    );
    assert_eq!(
        (all[2].dwell_s, all[2].in_time),
        (Some(1201.0), Some(false))
    );

    // Arrival order does not matter.
    let mut reversed = passes.clone();
    reversed.reverse();
    assert_eq!(run(&reversed, "2026-11-22T00:00:00Z"), all);

    // Without the sweeper, the crew member walking the other way clears "a".
    let without: Vec<DevicePass> = passes
        .iter()
        .filter(|p| !(p.device_id == "sw-01" && p.pass.start_s == at_s("2026-11-21T10:05:00Z")))
        .cloned()
        .collect();
    let a = &run(&without, "2026-11-22T00:00:00Z")[0];
    assert_eq!(a.cleared_by.as_ref().unwrap().device_id, "cw-01");
    assert_eq!(a.dwell_s, Some(400.0));

    // Not cleared: late once the limit has passed, open until then.
    let none: Vec<DevicePass> = Vec::new();
    let open = run(&none, "2026-11-21T10:20:00Z");
    assert_eq!((open[0].cleared_by.as_ref(), open[0].in_time), (None, None));
    let late = run(&none, "2026-11-21T10:20:01Z");
    assert_eq!((late[0].dwell_s, late[0].in_time), (None, Some(false)));
}

#[test]
fn bad_rules_are_named() {
    assert!(InspectionRules::default().check().is_ok());
    let endless = InspectionRules {
        max_litter_dwell_s: f64::INFINITY,
        ..InspectionRules::default()
    };
    assert!(endless.check().unwrap_err().contains("max_litter_dwell_s"));
    let mut negative = InspectionRules::default();
    negative.limits_g_per_m2.iii = -1.0;
    assert!(negative
        .check()
        .unwrap_err()
        .contains("limits_g_per_m2.iii"));
    let none = InspectionRules {
        points_per_road: 0,
        ..InspectionRules::default()
    };
    assert!(none.check().unwrap_err().contains("points_per_road"));
}
