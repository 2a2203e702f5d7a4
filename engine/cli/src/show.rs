//! `saga show`: everything about one saga that answers "why is this stuck?" at a glance: status,
//! current step, last error, next attempt, lease, the compensations still to run, a per-step
//! table with timings from the history, the compensation phase apart, and the data.

use std::path::Path;

use comfy_table::Cell;
use serde::Serialize;
use serde_json::Value;

use crate::error::CliError;
use crate::output::{
    self, absolute, print_json, relative, rfc3339, short, status_cell, status_text, Summary,
};
use crate::read::load;
use crate::timeline;
use saga_engine::store::SagaStore;
use saga_engine::Registry;
use saga_engine::StepKind;
use saga_engine::{Awaiting, Millis, SagaState, SagaStatus, Wait};
use saga_engine::{EventKind, HistoryEvent};

/// When one phase (action or compensation) of a step ran, from the history.
#[derive(Debug, Default, Serialize)]
struct Timing {
    started_at: Option<String>,
    finished_at: Option<String>,
    duration_ms: Option<i64>,
}

fn timing(
    history: &[HistoryEvent],
    step: &str,
    start: EventKind,
    done: EventKind,
    failed: EventKind,
) -> Timing {
    let of_step = |e: &&HistoryEvent| e.step.as_deref() == Some(step);
    let started = history
        .iter()
        .filter(of_step)
        .find(|e| e.kind == start)
        .map(|e| e.at);
    let finished = history
        .iter()
        .filter(of_step)
        .filter(|e| e.kind == done || (e.kind == failed && e.detail["retry_in_ms"].is_null()))
        .map(|e| e.at)
        .next_back();
    Timing {
        started_at: started.map(rfc3339),
        finished_at: finished.map(rfc3339),
        duration_ms: started.zip(finished).map(|(s, f)| f - s),
    }
}

#[derive(Debug, Serialize)]
struct StepView {
    name: String,
    kind: Option<StepKind>,
    status: String,
    has_compensation: bool,
    /// The compensation's own name, when the definition (registered here) gives it one.
    compensation_name: Option<String>,
    attempts: u32,
    compensation_attempts: u32,
    outcome_unknown: bool,
    last_error: Option<String>,
    action: Timing,
    compensation: Timing,
}

#[derive(Debug, Serialize)]
struct Lease {
    owner: String,
    expires_at: Option<String>,
}

/// A saga linked to this one (its parent, or a child), with the parent's step that links them.
#[derive(Debug, Serialize)]
struct Link {
    id: uuid::Uuid,
    step: String,
}

#[derive(Debug, Serialize)]
struct SagaView {
    #[serde(flatten)]
    summary: Summary,
    parent: Option<Link>,
    children: Vec<Link>,
    data: Value,
    lease: Option<Lease>,
    fencing_token: i64,
    awaiting: Option<Awaiting>,
    /// The trace id of the saga's OpenTelemetry trace, when it is traced.
    trace_id: Option<String>,
    compensations_left: Vec<String>,
    steps: Vec<StepView>,
}

/// `saga show`.
pub(crate) async fn show(
    store: &dyn SagaStore,
    registry: &Registry,
    text: &str,
    json: bool,
    svg: Option<&Path>,
) -> Result<(), CliError> {
    let saga = load(store, text).await?;
    let history = store.history(saga.id).await?;
    let def = registry.get(&saga.definition, saga.version);
    if let Some(path) = svg {
        if path.as_os_str() == "-" {
            return Err(CliError::Usage(
                "--svg takes a file name (stdout holds the saga's table)".into(),
            ));
        }
        let t = timeline::of(registry, &saga, &history);
        std::fs::write(path, timeline::svg::document(&t)).map_err(|e| {
            CliError::Output(format!(
                "cannot write the timeline to {}: {e}",
                path.display()
            ))
        })?;
        eprintln!("timeline written to {}", path.display());
    }
    let steps: Vec<StepView> = saga
        .steps
        .iter()
        .enumerate()
        .map(|(i, s)| StepView {
            name: s.name.clone(),
            kind: def.and_then(|d| d.steps().get(i)).map(|d| d.kind()),
            status: s.status.to_string(),
            has_compensation: s.has_compensation,
            compensation_name: def
                .and_then(|d| d.steps().get(i))
                .and_then(|d| d.compensation_name())
                .map(str::to_string),
            attempts: s.attempts,
            compensation_attempts: s.compensation_attempts,
            outcome_unknown: s.outcome_unknown,
            last_error: s.last_error.clone(),
            action: timing(
                &history,
                &s.name,
                EventKind::StepStarted,
                EventKind::StepCompleted,
                EventKind::StepFailed,
            ),
            compensation: timing(
                &history,
                &s.name,
                EventKind::CompensationStarted,
                EventKind::StepCompensated,
                EventKind::CompensationFailed,
            ),
        })
        .collect();
    let link = |(id, step): (uuid::Uuid, String)| Link { id, step };
    let view = SagaView {
        summary: Summary::from(&saga),
        parent: store.parent_of(saga.id).await?.map(link),
        children: store
            .children_of(saga.id)
            .await?
            .into_iter()
            .map(link)
            .collect(),
        data: saga.data.clone(),
        lease: saga.lease_owner.clone().map(|owner| Lease {
            owner,
            expires_at: saga.lease_expires_at.map(rfc3339),
        }),
        fencing_token: saga.fencing_token,
        awaiting: saga.awaiting.clone(),
        trace_id: trace_id(&saga),
        compensations_left: def
            .map_or_else(
                || saga.compensations_left(),
                |d| d.compensations_left(&saga),
            )
            .iter()
            .map(|s| s.to_string())
            .collect(),
        steps,
    };
    if json {
        print_json(&view)?;
        return Ok(());
    }
    print_saga(&saga, &view)?;
    Ok(())
}

/// What a saga waits for, in words (`when` writes a time): the reply to a command, a timer, or a
/// signal, with its deadline. `None` when it waits for nothing.
pub(crate) fn waiting_for(saga: &SagaState, when: impl Fn(Millis) -> String) -> Option<String> {
    let awaiting = saga.awaiting.as_ref()?;
    let step = saga
        .steps
        .get(awaiting.step)
        .map_or("?", |s| s.name.as_str());
    Some(match &awaiting.wait {
        Wait::Reply => format!(
            "the reply to {step}'s {} command (attempt {}), deadline {}",
            awaiting.phase.as_str(),
            awaiting.attempt,
            when(saga.next_attempt_at?)
        ),
        Wait::Timer { fires_at } => format!("{step}'s timer, which fires {}", when(*fires_at)),
        Wait::Signal {
            name,
            key,
            deadline,
        } => format!(
            "the signal `{name}` ({step}; sent to this saga{}), deadline {}",
            key.as_ref()
                .map_or(String::new(), |k| format!(" or to key `{k}`")),
            when(*deadline)
        ),
        Wait::Child { id, started } => match (awaiting.phase, started) {
            (saga_engine::Phase::Action, false) => format!("{step} to start its child saga {id}"),
            (saga_engine::Phase::Action, true) => format!("its child saga {id} ({step}) to end"),
            (_, false) => format!("{step} to ask its child saga {id} to compensate"),
            (_, true) => format!("its child saga {id} ({step}) to compensate"),
        },
    })
}

/// A time as `2026-12-01T10:00:00Z (3m ago)`.
pub(crate) fn when(at: Millis) -> String {
    format!("{} ({})", absolute(at), relative(at))
}

fn print_saga(saga: &SagaState, view: &SagaView) -> Result<(), CliError> {
    out!("saga        {}", saga.id);
    out!("definition  {} v{}", saga.definition, saga.version);
    out!("status      {}", status_text(saga.status.as_str()));
    if let Some(current) = saga.current() {
        out!("current     {}", current.name);
    }
    if let Some(parent) = &view.parent {
        out!("parent      {} (its step {})", parent.id, parent.step);
    }
    for child in &view.children {
        out!("child       {} (started by {})", child.id, child.step);
    }
    if let Some(error) = &saga.last_error {
        out!("last error  {error}");
    }
    if let Some(waiting) = waiting_for(saga, when) {
        out!("waiting     for {waiting}");
    } else if let Some(due) = saga.next_attempt_at {
        out!("next try    {}", when(due));
    }
    match (&saga.lease_owner, saga.lease_expires_at) {
        (Some(owner), Some(until)) => out!("lease       {owner} until {}", when(until)),
        _ if saga.awaiting.is_some() => {
            out!("lease       none (nothing runs until what it waits for comes, or its deadline)")
        }
        _ if !saga.status.is_final() => {
            out!("lease       none (the next worker to look will pick it up)")
        }
        _ => {}
    }
    if !view.compensations_left.is_empty() && saga.status != SagaStatus::Running {
        out!("to undo     {}", view.compensations_left.join(", then "));
    }
    if let Some(trace) = &view.trace_id {
        out!("trace       {trace}");
    }
    out!("started     {}", when(saga.created_at));
    out!("updated     {}", when(saga.updated_at));

    out!();
    let mut steps = output::table(&[
        "STEP",
        "KIND",
        "STATUS",
        "ATTEMPTS",
        "STARTED",
        "DURATION",
        "LAST ERROR",
    ]);
    for s in &view.steps {
        let (started, duration) = phase_cells(&s.action);
        steps.add_row(vec![
            Cell::new(&s.name),
            Cell::new(s.kind.map_or("-", |k| k.as_str())),
            status_cell(&s.status),
            Cell::new(s.attempts),
            Cell::new(started),
            Cell::new(duration),
            Cell::new(s.last_error.as_deref().unwrap_or("")),
        ]);
    }
    output::print_table(&steps)?;

    let undone: Vec<&StepView> = view
        .steps
        .iter()
        .rev()
        .filter(|s| s.compensation_attempts > 0 || view.compensations_left.contains(&s.name))
        .collect();
    if !undone.is_empty() {
        out!("\ncompensation (last step first)");
        let mut comp = output::table(&["STEP", "STATUS", "ATTEMPTS", "STARTED", "DURATION"]);
        for s in undone {
            let status = match s.status.as_str() {
                "compensating" | "compensated" | "compensation_failed" => s.status.clone(),
                _ => "to do".to_string(),
            };
            let (started, duration) = phase_cells(&s.compensation);
            let step = match &s.compensation_name {
                Some(name) => format!("{} ({name})", s.name),
                None => s.name.clone(),
            };
            comp.add_row(vec![
                Cell::new(step),
                status_cell(&status),
                Cell::new(s.compensation_attempts),
                Cell::new(started),
                Cell::new(duration),
            ]);
        }
        output::print_table(&comp)?;
    }
    out!("\ndata");
    out!(
        "{}",
        serde_json::to_string_pretty(&saga.data).unwrap_or_else(|_| saga.data.to_string())
    );
    Ok(())
}

fn phase_cells(t: &Timing) -> (String, String) {
    let started = t.started_at.clone().unwrap_or_else(|| "-".into());
    let duration = t.duration_ms.map_or("-".into(), short);
    (started, duration)
}

/// The trace id in the saga's stored `traceparent` (`00-TRACE-SPAN-FLAGS`), which trace viewers
/// search by.
fn trace_id(saga: &SagaState) -> Option<String> {
    let parent = saga.trace_parent.as_deref()?;
    parent.split('-').nth(1).map(str::to_string)
}
