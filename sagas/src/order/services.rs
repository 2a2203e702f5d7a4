//! The participant services of the event-driven OrderSaga, each a tokio task that sees only
//! events: it takes its commands off the bus (as a consumer group named for the service, so
//! several processes can share the work), applies them through its service (at most once per
//! idempotency key), publishes a reply, and only then acknowledges the command.

use std::sync::Arc;

use saga_engine::idempotency_key;
use saga_engine::{bus::BusError, bus::ConsumeOptions};
use saga_engine::{bus::Envelope, bus::EventBus, fault::Fault, fault::FaultPlan, Phase};
use saga_engine::{participant, participant::Command};
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

    /// The command types the service handles.
    pub fn commands(self) -> &'static [&'static str] {
        match self {
            Service::Inventory => &[RESERVE_INVENTORY, RELEASE_INVENTORY],
            Service::Payments => &[CHARGE_PAYMENT, REFUND_PAYMENT],
            Service::Shipping => &[CREATE_SHIPMENT],
            Service::Notifications => &[CONFIRM_ORDER],
        }
    }

    /// The service's name: its consumer group on the bus.
    pub fn name(self) -> &'static str {
        match self {
            Service::Inventory => "inventory",
            Service::Payments => "payments",
            Service::Shipping => "shipping",
            Service::Notifications => "notifications",
        }
    }

    /// The service named `name`, if there is one.
    pub fn named(name: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|s| s.name() == name)
    }
}

/// Starts the given services on `bus`, each in its consumer group before this returns.
pub async fn spawn(
    bus: Arc<dyn EventBus>,
    participants: &Participants,
    services: &[Service],
) -> Result<Vec<JoinHandle<()>>, BusError> {
    spawn_with_faults(bus, participants, services, &FaultPlan::new()).await
}

/// Like [`spawn`], with failures injected into the commands `faults` names (by step, phase and
/// attempt), as the services' own failures would be.
pub async fn spawn_with_faults(
    bus: Arc<dyn EventBus>,
    participants: &Participants,
    services: &[Service],
    faults: &FaultPlan,
) -> Result<Vec<JoinHandle<()>>, BusError> {
    spawn_with(
        bus,
        participants,
        services,
        faults,
        ConsumeOptions::default(),
    )
    .await
}

/// Like [`spawn_with_faults`], the services' consumer groups set up by `options`.
pub async fn spawn_with(
    bus: Arc<dyn EventBus>,
    participants: &Participants,
    services: &[Service],
    faults: &FaultPlan,
    options: ConsumeOptions,
) -> Result<Vec<JoinHandle<()>>, BusError> {
    let mut tasks = Vec::with_capacity(services.len());
    for &service in services {
        let (participants, faults) = (participants.clone(), faults.clone());
        let (name, commands) = (service.name(), service.commands());
        let task = participant::serve(
            bus.clone(),
            name,
            commands,
            options.clone(),
            move |command| {
                let (participants, faults) = (participants.clone(), faults.clone());
                async move { handle(&participants, &faults, command).await }
            },
        )
        .await?;
        tasks.push(task);
    }
    Ok(tasks)
}

/// Applies one command and returns its reply.
async fn handle(p: &Participants, faults: &FaultPlan, command: Command) -> Envelope {
    if let Some(fault) = faults.for_attempt(&command.step, command.phase, command.attempt) {
        let retryable = !matches!(fault, Fault::Fail);
        let reason = format!(
            "injected failure at {} (attempt {})",
            command.step, command.attempt
        );
        return command.failure(reason, retryable);
    }
    let order: Order = match command.data() {
        Ok(o) => o,
        Err(reason) => return command.failure(reason, false),
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
            return command.failure(format!("no service here handles `{other}`"), false);
        }
    };
    match done {
        Ok(reference) => command.success(&Receipt { reference }),
        Err(ParticipantError::Rejected(reason)) => command.failure(reason, false),
        Err(e @ ParticipantError::Database(_)) => command.failure(e.to_string(), true),
    }
}
