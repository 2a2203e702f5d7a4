//! Sagas waiting on durable timers: starts `n` sagas whose first step is a timer, reports the
//! process's peak memory and the sagas in flight (held in memory) while they all wait, then how
//! fast the timers fire and the sagas finish once their time comes.

use std::sync::Arc;
use std::time::{Duration, Instant};

use saga::engine::{
    bus::Filter, store::SagaStore, Mediator, Registry, SagaDefinition, Step, StepContext,
};
use saga::sagas::Order;

use crate::report::{peak_rss_kib, reset_peak_rss};
use crate::BoxError;

/// Starts `n` sagas that wait `delay` on a timer, then finish.
pub async fn waiting(store: Arc<dyn SagaStore>, n: usize, delay: Duration) -> Result<(), BoxError> {
    let mut registry = Registry::new();
    registry.register(
        SagaDefinition::<Order>::new("Timed", 1)
            .step(Step::sleep("hold", delay))
            .step(Step::new(
                "finish",
                |mut ctx: StepContext<Order>| async move {
                    ctx.data.confirmed = true;
                    Ok(ctx.data)
                },
            ))
            .build()?,
    )?;
    let mediator = Arc::new(Mediator::builder(store.clone(), registry).start().await?);
    let mut finals = mediator
        .subscribe(Filter::types([
            "SagaCompleted",
            "SagaCompensated",
            "SagaFailed",
        ]))
        .await?;
    reset_peak_rss();
    let started = Instant::now();
    crate::scale::start_all(&mediator, "Timed", n).await?;
    let all_started = started.elapsed();
    if all_started >= delay {
        return Err(format!("starting took {all_started:?}, past the timers' {delay:?}: give a longer --timer-delay").into());
    }
    let waiting = store
        .unfinished_definitions()
        .await?
        .iter()
        .map(|(_, _, c)| c)
        .sum::<u64>();
    let in_memory = mediator.in_flight();
    let peak = peak_rss_kib();
    let mut ended = 0;
    tokio::time::timeout(delay * 4 + Duration::from_secs(600), async {
        while ended < n {
            if finals.next().await.is_none() {
                break;
            }
            ended += 1;
        }
    })
    .await
    .map_err(|_| "the timed sagas did not all finish")?;
    let fired = started.elapsed().saturating_sub(delay);
    println!(
        "\n| sagas waiting on timers | all started after s | still waiting | driven in memory | peak RSS MiB | all fired and completed s after the first was due |"
    );
    println!("|---:|---:|---:|---:|---:|---:|");
    println!(
        "| {n} | {:.1} | {waiting} | {in_memory} | {:.0} | {:.1} |",
        all_started.as_secs_f64(),
        peak as f64 / 1024.0,
        fired.as_secs_f64()
    );
    Ok(())
}
