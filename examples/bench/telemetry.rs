//! `--telemetry`: the run with traces and figures on, to measure what they cost. Spans go
//! through the SDK's batch processor to an exporter that drops them (no collector to wait on),
//! and the engine's figures into a Prometheus recorder, as a `saga worker --metrics` with
//! `OTEL_EXPORTER_OTLP_ENDPOINT` set would have them.

use opentelemetry::trace::TracerProvider as _;
use opentelemetry_sdk::error::OTelSdkResult;
use opentelemetry_sdk::trace::{SdkTracerProvider, SpanData, SpanExporter};
use tracing_subscriber::layer::SubscriberExt as _;
use tracing_subscriber::util::SubscriberInitExt as _;
use tracing_subscriber::Layer as _;

/// Takes every batch and keeps nothing.
#[derive(Debug)]
struct Discard;

impl SpanExporter for Discard {
    fn export(
        &self,
        _batch: Vec<SpanData>,
    ) -> impl std::future::Future<Output = OTelSdkResult> + Send {
        std::future::ready(Ok(()))
    }
}

/// Installs the logging subscriber, with the trace layer and the figures' recorder when `on`.
/// The returned provider must live for the run.
pub fn install(on: bool) -> Option<SdkTracerProvider> {
    let logs = tracing_subscriber::fmt::layer().with_filter(
        tracing_subscriber::EnvFilter::try_from_default_env()
            .unwrap_or_else(|_| "warn,sqlx=error".into()),
    );
    if !on {
        tracing_subscriber::registry().with(logs).init();
        return None;
    }
    let provider = SdkTracerProvider::builder()
        .with_batch_exporter(Discard)
        .build();
    let traces = tracing_opentelemetry::layer()
        .with_tracer(provider.tracer("bench"))
        .with_filter(tracing_subscriber::filter::LevelFilter::INFO);
    tracing_subscriber::registry()
        .with(logs)
        .with(traces)
        .init();
    let handle = metrics_exporter_prometheus::PrometheusBuilder::new()
        .install_recorder()
        .ok();
    if let Some(handle) = handle {
        tokio::spawn(async move {
            loop {
                tokio::time::sleep(std::time::Duration::from_secs(5)).await;
                handle.run_upkeep();
            }
        });
    }
    Some(provider)
}
