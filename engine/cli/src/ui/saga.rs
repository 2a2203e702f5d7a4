//! `GET /sagas/ID`: one saga. Its status and "why is it stuck" at a glance, the timeline, the
//! full history, the data (only with `--show-data`) and the actions (only with
//! `--allow-actions`). The part that changes as the saga moves is one element (`#live`) that
//! the page's script swaps for the fresh copy the server streams.

use axum::extract::{Path, State};
use axum::http::header;
use axum::response::{IntoResponse, Redirect, Response};
use maud::{html, Markup};
use uuid::Uuid;

use super::layout::{self, badge, when};
use super::{Shared, UiError};
use crate::output::{self, now_ms, rfc3339};
use crate::timeline::{self, svg};
use saga_engine::{HistoryEvent, SagaState, SagaStatus};

/// Reads the id in the path: a full saga id (the list links to those).
pub(super) fn parse_id(text: &str) -> Result<Uuid, UiError> {
    Uuid::parse_str(text).map_err(|_| {
        let shown: String = text.chars().take(64).collect();
        let more = if shown.len() < text.len() { "…" } else { "" };
        UiError::BadRequest(format!("`{shown}{more}` is not a saga id"))
    })
}

/// The saga and its history, or 404.
pub(super) async fn load(ui: &Shared, id: Uuid) -> Result<(SagaState, Vec<HistoryEvent>), UiError> {
    let saga = ui
        .store
        .get(id)
        .await?
        .ok_or_else(|| UiError::NotFound(format!("no saga with id {id}")))?;
    let history = ui.store.history(id).await?;
    Ok((saga, history))
}

/// `GET /sagas/ID`.
pub(super) async fn page(
    State(ui): State<Shared>,
    Path(id): Path<String>,
) -> Result<Response, UiError> {
    let id = match Uuid::parse_str(&id) {
        Ok(id) => id,
        // A prefix, as `saga show` takes: open the one saga it names.
        Err(_) if id.len() >= 4 && id.len() < 36 => {
            let full = crate::read::resolve(ui.store.as_ref(), &id).await?;
            return Ok(Redirect::to(&format!("/sagas/{full}")).into_response());
        }
        Err(_) => parse_id(&id)?,
    };
    let (saga, history) = load(&ui, id).await?;
    let parent = ui.store.parent_of(id).await?;
    let children = ui.store.children_of(id).await?;
    let body = html! {
        p { a href="/" { "← all sagas" } }
        @if parent.is_some() || !children.is_empty() {
            nav class="family" id="family" {
                @if let Some((parent, step)) = &parent {
                    "child of " a href={ "/sagas/" (parent) } data-link="parent" { (parent) } " (its step " (step) ")"
                }
                @for (child, step) in &children {
                    " child " a href={ "/sagas/" (child) } data-link="child" { (child) } " (started by " (step) ")"
                }
            }
        }
        (live(&ui, &saga, &history))
        p class="live-note" id="live-note" {
            @if !saga.status.is_final() { "This page follows the saga as it moves." }
        }
        @if ui.options.allow_actions && ui.registry.get(&saga.definition, saga.version).is_some() {
            (actions(&ui, &saga))
        }
        @if ui.options.show_data {
            h2 { "Data" }
            pre class="data" id="data" { (serde_json::to_string_pretty(&saga.data).unwrap_or_default()) }
        }
    };
    Ok(layout::page(&format!("Saga {}", short_id(&saga.id)), body).into_response())
}

/// `GET /sagas/ID/timeline.svg`: the timeline alone, as `saga show ID --svg` writes it.
pub(super) async fn timeline_svg(
    State(ui): State<Shared>,
    Path(id): Path<String>,
) -> Result<Response, UiError> {
    let id = parse_id(&id)?;
    let (saga, history) = load(&ui, id).await?;
    let t = timeline::of(&ui.registry, &saga, &history);
    Ok(([(header::CONTENT_TYPE, "image/svg+xml")], svg::document(&t)).into_response())
}

fn short_id(id: &Uuid) -> String {
    id.to_string()[..8].to_string()
}

/// The part of the page that moves with the saga: summary, why it is stuck, the timeline and
/// the history.
pub(super) fn live(ui: &Shared, saga: &SagaState, history: &[HistoryEvent]) -> Markup {
    let definition = ui.registry.get(&saga.definition, saga.version);
    let t = timeline::build(saga, definition.map(|d| d.as_ref()), history, now_ms());
    let left: Vec<String> = definition
        .map_or_else(|| saga.compensations_left(), |d| d.compensations_left(saga))
        .iter()
        .map(|s| s.to_string())
        .collect();
    html! {
        div id="live" data-saga=(saga.id) data-seq=(saga.last_seq) data-final=(saga.status.is_final())
            data-status=(saga.status.as_str()) {
            h1 { "Saga " code { (saga.id) } " " (badge(saga.status.as_str())) }
            p class="meta" {
                (saga.definition) " v" (saga.version)
                @if definition.is_none() { " (not registered in this program: no step kinds)" }
                " · started " (when(saga.created_at)) " · updated " (when(saga.updated_at))
            }
            (stuck(saga, &left))
            h2 { "Timeline" }
            div class="legend" {
                @for (class, text) in [("succeeded", "succeeded"), ("retrying", "failed, retried"), ("failed", "failed for good"), ("interrupted", "interrupted"), ("running", "running"), ("awaiting", "waiting (reply, timer, signal)")] {
                    span { i class=(class) {} (text) }
                }
                span { "dashed: backoff · purple line: pivot completed" }
            }
            div class="timeline-box" { (svg::render(&t)) }
            h2 { "History" }
            (history_table(history))
        }
    }
}

fn stuck(saga: &SagaState, left: &[String]) -> Markup {
    let waiting = crate::show::waiting_for(saga, crate::show::when);
    html! {
        section class="stuck" id="stuck" {
            dl {
                @if let Some(current) = saga.current().filter(|_| !saga.status.is_final()) {
                    dt { "current step" } dd data-field="current" { (current.name) " (" (current.status) ")" }
                }
                @if let Some(error) = &saga.last_error {
                    dt { "last error" } dd class="error" data-field="last-error" { (error) }
                }
                @if let Some(waiting) = waiting {
                    dt { "waiting for" } dd data-field="awaiting" { (waiting) }
                } @else if let Some(due) = saga.next_attempt_at.filter(|_| !saga.status.is_final()) {
                    dt { "next attempt" } dd data-field="next-attempt" { (when(due)) }
                }
                dt { "lease" } dd data-field="lease" {
                    @match (&saga.lease_owner, saga.lease_expires_at) {
                        (Some(owner), Some(until)) => { code { (owner) } " until " (when(until)) },
                        _ if saga.awaiting.is_some() => "none (nothing runs until what it waits for comes, or its deadline)",
                        _ if !saga.status.is_final() => "none (the next worker to look picks it up)",
                        _ if saga.status == SagaStatus::Failed => "none (nothing runs until an operator retries it)",
                        _ => "none (finished)",
                    }
                }
                @if !left.is_empty() && saga.status != SagaStatus::Running {
                    dt { "still to undo" } dd data-field="to-undo" { (left.join(", then ")) }
                }
                @if saga.status == SagaStatus::Failed {
                    dt { "needs" } dd class="error" data-field="needs" {
                        "an operator: fix the cause, then retry (below with --allow-actions, or "
                        code { "saga retry " (saga.id) } "), or settle it by hand"
                    }
                }
            }
        }
    }
}

fn history_table(history: &[HistoryEvent]) -> Markup {
    html! {
        table class="history" {
            thead { tr { th { "seq" } th { "time" } th { "event" } th { "step" } th { "attempt" } th { "detail" } } }
            tbody {
                @for e in history {
                    tr data-event=(e.kind.as_str()) {
                        td { (e.seq) }
                        td { (rfc3339(e.at)) }
                        td { (e.kind.as_str()) }
                        td { (e.step.as_deref().unwrap_or("")) }
                        td { (e.attempt.map(|a| a.to_string()).unwrap_or_default()) }
                        td { (output::detail(&e.detail)) }
                    }
                }
            }
        }
    }
}

/// Which operator actions the engine would take now; the forms offered are those.
fn offered(saga: &SagaState) -> Vec<(&'static str, &'static str, &'static str)> {
    let mut offered = Vec::new();
    let retry = match saga.status {
        SagaStatus::Failed => true,
        SagaStatus::Running | SagaStatus::Compensating => {
            saga.next_attempt_at.is_some() && saga.awaiting.is_none()
        }
        _ => false,
    };
    if retry {
        offered.push((
            "retry",
            "Retry: resume the failed saga where it stopped, or run the waiting attempt now",
            "retried by an operator",
        ));
    }
    if saga.status == SagaStatus::Running {
        offered.push((
            "abort",
            "Abort: stop the saga and compensate its completed steps (refused past the pivot)",
            "aborted by an operator",
        ));
    }
    offered
}

fn actions(ui: &Shared, saga: &SagaState) -> Markup {
    let offered = offered(saga);
    html! {
        @if !offered.is_empty() {
            h2 { "Actions" }
            div class="actions" {
                @for (verb, what, default) in offered {
                    form method="post" action={ "/sagas/" (saga.id) "/" (verb) } id={ (verb) "-form" } {
                        p { (what) }
                        input type="hidden" name="csrf" value=(ui.csrf);
                        label { "reason " input type="text" name="reason" required placeholder=(default); }
                        " "
                        button type="submit" { (verb) }
                    }
                }
            }
        }
    }
}
