//! OrderSaga: validate_order -> reserve_inventory (compensate: release_inventory) ->
//! charge_payment (compensate: refund_payment) -> create_shipment (the pivot) -> confirm_order
//! (retriable: retried until the customer is told, never compensated).
//!
//! Two ways to run it: [`local`] calls the participant services in-process from each step;
//! [`events`] sends them commands on the event bus and waits for their replies, the services
//! ([`services`]) seeing nothing but events.

pub mod events;
pub mod local;
pub mod services;

pub use local::{definition, definition_with, register_all, register_all_with, register_both};

use std::time::Duration;

use saga_engine::{RetryPolicy, StepContext, StepError};
use serde::{Deserialize, Serialize};

/// The name OrderSaga is registered under.
pub const NAME: &str = "OrderSaga";
/// The current version of OrderSaga.
pub const VERSION: u32 = 1;
/// The initiating event that starts an OrderSaga; its payload is the [`Order`].
pub const ORDER_PLACED: &str = "OrderPlaced";

/// One line of an order.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct LineItem {
    /// Stock keeping unit.
    pub sku: String,
    /// Units ordered.
    pub quantity: u32,
}

/// Where the order goes.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Address {
    /// Street and number.
    pub street: String,
    /// City.
    pub city: String,
    /// ISO 3166 two-letter country code.
    pub country: String,
}

/// OrderSaga's data: the order as placed, and what each step recorded.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Order {
    /// The shop's order number.
    pub order_id: String,
    /// Who pays.
    pub customer: String,
    /// What is ordered.
    pub items: Vec<LineItem>,
    /// Total in cents.
    pub amount_cents: i64,
    /// Where it goes.
    pub address: Address,
    /// Set by reserve_inventory, cleared by its compensation.
    #[serde(default)]
    pub reservation: Option<String>,
    /// Set by charge_payment, cleared by its compensation.
    #[serde(default)]
    pub payment: Option<String>,
    /// Set by create_shipment.
    #[serde(default)]
    pub tracking: Option<String>,
    /// Set by confirm_order.
    #[serde(default)]
    pub confirmed: bool,
}

impl Order {
    /// A new order with nothing recorded yet.
    pub fn new(
        order_id: &str,
        customer: &str,
        items: Vec<LineItem>,
        amount_cents: i64,
        address: Address,
    ) -> Self {
        Self {
            order_id: order_id.to_string(),
            customer: customer.to_string(),
            items,
            amount_cents,
            address,
            reservation: None,
            payment: None,
            tracking: None,
            confirmed: false,
        }
    }

    /// Why the order cannot be accepted, if it cannot.
    pub fn problem(&self) -> Option<String> {
        if self.order_id.trim().is_empty() {
            return Some("the order has no order_id".into());
        }
        if self.customer.trim().is_empty() {
            return Some(format!("order {} has no customer", self.order_id));
        }
        if self.items.is_empty() {
            return Some(format!("order {} has no items", self.order_id));
        }
        if let Some(item) = self.items.iter().find(|i| i.quantity == 0) {
            return Some(format!("order {} orders 0 of {}", self.order_id, item.sku));
        }
        if self.amount_cents <= 0 {
            return Some(format!("order {} has a non-positive amount", self.order_id));
        }
        let country = &self.address.country;
        if country.len() != 2 || !country.chars().all(|c| c.is_ascii_uppercase()) {
            return Some(format!(
                "order {}: `{country}` is not a two-letter country code",
                self.order_id
            ));
        }
        None
    }
}

/// Timeouts and retry policies of OrderSaga's steps; tests shorten them.
#[derive(Debug, Clone)]
pub struct Options {
    /// How long one attempt of any step may run.
    pub step_timeout: Duration,
    /// Retry policy of the compensatable steps and the pivot.
    pub retry: RetryPolicy,
    /// Retry policy of the compensations.
    pub compensation_retry: RetryPolicy,
    /// Retry policy of confirm_order (its attempt limit is ignored: it retries until it succeeds).
    pub confirm_retry: RetryPolicy,
    /// Record every run of a local step in the participants' `step_runs` audit (off by default:
    /// one more write per step). `saga worker` turns it on with `SAGA_RECORD_STEP_RUNS=1`.
    pub record_runs: bool,
}

impl Default for Options {
    fn default() -> Self {
        Self {
            step_timeout: Duration::from_secs(10),
            retry: RetryPolicy::default(),
            compensation_retry: RetryPolicy::attempts(5),
            confirm_retry: RetryPolicy::forever()
                .backoff(Duration::from_millis(50), Duration::from_secs(5)),
            record_runs: false,
        }
    }
}

/// validate_order: refuses an order that cannot be fulfilled as given. Shared by both modes.
pub(crate) async fn validate(ctx: StepContext<Order>) -> Result<Order, StepError> {
    match ctx.data.problem() {
        Some(problem) => Err(StepError::terminal(problem)),
        None => Ok(ctx.data),
    }
}
