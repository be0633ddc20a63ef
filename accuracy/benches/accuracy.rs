//! cleanfleet's coverage against an independent generator's truth.
//!
//! `cargo bench -p cleanfleet-accuracy --bench accuracy -- [--seed N] [--hours H]
//! [PATH.osm.pbf ...]`; without a path, the built-in demo town. One row per network and GPS σ
//! (5, 10, 20 m); the columns are explained in accuracy/README.md.

use std::process::ExitCode;

use cleanfleet_accuracy::{
    generate, our_passes, score, seen_status, true_status, GenConfig, PrecisionRecall, Share,
};
use cleanfleet_coverage::{segment_status, CoverageRules, MatchConfig};
use cleanfleet_roads::RoadNetwork;

const SIGMAS_M: [f64; 3] = [5.0, 10.0, 20.0];
const DEFAULT_SEED: u64 = 2026;
/// Work is "seen" where the fixes around it are at most this far apart (1 Hz with brief
/// losses); what lies in longer drop-outs only a lucky guess could credit.
const SEEN_GAP_S: f64 = 10.0;

mod sim_source;

/// Where the traces come from.
#[derive(Clone, Copy, PartialEq)]
enum Source {
    /// This crate's independent generator.
    Generator,
    /// cleanfleet's own firmware simulator (what the matcher was first tuned on).
    Simulator,
}

struct Args {
    sources: Vec<Source>,
    /// Each network and σ is run once per seed; figures are over all of them.
    seeds: Vec<u64>,
    hours: f64,
    paths: Vec<String>,
}

fn parse_args() -> Result<Args, String> {
    let mut args = Args {
        seeds: vec![DEFAULT_SEED],
        sources: vec![Source::Generator],
        hours: GenConfig::default().shift_hours,
        paths: Vec::new(),
    };
    let mut it = std::env::args().skip(1);
    while let Some(arg) = it.next() {
        let mut value = |name: &str| it.next().ok_or(format!("{name} needs a value"));
        match arg.as_str() {
            // Cargo passes it to every bench.
            "--bench" => {}
            "--sim" => args.sources = vec![Source::Generator, Source::Simulator],
            "--seeds" => {
                let v = value("--seeds")?;
                args.seeds = v
                    .split(',')
                    .map(|s| s.parse().map_err(|_| format!("--seeds {v}: not numbers")))
                    .collect::<Result<_, _>>()?;
            }
            "--hours" => {
                let v = value("--hours")?;
                args.hours = v
                    .parse()
                    .map_err(|_| format!("--hours {v}: not a number"))?;
            }
            flag if flag.starts_with("--") => return Err(format!("unknown option {flag}")),
            path => args.paths.push(path.to_owned()),
        }
    }
    Ok(args)
}

fn percent(x: Option<f64>) -> String {
    x.map_or("–".into(), |x| format!("{:.1}", 100.0 * x))
}

fn pr(p: &PrecisionRecall) -> String {
    format!("{}/{}", percent(p.precision()), percent(p.recall()))
}

fn main() -> ExitCode {
    let args = match parse_args() {
        Ok(args) => args,
        Err(e) => {
            eprintln!("accuracy: {e}");
            return ExitCode::FAILURE;
        }
    };
    let mut networks = Vec::new();
    if args.paths.is_empty() {
        networks.push(("demo".to_owned(), RoadNetwork::demo()));
    }
    for path in &args.paths {
        match RoadNetwork::from_file(path, false) {
            Ok(network) => {
                let name = std::path::Path::new(path)
                    .file_name()
                    .map_or(path.clone(), |n| n.to_string_lossy().into_owned());
                networks.push((name, network));
            }
            Err(e) => {
                eprintln!("accuracy: {path}: {e}");
                return ExitCode::FAILURE;
            }
        }
    }
    let rules = CoverageRules::default();
    let match_config = MatchConfig::default();
    println!(
        "seeds {:?}, {} h shifts, MatchConfig::default(), CoverageRules::default(); shares by length, P/R length-weighted, over all seeds",
        args.seeds, args.hours
    );
    println!(
        "{:<16} {:>4} {:>7} {:>7} {:>20} {:>20} {:>11} {:>11} {:>11} {:>12} {:>22} {:>9}",
        "network",
        "σ m",
        "fixes",
        "HDOP>5",
        "covered ours/true",
        "deep ours/true",
        "cov P/R",
        "deep P/R",
        "I cov P/R",
        "implied n/km",
        "valid/worked/driven km",
        "match fixes/s"
    );
    for ((name, network), source) in networks
        .iter()
        .flat_map(|n| args.sources.iter().map(move |s| (n, *s)))
    {
        let name = match source {
            Source::Generator => name.clone(),
            Source::Simulator => format!("{name} (sim)"),
        };
        let shared = std::sync::Arc::new(network.clone());
        for sigma_m in SIGMAS_M {
            let mut total: Option<cleanfleet_accuracy::Score> = None;
            let (mut fixes_n, mut high_hdop, mut matched) = (0usize, 0usize, 0usize);
            let (mut match_s, mut stage_s) = (0.0, 0.0);
            // Ours against the truth the fixes saw (`seen_status`).
            let (mut seen_covered, mut seen_deep) = (Share::default(), Share::default());
            // Truly deep-cleaned length we miss that the seen truth also has deep-cleaned.
            let mut seen_deep_missed_m = 0.0;
            for &seed in &args.seeds {
                let config = GenConfig {
                    seed,
                    shift_hours: args.hours,
                    gps_sigma_m: sigma_m,
                    ..GenConfig::default()
                };
                let runs = match source {
                    Source::Generator => generate(network, &config),
                    Source::Simulator => {
                        sim_source::simulated_runs(&shared, seed, args.hours, sigma_m)
                    }
                };
                let truth = true_status(network, &runs, &rules);
                let (passes, stats) = our_passes(network, &runs, &match_config, &rules);
                let statuses = segment_status(network, &passes, &rules);
                let seen = seen_status(network, &runs, &rules, SEEN_GAP_S);
                for (((segment, ours), seen), truth) in network
                    .segments()
                    .iter()
                    .zip(&statuses)
                    .zip(&seen)
                    .zip(&truth)
                {
                    let length_m = segment.length_m;
                    if truth.deep_cleaned && seen.deep_cleaned && !ours.deep_cleaned {
                        seen_deep_missed_m += length_m;
                    }
                    for (share, ours, seen) in [
                        (&mut seen_covered, ours.covered, seen.covered),
                        (&mut seen_deep, ours.deep_cleaned, seen.deep_cleaned),
                    ] {
                        share.total_m += length_m;
                        share.ours_m += if ours { length_m } else { 0.0 };
                        share.true_m += if seen { length_m } else { 0.0 };
                    }
                }
                let s = score(
                    network,
                    &runs,
                    &truth,
                    &statuses,
                    &passes,
                    &stats.vehicle_passes,
                    &rules,
                );
                let fixes: Vec<_> = runs.iter().flat_map(|r| &r.fixes).collect();
                fixes_n += fixes.len();
                high_hdop += fixes
                    .iter()
                    .filter(|f| f.hdop.is_some_and(|h| h > 5.0))
                    .count();
                matched += stats.fixes;
                match_s += stats.match_time_s;
                stage_s += stats.stage_time_s;
                match total.as_mut() {
                    Some(t) => t.absorb(s),
                    None => total = Some(s),
                }
            }
            let s = total.expect("at least one seed");
            let share = |x: &Share| {
                format!(
                    "{}/{} ({}%)",
                    percent(Some(x.ours())),
                    percent(Some(x.truth())),
                    x.relative_error()
                        .map_or("–".into(), |e| format!("{:+.0}", 100.0 * e))
                )
            };
            let class_i = &s.by_class[0].1;
            let valid_km: f64 = s.mileage.iter().map(|m| m.valid_m).sum::<f64>() / 1000.0;
            let driven_km: f64 = s.mileage.iter().map(|m| m.driven_m).sum::<f64>() / 1000.0;
            let worked_km: f64 = s.mileage.iter().map(|m| m.true_valid_m).sum::<f64>() / 1000.0;
            let worst = s.worst_mileage().map_or(f64::NAN, |m| m.valid_per_driven());
            println!(
                "{:<16} {:>4} {:>7} {:>6.1}% {:>20} {:>20} {:>11} {:>11} {:>11} {:>12} {:>22} {:>9.0}",
                name,
                sigma_m,
                fixes_n,
                100.0 * high_hdop as f64 / fixes_n.max(1) as f64,
                share(&s.covered),
                share(&s.deep_cleaned),
                pr(&s.covered_pr),
                pr(&s.deep_pr),
                pr(class_i),
                format!(
                    "{}/{:.2}",
                    s.implied_speed_violations,
                    s.implied_speed_violation_m / 1000.0
                ),
                format!("{valid_km:.0}/{worked_km:.0}/{driven_km:.0} ({worst:.2})"),
                matched as f64 / match_s
            );
            let missed: Vec<String> = s
                .missed_by_reason
                .iter()
                .map(|(r, m)| format!("{r:?} {:.2} km", m / 1000.0))
                .collect();
            println!(
                "{:<16} {:>4}   against the work the fixes saw (drop-outs ≤ {SEEN_GAP_S} s): covered {}, deep {}",
                "",
                "",
                share(&seen_covered),
                share(&seen_deep),
            );
            println!(
                "{:<16} {:>4}   valid passes over 2x band: {}; coverage stage {:.0} fixes/s; truly covered but missed: {}",
                "",
                "",
                s.twice_band_violations,
                matched as f64 / stage_s,
                missed.join(", ")
            );
            let deep_missed: Vec<String> = s
                .deep_missed_by_cause
                .iter()
                .map(|(c, m)| format!("{c:?} {:.2} km", m / 1000.0))
                .collect();
            println!(
                "{:<16} {:>4}   truly deep-cleaned but missed: {} (the fixes saw {:.2} km of it deep-cleaned)",
                "",
                "",
                deep_missed.join(", "),
                seen_deep_missed_m / 1000.0
            );
        }
    }
    ExitCode::SUCCESS
}
