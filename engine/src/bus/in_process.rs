//! The default bus: in-process, one unbounded queue per subscriber, so publishing never blocks
//! and a slow or dead subscriber affects only itself.

use std::sync::Mutex;

use async_trait::async_trait;
use tokio::sync::mpsc;

use super::{BusError, Envelope, EventBus, Filter, Subscription};

/// An in-process [`EventBus`] on tokio channels.
#[derive(Debug, Default)]
pub struct InProcessBus {
    subscribers: Mutex<Vec<(Filter, mpsc::UnboundedSender<Envelope>)>>,
}

impl InProcessBus {
    /// A bus with no subscribers.
    pub fn new() -> Self {
        Self::default()
    }
}

#[async_trait]
impl EventBus for InProcessBus {
    async fn publish(&self, event: Envelope) -> Result<(), BusError> {
        let mut subscribers = self.subscribers.lock().unwrap_or_else(|e| e.into_inner());
        // A send fails only when the subscriber dropped its end: forget it.
        subscribers
            .retain(|(filter, tx)| !filter.matches(&event) || tx.send(event.clone()).is_ok());
        Ok(())
    }

    fn subscribe(&self, filter: Filter) -> Subscription {
        let (tx, rx) = mpsc::unbounded_channel();
        self.subscribers
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .push((filter, tx));
        Subscription { rx }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn filters_by_type_and_definition_and_forgets_dropped_subscribers() {
        let bus = InProcessBus::new();
        let mut all = bus.subscribe(Filter::all());
        let mut done = bus.subscribe(Filter::types(["SagaCompleted"]).definition("A"));
        let dropped = bus.subscribe(Filter::all());
        drop(dropped);
        let mut e = Envelope::new("SagaCompleted", serde_json::Value::Null);
        e.definition = Some("B".into());
        bus.publish(e.clone()).await.unwrap();
        e.definition = Some("A".into());
        bus.publish(e.clone()).await.unwrap();
        assert_eq!(all.next().await.unwrap().definition.as_deref(), Some("B"));
        assert_eq!(all.next().await.unwrap().definition.as_deref(), Some("A"));
        assert_eq!(done.next().await.unwrap().definition.as_deref(), Some("A"));
        assert!(done.try_next().is_none());
        assert_eq!(bus.subscribers.lock().unwrap().len(), 2);
        assert!(matches!(
            bus.publish_json("{nope").await,
            Err(BusError::Malformed(_))
        ));
    }
}
