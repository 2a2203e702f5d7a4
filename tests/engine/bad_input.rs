//! Bad input: a clear typed error naming the problem, and nothing written.

use saga::engine::{
    fault::FaultPlan, store, store::StoreError, DefinitionError, EngineError, Registry,
    SagaDefinition, Step, StepContext,
};
use saga::sagas::order;
use serde_json::json;
use uuid::Uuid;

use crate::common::*;

async fn saga_rows(env: &Env) -> (i64, i64) {
    (
        env.number("SELECT COUNT(*) FROM saga_instances").await,
        env.number("SELECT COUNT(*) FROM saga_history").await,
    )
}

async fn an_unknown_saga_name_is_refused() {
    let env = Env::new().await;
    let m = env.mediator(FaultPlan::new()).await;
    let err = m.start("NoSuchSaga", &good_order("x")).await.unwrap_err();
    assert!(matches!(&err, EngineError::UnknownSaga(n) if n == "NoSuchSaga"));
    assert_eq!(err.to_string(), "no saga named `NoSuchSaga` is registered");
    assert_eq!(saga_rows(&env).await, (0, 0));
}

async fn data_that_does_not_fit_the_saga_is_refused() {
    let env = Env::new().await;
    let m = env.mediator(FaultPlan::new()).await;
    let err = m
        .start_json(order::NAME, json!({ "order_id": 42 }))
        .await
        .unwrap_err();
    match &err {
        EngineError::InvalidData { saga, reason } => {
            assert_eq!(saga, order::NAME);
            assert!(reason.contains("expected a string"), "{reason}");
        }
        other => panic!("unexpected error {other:?}"),
    }
    assert!(err
        .to_string()
        .starts_with("data does not fit saga `OrderSaga`"));
    assert_eq!(saga_rows(&env).await, (0, 0));
}

async fn data_over_the_size_limit_is_refused() {
    let env = Env::new().await;
    let m = env.mediator(FaultPlan::new()).await;
    let mut o = good_order("huge");
    o.address.street = "x".repeat(3 * 1024 * 1024);
    let err = m.start(order::NAME, &o).await.unwrap_err();
    assert!(
        matches!(
            err,
            EngineError::PayloadTooLarge {
                limit: 2_097_152,
                ..
            }
        ),
        "{err}"
    );
    assert_eq!(saga_rows(&env).await, (0, 0));
}

async fn an_unknown_saga_id_is_not_found() {
    let env = Env::new().await;
    let m = env.mediator(FaultPlan::new()).await;
    let id = Uuid::now_v7();
    assert!(matches!(m.get(id).await.unwrap_err(), EngineError::NotFound(x) if x == id));
    let err = m.history(id).await.unwrap_err();
    assert_eq!(err.to_string(), format!("no saga with id {id}"));
    assert_eq!(saga_rows(&env).await, (0, 0));
}

#[test]
fn a_definition_with_duplicate_steps_or_a_duplicate_registration_is_rejected() {
    type D = serde_json::Value;
    let step = |n: &str| Step::new(n, |ctx: StepContext<D>| async move { Ok(ctx.data) });
    let err = SagaDefinition::<D>::new("dup", 1)
        .step(step("x"))
        .step(step("x"))
        .build()
        .unwrap_err();
    assert_eq!(
        err.to_string(),
        "saga `dup` has two steps named `x`; step names must be unique"
    );

    let mut registry = Registry::new();
    let def = || {
        SagaDefinition::<D>::new("once", 1)
            .step(step("x"))
            .build()
            .unwrap()
    };
    registry.register(def()).unwrap();
    assert_eq!(
        registry.register(def()).unwrap_err(),
        DefinitionError::AlreadyRegistered {
            name: "once".into(),
            version: 1
        }
    );
}

#[tokio::test]
async fn opening_a_missing_database_for_reading_names_the_path() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("nope.db");
    let err = store::open(
        &format!("sqlite://{}", path.display()),
        store::OpenMode::MustExist,
    )
    .await
    .err()
    .unwrap();
    assert!(
        matches!(&err, StoreError::Missing(p) if p.ends_with("nope.db")),
        "{err}"
    );
    assert!(!path.exists(), "nothing was created");
    let err = store::open("mysql://localhost/x", store::OpenMode::CreateIfMissing)
        .await
        .err()
        .unwrap();
    assert!(matches!(err, StoreError::UnsupportedUrl(_)));
}

#[tokio::test]
async fn a_postgres_url_with_nothing_listening_names_the_cause_at_once() {
    // Port 1 on this machine: nothing listens there.
    let url = "postgres://postgres@127.0.0.1:1/test";
    let err = store::open(url, store::OpenMode::CreateIfMissing)
        .await
        .err()
        .unwrap();
    let text = err.to_string();
    assert!(matches!(err, StoreError::Open { .. }), "{text}");
    assert!(text.contains(url), "{text}");
    assert!(
        text.to_lowercase().contains("connection refused"),
        "the cause, not a pool timeout: {text}"
    );
    assert!(
        std::error::Error::source(&err).is_some(),
        "the driver's error stays reachable"
    );

    let out = std::process::Command::new(env!("CARGO_BIN_EXE_saga"))
        .args(["--database", url, "list"])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(4));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.to_lowercase().contains("connection refused"),
        "{stderr}"
    );
}

#[test]
fn a_second_trigger_for_the_same_event_type_is_rejected() {
    let mut registry = Registry::new();
    registry
        .trigger(saga::engine::Trigger::with_payload("OrderPlaced", "A"))
        .unwrap();
    let err = registry
        .trigger(saga::engine::Trigger::with_payload("OrderPlaced", "B"))
        .err()
        .unwrap();
    assert_eq!(
        err.to_string(),
        "event `OrderPlaced` already starts saga `A`; an event type starts one saga or is one signal"
    );
}

on_both!(
    an_unknown_saga_name_is_refused,
    data_that_does_not_fit_the_saga_is_refused,
    data_over_the_size_limit_is_refused,
    an_unknown_saga_id_is_not_found,
);
