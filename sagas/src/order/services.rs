//! The participant services of the event-driven OrderSaga, each a tokio task that sees only
//! events: it takes its commands off the bus, applies them through its service (at most once
//! per idempotency key), and publishes a reply.

use std::sync::Arc;

use saga_engine::participant::Command;
use saga_engine::step::idempotency_key;
use saga_engine::{Envelope, EventBus, Fault, FaultPlan, Filter, Phase};
use tokio::task::JoinHandle;

use super::events::{commands::*, Receipt};
use super::Order;
use crate::participants::{ParticipantError, Participants};

/// Which services to run (tests leave some out to play an unresponsive participant).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Service {
    /// Reserve and release inventory.
    Inventory,
    /// Charge and refund payments.
    Payments,
    /// Create shipments.
    Shipping,
    /// Confirm orders to customers.
    Notifications,
}

impl Service {
    /// Every service.
    pub const ALL: [Service; 4] = [
        Service::Inventory,
        Service::Payments,
        Service::Shipping,
        Service::Notifications,
    ];

    fn commands(self) -> &'static [&'static str] {
        match self {
            Service::Inventory => &[RESERVE_INVENTORY, RELEASE_INVENTORY],
            Service::Payments => &[CHARGE_PAYMENT, REFUND_PAYMENT],
            Service::Shipping => &[CREATE_SHIPMENT],
            Service::Notifications => &[CONFIRM_ORDER],
        }
    }
}

/// Starts the given services on `bus`, each subscribed before this returns.
pub fn spawn(
    bus: Arc<dyn EventBus>,
    participants: &Participants,
    services: &[Service],
) -> Vec<JoinHandle<()>> {
    spawn_with_faults(bus, participants, services, &FaultPlan::new())
}

/// Like [`spawn`], with failures injected into the commands `faults` names (by step, phase and
/// attempt), as the services' own failures would be.
pub fn spawn_with_faults(
    bus: Arc<dyn EventBus>,
    participants: &Participants,
    services: &[Service],
    faults: &FaultPlan,
) -> Vec<JoinHandle<()>> {
    services
        .iter()
        .map(|&service| {
            let mut commands = bus.subscribe(Filter::types(service.commands().iter().copied()));
            let (bus, participants, faults) = (bus.clone(), participants.clone(), faults.clone());
            tokio::spawn(async move {
                while let Some(event) = commands.next().await {
                    // Each command in its own task: a slow one does not hold up the others.
                    let (bus, participants, faults) =
                        (bus.clone(), participants.clone(), faults.clone());
                    tokio::spawn(async move {
                        if let Some(reply) = handle(&participants, &faults, &event).await {
                            if let Err(error) = bus.publish(reply).await {
                                tracing::warn!(%error, "publishing a reply failed");
                            }
                        }
                    });
                }
            })
        })
        .collect()
}

/// Applies one command and returns its reply (`None` for a malformed command, which is logged).
async fn handle(p: &Participants, faults: &FaultPlan, event: &Envelope) -> Option<Envelope> {
    let command = match Command::parse(event) {
        Ok(c) => c,
        Err(reason) => {
            tracing::warn!(event_id = %event.event_id, %reason, "malformed command ignored");
            return None;
        }
    };
    if let Some(fault) = faults.for_attempt(&command.step, command.phase, command.attempt) {
        let retryable = !matches!(fault, Fault::Fail);
        let reason = format!(
            "injected failure at {} (attempt {})",
            command.step, command.attempt
        );
        return Some(command.failure(reason, retryable));
    }
    let order: Order = match command.data() {
        Ok(o) => o,
        Err(reason) => return Some(command.failure(reason, false)),
    };
    // A compensation undoes the effect applied under the action's key.
    let action_key = idempotency_key(command.saga_id, &command.step, Phase::Action);
    let key = command.idempotency_key.as_str();
    let done: Result<String, ParticipantError> = match command.kind.as_str() {
        RESERVE_INVENTORY => {
            p.inventory
                .reserve(key, &order.order_id, &order.items)
                .await
        }
        RELEASE_INVENTORY => p
            .inventory
            .release(&action_key, &order.order_id)
            .await
            .map(|()| action_key.clone()),
        CHARGE_PAYMENT => {
            p.payments
                .charge(key, &order.order_id, &order.customer, order.amount_cents)
                .await
        }
        REFUND_PAYMENT => p
            .payments
            .refund(&action_key, &order.order_id)
            .await
            .map(|()| action_key.clone()),
        CREATE_SHIPMENT => {
            p.shipping
                .create(key, &order.order_id, &order.address)
                .await
        }
        CONFIRM_ORDER => {
            let tracking = order.tracking.clone().unwrap_or_default();
            p.notifications
                .confirm(key, &order.order_id, &order.customer, &tracking)
                .await
                .map(|()| key.to_string())
        }
        other => {
            tracing::warn!(command = other, "command for another service ignored");
            return None;
        }
    };
    Some(match done {
        Ok(reference) => command.success(&Receipt { reference }),
        Err(ParticipantError::Rejected(reason)) => command.failure(reason, false),
        Err(e @ ParticipantError::Database(_)) => command.failure(e.to_string(), true),
    })
}
