//! Driving a plan tick by tick: speeds with bounded acceleration, stops at tool switches, dead
//! ends and U-turns, slowing for corners, and overspeed work. The truth is recorded as it is
//! driven, so it is exact by construction.

use rand::Rng;
use rand_chacha::ChaCha8Rng;

use super::network::{turn_deg, Geometry};
use super::plan::Piece;
use super::TruthStretch;
use cleanfleet_roads::RoadNetwork;

/// Simulation step. Speed is constant within a tick, so distance is speed × time exactly.
const TICK_S: f64 = 0.2;
const TICKS_PER_S: u64 = 5;
/// Comfortable acceleration of a loaded truck.
const ACCEL_MPS2: f64 = 0.5;
/// Deceleration the look-ahead plans with, and the most the driver ever brakes.
const PLAN_DECEL_MPS2: f64 = 0.7;
const MAX_DECEL_MPS2: f64 = 2.5;
/// Slowest rolling speed: a truck creeps up to a stop line rather than stalling short of it.
const CREEP_MPS: f64 = 0.5;
/// How far ahead the driver looks for corners and stops (braking from 40 km/h takes 88 m).
const LOOKAHEAD_M: f64 = 150.0;
/// Transit speeds between work areas, km/h (the brief: tools off at 15–40 km/h).
const TRANSIT_KMH: (f64, f64) = (15.0, 40.0);
/// Work speeds, as shares of the work's band: spells of a steady speed, 20–90 s each.
const WORK_SHARE_OF_BAND: (f64, f64) = (0.45, 0.95);
const WORK_SPELL_S: (f64, f64) = (20.0, 90.0);
/// Overspeed work (超速作业): tools on at 1.2–2 × the band for 30–120 s.
const OVERSPEED_SHARE_OF_BAND: (f64, f64) = (1.2, 2.0);
const OVERSPEED_SPELL_S: (f64, f64) = (30.0, 120.0);
/// Standing times: switching tools and turning at a dead end take 5–60 s, a turn in the
/// middle of a street 3–15 s.
const SWITCH_STOP_S: (f64, f64) = (5.0, 60.0);
const U_TURN_STOP_S: (f64, f64) = (3.0, 15.0);

/// The noise-free state of the vehicle at a whole second: what its GPS would see.
#[derive(Debug, Clone, Copy, PartialEq)]
pub(crate) struct TrackPoint {
    pub time_s: f64,
    pub xy: [f64; 2],
    pub speed_kmh: f64,
    /// Direction of travel, degrees from north.
    pub course_deg: f64,
    pub tools_on: bool,
}

pub(crate) struct Drive {
    pub truth: Vec<TruthStretch>,
    pub track: Vec<TrackPoint>,
    pub driven_m: f64,
    /// The plan as far as the vehicle got before its shift ended.
    pub driven_plan: Vec<Piece>,
}

/// What the vehicle does where one piece of the plan meets the next.
#[derive(Debug, Clone, Copy)]
enum Junction {
    /// Rolls on, no faster than this.
    Corner { cap_mps: f64 },
    /// Stands for a while (between these many seconds), switching tools halfway if the next
    /// piece wants them otherwise.
    Stop { seconds: (f64, f64) },
    /// The plan is over.
    End,
}

pub(crate) struct Shift {
    pub start_s: f64,
    pub end_s: f64,
    pub band_kmh: f64,
    /// Share of working time at overspeed.
    pub overspeed_share: f64,
}

pub(crate) fn drive(
    network: &RoadNetwork,
    geometry: &Geometry,
    pieces: &[Piece],
    shift: &Shift,
    rng: &mut ChaCha8Rng,
) -> Drive {
    let junctions = junctions(network, geometry, pieces);
    let mut log = Log {
        truth: Vec::new(),
        clock_s: shift.start_s,
        band_kmh: shift.band_kmh,
        driven_m: 0.0,
    };
    let mut track = Vec::new();
    let mut pace = Pace::new(shift, rng);
    let (mut i, mut pos_m, mut speed_mps) = (0usize, 0.0, 0.0);
    let mut tools_on = pieces.first().is_some_and(|p| p.tools_on);
    let mut cruise_mps = transit_mps(rng);
    // While standing: until when, and when the tools switch.
    let mut standing: Option<(f64, f64)> = None;
    if let Some(p) = pieces.first() {
        pos_m = p.from_m;
    }
    let mut finished = pieces.is_empty();
    let mut tick: u64 = 0;
    loop {
        let now_s = shift.start_s + tick as f64 * TICK_S;
        if tick.is_multiple_of(TICKS_PER_S) && !finished {
            track.push(track_point(
                network, geometry, &pieces[i], pos_m, now_s, speed_mps, tools_on,
            ));
        }
        if finished || now_s >= shift.end_s {
            break;
        }
        tick += 1;
        if let Some((until_s, switch_s)) = standing {
            if now_s >= switch_s {
                tools_on = pieces[i + 1].tools_on;
            }
            log.part(&pieces[i], pos_m, pos_m, TICK_S, 0.0, tools_on);
            if now_s + TICK_S >= until_s - 1e-9 {
                standing = None;
                i += 1;
                pos_m = pieces[i].from_m;
                tools_on = pieces[i].tools_on;
                cruise_mps = transit_mps(rng);
            }
            continue;
        }
        let desired_mps = if pieces[i].tools_on {
            pace.target_mps(now_s, rng)
        } else {
            cruise_mps
        };
        let target_mps = desired_mps
            .min(allowed_mps(pieces, &junctions, i, pos_m))
            .max(CREEP_MPS);
        speed_mps = if target_mps > speed_mps {
            (speed_mps + ACCEL_MPS2 * TICK_S).min(target_mps)
        } else {
            (speed_mps - MAX_DECEL_MPS2 * TICK_S).max(target_mps)
        };
        // Move for one tick at `speed_mps`, across as many junctions as it reaches.
        let mut left_s = TICK_S;
        while left_s > 0.0 {
            let piece = pieces[i];
            let room_m = piece.to_m - pos_m;
            if speed_mps * left_s < room_m {
                let to_m = pos_m + speed_mps * left_s;
                log.part(&piece, pos_m, to_m, left_s, speed_mps, tools_on);
                pos_m = to_m;
                break;
            }
            let part_s = room_m / speed_mps;
            log.part(&piece, pos_m, piece.to_m, part_s, speed_mps, tools_on);
            left_s -= part_s;
            pos_m = piece.to_m;
            match junctions[i] {
                Junction::Corner { .. } => {
                    i += 1;
                    pos_m = pieces[i].from_m;
                }
                Junction::Stop { seconds } => {
                    speed_mps = 0.0;
                    let stop_s = rng.random_range(seconds.0..seconds.1);
                    let at_s = now_s + TICK_S - left_s;
                    let switch_s = at_s + stop_s * rng.random_range(0.2..0.8);
                    log.part(&piece, pos_m, pos_m, left_s, 0.0, tools_on);
                    standing = Some((at_s + stop_s, switch_s));
                    break;
                }
                Junction::End => {
                    speed_mps = 0.0;
                    finished = true;
                    break;
                }
            }
        }
    }
    let mut driven_plan = pieces[..i].to_vec();
    if let Some(&p) = pieces.get(i) {
        if pos_m > p.from_m {
            driven_plan.push(Piece { to_m: pos_m, ..p });
        }
    }
    Drive {
        truth: log.truth,
        track,
        driven_m: log.driven_m,
        driven_plan,
    }
}

fn transit_mps(rng: &mut ChaCha8Rng) -> f64 {
    rng.random_range(TRANSIT_KMH.0..TRANSIT_KMH.1) / 3.6
}

fn track_point(
    network: &RoadNetwork,
    geometry: &Geometry,
    piece: &Piece,
    pos_m: f64,
    time_s: f64,
    speed_mps: f64,
    tools_on: bool,
) -> TrackPoint {
    let length_m = network.segments()[piece.segment as usize].length_m;
    let along_m = if piece.forward {
        pos_m
    } else {
        length_m - pos_m
    };
    let (xy, bearing) = geometry.at(piece.segment, along_m);
    TrackPoint {
        time_s,
        xy,
        speed_kmh: speed_mps * 3.6,
        course_deg: if piece.forward {
            bearing
        } else {
            (bearing + 180.0).rem_euclid(360.0)
        },
        tools_on,
    }
}

/// What happens after each piece.
fn junctions(network: &RoadNetwork, geometry: &Geometry, pieces: &[Piece]) -> Vec<Junction> {
    pieces
        .iter()
        .zip(pieces.iter().skip(1).map(Some).chain([None]))
        .map(|(a, b)| {
            let Some(b) = b else {
                return Junction::End;
            };
            let length_m = network.segments()[a.segment as usize].length_m;
            if a.tools_on != b.tools_on {
                Junction::Stop {
                    seconds: SWITCH_STOP_S,
                }
            } else if a.segment == b.segment && a.forward != b.forward {
                Junction::Stop {
                    seconds: if a.to_m < length_m - 1e-6 {
                        U_TURN_STOP_S
                    } else {
                        SWITCH_STOP_S
                    },
                }
            } else {
                let turn = turn_deg(
                    geometry.end_bearing((a.segment, a.forward)),
                    geometry.start_bearing((b.segment, b.forward)),
                );
                // 40 km/h straight on, about 17 km/h round a right angle, walking pace when
                // turning all the way round.
                let cap_kmh = 3.0 + 37.0 * (1.0 - turn / 180.0).powf(1.5);
                Junction::Corner {
                    cap_mps: cap_kmh / 3.6,
                }
            }
        })
        .collect()
}

/// The fastest speed from which the vehicle can still slow down, at the planned deceleration,
/// for every corner and stop within the look-ahead.
fn allowed_mps(pieces: &[Piece], junctions: &[Junction], i: usize, pos_m: f64) -> f64 {
    let mut allowed = f64::INFINITY;
    let mut ahead_m = pieces[i].to_m - pos_m;
    for (j, junction) in junctions.iter().enumerate().skip(i) {
        let cap_mps = match *junction {
            Junction::Corner { cap_mps } => cap_mps,
            Junction::Stop { .. } | Junction::End => 0.0,
        };
        allowed = allowed.min((cap_mps * cap_mps + 2.0 * PLAN_DECEL_MPS2 * ahead_m).sqrt());
        if cap_mps == 0.0 || ahead_m > LOOKAHEAD_M {
            break;
        }
        if let Some(next) = pieces.get(j + 1) {
            ahead_m += next.to_m - next.from_m;
        }
    }
    allowed
}

/// The working speed the driver aims for: steady spells inside the band, now and then an
/// overspeed spell (with the tools still on).
struct Pace {
    band_mps: f64,
    overspeed_p: f64,
    target_mps: f64,
    until_s: f64,
}

impl Pace {
    fn new(shift: &Shift, rng: &mut ChaCha8Rng) -> Pace {
        // The chance of an overspeed spell that makes its share of time `overspeed_share`,
        // given the mean lengths of the two kinds of spell.
        let normal_s = (WORK_SPELL_S.0 + WORK_SPELL_S.1) / 2.0;
        let over_s = (OVERSPEED_SPELL_S.0 + OVERSPEED_SPELL_S.1) / 2.0;
        let share = shift.overspeed_share.clamp(0.0, 1.0);
        let overspeed_p = share * normal_s / (over_s - share * (over_s - normal_s));
        let mut pace = Pace {
            band_mps: shift.band_kmh / 3.6,
            overspeed_p,
            target_mps: 0.0,
            until_s: shift.start_s,
        };
        pace.target_mps(shift.start_s, rng);
        pace
    }

    fn target_mps(&mut self, now_s: f64, rng: &mut ChaCha8Rng) -> f64 {
        while now_s >= self.until_s {
            let (share, spell) = if rng.random_bool(self.overspeed_p) {
                (OVERSPEED_SHARE_OF_BAND, OVERSPEED_SPELL_S)
            } else {
                (WORK_SHARE_OF_BAND, WORK_SPELL_S)
            };
            self.target_mps = self.band_mps * rng.random_range(share.0..share.1);
            self.until_s += rng.random_range(spell.0..spell.1);
        }
        self.target_mps
    }
}

/// The truth as it is driven: parts of ticks merge into stretches while segment, direction,
/// tools and "within band" stay the same.
struct Log {
    truth: Vec<TruthStretch>,
    clock_s: f64,
    band_kmh: f64,
    driven_m: f64,
}

impl Log {
    fn part(
        &mut self,
        piece: &Piece,
        from_m: f64,
        to_m: f64,
        duration_s: f64,
        speed_mps: f64,
        tools_on: bool,
    ) {
        if duration_s <= 0.0 {
            return;
        }
        let speed_kmh = speed_mps * 3.6;
        let over = speed_kmh > self.band_kmh;
        let start_s = self.clock_s;
        self.clock_s += duration_s;
        self.driven_m += to_m - from_m;
        if let Some(last) = self.truth.last_mut() {
            let same = (last.segment, last.forward, last.tools_on)
                == (piece.segment, piece.forward, tools_on)
                && (last.max_speed_kmh > self.band_kmh) == over
                && last.to_m == from_m;
            if same {
                last.to_m = to_m;
                last.end_s = self.clock_s;
                last.max_speed_kmh = last.max_speed_kmh.max(speed_kmh);
                return;
            }
        }
        self.truth.push(TruthStretch {
            segment: piece.segment,
            forward: piece.forward,
            from_m,
            to_m,
            start_s,
            end_s: self.clock_s,
            tools_on,
            max_speed_kmh: speed_kmh,
        });
    }
}
