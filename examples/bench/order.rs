//! The saga the benchmark runs: OrderSaga's five steps and compensations with trivial bodies, so
//! what is measured is the engine and its database, not a participant.

use saga::engine::{Definition, DefinitionError, SagaDefinition, Step, StepContext, StepError};
use saga::sagas::order::{NAME, VERSION};
use saga::sagas::{Address, LineItem, Order};

/// The customer whose card charge_payment declines.
pub const DECLINED: &str = "declined-card";
/// The customer whose shipment fails and whose refund then fails too: the saga ends `failed`
/// (the store filler's template of a failed saga).
pub const STUCK: &str = "stuck-refund";

/// OrderSaga with trivial step bodies: each records what its participant would have, and
/// charge_payment declines [`DECLINED`]'s card for good, which compensates the reservation.
pub fn definition() -> Result<Definition, DefinitionError> {
    SagaDefinition::<Order>::new(NAME, VERSION)
        .step(Step::new(
            "validate_order",
            |ctx: StepContext<Order>| async move {
                match ctx.data.problem() {
                    Some(problem) => Err(StepError::terminal(problem)),
                    None => Ok(ctx.data),
                }
            },
        ))
        .step(
            Step::new(
                "reserve_inventory",
                |mut ctx: StepContext<Order>| async move {
                    ctx.data.reservation = Some(format!("r-{}", ctx.data.order_id));
                    Ok(ctx.data)
                },
            )
            .compensate(|mut ctx: StepContext<Order>| async move {
                ctx.data.reservation = None;
                Ok(ctx.data)
            }),
        )
        .step(
            Step::new("charge_payment", |mut ctx: StepContext<Order>| async move {
                if ctx.data.customer == DECLINED {
                    return Err(StepError::terminal("card declined"));
                }
                ctx.data.payment = Some(format!("p-{}", ctx.data.order_id));
                Ok(ctx.data)
            })
            .compensate(|mut ctx: StepContext<Order>| async move {
                if ctx.data.customer == STUCK {
                    return Err(StepError::terminal(
                        "the payment provider refuses the refund",
                    ));
                }
                ctx.data.payment = None;
                Ok(ctx.data)
            }),
        )
        .step(
            Step::new(
                "create_shipment",
                |mut ctx: StepContext<Order>| async move {
                    if ctx.data.customer == STUCK {
                        return Err(StepError::terminal("no carrier serves the address"));
                    }
                    ctx.data.tracking = Some(format!("t-{}", ctx.data.order_id));
                    Ok(ctx.data)
                },
            )
            .pivot(),
        )
        .step(
            Step::new("confirm_order", |mut ctx: StepContext<Order>| async move {
                ctx.data.confirmed = true;
                Ok(ctx.data)
            })
            .retriable(),
        )
        .build()
}

/// Whether order `i` of a run is one of the declined ones: spread evenly, `fraction` of them.
pub fn declined(i: usize, fraction: f64) -> bool {
    (((i + 1) as f64) * fraction).floor() > ((i as f64) * fraction).floor()
}

/// Order `i` of a run.
pub fn order(i: usize, fraction: f64) -> Order {
    let customer = if declined(i, fraction) {
        DECLINED.to_string()
    } else {
        format!("customer-{}", i % 97)
    };
    Order::new(
        &format!("bench-{i}"),
        &customer,
        vec![LineItem {
            sku: "SKU-1".into(),
            quantity: 1 + (i % 3) as u32,
        }],
        1_000 + (i % 50) as i64,
        Address {
            street: "1 Main St".into(),
            city: "Springfield".into(),
            country: "US".into(),
        },
    )
}

/// Checks that a final saga is what order `i` should have come to: completed with everything
/// recorded, or (declined) compensated with the reservation and payment undone.
pub fn check(i: usize, fraction: f64, status: &str, data: &Order) -> Result<(), String> {
    let ok = if declined(i, fraction) {
        status == "compensated" && data.reservation.is_none() && data.payment.is_none()
    } else {
        status == "completed" && data.payment.is_some() && data.tracking.is_some() && data.confirmed
    };
    match ok {
        true => Ok(()),
        false => Err(format!(
            "order {i} ended {status} with {data:?}; expected {}",
            if declined(i, fraction) {
                "compensated"
            } else {
                "completed"
            }
        )),
    }
}
