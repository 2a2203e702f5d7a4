//! Figures of failures: a message a mediator can never handle is counted, by its group, as it
//! goes to the dead letters; a participant's attempt whose reply never comes is timed as failed,
//! for its whole timeout.

use super::*;
use saga::engine::bus::{Envelope, InProcessBus};
use saga::engine::participant::REPLY;
use saga::engine::{RetryPolicy, SagaDefinition, Step};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_dead_letter_is_counted_by_its_group() {
    figures();
    let db = db().await;
    let bus: Arc<dyn EventBus> = Arc::new(InProcessBus::new());
    // A group of its own: the recorder is the whole test process's.
    let group = format!("figures-{}", Uuid::now_v7().simple());
    let mut registry = Registry::new();
    order::events::register(&mut registry, &order::Options::default()).unwrap();
    let mediator = Mediator::builder(db.store.clone(), registry)
        .bus(bus.clone())
        .group(&group)
        .start()
        .await
        .unwrap();
    let series = format!("saga_dead_letters_total{{group=\"{group}\"}}");
    assert_eq!(sample(&figures().render(), &series), None);

    // A reply whose payload is not a reply: it can never be handled.
    let mut reply = Envelope::new(REPLY, json!({ "nope": 1 }));
    reply.saga_id = Some(Uuid::now_v7());
    reply.definition = Some(order::events::NAME.into());
    reply.step = Some("charge_payment".into());
    reply.attempt = Some(1);
    bus.publish(reply.clone()).await.unwrap();

    until_sampled(&series).await;
    let letters = bus.dead_letters().list(10).await.unwrap();
    assert_eq!(letters.len(), 1, "{letters:?}");
    assert_eq!(letters[0].event_id(), Some(reply.event_id));
    assert_eq!(letters[0].group, group);
    assert_eq!(sample(&figures().render(), &series), Some(1.0));
    // Nothing was written for it.
    assert!(db.store.list(&Default::default()).await.unwrap().is_empty());
    mediator.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_attempt_whose_reply_never_comes_is_timed_as_failed() {
    figures();
    let db = db().await;
    let bus: Arc<dyn EventBus> = Arc::new(InProcessBus::new());
    // A definition of its own: the recorder is the whole test process's.
    let name = format!("deadline-{}", Uuid::now_v7().simple());
    let timeout = Duration::from_millis(300);
    let ask = Step::participant(
        "ask",
        "Ask",
        |data: serde_json::Value, _: serde_json::Value| data,
    )
    .timeout(timeout)
    .retry(RetryPolicy::attempts(1));
    let mut registry = Registry::new();
    registry
        .register(
            SagaDefinition::<serde_json::Value>::new(&name, 1)
                .step(ask)
                .build()
                .unwrap(),
        )
        .unwrap();
    let mediator = Mediator::builder(db.store.clone(), registry)
        .bus(bus)
        .start()
        .await
        .unwrap();
    // Nobody serves `Ask`: the deadline passes, and the saga ends with nothing to undo.
    let id = mediator.start(&name, &json!({})).await.unwrap();
    assert_eq!(ended(&mediator, id).await, SagaStatus::Compensated);
    let series = |what: &str, outcome: &str| {
        format!(
            "saga_step_attempt_duration_seconds_{what}{{definition=\"{name}\",step=\"ask\",\
             phase=\"action\",outcome=\"{outcome}\"}}"
        )
    };
    // Recorded just after the commit, which the saga's end may have overtaken.
    let page = until_sampled(&series("count", "failed")).await;
    assert_eq!(
        sample(&page, &series("count", "failed")),
        Some(1.0),
        "{page}"
    );
    assert_eq!(
        sample(&page, &series("sum", "failed")),
        Some(timeout.as_secs_f64()),
        "{page}"
    );
    assert_eq!(sample(&page, &series("count", "succeeded")), None, "{page}");
    mediator.shutdown().await;
}

/// Waits (bounded) until the figures list `series`, and returns the page.
async fn until_sampled(series: &str) -> String {
    eventually(series, || async {
        let page = figures().render();
        match sample(&page, series) {
            Some(_) => Ok(page),
            None => Err(page),
        }
    })
    .await
}
