//! Matching a track without MQTT: `cleanfleet match` (the real binary) and
//! `POST /api/v1/match` (the running API) take a track file and answer its passes.

mod common;

use std::process::Command;

use cleanfleet_coverage::SegmentIndex;
use cleanfleet_roads::RoadNetwork;
use common::*;

/// The demo town's longest segment, driven forward at 6 km/h with a fix a second, as
/// (unix seconds, lon, lat).
fn drive_along_the_longest_street() -> (u32, Vec<(f64, f64, f64)>) {
    let net = RoadNetwork::demo();
    let index = SegmentIndex::new(&net);
    let s = net
        .segments()
        .iter()
        .max_by(|a, b| a.length_m.total_cmp(&b.length_m))
        .unwrap();
    let step_m = 6.0 / 3.6;
    // Starts an hour ago, whole seconds.
    let start_s = (jiff::Timestamp::now().as_second() - 3600) as f64;
    let fixes = (0..)
        .map(|i| i as f64 * step_m)
        .take_while(|&m| m <= s.length_m)
        .enumerate()
        .map(|(i, m)| {
            let (lon, lat) = index.plane().to_lon_lat(index.point_at(s.id, m));
            (start_s + i as f64, lon, lat)
        })
        .collect();
    (s.id, fixes)
}

fn csv(fixes: &[(f64, f64, f64)]) -> String {
    let mut out = String::from("time,lat,lon,speed_kmh,hdop,tools_on\n");
    for (t, lon, lat) in fixes {
        out.push_str(&format!("{t},{lat},{lon},6.0,1.0,true\n"));
    }
    out
}

fn gpx(fixes: &[(f64, f64, f64)]) -> String {
    let points: String = fixes
        .iter()
        .map(|&(t, lon, lat)| {
            let time = jiff::Timestamp::from_second(t as i64).unwrap();
            format!(r#"<trkpt lat="{lat}" lon="{lon}"><time>{time}</time><speed>1.6667</speed><hdop>1.0</hdop></trkpt>"#)
        })
        .collect();
    format!(
        r#"<?xml version="1.0"?><gpx version="1.0" creator="test" xmlns="http://www.topografix.com/GPX/1/0"><trk><trkseg>{points}</trkseg></trk></gpx>"#
    )
}

/// Valid passes cover most of `segment` forward.
fn assert_worked(answer: &serde_json::Value, segment: u32) {
    let valid_m: f64 = answer["passes"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|p| p["segment"] == segment && p["forward"] == true && p["valid"] == true)
        .map(|p| p["length_m"].as_f64().unwrap())
        .sum();
    let length_m = RoadNetwork::demo().segments()[segment as usize].length_m;
    assert!(
        valid_m > 0.9 * length_m,
        "{valid_m} of {length_m} m: {answer:#}"
    );
    let features = answer["path"]["features"].as_array().unwrap();
    assert!(features
        .iter()
        .any(|f| f["geometry"]["type"] == "LineString" && f["properties"]["segment"] == segment));
}

#[test]
fn the_cli_matches_a_csv_track_and_refuses_two_places_at_one_time() {
    let dir = tempfile::tempdir().unwrap();
    let (segment, fixes) = drive_along_the_longest_street();
    let track = dir.path().join("track.csv");
    std::fs::write(&track, csv(&fixes)).unwrap();
    let output = Command::new(env!("CARGO_BIN_EXE_cleanfleet"))
        .args(["match", "--work", "sweep"])
        .arg(&track)
        .env("RUST_LOG", "warn")
        .output()
        .unwrap();
    assert!(
        output.status.success(),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
    let answer: serde_json::Value = serde_json::from_slice(&output.stdout).unwrap();
    assert_worked(&answer, segment);
    assert_eq!(answer["summary"]["fixes"], fixes.len());
    assert_eq!(answer["tools_assumed_on"], false);

    // The second fix again, a hundred metres away.
    let mut collided = fixes.clone();
    collided.insert(2, (fixes[1].0, fixes[1].1 + 0.001, fixes[1].2));
    std::fs::write(&track, csv(&collided)).unwrap();
    let output = Command::new(env!("CARGO_BIN_EXE_cleanfleet"))
        .arg("match")
        .arg(&track)
        .output()
        .unwrap();
    assert!(!output.status.success());
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(
        stderr.contains("fixes 1 and 2 have the same time"),
        "{stderr}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_api_matches_a_gpx_track_and_names_what_is_wrong() {
    let dir = tempfile::tempdir().unwrap();
    let stack = start_stack(dir.path()).await;
    let api = stack.api_addr.unwrap();
    let (segment, fixes) = drive_along_the_longest_street();
    let post = |query: &'static str,
                content_type: &'static str,
                body: String,
                token: &'static str| async move {
        let response = reqwest::Client::new()
            .post(format!("http://{api}/api/v1/match{query}"))
            .bearer_auth(token)
            .header("content-type", content_type)
            .body(body)
            .send()
            .await
            .unwrap();
        let status = response.status().as_u16();
        (
            status,
            response
                .json::<serde_json::Value>()
                .await
                .unwrap_or_default(),
        )
    };
    // A contractor may check a track too: it reads nothing of anyone's.
    let (status, answer) = post("", "application/gpx+xml", gpx(&fixes), ACME_TOKEN).await;
    assert_eq!(status, 200, "{answer}");
    assert_worked(&answer, segment);
    // Tools unknown in GPX: assumed on, and said so.
    assert_eq!(answer["tools_assumed_on"], true);
    let (_, answer) = post(
        "?work=flush",
        "application/gpx+xml",
        gpx(&fixes),
        ADMIN_TOKEN,
    )
    .await;
    assert_eq!(answer["work"], "flush");
    let (status, error) = post("?work=mop", "application/gpx+xml", gpx(&fixes), ADMIN_TOKEN).await;
    assert_eq!((status, &error["error"]["field"]), (400, &"work".into()));
    let (status, error) = post("", "text/plain", csv(&fixes), ADMIN_TOKEN).await;
    assert_eq!((status, &error["error"]["field"]), (400, &"format".into()));
    let (status, error) = post(
        "?format=csv",
        "text/plain",
        "time,lat\n1,2\n".into(),
        ADMIN_TOKEN,
    )
    .await;
    assert_eq!(
        (status, &error["error"]["field"]),
        (400, &"body".into()),
        "{error}"
    );
    // Over the body limit: 413, as JSON naming the body.
    let huge = "x".repeat(33 * 1024 * 1024);
    let (status, error) = post("", "text/csv", huge, ADMIN_TOKEN).await;
    assert_eq!(
        (status, &error["error"]["field"]),
        (413, &"body".into()),
        "{error}"
    );
    let mut collided = fixes.clone();
    collided.push((fixes[3].0, fixes[3].1, fixes[3].2 + 0.001));
    let (status, error) = post("", "text/csv", csv(&collided), ADMIN_TOKEN).await;
    assert_eq!(status, 400);
    assert!(
        error["error"]["message"]
            .as_str()
            .unwrap()
            .contains("same time"),
        "{error}"
    );
    stack.stop().await.unwrap();
}
