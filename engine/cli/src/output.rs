//! How the CLI prints: aligned tables, absolute and relative times, status colours only on a
//! terminal (and never with `NO_COLOR`), and the JSON shapes of `--json`.

use std::io::IsTerminal;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use comfy_table::{Cell, Color, ContentArrangement, Table};
use serde::Serialize;
use serde_json::Value;
use uuid::Uuid;

use saga_engine::{Millis, SagaState, SagaStatus, StepStatus};

use crate::error::CliError;

/// Whether to colour output: stdout is a terminal and `NO_COLOR` is unset.
pub(crate) fn colour() -> bool {
    std::io::stdout().is_terminal() && std::env::var_os("NO_COLOR").is_none_or(|v| v.is_empty())
}

/// A borderless, aligned table with the given header.
pub(crate) fn table(header: &[&str]) -> Table {
    let mut t = Table::new();
    t.load_preset(comfy_table::presets::NOTHING)
        .set_content_arrangement(ContentArrangement::Disabled)
        .set_header(header.iter().map(Cell::new));
    for column in t.column_iter_mut() {
        column.set_padding((0, 2));
    }
    if colour() {
        t.enforce_styling();
    } else {
        t.force_no_tty();
    }
    t
}

fn status_colour(status: &str) -> Option<Color> {
    Some(match status {
        "completed" | "compensated" => Color::Green,
        "running" | "compensating" => Color::Cyan,
        "failed" | "compensation_failed" => Color::Red,
        _ => return None,
    })
}

/// Prints a table without trailing blanks.
pub(crate) fn print_table(t: &Table) -> Result<(), CliError> {
    out!("{}", t.trim_fmt());
    Ok(())
}

/// A status cell, coloured by meaning when colour is on.
pub(crate) fn status_cell(status: &str) -> Cell {
    let cell = Cell::new(status);
    match status_colour(status) {
        Some(c) if colour() => cell.fg(c),
        _ => cell,
    }
}

/// A status as text for outside tables, coloured like [`status_cell`].
pub(crate) fn status_text(status: &str) -> String {
    match status_colour(status) {
        Some(c) if colour() => {
            let code = match c {
                Color::Green => 32,
                Color::Cyan => 36,
                _ => 31,
            };
            format!("\x1b[{code}m{status}\x1b[0m")
        }
        _ => status.to_string(),
    }
}

fn system_time(at: Millis) -> SystemTime {
    UNIX_EPOCH + Duration::from_millis(at.max(0) as u64)
}

/// RFC 3339 with milliseconds, UTC: what `--json` uses for every time.
pub(crate) fn rfc3339(at: Millis) -> String {
    humantime::format_rfc3339_millis(system_time(at)).to_string()
}

/// RFC 3339 to the second, for tables.
pub(crate) fn absolute(at: Millis) -> String {
    humantime::format_rfc3339_seconds(system_time(at)).to_string()
}

/// A short duration: `850ms`, `12s`, `3m`, `5h`, `2d`.
pub(crate) fn short(ms: i64) -> String {
    let ms = ms.max(0);
    match ms {
        0..1_000 => format!("{ms}ms"),
        1_000..60_000 => format!("{}s", ms / 1_000),
        60_000..3_600_000 => format!("{}m", ms / 60_000),
        3_600_000..86_400_000 => format!("{}h", ms / 3_600_000),
        _ => format!("{}d", ms / 86_400_000),
    }
}

/// `3m ago` or `in 12s`.
pub(crate) fn relative(at: Millis) -> String {
    let delta = now_ms() - at;
    if delta >= 0 {
        format!("{} ago", short(delta))
    } else {
        format!("in {}", short(-delta))
    }
}

/// One saga in `list`, `stats` and the outcome of `run`, `abort`, `retry` (`--json`).
#[derive(Debug, Serialize)]
pub(crate) struct Summary {
    pub id: Uuid,
    pub definition: String,
    pub version: u32,
    pub status: SagaStatus,
    pub current_step: Option<String>,
    pub attempts: Option<u32>,
    pub created_at: String,
    pub updated_at: String,
    pub next_attempt_at: Option<String>,
    pub last_error: Option<String>,
}

impl From<&SagaState> for Summary {
    fn from(s: &SagaState) -> Self {
        let current = s.current();
        Summary {
            id: s.id,
            definition: s.definition.clone(),
            version: s.version,
            status: s.status,
            current_step: current.map(|c| c.name.clone()),
            attempts: current.map(|c| {
                if matches!(
                    c.status,
                    StepStatus::Compensating | StepStatus::CompensationFailed
                ) || s.status == SagaStatus::Compensating
                {
                    c.compensation_attempts
                } else {
                    c.attempts
                }
            }),
            created_at: rfc3339(s.created_at),
            updated_at: rfc3339(s.updated_at),
            next_attempt_at: s.next_attempt_at.map(rfc3339),
            last_error: s.last_error.clone(),
        }
    }
}

/// A table of sagas, newest first.
pub(crate) fn saga_table(sagas: &[SagaState]) -> Table {
    let mut t = table(&[
        "ID",
        "DEFINITION",
        "STATUS",
        "STEP",
        "ATTEMPTS",
        "STARTED",
        "UPDATED",
        "AGE",
    ]);
    for s in sagas {
        let current = Summary::from(s);
        t.add_row(vec![
            Cell::new(s.id),
            Cell::new(format!("{} v{}", s.definition, s.version)),
            status_cell(s.status.as_str()),
            Cell::new(current.current_step.as_deref().unwrap_or("-")),
            Cell::new(current.attempts.map_or("-".into(), |a| a.to_string())),
            Cell::new(absolute(s.created_at)),
            Cell::new(relative(s.updated_at)),
            Cell::new(short(now_ms() - s.created_at)),
        ]);
    }
    t
}

/// Prints a value as pretty JSON on stdout.
pub(crate) fn print_json<T: Serialize>(value: &T) -> Result<(), CliError> {
    match serde_json::to_string_pretty(value) {
        Ok(text) => out!("{text}"),
        Err(e) => eprintln!("error: cannot render JSON: {e}"),
    }
    Ok(())
}

/// Writes one line to stdout; see `out!`.
pub(crate) fn write_line(line: std::fmt::Arguments<'_>) -> Result<(), CliError> {
    use std::io::Write;
    let mut stdout = std::io::stdout().lock();
    writeln!(stdout, "{line}").map_err(|e| match e.kind() {
        std::io::ErrorKind::BrokenPipe => CliError::ClosedPipe,
        _ => CliError::Output(e.to_string()),
    })
}

/// Now on this machine's clock, in milliseconds since the Unix epoch.
pub(crate) fn now_ms() -> Millis {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| i64::try_from(d.as_millis()).unwrap_or(i64::MAX))
}

/// A history event's detail as `key=value` pairs, nulls left out; the times waits record
/// (`fires_at`, `deadline`, `received_at`) as RFC 3339 like every other time shown.
pub(crate) fn detail(detail: &Value) -> String {
    let is_time = |k: &str| matches!(k, "fires_at" | "deadline" | "received_at");
    match detail {
        Value::Object(map) => map
            .iter()
            .filter(|(_, v)| !v.is_null())
            .map(|(k, v)| match v {
                Value::String(s) => format!("{k}={s}"),
                Value::Number(n) if is_time(k) => match n.as_i64() {
                    Some(at) => format!("{k}={}", rfc3339(at)),
                    None => format!("{k}={n}"),
                },
                other => format!("{k}={other}"),
            })
            .collect::<Vec<_>>()
            .join(" "),
        Value::Null => String::new(),
        other => other.to_string(),
    }
}

/// A step's kind, and the parallel group it is a branch of (`compensatable, parallel book`).
pub(crate) fn kind_text(step: &saga_engine::StepSpec) -> String {
    match step.group() {
        Some(group) => format!("{}, parallel {group}", step.kind().as_str()),
        None => step.kind().as_str().to_string(),
    }
}

/// What a step waits for, in words: a participant's reply to its command, a child saga, a
/// timer, a signal (and the data field its key comes from), or nothing for a step that runs in
/// the mediator (tables show `-`).
pub(crate) fn waits_for(step: &saga_engine::StepSpec) -> Option<String> {
    if let Some(command) = step.command(saga_engine::Phase::Action) {
        return Some(format!("reply to {command}"));
    }
    if let Some(child) = step.child_saga() {
        return Some(format!("child saga {child}"));
    }
    if let Some((signal, key)) = step.signal() {
        return Some(match key {
            Some(field) => format!("signal {signal} (key {field})"),
            None => format!("signal {signal}"),
        });
    }
    match (step.is_timer(), step.sleeps_for()) {
        (true, Some(d)) => Some(format!("timer {}", humantime::format_duration(d))),
        (true, None) => Some("timer (time from the data)".to_string()),
        (false, _) => None,
    }
}
