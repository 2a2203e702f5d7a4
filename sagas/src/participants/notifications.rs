//! The notification service: order confirmations sent to customers, at most once per key.

use super::{Db, ParticipantError};

pub(crate) const SCHEMA: &str = "
CREATE TABLE IF NOT EXISTS order_confirmations (
    key      TEXT PRIMARY KEY NOT NULL,  -- idempotency key of the confirm action
    order_id TEXT NOT NULL,
    customer TEXT NOT NULL,
    tracking TEXT NOT NULL,
    sent_at  TEXT NOT NULL DEFAULT CURRENT_TIMESTAMP
);
";

/// Order confirmations.
#[derive(Debug, Clone)]
pub struct Notifications {
    db: Db,
}

impl Notifications {
    pub(crate) fn new(db: Db) -> Self {
        Self { db }
    }

    /// Tells the customer the order is on its way. Replaying the same key sends nothing new.
    pub async fn confirm(
        &self,
        key: &str,
        order_id: &str,
        customer: &str,
        tracking: &str,
    ) -> Result<(), ParticipantError> {
        sqlx::query("INSERT OR IGNORE INTO order_confirmations (key, order_id, customer, tracking) VALUES (?1, ?2, ?3, ?4)")
            .bind(key)
            .bind(order_id)
            .bind(customer)
            .bind(tracking)
            .execute(self.db.pool().await?)
            .await?;
        Ok(())
    }

    /// How many confirmations the order got (at most one, whatever the retries).
    pub async fn confirmations(&self, order_id: &str) -> Result<i64, sqlx::Error> {
        sqlx::query_scalar("SELECT COUNT(*) FROM order_confirmations WHERE order_id = ?1")
            .bind(order_id)
            .fetch_one(self.db.pool().await?)
            .await
    }
}
