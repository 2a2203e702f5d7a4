//! Traces (the `otel` feature), collected by the OpenTelemetry SDK's in-memory exporter: a
//! saga is one trace of its attempts, a participant across the NATS bus continues it, and a
//! saga resumed by another mediator stays in it; and dead letters and timed-out attempts are counted. Its own test
//! binary, because the subscriber that turns `tracing` spans into OpenTelemetry spans (and the
//! figures' recorder) is process-wide; each test reads only its own sagas' spans and series.

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

mod counted;
mod local;
mod nats;

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

/// Starts a `name` saga of `order` on `mediator`, checks that it ends `status`, and returns its
/// id, trace and root span.
async fn run_to(
    mediator: &Mediator,
    store: &dyn SagaStore,
    name: &str,
    order: serde_json::Value,
    status: SagaStatus,
) -> (Uuid, TraceId, SpanId) {
    let id = mediator.start(name, &order).await.unwrap();
    assert_eq!(ended(mediator, id).await, status);
    let (trace, root) = root_of(store, id).await;
    (id, trace, root)
}

/// The local OrderSaga over `db`'s participants.
fn registry(db: &Db) -> Registry {
    let mut registry = Registry::new();
    order::local::register_all(&mut registry, &db.participants).unwrap();
    registry
}

/// How saga `id` ended, waiting 60 s at most.
async fn ended(mediator: &Mediator, id: Uuid) -> SagaStatus {
    let bound = Duration::from_secs(60);
    let done = tokio::time::timeout(bound, mediator.wait(id)).await;
    done.expect("the saga ends within a minute").unwrap().status
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
    eventually(what, || async {
        let spans = spans_of(trace);
        match check(&spans) {
            true => Ok(spans),
            false => Err(format!(
                "{:#?}",
                spans.iter().map(|s| s.name.clone()).collect::<Vec<_>>()
            )),
        }
    })
    .await
}

/// Polls `probe` every 10 ms until it gives a value, within 30 s; past that, fails naming
/// `what` and what the probe saw last.
async fn eventually<T, F, Fut>(what: &str, mut probe: F) -> T
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Result<T, String>>,
{
    let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
    loop {
        match probe().await {
            Ok(value) => return value,
            Err(seen) => assert!(
                tokio::time::Instant::now() < deadline,
                "timed out waiting for {what}: {seen}"
            ),
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}
