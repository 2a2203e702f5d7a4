//! `saga dead-letters`: what consumer groups gave up on, listed, shown and replayed. Reads the
//! bus named by `--bus` (or `SAGA_BUS_URL`); the in-process bus keeps none across processes.

use comfy_table::Cell;

use crate::error::CliError;
use crate::output::{self, print_json, relative};
use saga_engine::bus::{DeadLetter, EventBus};

/// `saga dead-letters list`.
pub(crate) async fn list(bus: &dyn EventBus, limit: usize, json: bool) -> Result<(), CliError> {
    let letters = bus.dead_letters().list(limit).await?;
    if json {
        print_json(&serde_json::json!({ "dead_letters": letters }))?;
        return Ok(());
    }
    if letters.is_empty() {
        out!("no dead letters");
        return Ok(());
    }
    let mut t = output::table(&[
        "ID",
        "GROUP",
        "ROUTE",
        "EVENT",
        "DELIVERIES",
        "DEAD",
        "REASON",
    ]);
    for l in &letters {
        t.add_row(vec![
            Cell::new(&l.id),
            Cell::new(&l.group),
            Cell::new(&l.route),
            Cell::new(
                l.event_id()
                    .map(|id| id.to_string())
                    .unwrap_or_else(|| "-".into()),
            ),
            Cell::new(l.deliveries),
            Cell::new(relative(l.dead_at)),
            Cell::new(&l.reason),
        ]);
    }
    output::print_table(&t)?;
    Ok(())
}

/// Finds one dead letter or says it is not there.
async fn load(bus: &dyn EventBus, id: &str) -> Result<DeadLetter, CliError> {
    bus.dead_letters().get(id).await?.ok_or_else(|| {
        CliError::NotFound(format!(
            "no dead letter with id `{id}`; `saga dead-letters list` shows them"
        ))
    })
}

/// `saga dead-letters show ID`.
pub(crate) async fn show(bus: &dyn EventBus, id: &str, json: bool) -> Result<(), CliError> {
    let l = load(bus, id).await?;
    if json {
        print_json(&l)?;
        return Ok(());
    }
    out!("dead letter {}", l.id);
    out!("  group:      {}", l.group);
    out!("  route:      {}", l.route);
    out!("  reason:     {}", l.reason);
    out!("  deliveries: {}", l.deliveries);
    out!(
        "  dead:       {} ({})",
        output::absolute(l.dead_at),
        relative(l.dead_at)
    );
    match l.event_id() {
        Some(id) => out!("  event:      {id} ({})", l.kind().unwrap_or_default()),
        None => out!("  event:      (the body is not an event envelope)"),
    }
    out!("  body:       {}", l.body);
    Ok(())
}

/// `saga dead-letters replay ID`.
pub(crate) async fn replay(bus: &dyn EventBus, id: &str, json: bool) -> Result<(), CliError> {
    // Checked first, so an unknown id is "not found" and nothing is published.
    load(bus, id).await?;
    let l = bus.dead_letters().replay(id).await?;
    if json {
        print_json(&serde_json::json!({ "replayed": l.id, "route": l.route }))?;
    } else {
        out!(
            "replayed dead letter {} on route {}; every group bound to it receives it again",
            l.id,
            l.route
        );
    }
    Ok(())
}
