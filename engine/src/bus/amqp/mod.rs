//! RabbitMQ as the event bus (feature `rabbitmq`, `amqp://` URLs), on lapin with its tokio
//! runtime. Under a prefix `p` it declares a durable topic exchange `p` that every envelope is
//! published to (routing key: its [`Route`]), one durable quorum queue `p.<group>` per consumer
//! group, and the dead letters: a fanout exchange `p.dead` with its queue `p.dead-letters`.
//!
//! lapin does not reconnect by itself: a connection or channel found closed is replaced on next
//! use (one attempt at a time, backing off from 100 ms to 2 s), and the topology declared again.

mod dead;
mod group;
#[cfg(test)]
mod tests;

use std::collections::BTreeSet;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex as StdMutex, MutexGuard};
use std::time::Duration;

use async_trait::async_trait;
use futures::StreamExt;
use lapin::options::{
    BasicConsumeOptions, BasicPublishOptions, ConfirmSelectOptions, ExchangeDeclareOptions,
    QueueBindOptions, QueueDeclareOptions,
};
use lapin::types::{AMQPValue, FieldTable, ShortString};
use lapin::{BasicProperties, Channel, Connection, ConnectionProperties, ExchangeKind};
use tokio::sync::{mpsc, Mutex};
use tokio::time::Instant;

use super::connect::check_name;
use super::{
    BusError, ConsumeOptions, Consumer, DeadLetters, Envelope, EventBus, Filter, Route,
    Subscription,
};

const MIN_BACKOFF: Duration = Duration::from_millis(100);
const MAX_BACKOFF: Duration = Duration::from_secs(2);
const CONNECT_TIMEOUT: Duration = Duration::from_secs(10);
/// How long a publish waits for the broker's confirm before reporting it unconfirmed.
const CONFIRM_TIMEOUT: Duration = Duration::from_secs(30);

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
    /// One publish batch at a time on the publisher channel, so that a message the broker
    /// returns is matched with the batch that sent it.
    publishing: Mutex<()>,
    /// The group queues this bus declared (for `remove_all`).
    groups: StdMutex<BTreeSet<String>>,
    /// Set by `remove_all`: the bus declares nothing more.
    removed: AtomicBool,
}

/// The connection and its publisher channel (in confirm mode).
#[derive(Clone)]
struct Link {
    conn: Arc<Connection>,
    publisher: Channel,
}

#[derive(Default)]
struct LinkState {
    conn: Option<Arc<Connection>>,
    publisher: Option<Channel>,
    backoff: Backoff,
    /// No new attempt before this, after a failed one.
    retry_at: Option<Instant>,
}

/// Delays between reconnection attempts: 100 ms, doubling up to 2 s.
struct Backoff(Duration);

impl Default for Backoff {
    fn default() -> Self {
        Self(MIN_BACKOFF)
    }
}

impl Backoff {
    fn reset(&mut self) {
        self.0 = MIN_BACKOFF;
    }

    /// The delay before the next attempt (the one after waits twice as long).
    fn next(&mut self) -> Duration {
        let delay = self.0;
        self.0 = (delay * 2).min(MAX_BACKOFF);
        delay
    }
}

/// A message to publish.
struct Outgoing {
    exchange: String,
    key: String,
    body: Vec<u8>,
    properties: BasicProperties,
    mandatory: bool,
}

/// A channel and the consumer on it.
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

/// A second copy of an error (for every message of a batch that could not be sent).
fn again(error: &BusError) -> BusError {
    match error {
        BusError::Malformed(m) => BusError::Malformed(m.clone()),
        BusError::NotConfirmed(m) => BusError::NotConfirmed(m.clone()),
        BusError::Config(m) => BusError::Config(m.clone()),
        BusError::NoSuchDeadLetter(m) => BusError::NoSuchDeadLetter(m.clone()),
        other => BusError::Unavailable(other.to_string()),
    }
}

/// Persistent JSON.
fn persistent() -> BasicProperties {
    BasicProperties::default()
        .with_delivery_mode(2)
        .with_content_type("application/json".into())
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

    fn removed(&self) -> bool {
        self.removed.load(Ordering::SeqCst)
    }

    /// The current connection and publisher channel, reconnected and declared again if either
    /// was found closed (one attempt per call, after the backoff delay of a failed one).
    async fn link(&self) -> Result<Link, BusError> {
        if self.removed() {
            return Err(BusError::Unavailable(
                "this bus removed what it declared on the broker".into(),
            ));
        }
        let mut state = self.link.lock().await;
        let conn = state.conn.clone().filter(|c| c.status().connected());
        if let (Some(conn), Some(publisher)) = (&conn, &state.publisher) {
            if publisher.status().connected() {
                return Ok(Link {
                    conn: conn.clone(),
                    publisher: publisher.clone(),
                });
            }
        }
        if let Some(at) = state.retry_at {
            tokio::time::sleep_until(at).await;
        }
        let again = state.conn.is_some();
        state.publisher = None;
        match self.open(conn).await {
            Ok(link) => {
                if again {
                    tracing::info!(prefix = %self.prefix, "reconnected to RabbitMQ");
                }
                state.backoff.reset();
                state.retry_at = None;
                state.conn = Some(link.conn.clone());
                state.publisher = Some(link.publisher.clone());
                Ok(link)
            }
            Err(error) => {
                state.retry_at = Some(Instant::now() + state.backoff.next());
                Err(error)
            }
        }
    }

    /// Opens a publisher channel (on `conn` if it is still open, else on a new connection) and
    /// declares the exchanges and the dead-letter queue.
    async fn open(&self, conn: Option<Arc<Connection>>) -> Result<Link, BusError> {
        let conn = match conn {
            Some(conn) => conn,
            None => {
                let name = format!("saga-engine ({})", self.prefix);
                let properties = ConnectionProperties::default().with_connection_name(name.into());
                let connecting = Connection::connect(&self.url, properties);
                match tokio::time::timeout(CONNECT_TIMEOUT, connecting).await {
                    Ok(Ok(conn)) => Arc::new(conn),
                    Ok(Err(e)) => return Err(fail("connect to RabbitMQ", e)),
                    Err(_) => {
                        return Err(BusError::Unavailable(format!(
                            "connecting to RabbitMQ took more than {CONNECT_TIMEOUT:?}"
                        )))
                    }
                }
            }
        };
        let publisher = conn
            .create_channel()
            .await
            .map_err(|e| fail("open a channel", e))?;
        let durable = ExchangeDeclareOptions {
            durable: true,
            ..ExchangeDeclareOptions::default()
        };
        let (dead_exchange, dead_queue) = (self.dead_exchange(), self.dead_queue());
        publisher
            .exchange_declare(
                self.prefix.as_str().into(),
                ExchangeKind::Topic,
                durable,
                FieldTable::default(),
            )
            .await
            .map_err(|e| fail(&format!("declare exchange {}", self.prefix), e))?;
        publisher
            .exchange_declare(
                dead_exchange.as_str().into(),
                ExchangeKind::Fanout,
                durable,
                FieldTable::default(),
            )
            .await
            .map_err(|e| fail(&format!("declare exchange {dead_exchange}"), e))?;
        publisher
            .queue_declare(
                dead_queue.as_str().into(),
                QueueDeclareOptions::durable(),
                FieldTable::default(),
            )
            .await
            .map_err(|e| fail(&format!("declare queue {dead_queue}"), e))?;
        publisher
            .queue_bind(
                dead_queue.as_str().into(),
                dead_exchange.as_str().into(),
                ShortString::default(),
                QueueBindOptions::default(),
                FieldTable::default(),
            )
            .await
            .map_err(|e| fail(&format!("bind queue {dead_queue}"), e))?;
        publisher
            .confirm_select(ConfirmSelectOptions::default())
            .await
            .map_err(|e| fail("enable publisher confirms", e))?;
        Ok(Link { conn, publisher })
    }

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

    /// Publishes `batch`, then waits for each confirm in order: one result per message.
    async fn send(&self, batch: Vec<Outgoing>) -> Vec<Result<(), BusError>> {
        let _turn = self.publishing.lock().await;
        let link = match self.link().await {
            Ok(link) => link,
            Err(error) => return batch.iter().map(|_| Err(again(&error))).collect(),
        };
        let mut pending = Vec::with_capacity(batch.len());
        let mut broken = None;
        for out in &batch {
            if let Some(error) = &broken {
                pending.push(Err(again(error)));
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
                    broken = Some(again(&error));
                    pending.push(Err(error));
                }
            }
        }
        let mut returned = BTreeSet::new();
        let mut untrusted = broken.is_some();
        let mut results = Vec::with_capacity(batch.len());
        for confirm in pending {
            let confirm = match confirm {
                Ok(confirm) => confirm,
                Err(error) => {
                    results.push(Err(error));
                    continue;
                }
            };
            results.push(match tokio::time::timeout(CONFIRM_TIMEOUT, confirm).await {
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

    async fn send_one(&self, out: Outgoing) -> Result<(), BusError> {
        self.send(vec![out]).await.pop().unwrap_or(Ok(()))
    }

    fn outgoing(&self, event: &Envelope) -> Result<Outgoing, BusError> {
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

    /// A server-named, exclusive, auto-deleted queue bound to `patterns`, consumed without acks.
    async fn open_subscription(&self, patterns: &[String]) -> Result<Feed, BusError> {
        let link = self.link().await?;
        let channel = link
            .conn
            .create_channel()
            .await
            .map_err(|e| fail("open a channel", e))?;
        let options = QueueDeclareOptions::exclusive().auto_delete();
        let queue = channel
            .queue_declare(ShortString::default(), options, FieldTable::default())
            .await
            .map_err(|e| fail("declare a subscriber queue", e))?;
        self.bind(&channel, queue.name().as_str(), patterns).await?;
        let options = BasicConsumeOptions {
            no_ack: true,
            ..BasicConsumeOptions::default()
        };
        let consumer = channel
            .basic_consume(
                queue.name().clone(),
                ShortString::default(),
                options,
                FieldTable::default(),
            )
            .await
            .map_err(|e| fail("consume a subscriber queue", e))?;
        Ok(Feed {
            _channel: channel,
            consumer,
        })
    }

    async fn bind(
        &self,
        channel: &Channel,
        queue: &str,
        patterns: &[String],
    ) -> Result<(), BusError> {
        for pattern in patterns {
            channel
                .queue_bind(
                    queue.into(),
                    self.prefix.as_str().into(),
                    pattern.as_str().into(),
                    QueueBindOptions::default(),
                    FieldTable::default(),
                )
                .await
                .map_err(|e| fail(&format!("bind queue {queue} to {pattern}"), e))?;
        }
        Ok(())
    }
}

/// Feeds a subscription until it is dropped, subscribing again after a broker outage.
async fn feed(
    inner: Arc<Inner>,
    filter: Filter,
    mut feed: Feed,
    tx: mpsc::UnboundedSender<Envelope>,
) {
    let patterns = filter.patterns();
    let mut backoff = Backoff::default();
    loop {
        while let Some(Ok(delivery)) = feed.consumer.next().await {
            let Ok(event) = serde_json::from_slice::<Envelope>(&delivery.data) else {
                continue;
            };
            if filter.matches(&event) && tx.send(event).is_err() {
                return;
            }
        }
        loop {
            if tx.is_closed() || inner.removed() {
                return;
            }
            tokio::time::sleep(backoff.next()).await;
            match inner.open_subscription(&patterns).await {
                Ok(fresh) => {
                    feed = fresh;
                    backoff.reset();
                    break;
                }
                Err(error) => tracing::debug!(%error, "cannot subscribe again yet"),
            }
        }
    }
}

impl AmqpBus {
    /// Connects to the broker at `url` and declares (idempotently) what the bus needs under
    /// `prefix`, so that several processes can start at once.
    pub async fn connect(url: &str, prefix: &str) -> Result<Self, BusError> {
        check_name("bus prefix", prefix)?;
        url.parse::<lapin::uri::AMQPUri>()
            .map_err(|e| BusError::Config(format!("bad RabbitMQ URL: {e}")))?;
        let inner = Arc::new(Inner {
            url: url.to_string(),
            prefix: prefix.to_string(),
            link: Mutex::new(LinkState::default()),
            publishing: Mutex::new(()),
            groups: StdMutex::new(BTreeSet::new()),
            removed: AtomicBool::new(false),
        });
        inner.link().await?;
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
        let queue = format!("{}.{group}", self.inner.prefix);
        lock(&self.inner.groups).insert(queue.clone());
        let member = group::Member::join(
            self.inner.clone(),
            queue,
            filter.patterns(),
            options.prefetch,
        )
        .await?;
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

    /// Deletes the group queues this bus declared, the dead letters and both exchanges; the
    /// bus (and its consumers) stop there.
    async fn remove_all(&self) -> Result<(), BusError> {
        let link = self.inner.link().await?;
        self.inner.removed.store(true, Ordering::SeqCst);
        let queues = std::mem::take(&mut *lock(&self.inner.groups));
        let queues = queues.into_iter().chain([self.inner.dead_queue()]);
        let exchanges = [self.inner.dead_exchange(), self.inner.prefix.clone()];
        for (name, queue) in queues
            .map(|q| (q, true))
            .chain(exchanges.map(|e| (e, false)))
        {
            let channel = link
                .conn
                .create_channel()
                .await
                .map_err(|e| fail("open a channel", e))?;
            let deleted = if queue {
                channel
                    .queue_delete(name.as_str().into(), Default::default())
                    .await
                    .map(|_| ())
            } else {
                channel
                    .exchange_delete(name.as_str().into(), Default::default())
                    .await
            };
            match deleted {
                Ok(()) => {
                    let _ = channel.close(200, "OK".into()).await;
                }
                Err(e) if matches!(e.kind(), lapin::ErrorKind::ProtocolError(p) if p.get_id() == 404) =>
                    {}
                Err(e) => return Err(fail(&format!("delete {name}"), e)),
            }
        }
        let _ = link.conn.close(200, "OK".into()).await;
        Ok(())
    }
}
