//! A consumer group member: one durable quorum queue per pattern of the group's filter,
//! `<prefix>.<group>.<pattern>` (as JetStream has one durable consumer per pattern), all
//! consumed with manual acks on a channel of its own, and consumed again after a broker
//! outage. A member whose filter has a pattern the others lack takes from that pattern's queue
//! alone, so no member ever receives a message its filter does not want.

use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use futures::stream::SelectAll;
use futures::StreamExt;
use lapin::options::{
    BasicAckOptions, BasicConsumeOptions, BasicNackOptions, BasicQosOptions, QueueDeclareOptions,
};
use lapin::types::{FieldTable, ShortString};

use super::{fail, header, int, string_arg, Backoff, Inner};
use crate::bus::backend::{RawConsumer, RawDelivery, Settle};
use crate::bus::{BusError, Route};

/// The queue of `group` for `pattern`.
pub(super) fn queue_name(prefix: &str, group: &str, pattern: &str) -> String {
    format!("{prefix}.{group}.{pattern}")
}

/// One member of a group.
pub(super) struct Member {
    inner: Arc<Inner>,
    /// Each queue with the pattern it is bound with.
    queues: Vec<(String, String)>,
    prefetch: u16,
    /// The consumers, `None` while the broker is away.
    current: Option<Feed>,
    backoff: Backoff,
}

/// A member's channel and its consumers, one per queue, read as one stream.
struct Feed {
    _channel: lapin::Channel,
    consumers: SelectAll<lapin::Consumer>,
}

impl Member {
    /// Declares and binds the group's queues and starts consuming them.
    pub(super) async fn join(
        inner: Arc<Inner>,
        queues: Vec<(String, String)>,
        prefetch: u16,
    ) -> Result<Self, BusError> {
        let feed = open(&inner, &queues, prefetch).await?;
        Ok(Self {
            inner,
            queues,
            prefetch,
            current: Some(feed),
            backoff: Backoff::default(),
        })
    }

    fn describe(&self) -> String {
        let names: Vec<&str> = self.queues.iter().map(|(q, _)| q.as_str()).collect();
        names.join(", ")
    }
}

async fn open(inner: &Inner, queues: &[(String, String)], prefetch: u16) -> Result<Feed, BusError> {
    let link = inner.link().await?;
    let channel = link
        .conn
        .create_channel()
        .await
        .map_err(|e| fail("open a channel", e))?;
    channel
        .basic_qos(prefetch, BasicQosOptions::default())
        .await
        .map_err(|e| fail("set the prefetch", e))?;
    let mut consumers = SelectAll::new();
    for (queue, pattern) in queues {
        let mut arguments = FieldTable::default();
        arguments.insert("x-queue-type".into(), string_arg("quorum"));
        arguments.insert(
            "x-dead-letter-exchange".into(),
            string_arg(&inner.dead_exchange()),
        );
        channel
            .queue_declare(
                queue.as_str().into(),
                QueueDeclareOptions::durable(),
                arguments,
            )
            .await
            .map_err(|e| fail(&format!("declare queue {queue}"), e))?;
        inner
            .bind(&channel, queue, std::slice::from_ref(pattern))
            .await?;
        let consumer = channel
            .basic_consume(
                queue.as_str().into(),
                ShortString::default(),
                BasicConsumeOptions::default(),
                FieldTable::default(),
            )
            .await
            .map_err(|e| fail(&format!("consume queue {queue}"), e))?;
        consumers.push(consumer);
    }
    Ok(Feed {
        _channel: channel,
        consumers,
    })
}

#[async_trait]
impl RawConsumer for Member {
    async fn next(&mut self) -> Option<RawDelivery> {
        loop {
            if self.inner.removed() {
                return None;
            }
            let Some(feed) = self.current.as_mut() else {
                tokio::time::sleep(self.backoff.next()).await;
                match open(&self.inner, &self.queues, self.prefetch).await {
                    Ok(feed) => {
                        tracing::info!(queues = %self.describe(), "consuming again");
                        self.backoff.reset();
                        self.current = Some(feed);
                    }
                    Err(error) => {
                        tracing::warn!(queues = %self.describe(), %error, "cannot consume yet")
                    }
                }
                continue;
            };
            match feed.consumers.next().await {
                Some(Ok(delivery)) => {
                    // Quorum queues count the times a message was given back.
                    let returned = header(&delivery.properties, "x-delivery-count").and_then(int);
                    let deliveries =
                        u32::try_from(returned.unwrap_or(0).max(0)).unwrap_or(u32::MAX);
                    return Some(RawDelivery {
                        route: Route::parse(delivery.routing_key.as_str()),
                        body: delivery.data,
                        deliveries: deliveries.saturating_add(1),
                        settle: Box::new(AmqpSettle {
                            acker: delivery.acker,
                        }),
                    });
                }
                Some(Err(error)) => {
                    tracing::warn!(queues = %self.describe(), %error, "the consumer failed; consuming again");
                    self.current = None;
                }
                None => {
                    tracing::info!(queues = %self.describe(), "the consumer ended; consuming again");
                    self.current = None;
                }
            }
        }
    }
}

/// Settles one delivery on the channel it came from.
struct AmqpSettle {
    acker: lapin::Acker,
}

#[async_trait]
impl Settle for AmqpSettle {
    async fn ack(self: Box<Self>) -> Result<(), BusError> {
        match self.acker.ack(BasicAckOptions::default()).await {
            Ok(true) => Ok(()),
            Ok(false) => Err(BusError::Unavailable(
                "the channel closed before the ack: the message will be delivered again".into(),
            )),
            Err(e) => Err(fail("acknowledge a message", e)),
        }
    }

    async fn nack(self: Box<Self>, delay: Duration) -> Result<(), BusError> {
        let acker = self.acker;
        // If the channel is gone the broker gives the message back anyway.
        let give_back = async move {
            let options = BasicNackOptions {
                multiple: false,
                requeue: true,
            };
            let _ = acker.nack(options).await;
        };
        if delay.is_zero() {
            give_back.await;
        } else {
            tokio::spawn(async move {
                tokio::time::sleep(delay).await;
                give_back.await;
            });
        }
        Ok(())
    }
}
