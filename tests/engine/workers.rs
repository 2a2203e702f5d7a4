//! Several `saga worker` processes sharing one PostgreSQL store: 2,000 OrderSagas with mixed
//! outcomes, one worker killed with SIGKILL mid-run. Every saga must end final with the outcome
//! its order dictates, every participant effect must be applied once, and no step may ever have
//! run on two workers at once (the participants' step-run audit records each run's interval and
//! fencing token).

use std::collections::{BTreeMap, HashSet};
use std::os::unix::process::ExitStatusExt;
use std::process::Stdio;
use std::time::{Duration, Instant};

use saga::engine::enqueue;
use saga::engine::{store, Registry, SagaStatus};
use saga::sagas::{order, Participants};
use serde_json::Value;

use crate::backend::{self, Backend, Schema};
use crate::cli::{order as order_json, Worker, SAGA};
use crate::common::{assert_applied_once, final_count, mixed};

const SAGAS: usize = 2_000;
const WORKERS: usize = 3;
const STOCK: i64 = 10_000;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn three_workers_share_two_thousand_sagas_and_survive_a_sigkill() {
    backend::on(Backend::Postgres, run()).await
}

async fn run() {
    let schema = Schema::create().await;
    // The participants' file on tmpfs where there is one: 3 processes write it for every step.
    let dir = match std::path::Path::new("/dev/shm").is_dir() {
        true => tempfile::tempdir_in("/dev/shm").unwrap(),
        false => tempfile::tempdir().unwrap(),
    };
    let local = format!("sqlite://{}", dir.path().join("participants.db").display());
    let participants = Participants::open(&local).await.unwrap();
    participants
        .inventory
        .set_stock("widget", STOCK)
        .await
        .unwrap();
    let store = store::open(&schema.url, store::OpenMode::CreateIfMissing)
        .await
        .unwrap();
    let mut registry = Registry::new();
    order::register_all(&mut registry, &participants).unwrap();

    // Recorded unleased, for whichever worker claims them.
    let mut ids = BTreeMap::new();
    for chunk in (0..SAGAS).collect::<Vec<_>>().chunks(100) {
        let batch = chunk.iter().map(|&i| {
            let (amount, country, _) = mixed(i);
            let data: Value =
                serde_json::from_str(&order_json(&format!("w{i}"), amount, country)).unwrap();
            let (store, registry) = (store.clone(), &registry);
            async move {
                (
                    i,
                    enqueue(store.as_ref(), registry, order::NAME, data).await,
                )
            }
        });
        for (i, id) in futures::future::join_all(batch).await {
            ids.insert(id.unwrap(), i);
        }
    }

    let spawn = || {
        Worker(
            std::process::Command::new(SAGA)
                .args(["--database", &schema.url, "worker"])
                .args(["--lease", "2s", "--poll", "250ms", "--concurrency", "32"])
                // Claims of at most 100 sagas, so the backlog is shared among the workers.
                .args(["--max-in-flight", "100"])
                .env("SAGA_PARTICIPANTS_URL", &local)
                .env("SAGA_RECORD_STEP_RUNS", "1")
                .env_remove("SAGA_FAULTS")
                .stdout(Stdio::null())
                .stderr(Stdio::null())
                .spawn()
                .unwrap(),
        )
    };
    let mut workers: Vec<Worker> = (0..WORKERS).map(|_| spawn()).collect();
    let started = Instant::now();
    let bound = Duration::from_secs(300);

    // SIGKILL one worker once a fifth of the sagas are final.
    while final_count(&store).await < (SAGAS / 5) as u64 {
        assert!(started.elapsed() < bound, "no progress");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let mut victim = workers.remove(0);
    victim.0.kill().unwrap();
    let status = victim.0.wait().unwrap();
    assert_eq!(status.signal(), Some(9));
    let at_kill = final_count(&store).await;
    assert!(at_kill < SAGAS as u64, "the kill came mid-run");

    loop {
        let done = final_count(&store).await;
        if done == SAGAS as u64 {
            break;
        }
        assert!(
            started.elapsed() < bound,
            "only {done} of {SAGAS} sagas final after {bound:?}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let elapsed = started.elapsed();
    drop(workers);

    // Every saga ended as its order dictates.
    let all = store
        .list(&store::ListQuery {
            limit: SAGAS + 1,
            ..Default::default()
        })
        .await
        .unwrap();
    assert_eq!(all.len(), SAGAS);
    let mut completed = 0;
    for saga in &all {
        let i = ids[&saga.id];
        assert_eq!(saga.status, mixed(i).2, "order w{i}: {:?}", saga.last_error);
        completed += usize::from(saga.status == SagaStatus::Completed);
    }

    // Each effect applied once; every compensated one undone.
    let completed = completed as i64;
    assert_applied_once(&local, STOCK, completed).await;

    // No two runs of the same step of the same saga overlapped in time.
    let runs = participants.runs.all().await.unwrap();
    let mut workers_seen = HashSet::new();
    for pair in runs.windows(2) {
        let (a, b) = (&pair[0], &pair[1]);
        workers_seen.insert(a.worker);
        if (&a.saga_id, &a.step, &a.phase) == (&b.saga_id, &b.step, &b.phase) {
            assert!(
                b.started_us >= a.ended_us,
                "{} {} {} ran twice at once: {a:?} and {b:?}",
                a.saga_id,
                a.step,
                a.phase
            );
            assert!(b.fencing_token > a.fencing_token || b.worker == a.worker);
        }
    }
    assert_eq!(
        workers_seen.len(),
        WORKERS,
        "every worker did some of the work"
    );
    println!(
        "{SAGAS} sagas on {WORKERS} workers, one killed at {at_kill} final: {completed} completed, \
         {} compensated, {} step runs, {elapsed:?}",
        SAGAS as i64 - completed,
        runs.len()
    );
}
