//! The connection and the publisher channel: opened on first use, replaced when found closed
//! (one attempt at a time, waiting 100 ms after a failure, doubling up to 2 s), with the
//! exchanges, the dead-letter queue and the group registry declared again each time.

use std::sync::Arc;
use std::time::Duration;

use lapin::options::{
    ConfirmSelectOptions, ExchangeDeclareOptions, QueueBindOptions, QueueDeclareOptions,
};
use lapin::types::{FieldTable, ShortString};
use lapin::{Channel, Connection, ConnectionProperties, ExchangeKind};
use tokio::time::Instant;

use super::{fail, Inner};
use crate::bus::BusError;

const MIN_BACKOFF: Duration = Duration::from_millis(100);
const MAX_BACKOFF: Duration = Duration::from_secs(2);
const CONNECT_TIMEOUT: Duration = Duration::from_secs(10);

/// The connection and its publisher channel (in confirm mode).
#[derive(Clone)]
pub(super) struct Link {
    pub(super) conn: Arc<Connection>,
    pub(super) publisher: Channel,
}

#[derive(Default)]
pub(super) struct LinkState {
    conn: Option<Arc<Connection>>,
    pub(super) publisher: Option<Channel>,
    backoff: Backoff,
    /// No new attempt before this, after a failed one.
    retry_at: Option<Instant>,
}

/// Delays between reconnection attempts: 100 ms, doubling up to 2 s.
pub(super) struct Backoff(Duration);

impl Default for Backoff {
    fn default() -> Self {
        Self(MIN_BACKOFF)
    }
}

impl Backoff {
    pub(super) fn reset(&mut self) {
        self.0 = MIN_BACKOFF;
    }

    /// The delay before the next attempt (the one after waits twice as long).
    pub(super) fn next(&mut self) -> Duration {
        let delay = self.0;
        self.0 = (delay * 2).min(MAX_BACKOFF);
        delay
    }
}

impl Inner {
    /// The current connection and publisher channel, reconnected and declared again if either
    /// was found closed (one attempt per call, after the backoff delay of a failed one).
    pub(super) async fn link(&self) -> Result<Link, BusError> {
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
    /// declares the exchanges, the dead-letter queue and the group registry.
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
        for queue in [&dead_queue, &self.group_registry()] {
            publisher
                .queue_declare(
                    queue.as_str().into(),
                    QueueDeclareOptions::durable(),
                    FieldTable::default(),
                )
                .await
                .map_err(|e| fail(&format!("declare queue {queue}"), e))?;
        }
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
}
