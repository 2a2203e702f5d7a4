//! The shipping service: which carrier serves which country, and shipments keyed by
//! idempotency key. Creating a shipment is OrderSaga's pivot: once a parcel is handed to a
//! carrier it cannot be taken back.

use serde::{Deserialize, Serialize};

use super::{Db, ParticipantError};
use crate::order::Address;

pub(crate) const SCHEMA: &str = "
CREATE TABLE IF NOT EXISTS shipping_carriers (
    country TEXT PRIMARY KEY NOT NULL,
    carrier TEXT NOT NULL
);
CREATE TABLE IF NOT EXISTS shipments (
    key        TEXT PRIMARY KEY NOT NULL,  -- idempotency key of the create action
    order_id   TEXT NOT NULL,
    carrier    TEXT NOT NULL,
    country    TEXT NOT NULL,
    tracking   TEXT NOT NULL,
    created_at TEXT NOT NULL DEFAULT CURRENT_TIMESTAMP
);
INSERT OR IGNORE INTO shipping_carriers (country, carrier) VALUES
    ('US', 'UPS'), ('CA', 'Canada Post'), ('GB', 'Royal Mail'), ('DE', 'DHL'),
    ('FR', 'La Poste'), ('NL', 'PostNL'), ('ES', 'Correos'), ('IT', 'Poste Italiane'),
    ('JP', 'Japan Post'), ('AU', 'Australia Post');
";

/// A shipment as the shipping service records it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, sqlx::FromRow)]
pub struct Shipment {
    /// The idempotency key of the create action.
    pub key: String,
    /// The order shipped.
    pub order_id: String,
    /// The carrier.
    pub carrier: String,
    /// The tracking number.
    pub tracking: String,
}

/// Carriers and shipments.
#[derive(Debug, Clone)]
pub struct Shipping {
    db: Db,
}

impl Shipping {
    pub(crate) fn new(db: Db) -> Self {
        Self { db }
    }

    /// Hands the order to the carrier serving its country and returns the tracking number.
    /// Refused when no carrier delivers there. Replaying the same key returns the same parcel.
    pub async fn create(
        &self,
        key: &str,
        order_id: &str,
        address: &Address,
    ) -> Result<String, ParticipantError> {
        let serial = &uuid::Uuid::now_v7().simple().to_string()[20..];
        let mut tx = self.db.pool().await?.begin().await?;
        let created = sqlx::query(
            "INSERT INTO shipments (key, order_id, carrier, country, tracking) \
             SELECT ?1, ?2, carrier, country, upper(substr(carrier, 1, 3)) || '-' || ?3 \
             FROM shipping_carriers WHERE country = ?4 ON CONFLICT (key) DO NOTHING",
        )
        .bind(key)
        .bind(order_id)
        .bind(serial)
        .bind(&address.country)
        .execute(&mut *tx)
        .await?;
        let tracking: Option<String> =
            sqlx::query_scalar("SELECT tracking FROM shipments WHERE key = ?1")
                .bind(key)
                .fetch_optional(&mut *tx)
                .await?;
        tx.commit().await?;
        match tracking {
            Some(tracking) => {
                if created.rows_affected() == 0 {
                    tracing::debug!(key, "shipment already created; returning it");
                }
                Ok(tracking)
            }
            None => Err(ParticipantError::Rejected(format!(
                "no carrier delivers to {} ({})",
                address.country, address.city
            ))),
        }
    }

    /// The shipments of an order.
    pub async fn shipments(&self, order_id: &str) -> Result<Vec<Shipment>, sqlx::Error> {
        sqlx::query_as("SELECT key, order_id, carrier, tracking FROM shipments WHERE order_id = ?1 ORDER BY key")
            .bind(order_id)
            .fetch_all(self.db.pool().await?)
            .await
    }
}
