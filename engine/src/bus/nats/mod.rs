//! NATS JetStream as the event bus (feature `nats`, `nats://` URLs). Everything is named under
//! one prefix, so deployments can share a server:
//! - the stream `<prefix>` keeps the events, on subjects `<prefix>.<definition>.<type>`, for 7
//!   days; an event's id is its `Nats-Msg-Id`, so a republish within 2 minutes is dropped;
//! - the stream `<prefix>_dead` keeps the dead letters, on subjects `<prefix>_dead.<group>`;
//! - a consumer group is one durable pull consumer per filter pattern, `<group>_<pattern>`
//!   (see [`group`]); subscribers are plain core-NATS subscriptions on the same subjects.

mod dead;
mod group;
#[cfg(test)]
mod tests;

use std::sync::Arc;
use std::time::Duration;

use async_nats::jetstream::context::{
    CreateStreamErrorKind, GetStreamErrorKind, PublishAckFuture, PublishErrorKind,
};
use async_nats::jetstream::message::PublishMessage as Publish;
use async_nats::jetstream::{self, publish::PublishAck, stream, ErrorCode};
use async_nats::{Client, ConnectErrorKind, ConnectOptions};
use async_trait::async_trait;
use futures::StreamExt;
use tokio::sync::mpsc;

use super::connect::check_name;
use super::{
    BusError, ConsumeOptions, Consumer, DeadLetters, Envelope, EventBus, Filter, Route,
    Subscription,
};

/// How long a publish may take to be sent, and then to be confirmed, at most.
const PUBLISH_TIMEOUT: Duration = Duration::from_secs(10);

/// How long the event stream keeps a message: long enough for any group to catch up.
const MAX_AGE: Duration = Duration::from_secs(7 * 24 * 60 * 60);
/// Within this window JetStream drops a message whose `Nats-Msg-Id` it already stored.
const DUPLICATE_WINDOW: Duration = Duration::from_secs(2 * 60);
/// `publish_all` awaits the acks after at most this many publishes: the client holds up to
/// 5000 unacknowledged publishes and waits for a free slot beyond that.
const PUBLISH_CHUNK: usize = 1000;

/// An [`EventBus`] on NATS JetStream: events, consumer groups and dead letters in streams under
/// one prefix, so that several engine processes share them. Cheap to clone.
#[derive(Clone)]
pub struct NatsBus {
    client: Client,
    js: jetstream::Context,
    prefix: String,
    events: stream::Stream,
    dead: stream::Stream,
}

impl std::fmt::Debug for NatsBus {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("NatsBus")
            .field("prefix", &self.prefix)
            .finish_non_exhaustive()
    }
}

impl NatsBus {
    /// Connects to the NATS server at `url` and declares the streams `<prefix>` and
    /// `<prefix>_dead` unless they exist (several processes may do so at once). The first
    /// connection must succeed; after that the client reconnects by itself, without limit.
    pub async fn connect(url: &str, prefix: &str) -> Result<Self, BusError> {
        check_name("bus prefix", prefix)?;
        let shown = redact(url);
        // No retry_on_initial_connect: a first connection that fails is an error.
        let client = ConnectOptions::new()
            .name(format!("saga-engine ({prefix})"))
            .max_reconnects(None)
            .connect(url)
            .await
            .map_err(|e| match e.kind() {
                ConnectErrorKind::ServerParse => {
                    BusError::Config(format!("bus URL `{shown}`: {e}"))
                }
                _ => BusError::Unavailable(format!("cannot connect to NATS at {shown}: {e}")),
            })?;
        let js = jetstream::new(client.clone());
        let events = declare_stream(
            &js,
            stream::Config {
                name: prefix.to_string(),
                subjects: vec![format!("{prefix}.>")],
                storage: stream::StorageType::File,
                retention: stream::RetentionPolicy::Limits,
                max_age: MAX_AGE,
                duplicate_window: DUPLICATE_WINDOW,
                ..Default::default()
            },
        )
        .await?;
        let dead = declare_stream(
            &js,
            stream::Config {
                name: format!("{prefix}_dead"),
                subjects: vec![format!("{prefix}_dead.>")],
                storage: stream::StorageType::File,
                retention: stream::RetentionPolicy::Limits,
                ..Default::default()
            },
        )
        .await?;
        Ok(Self {
            client,
            js,
            prefix: prefix.to_string(),
            events,
            dead,
        })
    }

    /// Sends `event` without waiting for its ack.
    async fn send_event(&self, event: &Envelope) -> Result<PublishAckFuture, BusError> {
        let body = serde_json::to_vec(event).map_err(|e| BusError::Malformed(e.to_string()))?;
        let subject = format!("{}.{}", self.prefix, Route::of(event).key());
        let publish = Publish::build()
            .payload(body.into())
            .message_id(event.event_id.to_string());
        send(&self.js, subject, publish).await
    }
}

/// Gets stream `config.name`, creating it if it does not exist.
async fn declare_stream(
    js: &jetstream::Context,
    config: stream::Config,
) -> Result<stream::Stream, BusError> {
    let name = config.name.clone();
    match js.get_or_create_stream(config).await {
        Ok(stream) => Ok(stream),
        // Another process may have created it between our lookup and our create.
        Err(error) => js.get_stream(&name).await.map_err(|_| match error.kind() {
            CreateStreamErrorKind::JetStream(e) => {
                BusError::Config(format!("the server refused stream `{name}`: {e}"))
            }
            _ => BusError::Unavailable(format!("cannot declare stream `{name}`: {error}")),
        }),
    }
}

/// Publishes on JetStream without waiting for the ack.
async fn send(
    js: &jetstream::Context,
    subject: String,
    publish: Publish,
) -> Result<PublishAckFuture, BusError> {
    // Bounded: a client that cannot send (reconnecting, its in-flight limit reached) must not
    // hold up the caller for ever; the outbox keeps what was not confirmed.
    let sent = tokio::time::timeout(PUBLISH_TIMEOUT, js.send_publish(subject.clone(), publish))
        .await
        .map_err(|_| {
            BusError::Unavailable(format!(
                "cannot publish on {subject}: not sent within {PUBLISH_TIMEOUT:?}"
            ))
        })?;
    sent.map_err(|e| match e.kind() {
        PublishErrorKind::MaxPayloadExceeded => BusError::NotConfirmed(format!("{subject}: {e}")),
        _ => BusError::Unavailable(format!("cannot publish on {subject}: {e}")),
    })
}

/// Waits (bounded) for JetStream to confirm it stored a publish.
async fn confirm(ack: PublishAckFuture) -> Result<PublishAck, BusError> {
    match tokio::time::timeout(PUBLISH_TIMEOUT, ack).await {
        Ok(confirmed) => confirmed.map_err(|e| BusError::NotConfirmed(e.to_string())),
        Err(_) => Err(BusError::NotConfirmed(format!(
            "no publish ack within {PUBLISH_TIMEOUT:?}"
        ))),
    }
}

/// `url` without its user and password, for messages.
fn redact(url: &str) -> String {
    match url.split_once("://") {
        Some((scheme, rest)) if rest.contains('@') => {
            let host = rest.rsplit_once('@').map_or(rest, |(_, host)| host);
            format!("{scheme}://***@{host}")
        }
        _ => url.to_string(),
    }
}

#[async_trait]
impl EventBus for NatsBus {
    async fn publish(&self, event: Envelope) -> Result<(), BusError> {
        let ack = self.send_event(&event).await?;
        confirm(ack).await.map(drop)
    }

    async fn publish_all(&self, events: Vec<Envelope>) -> Vec<Result<(), BusError>> {
        let mut results = Vec::with_capacity(events.len());
        for chunk in events.chunks(PUBLISH_CHUNK) {
            let mut sent = Vec::with_capacity(chunk.len());
            let mut broken: Option<BusError> = None;
            for event in chunk {
                // Once one could not be sent, the rest are not tried (they would wait as long).
                let result = match &broken {
                    Some(error) => Err(error.clone()),
                    None => self.send_event(event).await,
                };
                if let Err(error) = &result {
                    broken.get_or_insert_with(|| error.clone());
                }
                sent.push(result);
            }
            // Awaited together: acks lost with a dropped connection cost one timeout for the
            // chunk, not one each in turn (a chunk of 500 once held the dispatcher for minutes).
            let confirms = sent.into_iter().map(|ack| async move {
                match ack {
                    Ok(ack) => confirm(ack).await.map(drop),
                    Err(error) => Err(error),
                }
            });
            results.extend(futures::future::join_all(confirms).await);
        }
        results
    }

    async fn publish_raw(&self, route: &Route, body: &[u8]) -> Result<(), BusError> {
        let subject = format!("{}.{}", self.prefix, route.key());
        let ack = send(
            &self.js,
            subject,
            Publish::build().payload(body.to_vec().into()),
        )
        .await?;
        confirm(ack).await.map(drop)
    }

    async fn subscribe(&self, filter: Filter) -> Result<Subscription, BusError> {
        let mut subscribers = Vec::new();
        for pattern in filter.patterns() {
            let subject = format!("{}.{pattern}", self.prefix);
            let subscriber = self.client.subscribe(subject.clone()).await.map_err(|e| {
                BusError::Unavailable(format!("cannot subscribe to {subject}: {e}"))
            })?;
            subscribers.push(subscriber);
        }
        // The server has the interest once the flush returns: what is published next reaches us.
        self.client
            .flush()
            .await
            .map_err(|e| BusError::Unavailable(format!("cannot subscribe: {e}")))?;
        let mut messages = futures::stream::select_all(subscribers);
        let (tx, rx) = mpsc::unbounded_channel();
        let feeder = tokio::spawn(async move {
            while let Some(message) = messages.next().await {
                let Ok(event) = serde_json::from_slice::<Envelope>(&message.payload) else {
                    continue;
                };
                if filter.matches(&event) && tx.send(event).is_err() {
                    return;
                }
            }
        });
        Ok(Subscription::fed_by(rx, feeder.abort_handle()))
    }

    async fn consume(
        &self,
        group: &str,
        filter: Filter,
        options: ConsumeOptions,
    ) -> Result<Consumer, BusError> {
        check_name("consumer group", group)?;
        let member = group::join(&self.events, &self.prefix, group, &filter, &options).await?;
        Ok(Consumer::new(
            group,
            filter,
            options,
            self.dead_letters(),
            Box::new(member),
        ))
    }

    fn dead_letters(&self) -> Arc<dyn DeadLetters> {
        Arc::new(dead::NatsDeadLetters {
            js: self.js.clone(),
            prefix: self.prefix.clone(),
            stream: self.dead.clone(),
        })
    }

    async fn remove_all(&self) -> Result<(), BusError> {
        for name in [self.prefix.clone(), format!("{}_dead", self.prefix)] {
            match self.js.delete_stream(&name).await {
                Ok(_) => {}
                Err(e) if matches!(e.kind(), GetStreamErrorKind::JetStream(ref j) if j.error_code() == ErrorCode::STREAM_NOT_FOUND) =>
                    {}
                Err(e) => {
                    return Err(BusError::Unavailable(format!(
                        "cannot delete stream `{name}`: {e}"
                    )))
                }
            }
        }
        Ok(())
    }
}
