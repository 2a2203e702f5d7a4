//! The in-process tier of the crash matrix: seeded and deterministic, many runs a minute on a
//! file in tmpfs. Each run arms one crash point in `halt` mode: the mediator stops dead there,
//! is dropped (its store and tasks with it), and a new mediator on a freshly opened store
//! recovers the saga; the invariants are then checked. `SAGA_CRASH_SEED` replays a run,
//! `SAGA_CRASH_RUNS` makes it longer. Also the zombie: a mediator frozen past its lease while
//! another takes over, whose later write is refused.

use std::collections::HashSet;
use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, Instant};

use saga::engine::fault::CRASH_POINTS;
use saga::engine::{
    bus::EventBus, bus::Filter, bus::InProcessBus, fault::FaultPlan, store, Mediator, SagaStatus,
};
use saga::sagas::order;
use saga::sagas::Participants;
use uuid::Uuid;

use crate::common::*;
use crate::crash::{check_with, Db};

const SCENARIOS: [(Option<&str>, SagaStatus); 5] = [
    (None, SagaStatus::Completed),
    (Some("validate_order"), SagaStatus::Compensated),
    (Some("reserve_inventory"), SagaStatus::Compensated),
    (Some("charge_payment"), SagaStatus::Compensated),
    (Some("create_shipment"), SagaStatus::Compensated),
];

fn scratch() -> tempfile::TempDir {
    // tmpfs where there is one: these runs are about logic, not disks.
    match Path::new("/dev/shm").is_dir() {
        true => tempfile::tempdir_in("/dev/shm").unwrap(),
        false => tempfile::tempdir().unwrap(),
    }
}

async fn mediator(
    store: Arc<dyn saga::engine::store::SagaStore>,
    p: &Participants,
    faults: FaultPlan,
    bus: Arc<dyn EventBus>,
) -> Mediator {
    let mut registry = saga::engine::Registry::new();
    order::register_all_with(&mut registry, p, &fast_options()).unwrap();
    Mediator::builder(store, registry)
        .faults(faults)
        .bus(bus)
        .lease(Duration::from_millis(40))
        .poll_interval(Duration::from_millis(5))
        .start()
        .await
        .unwrap()
}

/// One run: crash at `point`:`nth` under `scenario`, recover, check. Returns whether the point
/// was reached (a run can finish before it).
async fn one_run(dir: &Path, i: usize, scenario: usize, point: &str, nth: u32) -> bool {
    let (fail_at, expected) = SCENARIOS[scenario];
    let db = Db::new(dir, &format!("run{i}")).await;
    let url = db.url.clone();
    let what = format!("run {i}: crash at {point}:{nth}, fail at {fail_at:?}");
    let participants = Participants::open(&db.local).await.unwrap();
    let bus: Arc<dyn EventBus> = Arc::new(InProcessBus::new());
    let mut seen = bus.subscribe(Filter::all()).await.unwrap();
    let base = fail_at.map_or(FaultPlan::new(), |s| FaultPlan::new().fail_at(s));

    let (faults, stopped) = base.clone().halt_at(point, nth);
    let first = Arc::new(
        mediator(
            store::open(&url, store::OpenMode::CreateIfMissing)
                .await
                .unwrap(),
            &participants,
            faults,
            bus.clone(),
        )
        .await,
    );
    let mut runner = {
        let first = first.clone();
        tokio::spawn(async move {
            let id = first.start(order::NAME, &good_order("o1")).await?;
            first.wait(id).await
        })
    };
    // Only the task that reaches the point stops; the saga may go on to finish meanwhile (a
    // dispatch point halts the dispatcher, not the driver). Reaching the point is what counts,
    // so it is checked first when both are ready.
    let mut reached = tokio::select! {
        biased;
        _ = stopped.reached() => true,
        done = tokio::time::timeout(BOUND, &mut runner) => {
            done.expect("the run ended").unwrap().unwrap();
            false
        }
    };
    // The crash: everything of the first mediator goes (the caller's task too), and nothing
    // after the point happens.
    if reached {
        runner.abort();
        let _ = runner.await;
    }
    let Ok(first) = Arc::try_unwrap(first) else {
        panic!("{what}: the first mediator is gone")
    };
    if reached {
        drop(first);
    } else {
        // The dispatcher works apart from the saga and may come to a dispatch point only after
        // the saga ended. A graceful stop publishes everything it holds, unless it halts there
        // first, which is then the crash.
        reached = tokio::select! {
            biased;
            _ = stopped.reached() => true,
            _ = first.shutdown() => false,
        };
    }

    let second = mediator(
        store::open(&url, store::OpenMode::MustExist).await.unwrap(),
        &participants,
        base,
        bus.clone(),
    )
    .await;
    until(&format!("{what}: recovery"), || async {
        second
            .store()
            .unfinished_definitions()
            .await
            .unwrap()
            .is_empty()
    })
    .await;
    // A batch the first mediator's committer had begun still commits after the drop, as a
    // commit sent by a dying process may: it can land after the second's start-up sweep, and
    // then only a later sweep of orphaned events publishes it. Every committed event leaves
    // the outbox in the end.
    until(&format!("{what}: the outbox to empty"), || async {
        second.store().outbox_stats().await.unwrap().depth == 0
    })
    .await;
    second.shutdown().await;
    let mut published: HashSet<Uuid> = HashSet::new();
    while let Some(e) = seen.try_next() {
        published.insert(e.event_id);
    }
    let may_be_empty = reached && point == "before_commit" && nth == 1;
    check_with(&db, expected, &what, Some(&published), may_be_empty).await;
    reached
}

async fn seeded_runs(label: &str, runs: usize, seed: u64) {
    let dir = scratch();
    let mut rng = fastrand::Rng::with_seed(seed);
    let started = Instant::now();
    let mut crashed = 0;
    for i in 0..runs {
        let scenario = rng.usize(..SCENARIOS.len());
        let point = CRASH_POINTS[rng.usize(..CRASH_POINTS.len())];
        let nth = rng.u32(1..=8);
        if one_run(dir.path(), i, scenario, point, nth).await {
            crashed += 1;
        }
    }
    let per_minute = runs as f64 / started.elapsed().as_secs_f64() * 60.0;
    println!("{label}: seed {seed}: {runs} runs, {crashed} crashed at their point, {per_minute:.0} runs/min");
    // A run whose point comes later than the saga's end finishes normally; most do not.
    assert!(
        crashed * 4 >= runs,
        "too few runs reached their crash point ({crashed}/{runs})"
    );
}

fn seed() -> u64 {
    std::env::var("SAGA_CRASH_SEED")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(|| fastrand::u64(..))
}

fn runs() -> usize {
    std::env::var("SAGA_CRASH_RUNS")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(150)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn seeded_in_process_crashes_recover() {
    let seed = seed();
    println!("SAGA_CRASH_SEED={seed} replays this run");
    seeded_runs("in-process tier", runs(), seed).await;
}

async fn every_point_kind_of_every_scenario_in_process() {
    // Each point kind, its first three occurrences, every scenario; each point a scenario
    // passes through at all must be reached at its first occurrence.
    let dir = scratch();
    let mut i = 0;
    for (scenario, (fail_at, _)) in SCENARIOS.iter().enumerate() {
        for point in CRASH_POINTS {
            for nth in 1..=3 {
                let reached = one_run(dir.path(), i, scenario, point, nth).await;
                // Compensations run only when a compensatable step completed before the failure;
                // OrderSaga sends no signal (the waits' matrix covers `after_signal_kept`).
                let compensates = matches!(fail_at, Some("charge_payment" | "create_shipment"));
                let passes = match point {
                    "after_compensation" => compensates,
                    "after_signal_kept" => false,
                    _ => true,
                };
                if nth == 1 && passes {
                    assert!(reached, "{point}:1 not reached with failure at {fail_at:?}");
                }
                i += 1;
            }
        }
    }
}

async fn a_zombie_frozen_past_its_lease_cannot_write_after_another_mediator_took_over() {
    let env = Env::new().await;
    let bus: Arc<dyn EventBus> = Arc::new(InProcessBus::new());
    // Frozen right after charge_payment's effect, before it is recorded.
    let (faults, frozen) = FaultPlan::new().freeze_at("after_action", 3);
    let zombie = mediator(env.store.clone(), &env.participants, faults, bus.clone()).await;
    let id = zombie
        .start(order::NAME, &good_order("zombie"))
        .await
        .unwrap();
    frozen.reached().await;

    // Its lease lapses (no heartbeat while frozen); another mediator takes over and finishes.
    let other = mediator(env.reopen().await, &env.participants, FaultPlan::new(), bus).await;
    let saga = wait(&other, id).await;
    assert_eq!(saga.status, SagaStatus::Completed);
    let history = other.history(id).await.unwrap();

    // The zombie wakes and tries to record charge_payment as completed: refused.
    assert_eq!(zombie.refused_writes(), 0);
    frozen.release();
    until("the zombie's write to be refused", || async {
        zombie.refused_writes() == 1
    })
    .await;
    until("the zombie to give up", || async {
        zombie.in_flight() == 0
    })
    .await;
    let charged: Vec<Option<u32>> = history
        .iter()
        .filter(|e| {
            e.kind.as_str() == "StepCompleted" && e.step.as_deref() == Some("charge_payment")
        })
        .map(|e| e.attempt)
        .collect();
    assert_eq!(
        charged,
        [Some(2)],
        "completed once, by the mediator that took over"
    );
    assert_eq!(
        other.history(id).await.unwrap(),
        history,
        "the zombie wrote nothing"
    );
    assert_eq!(other.get(id).await.unwrap(), saga);
    let after = effects(&env.participants, &good_order("zombie")).await;
    assert_eq!(
        (after.charged, after.shipments, after.confirmations),
        (4_000, 1, 1)
    );
}

on_both!(multi:
    every_point_kind_of_every_scenario_in_process,
    a_zombie_frozen_past_its_lease_cannot_write_after_another_mediator_took_over,
);
