//! Sagas whose steps run in the mediator: a compensated one is one trace, one resumed by
//! another mediator stays in it, one queued untraced gets its trace where it runs, and a
//! start refused as a duplicate says so on its root.

use super::*;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_compensated_saga_is_one_trace_of_its_attempts() {
    exported();
    let db = db().await;
    let mediator = Mediator::builder(db.store.clone(), registry(&db))
        .start()
        .await
        .unwrap();
    // Over the credit limit: the charge is declined, the stock released.
    let store = db.store.as_ref();
    let order = an_order("t1", 500_000);
    let (id, trace, root) = run_to(
        &mediator,
        store,
        order::NAME,
        order,
        SagaStatus::Compensated,
    )
    .await;
    let spans = until_spans(trace, "the compensation's span", |spans| {
        spans
            .iter()
            .any(|s| s.name == "compensate reserve_inventory")
    })
    .await;

    let roots: Vec<&SpanData> = spans
        .iter()
        .filter(|s| s.span_context.span_id() == root)
        .collect();
    assert_eq!(roots.len(), 1, "one root span");
    assert_eq!(roots[0].name, "saga OrderSaga");
    assert_eq!(
        roots[0].parent_span_id,
        SpanId::INVALID,
        "the root has no parent"
    );
    assert_eq!(attr(roots[0], "saga.id"), Some(id.to_string()));
    assert_eq!(attr(roots[0], "saga.outcome").as_deref(), Some("created"));

    let attempts: Vec<&SpanData> = spans
        .iter()
        .filter(|s| attr(s, "saga.phase").is_some())
        .collect();
    let story: Vec<(String, String, String)> = attempts
        .iter()
        .map(|s| {
            (
                s.name.to_string(),
                attr(s, "saga.attempt").unwrap(),
                attr(s, "saga.outcome").unwrap(),
            )
        })
        .collect();
    let line = |name: &str, outcome: &str| (name.to_string(), "1".to_string(), outcome.to_string());
    assert_eq!(
        story,
        [
            line("action validate_order", "succeeded"),
            line("action reserve_inventory", "succeeded"),
            line("action charge_payment", "failed"),
            line("compensate reserve_inventory", "succeeded"),
        ]
    );
    for span in &attempts {
        assert_eq!(
            span.parent_span_id, root,
            "{} is a child of the root",
            span.name
        );
        assert_eq!(attr(span, "saga.id"), Some(id.to_string()));
        assert_eq!(attr(span, "saga.definition").as_deref(), Some("OrderSaga"));
        assert_eq!(attr(span, "saga.step_kind").as_deref(), Some("local"));
        let step = attr(span, "saga.step").unwrap();
        assert!(span.name.ends_with(&step), "{} names its step", span.name);
    }
    // Payloads never: nothing of the saga's data is in any span.
    for span in &spans {
        for kv in &span.attributes {
            assert!(
                !kv.value.to_string().contains("customer-t1"),
                "{}: {} holds saga data",
                span.name,
                kv.key
            );
        }
    }
    // And the stock it held is back.
    let stock = db.participants.inventory.available("widget").await.unwrap();
    assert_eq!(stock, 1_000);
    mediator.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_saga_resumed_by_another_mediator_stays_in_its_trace() {
    exported();
    let db = db().await;
    // The first mediator hangs in the confirmation and is dropped there, as if killed; its
    // lease runs out and the second takes the saga over.
    let hangs = FaultPlan::parse("confirm_order=hang").unwrap();
    let first = Mediator::builder(db.store.clone(), registry(&db))
        .faults(hangs)
        .lease(Duration::from_millis(500))
        .start()
        .await
        .unwrap();
    let id = first
        .start(order::NAME, &an_order("t2", 1_000))
        .await
        .unwrap();
    eventually("confirm_order to start", || async {
        let saga = db.store.get(id).await.unwrap().unwrap();
        let confirm = &saga.steps[4];
        match confirm.status == StepStatus::Running && confirm.attempts == 1 {
            true => Ok(()),
            false => Err(format!(
                "{:?}, attempt {}",
                confirm.status, confirm.attempts
            )),
        }
    })
    .await;
    drop(first);
    let second = Mediator::builder(db.store.clone(), registry(&db))
        .poll_interval(Duration::from_millis(50))
        .start()
        .await
        .unwrap();
    assert_eq!(ended(&second, id).await, SagaStatus::Completed);

    let (trace, root) = root_of(db.store.as_ref(), id).await;
    let spans = until_spans(trace, "the resumed confirmation", |spans| {
        spans.iter().any(|s| {
            s.name == "action confirm_order" && attr(s, "saga.attempt").as_deref() == Some("2")
        })
    })
    .await;
    let resumed = spans
        .iter()
        .find(|s| {
            s.name == "action confirm_order" && attr(s, "saga.attempt").as_deref() == Some("2")
        })
        .unwrap();
    assert_eq!(resumed.parent_span_id, root);
    assert_eq!(attr(resumed, "saga.outcome").as_deref(), Some("succeeded"));
    // The second mediator's driver span is in the same trace, under the same root.
    let drives = until_spans(trace, "a driver span", |spans| {
        spans.iter().any(|s| s.name == "drive OrderSaga")
    })
    .await;
    for drive in drives.iter().filter(|s| s.name == "drive OrderSaga") {
        assert_eq!(drive.parent_span_id, root);
    }
    second.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_saga_queued_untraced_gets_its_trace_where_a_traced_worker_runs_it() {
    exported();
    let db = db().await;
    // Queued by a process that traces nothing, as `saga run` without `OTEL_*` is.
    let queueing = registry(&db);
    let queue = saga::engine::enqueue(
        db.store.as_ref(),
        &queueing,
        order::NAME,
        an_order("t4", 1_000),
    );
    let untraced = tracing::subscriber::NoSubscriber::default();
    let id = tracing::instrument::WithSubscriber::with_subscriber(queue, untraced)
        .await
        .unwrap();
    let queued = db.store.get(id).await.unwrap().unwrap();
    assert_eq!(queued.trace_parent, None);

    let worker = Mediator::builder(db.store.clone(), registry(&db))
        .poll_interval(Duration::from_millis(50))
        .start()
        .await
        .unwrap();
    assert_eq!(ended(&worker, id).await, SagaStatus::Completed);
    let (trace, root) = root_of(db.store.as_ref(), id).await;
    let spans = until_spans(trace, "the worker's attempts", |spans| {
        spans.iter().any(|s| s.name == "action confirm_order")
    })
    .await;
    let named = |name: &str| spans.iter().filter(|s| s.name == name).count();
    assert_eq!(named("saga OrderSaga"), 1, "one root");
    for step in ["validate_order", "reserve_inventory", "charge_payment"] {
        let name = format!("action {step}");
        assert_eq!(named(&name), 1, "{name}");
    }
    for span in spans.iter().filter(|s| s.name.starts_with("action ")) {
        assert_eq!(span.parent_span_id, root, "{}", span.name);
    }
    worker.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_initiating_event_taken_twice_creates_one_saga_and_the_other_root_says_duplicate() {
    use saga::engine::bus::{Envelope, InProcessBus};
    exported();
    let db = db().await;
    let bus: Arc<dyn EventBus> = Arc::new(InProcessBus::new());
    // Two groups: each takes the event, and both start its saga.
    let mut mediators = Vec::new();
    for group in ["first", "second"] {
        let mut registry = Registry::new();
        order::events::register(&mut registry, &order::Options::default()).unwrap();
        let mediator = Mediator::builder(db.store.clone(), registry)
            .bus(bus.clone())
            .group(group)
            .start()
            .await
            .unwrap();
        mediators.push(mediator);
    }
    let placed = Envelope::new(order::ORDER_PLACED, an_order("t5", 1_000));
    let id = placed.event_id;
    bus.publish(placed).await.unwrap();
    let roots = |spans: Vec<SpanData>| -> Vec<String> {
        let mut outcomes: Vec<String> = spans
            .iter()
            .filter(|s| s.name == "saga EventDrivenOrderSaga")
            .filter(|s| attr(s, "saga.id") == Some(id.to_string()))
            .filter_map(|s| attr(s, "saga.outcome"))
            .collect();
        outcomes.sort();
        outcomes
    };
    let outcomes = eventually("both roots to end", || async {
        let outcomes = roots(exported().get_finished_spans().unwrap());
        match outcomes.len() == 2 {
            true => Ok(outcomes),
            false => Err(format!("{outcomes:?}")),
        }
    })
    .await;
    assert_eq!(outcomes, ["created", "duplicate"]);
    assert_eq!(db.store.list(&Default::default()).await.unwrap().len(), 1);
    for mediator in mediators {
        mediator.shutdown().await;
    }
}
