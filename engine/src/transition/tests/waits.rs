//! Timer and signal steps: the wait each records, and what waking it does.

use serde_json::json;

use super::*;
use crate::state::Wait;
use crate::store::KeptSignal;

#[derive(serde::Serialize, serde::Deserialize)]
struct Order {
    order_id: String,
    paid: u64,
}

#[derive(serde::Deserialize)]
struct Payment {
    amount: u64,
}

/// `reserve` (compensated), `hold` (a 15-minute timer), `pay` (the `paid` signal, keyed by
/// `order_id`, 10-minute deadline), `ship`.
fn waits() -> Definition {
    let pass = |ctx: StepContext<Order>| async move { Ok(ctx.data) };
    SagaDefinition::<Order>::new("order", 1)
        .step(Step::new("reserve", pass).compensate(pass))
        .step(Step::sleep("hold", Duration::from_secs(900)))
        .step(
            Step::signal("pay", "paid", |mut o: Order, p: Payment| {
                o.paid = p.amount;
                o
            })
            .correlate("order_id")
            .timeout(Duration::from_secs(600)),
        )
        .step(Step::new("ship", pass))
        .build()
        .unwrap()
}

fn order() -> Value {
    json!({ "order_id": "o-17", "paid": 0 })
}

fn started(def: &Definition) -> SagaState {
    commit(start(def, Uuid::now_v7(), order()))
}

fn signal(amount: Value) -> KeptSignal {
    KeptSignal {
        event_id: Uuid::now_v7(),
        data: json!({ "amount": amount }),
        received_at: 5,
        by_key: false,
    }
}

/// At the signal step, its wait recorded.
fn at_pay(def: &Definition) -> SagaState {
    let hold = commit(succeeded(def, &started(def), Phase::Action, order()));
    let Some(Wait::Timer { fires_at }) = hold.awaiting.clone().map(|a| a.wait) else {
        panic!("not a timer wait: {:?}", hold.awaiting);
    };
    commit(wake(def, &hold, fires_at, Found::default()).unwrap())
}

#[test]
fn a_timer_records_when_it_fires_and_holds_no_lease() {
    let def = waits();
    let before = crate::store::now_ms();
    let change = succeeded(&def, &started(&def), Phase::Action, order());
    let hold = &change.state;
    assert_eq!(
        events(&change)[1..],
        [
            (EventKind::StepStarted, Some("hold"), Some(1)),
            (EventKind::TimerScheduled, Some("hold"), Some(1)),
        ]
    );
    let Some(Wait::Timer { fires_at }) = hold.awaiting.clone().map(|a| a.wait) else {
        panic!("no timer: {:?}", hold.awaiting);
    };
    let after = crate::store::now_ms();
    assert!((before + 900_000..=after + 900_000).contains(&fires_at));
    assert_eq!(change.events[2].detail["fires_at"], json!(fires_at));
    assert!(change.retry_after.unwrap() <= Duration::from_secs(900));
    assert_eq!(next(hold), Next::Await, "nothing runs while it waits");
}

#[test]
fn a_timer_woken_early_waits_on_and_fires_at_its_time() {
    let def = waits();
    let hold = commit(succeeded(&def, &started(&def), Phase::Action, order()));
    let Some(Wait::Timer { fires_at }) = hold.awaiting.clone().map(|a| a.wait) else {
        panic!("no timer");
    };
    let early = wake(&def, &hold, fires_at - 1000, Found::default()).unwrap();
    assert!(early.events.is_empty(), "no event for a wait that goes on");
    assert_eq!(early.retry_after, Some(Duration::from_millis(1000)));
    assert_eq!(
        early.state.awaiting, hold.awaiting,
        "the same timer, not a new one"
    );

    let fired = wake(&def, &hold, fires_at + 3, Found::default()).unwrap();
    assert_eq!(
        events(&fired),
        [
            (EventKind::TimerFired, Some("hold"), Some(1)),
            (EventKind::StepCompleted, Some("hold"), Some(1)),
            (EventKind::StepStarted, Some("pay"), Some(1)),
            (EventKind::SignalAwaited, Some("pay"), Some(1)),
        ]
    );
    assert_eq!(fired.events[0].detail["late_ms"], json!(3));
    let Some(Wait::Signal { name, key, .. }) = fired.state.awaiting.clone().map(|a| a.wait) else {
        panic!("no signal wait");
    };
    assert_eq!((name.as_str(), key.as_deref()), ("paid", Some("o-17")));
}

#[test]
fn a_signal_completes_its_step_with_its_data_and_is_taken_once() {
    let def = waits();
    let pay = at_pay(&def);
    let payment = signal(json!(42));
    let change = take(&def, &pay, &payment);
    assert_eq!(
        events(&change)[..3],
        [
            (EventKind::SignalReceived, Some("pay"), Some(1)),
            (EventKind::StepCompleted, Some("pay"), Some(1)),
            (EventKind::StepStarted, Some("ship"), Some(1)),
        ]
    );
    assert_eq!(
        change.events[0].detail["signal_id"],
        json!(payment.event_id)
    );
    assert_eq!(change.state.data["paid"], json!(42));
    assert_eq!(change.state.steps[2].signal, Some(payment.event_id));
    assert_eq!(change.state.awaiting, None);
    // Taken: the same signal is not picked again.
    let kept = [payment.clone()];
    assert_eq!(pick(&def, &change.state, &kept), None);
    assert_eq!(pick(&def, &pay, &kept), Some(&payment));
}

#[test]
fn a_signal_by_key_from_before_the_saga_was_created_is_not_picked() {
    let def = waits();
    let mut pay = at_pay(&def);
    pay.created_at = 100;
    let old = KeptSignal {
        received_at: 99,
        by_key: true,
        ..signal(json!(1))
    };
    let by_id_older = KeptSignal {
        received_at: 50,
        by_key: false,
        ..signal(json!(2))
    };
    assert_eq!(pick(&def, &pay, std::slice::from_ref(&old)), None);
    assert_eq!(
        pick(&def, &pay, &[old, by_id_older.clone()]),
        Some(&by_id_older)
    );
    // Data that does not fit the step (sent to a key, unchecked) is passed over.
    let misfit = KeptSignal {
        data: json!({ "amount": "lots" }),
        ..signal(json!(0))
    };
    assert_eq!(
        pick(&def, &pay, &[misfit, by_id_older.clone()]),
        Some(&by_id_older)
    );
}

#[test]
fn no_signal_by_the_deadline_fails_the_step_and_compensates() {
    let def = waits();
    let pay = at_pay(&def);
    let Some(Wait::Signal { deadline, .. }) = pay.awaiting.clone().map(|a| a.wait) else {
        panic!("no signal wait");
    };
    let early = wake(&def, &pay, deadline - 5, Found::default()).unwrap();
    assert!(early.events.is_empty());
    let change = wake(&def, &pay, deadline, Found::default()).unwrap();
    assert_eq!(
        events(&change),
        [
            (EventKind::StepFailed, Some("pay"), Some(1)),
            (EventKind::CompensationStarted, Some("reserve"), Some(1)),
        ]
    );
    assert_eq!(change.events[0].detail["kind"], json!("signal_timeout"));
    assert_eq!(change.events[0].detail["retry_in_ms"], Value::Null);
    assert_eq!(change.state.status, SagaStatus::Compensating);
    assert!(!change.state.steps[2].outcome_unknown, "nothing happened");
}

#[test]
fn signal_data_that_does_not_fit_is_refused_before_anything_is_kept() {
    let def = waits();
    let pay = at_pay(&def);
    assert_eq!(
        check_signal(&def, &pay, "paid", &json!({ "amount": 5 })),
        Ok(())
    );
    let bad = check_signal(&def, &pay, "paid", &json!({ "amount": "five" })).unwrap_err();
    assert!(matches!(bad, Refused::SignalData(_)), "{bad}");
    let unknown = check_signal(&def, &pay, "shipped", &json!({})).unwrap_err();
    assert_eq!(
        unknown.to_string(),
        "no step of `order` waits for a signal named `shipped` (it waits for: paid)"
    );
    let done = commit(take(&def, &pay, &signal(json!(1))));
    let late = check_signal(&def, &done, "paid", &json!({ "amount": 5 })).unwrap_err();
    assert!(matches!(late, Refused::SignalTooLate { .. }), "{late}");
    // Sent before the saga reaches its wait: accepted (and kept).
    assert_eq!(
        check_signal(&def, &started(&def), "paid", &json!({ "amount": 5 })),
        Ok(())
    );
}

#[test]
fn an_abort_during_a_wait_leaves_nothing_unknown_and_a_retry_is_refused() {
    let def = waits();
    let hold = commit(succeeded(&def, &started(&def), Phase::Action, order()));
    let refused = retry(&hold, "now").unwrap_err();
    assert_eq!(refused, Refused::Waiting("its timer"));
    assert_eq!(
        refused.to_string(),
        "it is waiting for its timer, not for a retry"
    );
    let aborted = abort(&def, &hold, "cancelled").unwrap();
    assert!(!aborted.state.steps[1].outcome_unknown);
    assert_eq!(aborted.state.awaiting, None);
    assert_eq!(aborted.state.current_step, 0, "reserve is undone");
}

#[test]
fn correlate_on_a_step_that_is_not_a_signal_is_refused() {
    let pass = |ctx: StepContext<Order>| async move { Ok(ctx.data) };
    let err = SagaDefinition::<Order>::new("order", 1)
        .step(Step::new("reserve", pass).correlate("order_id"))
        .build()
        .unwrap_err();
    assert!(
        err.to_string()
            .contains("correlate() applies to signal steps only"),
        "{err}"
    );
}

#[test]
fn a_signal_goes_to_the_first_step_waiting_for_it_that_has_not_ended() {
    let pass = |ctx: StepContext<Order>| async move { Ok(ctx.data) };
    let fold = |o: Order, _: Payment| o;
    let def = SagaDefinition::<Order>::new("order", 1)
        .step(Step::signal("deposit", "paid", fold))
        .step(Step::signal("balance", "paid", fold))
        .step(Step::new("ship", pass))
        .build()
        .unwrap();
    let first = started(&def);
    let second = commit(take(&def, &first, &signal(json!(1))));
    assert_eq!(second.current_step, 1);
    assert_eq!(
        check_signal(&def, &second, "paid", &json!({ "amount": 2 })),
        Ok(())
    );
}

#[test]
fn a_timer_whose_time_the_data_cannot_give_runs_and_so_fails_instead_of_firing() {
    let def = SagaDefinition::<Order>::new("order", 1)
        .step(Step::sleep_until("until_paid", |_: &Order| {
            std::time::SystemTime::now()
        }))
        .build()
        .unwrap();
    let readable = commit(start(&def, Uuid::now_v7(), order()));
    assert_eq!(next(&readable), Next::Await, "a readable time is a wait");
    let unreadable = commit(start(&def, Uuid::now_v7(), json!({ "order_id": 17 })));
    assert_eq!(unreadable.awaiting, None, "no wait without a time");
    assert_eq!(
        next(&unreadable),
        Next::Run {
            step: 0,
            phase: Phase::Action,
            attempt: 1
        },
        "the attempt runs, and the driver fails it as poison"
    );
}
