//! Consumer groups on JetStream. NATS 2.9 gives a consumer one filter subject, so a group is one
//! durable pull consumer per pattern of its filter, `<group>_<pattern>` (`.` written `-`, `*`
//! written `all`: `mediator_all-ParticipantReply`), each fed by a task into the member's one
//! queue. Members of the group pull from the same durables, so each message reaches one of them.
//!
//! `max_ack_pending` (the prefetch) is per durable, so it bounds the whole group, not each
//! member. On nats-server 2.9 the delivery count of a message given back while only a departed
//! member's pull request was waiting can be off (its next delivery may say 1): the server
//! rewinds its stream position after popping the redelivery (fixed in later servers).

use std::ops::ControlFlow;
use std::time::Duration;

use async_nats::jetstream::consumer::pull::{self, MessagesErrorKind};
use async_nats::jetstream::consumer::{AckPolicy, DeliverPolicy, PullConsumer};
use async_nats::jetstream::message::Acker;
use async_nats::jetstream::{self, stream, AckKind};
use async_trait::async_trait;
use futures::StreamExt;
use tokio::sync::mpsc;
use tokio::task::AbortHandle;

use super::super::backend::{RawConsumer, RawDelivery, Settle};
use super::super::{BusError, ConsumeOptions, Filter, Route};

/// The first pause before declaring a consumer again after its message stream failed.
const MIN_BACKOFF: Duration = Duration::from_millis(100);
/// The longest pause between attempts.
const MAX_BACKOFF: Duration = Duration::from_secs(2);
/// Messages one pull request asks for, at most.
const MAX_BATCH: usize = 200;
/// How long a pull request waits for messages before the client sends another: also how long
/// a pull lost with a restarted server can go unnoticed.
const EXPIRES: Duration = Duration::from_secs(10);
/// The server's heartbeat on an idle pull request (two missed ones mean the pull is stalled,
/// e.g. the server restarted and forgot it).
const HEARTBEAT: Duration = Duration::from_secs(3);

/// The durable consumer name of `group` for `pattern`.
pub(super) fn consumer_name(group: &str, pattern: &str) -> String {
    format!("{group}_{}", pattern.replace('.', "-").replace('*', "all"))
}

/// Joins `group`: declares its durables for `filter` and starts feeding the member's queue.
pub(super) async fn join(
    events: &stream::Stream,
    prefix: &str,
    group: &str,
    filter: &Filter,
    options: &ConsumeOptions,
) -> Result<NatsMember, BusError> {
    let prefetch = options.prefetch.max(1);
    let (tx, rx) = mpsc::channel(usize::from(prefetch));
    // Dropped with its feeders if a declaration below fails.
    let mut member = NatsMember {
        rx,
        feeders: Vec::new(),
    };
    for pattern in filter.patterns() {
        let config = pull::Config {
            durable_name: Some(consumer_name(group, &pattern)),
            filter_subject: format!("{prefix}.{pattern}"),
            ack_policy: AckPolicy::Explicit,
            ack_wait: options.ack_wait,
            // Unlimited: the common Consumer dead-letters past `max_deliveries`.
            max_deliver: -1,
            deliver_policy: DeliverPolicy::All,
            max_ack_pending: i64::from(prefetch),
            ..Default::default()
        };
        let consumer = declare(events, &config).await?;
        let feeder = Feeder {
            events: events.clone(),
            config,
            prefix: format!("{prefix}."),
            batch: usize::from(prefetch).min(MAX_BATCH),
            tx: tx.clone(),
        };
        member
            .feeders
            .push(tokio::spawn(feeder.run(consumer)).abort_handle());
    }
    Ok(member)
}

/// Gets the durable `config` describes, creating it if it does not exist.
async fn declare(events: &stream::Stream, config: &pull::Config) -> Result<PullConsumer, BusError> {
    let name = config.durable_name.clone().unwrap_or_default();
    let consumer = match events.get_or_create_consumer(&name, config.clone()).await {
        Ok(consumer) => consumer,
        // Another member may have created it between our lookup and our create.
        Err(error) => events
            .get_consumer(&name)
            .await
            .map_err(|_| match error.kind() {
                stream::ConsumerErrorKind::JetStream(e) => {
                    BusError::Config(format!("the server refused consumer `{name}`: {e}"))
                }
                _ => BusError::Unavailable(format!("cannot declare consumer `{name}`: {error}")),
            })?,
    };
    let existing = &consumer.cached_info().config;
    if existing.filter_subject != config.filter_subject {
        return Err(BusError::Config(format!(
            "consumer `{name}` exists for `{}`, not `{}`: two group names and patterns give the same name; rename the group",
            existing.filter_subject, config.filter_subject
        )));
    }
    if existing.ack_wait != config.ack_wait || existing.max_ack_pending != config.max_ack_pending {
        tracing::warn!(consumer = %name, "the consumer exists with another ack wait or prefetch; it keeps them");
    }
    Ok(consumer)
}

/// Feeds one durable's messages into a member's queue, for as long as the member lives.
struct Feeder {
    events: stream::Stream,
    config: pull::Config,
    /// `<prefix>.`, stripped from subjects to read routes.
    prefix: String,
    batch: usize,
    tx: mpsc::Sender<RawDelivery>,
}

impl Feeder {
    async fn run(self, consumer: PullConsumer) {
        let mut consumer = Some(consumer);
        let mut backoff = MIN_BACKOFF;
        loop {
            if let Some(consumer) = consumer.take() {
                let messages = consumer
                    .stream()
                    .max_messages_per_batch(self.batch)
                    .expires(EXPIRES)
                    .heartbeat(HEARTBEAT)
                    .messages()
                    .await;
                match messages {
                    Ok(messages) => {
                        if self.drain(messages, &mut backoff).await.is_break() {
                            return;
                        }
                    }
                    Err(error) => {
                        tracing::warn!(consumer = ?self.config.durable_name, %error, "cannot pull from JetStream; retrying")
                    }
                }
            }
            if self.tx.is_closed() {
                return;
            }
            tokio::time::sleep(backoff).await;
            backoff = (backoff * 2).min(MAX_BACKOFF);
            match declare(&self.events, &self.config).await {
                Ok(declared) => consumer = Some(declared),
                Err(error) => {
                    tracing::warn!(consumer = ?self.config.durable_name, %error, "cannot declare the consumer again; retrying")
                }
            }
        }
    }

    /// Feeds `messages` until they fail (continue with a new pull) or the member is gone (break).
    async fn drain(&self, mut messages: pull::Stream, backoff: &mut Duration) -> ControlFlow<()> {
        // One missed heartbeat may be ours (a slow member leaves the stream unpolled); a second
        // in a row means the pull is stalled.
        let mut missed = false;
        while let Some(item) = messages.next().await {
            match item {
                Ok(message) => {
                    (*backoff, missed) = (MIN_BACKOFF, false);
                    if self.tx.send(self.delivery(message)).await.is_err() {
                        return ControlFlow::Break(());
                    }
                }
                Err(error) if error.kind() == MessagesErrorKind::MissingHeartbeat && !missed => {
                    missed = true;
                    tracing::debug!(consumer = ?self.config.durable_name, "missed a JetStream heartbeat");
                }
                Err(error) => {
                    tracing::warn!(consumer = ?self.config.durable_name, %error, "the JetStream pull failed; pulling again");
                    return ControlFlow::Continue(());
                }
            }
        }
        tracing::warn!(consumer = ?self.config.durable_name, "the JetStream pull ended; pulling again");
        ControlFlow::Continue(())
    }

    fn delivery(&self, message: jetstream::Message) -> RawDelivery {
        let deliveries = message
            .info()
            .map_or(1, |info| u32::try_from(info.delivered).unwrap_or(u32::MAX))
            .max(1);
        let (message, acker) = message.split();
        let route = message
            .subject
            .as_str()
            .strip_prefix(&self.prefix)
            .and_then(Route::parse);
        RawDelivery {
            route,
            body: message.payload.to_vec(),
            deliveries,
            settle: Box::new(NatsSettle(acker)),
        }
    }
}

/// A member's raw deliveries, from all of its group's durables.
pub(super) struct NatsMember {
    rx: mpsc::Receiver<RawDelivery>,
    feeders: Vec<AbortHandle>,
}

impl Drop for NatsMember {
    fn drop(&mut self) {
        for feeder in &self.feeders {
            feeder.abort();
        }
    }
}

#[async_trait]
impl RawConsumer for NatsMember {
    async fn next(&mut self) -> Option<RawDelivery> {
        self.rx.recv().await
    }
}

/// Settles one JetStream message.
struct NatsSettle(Acker);

#[async_trait]
impl Settle for NatsSettle {
    async fn ack(self: Box<Self>) -> Result<(), BusError> {
        self.0.ack().await.map_err(settle_error)
    }

    async fn nack(self: Box<Self>, delay: Duration) -> Result<(), BusError> {
        let delay = (!delay.is_zero()).then_some(delay);
        self.0
            .ack_with(AckKind::Nak(delay))
            .await
            .map_err(settle_error)
    }
}

fn settle_error(error: async_nats::Error) -> BusError {
    BusError::Unavailable(format!("cannot settle a JetStream message: {error}"))
}
