-- The saga's trace context (a W3C traceparent naming its root span), written when the saga is
-- created by a mediator built with the `otel` feature, so that every later span, in any
-- process and after any restart, joins the saga's one trace.
ALTER TABLE saga_instances ADD COLUMN trace_parent TEXT;
