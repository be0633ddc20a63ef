//! The coverage engine: from vehicle fixes to where the vehicles really drove and worked.
//!
//! [`Matcher`] matches a vehicle's fixes to the road network with a hidden Markov model
//! (Newson & Krumm 2009): candidates from an R-tree ([`SegmentIndex`]), emission from the
//! distance to the road and the heading, transition from route distance against straight-line
//! distance, Viterbi for the most likely path. [`derive_passes`] cuts a matched trace into
//! work passes by the vehicle's tools, speed and GPS quality; [`segment_status`] turns a
//! day's passes into covered, mechanised and deep-cleaned segments under [`CoverageRules`].
//! **Everything here is a pure function of its
//! input: no I/O, no clock, no randomness**, so the same fixes always give the same answer.

mod chunk;
mod index;
#[cfg(test)]
mod invariant_tests;
mod matcher;
mod passes;
mod plane;
mod router;
mod rules;
mod smooth;
mod status;
#[cfg(test)]
mod test_networks;
mod track;

pub use chunk::{chunked_match, chunked_passes, match_window, CHUNK_S, CONTEXT_S};
pub use index::{Candidate, SegmentIndex};
pub use matcher::{Leg, MatchConfig, MatchedPoint, MatchedTrace, Matcher, Observation, Traversal};
pub use passes::{derive_passes, FixState, InvalidReason, Pass, WorkType};
pub use plane::Plane;
pub use rules::{non_negative, positive, CoverageRules, DeepCleanRule, SectionPlan, SpeedBands};
pub use status::{segment_status, status_of, CoverageSummary, MissReason, SegmentStatus};
pub use track::{
    in_time_order, match_track, parse_track, TrackError, TrackFix, TrackFormat, TrackMatch,
};
