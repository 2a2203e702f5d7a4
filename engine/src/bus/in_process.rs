//! The default bus: in-process. A subscriber has its own unbounded queue, so publishing never
//! blocks and a slow or dead subscriber affects only itself; a consumer group has one queue
//! its members share, with redelivery of what a member gave back or dropped.

use std::collections::{HashMap, VecDeque};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use async_trait::async_trait;
use tokio::sync::{mpsc, Notify};

use super::backend::{RawConsumer, RawDelivery, Settle};
use super::{
    BusError, ConsumeOptions, Consumer, DeadLetter, DeadLetters, Envelope, EventBus, Filter, Route,
    Subscription,
};

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    // Nothing panics while holding these locks; a poisoned one is still consistent.
    m.lock().unwrap_or_else(|e| e.into_inner())
}

/// An in-process [`EventBus`] on tokio channels.
#[derive(Default)]
pub struct InProcessBus {
    core: Arc<Core>,
}

impl std::fmt::Debug for InProcessBus {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("InProcessBus").finish_non_exhaustive()
    }
}

/// Consumer groups by name and filter patterns.
type Groups = HashMap<(String, Vec<String>), Arc<Group>>;

#[derive(Default)]
struct Core {
    subscribers: Mutex<Vec<(Filter, mpsc::UnboundedSender<Envelope>)>>,
    groups: Mutex<Groups>,
    dead: Mutex<Vec<DeadLetter>>,
}

/// A message waiting in a group's queue.
struct Message {
    route: Route,
    body: Arc<[u8]>,
    /// Deliveries so far.
    deliveries: u32,
}

struct Group {
    filter: Filter,
    queue: Mutex<VecDeque<Message>>,
    ready: Notify,
}

impl Group {
    fn push(&self, message: Message) {
        lock(&self.queue).push_back(message);
        self.ready.notify_one();
    }
}

impl Core {
    fn broadcast(&self, event: &Envelope) {
        // A send fails only when the subscriber dropped its end: forget it.
        lock(&self.subscribers)
            .retain(|(filter, tx)| !filter.matches(event) || tx.send(event.clone()).is_ok());
    }

    fn enqueue(&self, route: &Route, body: Arc<[u8]>, event: Option<&Envelope>) {
        for group in lock(&self.groups).values() {
            let wanted = match event {
                Some(event) => group.filter.matches(event),
                None => group.filter.matches_route(route),
            };
            if wanted {
                group.push(Message {
                    route: route.clone(),
                    body: body.clone(),
                    deliveries: 0,
                });
            }
        }
    }

    fn publish_raw(&self, route: &Route, body: &[u8]) {
        let event = serde_json::from_slice::<Envelope>(body).ok();
        if let Some(event) = &event {
            self.broadcast(event);
        }
        self.enqueue(route, Arc::from(body), event.as_ref());
    }
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
        self.core.broadcast(&event);
        if !lock(&self.core.groups).is_empty() {
            let body =
                serde_json::to_vec(&event).map_err(|e| BusError::Malformed(e.to_string()))?;
            self.core
                .enqueue(&Route::of(&event), Arc::from(body), Some(&event));
        }
        Ok(())
    }

    async fn publish_raw(&self, route: &Route, body: &[u8]) -> Result<(), BusError> {
        self.core.publish_raw(route, body);
        Ok(())
    }

    async fn subscribe(&self, filter: Filter) -> Result<Subscription, BusError> {
        let (tx, rx) = mpsc::unbounded_channel();
        lock(&self.core.subscribers).push((filter, tx));
        Ok(Subscription::new(rx))
    }

    async fn consume(
        &self,
        group: &str,
        filter: Filter,
        options: ConsumeOptions,
    ) -> Result<Consumer, BusError> {
        super::connect::check_name("consumer group", group)?;
        let key = (group.to_string(), filter.patterns());
        let shared = lock(&self.core.groups)
            .entry(key)
            .or_insert_with(|| {
                Arc::new(Group {
                    filter: filter.clone(),
                    queue: Mutex::new(VecDeque::new()),
                    ready: Notify::new(),
                })
            })
            .clone();
        let raw = Box::new(Member { group: shared });
        Ok(Consumer::new(
            group,
            filter,
            options,
            self.dead_letters(),
            raw,
        ))
    }

    fn dead_letters(&self) -> Arc<dyn DeadLetters> {
        Arc::new(MemoryDeadLetters {
            core: self.core.clone(),
        })
    }
}

/// A member of an in-process group.
struct Member {
    group: Arc<Group>,
}

#[async_trait]
impl RawConsumer for Member {
    async fn next(&mut self) -> Option<RawDelivery> {
        loop {
            let ready = self.group.ready.notified();
            tokio::pin!(ready);
            ready.as_mut().enable();
            let taken = lock(&self.group.queue).pop_front();
            if let Some(mut message) = taken {
                message.deliveries += 1;
                // Another member may be waiting for the rest.
                if !lock(&self.group.queue).is_empty() {
                    self.group.ready.notify_one();
                }
                return Some(RawDelivery {
                    route: Some(message.route.clone()),
                    body: message.body.to_vec(),
                    deliveries: message.deliveries,
                    settle: Box::new(InProcessSettle {
                        group: self.group.clone(),
                        message,
                    }),
                });
            }
            ready.await;
        }
    }
}

struct InProcessSettle {
    group: Arc<Group>,
    message: Message,
}

#[async_trait]
impl Settle for InProcessSettle {
    async fn ack(self: Box<Self>) -> Result<(), BusError> {
        Ok(())
    }

    async fn nack(self: Box<Self>, delay: Duration) -> Result<(), BusError> {
        let InProcessSettle { group, message } = *self;
        if delay.is_zero() {
            group.push(message);
        } else {
            tokio::spawn(async move {
                tokio::time::sleep(delay).await;
                group.push(message);
            });
        }
        Ok(())
    }
}

/// The in-process dead letters: a list, ids `1`, `2`, ... in order.
struct MemoryDeadLetters {
    core: Arc<Core>,
}

#[async_trait]
impl DeadLetters for MemoryDeadLetters {
    async fn send(&self, mut letter: DeadLetter) -> Result<String, BusError> {
        let mut dead = lock(&self.core.dead);
        let next = dead
            .last()
            .and_then(|l| l.id.parse::<u64>().ok())
            .unwrap_or(0)
            + 1;
        letter.id = next.to_string();
        dead.push(letter);
        Ok(next.to_string())
    }

    async fn list(&self, limit: usize) -> Result<Vec<DeadLetter>, BusError> {
        Ok(lock(&self.core.dead).iter().take(limit).cloned().collect())
    }

    async fn get(&self, id: &str) -> Result<Option<DeadLetter>, BusError> {
        Ok(lock(&self.core.dead).iter().find(|l| l.id == id).cloned())
    }

    async fn replay(&self, id: &str) -> Result<DeadLetter, BusError> {
        let letter = {
            let mut dead = lock(&self.core.dead);
            let at = dead
                .iter()
                .position(|l| l.id == id)
                .ok_or_else(|| BusError::NoSuchDeadLetter(id.to_string()))?;
            dead.remove(at)
        };
        let route = Route::parse(&letter.route).unwrap_or_else(|| Route::new(None, "_"));
        self.core.publish_raw(&route, letter.body.as_bytes());
        Ok(letter)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn filters_by_type_and_definition_and_forgets_dropped_subscribers() {
        let bus = InProcessBus::new();
        let mut all = bus.subscribe(Filter::all()).await.unwrap();
        let mut done = bus
            .subscribe(Filter::types(["SagaCompleted"]).definition("A"))
            .await
            .unwrap();
        let dropped = bus.subscribe(Filter::all()).await.unwrap();
        drop(dropped);
        let mut e = Envelope::new("SagaCompleted", serde_json::Value::Null);
        e.definition = Some("B".into());
        bus.publish(e.clone()).await.unwrap();
        let mut e = Envelope::new("SagaCompleted", serde_json::Value::Null);
        e.definition = Some("A".into());
        bus.publish(e.clone()).await.unwrap();
        assert_eq!(all.next().await.unwrap().definition.as_deref(), Some("B"));
        assert_eq!(all.next().await.unwrap().definition.as_deref(), Some("A"));
        assert_eq!(done.next().await.unwrap().definition.as_deref(), Some("A"));
        assert!(done.try_next().is_none());
        assert_eq!(bus.core.subscribers.lock().unwrap().len(), 2);
        assert!(matches!(
            bus.publish_json("{nope").await,
            Err(BusError::Malformed(_))
        ));
    }
}
