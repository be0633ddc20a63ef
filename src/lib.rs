//! The `cleanfleet` application: configuration and the wiring of the stages (embedded broker,
//! ingest, store, API, simulator) into one process or several.

pub mod broker;
pub mod config;
pub mod coverage;
mod stack;

pub use stack::{
    demo, load_network, open_store, run_load, run_sim, wait_for_shutdown_signal, Parts, Stack,
    INGEST_USERNAME,
};
