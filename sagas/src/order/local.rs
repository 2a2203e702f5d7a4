//! OrderSaga with local steps: each step calls its participant service in-process.

use saga_engine::{
    Definition, DefinitionError, Registry, SagaDefinition, Step, StepContext, StepError, Trigger,
};

use super::{validate, Options, Order, NAME, ORDER_PLACED, VERSION};
use crate::participants::{Participants, StepRuns};

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
    let audit = Audit(options.record_runs.then_some(p.runs));
    let [audit_reserve, audit_release, audit_charge, audit_refund, audit_ship, audit_confirm] =
        [(); 6].map(|()| audit.clone());
    let timeout = options.step_timeout;
    let (retry, undo_retry) = (options.retry.clone(), options.compensation_retry.clone());
    SagaDefinition::<Order>::new(NAME, VERSION)
        .step({
            let audit = audit.clone();
            Step::new("validate_order", move |ctx: StepContext<Order>| {
                let audit = audit.clone();
                async move { audit.time(&ctx.clone(), ACTION, validate(ctx)).await }
            })
            .retry(retry.clone())
            .timeout(timeout)
        })
        .step(
            Step::new("reserve_inventory", move |mut ctx: StepContext<Order>| {
                let inventory = reserve.clone();
                let audit = audit_reserve.clone();
                async move {
                    let run = ctx.clone();
                    audit
                        .time(&run, ACTION, async move {
                            let o = &ctx.data;
                            let id = inventory
                                .reserve(&ctx.idempotency_key, &o.order_id, &o.items)
                                .await?;
                            ctx.data.reservation = Some(id);
                            Ok(ctx.data)
                        })
                        .await
                }
            })
            .compensate(move |mut ctx: StepContext<Order>| {
                let inventory = release.clone();
                let audit = audit_release.clone();
                async move {
                    let run = ctx.clone();
                    audit
                        .time(&run, COMPENSATE, async move {
                            inventory
                                .release(&ctx.action_key(), &ctx.data.order_id)
                                .await?;
                            ctx.data.reservation = None;
                            Ok(ctx.data)
                        })
                        .await
                }
            })
            .retry(retry.clone())
            .compensation_retry(undo_retry.clone())
            .timeout(timeout),
        )
        .step(
            Step::new("charge_payment", move |mut ctx: StepContext<Order>| {
                let payments = charge.clone();
                let audit = audit_charge.clone();
                async move {
                    let run = ctx.clone();
                    audit
                        .time(&run, ACTION, async move {
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
                        })
                        .await
                }
            })
            .compensate(move |mut ctx: StepContext<Order>| {
                let payments = refund.clone();
                let audit = audit_refund.clone();
                async move {
                    let run = ctx.clone();
                    audit
                        .time(&run, COMPENSATE, async move {
                            payments
                                .refund(&ctx.action_key(), &ctx.data.order_id)
                                .await?;
                            ctx.data.payment = None;
                            Ok(ctx.data)
                        })
                        .await
                }
            })
            .retry(retry.clone())
            .compensation_retry(undo_retry)
            .timeout(timeout),
        )
        .step(
            Step::new("create_shipment", move |mut ctx: StepContext<Order>| {
                let shipping = shipping.clone();
                let audit = audit_ship.clone();
                async move {
                    let run = ctx.clone();
                    audit
                        .time(&run, ACTION, async move {
                            let o = &ctx.data;
                            let tracking = shipping
                                .create(&ctx.idempotency_key, &o.order_id, &o.address)
                                .await?;
                            ctx.data.tracking = Some(tracking);
                            Ok(ctx.data)
                        })
                        .await
                }
            })
            .pivot()
            .retry(retry)
            .timeout(timeout),
        )
        .step(
            Step::new("confirm_order", move |mut ctx: StepContext<Order>| {
                let notifications = notify.clone();
                let audit = audit_confirm.clone();
                async move {
                    let run = ctx.clone();
                    audit
                        .time(&run, ACTION, async move {
                            let o = &ctx.data;
                            let tracking = o.tracking.clone().unwrap_or_default();
                            notifications
                                .confirm(&ctx.idempotency_key, &o.order_id, &o.customer, &tracking)
                                .await?;
                            ctx.data.confirmed = true;
                            Ok(ctx.data)
                        })
                        .await
                }
            })
            .retriable()
            .retry(options.confirm_retry.clone())
            .timeout(timeout),
        )
        .build()
}

const ACTION: &str = "action";
const COMPENSATE: &str = "compensate";

/// The step-run audit when [`Options::record_runs`] asks for it.
#[derive(Clone)]
struct Audit(Option<StepRuns>);

impl Audit {
    async fn time(
        &self,
        ctx: &StepContext<Order>,
        phase: &str,
        work: impl std::future::Future<Output = Result<Order, StepError>>,
    ) -> Result<Order, StepError> {
        match &self.0 {
            Some(runs) => runs.time(ctx, phase, work).await,
            None => work.await,
        }
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
    registry.register(definition_with(participants, options)?)?;
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
    registry.register(definition_with(participants, options)?)?;
    registry.register(super::events::definition(options)?)?;
    let started = if over_events {
        super::events::NAME
    } else {
        NAME
    };
    registry.trigger(Trigger::with_payload(ORDER_PLACED, started))?;
    Ok(())
}
