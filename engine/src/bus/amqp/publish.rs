//! Publishing on the confirm-mode publisher channel: a batch is sent whole, then its confirms
//! are awaited in order; a mandatory message the broker returns is reported unconfirmed.
//! Concurrent publishers share batches (one task sends them, one at a time), so the confirm
//! round trip is paid once per batch instead of once per caller.

use std::collections::BTreeSet;
use std::sync::Weak;
use std::time::Duration;

use tokio::sync::{mpsc, oneshot};

use lapin::options::BasicPublishOptions;
use lapin::{BasicProperties, Channel};

use super::{fail, Inner};
use crate::bus::{BusError, Envelope, Route};

/// How long a publish waits for the broker's confirm before reporting it unconfirmed.
const CONFIRM_TIMEOUT: Duration = Duration::from_secs(30);

/// Messages one batch carries, at most.
const MAX_BATCH: usize = 512;

/// A message queued for the publisher task, and who waits for its confirm.
pub(super) struct Job {
    out: Outgoing,
    done: oneshot::Sender<Result<(), BusError>>,
}

/// The publisher task: sends what is queued in batches until the bus is dropped.
pub(super) async fn run(inner: Weak<Inner>, mut queued: mpsc::UnboundedReceiver<Job>) {
    while let Some(first) = queued.recv().await {
        let mut jobs = vec![first];
        while jobs.len() < MAX_BATCH {
            match queued.try_recv() {
                Ok(job) => jobs.push(job),
                Err(_) => break,
            }
        }
        let Some(inner) = inner.upgrade() else {
            return;
        };
        let (batch, waiting): (Vec<Outgoing>, Vec<_>) =
            jobs.into_iter().map(|j| (j.out, j.done)).unzip();
        let results = inner.send_now(batch).await;
        drop(inner);
        for (done, result) in waiting.into_iter().zip(results) {
            let _ = done.send(result);
        }
    }
}

/// A message to publish.
pub(super) struct Outgoing {
    pub(super) exchange: String,
    pub(super) key: String,
    pub(super) body: Vec<u8>,
    pub(super) properties: BasicProperties,
    pub(super) mandatory: bool,
}

/// Persistent JSON.
pub(super) fn persistent() -> BasicProperties {
    BasicProperties::default()
        .with_delivery_mode(2)
        .with_content_type("application/json".into())
}

impl Inner {
    /// Stops using `channel` for publishing (its confirms can no longer be trusted).
    async fn drop_publisher(&self, channel: &Channel) {
        let mut state = self.link.lock().await;
        if state
            .publisher
            .as_ref()
            .is_some_and(|p| p.id() == channel.id())
        {
            state.publisher = None;
        }
        let channel = channel.clone();
        tokio::spawn(async move {
            let _ = channel.close(200, "OK".into()).await;
        });
    }

    /// Publishes `batch` (in order, perhaps among other callers' messages) and waits for each
    /// confirm: one result per message.
    pub(super) async fn send(&self, batch: Vec<Outgoing>) -> Vec<Result<(), BusError>> {
        let mut waiting = Vec::with_capacity(batch.len());
        for out in batch {
            let (done, confirmed) = oneshot::channel();
            // The task lives as long as the bus; if it is gone, the receiver says so below.
            let _ = self.jobs.send(Job { out, done });
            waiting.push(confirmed);
        }
        let mut results = Vec::with_capacity(waiting.len());
        for confirmed in waiting {
            results.push(
                confirmed
                    .await
                    .unwrap_or_else(|_| Err(BusError::Unavailable("the publisher stopped".into()))),
            );
        }
        results
    }

    /// Publishes `batch` now, then waits for each confirm in order (the publisher task's work).
    async fn send_now(&self, batch: Vec<Outgoing>) -> Vec<Result<(), BusError>> {
        let link = match self.link().await {
            Ok(link) => link,
            Err(error) => return batch.iter().map(|_| Err(error.clone())).collect(),
        };
        let mut pending = Vec::with_capacity(batch.len());
        let mut broken: Option<BusError> = None;
        for out in &batch {
            if let Some(error) = &broken {
                pending.push(Err(error.clone()));
                continue;
            }
            let options = BasicPublishOptions {
                mandatory: out.mandatory,
                immediate: false,
            };
            let (exchange, key) = (out.exchange.as_str().into(), out.key.as_str().into());
            let publishing = link.publisher.basic_publish(
                exchange,
                key,
                options,
                &out.body,
                out.properties.clone(),
            );
            match publishing.await {
                Ok(confirm) => pending.push(Ok(confirm)),
                Err(e) => {
                    let error = fail("publish", e);
                    broken = Some(error.clone());
                    pending.push(Err(error));
                }
            }
        }
        let mut returned = BTreeSet::new();
        let mut untrusted = broken.is_some();
        let mut results = Vec::with_capacity(batch.len());
        // One deadline for the batch: confirms lost with a connection cost one timeout, not
        // one each in turn.
        let deadline = tokio::time::Instant::now() + CONFIRM_TIMEOUT;
        for confirm in pending {
            let confirm = match confirm {
                Ok(confirm) => confirm,
                Err(error) => {
                    results.push(Err(error));
                    continue;
                }
            };
            results.push(match tokio::time::timeout_at(deadline, confirm).await {
                Ok(Ok(confirmation)) => {
                    let nacked = confirmation.is_nack();
                    if let Some(message) = confirmation.take_message() {
                        let (exchange, key) =
                            (&message.delivery.exchange, &message.delivery.routing_key);
                        returned.insert((exchange.to_string(), key.to_string()));
                    }
                    if nacked {
                        Err(BusError::NotConfirmed("the broker nacked it".into()))
                    } else {
                        Ok(())
                    }
                }
                Ok(Err(e)) => {
                    untrusted = true;
                    Err(fail("confirm a publish", e))
                }
                Err(_) => {
                    untrusted = true;
                    Err(BusError::NotConfirmed(format!(
                        "no confirm within {CONFIRM_TIMEOUT:?}"
                    )))
                }
            });
        }
        // The broker returns an unroutable mandatory message before confirming it; lapin hands
        // it to whichever confirm of the batch comes next, so match returns by route.
        for (out, result) in batch.iter().zip(results.iter_mut()) {
            if out.mandatory
                && result.is_ok()
                && returned.contains(&(out.exchange.clone(), out.key.clone()))
            {
                *result = Err(BusError::NotConfirmed(format!(
                    "no queue is bound to route {} yet",
                    out.key
                )));
            }
        }
        if untrusted {
            self.drop_publisher(&link.publisher).await;
        }
        results
    }

    pub(super) async fn send_one(&self, out: Outgoing) -> Result<(), BusError> {
        let missing = || Err(BusError::NotConfirmed("no confirm".into()));
        self.send(vec![out]).await.pop().unwrap_or_else(missing)
    }

    pub(super) fn outgoing(&self, event: &Envelope) -> Result<Outgoing, BusError> {
        let body = serde_json::to_vec(event).map_err(|e| BusError::Malformed(e.to_string()))?;
        Ok(Outgoing {
            exchange: self.prefix.clone(),
            key: Route::of(event).key(),
            body,
            properties: persistent().with_message_id(event.event_id.to_string().into()),
            // A lifecycle event nobody listens to may go; anything else must reach a queue.
            mandatory: event.kind.parse::<crate::event::EventKind>().is_err(),
        })
    }
}
