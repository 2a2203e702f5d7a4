//! Traces: one per saga, whichever processes take part. The engine's spans are `tracing` spans;
//! with the `otel` feature, and a `tracing-opentelemetry` layer installed by the program, they
//! become OpenTelemetry spans, and their context travels as a W3C `traceparent`:
//!
//! - a new saga's root span (`saga NAME`) is a child of the span current where it was created
//!   (a request's, or the initiating event's); its context is stored with the saga;
//! - every later span of the saga (each driver's, each step and compensation attempt, each
//!   command sent) is a child of that root, in any process and after any restart; a
//!   participant's span is a child of the command's, and a reply taken a child of the
//!   participant's;
//! - every envelope carries a `traceparent`: events the saga's root, a command the span that
//!   sent it, a reply the participant's span that answered.
//!
//! Without the feature the same spans exist (for logs) and no context travels. Spans carry
//! ids, names, attempts, phases and outcomes, never saga data.

use tracing::Span;

use crate::state::SagaState;
use crate::step::Phase;

/// The root span of a new `definition` saga, and its context to store with the saga (`None`
/// when nothing traces). The creator keeps the span until the saga's first commit and records
/// there, with [`created`], whether it created the saga: a start refused as a duplicate (an
/// initiating event delivered again, a child started again after a crash) then shows as such
/// rather than as a saga that did nothing.
pub(crate) fn root(definition: &str, id: uuid::Uuid, version: u32) -> (Span, Option<String>) {
    let span = tracing::info_span!(
        "saga",
        otel.name = %format_args!("saga {definition}"),
        saga.id = %id,
        saga.definition = definition,
        saga.version = version,
        saga.outcome = tracing::field::Empty,
    );
    let parent = traceparent(&span);
    (span, parent)
}

/// Records on a new saga's root span how its first commit went: `created`, `duplicate` (the id
/// was taken), or `not_created`.
pub(crate) fn created<T>(root: &Span, result: &Result<T, crate::store::StoreError>) {
    let said = match result {
        Ok(_) => "created",
        Err(crate::store::StoreError::Duplicate(_)) => "duplicate",
        Err(_) => "not_created",
    };
    outcome(root, said);
}

/// A driver's span: the time one process drives `saga`, a child of the saga's root.
pub(crate) fn drive(saga: &SagaState) -> Span {
    let span = tracing::info_span!(
        "saga.drive",
        otel.name = %format_args!("drive {}", saga.definition),
        saga.id = %saga.id,
        saga.definition = %saga.definition,
    );
    follow(&span, saga.trace_parent.as_deref());
    span
}

/// The span of an attempt of `step`'s action or compensation, a child of the saga's root;
/// its outcome is recorded with [`outcome`]. `kind` says what the attempt is: `local` (run
/// here) or `command` (sent to a participant).
pub(crate) fn attempt(
    saga: &SagaState,
    step: &str,
    phase: Phase,
    attempt: u32,
    kind: &'static str,
) -> Span {
    let span = tracing::info_span!(
        "saga.step",
        otel.name = %format_args!("{} {step}", phase.as_str()),
        saga.id = %saga.id,
        saga.definition = %saga.definition,
        saga.step = step,
        saga.attempt = attempt,
        saga.phase = phase.as_str(),
        saga.step_kind = kind,
        saga.outcome = tracing::field::Empty,
    );
    follow(&span, saga.trace_parent.as_deref());
    span
}

/// Records how an attempt's span ended: `succeeded`, `failed`, `sent`, `not_sent`...
pub(crate) fn outcome(span: &Span, outcome: &str) {
    span.record("saga.outcome", outcome);
}

#[cfg(feature = "otel")]
mod w3c {
    use opentelemetry::trace::{
        SpanContext, SpanId, TraceContextExt, TraceFlags, TraceId, TraceState,
    };
    use tracing::Span;
    use tracing_opentelemetry::OpenTelemetrySpanExt;

    /// Reads a W3C `traceparent` (version 00): `None` if it is not one, or names no span.
    pub(super) fn parse(traceparent: &str) -> Option<SpanContext> {
        let mut parts = traceparent.trim().split('-');
        let (version, trace, span, flags) =
            (parts.next()?, parts.next()?, parts.next()?, parts.next()?);
        if version != "00" || trace.len() != 32 || span.len() != 16 || flags.len() != 2 {
            return None;
        }
        if parts.next().is_some() {
            return None;
        }
        let context = SpanContext::new(
            TraceId::from_hex(trace).ok()?,
            SpanId::from_hex(span).ok()?,
            TraceFlags::new(u8::from_str_radix(flags, 16).ok()?),
            true,
            TraceState::default(),
        );
        context.is_valid().then_some(context)
    }

    /// Makes `span` a child of the span `traceparent` names (before it is first entered).
    pub(super) fn follow(span: &Span, traceparent: Option<&str>) {
        if let Some(context) = traceparent.and_then(parse) {
            let parent = opentelemetry::Context::new().with_remote_span_context(context);
            let _ = span.set_parent(parent);
        }
    }

    /// `span`'s context as a `traceparent`, if an OpenTelemetry layer records it.
    pub(super) fn traceparent(span: &Span) -> Option<String> {
        let context = span.context();
        let span = context.span();
        let context = span.span_context();
        context.is_valid().then(|| {
            format!(
                "00-{}-{}-{:02x}",
                context.trace_id(),
                context.span_id(),
                context.trace_flags().to_u8()
            )
        })
    }

    #[cfg(test)]
    mod tests {
        use super::*;

        #[test]
        fn reads_a_traceparent_and_refuses_what_is_not_one() {
            let good = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01";
            let context = parse(good).unwrap();
            assert_eq!(
                context.trace_id().to_string(),
                "4bf92f3577b34da6a3ce929d0e0e4736"
            );
            assert!(context.is_sampled() && context.is_remote());
            for bad in [
                "",
                "01-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01",
                "00-00000000000000000000000000000000-00f067aa0ba902b7-01",
                "00-4bf92f3577b34da6a3ce929d0e0e4736-0000000000000000-01",
                "00-4bf92f3577b34da6a3ce929d0e0e473-00f067aa0ba902b7-01",
                "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01-x",
                "00-zzf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01",
            ] {
                assert!(parse(bad).is_none(), "{bad}");
            }
        }
    }
}

#[cfg(not(feature = "otel"))]
mod w3c {
    use tracing::Span;

    pub(super) fn follow(_: &Span, _: Option<&str>) {}

    pub(super) fn traceparent(_: &Span) -> Option<String> {
        None
    }
}

/// Makes `span` a child of the span a `traceparent` names (an envelope's, a saga's root), if
/// any: call it before the span is first entered.
pub(crate) fn follow(span: &Span, traceparent: Option<&str>) {
    w3c::follow(span, traceparent)
}

/// `span`'s context as a W3C `traceparent`, to send along; `None` when nothing traces.
pub(crate) fn traceparent(span: &Span) -> Option<String> {
    w3c::traceparent(span)
}
