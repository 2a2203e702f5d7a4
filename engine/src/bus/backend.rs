//! The seam a broker adapter implements under [`Consumer`](super::Consumer): raw deliveries and
//! how to settle them. Parsing, filtering, duplicate and delivery-count checks and dead-lettering
//! are done once, above it, for every bus.

use std::time::Duration;

use async_trait::async_trait;

use super::{BusError, Route};

/// One message as the broker handed it to a group member, not yet parsed.
pub struct RawDelivery {
    /// Its route, read from the subject or routing key (`None` if that is not a route).
    pub route: Option<Route>,
    /// The message body as published.
    pub body: Vec<u8>,
    /// How many times the broker has delivered it, this time included (1 the first time).
    pub deliveries: u32,
    /// How to acknowledge it or give it back.
    pub settle: Box<dyn Settle>,
}

/// Settles one raw delivery.
#[async_trait]
pub trait Settle: Send + Sync {
    /// Handled: the broker forgets it.
    async fn ack(self: Box<Self>) -> Result<(), BusError>;
    /// Not handled: the broker delivers it again after `delay` (to any member of the group).
    async fn nack(self: Box<Self>, delay: Duration) -> Result<(), BusError>;
}

/// A group member's stream of raw deliveries.
#[async_trait]
pub trait RawConsumer: Send {
    /// The next delivery, or `None` once the bus is gone for good. An adapter reconnects by
    /// itself after a broker outage.
    async fn next(&mut self) -> Option<RawDelivery>;
}
