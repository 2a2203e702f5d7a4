//! Integration tests of the engine on a real SQLite file with OrderSaga's real participants.

#![allow(clippy::unwrap_used)]

#[macro_use]
mod backend;
#[macro_use]
mod brokers;
mod across;
mod broker_restart;
mod bus_conformance;
mod common;
mod conformance;
mod conformance_waits;
mod crash;
mod crash_fast;
mod crash_random;
mod crash_trip;
mod crash_waits;
mod events;

mod bad_input;
mod cli;
mod ergonomics;
mod example;
mod failures;
mod group_commit;
mod many;
mod over_events;
mod pg_restart;
mod poison;
mod probe;
mod replies;
mod restart;
mod retries;
mod store;
mod success;
mod trip;
mod ui;
mod versions;
mod waits;
mod workers;
