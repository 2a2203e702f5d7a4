//! The payments service: a credit account per customer and charges keyed by idempotency key.

use serde::{Deserialize, Serialize};

use super::{Db, ParticipantError};

/// Credit a new customer's card has: $1,000.00.
pub const DEFAULT_CREDIT_LIMIT_CENTS: i64 = 100_000;

pub(crate) const SCHEMA: &str = "
CREATE TABLE IF NOT EXISTS payments_accounts (
    customer     TEXT PRIMARY KEY NOT NULL,
    credit_limit INTEGER NOT NULL,
    charged      INTEGER NOT NULL DEFAULT 0 CHECK (charged >= 0)
);
CREATE TABLE IF NOT EXISTS payments_charges (
    key        TEXT PRIMARY KEY NOT NULL,  -- idempotency key of the charge action
    order_id   TEXT NOT NULL,
    customer   TEXT NOT NULL,
    amount     INTEGER NOT NULL,
    status     TEXT NOT NULL,              -- charged | refunded | void (refunded before charged)
    created_at TEXT NOT NULL DEFAULT CURRENT_TIMESTAMP,
    updated_at TEXT NOT NULL DEFAULT CURRENT_TIMESTAMP
);
";

/// A charge as the payments service records it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, sqlx::FromRow)]
pub struct Charge {
    /// The idempotency key of the charge action.
    pub key: String,
    /// The order it is for.
    pub order_id: String,
    /// Amount in cents.
    pub amount: i64,
    /// `charged`, `refunded`, or `void` (a refund that arrived first).
    pub status: String,
}

/// Credit accounts and charges.
#[derive(Debug, Clone)]
pub struct Payments {
    db: Db,
}

impl Payments {
    pub(crate) fn new(db: Db) -> Self {
        Self { db }
    }

    /// Charges `amount` cents to the customer's card; declined when it exceeds the credit left.
    /// Replaying the same key returns the existing charge.
    pub async fn charge(
        &self,
        key: &str,
        order_id: &str,
        customer: &str,
        amount: i64,
    ) -> Result<String, ParticipantError> {
        let mut tx = self.db.pool().await?.begin().await?;
        let claimed = sqlx::query(
            "INSERT INTO payments_charges (key, order_id, customer, amount, status) VALUES (?1, ?2, ?3, ?4, 'charged') \
             ON CONFLICT (key) DO NOTHING",
        )
        .bind(key)
        .bind(order_id)
        .bind(customer)
        .bind(amount)
        .execute(&mut *tx)
        .await?;
        if claimed.rows_affected() == 0 {
            let status: String =
                sqlx::query_scalar("SELECT status FROM payments_charges WHERE key = ?1")
                    .bind(key)
                    .fetch_one(&mut *tx)
                    .await?;
            return match status.as_str() {
                "charged" => Ok(key.to_string()),
                _ => Err(ParticipantError::Rejected(format!(
                    "charge {key} was already refunded; not charging again"
                ))),
            };
        }
        sqlx::query(
            "INSERT OR IGNORE INTO payments_accounts (customer, credit_limit) VALUES (?1, ?2)",
        )
        .bind(customer)
        .bind(DEFAULT_CREDIT_LIMIT_CENTS)
        .execute(&mut *tx)
        .await?;
        let (limit, charged): (i64, i64) = sqlx::query_as(
            "SELECT credit_limit, charged FROM payments_accounts WHERE customer = ?1",
        )
        .bind(customer)
        .fetch_one(&mut *tx)
        .await?;
        if charged + amount > limit {
            // Dropping `tx` rolls the claimed key back: a declined charge leaves nothing.
            return Err(ParticipantError::Rejected(format!(
                "card declined: {} exceeds the {} of credit left for {customer}",
                cents(amount),
                cents(limit - charged)
            )));
        }
        sqlx::query("UPDATE payments_accounts SET charged = charged + ?2 WHERE customer = ?1")
            .bind(customer)
            .bind(amount)
            .execute(&mut *tx)
            .await?;
        tx.commit().await?;
        Ok(key.to_string())
    }

    /// Refunds the charge made under `charge_key`. Idempotent; a refund for a charge never made
    /// leaves a tombstone so a late charge is refused.
    pub async fn refund(&self, charge_key: &str, order_id: &str) -> Result<(), ParticipantError> {
        let mut tx = self.db.pool().await?.begin().await?;
        let tombstone = sqlx::query(
            "INSERT INTO payments_charges (key, order_id, customer, amount, status) VALUES (?1, ?2, '', 0, 'void') \
             ON CONFLICT (key) DO NOTHING",
        )
        .bind(charge_key)
        .bind(order_id)
        .execute(&mut *tx)
        .await?;
        if tombstone.rows_affected() == 0 {
            let (status, customer, amount): (String, String, i64) = sqlx::query_as(
                "SELECT status, customer, amount FROM payments_charges WHERE key = ?1",
            )
            .bind(charge_key)
            .fetch_one(&mut *tx)
            .await?;
            if status == "charged" {
                sqlx::query(
                    "UPDATE payments_accounts SET charged = charged - ?2 WHERE customer = ?1",
                )
                .bind(customer)
                .bind(amount)
                .execute(&mut *tx)
                .await?;
                sqlx::query(
                    "UPDATE payments_charges SET status = 'refunded', updated_at = CURRENT_TIMESTAMP WHERE key = ?1",
                )
                .bind(charge_key)
                .execute(&mut *tx)
                .await?;
            }
        }
        tx.commit().await?;
        Ok(())
    }

    /// Cents the customer has been charged and not refunded.
    pub async fn charged(&self, customer: &str) -> Result<i64, sqlx::Error> {
        let n: Option<i64> =
            sqlx::query_scalar("SELECT charged FROM payments_accounts WHERE customer = ?1")
                .bind(customer)
                .fetch_optional(self.db.pool().await?)
                .await?;
        Ok(n.unwrap_or(0))
    }

    /// The charges of an order.
    pub async fn charges(&self, order_id: &str) -> Result<Vec<Charge>, sqlx::Error> {
        sqlx::query_as("SELECT key, order_id, amount, status FROM payments_charges WHERE order_id = ?1 ORDER BY key")
            .bind(order_id)
            .fetch_all(self.db.pool().await?)
            .await
    }
}

/// `12345` cents as `$123.45`.
pub(crate) fn cents(amount: i64) -> String {
    format!("${}.{:02}", amount / 100, (amount % 100).abs())
}
