//! `GET /definitions`: each registered definition with its steps and kinds, the sagas in flight
//! per version, and counts by definition and status (including definitions in the store that
//! this program does not register).

use std::collections::BTreeMap;

use axum::extract::{RawQuery, State};
use axum::response::{IntoResponse, Response};
use maud::html;

use super::counts::Counts;
use super::layout;
use super::query::pairs;
use super::{Shared, UiError};
use saga_engine::{SagaStatus, StepKind};

/// `GET /definitions`.
pub(super) async fn page(
    State(ui): State<Shared>,
    RawQuery(raw): RawQuery,
) -> Result<Response, UiError> {
    if let Some((key, _)) = pairs(raw.as_deref())?.first() {
        return Err(UiError::BadRequest(format!(
            "unknown parameter `{key}`; this page takes none"
        )));
    }
    let mut counts: BTreeMap<String, BTreeMap<SagaStatus, u64>> = BTreeMap::new();
    for (definition, status, n) in Counts::get(&ui).await?.0.iter() {
        *counts
            .entry(definition.clone())
            .or_default()
            .entry(*status)
            .or_default() += n;
    }
    let mut in_flight: BTreeMap<(String, u32), u64> = BTreeMap::new();
    for (definition, version, n) in ui.store.unfinished_definitions().await? {
        in_flight.insert((definition, version), n);
    }
    for d in ui.registry.definitions() {
        counts.entry(d.name().to_string()).or_default();
    }
    let registered = ui.registry.definitions();
    let body = html! {
        h1 { "Definitions" }
        h2 { "Counts by definition and status" }
        table class="stats" {
            thead { tr { th { "definition" } @for s in SagaStatus::ALL { th { (s.as_str()) } } th { "total" } } }
            tbody {
                @for (definition, by_status) in &counts {
                    tr data-definition=(definition) {
                        td { (definition) }
                        @for s in SagaStatus::ALL {
                            @let n = by_status.get(s).copied().unwrap_or(0);
                            td data-status=(s.as_str()) {
                                @if n > 0 {
                                    a href={ "/?" (serde_urlencoded::to_string([("definition", definition.as_str()), ("status", s.as_str())]).unwrap_or_default()) } { (n) }
                                } @else { "0" }
                            }
                        }
                        td { (by_status.values().sum::<u64>()) }
                    }
                }
            }
        }
        @for d in &registered {
            section class="definition" data-definition=(d.name()) data-version=(d.version()) {
                h2 { (d.name()) " v" (d.version()) }
                p { (in_flight.get(&(d.name().to_string(), d.version())).copied().unwrap_or(0)) " in flight on this version" }
                table class="steps" {
                    thead { tr { th { "#" } th { "step" } th { "kind" } th { "compensation" } th { "waits for" } th { "attempts" } th { "timeout" } } }
                    tbody {
                        @for (i, s) in d.steps().iter().enumerate() {
                            tr data-step=(s.name()) data-kind=(s.kind().as_str()) {
                                td { (i + 1) }
                                td { (s.name()) }
                                td { (crate::output::kind_text(s)) }
                                td { @match (s.has_compensation(), s.compensation_name()) {
                                    (true, Some(name)) => (name),
                                    (true, None) => "yes",
                                    (false, _) => "-",
                                } }
                                td { (crate::output::waits_for(s).unwrap_or_else(|| "-".into())) }
                                td { @match (s.kind(), s.retry_policy().max_attempts) {
                                    (StepKind::Retriable, _) | (_, None) => "until success",
                                    (_, Some(n)) => (n),
                                } }
                                td { (humantime::format_duration(s.timeout())) }
                            }
                        }
                    }
                }
            }
        }
        @for ((name, version), n) in &in_flight {
            @if ui.registry.get(name, *version).is_none() {
                p class="unregistered" { (name) " v" (version) ": " (n) " in flight, not registered in this program" }
            }
        }
    };
    Ok(layout::page("Definitions", body).into_response())
}
