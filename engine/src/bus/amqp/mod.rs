//! RabbitMQ as the event bus (feature `rabbitmq`, `amqp://` URLs), on lapin with its tokio
//! runtime. Under a prefix `p` it declares a durable topic exchange `p` that every envelope is
//! published to (routing key: its [`Route`]), one durable quorum queue `p.<group>.<pattern>`
//! per consumer group and pattern of its filter, and the dead letters: a fanout exchange
//! `p.dead` with its queue `p.dead-letters`.
//!
//! The bus reconnects by itself (lapin's own recovery is not enabled): a connection or channel
//! found closed is replaced on next use (one attempt at a time, backing off from 100 ms to 2 s),
//! with the topology declared again; group members and subscriptions consume again.

mod dead;
mod group;
mod link;
mod publish;
mod registry;
mod subscribe;
#[cfg(test)]
mod tests;

use std::collections::BTreeSet;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex as StdMutex, MutexGuard};

use async_trait::async_trait;
use lapin::types::AMQPValue;
use lapin::{BasicProperties, Channel};
use tokio::sync::{mpsc, Mutex};

use self::link::{Backoff, LinkState};
use self::publish::{persistent, Outgoing};
use self::subscribe::feed;
use super::connect::check_name;
use super::{
    BusError, ConsumeOptions, Consumer, DeadLetters, Envelope, EventBus, Filter, Route,
    Subscription,
};

/// An [`EventBus`] on a RabbitMQ broker: what processes sharing the broker and the prefix use
/// to exchange envelopes durably.
pub struct AmqpBus {
    inner: Arc<Inner>,
}

impl std::fmt::Debug for AmqpBus {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AmqpBus")
            .field("prefix", &self.inner.prefix)
            .finish_non_exhaustive()
    }
}

/// What the bus, its group members, subscription feeders and dead letters share.
struct Inner {
    url: String,
    prefix: String,
    link: Mutex<LinkState>,
    /// Where messages to publish are queued: one publisher task sends them in batches, one
    /// batch at a time on the publisher channel (so a message the broker returns is matched
    /// with the batch that sent it), and what queues up meanwhile goes in the next batch.
    jobs: mpsc::UnboundedSender<publish::Job>,
    /// The group queues this bus declared and recorded in the group registry.
    groups: StdMutex<BTreeSet<String>>,
    /// Set by `remove_all`: the bus declares nothing more.
    removed: AtomicBool,
}

/// A subscription's channel and the consumer on it.
struct Feed {
    _channel: Channel,
    consumer: lapin::Consumer,
}

fn lock<T>(m: &StdMutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

/// A lapin error as a bus error: refused declarations are configuration problems, the rest
/// means the broker cannot be used right now.
fn fail(what: &str, error: lapin::Error) -> BusError {
    match error.kind() {
        lapin::ErrorKind::ProtocolError(e) if matches!(e.get_id(), 403 | 406) => {
            BusError::Config(format!("RabbitMQ refused to {what}: {error}"))
        }
        _ => BusError::Unavailable(format!("cannot {what}: {error}")),
    }
}

fn header<'a>(properties: &'a BasicProperties, name: &str) -> Option<&'a AMQPValue> {
    properties.headers().as_ref()?.inner().get(name)
}

/// An integer header of any width.
fn int(value: &AMQPValue) -> Option<i64> {
    match value {
        AMQPValue::ShortShortInt(n) => Some((*n).into()),
        AMQPValue::ShortShortUInt(n) => Some((*n).into()),
        AMQPValue::ShortInt(n) => Some((*n).into()),
        AMQPValue::ShortUInt(n) => Some((*n).into()),
        AMQPValue::LongInt(n) => Some((*n).into()),
        AMQPValue::LongUInt(n) => Some((*n).into()),
        AMQPValue::LongLongInt(n) => Some(*n),
        AMQPValue::Timestamp(n) => i64::try_from(*n).ok(),
        _ => None,
    }
}

/// A text header.
fn text(value: &AMQPValue) -> Option<String> {
    match value {
        AMQPValue::LongString(s) => Some(s.to_string()),
        AMQPValue::ShortString(s) => Some(s.to_string()),
        _ => None,
    }
}

fn string_arg(value: &str) -> AMQPValue {
    AMQPValue::LongString(value.into())
}

impl Inner {
    fn dead_exchange(&self) -> String {
        format!("{}.dead", self.prefix)
    }

    fn dead_queue(&self) -> String {
        format!("{}.dead-letters", self.prefix)
    }

    /// Where every group queue declared under the prefix is recorded, for `remove_all`.
    fn group_registry(&self) -> String {
        format!("{}.groups", self.prefix)
    }

    fn removed(&self) -> bool {
        self.removed.load(Ordering::SeqCst)
    }
}

impl AmqpBus {
    /// Connects to the broker at `url` and declares (idempotently) what the bus needs under
    /// `prefix`, so that several processes can start at once.
    pub async fn connect(url: &str, prefix: &str) -> Result<Self, BusError> {
        check_name("bus prefix", prefix)?;
        url.parse::<lapin::uri::AMQPUri>()
            .map_err(|e| BusError::Config(format!("bad RabbitMQ URL: {e}")))?;
        let (jobs, queued) = mpsc::unbounded_channel();
        let inner = Arc::new(Inner {
            url: url.to_string(),
            prefix: prefix.to_string(),
            link: Mutex::new(LinkState::default()),
            jobs,
            groups: StdMutex::new(BTreeSet::new()),
            removed: AtomicBool::new(false),
        });
        inner.link().await?;
        tokio::spawn(publish::run(Arc::downgrade(&inner), queued));
        Ok(Self { inner })
    }
}

#[async_trait]
impl EventBus for AmqpBus {
    async fn publish(&self, event: Envelope) -> Result<(), BusError> {
        let out = self.inner.outgoing(&event)?;
        self.inner.send_one(out).await
    }

    async fn publish_all(&self, events: Vec<Envelope>) -> Vec<Result<(), BusError>> {
        let mut results = Vec::with_capacity(events.len());
        let mut batch = Vec::with_capacity(events.len());
        for event in &events {
            match self.inner.outgoing(event) {
                Ok(out) => {
                    batch.push(out);
                    results.push(None);
                }
                Err(error) => results.push(Some(Err(error))),
            }
        }
        let mut sent = self.inner.send(batch).await.into_iter();
        let missing = || Err(BusError::NotConfirmed("no confirm".into()));
        results
            .into_iter()
            .map(|r| r.unwrap_or_else(|| sent.next().unwrap_or_else(missing)))
            .collect()
    }

    async fn publish_raw(&self, route: &Route, body: &[u8]) -> Result<(), BusError> {
        self.inner
            .send_one(Outgoing {
                exchange: self.inner.prefix.clone(),
                key: route.key(),
                body: body.to_vec(),
                properties: persistent(),
                mandatory: true,
            })
            .await
    }

    async fn subscribe(&self, filter: Filter) -> Result<Subscription, BusError> {
        let first = self.inner.open_subscription(&filter.patterns()).await?;
        let (tx, rx) = mpsc::unbounded_channel();
        let task = tokio::spawn(feed(self.inner.clone(), filter, first, tx));
        Ok(Subscription::fed_by(rx, task.abort_handle()))
    }

    async fn consume(
        &self,
        group: &str,
        filter: Filter,
        options: ConsumeOptions,
    ) -> Result<Consumer, BusError> {
        check_name("consumer group", group)?;
        let mut queues = Vec::new();
        for pattern in filter.patterns() {
            let queue = group::queue_name(&self.inner.prefix, group, &pattern);
            self.inner.register_group(&queue).await?;
            queues.push((queue, pattern));
        }
        let member = group::Member::join(self.inner.clone(), queues, options.prefetch).await?;
        Ok(Consumer::new(
            group,
            filter,
            options,
            self.dead_letters(),
            Box::new(member),
        ))
    }

    fn dead_letters(&self) -> Arc<dyn DeadLetters> {
        Arc::new(dead::AmqpDeadLetters::new(self.inner.clone()))
    }

    /// Deletes the group queues this bus or any other under its prefix declared, the dead
    /// letters, the group registry and both exchanges; the bus (and its consumers) stop there.
    async fn remove_all(&self) -> Result<(), BusError> {
        self.inner.remove_all().await
    }
}
