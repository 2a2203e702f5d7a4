//! The default bus: in-process. A subscriber has its own unbounded queue, so publishing never
//! blocks and a slow or dead subscriber affects only itself; a consumer group has one queue
//! per pattern of its filter (as on the brokers), which its members share, with redelivery of
//! what a member gave back or dropped.

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

/// Consumer groups' queues by group name and pattern.
type Groups = HashMap<(String, String), Arc<Group>>;

#[derive(Default)]
struct Core {
    subscribers: Mutex<Vec<(Filter, mpsc::UnboundedSender<Envelope>)>>,
    groups: Mutex<Groups>,
    /// Woken whenever any group's queue gets a message; members then look in theirs.
    ready: Arc<Notify>,
    dead: Mutex<Vec<DeadLetter>>,
    /// The last dead letter id given out.
    last_dead: std::sync::atomic::AtomicU64,
}

/// A message waiting in a group's queue.
struct Message {
    route: Route,
    body: Arc<[u8]>,
    /// Deliveries so far.
    deliveries: u32,
}

/// One queue of a group: the messages of one pattern.
struct Group {
    /// The pattern's definition and type tokens (`*` for any).
    pattern: (String, String),
    queue: Mutex<VecDeque<Message>>,
    ready: Arc<Notify>,
}

impl Group {
    fn push(&self, message: Message) {
        lock(&self.queue).push_back(message);
        self.ready.notify_waiters();
    }

    fn wants(&self, route: &Route) -> bool {
        let (d, t) = &self.pattern;
        (d == "*" || *d == route.definition) && (t == "*" || *t == route.kind)
    }
}

impl Core {
    fn broadcast(&self, event: &Envelope) {
        // A send fails only when the subscriber dropped its end: forget it.
        lock(&self.subscribers)
            .retain(|(filter, tx)| !filter.matches(event) || tx.send(event.clone()).is_ok());
    }

    fn enqueue(&self, route: &Route, body: Arc<[u8]>) {
        for group in lock(&self.groups).values() {
            if group.wants(route) {
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
        self.enqueue(route, Arc::from(body));
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
        // Encoded only when some group consumes its route: most lifecycle events have none.
        let route = Route::of(&event);
        if lock(&self.core.groups).values().any(|g| g.wants(&route)) {
            let body =
                serde_json::to_vec(&event).map_err(|e| BusError::Malformed(e.to_string()))?;
            self.core.enqueue(&route, Arc::from(body));
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
        let mut groups = lock(&self.core.groups);
        let queues = filter
            .patterns()
            .into_iter()
            .map(|pattern| {
                let (d, t) = pattern.split_once('.').unwrap_or(("*", "*"));
                let (d, t) = (d.to_string(), t.to_string());
                groups
                    .entry((group.to_string(), pattern.clone()))
                    .or_insert_with(|| {
                        Arc::new(Group {
                            pattern: (d, t),
                            queue: Mutex::new(VecDeque::new()),
                            ready: self.core.ready.clone(),
                        })
                    })
                    .clone()
            })
            .collect();
        drop(groups);
        let raw = Box::new(Member {
            queues,
            ready: self.core.ready.clone(),
            next: 0,
        });
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

/// A member of an in-process group: it takes from its patterns' queues in turn.
struct Member {
    queues: Vec<Arc<Group>>,
    ready: Arc<Notify>,
    /// The queue to look in first next time, so none starves.
    next: usize,
}

impl Member {
    fn take(&mut self) -> Option<(Arc<Group>, Message)> {
        for i in 0..self.queues.len() {
            let at = (self.next + i) % self.queues.len();
            let group = &self.queues[at];
            let taken = lock(&group.queue).pop_front();
            if let Some(message) = taken {
                self.next = at + 1;
                return Some((group.clone(), message));
            }
        }
        None
    }
}

#[async_trait]
impl RawConsumer for Member {
    async fn next(&mut self) -> Option<RawDelivery> {
        loop {
            let ready = self.ready.clone();
            let woken = ready.notified();
            tokio::pin!(woken);
            woken.as_mut().enable();
            if let Some((group, mut message)) = self.take() {
                message.deliveries += 1;
                return Some(RawDelivery {
                    route: Some(message.route.clone()),
                    body: message.body.to_vec(),
                    deliveries: message.deliveries,
                    settle: Box::new(InProcessSettle { group, message }),
                });
            }
            woken.await;
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
        let next = 1 + self
            .core
            .last_dead
            .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        letter.id = next.to_string();
        lock(&self.core.dead).push(letter);
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
