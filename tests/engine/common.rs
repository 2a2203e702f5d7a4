//! Shared harness: each test gets its own store (a SQLite file in a temp dir, or a PostgreSQL
//! schema of its own, see [`crate::backend`]), the real participants on a SQLite file beside it,
//! and mediators tuned for fast tests (short backoffs, short leases).

use std::sync::Arc;
use std::time::Duration;

use saga::engine::{
    fault::FaultPlan, store, store::SagaStore, HistoryEvent, Mediator, Registry, RetryPolicy,
    SagaState,
};
use saga::sagas::order::{self, Options};
use saga::sagas::{Address, LineItem, Order, Participants};
use tempfile::TempDir;

pub use crate::backend::{Backend, Schema};
use uuid::Uuid;

/// Upper bound for any wait in a test.
pub const BOUND: Duration = Duration::from_secs(60);

/// A test's own database, store and participants.
pub struct Env {
    _dir: TempDir,
    /// The saga store's URL.
    pub url: String,
    /// The SQLite file of the participants and probes (the store's own file on SQLite).
    pub local: String,
    pub backend: Backend,
    pub store: Arc<dyn SagaStore>,
    pub participants: Participants,
    _schema: Option<Schema>,
}

impl Env {
    /// A new store on the running test's backend.
    pub async fn new() -> Env {
        let dir = tempfile::tempdir().unwrap();
        let local = format!("sqlite://{}", dir.path().join("sagas.db").display());
        let backend = crate::backend::current();
        let schema = match backend {
            Backend::Sqlite => None,
            Backend::Postgres => Some(Schema::create().await),
        };
        let url = schema.as_ref().map_or(local.clone(), |s| s.url.clone());
        let store = store::open(&url, store::OpenMode::CreateIfMissing)
            .await
            .unwrap();
        let participants = Participants::open(&local).await.unwrap();
        Env {
            _dir: dir,
            url,
            local,
            backend,
            store,
            participants,
            _schema: schema,
        }
    }

    /// One number from the store's database (`sql` takes no parameters).
    pub async fn number(&self, sql: &str) -> i64 {
        self.scalar(sql).await
    }

    /// One value from the store's database (`sql` takes no parameters).
    pub async fn scalar<T>(&self, sql: &str) -> T
    where
        T: for<'r> sqlx::Decode<'r, sqlx::Sqlite> + sqlx::Type<sqlx::Sqlite>,
        T: for<'r> sqlx::Decode<'r, sqlx::Postgres> + sqlx::Type<sqlx::Postgres>,
        T: Send + Unpin,
    {
        match self.backend {
            Backend::Sqlite => {
                let pool = sqlx::SqlitePool::connect(&self.url).await.unwrap();
                sqlx::query_scalar(sql).fetch_one(&pool).await.unwrap()
            }
            Backend::Postgres => {
                let pool = sqlx::PgPool::connect(&self.url).await.unwrap();
                sqlx::query_scalar(sql).fetch_one(&pool).await.unwrap()
            }
        }
    }

    /// Runs a statement on the store's database, as an operator's hand edit would.
    pub async fn execute(&self, sql: &str) {
        execute_on(self.backend, &self.url, sql).await
    }

    /// A store opened anew on the same file, as a restarted process would.
    pub async fn reopen(&self) -> Arc<dyn SagaStore> {
        store::open(&self.url, store::OpenMode::MustExist)
            .await
            .unwrap()
    }

    pub fn registry(&self) -> Registry {
        self.registry_with(&fast_options())
    }

    pub fn registry_with(&self, options: &Options) -> Registry {
        let mut registry = Registry::new();
        order::register_all_with(&mut registry, &self.participants, options).unwrap();
        registry
    }

    /// A mediator with fast test settings.
    pub async fn mediator(&self, faults: FaultPlan) -> Mediator {
        fast(Mediator::builder(self.store.clone(), self.registry()).faults(faults)).await
    }
}

/// Test settings: short lease, frequent fallback poll.
pub async fn fast(builder: saga::engine::MediatorBuilder) -> Mediator {
    builder
        .lease(Duration::from_millis(600))
        .poll_interval(Duration::from_millis(50))
        .start()
        .await
        .unwrap()
}

/// OrderSaga with millisecond backoffs and a short timeout.
pub fn fast_options() -> Options {
    let quick = |p: RetryPolicy| p.backoff(Duration::from_millis(5), Duration::from_millis(40));
    Options {
        step_timeout: Duration::from_secs(5),
        retry: quick(RetryPolicy::attempts(3)),
        compensation_retry: quick(RetryPolicy::attempts(5)),
        confirm_retry: quick(RetryPolicy::forever()),
        record_runs: false,
    }
}

pub fn order(
    id: &str,
    customer: &str,
    sku: &str,
    quantity: u32,
    amount_cents: i64,
    country: &str,
) -> Order {
    Order::new(
        id,
        customer,
        vec![LineItem {
            sku: sku.into(),
            quantity,
        }],
        amount_cents,
        Address {
            street: "1 Main St".into(),
            city: "Springfield".into(),
            country: country.into(),
        },
    )
}

/// A good order: 2 widgets for $40 to the US.
pub fn good_order(id: &str) -> Order {
    order(id, &format!("cust-{id}"), "widget", 2, 4_000, "US")
}

pub async fn wait(mediator: &Mediator, id: Uuid) -> SagaState {
    match tokio::time::timeout(BOUND, mediator.wait(id)).await {
        Ok(saga) => saga.unwrap(),
        Err(_) => {
            let saga = mediator.get(id).await.unwrap();
            let history = lines(&mediator.history(id).await.unwrap());
            panic!("saga {id} did not finish within {BOUND:?}: {saga:#?}\nhistory: {history:#?}");
        }
    }
}

/// The history as `"Kind step"` lines, for exact assertions.
pub fn lines(history: &[HistoryEvent]) -> Vec<String> {
    history
        .iter()
        .map(|e| match &e.step {
            Some(step) => format!("{} {step}", e.kind),
            None => e.kind.to_string(),
        })
        .collect()
}

/// The compensation events of a history, in order.
pub fn compensations(history: &[HistoryEvent]) -> Vec<String> {
    lines(history)
        .into_iter()
        .filter(|l| l.starts_with("CompensationStarted") || l.starts_with("StepCompensated"))
        .collect()
}

/// Asserts sequence numbers run 1, 2, 3... without gaps.
pub fn assert_gapless(history: &[HistoryEvent]) {
    let seqs: Vec<i64> = history.iter().map(|e| e.seq).collect();
    let expected: Vec<i64> = (1..=history.len() as i64).collect();
    assert_eq!(seqs, expected, "history sequence has gaps");
}

/// What the participants hold for one order and its customer.
#[derive(Debug, PartialEq)]
pub struct Effects {
    pub widget_stock: i64,
    pub charged: i64,
    pub reservations: Vec<String>,
    pub charges: Vec<String>,
    pub shipments: usize,
    pub confirmations: i64,
}

pub async fn effects(p: &Participants, order: &Order) -> Effects {
    Effects {
        widget_stock: p.inventory.available("widget").await.unwrap(),
        charged: p.payments.charged(&order.customer).await.unwrap(),
        reservations: p
            .inventory
            .reservations(&order.order_id)
            .await
            .unwrap()
            .into_iter()
            .map(|r| r.status)
            .collect(),
        charges: p
            .payments
            .charges(&order.order_id)
            .await
            .unwrap()
            .into_iter()
            .map(|c| c.status)
            .collect(),
        shipments: p.shipping.shipments(&order.order_id).await.unwrap().len(),
        confirmations: p
            .notifications
            .confirmations(&order.order_id)
            .await
            .unwrap(),
    }
}

/// Waits until `check` holds, polling the store (test code only), within [`BOUND`].
pub async fn until<F, Fut>(what: &str, mut check: F)
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = bool>,
{
    let deadline = tokio::time::Instant::now() + BOUND;
    while !check().await {
        assert!(
            tokio::time::Instant::now() < deadline,
            "timed out waiting for {what}"
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

/// One integer that `sql` selects from the participants' tables in `pool`.
pub async fn scalar(pool: &sqlx::SqlitePool, sql: &str) -> i64 {
    sqlx::query_scalar::<_, i64>(sql)
        .fetch_one(pool)
        .await
        .unwrap()
}

/// Charges made, shipments sent and confirmations sent, across all orders, in `pool`.
pub async fn delivered(pool: &sqlx::SqlitePool) -> (i64, i64, i64) {
    sqlx::query_as(
        "SELECT (SELECT COUNT(*) FROM payments_charges WHERE status = 'charged'), \
         (SELECT COUNT(*) FROM shipments), (SELECT COUNT(*) FROM order_confirmations)",
    )
    .fetch_one(pool)
    .await
    .unwrap()
}

/// What mixed order `i` must end as, its amount and country: one in ten declined (over the
/// credit limit), one in ten with no carrier for its country (refunded and released), the rest
/// completed.
pub fn mixed(i: usize) -> (i64, &'static str, saga::engine::SagaStatus) {
    use saga::engine::SagaStatus;
    match i % 10 {
        0 => (500_000, "US", SagaStatus::Compensated),
        1 => (1_000, "AQ", SagaStatus::Compensated),
        _ => (1_000, "FR", SagaStatus::Completed),
    }
}

/// How many sagas in the store are final.
pub async fn final_count(store: &Arc<dyn SagaStore>) -> u64 {
    store
        .counts()
        .await
        .unwrap()
        .iter()
        .filter(|(_, s, _)| s.is_final())
        .map(|(_, _, n)| n)
        .sum()
}

/// Checks the participants' tables at `url` after `completed` orders of one widget and $10
/// each completed and every other one was undone: each effect applied once.
pub async fn assert_applied_once(url: &str, stock: i64, completed: i64) {
    let pool = sqlx::SqlitePool::connect(url).await.unwrap();
    let one = |sql: &'static str| scalar(&pool, sql);
    assert_eq!(
        one("SELECT available FROM inventory_stock WHERE sku = 'widget'").await,
        stock - completed
    );
    assert_eq!(
        one("SELECT COUNT(*) FROM inventory_reservations WHERE status = 'reserved'").await,
        completed
    );
    assert_eq!(
        one("SELECT COUNT(*) FROM payments_charges WHERE status = 'charged'").await,
        completed
    );
    assert_eq!(
        one("SELECT COALESCE(SUM(charged), 0) FROM payments_accounts").await,
        completed * 1_000
    );
    assert_eq!(one("SELECT COUNT(*) FROM shipments").await, completed);
    assert_eq!(
        one("SELECT COUNT(*) FROM order_confirmations").await,
        completed
    );
}

/// Runs a statement on the store at `url` (of `backend`), as an operator's hand edit would.
pub async fn execute_on(backend: Backend, url: &str, sql: &str) {
    match backend {
        Backend::Sqlite => {
            let pool = sqlx::SqlitePool::connect(url).await.unwrap();
            sqlx::query(sql).execute(&pool).await.unwrap();
            pool.close().await;
        }
        Backend::Postgres => {
            let pool = sqlx::PgPool::connect(url).await.unwrap();
            sqlx::query(sql).execute(&pool).await.unwrap();
            pool.close().await;
        }
    }
}
