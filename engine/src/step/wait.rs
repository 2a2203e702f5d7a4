//! Steps that wait without running anything: a durable timer, and a signal from outside. Like a
//! participant's reply, the wait is a stored row (the saga's `awaiting` and due time), so no task
//! or memory is held per waiting saga and a restart neither loses nor moves it.

use std::sync::Arc;
use std::time::{Duration, SystemTime};

use serde::de::DeserializeOwned;
use serde_json::Value;

use super::{SagaData, Step, StepContext, Work};
use crate::state::Millis;

/// Reads a timer's time from the saga data (type-erased; an error when the data cannot be read).
pub(crate) type UntilFn = Arc<dyn Fn(&Value) -> Result<SystemTime, String> + Send + Sync>;

/// When a timer step fires.
#[derive(Clone)]
pub(crate) enum Delay {
    /// This long after the step starts.
    For(Duration),
    /// At the time the saga data says.
    Until(UntilFn),
}

impl Delay {
    /// When the timer fires if it is scheduled at `now` (a time already past fires at `now`),
    /// or why the saga data does not say.
    pub(crate) fn fires_at(&self, data: &Value, now: Millis) -> Result<Millis, String> {
        match self {
            Delay::For(d) => {
                Ok(now.saturating_add(i64::try_from(d.as_millis()).unwrap_or(i64::MAX)))
            }
            Delay::Until(f) => Ok(f(data)?
                .duration_since(SystemTime::UNIX_EPOCH)
                .map_or(now, |d| i64::try_from(d.as_millis()).unwrap_or(i64::MAX))
                .max(now)),
        }
    }
}

/// What a signal step waits for.
#[derive(Clone, Debug)]
pub(crate) struct SignalWait {
    /// The signal's name.
    pub(crate) name: String,
    /// The field of the saga data whose value is the step's correlation key, if any.
    pub(crate) key_field: Option<String>,
}

impl SignalWait {
    /// The correlation key `data` gives this wait: the named field's value, a string or a
    /// number, or none.
    pub(crate) fn key(&self, data: &Value) -> Option<String> {
        match data.get(self.key_field.as_deref()?)? {
            Value::String(s) => Some(s.clone()),
            Value::Number(n) => Some(n.to_string()),
            _ => None,
        }
    }
}

/// A step that does nothing: its work is the wait.
fn waiting<D: SagaData>(name: impl Into<String>, work: Work) -> Step<D> {
    let noop = |ctx: StepContext<D>| std::future::ready(Ok(ctx.data));
    let mut step = Step::new(name, noop);
    step.spec.action = work;
    step
}

impl<D: SagaData> Step<D> {
    /// A durable timer: the step completes `delay` after it starts, never earlier. The due time
    /// is stored with the saga, so a restart neither loses it nor starts it over.
    ///
    /// ```
    /// # use std::time::Duration;
    /// # use saga_engine::Step;
    /// # #[derive(serde::Serialize, serde::Deserialize)] struct Order;
    /// let hold = Step::<Order>::sleep("hold_stock", Duration::from_secs(15 * 60));
    /// ```
    pub fn sleep(name: impl Into<String>, delay: Duration) -> Self {
        waiting(name, Work::Timer(Delay::For(delay)))
    }

    /// A durable timer that fires at the time `until` reads from the saga data (at once if that
    /// time has passed). The time is read when the step starts, and stored.
    pub fn sleep_until<F>(name: impl Into<String>, until: F) -> Self
    where
        F: Fn(&D) -> SystemTime + Send + Sync + 'static,
    {
        let until = move |data: &Value| {
            let data: D = serde_json::from_value(data.clone()).map_err(|e| {
                format!("the timer's time cannot be read, as the saga data cannot be: {e}")
            })?;
            Ok(until(&data))
        };
        waiting(name, Work::Timer(Delay::Until(Arc::new(until))))
    }

    /// Waits for the signal named `signal`, whose data (of type `S`) `apply` folds into the saga
    /// data. The step's [`Step::timeout`] is how long it waits; no signal by then is a failure,
    /// so the saga compensates. A signal sent before the saga reaches the step is kept for it.
    ///
    /// ```
    /// # use std::time::Duration;
    /// # use saga_engine::Step;
    /// # #[derive(serde::Serialize, serde::Deserialize)] struct Order { order_id: String, paid: u64 }
    /// # #[derive(serde::Deserialize)] struct Payment { amount: u64 }
    /// let paid = Step::signal("await_payment", "payment_received", |mut o: Order, p: Payment| {
    ///     o.paid = p.amount;
    ///     o
    /// })
    /// .correlate("order_id")
    /// .timeout(Duration::from_secs(15 * 60));
    /// ```
    pub fn signal<S, F>(name: impl Into<String>, signal: impl Into<String>, apply: F) -> Self
    where
        S: DeserializeOwned,
        F: Fn(D, S) -> D + Send + Sync + 'static,
    {
        let wait = SignalWait {
            name: signal.into(),
            key_field: None,
        };
        let mut step = waiting(name, Work::Signal(wait));
        step.spec.apply = Some(super::remote::fold(apply, "the signal's data"));
        step
    }

    /// For a signal step: also take signals sent to the value of the data's `field` (a string or
    /// a number), so an event that carries only a business key (an `order_id`) reaches the saga.
    pub fn correlate(mut self, field: impl Into<String>) -> Self {
        match &mut self.spec.action {
            Work::Signal(wait) => wait.key_field = Some(field.into()),
            _ => self.spec.misuse = Some("correlate() applies to signal steps only".into()),
        }
        self
    }
}
