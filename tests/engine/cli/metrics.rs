//! `saga worker --metrics`: a real worker process, scraped over HTTP; its counters match what it
//! ran, as the sagas' histories tell it, and it counts the lease renewals its store refused.

use std::collections::HashMap;
use std::io::{Read, Write};

use saga::engine::store::OpenMode;
use saga::engine::EventKind;

use super::*;

/// A Prometheus text page: each sample line's series (`name{labels}`) and value.
struct Page(HashMap<String, f64>);

impl Page {
    fn parse(text: &str) -> Page {
        let samples = text
            .lines()
            .filter(|l| !l.starts_with('#') && !l.trim().is_empty())
            .map(|l| {
                let (series, value) = l.rsplit_once(' ').expect("a sample line");
                (series.to_string(), value.parse().expect("a number"))
            })
            .collect();
        Page(samples)
    }

    /// The value of `name` with exactly these labels (absent: 0, as Prometheus reads a counter
    /// never touched).
    fn get(&self, name: &str, labels: &[(&str, &str)]) -> f64 {
        let wanted: Vec<String> = labels.iter().map(|(k, v)| format!("{k}=\"{v}\"")).collect();
        self.0
            .iter()
            .filter(|(series, _)| {
                let (n, rest) = series.split_once('{').unwrap_or((series, "}"));
                let mut have: Vec<&str> = rest
                    .trim_end_matches('}')
                    .split(',')
                    .filter(|l| !l.is_empty())
                    .collect();
                have.sort_unstable();
                let mut want: Vec<&str> = wanted.iter().map(String::as_str).collect();
                want.sort_unstable();
                n == name && have == want
            })
            .map(|(_, v)| *v)
            .sum()
    }

    /// The sum of `name` over every label set (0 when it is not listed).
    fn total(&self, name: &str) -> f64 {
        self.0
            .iter()
            .filter(|(s, _)| *s == name || s.starts_with(&format!("{name}{{")))
            .map(|(_, v)| *v)
            .sum()
    }

    /// Whether the page lists `name` at all (with any labels).
    fn lists(&self, name: &str) -> bool {
        self.0
            .keys()
            .any(|s| s == name || s.starts_with(&format!("{name}{{")))
    }
}

/// `GET /metrics` over a plain TCP connection: the status line and the body.
fn scrape(addr: &str) -> (String, String) {
    let mut stream = std::net::TcpStream::connect(addr).unwrap();
    let bound = Some(std::time::Duration::from_secs(30));
    stream.set_read_timeout(bound).unwrap();
    write!(
        stream,
        "GET /metrics HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n\r\n"
    )
    .unwrap();
    let mut response = String::new();
    stream.read_to_string(&mut response).unwrap();
    let (head, body) = response.split_once("\r\n\r\n").unwrap();
    (head.lines().next().unwrap().to_string(), body.to_string())
}

async fn a_scraped_worker_counts_what_it_ran() {
    let db = Db::new().await;
    // Three orders complete (each confirmation fails once first); two are declined, and the
    // release of their stock fails once before it succeeds.
    let ids: Vec<(Uuid, bool)> = (0..5)
        .map(|i| {
            let declined = i >= 3;
            let amount = if declined { 500_000 } else { 1_000 };
            let id = id_of(&db.json(&[
                "run",
                "OrderSaga",
                "--data",
                &order(&format!("m{i}"), amount, "FR"),
            ]));
            (id, declined)
        })
        .collect();
    let mut cmd = db.command();
    cmd.args(["worker", "--poll", "50ms", "--metrics", "127.0.0.1:0"])
        .env(
            "SAGA_FAULTS",
            "confirm_order=fail:1,reserve_inventory/compensate=fail:1",
        );
    let (_worker, said) = spawn_saying(cmd, "metrics at http://");
    let addr = said.trim_end_matches("/metrics").to_string();

    for (id, declined) in &ids {
        let status = match declined {
            true => SagaStatus::Compensated,
            false => SagaStatus::Completed,
        };
        db.until_status(*id, status).await;
    }
    // What the histories say the worker did.
    let store = store::open(&db.url, OpenMode::MustExist).await.unwrap();
    let mut compensated: HashMap<String, f64> = HashMap::new();
    let mut retries: HashMap<(String, &str), f64> = HashMap::new();
    for (id, _) in &ids {
        for e in store.history(*id).await.unwrap() {
            let step = e.step.clone().unwrap_or_default();
            // A retry: an attempt after the first, not one cut off and run again.
            let retry = e.attempt.is_some_and(|a| a > 1) && e.detail.get("resumed").is_none();
            match e.kind {
                EventKind::StepCompensated => *compensated.entry(step).or_default() += 1.0,
                EventKind::StepStarted if retry => {
                    *retries.entry((step, "action")).or_default() += 1.0
                }
                EventKind::CompensationStarted if retry => {
                    *retries.entry((step, "compensate")).or_default() += 1.0
                }
                _ => {}
            }
        }
    }
    assert_eq!(
        retries.get(&("confirm_order".into(), "action")),
        Some(&3.0),
        "{retries:?}"
    );
    assert_eq!(
        retries.get(&("reserve_inventory".into(), "compensate")),
        Some(&2.0),
        "{retries:?}"
    );

    // The outbox empties once everything is published; the gauges are read at each scrape.
    let mut page = Page(HashMap::new());
    until("the outbox to be empty at a scrape", || {
        let (status, body) = scrape(&addr);
        assert_eq!(status, "HTTP/1.1 200 OK", "{body}");
        page = Page::parse(&body);
        let empty = page.lists("saga_outbox_depth") && page.get("saga_outbox_depth", &[]) == 0.0;
        async move { empty }
    })
    .await;
    let def = ("definition", "OrderSaga");
    assert_eq!(page.get("saga_started_total", &[def]), 5.0);
    let finished = |outcome| page.get("saga_finished_total", &[def, ("outcome", outcome)]);
    assert_eq!(finished("completed"), 3.0);
    assert_eq!(finished("compensated"), 2.0);
    assert_eq!(finished("failed"), 0.0);
    for ((step, phase), n) in &retries {
        let labels = [def, ("step", step.as_str()), ("phase", *phase)];
        let got = page.get("saga_step_retries_total", &labels);
        assert_eq!(got, *n, "{step} {phase}: {:?}", page.0);
    }
    assert!(!compensated.is_empty());
    for (step, n) in &compensated {
        let labels = [def, ("step", step.as_str())];
        assert_eq!(page.get("saga_compensations_total", &labels), *n, "{step}");
    }
    // Every attempt is in the histogram: confirm_order ran twice per completed order, its
    // first attempt failing; the declined charges failed for good.
    let attempts = |step, phase, outcome| {
        page.get(
            "saga_step_attempt_duration_seconds_count",
            &[def, ("step", step), ("phase", phase), ("outcome", outcome)],
        )
    };
    assert_eq!(attempts("confirm_order", "action", "failed"), 3.0);
    assert_eq!(attempts("confirm_order", "action", "succeeded"), 3.0);
    assert_eq!(attempts("charge_payment", "action", "failed"), 2.0);
    assert_eq!(attempts("reserve_inventory", "compensate", "failed"), 2.0);
    assert_eq!(
        attempts("reserve_inventory", "compensate", "succeeded"),
        2.0
    );
    // A registered definition has its in-flight gauges, 0 once its sagas ended.
    for status in ["running", "compensating"] {
        let series = format!("saga_in_flight{{definition=\"OrderSaga\",status=\"{status}\"}}");
        assert_eq!(page.0.get(&series), Some(&0.0), "{series}");
    }
    assert!(page.lists("saga_outbox_oldest_age_seconds"));
    assert_eq!(page.get("saga_outbox_oldest_age_seconds", &[]), 0.0);
    assert!(page.lists("saga_lease_renewal_failures_total"));
    assert_eq!(page.get("saga_lease_renewal_failures_total", &[]), 0.0);
    assert_eq!(page.total("saga_dead_letters_total"), 0.0);
    // Each transition the worker committed rode in a batch; each batch was timed.
    let batches = page.get("saga_commit_batch_size_count", &[]);
    let transitions = page.get("saga_commit_batch_size_sum", &[]);
    assert!(
        batches >= 1.0 && transitions >= batches,
        "{batches} {transitions}"
    );
    assert_eq!(page.get("saga_commit_duration_seconds_count", &[]), batches);
}

/// A worker whose store fails under it (its sagas' table renamed away for a moment): each lease
/// renewal that fails is counted, and a scrape still answers with the counters. On PostgreSQL,
/// where a store that goes away is a server: on SQLite, sqlx 0.8.6 can panic in a connection's
/// thread when a statement it prepared loses its table, and the lock that connection held is
/// then never released.
async fn failed_lease_renewals_are_counted_and_a_scrape_still_answers() {
    let db = Db::new().await;
    let id = id_of(&db.json(&["run", "OrderSaga", "--data", &order("lr", 1_000, "FR")]));
    // A step that hangs keeps its saga leased, renewed a third of a lease apart.
    let mut cmd = db.command();
    cmd.args(["worker", "--poll", "50ms", "--lease", "900ms"])
        .args(["--metrics", "127.0.0.1:0"])
        .env("SAGA_FAULTS", "reserve_inventory=hang")
        .env("SAGA_ORDER_STEP_TIMEOUT", "600s");
    let (_worker, said) = spawn_saying(cmd, "metrics at http://");
    let addr = said.trim_end_matches("/metrics").to_string();
    let store = store::open(&db.url, OpenMode::MustExist).await.unwrap();
    until("reserve_inventory to hang, leased", || async {
        let saga = store.get(id).await.unwrap().unwrap();
        saga.current()
            .is_some_and(|s| s.name == "reserve_inventory")
            && saga.lease_owner.is_some()
    })
    .await;
    let renewals = |body: &str| Page::parse(body).get("saga_lease_renewal_failures_total", &[]);
    assert_eq!(renewals(&scrape(&addr).1), 0.0);

    let backend = crate::backend::Backend::Postgres;
    let rename = |from: &str, to: &str| format!("ALTER TABLE {from} RENAME TO {to}");
    crate::common::execute_on(
        backend,
        &db.url,
        &rename("saga_instances", "saga_instances_away"),
    )
    .await;
    until("a renewal to fail", || async {
        let (status, body) = scrape(&addr);
        assert_eq!(status, "HTTP/1.1 200 OK", "{body}");
        renewals(&body) >= 1.0
    })
    .await;
    crate::common::execute_on(
        backend,
        &db.url,
        &rename("saga_instances_away", "saga_instances"),
    )
    .await;
    // The store is back: the worker reads it again, a second saga with the first.
    db.json(&["run", "OrderSaga", "--data", &order("lr2", 1_000, "FR")]);
    until("the gauges to count both", || async {
        let page = Page::parse(&scrape(&addr).1);
        let labels = [("definition", "OrderSaga"), ("status", "running")];
        page.get("saga_in_flight", &labels) == 2.0
    })
    .await;
}

async fn a_metrics_address_that_cannot_be_listened_on_is_refused() {
    // (and one given by host name is resolved, to its IPv4 address)
    let db = Db::new().await;
    let taken = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = taken.local_addr().unwrap().to_string();
    let out = db.saga(&["worker", "--metrics", &addr]);
    assert_eq!(out.status.code(), Some(2), "{}", stderr(&out));
    assert!(
        stderr(&out).starts_with(&format!("error: --metrics {addr}: ")),
        "{}",
        stderr(&out)
    );
    let bad = db.saga(&["worker", "--metrics", "localhost"]);
    assert_eq!(bad.status.code(), Some(2));
    assert!(
        stderr(&bad).contains("invalid value 'localhost' for '--metrics <ADDR>'"),
        "{}",
        stderr(&bad)
    );
    // Refused before anything is opened: no database was made for it.
    let fresh = Db::new().await;
    let unresolved = fresh.saga(&["worker", "--metrics", "no-such-host.invalid:9464"]);
    assert_eq!(unresolved.status.code(), Some(2), "{}", stderr(&unresolved));
    if crate::backend::current() == crate::backend::Backend::Sqlite {
        assert!(!fresh.dir.path().join("cli.db").exists());
    }
    // A host name with its port is fine, and listens on its IPv4 address.
    let mut named = db.command();
    named.args(["worker", "--metrics", "localhost:0"]);
    let (_worker, said) = spawn_saying(named, "metrics at http://");
    assert!(said.starts_with("127.0.0.1:"), "{said}");
    assert!(said.ends_with("/metrics"), "{said}");
}

on_both!(
    a_scraped_worker_counts_what_it_ran,
    a_metrics_address_that_cannot_be_listened_on_is_refused,
);

mod failed_lease_renewals_are_counted_and_a_scrape_still_answers {
    #[tokio::test]
    async fn postgres() {
        let test = super::failed_lease_renewals_are_counted_and_a_scrape_still_answers();
        crate::backend::on(crate::backend::Backend::Postgres, test).await
    }
}
