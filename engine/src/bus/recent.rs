//! A bounded set of recently seen event ids: a process's first line against duplicates (the
//! dispatcher's own double hand-overs, a consumer's redeliveries). The durable line is the
//! store's own check (a saga's id, the reply it awaits).

use std::collections::{HashSet, VecDeque};

use uuid::Uuid;

/// The ids seen lately, the oldest forgotten beyond a capacity.
#[derive(Debug, Default)]
pub(crate) struct Recent {
    ids: HashSet<Uuid>,
    order: VecDeque<Uuid>,
}

impl Recent {
    const CAPACITY: usize = 65_536;

    /// Whether `id` was seen lately.
    pub(crate) fn contains(&self, id: &Uuid) -> bool {
        self.ids.contains(id)
    }

    /// Records `id`; false if it was already there.
    pub(crate) fn insert(&mut self, id: Uuid) -> bool {
        if !self.ids.insert(id) {
            return false;
        }
        self.order.push_back(id);
        if self.order.len() > Self::CAPACITY {
            if let Some(old) = self.order.pop_front() {
                self.ids.remove(&old);
            }
        }
        true
    }
}
