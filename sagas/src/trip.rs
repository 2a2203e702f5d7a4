//! A trip: book the flight, the hotel and the car at the same time (a parallel group), hold the
//! bookings until the traveller pays (the `paid` signal, correlated by `trip_id`, with a
//! deadline), then earn loyalty points in a child saga, and confirm. A trip never paid is
//! compensated: every booking cancelled. The bookings and the points live in the travel
//! agency's own SQLite database, so tests can check that compensation undid them.

use std::time::Duration;

use saga_engine::{
    Definition, DefinitionError, Registry, SagaDefinition, SignalRoute, Step, StepContext,
    StepResultExt,
};
use serde::{Deserialize, Serialize};

use crate::local_db::LocalDb;

/// The trip saga's name.
pub const NAME: &str = "trip";
/// The loyalty saga a paid trip starts as its child.
pub const LOYALTY: &str = "loyalty";
/// The event type the payment service publishes when a trip is paid.
pub const TRIP_PAID: &str = "TripPaid";

const SCHEMA: &str = "\
    CREATE TABLE IF NOT EXISTS trip_bookings (key TEXT PRIMARY KEY, kind TEXT NOT NULL, \
        trip_id TEXT NOT NULL, cancelled INTEGER NOT NULL DEFAULT 0); \
    CREATE TABLE IF NOT EXISTS loyalty_points (key TEXT PRIMARY KEY, member TEXT NOT NULL, \
        points INTEGER NOT NULL, revoked INTEGER NOT NULL DEFAULT 0);";

/// The travel agency's bookings and loyalty points.
#[derive(Debug, Clone)]
pub struct Agency(LocalDb);

impl Agency {
    /// The agency's tables in the SQLite database at `url`, opened on first use.
    pub fn lazy(url: &str) -> Result<Self, sqlx::Error> {
        LocalDb::lazy(url, SCHEMA).map(Agency)
    }

    /// `(booked, cancelled)` bookings of `trip_id`.
    pub async fn bookings(&self, trip_id: &str) -> Result<(i64, i64), sqlx::Error> {
        sqlx::query_as(
            "SELECT COUNT(*), COALESCE(SUM(cancelled), 0) FROM trip_bookings WHERE trip_id = ?1",
        )
        .bind(trip_id)
        .fetch_one(self.0.pool().await?)
        .await
    }

    /// The points `member` holds (granted and not revoked).
    pub async fn points(&self, member: &str) -> Result<i64, sqlx::Error> {
        sqlx::query_scalar(
            "SELECT COALESCE(SUM(points), 0) FROM loyalty_points WHERE member = ?1 AND revoked = 0",
        )
        .bind(member)
        .fetch_one(self.0.pool().await?)
        .await
    }

    async fn book(&self, key: &str, kind: &str, trip_id: &str) -> Result<(), sqlx::Error> {
        sqlx::query(
            "INSERT INTO trip_bookings (key, kind, trip_id) VALUES (?1, ?2, ?3) ON CONFLICT DO NOTHING",
        )
        .bind(key)
        .bind(kind)
        .bind(trip_id)
        .execute(self.0.pool().await?)
        .await
        .map(|_| ())
    }

    async fn cancel(&self, key: &str) -> Result<(), sqlx::Error> {
        sqlx::query("UPDATE trip_bookings SET cancelled = 1 WHERE key = ?1")
            .bind(key)
            .execute(self.0.pool().await?)
            .await
            .map(|_| ())
    }
}

/// A trip's data.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct Trip {
    /// The business key a payment carries.
    pub trip_id: String,
    /// Who travels (and earns the points).
    pub traveller: String,
    /// The bookings, once made.
    pub flight: Option<String>,
    /// The hotel booking.
    pub hotel: Option<String>,
    /// The car booking.
    pub car: Option<String>,
    /// What the payment brought (0 until paid).
    pub paid: u64,
    /// The loyalty points the trip earned.
    pub points: u64,
}

impl Trip {
    /// A trip not booked yet.
    pub fn new(trip_id: &str, traveller: &str) -> Self {
        Self {
            trip_id: trip_id.into(),
            traveller: traveller.into(),
            flight: None,
            hotel: None,
            car: None,
            paid: 0,
            points: 0,
        }
    }
}

/// What the `paid` signal carries.
#[derive(Debug, Deserialize)]
pub struct Payment {
    /// The amount paid, in cents.
    pub amount: u64,
}

/// The loyalty saga's data.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct Loyalty {
    /// The member.
    pub member: String,
    /// The trip that earns the points.
    pub trip_id: String,
    /// The points credited.
    pub points: u64,
}

/// A booking step of kind `kind` that records `set` in the trip.
fn booking(kind: &'static str, set: fn(&mut Trip, String)) -> Step<Trip> {
    Step::new(
        format!("book_{kind}"),
        move |mut ctx: StepContext<Trip>| async move {
            let agency = ctx.resource::<Agency>()?;
            agency
                .book(&ctx.idempotency_key, kind, &ctx.data.trip_id)
                .await?;
            let reference = format!("{kind}-{}", ctx.data.trip_id);
            set(&mut ctx.data, reference);
            Ok(ctx.data)
        },
    )
    .compensate_as(
        format!("cancel_{kind}"),
        |ctx: StepContext<Trip>| async move {
            let agency = ctx.resource::<Agency>()?;
            agency.cancel(&ctx.action_key()).await.terminal()?;
            Ok(ctx.data)
        },
    )
}

/// The trip, holding its bookings `pay_within` for the payment.
pub fn trip(pay_within: Duration) -> Result<Definition, DefinitionError> {
    SagaDefinition::<Trip>::new(NAME, 1)
        .parallel(
            "book",
            [
                booking("flight", |t, b| t.flight = Some(b)),
                booking("hotel", |t, b| t.hotel = Some(b)),
                booking("car", |t, b| t.car = Some(b)),
            ],
        )
        .step(
            Step::signal("await_payment", "paid", |mut t: Trip, p: Payment| {
                t.paid = p.amount;
                t
            })
            .correlate("trip_id")
            .timeout(pay_within),
        )
        .step(Step::child(
            "earn_points",
            LOYALTY,
            |t: &Trip| Loyalty {
                member: t.traveller.clone(),
                trip_id: t.trip_id.clone(),
                points: 0,
            },
            |mut t: Trip, l: Loyalty| {
                t.points = l.points;
                t
            },
        ))
        .step(Step::new("confirm", |ctx: StepContext<Trip>| async move {
            Ok(ctx.data)
        }))
        .build()
}

/// The loyalty saga: credits the member 100 points for the trip (revoked by its compensation).
pub fn loyalty() -> Result<Definition, DefinitionError> {
    SagaDefinition::<Loyalty>::new(LOYALTY, 1)
        .step(
            Step::new("credit_points", |mut ctx: StepContext<Loyalty>| async move {
                let agency = ctx.resource::<Agency>()?;
                sqlx::query(
                    "INSERT INTO loyalty_points (key, member, points) VALUES (?1, ?2, 100) ON CONFLICT DO NOTHING",
                )
                .bind(&ctx.idempotency_key)
                .bind(&ctx.data.member)
                .execute(agency.0.pool().await?)
                .await?;
                ctx.data.points = 100;
                Ok(ctx.data)
            })
            .compensate_as("revoke_points", |mut ctx: StepContext<Loyalty>| async move {
                let agency = ctx.resource::<Agency>()?;
                sqlx::query("UPDATE loyalty_points SET revoked = 1 WHERE key = ?1")
                    .bind(ctx.action_key())
                    .execute(agency.0.pool().await.terminal()?)
                    .await
                    .terminal()?;
                ctx.data.points = 0;
                Ok(ctx.data)
            }),
        )
        .build()
}

/// Registers the trip (paid within `pay_within`) and its loyalty child, the agency's tables in
/// the SQLite database at `agency_url`, and `TripPaid` events (payload `trip_id`, `amount`) as
/// the trip's `paid` signal.
pub fn register(
    registry: &mut Registry,
    agency_url: &str,
    pay_within: Duration,
) -> Result<(), Box<dyn std::error::Error + Send + Sync>> {
    registry.register(trip(pay_within)?)?;
    registry.register(loyalty()?)?;
    registry.signal_route(SignalRoute::by_key(TRIP_PAID, "paid", "trip_id"))?;
    registry.provide(Agency::lazy(agency_url)?);
    Ok(())
}
