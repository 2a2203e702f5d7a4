//! Versions side by side, on both backends: with v1 and v2 of a definition registered, new
//! sagas start on v2 while the sagas already in flight on v1 go on and finish on v1, each with
//! its own version's steps, at the same time; `saga definitions` counts them per version.

use std::time::Duration;

use saga::engine::{
    enqueue, Definition, Mediator, Registry, SagaDefinition, SagaStatus, Step, StepContext,
};
use serde_json::{json, Value};
use tokio::sync::watch;

use crate::common::*;

/// Held shut until the test opens it: v1's second step waits on it.
struct Gate(watch::Receiver<bool>);

/// A step that records its name in the data's `ran` list.
fn record(name: &'static str) -> Step<Value> {
    Step::new(name, move |mut ctx: StepContext<Value>| async move {
        if let Some(ran) = ctx.data["ran"].as_array_mut() {
            ran.push(json!(name));
        }
        Ok(ctx.data)
    })
}

fn v1() -> Definition {
    SagaDefinition::<Value>::new("Trip", 1)
        .step(record("book"))
        .step(
            Step::new("wait_for_gate", |mut ctx: StepContext<Value>| async move {
                let mut gate = ctx.resource::<Gate>()?.0.clone();
                let _ = gate.wait_for(|open| *open).await;
                if let Some(ran) = ctx.data["ran"].as_array_mut() {
                    ran.push(json!("wait_for_gate"));
                }
                Ok(ctx.data)
            })
            .timeout(Duration::from_secs(120)),
        )
        .step(record("finish_v1"))
        .build()
        .unwrap()
}

fn v2() -> Definition {
    SagaDefinition::<Value>::new("Trip", 2)
        .step(record("book"))
        .step(record("pay"))
        .step(record("finish_v2"))
        .build()
        .unwrap()
}

on_both!(multi: versions_run_side_by_side);

async fn versions_run_side_by_side() {
    let env = Env::new().await;
    // Three sagas queued while only v1 was deployed.
    let mut old = Registry::new();
    old.register(v1()).unwrap();
    let mut on_v1 = Vec::new();
    for _ in 0..3 {
        on_v1.push(
            enqueue(env.store.as_ref(), &old, "Trip", json!({ "ran": [] }))
                .await
                .unwrap(),
        );
    }
    // The new deployment registers both versions.
    let (open, gate) = watch::channel(false);
    let mut both = Registry::new();
    both.register(v1()).unwrap().register(v2()).unwrap();
    both.provide(Gate(gate));
    let m = fast(Mediator::builder(env.store.clone(), both)).await;
    for &id in &on_v1 {
        until("the v1 sagas to reach their second step", || async {
            let s = env.store.get(id).await.unwrap().unwrap();
            s.current_step == 1 && s.steps[1].attempts > 0
        })
        .await;
    }
    // New sagas start on v2 and finish while the v1 ones are still in flight.
    let mut on_v2 = Vec::new();
    for _ in 0..3 {
        on_v2.push(m.start("Trip", &json!({ "ran": [] })).await.unwrap());
    }
    for &id in &on_v2 {
        let s = wait(&m, id).await;
        assert_eq!((s.version, s.status), (2, SagaStatus::Completed));
        assert_eq!(s.data["ran"], json!(["book", "pay", "finish_v2"]));
    }
    assert_eq!(
        env.store.unfinished_definitions().await.unwrap(),
        vec![("Trip".to_string(), 1, 3)],
        "the v1 sagas are in flight while v2 ones completed"
    );
    // `saga definitions` counts them per version (this binary does not register Trip).
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_saga"))
        .args(["--database", &env.url, "definitions", "--json"])
        .env("SAGA_PARTICIPANTS_URL", &env.local)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let defs: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(
        defs["unregistered_in_flight"],
        json!([{ "name": "Trip", "version": 1, "in_flight": 3 }])
    );
    assert_eq!(defs["definitions"][0]["in_flight"], 0);

    open.send(true).unwrap();
    for &id in &on_v1 {
        let s = wait(&m, id).await;
        assert_eq!((s.version, s.status), (1, SagaStatus::Completed));
        assert_eq!(s.data["ran"], json!(["book", "wait_for_gate", "finish_v1"]));
        let history = m.history(id).await.unwrap();
        assert_eq!(history[0].detail["version"], 1);
    }
    assert!(env.store.unfinished_definitions().await.unwrap().is_empty());
    m.shutdown().await;
}
