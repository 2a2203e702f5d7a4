//! The read commands: `list`, `show`, `history`, `stats`, `definitions`. None writes anything.

use std::collections::BTreeMap;

use comfy_table::Cell;
use serde_json::{json, Value};
use uuid::Uuid;

use crate::error::CliError;
use crate::output::{self, print_json, relative, rfc3339, Summary};
use saga_engine::store::{ListQuery, SagaStore};
use saga_engine::Registry;
use saga_engine::StepKind;
use saga_engine::{SagaState, SagaStatus};

/// The ids that `text` names: itself when it is a full id, else up to `limit` ids it is a prefix
/// of (at least 4 hex characters).
pub(crate) async fn matching(
    store: &dyn SagaStore,
    text: &str,
    limit: usize,
) -> Result<Vec<Uuid>, CliError> {
    if let Ok(id) = Uuid::parse_str(text) {
        return Ok(vec![id]);
    }
    let prefix = text.to_ascii_lowercase();
    if prefix.len() < 4 || !prefix.chars().all(|c| c.is_ascii_hexdigit() || c == '-') {
        return Err(CliError::Usage(format!(
            "`{text}` is neither a saga id nor an id prefix of at least 4 hex characters"
        )));
    }
    Ok(store.ids_with_prefix(&prefix, limit).await?)
}

/// Finds the saga a full id or a unique id prefix names.
pub(crate) async fn resolve(store: &dyn SagaStore, text: &str) -> Result<Uuid, CliError> {
    let ids = matching(store, text, 11).await?;
    match ids.as_slice() {
        [] => Err(CliError::NotFound(format!(
            "no saga id starts with `{text}`"
        ))),
        [id] => Ok(*id),
        many => {
            let shown: Vec<String> = many.iter().take(10).map(|id| format!("  {id}")).collect();
            let more = if many.len() > 10 { "\n  ..." } else { "" };
            Err(CliError::Usage(format!(
                "`{text}` is ambiguous; it starts these ids (give more characters):\n{}{more}",
                shown.join("\n")
            )))
        }
    }
}

/// Reads the saga or says it is not there.
pub(crate) async fn load(store: &dyn SagaStore, text: &str) -> Result<SagaState, CliError> {
    let id = resolve(store, text).await?;
    store
        .get(id)
        .await?
        .ok_or_else(|| CliError::NotFound(format!("no saga with id {id}")))
}

/// `saga list`.
pub(crate) async fn list(
    store: &dyn SagaStore,
    query: ListQuery,
    json: bool,
) -> Result<(), CliError> {
    let sagas = store.list(&query).await?;
    let next = (sagas.len() == query.limit)
        .then(|| sagas.last().map(|s| s.id))
        .flatten();
    if json {
        let summaries: Vec<Summary> = sagas.iter().map(Summary::from).collect();
        print_json(&json!({ "sagas": summaries, "next_before": next }))?;
        return Ok(());
    }
    if sagas.is_empty() {
        out!("no sagas match");
        return Ok(());
    }
    output::print_table(&output::saga_table(&sagas))?;
    if let Some(next) = next {
        out!("\nmore: saga list --before {next} (with the same filters)");
    }
    Ok(())
}

/// `saga history`.
pub(crate) async fn history(store: &dyn SagaStore, text: &str, json: bool) -> Result<(), CliError> {
    let saga = load(store, text).await?;
    let events = store.history(saga.id).await?;
    if json {
        let events: Vec<Value> = events
            .iter()
            .map(|e| {
                json!({
                    "seq": e.seq,
                    "event_id": e.event_id,
                    "type": e.kind,
                    "step": e.step,
                    "attempt": e.attempt,
                    "at": rfc3339(e.at),
                    "detail": e.detail,
                })
            })
            .collect();
        print_json(&json!({ "saga_id": saga.id, "events": events }))?;
        return Ok(());
    }
    let mut t = output::table(&["SEQ", "TIME", "TYPE", "STEP", "ATTEMPT", "DETAIL"]);
    for e in &events {
        t.add_row(vec![
            Cell::new(e.seq),
            Cell::new(rfc3339(e.at)),
            Cell::new(e.kind),
            Cell::new(e.step.as_deref().unwrap_or("")),
            Cell::new(e.attempt.map(|a| a.to_string()).unwrap_or_default()),
            Cell::new(output::detail(&e.detail)),
        ]);
    }
    output::print_table(&t)?;
    Ok(())
}

/// `saga stats`.
pub(crate) async fn stats(store: &dyn SagaStore, json: bool) -> Result<(), CliError> {
    let mut counts = store.counts().await?;
    counts.sort_by(|a, b| (&a.0, a.1).cmp(&(&b.0, b.1))); // by definition, then lifecycle order
    let failed = store
        .list(&ListQuery {
            statuses: vec![SagaStatus::Failed],
            limit: 20,
            ..ListQuery::default()
        })
        .await?;
    if json {
        let counts: Vec<Value> = counts
            .iter()
            .map(|(d, s, n)| json!({ "definition": d, "status": s, "count": n }))
            .collect();
        let failed: Vec<Summary> = failed.iter().map(Summary::from).collect();
        print_json(&json!({ "counts": counts, "needs_attention": failed }))?;
        return Ok(());
    }
    let mut by_definition: BTreeMap<&str, BTreeMap<SagaStatus, u64>> = BTreeMap::new();
    for (d, s, n) in &counts {
        *by_definition.entry(d).or_default().entry(*s).or_default() += n;
    }
    let mut header = vec!["DEFINITION"];
    header.extend(SagaStatus::ALL.iter().map(|s| s.as_str()));
    header.push("TOTAL");
    let mut t = output::table(&header);
    for (d, by_status) in &by_definition {
        let mut row = vec![Cell::new(d)];
        row.extend(
            SagaStatus::ALL
                .iter()
                .map(|s| Cell::new(by_status.get(s).copied().unwrap_or(0))),
        );
        row.push(Cell::new(by_status.values().sum::<u64>()));
        t.add_row(row);
    }
    if by_definition.is_empty() {
        out!("no sagas yet");
    } else {
        output::print_table(&t)?;
    }
    if failed.is_empty() {
        out!("\nno failed sagas need attention");
    } else {
        out!("\nfailed sagas that need attention (newest first; `saga show ID`, then `saga retry ID`):");
        let mut t = output::table(&["ID", "DEFINITION", "FAILED", "LAST ERROR"]);
        for s in &failed {
            t.add_row(vec![
                Cell::new(s.id),
                Cell::new(&s.definition),
                Cell::new(relative(s.updated_at)),
                Cell::new(s.last_error.as_deref().unwrap_or("")),
            ]);
        }
        output::print_table(&t)?;
    }
    Ok(())
}

/// `saga definitions`, with the sagas in flight per version (`None`: no store yet).
pub(crate) fn definitions(
    registry: &Registry,
    in_flight: Option<&[(String, u32, u64)]>,
    json: bool,
) -> Result<(), CliError> {
    let defs = registry.definitions();
    let flying = |name: &str, version: u32| {
        in_flight.map(|all| {
            all.iter()
                .find(|(d, v, _)| d == name && *v == version)
                .map_or(0, |f| f.2)
        })
    };
    let unregistered: Vec<&(String, u32, u64)> = in_flight
        .unwrap_or_default()
        .iter()
        .filter(|(d, v, _)| registry.get(d, *v).is_none())
        .collect();
    if json {
        let defs: Vec<Value> = defs
            .iter()
            .map(|d| {
                let steps: Vec<Value> = d
                    .steps()
                    .iter()
                    .map(|s| {
                        json!({
                            "name": s.name(),
                            "kind": s.kind(),
                            "has_compensation": s.has_compensation(),
                            "compensation_name": s.compensation_name(),
                            "max_attempts": s.retry_policy().max_attempts,
                            "compensation_max_attempts": s.compensation_retry_policy().max_attempts,
                            "timeout_ms": s.timeout().as_millis() as u64,
                            "waits_for": output::waits_for(s),
                            "group": s.group(),
                        })
                    })
                    .collect();
                json!({
                    "name": d.name(),
                    "version": d.version(),
                    "in_flight": flying(d.name(), d.version()),
                    "steps": steps,
                })
            })
            .collect();
        let unregistered: Vec<Value> = unregistered
            .iter()
            .map(|(d, v, n)| json!({ "name": d, "version": v, "in_flight": n }))
            .collect();
        print_json(&json!({ "definitions": defs, "unregistered_in_flight": unregistered }))?;
        return Ok(());
    }
    for d in defs {
        match flying(d.name(), d.version()) {
            Some(n) => out!("{} v{}  ({n} in flight)", d.name(), d.version()),
            None => out!("{} v{}", d.name(), d.version()),
        }
        let mut t = output::table(&[
            "STEP",
            "KIND",
            "COMPENSATION",
            "WAITS FOR",
            "ATTEMPTS",
            "TIMEOUT",
        ]);
        for s in d.steps() {
            let attempts = match (s.kind(), s.retry_policy().max_attempts) {
                (StepKind::Retriable, _) | (_, None) => "until success".to_string(),
                (_, Some(n)) => n.to_string(),
            };
            t.add_row(vec![
                Cell::new(s.name()),
                Cell::new(output::kind_text(s)),
                Cell::new(match (s.has_compensation(), s.compensation_name()) {
                    (true, Some(name)) => name,
                    (true, None) => "yes",
                    (false, _) => "-",
                }),
                Cell::new(output::waits_for(s).unwrap_or_else(|| "-".into())),
                Cell::new(attempts),
                Cell::new(humantime::format_duration(s.timeout())),
            ]);
        }
        output::print_table(&t)?;
        out!();
    }
    for (d, v, n) in unregistered {
        out!("{d} v{v}: {n} in flight, not registered in this program (no worker of it runs them)");
    }
    Ok(())
}
