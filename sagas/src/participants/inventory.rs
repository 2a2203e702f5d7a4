//! The inventory service: stock per SKU and reservations keyed by idempotency key.
//!
//! Every write transaction starts by claiming its idempotency key (an insert that does nothing
//! if the key is known), so it holds the write lock from its first statement and a replay is
//! recognised before anything else happens.

use serde::{Deserialize, Serialize};

use super::{Db, ParticipantError};
use crate::order::LineItem;

pub(crate) const SCHEMA: &str = "
CREATE TABLE IF NOT EXISTS inventory_stock (
    sku       TEXT PRIMARY KEY NOT NULL,
    available INTEGER NOT NULL CHECK (available >= 0)
);
CREATE TABLE IF NOT EXISTS inventory_reservations (
    key        TEXT PRIMARY KEY NOT NULL,  -- idempotency key of the reserve action
    order_id   TEXT NOT NULL,
    items      TEXT NOT NULL,              -- JSON list of {sku, quantity}
    status     TEXT NOT NULL,              -- reserved | released | void (released before reserved)
    created_at TEXT NOT NULL DEFAULT CURRENT_TIMESTAMP,
    updated_at TEXT NOT NULL DEFAULT CURRENT_TIMESTAMP
);
INSERT OR IGNORE INTO inventory_stock (sku, available) VALUES
    ('widget', 1000), ('gadget', 500), ('gizmo', 10);
";

/// A reservation as the inventory service records it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, sqlx::FromRow)]
pub struct Reservation {
    /// The idempotency key of the reserve action.
    pub key: String,
    /// The order it is for.
    pub order_id: String,
    /// `reserved`, `released`, or `void` (a release that arrived first).
    pub status: String,
}

/// Stock and reservations.
#[derive(Debug, Clone)]
pub struct Inventory {
    pub(crate) db: Db,
}

impl Inventory {
    pub(crate) fn new(db: Db) -> Self {
        Self { db }
    }

    /// Reserves every item of an order, all or nothing. Replaying the same key returns the
    /// existing reservation; a key already released is refused.
    pub async fn reserve(
        &self,
        key: &str,
        order_id: &str,
        items: &[LineItem],
    ) -> Result<String, ParticipantError> {
        let items_json =
            serde_json::to_string(items).map_err(|e| ParticipantError::Rejected(e.to_string()))?;
        let mut tx = self.db.pool().await?.begin().await?;
        let claimed = sqlx::query(
            "INSERT INTO inventory_reservations (key, order_id, items, status) VALUES (?1, ?2, ?3, 'reserved') \
             ON CONFLICT (key) DO NOTHING",
        )
        .bind(key)
        .bind(order_id)
        .bind(&items_json)
        .execute(&mut *tx)
        .await?;
        if claimed.rows_affected() == 0 {
            let status: String =
                sqlx::query_scalar("SELECT status FROM inventory_reservations WHERE key = ?1")
                    .bind(key)
                    .fetch_one(&mut *tx)
                    .await?;
            return match status.as_str() {
                "reserved" => Ok(key.to_string()),
                _ => Err(ParticipantError::Rejected(format!(
                    "reservation {key} was already released; not reserving again"
                ))),
            };
        }
        for item in items {
            let taken = sqlx::query("UPDATE inventory_stock SET available = available - ?2 WHERE sku = ?1 AND available >= ?2")
                .bind(&item.sku)
                .bind(i64::from(item.quantity))
                .execute(&mut *tx)
                .await?;
            if taken.rows_affected() == 0 {
                let available: Option<i64> =
                    sqlx::query_scalar("SELECT available FROM inventory_stock WHERE sku = ?1")
                        .bind(&item.sku)
                        .fetch_optional(&mut *tx)
                        .await?;
                // Dropping `tx` rolls back the claimed key and any stock already taken.
                return Err(ParticipantError::Rejected(match available {
                    Some(n) => format!(
                        "not enough stock for {}: {} requested, {n} available",
                        item.sku, item.quantity
                    ),
                    None => format!("unknown SKU {}", item.sku),
                }));
            }
        }
        tx.commit().await?;
        Ok(key.to_string())
    }

    /// Releases the reservation made under `reserve_key` and puts its stock back. Idempotent; a
    /// release for a reservation never made leaves a tombstone so a late reserve is refused.
    pub async fn release(&self, reserve_key: &str, order_id: &str) -> Result<(), ParticipantError> {
        let mut tx = self.db.pool().await?.begin().await?;
        let tombstone = sqlx::query(
            "INSERT INTO inventory_reservations (key, order_id, items, status) VALUES (?1, ?2, '[]', 'void') \
             ON CONFLICT (key) DO NOTHING",
        )
        .bind(reserve_key)
        .bind(order_id)
        .execute(&mut *tx)
        .await?;
        if tombstone.rows_affected() == 0 {
            let (status, items): (String, String) =
                sqlx::query_as("SELECT status, items FROM inventory_reservations WHERE key = ?1")
                    .bind(reserve_key)
                    .fetch_one(&mut *tx)
                    .await?;
            if status == "reserved" {
                let items: Vec<LineItem> = serde_json::from_str(&items)
                    .map_err(|e| ParticipantError::Rejected(e.to_string()))?;
                for item in items {
                    sqlx::query(
                        "UPDATE inventory_stock SET available = available + ?2 WHERE sku = ?1",
                    )
                    .bind(&item.sku)
                    .bind(i64::from(item.quantity))
                    .execute(&mut *tx)
                    .await?;
                }
                sqlx::query(
                    "UPDATE inventory_reservations SET status = 'released', updated_at = CURRENT_TIMESTAMP WHERE key = ?1",
                )
                .bind(reserve_key)
                .execute(&mut *tx)
                .await?;
            }
        }
        tx.commit().await?;
        Ok(())
    }

    /// Units of `sku` available now.
    pub async fn available(&self, sku: &str) -> Result<i64, sqlx::Error> {
        let n: Option<i64> =
            sqlx::query_scalar("SELECT available FROM inventory_stock WHERE sku = ?1")
                .bind(sku)
                .fetch_optional(self.db.pool().await?)
                .await?;
        Ok(n.unwrap_or(0))
    }

    /// Sets the stock of `sku` (seeding, tests).
    pub async fn set_stock(&self, sku: &str, available: i64) -> Result<(), sqlx::Error> {
        sqlx::query(
            "INSERT INTO inventory_stock (sku, available) VALUES (?1, ?2) \
             ON CONFLICT (sku) DO UPDATE SET available = excluded.available",
        )
        .bind(sku)
        .bind(available)
        .execute(self.db.pool().await?)
        .await?;
        Ok(())
    }

    /// The reservations of an order.
    pub async fn reservations(&self, order_id: &str) -> Result<Vec<Reservation>, sqlx::Error> {
        sqlx::query_as("SELECT key, order_id, status FROM inventory_reservations WHERE order_id = ?1 ORDER BY key")
                .bind(order_id)
                .fetch_all(self.db.pool().await?)
                .await
    }
}
