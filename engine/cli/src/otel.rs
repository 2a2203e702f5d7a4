//! OpenTelemetry traces over OTLP (the `otel` feature): the engine's spans exported as the
//! standard `OTEL_*` variables say. Exporting is on when an OTLP endpoint is named
//! (`OTEL_EXPORTER_OTLP_ENDPOINT` or `OTEL_EXPORTER_OTLP_TRACES_ENDPOINT`) and
//! `OTEL_SDK_DISABLED` is not `true`; the service is `OTEL_SERVICE_NAME`, or `saga`. Spans go
//! out in batches (`OTEL_BSP_*`) over HTTP/protobuf.

use opentelemetry::trace::TracerProvider as _;
use opentelemetry_sdk::trace::SdkTracerProvider;
use opentelemetry_sdk::Resource;
use tracing::Subscriber;
use tracing_subscriber::registry::LookupSpan;
use tracing_subscriber::Layer;

/// The exporting provider; dropping it flushes the spans still queued.
pub(crate) struct Exporting(SdkTracerProvider);

impl Drop for Exporting {
    fn drop(&mut self) {
        if let Err(error) = self.0.shutdown() {
            eprintln!("warning: exporting the last spans failed: {error}");
        }
    }
}

/// Whether the environment asks for traces.
fn wanted() -> bool {
    let set = |name: &str| std::env::var(name).is_ok_and(|v| !v.trim().is_empty());
    let disabled = std::env::var("OTEL_SDK_DISABLED").is_ok_and(|v| v.eq_ignore_ascii_case("true"));
    !disabled && (set("OTEL_EXPORTER_OTLP_ENDPOINT") || set("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT"))
}

/// The layer that exports spans, and what must live until the process ends; `None` when the
/// environment asks for no traces. An exporter that cannot be built is reported and skipped:
/// traces are not worth refusing to run for.
pub(crate) fn layer<S>() -> Option<(Box<dyn Layer<S> + Send + Sync>, Exporting)>
where
    S: Subscriber + for<'a> LookupSpan<'a> + Send + Sync,
{
    if !wanted() {
        return None;
    }
    let exporter = match opentelemetry_otlp::SpanExporter::builder()
        .with_http()
        .build()
    {
        Ok(exporter) => exporter,
        Err(error) => {
            eprintln!("warning: no traces: the OTLP exporter cannot be built: {error}");
            return None;
        }
    };
    let mut resource = Resource::builder();
    if std::env::var("OTEL_SERVICE_NAME").is_err() {
        resource = resource.with_service_name("saga");
    }
    let provider = SdkTracerProvider::builder()
        .with_batch_exporter(exporter)
        .with_resource(resource.build())
        .build();
    opentelemetry::global::set_tracer_provider(provider.clone());
    let layer = tracing_opentelemetry::layer()
        .with_tracer(provider.tracer("saga"))
        .with_filter(tracing_subscriber::filter::LevelFilter::INFO);
    Some((Box::new(layer), Exporting(provider)))
}
