//! Subscriptions: a server-named, exclusive, auto-deleted queue per subscriber, fed into its
//! channel by a task that subscribes again after a broker outage.

use std::sync::Arc;

use futures::StreamExt;
use lapin::options::{BasicConsumeOptions, QueueBindOptions, QueueDeclareOptions};
use lapin::types::{FieldTable, ShortString};
use lapin::Channel;
use tokio::sync::mpsc;

use super::{fail, Backoff, Feed, Inner};
use crate::bus::{BusError, Envelope, Filter};

impl Inner {
    /// A server-named, exclusive, auto-deleted queue bound to `patterns`, consumed without acks.
    pub(super) async fn open_subscription(&self, patterns: &[String]) -> Result<Feed, BusError> {
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

    pub(super) async fn bind(
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
pub(super) async fn feed(
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
