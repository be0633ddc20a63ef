//! Districts and routes: which streets a vehicle works, in which order, and where it only
//! drives through.

use rand::seq::IndexedRandom;
use rand::Rng;
use rand_chacha::ChaCha8Rng;

use super::network::{Edge, Graph};

/// A stretch of one segment in one direction that the vehicle drives with its tools on or off.
/// `from_m..to_m` is measured in the driving direction from the node it enters the segment at.
#[derive(Debug, Clone, Copy, PartialEq)]
pub(crate) struct Piece {
    pub segment: u32,
    pub forward: bool,
    pub from_m: f64,
    pub to_m: f64,
    pub tools_on: bool,
}

/// Connections to the next unworked street up to this long are driven with the tools left on,
/// as crews do rather than stopping twice to switch; longer ones are transit with tools off.
const LINK_WITH_TOOLS_M: f64 = 200.0;
/// Segments shorter than this are not turned on in the middle.
const MIN_U_TURN_SEGMENT_M: f64 = 60.0;

/// The segments of a district: a ball of the core grown by network distance from `centre`
/// until it holds `road_m` of road.
pub(crate) fn district(graph: &Graph, centre: u32, road_m: f64) -> Vec<bool> {
    let network = graph.network();
    let mut member = vec![false; network.segments().len()];
    let mut total_m = 0.0;
    graph.search(centre, |node, _| {
        for (s, _) in graph.outgoing(node) {
            if !member[s as usize] {
                member[s as usize] = true;
                total_m += network.segments()[s as usize].length_m;
            }
        }
        total_m < road_m
    });
    member
}

/// How fast the plan expects the vehicle to go, to know when a shift's worth is planned.
/// Faster than the executor's average, so that plans outlast the shift.
pub(crate) struct Pace {
    pub work_mps: f64,
    pub transit_mps: f64,
}

/// A route through `district` from `start` lasting about `budget_s` at `pace`: at each node the
/// vehicle works a side it has not worked yet (on two-way class I/II roads each direction is a
/// side, DOMAIN.md "Main roads are cleaned on both sides"), turning back only at dead ends;
/// when none is adjacent it drives to the nearest one. Once every reachable side is worked it
/// starts another round. Now and then it turns back in the middle of a segment (a blocked
/// street), leaving that side unworked.
#[allow(clippy::too_many_arguments)]
pub(crate) fn plan(
    graph: &Graph,
    district: &[bool],
    both_sided: &[bool],
    start: u32,
    pace: &Pace,
    budget_s: f64,
    u_turn_share: f64,
    rng: &mut ChaCha8Rng,
) -> Vec<Piece> {
    let network = graph.network();
    let side = |(s, f): Edge| 2 * s as usize + usize::from(both_sided[s as usize] && !f);
    let mut worked = vec![false; 2 * network.segments().len()];
    let mut pieces = Vec::new();
    let mut node = start;
    let mut arrived: Option<Edge> = None;
    let mut planned_s = 0.0;
    let mut fresh_round = false;
    while planned_s < budget_s {
        let open = |e: Edge, worked: &[bool]| district[e.0 as usize] && !worked[side(e)];
        let reverse = arrived.map(|(s, f)| (s, !f));
        let mut options: Vec<Edge> = graph
            .outgoing(node)
            .filter(|&e| open(e, &worked) && Some(e) != reverse)
            .collect();
        if options.is_empty() {
            options.extend(reverse.filter(|&e| open(e, &worked)));
        }
        if let Some(&(s, f)) = options.choose(rng) {
            fresh_round = false;
            let length_m = network.segments()[s as usize].length_m;
            let two_way = !network.segments()[s as usize].oneway;
            if two_way && length_m >= MIN_U_TURN_SEGMENT_M && rng.random_bool(u_turn_share) {
                let turn_m = length_m * rng.random_range(0.3..0.7);
                pieces.push(work_piece(s, f, 0.0, turn_m));
                pieces.push(work_piece(s, !f, length_m - turn_m, length_m));
                planned_s += 2.0 * turn_m / pace.work_mps;
                arrived = Some((s, !f));
            } else {
                pieces.push(work_piece(s, f, 0.0, length_m));
                worked[side((s, f))] = true;
                planned_s += length_m / pace.work_mps;
                node = graph.end_node((s, f));
                arrived = Some((s, f));
            }
            continue;
        }
        let has_open = |n: u32| graph.outgoing(n).any(|e| open(e, &worked));
        match graph.route_to_nearest(node, has_open) {
            Some(path) => {
                let length = |(s, _): &Edge| network.segments()[*s as usize].length_m;
                let path_m: f64 = path.iter().map(length).sum();
                let tools_on = path_m <= LINK_WITH_TOOLS_M;
                for &(s, f) in &path {
                    pieces.push(Piece {
                        tools_on,
                        ..work_piece(s, f, 0.0, length(&(s, f)))
                    });
                }
                planned_s += path_m
                    / if tools_on {
                        pace.work_mps
                    } else {
                        pace.transit_mps
                    };
                node = graph.end_node(*path.last().expect("a route to another node"));
                arrived = path.last().copied();
            }
            None if !fresh_round => {
                // Everything reachable is worked: the next round starts where it is.
                worked.fill(false);
                fresh_round = true;
            }
            None => break,
        }
    }
    pieces
}

fn work_piece(segment: u32, forward: bool, from_m: f64, to_m: f64) -> Piece {
    Piece {
        segment,
        forward,
        from_m,
        to_m,
        tools_on: true,
    }
}
