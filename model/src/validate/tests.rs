use super::*;

const NOW: &str = "2026-11-21T08:00:00Z";

fn now() -> Timestamp {
    NOW.parse().unwrap()
}

fn decode_str(topic: &str, payload: &str) -> Result<Decoded, Rejection> {
    decode(topic, payload.as_bytes(), now(), &Limits::default())
}

fn reason(topic: &str, payload: &str) -> RejectReason {
    match decode_str(topic, payload) {
        Ok(d) => panic!("expected a rejection, got {d:?}"),
        Err(r) => r.reason,
    }
}

const FIXES: &str = "cleanfleet/v1/sweeper/sw-01/fixes";

fn fix_json(extra: &str) -> String {
    format!(
        r#"{{"fixes":[{{"time":"2026-11-21T07:59:00Z","seq":1,"lat":32.0,"lon":120.9,"speed_kmh":6.5{extra}}}]}}"#
    )
}

#[test]
fn accepts_a_valid_fix_batch() {
    let d = decode_str(
        FIXES,
        r#"{"device_id":"sw-01","fixes":[
            {"time":"2026-11-21T07:59:00Z","seq":1,"lat":32.0,"lon":120.9,"speed_kmh":6.5,
             "heading_deg":90,"hdop":0.9,"satellites":11,"work":{"brush":true,"vacuum":true},
             "water_tank_ratio":0.5,"load_kg":120,"odometer_m":12345.6},
            {"time":"2026-11-21T07:59:01+08:00","lat":32.0001,"lon":120.9}]}"#,
    )
    .unwrap();
    assert_eq!(d.kind, DeviceKind::Sweeper);
    assert_eq!(d.device_id, "sw-01");
    let Body::Fixes(fixes) = d.body else {
        panic!("not fixes")
    };
    assert_eq!(fixes.len(), 2);
    assert!(fixes[0].work.brush && fixes[0].work.vacuum && !fixes[0].work.spray);
    assert!(!fixes[1].work.any());
}

#[test]
fn accepts_each_stream() {
    let ok = [
        (
            "cleanfleet/v1/bin/b-1/reading",
            r#"{"time":"2026-11-21T07:00:00Z","fill_ratio":0.8,"temperature_c":21.5,"tilted":false,"lid_open":false,"battery_ratio":0.9}"#,
        ),
        (
            "cleanfleet/v1/toilet/t-1/reading",
            r#"{"time":"2026-11-21T07:00:00Z","nh3_mg_m3":0.2,"h2s_mg_m3":0.005,"occupancy":2,"footfall":14}"#,
        ),
        (
            "cleanfleet/v1/weighbridge/wb-1/ticket",
            r#"{"ticket_id":"T1","vehicle_id":"ct-1","time_in":"2026-11-21T07:00:00Z","time_out":"2026-11-21T07:05:00Z","gross_kg":15000,"tare_kg":9000,"net_kg":6000}"#,
        ),
        (
            "cleanfleet/v1/scale/sc-1/sample",
            r#"{"sample_id":"S1","time":"2026-11-21T07:00:00Z","lat":32,"lon":120.9,"grams":4.2,"inspector":"insp-1"}"#,
        ),
        (
            "cleanfleet/v1/sweeper/sw-01/status",
            r#"{"state":"online","time":"2026-11-21T07:00:00Z","firmware":"1.2"}"#,
        ),
        ("cleanfleet/v1/bin/b-1/status", r#"{"state":"offline"}"#),
    ];
    for (topic, payload) in ok {
        decode_str(topic, payload).unwrap_or_else(|e| panic!("{topic}: {e}"));
    }
    let Body::Sample(s) = decode_str(ok[3].0, ok[3].1).unwrap().body else {
        panic!()
    };
    assert_eq!(s.area_m2, 1.0, "area defaults to the 1 m² frame");
}

#[test]
fn rejects_each_bad_input_class_with_its_reason() {
    use RejectReason::*;
    let cases: Vec<(&str, String, RejectReason)> = vec![
        ("other/v1/sweeper/sw-01/fixes", fix_json(""), UnknownTopic),
        ("cleanfleet/v2/sweeper/sw-01/fixes", fix_json(""), UnknownTopic),
        ("cleanfleet/v1/sweeper/sw-01/fixes/extra", fix_json(""), UnknownTopic),
        ("cleanfleet/v1/rocket/r-1/fixes", fix_json(""), UnknownKind),
        ("cleanfleet/v1/sweeper/-bad/fixes", fix_json(""), InvalidDeviceId),
        ("cleanfleet/v1/sweeper/sw-01/ticket", fix_json(""), UnknownStream),
        ("cleanfleet/v1/bin/b-1/fixes", fix_json(""), UnknownStream),
        (FIXES, "{\"fixes\":[".into(), MalformedJson),
        (FIXES, "not json".into(), MalformedJson),
        (FIXES, format!("{} trailing", fix_json("")), MalformedJson),
        (FIXES, fix_json("").replace("32.0", "NaN"), NonFiniteNumber),
        (FIXES, fix_json("").replace("6.5", "Infinity"), NonFiniteNumber),
        (FIXES, fix_json("").replace("6.5", "-Infinity"), NonFiniteNumber),
        (FIXES, r#"{"fixes":[{"time":"2026-11-21T07:59:00Z","lon":120.9}]}"#.into(), MissingField),
        (FIXES, fix_json(r#","colour":"red""#), UnknownField),
        (FIXES, fix_json("").replace("32.0", "\"32.0\""), WrongType),
        (FIXES, fix_json(r#","satellites":-1"#), OutOfRange),
        (FIXES, fix_json(r#","satellites":300"#), OutOfRange),
        (FIXES, fix_json("").replace("\"seq\":1", "\"seq\":-1"), OutOfRange),
        (FIXES, fix_json("").replace("6.5", "1e400"), OutOfRange),
        (FIXES, fix_json(r#","satellites":"many""#), WrongType),
        (FIXES, fix_json("").replace("2026-11-21T07:59:00Z", "yesterday"), WrongType),
        (FIXES, format!("{{\"device_id\":\"sw-02\",{}", &fix_json("")[1..]), DeviceIdMismatch),
        (FIXES, fix_json("").replace("32.0", "95.0"), OutOfRange),
        (FIXES, fix_json("").replace("120.9", "-180.5"), OutOfRange),
        (FIXES, fix_json("").replace("6.5", "-3"), OutOfRange),
        (FIXES, r#"{"fixes":[]}"#.into(), EmptyBatch),
        (
            FIXES,
            r#"{"fixes":[{"time":"2026-11-21T07:59:00Z","lat":32.0,"lon":120.9},{"time":"2026-11-21T07:59:00Z","lat":32.001,"lon":120.9}]}"#.into(),
            ConflictingFix,
        ),
        (FIXES, fix_json("").replace("2026-11-21T07:59:00Z", "2026-11-21T08:06:00Z"), TimestampInFuture),
        (FIXES, fix_json("").replace("2026-11-21T07:59:00Z", "2026-10-01T08:00:00Z"), TimestampTooOld),
        ("cleanfleet/v1/bin/b-1/reading", r#"{"time":"2026-11-21T07:00:00Z","fill_ratio":1.2}"#.into(), OutOfRange),
        ("cleanfleet/v1/weighbridge/wb-1/ticket", r#"{"ticket_id":"T1","vehicle_id":"ct-1","time_in":"2026-11-21T07:00:00Z","time_out":"2026-11-21T07:05:00Z","gross_kg":15000,"tare_kg":9000,"net_kg":5000}"#.into(), InconsistentValues),
        ("cleanfleet/v1/weighbridge/wb-1/ticket", r#"{"ticket_id":"T1","vehicle_id":"ct-1","time_in":"2026-11-21T07:05:00Z","time_out":"2026-11-21T07:00:00Z","gross_kg":15000,"tare_kg":9000,"net_kg":6000}"#.into(), InconsistentValues),
        ("cleanfleet/v1/scale/sc-1/sample", r#"{"sample_id":"S1","time":"2026-11-21T07:00:00Z","lat":32,"lon":120.9,"grams":-1,"inspector":"i"}"#.into(), OutOfRange),
        ("cleanfleet/v1/scale/sc-1/sample", r#"{"sample_id":"S1","time":"2026-11-21T07:00:00Z","lat":32,"lon":120.9,"grams":1,"area_m2":0,"inspector":"i"}"#.into(), OutOfRange),
        ("cleanfleet/v1/sweeper/sw-01/status", r#"{"state":"sleeping"}"#.into(), WrongType),
    ];
    for (topic, payload, expected) in cases {
        assert_eq!(reason(topic, &payload), expected, "{topic} {payload}");
    }
}

#[test]
fn rejection_detail_names_the_field() {
    let r = decode_str(FIXES, &fix_json("").replace("32.0", "95.0")).unwrap_err();
    assert!(r.detail.starts_with("fixes[0].lat:"), "{}", r.detail);
    let r = decode_str(FIXES, &fix_json("").replace("32.0", "\"x\"")).unwrap_err();
    assert!(r.detail.starts_with("fixes[0].lat:"), "{}", r.detail);
    let r = decode_str(FIXES, &fix_json(r#","colour":"red""#)).unwrap_err();
    assert!(r.detail.contains("colour"), "{}", r.detail);
}

#[test]
fn oversize_payload_is_rejected_before_parsing() {
    let limits = Limits {
        max_payload_bytes: 10,
        ..Limits::default()
    };
    let r = decode(FIXES, fix_json("").as_bytes(), now(), &limits).unwrap_err();
    assert_eq!(r.reason, RejectReason::OversizePayload);
}

#[test]
fn too_many_fixes() {
    let limits = Limits {
        max_fixes_per_message: 1,
        ..Limits::default()
    };
    let one = r#"{"time":"2026-11-21T07:59:00Z","lat":32,"lon":120}"#;
    let payload = format!(r#"{{"fixes":[{one},{one}]}}"#);
    let r = decode(FIXES, payload.as_bytes(), now(), &limits).unwrap_err();
    assert_eq!(r.reason, RejectReason::TooManyFixes);
}

#[test]
fn invalid_utf8_is_malformed() {
    let mut payload = fix_json("").into_bytes();
    payload[3] = 0xff;
    let r = decode(FIXES, &payload, now(), &Limits::default()).unwrap_err();
    assert_eq!(r.reason, RejectReason::MalformedJson);
}

#[test]
fn reason_labels_are_unique_and_parse_back() {
    let mut seen = std::collections::HashSet::new();
    for r in RejectReason::ALL {
        assert!(seen.insert(r.as_str()));
        assert_eq!(RejectReason::parse(r.as_str()), Some(r));
    }
}
