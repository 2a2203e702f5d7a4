//! A booking that waits: `hold` takes a hold (released by its compensation), `cool_off` is a
//! durable timer, `await_payment` waits for the `paid` signal, correlated by `booking_id`, until
//! its deadline, and `confirm` ends it. No payment by the deadline compensates the hold. The
//! holds live in a table of their own, so tests can check that compensation undid them.

use std::time::Duration;

use saga_engine::{Definition, DefinitionError, SagaDefinition, Step, StepContext, StepResultExt};
use serde::{Deserialize, Serialize};
use sqlx::SqlitePool;

/// The saga's name.
pub const NAME: &str = "booking";

/// The holds bookings take, in a SQLite file: what compensation must undo.
#[derive(Debug, Clone)]
pub struct Holds(pub SqlitePool);

impl Holds {
    /// Opens (creating if needed) the holds table in the SQLite database at `url`.
    pub async fn open(url: &str) -> Result<Holds, sqlx::Error> {
        let pool = SqlitePool::connect(url).await?;
        sqlx::query(
            "CREATE TABLE IF NOT EXISTS booking_holds \
             (key TEXT PRIMARY KEY, released INTEGER NOT NULL DEFAULT 0)",
        )
        .execute(&pool)
        .await?;
        Ok(Holds(pool))
    }

    /// `(taken, released)` over all bookings.
    pub async fn counts(&self) -> Result<(i64, i64), sqlx::Error> {
        sqlx::query_as("SELECT COUNT(*), COALESCE(SUM(released), 0) FROM booking_holds")
            .fetch_one(&self.0)
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
                    .execute(&holds.0)
                    .await?;
                Ok(ctx.data)
            })
            .compensate(|ctx: StepContext<Booking>| async move {
                let holds = ctx.resource::<Holds>()?;
                sqlx::query("UPDATE booking_holds SET released = 1 WHERE key = ?1")
                    .bind(ctx.action_key())
                    .execute(&holds.0)
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
