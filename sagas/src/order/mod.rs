//! OrderSaga: validate_order -> reserve_inventory (compensate: release_inventory) ->
//! charge_payment (compensate: refund_payment) -> create_shipment (the pivot) -> confirm_order
//! (retriable: retried until the customer is told, never compensated).

use std::time::Duration;

use saga_engine::{
    Definition, DefinitionError, Registry, RetryPolicy, SagaDefinition, Step, StepContext,
    StepError, Trigger,
};
use serde::{Deserialize, Serialize};

use crate::participants::Participants;

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
}

impl Default for Options {
    fn default() -> Self {
        Self {
            step_timeout: Duration::from_secs(10),
            retry: RetryPolicy::default(),
            compensation_retry: RetryPolicy::attempts(5),
            confirm_retry: RetryPolicy::forever()
                .backoff(Duration::from_millis(50), Duration::from_secs(5)),
        }
    }
}

/// OrderSaga over the given participants, with the default options.
pub fn definition(participants: &Participants) -> Result<Definition, DefinitionError> {
    definition_with(participants, &Options::default())
}

/// OrderSaga over the given participants, with the given timeouts and retry policies.
pub fn definition_with(
    participants: &Participants,
    options: &Options,
) -> Result<Definition, DefinitionError> {
    let p = participants.clone();
    let (reserve, release) = (p.inventory.clone(), p.inventory.clone());
    let (charge, refund) = (p.payments.clone(), p.payments.clone());
    let (shipping, notify) = (p.shipping, p.notifications);
    let timeout = options.step_timeout;
    let (retry, undo_retry) = (options.retry.clone(), options.compensation_retry.clone());
    SagaDefinition::<Order>::new(NAME, VERSION)
        .step(
            Step::new("validate_order", |ctx: StepContext<Order>| async move {
                match ctx.data.problem() {
                    Some(problem) => Err(StepError::terminal(problem)),
                    None => Ok(ctx.data),
                }
            })
            .retry(retry.clone())
            .timeout(timeout),
        )
        .step(
            Step::new("reserve_inventory", move |mut ctx: StepContext<Order>| {
                let inventory = reserve.clone();
                async move {
                    let o = &ctx.data;
                    let id = inventory
                        .reserve(&ctx.idempotency_key, &o.order_id, &o.items)
                        .await?;
                    ctx.data.reservation = Some(id);
                    Ok(ctx.data)
                }
            })
            .compensate(move |mut ctx: StepContext<Order>| {
                let inventory = release.clone();
                async move {
                    inventory
                        .release(&ctx.action_key(), &ctx.data.order_id)
                        .await?;
                    ctx.data.reservation = None;
                    Ok(ctx.data)
                }
            })
            .retry(retry.clone())
            .compensation_retry(undo_retry.clone())
            .timeout(timeout),
        )
        .step(
            Step::new("charge_payment", move |mut ctx: StepContext<Order>| {
                let payments = charge.clone();
                async move {
                    let o = &ctx.data;
                    let id = payments
                        .charge(
                            &ctx.idempotency_key,
                            &o.order_id,
                            &o.customer,
                            o.amount_cents,
                        )
                        .await?;
                    ctx.data.payment = Some(id);
                    Ok(ctx.data)
                }
            })
            .compensate(move |mut ctx: StepContext<Order>| {
                let payments = refund.clone();
                async move {
                    payments
                        .refund(&ctx.action_key(), &ctx.data.order_id)
                        .await?;
                    ctx.data.payment = None;
                    Ok(ctx.data)
                }
            })
            .retry(retry.clone())
            .compensation_retry(undo_retry)
            .timeout(timeout),
        )
        .step(
            Step::new("create_shipment", move |mut ctx: StepContext<Order>| {
                let shipping = shipping.clone();
                async move {
                    let o = &ctx.data;
                    let tracking = shipping
                        .create(&ctx.idempotency_key, &o.order_id, &o.address)
                        .await?;
                    ctx.data.tracking = Some(tracking);
                    Ok(ctx.data)
                }
            })
            .pivot()
            .retry(retry)
            .timeout(timeout),
        )
        .step(
            Step::new("confirm_order", move |mut ctx: StepContext<Order>| {
                let notifications = notify.clone();
                async move {
                    let o = &ctx.data;
                    let tracking = o.tracking.clone().unwrap_or_default();
                    notifications
                        .confirm(&ctx.idempotency_key, &o.order_id, &o.customer, &tracking)
                        .await?;
                    ctx.data.confirmed = true;
                    Ok(ctx.data)
                }
            })
            .retriable()
            .retry(options.confirm_retry.clone())
            .timeout(timeout),
        )
        .build()
}

/// Registers every saga of this crate (OrderSaga) over the given participants.
pub fn register_all(
    registry: &mut Registry,
    participants: &Participants,
) -> Result<(), DefinitionError> {
    register_all_with(registry, participants, &Options::default())
}

/// Like [`register_all`], with OrderSaga's timeouts and retry policies given.
pub fn register_all_with(
    registry: &mut Registry,
    participants: &Participants,
    options: &Options,
) -> Result<(), DefinitionError> {
    registry.register(definition_with(participants, options)?)?;
    // Publishing `OrderPlaced` (payload: the order) starts an OrderSaga.
    registry.trigger(Trigger::with_payload(ORDER_PLACED, NAME));
    Ok(())
}
