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
        let mut tx = self.db.pool().await?.begin_with("BEGIN IMMEDIATE").await?;
        let existing: Option<String> =
            sqlx::query_scalar("SELECT tracking FROM shipments WHERE key = ?1")
                .bind(key)
                .fetch_optional(&mut *tx)
                .await?;
        if let Some(tracking) = existing {
            return Ok(tracking);
        }
        let carrier: Option<String> =
            sqlx::query_scalar("SELECT carrier FROM shipping_carriers WHERE country = ?1")
                .bind(&address.country)
                .fetch_optional(&mut *tx)
                .await?;
        let Some(carrier) = carrier else {
            return Err(ParticipantError::Rejected(format!(
                "no carrier delivers to {} ({})",
                address.country, address.city
            )));
        };
        let tracking = format!(
            "{}-{}",
            carrier
                .split_whitespace()
                .map(|w| &w[..1])
                .collect::<String>()
                .to_uppercase(),
            &uuid::Uuid::now_v7().simple().to_string()[20..]
        );
        sqlx::query("INSERT INTO shipments (key, order_id, carrier, country, tracking) VALUES (?1, ?2, ?3, ?4, ?5)")
            .bind(key)
            .bind(order_id)
            .bind(&carrier)
            .bind(&address.country)
            .bind(&tracking)
            .execute(&mut *tx)
            .await?;
        tx.commit().await?;
        Ok(tracking)
    }

    /// The shipments of an order.
    pub async fn shipments(&self, order_id: &str) -> Result<Vec<Shipment>, ParticipantError> {
        Ok(sqlx::query_as("SELECT key, order_id, carrier, tracking FROM shipments WHERE order_id = ?1 ORDER BY key")
            .bind(order_id)
            .fetch_all(self.db.pool().await?)
            .await?)
    }
}
