//! The scale checks: many sagas in flight at once (memory), and a store of many finished sagas
//! (how fast the CLI still answers).

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use saga::engine::{
    bus::Filter, store::SagaStore, Mediator, Registry, SagaDefinition, SagaStatus, Step,
    StepContext,
};
use saga::sagas::Order;
use tokio::sync::{watch, Notify};
use uuid::Uuid;

use crate::order;
use crate::report::{ms, peak_rss_kib, reset_peak_rss};
use crate::BoxError;

/// How long a check may wait for sagas to arrive or finish before it fails.
const PATIENCE: Duration = Duration::from_secs(600);

/// Starts `n` sagas that each park in a step (as if waiting on a slow participant) until all `n`
/// are in flight at once, reports the process's peak memory then, and lets them finish.
pub async fn in_flight(store: Arc<dyn SagaStore>, n: usize) -> Result<(), BoxError> {
    let (open, gate) = watch::channel(false);
    let parked = Arc::new((AtomicUsize::new(0), Notify::new()));
    let mut registry = Registry::new();
    registry.register(
        SagaDefinition::<Order>::new("Parked", 1)
            .step(Step::new("wait_for_participant", {
                let parked = parked.clone();
                move |ctx: StepContext<Order>| {
                    let (parked, mut gate) = (parked.clone(), gate.clone());
                    async move {
                        parked.0.fetch_add(1, Ordering::SeqCst);
                        parked.1.notify_one();
                        let _ = gate.wait_for(|open| *open).await;
                        Ok(ctx.data)
                    }
                }
            }))
            .step(Step::new(
                "finish",
                |mut ctx: StepContext<Order>| async move {
                    ctx.data.confirmed = true;
                    Ok(ctx.data)
                },
            ))
            .build()?,
    )?;
    let mediator = Arc::new(
        Mediator::builder(store.clone(), registry)
            .concurrency(n)
            .max_in_flight(n)
            .start()
            .await?,
    );
    let mut finals = mediator
        .subscribe(Filter::types([
            "SagaCompleted",
            "SagaCompensated",
            "SagaFailed",
        ]))
        .await?;
    reset_peak_rss();
    let started = Instant::now();
    start_all(&mediator, "Parked", n).await?;
    tokio::time::timeout(PATIENCE, async {
        loop {
            let notified = parked.1.notified();
            if parked.0.load(Ordering::SeqCst) >= n {
                return;
            }
            notified.await;
        }
    })
    .await
    .map_err(|_| "the sagas did not all reach their parked step")?;
    let all_in = started.elapsed();
    let in_flight = mediator.in_flight();
    let peak = peak_rss_kib();
    open.send_replace(true);
    let mut ended = 0;
    tokio::time::timeout(PATIENCE, async {
        while ended < n {
            if finals.next().await.is_none() {
                break;
            }
            ended += 1;
        }
    })
    .await
    .map_err(|_| "the parked sagas did not all finish")?;
    let finished = started.elapsed();
    let completed: u64 = store
        .counts()
        .await?
        .into_iter()
        .filter(|(d, s, _)| d == "Parked" && *s == SagaStatus::Completed)
        .map(|(_, _, count)| count)
        .sum();
    if completed != n as u64 || in_flight != n {
        return Err(format!(
            "{in_flight} of {n} sagas were in flight at once and {completed} completed"
        )
        .into());
    }
    println!(
        "\n| sagas in flight at once | all parked after s | peak RSS MiB | all completed after s |"
    );
    println!("|---:|---:|---:|---:|");
    println!(
        "| {n} | {:.1} | {:.0} | {:.1} |",
        all_in.as_secs_f64(),
        peak as f64 / 1024.0,
        finished.as_secs_f64()
    );
    Ok(())
}

/// Starts `n` sagas of `name` (OrderSaga data), from 64 callers at once, each returning when its
/// saga is durable.
pub async fn start_all(
    mediator: &Arc<Mediator>,
    name: &'static str,
    n: usize,
) -> Result<(), BoxError> {
    let next = Arc::new(AtomicUsize::new(0));
    let mut starters = Vec::new();
    for _ in 0..64 {
        let (mediator, next) = (mediator.clone(), next.clone());
        starters.push(tokio::spawn(async move {
            loop {
                let i = next.fetch_add(1, Ordering::Relaxed);
                if i >= n {
                    return Ok::<_, saga::engine::EngineError>(());
                }
                mediator.start(name, &order::order(i, 0.0)).await?;
            }
        }));
    }
    for starter in starters {
        starter.await??;
    }
    Ok(())
}

/// Fills the store with `n` finished OrderSagas (copies of three real ones: completed,
/// compensated, failed), then times the `saga` CLI on it.
pub async fn fill_and_time(store: Arc<dyn SagaStore>, url: &str, n: usize) -> Result<(), BoxError> {
    let saga = std::env::current_exe()?
        .parent()
        .and_then(|examples| examples.parent())
        .map(|dir| dir.join("saga"))
        .filter(|path| path.exists())
        .ok_or("the `saga` binary is not built next to the bench: run `cargo build --release --bin saga` first")?;
    let templates = templates(store.clone()).await?;
    let started = Instant::now();
    crate::fill::fill(url, &templates, n).await?;
    let filled = started.elapsed();
    println!(
        "\nfilled {n} finished sagas in {:.1} s ({:.0} sagas/s)",
        filled.as_secs_f64(),
        n as f64 / filled.as_secs_f64()
    );
    let failed = store
        .list(&saga::engine::store::ListQuery {
            statuses: vec![SagaStatus::Failed],
            limit: 1,
            ..Default::default()
        })
        .await?;
    let some_failed = failed.first().ok_or("no failed saga in the store")?.id;
    let total: u64 = store.counts().await?.iter().map(|c| c.2).sum();
    println!("\n| command on {total} sagas | runs | median ms | min ms | max ms |");
    println!("|---|---:|---:|---:|---:|");
    let commands: [(String, Vec<String>); 3] = [
        (
            "saga list --status failed".into(),
            vec!["list".into(), "--status".into(), "failed".into()],
        ),
        (
            "saga show ID".into(),
            vec!["show".into(), some_failed.to_string()],
        ),
        (
            "saga show PREFIX".into(),
            vec!["show".into(), some_failed.to_string()[..13].to_string()],
        ),
    ];
    for (name, command) in commands {
        let mut times = Vec::new();
        for _ in 0..11 {
            let begun = Instant::now();
            let out = std::process::Command::new(&saga)
                .arg("--database")
                .arg(url)
                .args(&command)
                .output()?;
            times.push(begun.elapsed());
            if !out.status.success() || out.stdout.is_empty() {
                return Err(
                    format!("`{name}` failed: {}", String::from_utf8_lossy(&out.stderr)).into(),
                );
            }
        }
        times.sort_unstable();
        println!(
            "| `{name}` | {} | {} | {} | {} |",
            times.len(),
            ms(times[times.len() / 2]),
            ms(times[0]),
            ms(times[times.len() - 1])
        );
    }
    let tenth_page = store
        .list(&saga::engine::store::ListQuery {
            limit: 500,
            ..Default::default()
        })
        .await?
        .last()
        .map(|s| s.id)
        .ok_or("the store is empty")?;
    crate::ui::pages(&saga, url, total, some_failed, tenth_page)?;
    Ok(())
}

/// Runs one OrderSaga to each final status and returns their ids: completed, compensated,
/// failed.
async fn templates(store: Arc<dyn SagaStore>) -> Result<[Uuid; 3], BoxError> {
    let mut registry = Registry::new();
    registry.register(order::definition()?)?;
    let mediator = Mediator::builder(store, registry).start().await?;
    let mut ids = [Uuid::nil(); 3];
    let customers = ["template", order::DECLINED, order::STUCK];
    let expected = [
        SagaStatus::Completed,
        SagaStatus::Compensated,
        SagaStatus::Failed,
    ];
    for (slot, (customer, status)) in customers.iter().zip(expected).enumerate() {
        let mut data = order::order(slot, 0.0);
        data.customer = customer.to_string();
        let id = mediator.start("OrderSaga", &data).await?;
        let ended = tokio::time::timeout(PATIENCE, mediator.wait(id)).await??;
        if ended.status != status {
            return Err(format!("the {status} template ended {}", ended.status).into());
        }
        ids[slot] = id;
    }
    mediator.shutdown().await;
    Ok(ids)
}
