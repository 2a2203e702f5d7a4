//! A booking that waits: `hold` takes a hold (released by its compensation), `cool_off` is a
//! durable timer, `await_payment` waits for the `paid` signal, correlated by `booking_id`, until
//! its deadline, and `confirm` ends it. No payment by the deadline compensates the hold. The
//! holds live in a table of their own, so tests can check that compensation undid them.

use std::time::Duration;

use saga_engine::{
    Definition, DefinitionError, Registry, SagaDefinition, SignalRoute, Step, StepContext,
    StepResultExt,
};
use serde::{Deserialize, Serialize};
use sqlx::SqlitePool;

use crate::local_db::LocalDb;

/// The saga's name.
pub const NAME: &str = "booking";

/// The holds bookings take, in a SQLite file: what compensation must undo.
#[derive(Debug, Clone)]
pub struct Holds(LocalDb);

const SCHEMA: &str = "CREATE TABLE IF NOT EXISTS booking_holds \
                      (key TEXT PRIMARY KEY, released INTEGER NOT NULL DEFAULT 0)";

impl Holds {
    /// The holds in the SQLite database at `url`, connecting (and creating the table) only when
    /// first used.
    pub fn lazy(url: &str) -> Result<Holds, sqlx::Error> {
        LocalDb::lazy(url, SCHEMA).map(Holds)
    }

    /// The holds in the SQLite database at `url`, connected now.
    pub async fn open(url: &str) -> Result<Holds, sqlx::Error> {
        let holds = Self::lazy(url)?;
        holds.pool().await?;
        Ok(holds)
    }

    async fn pool(&self) -> Result<&SqlitePool, sqlx::Error> {
        self.0.pool().await
    }

    /// `(taken, released)` over all bookings.
    pub async fn counts(&self) -> Result<(i64, i64), sqlx::Error> {
        sqlx::query_as("SELECT COUNT(*), COALESCE(SUM(released), 0) FROM booking_holds")
            .fetch_one(self.pool().await?)
            .await
    }
}

/// The booking's data.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct Booking {
    /// The business key a payment event carries.
    pub booking_id: String,
    /// What the payment brought (0 until paid).
    pub paid: u64,
}

impl Booking {
    /// A new, unpaid booking.
    pub fn new(booking_id: &str) -> Self {
        Self {
            booking_id: booking_id.into(),
            paid: 0,
        }
    }
}

/// What the `paid` signal carries.
#[derive(Debug, Deserialize)]
pub struct Payment {
    /// The amount paid.
    pub amount: u64,
}

/// The definition, with a cooling-off `timer` and a payment `deadline`. Its steps reach the
/// [`Holds`] provided to the registry.
pub fn booking(timer: Duration, deadline: Duration) -> Result<Definition, DefinitionError> {
    SagaDefinition::<Booking>::new(NAME, 1)
        .step(
            Step::new("hold", |ctx: StepContext<Booking>| async move {
                let holds = ctx.resource::<Holds>()?;
                sqlx::query("INSERT INTO booking_holds (key) VALUES (?1) ON CONFLICT DO NOTHING")
                    .bind(&ctx.idempotency_key)
                    .execute(holds.pool().await?)
                    .await?;
                Ok(ctx.data)
            })
            .compensate(|ctx: StepContext<Booking>| async move {
                let holds = ctx.resource::<Holds>()?;
                sqlx::query("UPDATE booking_holds SET released = 1 WHERE key = ?1")
                    .bind(ctx.action_key())
                    .execute(holds.pool().await.terminal()?)
                    .await
                    .terminal()?;
                Ok(ctx.data)
            }),
        )
        .step(Step::sleep("cool_off", timer))
        .step(
            Step::signal("await_payment", "paid", |mut b: Booking, p: Payment| {
                b.paid = p.amount;
                b
            })
            .correlate("booking_id")
            .timeout(deadline),
        )
        .step(Step::new(
            "confirm",
            |ctx: StepContext<Booking>| async move { Ok(ctx.data) },
        ))
        .build()
}

/// Registers the booking with a 2-second cooling-off and a 10-minute payment deadline, its holds
/// in the SQLite database at `holds_url`, and `PaymentReceived` events (payload `booking_id`,
/// `amount`) routed as its `paid` signal.
pub fn register(
    registry: &mut Registry,
    holds_url: &str,
) -> Result<(), Box<dyn std::error::Error + Send + Sync>> {
    registry.register(booking(Duration::from_secs(2), Duration::from_secs(600))?)?;
    registry.signal_route(SignalRoute::by_key(PAYMENT_RECEIVED, "paid", "booking_id"))?;
    registry.provide(Holds::lazy(holds_url)?);
    Ok(())
}

/// The event type a payment service publishes when a booking is paid.
pub const PAYMENT_RECEIVED: &str = "PaymentReceived";
