//! `GET /`: the sagas newest first, with counts by status, the filters, the failed sagas that
//! need attention marked, and the same cursor paging as `saga list --before`.

use std::collections::{BTreeMap, BTreeSet};
use std::time::Duration;

use axum::extract::{RawQuery, State};
use axum::response::{IntoResponse, Redirect, Response};
use maud::{html, Markup};

use super::counts::Counts;
use super::layout::{self, badge, when};
use super::query::Filters;
use super::{Shared, UiError};
use crate::output::{relative, short, Summary};
use crate::read::matching;
use saga_engine::{SagaState, SagaStatus};

/// `GET /`.
pub(super) async fn page(
    State(ui): State<Shared>,
    RawQuery(raw): RawQuery,
) -> Result<Response, UiError> {
    let filters = Filters::parse(raw.as_deref())?;
    let store = ui.store.as_ref();
    let mut found = None;
    if let Some(text) = &filters.find {
        let ids = matching(store, text, filters.limit + 1).await?;
        match ids.as_slice() {
            [] => {
                return Err(UiError::NotFound(format!(
                    "no saga id starts with `{text}`"
                )))
            }
            [id] if store.get(*id).await?.is_some() => {
                return Ok(Redirect::to(&format!("/sagas/{id}")).into_response())
            }
            [id] => return Err(UiError::NotFound(format!("no saga with id {id}"))),
            many => {
                let mut sagas = Vec::with_capacity(many.len());
                for id in many.iter().rev().take(filters.limit) {
                    sagas.extend(store.get(*id).await?);
                }
                found = Some((text.clone(), sagas, many.len() > filters.limit));
            }
        }
    }
    let (counts, age) = Counts::get(&ui).await?;
    let mut by_status: BTreeMap<SagaStatus, u64> = BTreeMap::new();
    let mut definitions: BTreeSet<String> = ui
        .registry
        .definitions()
        .iter()
        .map(|d| d.name().to_string())
        .collect();
    for (definition, status, n) in counts.iter() {
        // The tiles count the chosen definition's sagas, of any age.
        if filters.definition.as_ref().is_none_or(|d| d == definition) {
            *by_status.entry(*status).or_default() += n;
        }
        definitions.insert(definition.clone());
    }
    let (sagas, note, next) = match found {
        Some((text, sagas, more)) => {
            let note = format!(
                "{}{} saga ids start with `{text}`; give more characters to open one",
                if more { "more than " } else { "" },
                sagas.len()
            );
            (sagas, Some(note), None)
        }
        None => {
            // One more than shown tells whether an older page exists.
            let mut query = filters.query();
            query.limit += 1;
            let mut sagas = store.list(&query).await?;
            let more = sagas.len() > filters.limit;
            sagas.truncate(filters.limit);
            let next = more.then(|| sagas.last().map(|s| s.id)).flatten();
            (sagas, None, next)
        }
    };
    let total: u64 = by_status.values().sum();
    let body = html! {
        h1 { "Sagas" }
        (count_tiles(&filters, &by_status, total))
        @if age >= Duration::from_secs(1) {
            p class="live-note" { "counted " (short(age.as_millis() as i64)) " ago (a count of this store takes long, so it is kept a while)" }
        }
        (filter_form(&filters, &definitions))
        @if let Some(note) = &note { p class="note" { (note) } }
        @if sagas.is_empty() {
            p class="empty" { "No sagas match." }
        } @else {
            (table(&sagas))
        }
        div class="pager" {
            @if filters.before.is_some() { a href=(filters.link(None)) rel="first" { "← Newest" } }
            @if let Some(next) = next { a href=(filters.link(Some(next))) rel="next" id="next-page" { "Older →" } }
        }
    };
    Ok(layout::page("Sagas", body).into_response())
}

fn count_tiles(filters: &Filters, by_status: &BTreeMap<SagaStatus, u64>, total: u64) -> Markup {
    // A tile's link shows what it counts: its status, the definition chosen, any age.
    let only = |status: SagaStatus| Filters {
        statuses: vec![status],
        before: None,
        since: None,
        ..filters.clone()
    };
    let all = Filters {
        statuses: Vec::new(),
        before: None,
        since: None,
        ..filters.clone()
    };
    html! {
        div class="counts" {
            a href=(all.link(None)) class=[filters.statuses.is_empty().then_some("active")] data-count="all" {
                span class="n" { (total) } "all"
            }
            @for status in SagaStatus::ALL {
                @let n = by_status.get(status).copied().unwrap_or(0);
                @let attention = *status == SagaStatus::Failed && n > 0;
                a href=(only(*status).link(None)) data-count=(status.as_str())
                    class={ (status.as_str()) @if attention { " attention" } @if filters.statuses == [*status] { " active" } } {
                    span class="n" { (n) } (status.as_str())
                    @if attention { " · needs attention" }
                }
            }
        }
    }
}

fn filter_form(filters: &Filters, definitions: &BTreeSet<String>) -> Markup {
    html! {
        form class="filters" method="get" action="/" {
            fieldset {
                legend { "status" }
                @for status in SagaStatus::ALL {
                    label {
                        input type="checkbox" name="status" value=(status.as_str())
                            checked[filters.statuses.contains(status)];
                        (status.as_str())
                    }
                }
            }
            label { "definition"
                select name="definition" {
                    option value="" { "any" }
                    @for d in definitions {
                        option value=(d) selected[filters.definition.as_deref() == Some(d.as_str())] { (d) }
                    }
                }
            }
            label { "started within or since"
                input type="text" name="since" placeholder="2h, or a time"
                    value=[filters.since.as_ref().map(|s| s.0.as_str())];
            }
            button type="submit" { "Filter" }
        }
        form class="filters" method="get" action="/" {
            label { "find a saga by id or prefix (4 characters or more)"
                input type="search" name="find" placeholder="id or prefix" value=[filters.find.as_deref()];
            }
            button type="submit" { "Find" }
        }
    }
}

fn table(sagas: &[SagaState]) -> Markup {
    html! {
        table class="sagas" {
            thead { tr { th { "id" } th { "definition" } th { "status" } th { "step" } th { "attempts" } th { "started" } th { "updated" } th { "last error" } } }
            tbody {
                @for s in sagas {
                    @let summary = Summary::from(s);
                    @let attention = s.status == SagaStatus::Failed;
                    tr class=[attention.then_some("attention")] data-saga=(s.id) data-status=(s.status.as_str()) {
                        td class="id" { a href={ "/sagas/" (s.id) } { (s.id) } }
                        td { (s.definition) " v" (s.version) }
                        td { (badge(s.status.as_str())) @if attention { " " span class="mark" title="a failed saga waits for an operator" { "⚠ needs attention" } } }
                        td { (summary.current_step.as_deref().unwrap_or("-")) }
                        td { (summary.attempts.map_or("-".to_string(), |a| a.to_string())) }
                        td { (when(s.created_at)) }
                        td { (relative(s.updated_at)) }
                        td class="error" { (s.last_error.as_deref().unwrap_or("")) }
                    }
                }
            }
        }
    }
}
