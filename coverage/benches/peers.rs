//! cleanfleet's matcher side by side with Valhalla Meili, OSRM /match and fastmm, on the same
//! Monaco traces, in one run: points per second on one core and the share of points snapped
//! onto the true OSM way.
//!
//! ```sh
//! cargo bench -p cleanfleet-coverage --bench peers
//! ```
//!
//! The peers are benchmark tools only (`bench/peers/README.md` sets them up in a virtualenv
//! outside the repo). Environment: `PEERS_PYTHON` (default `/work/peers-venv/bin/python`),
//! `PEERS_WORK` (built peer graphs, default `/work/peers-work`), `MONACO_PBF` (default
//! `../shared/data/monaco.osm.pbf` beside the repo). Without them it says SKIPPED.
//!
//! Two trace sets: `fleet`, an hour of the simulator's 12 vehicles on Monaco (1 Hz, σ = 5 m:
//! sweepers at walking pace, stops, refills); `routes`, the peers' own synthetic traces (OSRM
//! car routes driven at 7–9 m/s, 1 Hz, σ = 5 m). Every tool sees only time and position;
//! cleanfleet is also run with the speed, heading and HDOP its devices send.

use std::collections::HashMap;
use std::io::{BufRead, Write};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Instant;

use cleanfleet_coverage::{MatchConfig, Matcher, Observation};
use cleanfleet_model::{decode, Body, Limits};
use cleanfleet_roads::RoadNetwork;
use cleanfleet_sim::{FaultConfig, Fleet, FleetMix, SimConfig};
use jiff::{SignedDuration, Timestamp};
use serde_json::{json, Value};

/// A point of a trace with what is known to be true of it.
#[derive(Clone)]
struct Point {
    observation: Observation,
    true_lon_lat: (f64, f64),
    true_way: Option<i64>,
}

struct Trace {
    id: String,
    points: Vec<Point>,
}

#[derive(Default)]
struct Score {
    points: usize,
    matched: usize,
    on_true_way: usize,
    errors_m: Vec<f64>,
    seconds: f64,
}

impl Score {
    fn add(&mut self, truth: &Point, snapped: Option<((f64, f64), Option<i64>)>) {
        self.points += 1;
        if let Some((lon_lat, way)) = snapped {
            self.matched += 1;
            self.on_true_way += usize::from(way.is_some() && way == truth.true_way);
            self.errors_m.push(metres(lon_lat, truth.true_lon_lat));
        }
    }

    fn row(&mut self, tool: &str) -> String {
        self.errors_m.sort_by(f64::total_cmp);
        let median = self
            .errors_m
            .get(self.errors_m.len() / 2)
            .copied()
            .unwrap_or(f64::NAN);
        let share = |n: usize| 100.0 * n as f64 / self.points as f64;
        format!(
            "{tool:<34} {:>8} {:>12.0} {:>9.2}% {:>13.2}% {:>12.2}",
            self.points,
            self.points as f64 / self.seconds,
            share(self.matched),
            share(self.on_true_way),
            median
        )
    }
}

fn metres(a: (f64, f64), b: (f64, f64)) -> f64 {
    let m_per_deg = 111_195.08;
    let dx = (a.0 - b.0) * m_per_deg * a.1.to_radians().cos();
    (b.1 - a.1).mul_add(m_per_deg, 0.0).hypot(dx)
}

/// An hour of the simulated fleet, split into traces of at most 1800 fixes.
fn fleet_traces(network: &Arc<RoadNetwork>) -> Vec<Trace> {
    let config = SimConfig {
        seed: 7,
        fleet: FleetMix {
            sweepers: 4,
            washer_sweepers: 2,
            flushers: 2,
            sprinklers: 2,
            collection_trucks: 2,
            ..FleetMix::NONE
        },
        faults: FaultConfig {
            gps_sigma_m: 5.0,
            ..FaultConfig::default()
        },
        ..SimConfig::default()
    };
    let start: Timestamp = "2026-11-21T06:00:00Z".parse().unwrap();
    let (messages, truth) = Fleet::simulate(
        network.clone(),
        &config,
        start,
        SignedDuration::from_hours(1),
    )
    .unwrap();
    let truth = &truth;
    let by_seq: HashMap<(usize, u64), &cleanfleet_sim::PathPoint> =
        truth.path.iter().map(|p| ((p.device, p.seq), p)).collect();
    let mut per_device: HashMap<usize, Vec<Point>> = HashMap::new();
    for m in &messages {
        let Body::Fixes(fixes) = decode(&m.topic, &m.payload, m.time, &Limits::default())
            .unwrap()
            .body
        else {
            continue;
        };
        for f in fixes {
            let p = by_seq[&(m.device, f.seq.unwrap())];
            let segment = p.on.map(|o| o.segment).unwrap();
            per_device.entry(m.device).or_default().push(Point {
                observation: Observation::from_fix(&f),
                true_lon_lat: (p.lon, p.lat),
                true_way: network.segments()[segment as usize].osm_way_id,
            });
        }
    }
    let mut devices: Vec<usize> = per_device.keys().copied().collect();
    devices.sort_unstable();
    let mut traces = Vec::new();
    for d in devices {
        let points = &mut per_device.get_mut(&d).unwrap();
        points.sort_by(|a, b| a.observation.time_s.total_cmp(&b.observation.time_s));
        for (n, chunk) in points.chunks(1800).enumerate() {
            traces.push(Trace {
                id: format!("{}-{n}", truth.devices[d].device_id),
                points: chunk.to_vec(),
            });
        }
    }
    traces
}

/// The peers' synthetic route traces, with their truth (`[lon, lat, route index, way id]`).
fn route_traces(path: &Path) -> Vec<Trace> {
    let file = std::io::BufReader::new(std::fs::File::open(path).unwrap());
    file.lines()
        .map(|line| {
            let v: Value = serde_json::from_str(&line.unwrap()).unwrap();
            let points = v["points"]
                .as_array()
                .unwrap()
                .iter()
                .zip(v["truth"].as_array().unwrap())
                .map(|(p, t)| Point {
                    observation: Observation {
                        time_s: p["t"].as_f64().unwrap(),
                        lon: p["lon"].as_f64().unwrap(),
                        lat: p["lat"].as_f64().unwrap(),
                        heading_deg: None,
                        speed_kmh: None,
                        hdop: None,
                    },
                    true_lon_lat: (t[0].as_f64().unwrap(), t[1].as_f64().unwrap()),
                    true_way: t[3].as_i64(),
                })
                .collect();
            Trace {
                id: v["trace_id"].as_str().unwrap().to_owned(),
                points,
            }
        })
        .collect()
}

fn write_traces(traces: &[Trace], path: &Path) {
    let mut out = std::io::BufWriter::new(std::fs::File::create(path).unwrap());
    for t in traces {
        let points: Vec<Value> = t
            .points
            .iter()
            .map(|p| json!({"t": p.observation.time_s, "lon": p.observation.lon, "lat": p.observation.lat}))
            .collect();
        serde_json::to_writer(&mut out, &json!({"trace_id": t.id, "points": points})).unwrap();
        out.write_all(b"\n").unwrap();
    }
}

/// Runs the peers on `traces` and scores them, tool by tool.
fn score_peers(python: &Path, work: &Path, traces: &[Trace], dir: &Path) -> Vec<(String, Score)> {
    let input = dir.join("traces.jsonl");
    let output = dir.join("results.jsonl");
    write_traces(traces, &input);
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("../bench/peers/match_peers.py");
    let status = std::process::Command::new(python)
        .arg(&script)
        .args(["match", "--work"])
        .arg(work)
        .arg("--traces")
        .arg(&input)
        .arg("--out")
        .arg(&output)
        .status()
        .expect("the peers' python runs");
    assert!(status.success(), "match_peers.py failed");
    let by_id: HashMap<&str, &Trace> = traces.iter().map(|t| (t.id.as_str(), t)).collect();
    let mut scores: Vec<(String, Score)> = Vec::new();
    for line in std::io::BufReader::new(std::fs::File::open(&output).unwrap()).lines() {
        let v: Value = serde_json::from_str(&line.unwrap()).unwrap();
        let tool = v["tool"].as_str().unwrap().to_owned();
        if v["summary"].as_bool() == Some(true) {
            continue;
        }
        let index = match scores.iter().position(|(t, _)| *t == tool) {
            Some(i) => i,
            None => {
                scores.push((tool, Score::default()));
                scores.len() - 1
            }
        };
        let score = &mut scores[index].1;
        score.seconds += v["seconds"].as_f64().unwrap();
        let trace = by_id[v["trace_id"].as_str().unwrap()];
        for (truth, p) in trace.points.iter().zip(v["points"].as_array().unwrap()) {
            let snapped = p["lon"]
                .as_f64()
                .map(|lon| ((lon, p["lat"].as_f64().unwrap()), p["way_id"].as_i64()));
            score.add(truth, snapped);
        }
    }
    scores
}

fn score_ours(network: &RoadNetwork, traces: &[Trace], with_motion: bool) -> Score {
    let mut matcher = Matcher::new(network, MatchConfig::default());
    let mut score = Score::default();
    for trace in traces {
        let observations: Vec<Observation> = trace
            .points
            .iter()
            .map(|p| {
                let o = p.observation;
                if with_motion {
                    o
                } else {
                    Observation {
                        heading_deg: None,
                        speed_kmh: None,
                        hdop: None,
                        ..o
                    }
                }
            })
            .collect();
        let started = Instant::now();
        let matched = matcher.match_trace(&observations);
        score.seconds += started.elapsed().as_secs_f64();
        for (truth, m) in trace.points.iter().zip(&matched.points) {
            let snapped = m.map(|m| {
                let segment = &network.segments()[m.segment as usize];
                let along_m = if m.forward {
                    m.offset_m
                } else {
                    segment.length_m - m.offset_m
                };
                let xy = matcher.index().point_at(m.segment, along_m);
                (matcher.index().plane().to_lon_lat(xy), segment.osm_way_id)
            });
            score.add(truth, snapped);
        }
    }
    score
}

fn main() {
    let python = PathBuf::from(
        std::env::var("PEERS_PYTHON").unwrap_or("/work/peers-venv/bin/python".into()),
    );
    let work = PathBuf::from(std::env::var("PEERS_WORK").unwrap_or("/work/peers-work".into()));
    let pbf = std::env::var("MONACO_PBF")
        .map(PathBuf::from)
        .unwrap_or_else(|_| {
            Path::new(env!("CARGO_MANIFEST_DIR")).join("../../shared/data/monaco.osm.pbf")
        });
    for (what, path) in [
        ("PEERS_PYTHON", &python),
        ("PEERS_WORK", &work),
        ("MONACO_PBF", &pbf),
    ] {
        if !path.exists() {
            println!(
                "\n*** SKIPPED: {what} {} does not exist (bench/peers/README.md) ***\n",
                path.display()
            );
            return;
        }
    }
    let network = Arc::new(RoadNetwork::from_osm_pbf(&pbf, false).unwrap());
    let dir = std::env::temp_dir().join(format!("cleanfleet-peers-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let routes = dir.join("routes.jsonl");
    let status = std::process::Command::new(&python)
        .arg(Path::new(env!("CARGO_MANIFEST_DIR")).join("../bench/peers/match_peers.py"))
        .args(["synth", "--work"])
        .arg(&work)
        .arg("--out")
        .arg(&routes)
        .args(["--n", "20", "--seed", "11"])
        .status()
        .unwrap();
    assert!(status.success(), "match_peers.py synth failed");
    for (name, traces) in [
        ("fleet", fleet_traces(&network)),
        ("routes", route_traces(&routes)),
    ] {
        println!(
            "\n{name}: {} traces on Monaco, 1 Hz, sigma 5 m",
            traces.len()
        );
        println!(
            "{:<34} {:>8} {:>12} {:>10} {:>14} {:>12}",
            "tool", "points", "points/s", "matched", "on true way", "median m"
        );
        let mut ours = score_ours(&network, &traces, false);
        println!("{}", ours.row("cleanfleet (time, position)"));
        if name == "fleet" {
            let mut rich = score_ours(&network, &traces, true);
            println!("{}", rich.row("cleanfleet (+ speed, heading, hdop)"));
        }
        for (tool, mut score) in score_peers(&python, &work, &traces, &dir) {
            println!("{}", score.row(&tool));
        }
    }
    std::fs::remove_dir_all(&dir).ok();
}
