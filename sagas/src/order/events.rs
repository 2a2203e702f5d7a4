//! OrderSaga over events: inventory, payments, shipping and notifications are participants that
//! the mediator reaches only through command events, and that answer with reply events. The
//! same steps, outcomes and compensations as [`super::local`]; run the services with
//! [`super::services::spawn`].

use saga_engine::{Definition, DefinitionError, Registry, SagaDefinition, Step, Trigger};
use serde::{Deserialize, Serialize};

use super::{validate, Options, Order, ORDER_PLACED};

/// The name the event-driven OrderSaga is registered under.
pub const NAME: &str = "EventDrivenOrderSaga";
/// Its version.
pub const VERSION: u32 = 1;

/// The command types the participants handle.
pub mod commands {
    /// Reserve an order's items (inventory).
    pub const RESERVE_INVENTORY: &str = "ReserveInventory";
    /// Release a reservation (inventory).
    pub const RELEASE_INVENTORY: &str = "ReleaseInventory";
    /// Charge the order (payments).
    pub const CHARGE_PAYMENT: &str = "ChargePayment";
    /// Refund a charge (payments).
    pub const REFUND_PAYMENT: &str = "RefundPayment";
    /// Hand the order to a carrier (shipping).
    pub const CREATE_SHIPMENT: &str = "CreateShipment";
    /// Tell the customer (notifications).
    pub const CONFIRM_ORDER: &str = "ConfirmOrder";
}

/// What a participant's success reply carries: the reference of the effect it applied.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Receipt {
    /// Reservation key, charge key or tracking number.
    pub reference: String,
}

/// The event-driven OrderSaga with the given timeouts (the reply deadlines) and retry policies.
pub fn definition(options: &Options) -> Result<Definition, DefinitionError> {
    use commands::*;
    let timeout = options.step_timeout;
    let (retry, undo) = (options.retry.clone(), options.compensation_retry.clone());
    SagaDefinition::<Order>::new(NAME, VERSION)
        .step(
            Step::new("validate_order", validate)
                .retry(retry.clone())
                .timeout(timeout),
        )
        .step(
            Step::participant(
                "reserve_inventory",
                RESERVE_INVENTORY,
                |mut o: Order, r: Receipt| {
                    o.reservation = Some(r.reference);
                    o
                },
            )
            .compensate_with_command(RELEASE_INVENTORY)
            .retry(retry.clone())
            .compensation_retry(undo.clone())
            .timeout(timeout),
        )
        .step(
            Step::participant(
                "charge_payment",
                CHARGE_PAYMENT,
                |mut o: Order, r: Receipt| {
                    o.payment = Some(r.reference);
                    o
                },
            )
            .compensate_with_command(REFUND_PAYMENT)
            .retry(retry.clone())
            .compensation_retry(undo)
            .timeout(timeout),
        )
        .step(
            Step::participant(
                "create_shipment",
                CREATE_SHIPMENT,
                |mut o: Order, r: Receipt| {
                    o.tracking = Some(r.reference);
                    o
                },
            )
            .pivot()
            .retry(retry)
            .timeout(timeout),
        )
        .step(
            Step::participant(
                "confirm_order",
                CONFIRM_ORDER,
                |mut o: Order, _: Receipt| {
                    o.confirmed = true;
                    o
                },
            )
            .retriable()
            .retry(options.confirm_retry.clone())
            .timeout(timeout),
        )
        .build()
}

/// Registers the event-driven OrderSaga, started by `OrderPlaced` events.
pub fn register(registry: &mut Registry, options: &Options) -> Result<(), DefinitionError> {
    registry.register(definition(options)?)?;
    registry.trigger(Trigger::with_payload(ORDER_PLACED, NAME))?;
    Ok(())
}
