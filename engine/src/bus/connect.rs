//! Choosing a bus by URL: none (or `memory:`) is the in-process bus, `nats://` NATS JetStream
//! (feature `nats`), `amqp://` or `amqps://` RabbitMQ (feature `rabbitmq`). Everything a bus
//! declares on a broker is named under a prefix, so deployments can share one broker.

use std::sync::Arc;

use super::{BusError, EventBus, InProcessBus};

/// The prefix used when none is given.
pub const DEFAULT_PREFIX: &str = "saga";

/// Which bus to connect to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BusConfig {
    /// The broker's URL; `None` for the in-process bus.
    pub url: Option<String>,
    /// What the bus's streams, subjects, exchanges and queues are named under.
    pub prefix: String,
}

impl BusConfig {
    /// The bus at `url` (`None`: in process) under the default prefix.
    pub fn new(url: Option<String>) -> Self {
        Self {
            url,
            prefix: DEFAULT_PREFIX.to_string(),
        }
    }

    /// Under this prefix instead.
    pub fn prefix(mut self, prefix: impl Into<String>) -> Self {
        self.prefix = prefix.into();
        self
    }
}

/// Connects to the bus `config` names, declaring what it needs on the broker.
pub async fn connect(config: &BusConfig) -> Result<Arc<dyn EventBus>, BusError> {
    check_name("bus prefix", &config.prefix)?;
    let Some(url) = config.url.as_deref() else {
        return Ok(Arc::new(InProcessBus::new()));
    };
    let scheme = url.split_once("://").map(|(s, _)| s).unwrap_or(url);
    match scheme {
        "memory:" | "memory" => Ok(Arc::new(InProcessBus::new())),
        "nats" | "tls" => connect_nats(url, &config.prefix).await,
        "amqp" | "amqps" => connect_amqp(url, &config.prefix).await,
        _ => Err(BusError::Config(format!(
            "unknown bus URL `{url}`: use nats://HOST:4222, amqp://USER:PASS@HOST:5672/%2f, or none for the in-process bus"
        ))),
    }
}

#[cfg(feature = "nats")]
async fn connect_nats(url: &str, prefix: &str) -> Result<Arc<dyn EventBus>, BusError> {
    Ok(Arc::new(super::nats::NatsBus::connect(url, prefix).await?))
}

#[cfg(not(feature = "nats"))]
async fn connect_nats(url: &str, _prefix: &str) -> Result<Arc<dyn EventBus>, BusError> {
    Err(BusError::Config(format!(
        "`{url}` needs NATS support: build saga-engine with the `nats` feature"
    )))
}

#[cfg(feature = "rabbitmq")]
async fn connect_amqp(url: &str, prefix: &str) -> Result<Arc<dyn EventBus>, BusError> {
    Ok(Arc::new(super::amqp::AmqpBus::connect(url, prefix).await?))
}

#[cfg(not(feature = "rabbitmq"))]
async fn connect_amqp(url: &str, _prefix: &str) -> Result<Arc<dyn EventBus>, BusError> {
    Err(BusError::Config(format!(
        "`{url}` needs RabbitMQ support: build saga-engine with the `rabbitmq` feature"
    )))
}

/// Checks a prefix or group name: 1 to 64 ASCII letters, digits, `_` or `-` (safe in every
/// broker's names).
pub(crate) fn check_name(what: &str, name: &str) -> Result<(), BusError> {
    let ok = !name.is_empty()
        && name.len() <= 64
        && name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-');
    if ok {
        Ok(())
    } else {
        Err(BusError::Config(format!(
            "{what} `{name}`: use 1 to 64 ASCII letters, digits, `_` or `-`"
        )))
    }
}
