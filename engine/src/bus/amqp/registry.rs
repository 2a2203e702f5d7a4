//! The group registry: AMQP cannot list queues, so each bus records the name of every group
//! queue it declares (once per bus) as a message of the durable queue `<prefix>.groups`, and
//! `remove_all` reads them all back, whichever process declared them.

use std::collections::BTreeSet;
use std::sync::atomic::Ordering;

use lapin::options::BasicGetOptions;
use lapin::Connection;

use super::{fail, lock, persistent, Inner, Outgoing};
use crate::bus::BusError;

impl Inner {
    /// Records group queue `queue` before it is first declared by this bus.
    pub(super) async fn register_group(&self, queue: &str) -> Result<(), BusError> {
        if !lock(&self.groups).insert(queue.to_string()) {
            return Ok(());
        }
        let recorded = self
            .send_one(Outgoing {
                exchange: String::new(),
                key: self.group_registry(),
                body: queue.as_bytes().to_vec(),
                properties: persistent().with_content_type("text/plain".into()),
                mandatory: true,
            })
            .await;
        if recorded.is_err() {
            lock(&self.groups).remove(queue);
        }
        recorded
    }

    /// Every group queue recorded under the prefix, and those this bus declared.
    async fn groups(&self, conn: &Connection) -> Result<BTreeSet<String>, BusError> {
        let mut queues = std::mem::take(&mut *lock(&self.groups));
        let channel = conn
            .create_channel()
            .await
            .map_err(|e| fail("open a channel", e))?;
        let registry = self.group_registry();
        let own = format!("{}.", self.prefix);
        loop {
            let got = channel
                .basic_get(registry.as_str().into(), BasicGetOptions { no_ack: true })
                .await
                .map_err(|e| fail(&format!("read queue {registry}"), e))?;
            let Some(message) = got else { break };
            let name = String::from_utf8_lossy(&message.delivery.data).into_owned();
            if name.starts_with(&own) {
                queues.insert(name);
            }
        }
        let _ = channel.close(200, "OK".into()).await;
        Ok(queues)
    }

    /// Deletes everything declared under the prefix (missing is fine) and stops the bus.
    pub(super) async fn remove_all(&self) -> Result<(), BusError> {
        let link = self.link().await?;
        self.removed.store(true, Ordering::SeqCst);
        let queues = self.groups(&link.conn).await?.into_iter();
        let queues = queues.chain([self.dead_queue(), self.group_registry()]);
        let exchanges = [self.dead_exchange(), self.prefix.clone()];
        let all = queues
            .map(|q| (q, true))
            .chain(exchanges.map(|e| (e, false)));
        for (name, queue) in all {
            let channel = link
                .conn
                .create_channel()
                .await
                .map_err(|e| fail("open a channel", e))?;
            let deleted = if queue {
                let deleting = channel.queue_delete(name.as_str().into(), Default::default());
                deleting.await.map(|_| ())
            } else {
                let deleting = channel.exchange_delete(name.as_str().into(), Default::default());
                deleting.await
            };
            match deleted {
                Ok(()) => {
                    let _ = channel.close(200, "OK".into()).await;
                }
                Err(e) if matches!(e.kind(), lapin::ErrorKind::ProtocolError(p) if p.get_id() == 404) =>
                    {}
                Err(e) => return Err(fail(&format!("delete {name}"), e)),
            }
        }
        let _ = link.conn.close(200, "OK".into()).await;
        Ok(())
    }
}
