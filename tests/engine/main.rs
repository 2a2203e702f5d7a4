//! Integration tests of the engine on a real SQLite file with OrderSaga's real participants.

mod common;

mod bad_input;
mod failures;
mod many;
mod probe;
mod restart;
mod retries;
mod store;
mod success;
