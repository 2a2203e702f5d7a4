//! Concrete sagas built on `saga-engine`, and the participant services they coordinate.
//!
//! [`booking`] holds a booking that waits: a hold, a cooling-off timer, then a payment signal
//! with a deadline (compensated when none comes). [`trip`] books a flight, a hotel and a car at
//! once, waits for the payment, and starts a loyalty child saga. [`order`] holds OrderSaga: validate the order, reserve inventory, charge the payment, create
//! the shipment (the pivot), confirm to the customer (retriable). [`participants`] holds the
//! inventory, payments, shipping and notification services, each keeping its own tables and
//! applying each effect at most once per idempotency key.

pub mod booking;
pub mod local_db;
pub mod order;
pub mod participants;
pub mod trip;

pub use order::{register_all, Address, LineItem, Order};
pub use participants::Participants;
