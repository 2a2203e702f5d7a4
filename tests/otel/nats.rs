//! A participant in another consumer group, across a real NATS server, continues the saga's
//! trace: the envelope's `traceparent` crosses the broker both ways.

use super::*;

/// The NATS server the tests use, or `None` (loudly) where it cannot be reached and is not
/// required.
async fn nats(prefix: &str) -> Option<(Arc<dyn EventBus>, Arc<dyn EventBus>)> {
    let url =
        std::env::var("SAGA_TEST_NATS_URL").unwrap_or_else(|_| "nats://127.0.0.1:4222".into());
    let config = BusConfig::new(Some(url.clone())).prefix(prefix);
    match (bus::connect(&config).await, bus::connect(&config).await) {
        (Ok(a), Ok(b)) => Some((a, b)),
        (Err(error), _) | (_, Err(error)) => {
            if std::env::var("SAGA_REQUIRE_BROKERS").as_deref() == Ok("1") {
                panic!("NATS at {url} is required (SAGA_REQUIRE_BROKERS=1): {error}");
            }
            eprintln!("\n!!! SKIPPING the trace across NATS: {url} cannot be reached: {error}\n");
            None
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_participant_across_nats_continues_the_sagas_trace() {
    exported();
    figures();
    let prefix = format!("otel{}", Uuid::now_v7().simple());
    let Some((mediator_bus, services_bus)) = nats(&prefix).await else {
        return;
    };
    let cleanup = mediator_bus.clone();
    let db = db().await;
    let mut registry = Registry::new();
    let options = order::Options::default();
    order::events::register(&mut registry, &options).unwrap();
    let serving = services::spawn(services_bus, &db.participants, &services::Service::ALL)
        .await
        .unwrap();
    let mediator = Mediator::builder(db.store.clone(), registry)
        .bus(mediator_bus)
        .start()
        .await
        .unwrap();
    // Declined: a command and its compensating command both cross the broker.
    let (store, order) = (db.store.as_ref(), an_order("t3", 500_000));
    let name = order::events::NAME;
    let (id, trace, root) = run_to(&mediator, store, name, order, SagaStatus::Compensated).await;
    let spans = until_spans(
        trace,
        "the participants' spans and the replies taken",
        |spans| {
            let count = |name: &str| spans.iter().filter(|s| s.name == name).count();
            count("handle ReleaseInventory") >= 1 && count("consume ParticipantReply") >= 3
        },
    )
    .await;
    let by_id = |span: SpanId| spans.iter().find(|s| s.span_context.span_id() == span);
    let handled: Vec<&SpanData> = spans
        .iter()
        .filter(|s| s.name.starts_with("handle "))
        .collect();
    assert!(handled.len() >= 3, "{handled:#?}");
    for span in &handled {
        // The participant's span is a child of the attempt span that sent the command.
        let sent =
            by_id(span.parent_span_id).unwrap_or_else(|| panic!("{} has its sender", span.name));
        assert_eq!(attr(sent, "saga.step_kind").as_deref(), Some("command"));
        assert_eq!(attr(sent, "saga.outcome").as_deref(), Some("sent"));
        assert_eq!(attr(sent, "saga.step"), attr(span, "saga.step"));
        assert_eq!(attr(sent, "saga.attempt"), attr(span, "saga.attempt"));
        assert_eq!(attr(sent, "saga.phase"), attr(span, "saga.phase"));
        assert_eq!(sent.parent_span_id, root);
        assert_eq!(attr(span, "saga.id"), Some(id.to_string()));
    }
    // The attempts the participants ran are timed from the command's commit to the reply's.
    let page = figures().render();
    let timed = |step: &str, phase: &str, outcome: &str| {
        let series = format!(
            "saga_step_attempt_duration_seconds_count{{definition=\"EventDrivenOrderSaga\",\
             step=\"{step}\",phase=\"{phase}\",outcome=\"{outcome}\"}}"
        );
        sample(&page, &series)
    };
    assert_eq!(
        timed("reserve_inventory", "action", "succeeded"),
        Some(1.0),
        "{page}"
    );
    assert_eq!(
        timed("charge_payment", "action", "failed"),
        Some(1.0),
        "{page}"
    );
    assert_eq!(
        timed("reserve_inventory", "compensate", "succeeded"),
        Some(1.0),
        "{page}"
    );
    let release = handled
        .iter()
        .find(|s| s.name == "handle ReleaseInventory")
        .unwrap();
    assert_eq!(attr(release, "saga.phase").as_deref(), Some("compensate"));
    assert_eq!(attr(release, "saga.outcome").as_deref(), Some("success"));
    // Each reply the mediator took continues the participant span that answered.
    for reply in spans
        .iter()
        .filter(|s| s.name == "consume ParticipantReply")
    {
        let answered = by_id(reply.parent_span_id).expect("the reply's participant span");
        assert!(answered.name.starts_with("handle "), "{}", answered.name);
        assert_eq!(attr(reply, "saga.outcome"), attr(answered, "saga.outcome"));
        assert_eq!(attr(reply, "saga.step"), attr(answered, "saga.step"));
    }
    mediator.shutdown().await;
    serving.iter().for_each(|task| task.abort());
    // What the test made under its prefix goes with it.
    cleanup.remove_all().await.unwrap();
}
