//! The accuracy harness: an independent yardstick for cleanfleet's coverage pipeline.
//!
//! cleanfleet's matcher was tuned on data from its own simulator; this crate measures it on
//! data it did not make. [`gen`] drives a fleet over a road network and records both what the
//! devices would send (noisy, gappy 1 Hz GPS with the tools' state) and what the trucks really
//! did ([`gen::TruthStretch`]). [`truth`] turns the real drives into each segment's true day
//! status under DOMAIN.md's coverage rules, by brute-force sampling and without cleanfleet's
//! code; [`pipeline`] runs cleanfleet on the fixes; [`score`] compares the two.
//!
//! Everything is a pure function of its input and seed, except the matching time that
//! [`pipeline::our_passes`] measures.

pub mod gen;
pub mod pipeline;
pub mod score;
pub mod truth;

pub use gen::{generate, FleetMix, GenConfig, GenFix, TruthStretch, VehicleRun};
pub use pipeline::{our_passes, PipelineStats};
pub use score::{score, DeepMiss, PrecisionRecall, Score, Share, VehicleMileage};
pub use truth::{seen_status, true_status, SegmentTruth};
