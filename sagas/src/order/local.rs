//! OrderSaga with local steps: each step calls its participant service in-process. The services
//! are shared resources of the registry ([`Participants::provide_to`]); each step is a plain
//! `async fn` that takes the one it needs from its context.

use std::future::Future;
use std::pin::Pin;

use saga_engine::{
    Definition, DefinitionError, Registry, SagaDefinition, Step, StepContext, StepError, Trigger,
};

use super::{validate, Options, Order, NAME, ORDER_PLACED, VERSION};
use crate::participants::{Inventory, Notifications, Participants, Payments, Shipping, StepRuns};

/// OrderSaga with the default options. Its steps reach the participants through the registry
/// it is registered in: see [`register_all`].
pub fn definition() -> Result<Definition, DefinitionError> {
    definition_with(&Options::default())
}

/// OrderSaga with the given timeouts and retry policies.
pub fn definition_with(options: &Options) -> Result<Definition, DefinitionError> {
    let timeout = options.step_timeout;
    let (retry, undo_retry) = (&options.retry, &options.compensation_retry);
    SagaDefinition::<Order>::new(NAME, VERSION)
        .step(
            Step::new("validate_order", audited(ACTION, validate))
                .retry(retry.clone())
                .timeout(timeout),
        )
        .step(
            Step::new("reserve_inventory", audited(ACTION, reserve_inventory))
                .compensate_as("release_inventory", audited(COMPENSATE, release_inventory))
                .retry(retry.clone())
                .compensation_retry(undo_retry.clone())
                .timeout(timeout),
        )
        .step(
            Step::new("charge_payment", audited(ACTION, charge_payment))
                .compensate_as("refund_payment", audited(COMPENSATE, refund_payment))
                .retry(retry.clone())
                .compensation_retry(undo_retry.clone())
                .timeout(timeout),
        )
        .step(
            Step::new("create_shipment", audited(ACTION, create_shipment))
                .pivot()
                .retry(retry.clone())
                .timeout(timeout),
        )
        .step(
            Step::new("confirm_order", audited(ACTION, confirm_order))
                .retriable()
                .retry(options.confirm_retry.clone())
                .timeout(timeout),
        )
        .build()
}

async fn reserve_inventory(mut ctx: StepContext<Order>) -> Result<Order, StepError> {
    let inventory = ctx.resource::<Inventory>()?;
    let o = &ctx.data;
    let id = inventory
        .reserve(&ctx.idempotency_key, &o.order_id, &o.items)
        .await?;
    ctx.data.reservation = Some(id);
    Ok(ctx.data)
}

async fn release_inventory(mut ctx: StepContext<Order>) -> Result<Order, StepError> {
    let inventory = ctx.resource::<Inventory>()?;
    inventory
        .release(&ctx.action_key(), &ctx.data.order_id)
        .await?;
    ctx.data.reservation = None;
    Ok(ctx.data)
}

async fn charge_payment(mut ctx: StepContext<Order>) -> Result<Order, StepError> {
    let payments = ctx.resource::<Payments>()?;
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

async fn refund_payment(mut ctx: StepContext<Order>) -> Result<Order, StepError> {
    let payments = ctx.resource::<Payments>()?;
    payments
        .refund(&ctx.action_key(), &ctx.data.order_id)
        .await?;
    ctx.data.payment = None;
    Ok(ctx.data)
}

async fn create_shipment(mut ctx: StepContext<Order>) -> Result<Order, StepError> {
    let shipping = ctx.resource::<Shipping>()?;
    let o = &ctx.data;
    let tracking = shipping
        .create(&ctx.idempotency_key, &o.order_id, &o.address)
        .await?;
    ctx.data.tracking = Some(tracking);
    Ok(ctx.data)
}

async fn confirm_order(mut ctx: StepContext<Order>) -> Result<Order, StepError> {
    let notifications = ctx.resource::<Notifications>()?;
    let o = &ctx.data;
    let tracking = o.tracking.clone().unwrap_or_default();
    notifications
        .confirm(&ctx.idempotency_key, &o.order_id, &o.customer, &tracking)
        .await?;
    ctx.data.confirmed = true;
    Ok(ctx.data)
}

const ACTION: &str = "action";
const COMPENSATE: &str = "compensate";

/// The step-run audit, a resource only when [`Options::record_runs`] asks for it.
struct Audit(StepRuns);

type StepFuture = Pin<Box<dyn Future<Output = Result<Order, StepError>> + Send>>;

/// `step`, with each run recorded in the step-run audit when the registry holds one.
fn audited<F, Fut>(
    phase: &'static str,
    step: F,
) -> impl Fn(StepContext<Order>) -> StepFuture + Send + Sync + 'static
where
    F: Fn(StepContext<Order>) -> Fut + Copy + Send + Sync + 'static,
    Fut: Future<Output = Result<Order, StepError>> + Send + 'static,
{
    move |ctx: StepContext<Order>| {
        Box::pin(async move {
            match ctx.resource::<Audit>() {
                Ok(audit) => audit.0.time(&ctx.clone(), phase, step(ctx)).await,
                Err(_) => step(ctx).await,
            }
        })
    }
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
    participants.provide_to(registry);
    provide_audit(registry, participants, options);
    registry.register(definition_with(options)?)?;
    // Publishing `OrderPlaced` (payload: the order) starts an OrderSaga.
    registry.trigger(Trigger::with_payload(ORDER_PLACED, NAME))?;
    Ok(())
}

/// Registers both OrderSagas, the local one and the one over events; `OrderPlaced` starts the
/// one over events when `over_events` (its participants then run as services on the bus,
/// perhaps in other processes), else the local one.
pub fn register_both(
    registry: &mut Registry,
    participants: &Participants,
    options: &Options,
    over_events: bool,
) -> Result<(), DefinitionError> {
    participants.provide_to(registry);
    provide_audit(registry, participants, options);
    registry.register(definition_with(options)?)?;
    registry.register(super::events::definition(options)?)?;
    let started = if over_events {
        super::events::NAME
    } else {
        NAME
    };
    registry.trigger(Trigger::with_payload(ORDER_PLACED, started))?;
    Ok(())
}

fn provide_audit(registry: &mut Registry, participants: &Participants, options: &Options) {
    if options.record_runs {
        registry.provide(Audit(participants.runs.clone()));
    }
}
