//! Consumer groups, the same for every bus: a [`Consumer`] turns an adapter's raw deliveries
//! into [`Delivery`]s of parsed envelopes, and does the checks every group needs once: a body
//! that is not an envelope, or a message delivered more often than allowed, goes to the dead
//! letters at once; one this member already handled is acknowledged and skipped.

use std::future::Future;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use super::backend::{RawConsumer, RawDelivery, Settle};
use super::{BusError, DeadLetter, DeadLetters, Envelope, Filter, Recent, Route};

/// How a consumer group treats its messages.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConsumeOptions {
    /// Deliveries a message may take before it goes to the dead letters (default 5).
    pub max_deliveries: u32,
    /// How long a delivery may stay unacknowledged before the broker gives it to another member
    /// (JetStream's ack wait; RabbitMQ redelivers when the member's connection closes).
    pub ack_wait: Duration,
    /// How long a message given back by [`Delivery::retry`] waits before its next delivery,
    /// times the deliveries it has had (at most 30 times): 1 s, 2 s, 3 s, ... by default, so a
    /// dependency that is down for a while is given time before the dead letters.
    pub retry_delay: Duration,
    /// Deliveries a member holds unacknowledged at once, at most.
    pub prefetch: u16,
}

impl Default for ConsumeOptions {
    fn default() -> Self {
        Self {
            max_deliveries: 5,
            ack_wait: Duration::from_secs(30),
            retry_delay: Duration::from_secs(1),
            prefetch: 256,
        }
    }
}

/// What a group member's deliveries share.
struct Shared {
    group: String,
    filter: Filter,
    options: ConsumeOptions,
    dead: Arc<dyn DeadLetters>,
    /// Event ids this member acknowledged lately: a redelivery of one is skipped.
    handled: Mutex<Recent>,
}

impl Shared {
    fn handled(&self) -> std::sync::MutexGuard<'_, Recent> {
        self.handled.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Moves a message to the dead letters and acknowledges it; if the dead-letter channel
    /// cannot take it, it is given back instead (nothing is lost).
    async fn bury(
        &self,
        route: &str,
        body: &[u8],
        deliveries: u32,
        settle: Box<dyn Settle>,
        reason: &str,
    ) -> Result<(), BusError> {
        let letter = DeadLetter::new(&self.group, route, body, deliveries, reason);
        match self.dead.send(letter).await {
            Ok(id) => {
                crate::figures::dead_letter(&self.group);
                tracing::warn!(group = %self.group, route, %reason, dead_letter = %id, "message moved to the dead letters");
                settle.ack().await
            }
            Err(error) => {
                tracing::warn!(group = %self.group, route, %error, "the dead-letter channel refused a message; giving it back");
                let _ = settle.nack(self.options.retry_delay).await;
                Err(error)
            }
        }
    }
}

/// One member of a consumer group (see [`EventBus::consume`](super::EventBus::consume)).
pub struct Consumer {
    raw: Box<dyn RawConsumer>,
    shared: Arc<Shared>,
}

impl Consumer {
    /// A member reading `raw` (what an adapter returns from `consume`).
    pub fn new(
        group: &str,
        filter: Filter,
        options: ConsumeOptions,
        dead: Arc<dyn DeadLetters>,
        raw: Box<dyn RawConsumer>,
    ) -> Self {
        Self {
            raw,
            shared: Arc::new(Shared {
                group: group.to_string(),
                filter,
                options,
                dead,
                handled: Mutex::new(Recent::default()),
            }),
        }
    }

    /// The group's name.
    pub fn group(&self) -> &str {
        &self.shared.group
    }

    /// Hands each delivery to `handler` in a task of its own, at most `limit` at once, until
    /// the bus is gone or `stop` resolves; then stops taking deliveries (what it held unsettled
    /// goes back to the group) and returns, while handlers under way finish by themselves.
    pub async fn handle<H, F>(mut self, limit: usize, stop: impl Future<Output = ()>, handler: H)
    where
        H: Fn(Delivery) -> F + Send + Sync + 'static,
        F: Future<Output = ()> + Send + 'static,
    {
        let permits = Arc::new(tokio::sync::Semaphore::new(limit.max(1)));
        let handler = Arc::new(handler);
        tokio::pin!(stop);
        loop {
            let permit = tokio::select! {
                _ = &mut stop => return,
                permit = permits.clone().acquire_owned() => match permit {
                    Ok(permit) => permit,
                    Err(_) => return,
                },
            };
            let delivery = tokio::select! {
                _ = &mut stop => return,
                delivery = self.next() => match delivery {
                    Some(delivery) => delivery,
                    None => return,
                },
            };
            let handler = handler.clone();
            tokio::spawn(async move {
                handler(delivery).await;
                drop(permit);
            });
        }
    }

    /// The next message to handle, or `None` once the bus is gone. Settle it with
    /// [`Delivery::ack`], [`Delivery::retry`] or [`Delivery::reject`]; one dropped unsettled is
    /// given back for redelivery.
    pub async fn next(&mut self) -> Option<Delivery> {
        loop {
            let RawDelivery {
                route,
                body,
                deliveries,
                settle,
            } = self.raw.next().await?;
            let shared = &self.shared;
            let route_key = route.as_ref().map(Route::key).unwrap_or_default();
            let event = match serde_json::from_slice::<Envelope>(&body) {
                Ok(event) => event,
                Err(e) => {
                    let reason = format!("unparseable: not an event envelope: {e}");
                    let _ = shared
                        .bury(&route_key, &body, deliveries, settle, &reason)
                        .await;
                    continue;
                }
            };
            if !shared.filter.matches(&event) {
                // Its route matched, its own fields do not (two names sharing a token).
                let _ = settle.ack().await;
                continue;
            }
            let max = shared.options.max_deliveries;
            if deliveries > max {
                let reason = format!(
                    "delivered {deliveries} times without being handled (the limit is {max})"
                );
                let _ = shared
                    .bury(&route_key, &body, deliveries, settle, &reason)
                    .await;
                continue;
            }
            if shared.handled().contains(&event.event_id) {
                tracing::debug!(group = %shared.group, event_id = %event.event_id, "already handled here; acknowledged again");
                let _ = settle.ack().await;
                continue;
            }
            return Some(Delivery {
                event,
                deliveries,
                route: route_key,
                body,
                settle: Some(settle),
                shared: shared.clone(),
            });
        }
    }
}

/// A message delivered to one member of a group, to be settled once handled.
pub struct Delivery {
    event: Envelope,
    deliveries: u32,
    route: String,
    body: Vec<u8>,
    settle: Option<Box<dyn Settle>>,
    shared: Arc<Shared>,
}

impl std::fmt::Debug for Delivery {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Delivery")
            .field("event", &self.event)
            .field("deliveries", &self.deliveries)
            .field("group", &self.shared.group)
            .finish()
    }
}

impl Delivery {
    /// The event.
    pub fn event(&self) -> &Envelope {
        &self.event
    }

    /// How many times it has been delivered, this time included.
    pub fn deliveries(&self) -> u32 {
        self.deliveries
    }

    /// Handled: acknowledges it. Call only once its effect is durable.
    pub async fn ack(mut self) -> Result<(), BusError> {
        let Some(settle) = self.settle.take() else {
            return Ok(());
        };
        settle.ack().await?;
        self.shared.handled().insert(self.event.event_id);
        Ok(())
    }

    /// Not handled this time, for `reason` (a store or service briefly down): delivered again
    /// after the group's retry delay, or moved to the dead letters if this was its last allowed
    /// delivery.
    pub async fn retry(mut self, reason: &str) -> Result<(), BusError> {
        let Some(settle) = self.settle.take() else {
            return Ok(());
        };
        let shared = self.shared.clone();
        if self.deliveries >= shared.options.max_deliveries {
            let reason = format!("failed on each of {} deliveries: {reason}", self.deliveries);
            return shared
                .bury(&self.route, &self.body, self.deliveries, settle, &reason)
                .await;
        }
        let delay = shared.options.retry_delay * self.deliveries.clamp(1, 30);
        settle.nack(delay).await
    }

    /// Cannot ever be handled, for `reason` (it does not fit): moved to the dead letters now.
    pub async fn reject(mut self, reason: &str) -> Result<(), BusError> {
        let Some(settle) = self.settle.take() else {
            return Ok(());
        };
        let shared = self.shared.clone();
        shared
            .bury(&self.route, &self.body, self.deliveries, settle, reason)
            .await
    }
}

impl Drop for Delivery {
    fn drop(&mut self) {
        if let Some(settle) = self.settle.take() {
            if let Ok(runtime) = tokio::runtime::Handle::try_current() {
                runtime.spawn(async move {
                    let _ = settle.nack(Duration::ZERO).await;
                });
            }
        }
    }
}
