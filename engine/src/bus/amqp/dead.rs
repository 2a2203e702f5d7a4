//! The dead letters on RabbitMQ: published to the fanout exchange `<prefix>.dead` with their
//! details as `x-saga-*` headers, kept in the classic queue `<prefix>.dead-letters`. Listing
//! takes them without acknowledging them and closes the channel, which gives them all back in
//! their order; a replay acknowledges the one it published again.

use std::sync::Arc;

use async_trait::async_trait;
use lapin::message::Delivery;
use lapin::options::{BasicAckOptions, BasicGetOptions};
use lapin::types::{AMQPValue, FieldTable};
use lapin::Channel;
use uuid::Uuid;

use super::{fail, header, int, persistent, string_arg, text, Inner, Outgoing};
use crate::bus::{BusError, DeadLetter, DeadLetters, Route};

/// A bus's dead-letter channel.
pub(super) struct AmqpDeadLetters {
    inner: Arc<Inner>,
}

impl AmqpDeadLetters {
    pub(super) fn new(inner: Arc<Inner>) -> Self {
        Self { inner }
    }

    /// Takes dead letters, oldest first, on a fresh channel without acknowledging them: at
    /// most `limit`, and none after the one with id `stop`. Close the channel to give them back.
    async fn scan(
        &self,
        limit: usize,
        stop: Option<&str>,
    ) -> Result<(Channel, Vec<(DeadLetter, Delivery)>), BusError> {
        let link = self.inner.link().await?;
        let channel = link
            .conn
            .create_channel()
            .await
            .map_err(|e| fail("open a channel", e))?;
        let queue = self.inner.dead_queue();
        let mut letters = Vec::new();
        while letters.len() < limit {
            let got = channel
                .basic_get(queue.as_str().into(), BasicGetOptions { no_ack: false })
                .await
                .map_err(|e| fail(&format!("read queue {queue}"), e))?;
            let Some(message) = got else { break };
            let letter = self.letter(&message.delivery);
            let found = stop.is_some_and(|id| id == letter.id);
            letters.push((letter, message.delivery));
            if found {
                break;
            }
        }
        Ok((channel, letters))
    }

    /// A message of the queue as a dead letter; one the broker dead-lettered by itself (no
    /// `x-saga-*` headers) is described from its `x-death` headers.
    fn letter(&self, message: &Delivery) -> DeadLetter {
        let properties = &message.properties;
        let text_of = |name: &str| header(properties, name).and_then(text);
        let int_of = |name: &str| header(properties, name).and_then(int);
        let group = text_of("x-saga-group").unwrap_or_else(|| {
            let queue = text_of("x-first-death-queue").unwrap_or_default();
            let own = queue.strip_prefix(&format!("{}.", self.inner.prefix));
            own.map(str::to_string).unwrap_or(queue)
        });
        let reason = text_of("x-saga-reason").unwrap_or_else(|| {
            let why = text_of("x-first-death-reason").unwrap_or_else(|| "unknown".into());
            format!("dead-lettered by RabbitMQ: {why}")
        });
        let death_time = || {
            let deaths = header(properties, "x-death")?;
            let AMQPValue::FieldArray(deaths) = deaths else {
                return None;
            };
            let AMQPValue::FieldTable(first) = deaths.as_slice().first()? else {
                return None;
            };
            first.inner().get("time").and_then(int).map(|s| s * 1000)
        };
        DeadLetter {
            id: properties
                .message_id()
                .as_ref()
                .map(|id| id.to_string())
                .unwrap_or_default(),
            group,
            route: text_of("x-saga-route").unwrap_or_else(|| message.routing_key.to_string()),
            reason,
            deliveries: int_of("x-saga-deliveries")
                .or_else(|| int_of("x-delivery-count").map(|n| n + 1))
                .and_then(|n| u32::try_from(n).ok())
                .unwrap_or(1),
            dead_at: int_of("x-saga-dead-at").or_else(death_time).unwrap_or(0),
            body: String::from_utf8_lossy(&message.data).into_owned(),
        }
    }
}

async fn give_back(channel: Channel) {
    let _ = channel.close(200, "OK".into()).await;
}

#[async_trait]
impl DeadLetters for AmqpDeadLetters {
    async fn send(&self, letter: DeadLetter) -> Result<String, BusError> {
        let id = Uuid::now_v7().to_string();
        let mut headers = FieldTable::default();
        headers.insert("x-saga-group".into(), string_arg(&letter.group));
        headers.insert("x-saga-route".into(), string_arg(&letter.route));
        headers.insert("x-saga-reason".into(), string_arg(&letter.reason));
        headers.insert(
            "x-saga-deliveries".into(),
            AMQPValue::LongLongInt(letter.deliveries.into()),
        );
        headers.insert(
            "x-saga-dead-at".into(),
            AMQPValue::LongLongInt(letter.dead_at),
        );
        let out = Outgoing {
            exchange: self.inner.dead_exchange(),
            key: letter.route,
            body: letter.body.into_bytes(),
            properties: persistent()
                .with_message_id(id.as_str().into())
                .with_headers(headers),
            mandatory: true,
        };
        self.inner.send_one(out).await?;
        Ok(id)
    }

    async fn list(&self, limit: usize) -> Result<Vec<DeadLetter>, BusError> {
        let (channel, letters) = self.scan(limit, None).await?;
        give_back(channel).await;
        Ok(letters.into_iter().map(|(letter, _)| letter).collect())
    }

    async fn get(&self, id: &str) -> Result<Option<DeadLetter>, BusError> {
        let (channel, letters) = self.scan(usize::MAX, Some(id)).await?;
        give_back(channel).await;
        Ok(letters
            .into_iter()
            .map(|(letter, _)| letter)
            .find(|l| l.id == id))
    }

    async fn replay(&self, id: &str) -> Result<DeadLetter, BusError> {
        let (channel, mut letters) = self.scan(usize::MAX, Some(id)).await?;
        let Some((letter, message)) = letters.pop().filter(|(l, _)| l.id == id) else {
            give_back(channel).await;
            return Err(BusError::NoSuchDeadLetter(id.to_string()));
        };
        let route = Route::parse(&letter.route).unwrap_or_else(|| Route::new(None, Route::NONE));
        let out = Outgoing {
            exchange: self.inner.prefix.clone(),
            key: route.key(),
            body: message.data.clone(),
            properties: persistent(),
            mandatory: true,
        };
        let published = self.inner.send_one(out).await;
        let acked = match &published {
            Ok(()) => message.acker.ack(BasicAckOptions::default()).await,
            Err(_) => Ok(false),
        };
        give_back(channel).await;
        published?;
        match acked {
            Ok(true) => Ok(letter),
            Ok(false) => Err(BusError::Unavailable(format!(
                "dead letter {id} was replayed, but the channel closed before it was removed"
            ))),
            Err(e) => Err(fail("remove a replayed dead letter", e)),
        }
    }
}
