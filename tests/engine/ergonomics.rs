//! Writing a saga: shared resources reached by type from the step's context, `?` on ordinary
//! errors (retryable unless marked terminal), a compensation with a name of its own, and the
//! outcome read back typed. A TravelBooking saga over a hotel and an airline that keep their
//! bookings in memory, so the test can check what was undone.

use std::collections::BTreeSet;
use std::sync::{Arc, Mutex};

use saga::engine::{
    EventKind, Mediator, Registry, RetryPolicy, SagaDefinition, SagaStatus, Step, StepContext,
    StepError, StepResultExt,
};
use serde::{Deserialize, Serialize};

use crate::common::*;

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
struct Trip {
    traveller: String,
    /// How the airline answers: `ok`, `flaky:N` (N failures of parsing a reply first) or `full`.
    airline: String,
    hotel: Option<String>,
    flight: Option<String>,
}

/// A booking service: the keys it holds bookings under.
#[derive(Default)]
struct Bookings(Mutex<BTreeSet<String>>);

struct Hotel(Bookings);
struct Airline(Bookings, Mutex<u32>);

impl Bookings {
    fn book(&self, key: &str) {
        self.0.lock().unwrap().insert(key.to_string());
    }
    fn cancel(&self, key: &str) {
        self.0.lock().unwrap().remove(key);
    }
    fn held(&self) -> Vec<String> {
        self.0.lock().unwrap().iter().cloned().collect()
    }
}

async fn book_hotel(mut ctx: StepContext<Trip>) -> Result<Trip, StepError> {
    let hotel = ctx.resource::<Hotel>()?;
    hotel.0.book(&ctx.idempotency_key);
    ctx.data.hotel = Some(format!("room for {}", ctx.data.traveller));
    Ok(ctx.data)
}

async fn cancel_hotel(mut ctx: StepContext<Trip>) -> Result<Trip, StepError> {
    ctx.resource::<Hotel>()?.0.cancel(&ctx.action_key());
    ctx.data.hotel = None;
    Ok(ctx.data)
}

async fn book_flight(mut ctx: StepContext<Trip>) -> Result<Trip, StepError> {
    let airline = ctx.resource::<Airline>()?;
    if ctx.data.airline == "full" {
        // A business refusal: the next attempt would be refused too.
        Err::<(), _>(std::io::Error::other("no seats left")).terminal()?;
    }
    if let Some(n) = ctx.data.airline.strip_prefix("flaky:") {
        let failures: u32 = n.parse()?;
        let mut seen = airline.1.lock().unwrap();
        *seen += 1;
        if *seen <= failures {
            // An ordinary error through `?`: retried under the step's policy.
            "garbled reply".parse::<u32>()?;
        }
    }
    airline.0.book(&ctx.idempotency_key);
    ctx.data.flight = Some("LH 400".into());
    Ok(ctx.data)
}

async fn travel(env: &Env) -> (Mediator, Arc<Hotel>, Arc<Airline>) {
    let mut registry = Registry::new();
    registry
        .provide(Hotel(Bookings::default()))
        .provide(Airline(Bookings::default(), Mutex::new(0)));
    let hotel = registry.resources().get::<Hotel>().unwrap();
    let airline = registry.resources().get::<Airline>().unwrap();
    registry
        .register(
            SagaDefinition::<Trip>::new("TravelBooking", 1)
                .step(
                    Step::new("book_hotel", book_hotel).compensate_as("cancel_hotel", cancel_hotel),
                )
                .step(Step::new("book_flight", book_flight).retry(
                    RetryPolicy::attempts(3).backoff(
                        std::time::Duration::from_millis(1),
                        std::time::Duration::from_millis(5),
                    ),
                ))
                .build()
                .unwrap(),
        )
        .unwrap();
    let mediator = Mediator::builder(env.store.clone(), registry)
        .start()
        .await
        .unwrap();
    (mediator, hotel, airline)
}

fn trip(airline: &str) -> Trip {
    Trip {
        traveller: "ada".into(),
        airline: airline.into(),
        hotel: None,
        flight: None,
    }
}

/// `(kind, step, attempt, compensation name)` of the saga's history.
async fn history(m: &Mediator, id: uuid::Uuid) -> Vec<(EventKind, String, u32, String)> {
    m.history(id)
        .await
        .unwrap()
        .into_iter()
        .map(|e| {
            let name = e.detail["compensation"].as_str().unwrap_or("").to_string();
            (
                e.kind,
                e.step.unwrap_or_default(),
                e.attempt.unwrap_or(0),
                name,
            )
        })
        .collect()
}

async fn a_saga_reaches_its_resources_and_comes_back_typed() {
    let env = Env::new().await;
    let (m, hotel, airline) = travel(&env).await;
    let id = m.start("TravelBooking", &trip("ok")).await.unwrap();
    let done = m.wait_for::<Trip>(id).await.unwrap();
    assert_eq!(done.status, SagaStatus::Completed);
    assert_eq!(done.data.hotel.as_deref(), Some("room for ada"));
    assert_eq!(done.data.flight.as_deref(), Some("LH 400"));
    assert_eq!(done.error, None);
    assert_eq!(hotel.0.held(), [format!("{id}:book_hotel:action")]);
    assert_eq!(airline.0.held(), [format!("{id}:book_flight:action")]);
    m.shutdown().await;
}

async fn an_ordinary_error_is_retried_and_a_terminal_one_compensates_under_its_own_name() {
    let env = Env::new().await;
    let (m, hotel, airline) = travel(&env).await;

    // Two garbled replies, then a booking: `?` made each a retryable failure.
    let id = m.start("TravelBooking", &trip("flaky:2")).await.unwrap();
    let done = m.wait_for::<Trip>(id).await.unwrap();
    assert_eq!(done.status, SagaStatus::Completed);
    let failures: Vec<_> = m
        .history(id)
        .await
        .unwrap()
        .into_iter()
        .filter(|e| e.kind == EventKind::StepFailed)
        .map(|e| {
            (
                e.attempt,
                e.detail["retryable"].clone(),
                e.detail["error"].clone(),
            )
        })
        .collect();
    assert_eq!(
        failures,
        [
            (Some(1), true.into(), "invalid digit found in string".into()),
            (Some(2), true.into(), "invalid digit found in string".into()),
        ]
    );

    // A full flight fails for good at once; the hotel is cancelled by `cancel_hotel`.
    let id = m.start("TravelBooking", &trip("full")).await.unwrap();
    let done = m.wait_for::<Trip>(id).await.unwrap();
    assert_eq!(done.status, SagaStatus::Compensated);
    assert_eq!(
        done.data.hotel, None,
        "the compensation's data is what comes back"
    );
    assert!(
        done.error
            .as_deref()
            .unwrap()
            .contains("`book_flight` failed"),
        "{:?}",
        done.error
    );
    let name = |s: &str| s.to_string();
    assert_eq!(
        history(&m, id).await,
        [
            (EventKind::SagaStarted, name(""), 0, name("")),
            (EventKind::StepStarted, name("book_hotel"), 1, name("")),
            (EventKind::StepCompleted, name("book_hotel"), 1, name("")),
            (EventKind::StepStarted, name("book_flight"), 1, name("")),
            (EventKind::StepFailed, name("book_flight"), 1, name("")),
            (
                EventKind::CompensationStarted,
                name("book_hotel"),
                1,
                name("cancel_hotel")
            ),
            (
                EventKind::StepCompensated,
                name("book_hotel"),
                1,
                name("cancel_hotel")
            ),
            (EventKind::SagaCompensated, name(""), 0, name("")),
        ]
    );
    // Only the first saga's bookings remain: the second one's hotel was cancelled.
    assert!(hotel
        .0
        .held()
        .iter()
        .all(|k| !k.starts_with(&id.to_string())));
    assert_eq!(hotel.0.held().len(), 1);
    assert_eq!(airline.0.held().len(), 1);
    m.shutdown().await;
}

async fn a_resource_never_provided_fails_the_step_naming_its_type() {
    let env = Env::new().await;
    let mut registry = Registry::new();
    registry
        .register(
            SagaDefinition::<Trip>::new("TravelBooking", 1)
                .step(Step::new("book_hotel", book_hotel))
                .build()
                .unwrap(),
        )
        .unwrap();
    let m = Mediator::builder(env.store.clone(), registry)
        .start()
        .await
        .unwrap();
    let id = m.start("TravelBooking", &trip("ok")).await.unwrap();
    let done = m.wait_for::<Trip>(id).await.unwrap();
    assert_eq!(done.status, SagaStatus::Compensated);
    let failed = m
        .history(id)
        .await
        .unwrap()
        .into_iter()
        .find(|e| e.kind == EventKind::StepFailed)
        .unwrap();
    assert_eq!(failed.attempt, Some(1), "not retried");
    let error = failed.detail["error"].as_str().unwrap();
    assert!(
        error.contains("no resource of type `engine::ergonomics::Hotel` was provided"),
        "{error}"
    );

    // The data read back as a type it does not fit is an error naming the saga.
    let err = m.wait_for::<u32>(id).await.unwrap_err();
    assert!(err.to_string().contains("TravelBooking"), "{err}");
    m.shutdown().await;
}

on_both!(
    a_saga_reaches_its_resources_and_comes_back_typed,
    an_ordinary_error_is_retried_and_a_terminal_one_compensates_under_its_own_name,
    a_resource_never_provided_fails_the_step_naming_its_type
);
