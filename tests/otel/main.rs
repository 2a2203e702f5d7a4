//! Traces (the `otel` feature), collected by the OpenTelemetry SDK's in-memory exporter: a
//! saga is one trace of its attempts, a participant across the NATS bus continues it, and a
//! saga resumed by another mediator stays in it. Its own test binary, because the subscriber
//! that turns `tracing` spans into OpenTelemetry spans is process-wide; each test reads only
//! the spans of its own sagas' traces.

#![allow(clippy::unwrap_used)]

use std::sync::{Arc, OnceLock};
use std::time::Duration;

use opentelemetry::trace::{SpanId, TraceId, TracerProvider as _};
use opentelemetry_sdk::trace::{InMemorySpanExporter, SdkTracerProvider, SpanData};
use saga::engine::bus::{self, BusConfig, EventBus};
use saga::engine::fault::FaultPlan;
use saga::engine::store::{self, OpenMode, SagaStore};
use saga::engine::{Mediator, Registry, SagaStatus, StepStatus};
use saga::sagas::order::{self, services};
use saga::sagas::Participants;
use serde_json::json;
use tracing_subscriber::layer::SubscriberExt as _;
use tracing_subscriber::util::SubscriberInitExt as _;
use uuid::Uuid;

/// The spans every test's sagas end, as exported.
fn exported() -> &'static InMemorySpanExporter {
    static EXPORTER: OnceLock<InMemorySpanExporter> = OnceLock::new();
    EXPORTER.get_or_init(|| {
        let exporter = InMemorySpanExporter::default();
        let provider = SdkTracerProvider::builder()
            .with_simple_exporter(exporter.clone())
            .build();
        tracing_subscriber::registry()
            .with(tracing_opentelemetry::layer().with_tracer(provider.tracer("tests")))
            .init();
        exporter
    })
}

/// The figures of every test's sagas, as a Prometheus page renders them (a recorder is
/// process-wide too; the NATS test is the only one here running its definition).
fn figures() -> &'static metrics_exporter_prometheus::PrometheusHandle {
    static HANDLE: OnceLock<metrics_exporter_prometheus::PrometheusHandle> = OnceLock::new();
    HANDLE.get_or_init(|| {
        metrics_exporter_prometheus::PrometheusBuilder::new()
            .install_recorder()
            .unwrap()
    })
}

/// The value of one sample line of the page, by its whole series text.
fn sample(page: &str, series: &str) -> Option<f64> {
    page.lines()
        .find_map(|l| l.strip_prefix(series)?.strip_prefix(' ')?.parse().ok())
}

/// A SQLite store and the participants' tables, in a temp dir of the test's own.
struct Db {
    _dir: tempfile::TempDir,
    store: Arc<dyn SagaStore>,
    participants: Participants,
}

async fn db() -> Db {
    let dir = tempfile::tempdir().unwrap();
    let url = format!("sqlite://{}", dir.path().join("sagas.db").display());
    let store = store::open(&url, OpenMode::CreateIfMissing).await.unwrap();
    let participants = Participants::open(&url).await.unwrap();
    Db {
        _dir: dir,
        store,
        participants,
    }
}

fn an_order(id: &str, amount_cents: i64) -> serde_json::Value {
    json!({
        "order_id": id,
        "customer": format!("customer-{id}"),
        "items": [{ "sku": "widget", "quantity": 1 }],
        "amount_cents": amount_cents,
        "address": { "street": "1 Main St", "city": "Springfield", "country": "FR" }
    })
}

/// The saga's trace and root span, from the context stored with it.
async fn root_of(store: &dyn SagaStore, id: Uuid) -> (TraceId, SpanId) {
    let saga = store.get(id).await.unwrap().unwrap();
    let parent = saga.trace_parent.expect("a traced saga stores its context");
    let parts: Vec<&str> = parent.split('-').collect();
    assert_eq!(parts.len(), 4, "{parent}");
    (
        TraceId::from_hex(parts[1]).unwrap(),
        SpanId::from_hex(parts[2]).unwrap(),
    )
}

/// The spans of `trace` exported so far, oldest first.
fn spans_of(trace: TraceId) -> Vec<SpanData> {
    let mut spans: Vec<SpanData> = exported()
        .get_finished_spans()
        .unwrap()
        .into_iter()
        .filter(|s| s.span_context.trace_id() == trace)
        .collect();
    spans.sort_by_key(|s| s.start_time);
    spans
}

fn attr(span: &SpanData, key: &str) -> Option<String> {
    span.attributes
        .iter()
        .find(|kv| kv.key.as_str() == key)
        .map(|kv| kv.value.to_string())
}

/// Waits (bounded) until `check` holds of the trace's spans, and returns them.
async fn until_spans(
    trace: TraceId,
    what: &str,
    check: impl Fn(&[SpanData]) -> bool,
) -> Vec<SpanData> {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
    loop {
        let spans = spans_of(trace);
        if check(&spans) {
            return spans;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "timed out waiting for {what}: {:#?}",
            spans.iter().map(|s| s.name.clone()).collect::<Vec<_>>()
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_compensated_saga_is_one_trace_of_its_attempts() {
    exported();
    let db = db().await;
    let mut registry = Registry::new();
    order::local::register_all(&mut registry, &db.participants).unwrap();
    let mediator = Mediator::builder(db.store.clone(), registry)
        .start()
        .await
        .unwrap();
    // Over the credit limit: the charge is declined, the stock released.
    let id = mediator
        .start(order::NAME, &an_order("t1", 500_000))
        .await
        .unwrap();
    assert_eq!(
        mediator.wait(id).await.unwrap().status,
        SagaStatus::Compensated
    );
    let (trace, root) = root_of(db.store.as_ref(), id).await;
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
    let registry = || {
        let mut registry = Registry::new();
        order::local::register_all(&mut registry, &db.participants).unwrap();
        registry
    };
    // The first mediator hangs in the confirmation and is dropped there, as if killed; its
    // lease runs out and the second takes the saga over.
    let hangs = FaultPlan::parse("confirm_order=hang").unwrap();
    let first = Mediator::builder(db.store.clone(), registry())
        .faults(hangs)
        .lease(Duration::from_millis(500))
        .start()
        .await
        .unwrap();
    let id = first
        .start(order::NAME, &an_order("t2", 1_000))
        .await
        .unwrap();
    let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
    loop {
        let saga = db.store.get(id).await.unwrap().unwrap();
        if saga.steps[4].status == StepStatus::Running && saga.steps[4].attempts == 1 {
            break;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "confirm_order never started"
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    drop(first);
    let second = Mediator::builder(db.store.clone(), registry())
        .poll_interval(Duration::from_millis(50))
        .start()
        .await
        .unwrap();
    assert_eq!(second.wait(id).await.unwrap().status, SagaStatus::Completed);

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
    let db = db().await;
    let mut registry = Registry::new();
    let options = order::Options::default();
    order::events::register(&mut registry, &options).unwrap();
    let _services = services::spawn(services_bus, &db.participants, &services::Service::ALL)
        .await
        .unwrap();
    let mediator = Mediator::builder(db.store.clone(), registry)
        .bus(mediator_bus)
        .start()
        .await
        .unwrap();
    // Declined: a command and its compensating command both cross the broker.
    let id = mediator
        .start(order::events::NAME, &an_order("t3", 500_000))
        .await
        .unwrap();
    assert_eq!(
        mediator.wait(id).await.unwrap().status,
        SagaStatus::Compensated
    );
    let (trace, root) = root_of(db.store.as_ref(), id).await;
    let spans = until_spans(
        trace,
        "the participants' spans and the replies taken",
        |spans| {
            let count = |name: &str| spans.iter().filter(|s| s.name == name).count();
            count("handle ReleaseInventory") == 1 && count("consume ParticipantReply") >= 3
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
    }
    mediator.shutdown().await;
}
