//! The dead letters on JetStream: the stream `<prefix>_dead`, one message per letter on
//! `<prefix>_dead.<group>`, its body as published and the rest in `Saga-Dead-*` headers. A
//! letter's id is its stream sequence.

use async_nats::jetstream::message::PublishMessage as Publish;
use async_nats::jetstream::message::StreamMessage;
use async_nats::jetstream::stream::{self, DeleteMessageErrorKind, RawMessageErrorKind};
use async_nats::jetstream::{self, ErrorCode};
use async_nats::HeaderMap;
use async_trait::async_trait;

use super::super::route::token;
use super::super::{BusError, DeadLetter, DeadLetters, Route};
use super::{confirm, send};

const GROUP: &str = "Saga-Dead-Group";
const ROUTE: &str = "Saga-Dead-Route";
const REASON: &str = "Saga-Dead-Reason";
const DELIVERIES: &str = "Saga-Dead-Deliveries";
const AT: &str = "Saga-Dead-At";

/// The dead-letter channel of a [`NatsBus`](super::NatsBus).
pub(super) struct NatsDeadLetters {
    pub(super) js: jetstream::Context,
    pub(super) prefix: String,
    /// The stream `<prefix>_dead`.
    pub(super) stream: stream::Stream,
}

impl NatsDeadLetters {
    /// The letter at `sequence`, `None` if there is none (never stored, or deleted).
    async fn at(&self, sequence: u64) -> Result<Option<DeadLetter>, BusError> {
        match self.stream.get_raw_message(sequence).await {
            Ok(message) => Ok(Some(letter(message))),
            Err(e) if e.kind() == RawMessageErrorKind::NoMessageFound => Ok(None),
            Err(e) => Err(BusError::Unavailable(format!(
                "cannot read dead letter {sequence}: {e}"
            ))),
        }
    }
}

/// A header value on one line (NATS headers cannot hold line breaks).
fn one_line(value: &str) -> String {
    value.replace(['\r', '\n'], " ")
}

fn letter(message: StreamMessage) -> DeadLetter {
    let header = |name: &str| {
        message
            .headers
            .get(name)
            .map(|v| v.as_str().to_string())
            .unwrap_or_default()
    };
    DeadLetter {
        id: message.sequence.to_string(),
        group: header(GROUP),
        route: header(ROUTE),
        reason: header(REASON),
        deliveries: header(DELIVERIES).parse().unwrap_or(0),
        dead_at: header(AT).parse().unwrap_or(0),
        body: String::from_utf8_lossy(&message.payload).into_owned(),
    }
}

#[async_trait]
impl DeadLetters for NatsDeadLetters {
    async fn send(&self, letter: DeadLetter) -> Result<String, BusError> {
        let mut headers = HeaderMap::new();
        headers.insert(GROUP, one_line(&letter.group));
        headers.insert(ROUTE, one_line(&letter.route));
        headers.insert(REASON, one_line(&letter.reason));
        headers.insert(DELIVERIES, letter.deliveries.to_string());
        headers.insert(AT, letter.dead_at.to_string());
        let subject = format!("{}_dead.{}", self.prefix, token(&letter.group));
        let publish = Publish::build()
            .payload(letter.body.into_bytes().into())
            .headers(headers);
        let ack = confirm(send(&self.js, subject, publish).await?).await?;
        Ok(ack.sequence.to_string())
    }

    async fn list(&self, limit: usize) -> Result<Vec<DeadLetter>, BusError> {
        let info = self
            .stream
            .get_info()
            .await
            .map_err(|e| BusError::Unavailable(format!("cannot list the dead letters: {e}")))?;
        let state = info.state;
        let mut letters = Vec::new();
        if state.messages == 0 {
            return Ok(letters);
        }
        let mut sequence = state.first_sequence.max(1);
        while sequence <= state.last_sequence && letters.len() < limit {
            letters.extend(self.at(sequence).await?);
            sequence += 1;
        }
        Ok(letters)
    }

    async fn get(&self, id: &str) -> Result<Option<DeadLetter>, BusError> {
        match id.parse::<u64>() {
            Ok(sequence) if sequence > 0 => self.at(sequence).await,
            _ => Ok(None),
        }
    }

    async fn replay(&self, id: &str) -> Result<DeadLetter, BusError> {
        let letter = self
            .get(id)
            .await?
            .ok_or_else(|| BusError::NoSuchDeadLetter(id.to_string()))?;
        let route = Route::parse(&letter.route).unwrap_or_else(|| Route::new(None, Route::NONE));
        // No message id: the original's may still be in the duplicate window.
        let subject = format!("{}.{}", self.prefix, route.key());
        let publish = Publish::build().payload(letter.body.clone().into_bytes().into());
        confirm(send(&self.js, subject, publish).await?).await?;
        let sequence = id.parse::<u64>().unwrap_or_default();
        match self.stream.delete_message(sequence).await {
            Ok(_) => Ok(letter),
            // Replayed and removed at the same time by someone else.
            Err(e) if matches!(e.kind(), DeleteMessageErrorKind::JetStream(ref j) if j.error_code() == ErrorCode::NO_MESSAGE_FOUND) => {
                Ok(letter)
            }
            Err(e) => Err(BusError::Unavailable(format!(
                "dead letter {id} was replayed but not removed: {e}"
            ))),
        }
    }
}
