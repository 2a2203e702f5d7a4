//! The timeline read from hand-made histories: retries and backoffs, interrupted attempts,
//! aborts, compensation lanes in the order they ran, participant waits, the pivot, and text
//! escaped in the SVG.

#![allow(clippy::unwrap_used)]

use serde_json::{json, Value};
use uuid::Uuid;

use super::*;
use saga_engine::{SagaDefinition, SagaStatus, Step, StepContext, StepState};

fn saga(steps: &[&str], status: SagaStatus) -> SagaState {
    SagaState {
        id: Uuid::nil(),
        definition: "Trip".into(),
        version: 1,
        status,
        current_step: 0,
        data: json!({}),
        steps: steps.iter().map(|s| StepState::pending(s, true)).collect(),
        last_error: None,
        next_attempt_at: None,
        awaiting: None,
        lease_owner: None,
        lease_expires_at: None,
        fencing_token: 1,
        last_seq: 0,
        created_at: 0,
        updated_at: 0,
        trace_parent: None,
    }
}

fn event(
    at: Millis,
    kind: EventKind,
    step: Option<&str>,
    attempt: u32,
    detail: Value,
) -> HistoryEvent {
    HistoryEvent {
        seq: 0,
        event_id: Uuid::nil(),
        saga_id: Uuid::nil(),
        kind,
        step: step.map(String::from),
        attempt: step.map(|_| attempt),
        at,
        detail,
    }
}

fn definition() -> Definition {
    let ok = |ctx: StepContext<Value>| async move { Ok(ctx.data) };
    SagaDefinition::<Value>::new("Trip", 1)
        .step(Step::new("book_flight", ok).compensate_as("cancel_flight", ok))
        .step(Step::participant("book_hotel", "BookHotel", |d: Value, _: Value| d).compensate(ok))
        .step(Step::new("charge", ok).pivot())
        .build()
        .unwrap()
}

use EventKind::*;

#[test]
fn retries_show_each_attempt_and_the_backoff_between() {
    let s = saga(&["book_flight"], SagaStatus::Completed);
    let history = [
        event(0, SagaStarted, None, 0, json!({})),
        event(0, StepStarted, Some("book_flight"), 1, json!({})),
        event(
            5,
            StepFailed,
            Some("book_flight"),
            1,
            json!({ "error": "busy", "retry_in_ms": 100 }),
        ),
        event(105, StepStarted, Some("book_flight"), 2, json!({})),
        event(110, StepCompleted, Some("book_flight"), 2, json!({})),
        event(110, SagaCompleted, None, 0, json!({})),
    ];
    let t = build(&s, None, &history, 999);
    let lane = &t.lanes[0];
    let outcomes: Vec<Outcome> = lane.bars.iter().map(|b| b.outcome).collect();
    assert_eq!(outcomes, [Outcome::Retrying, Outcome::Succeeded]);
    assert_eq!(lane.bars[0].error.as_deref(), Some("busy"));
    assert_eq!(lane.waits, [Wait { from: 5, to: 105 }]);
    assert_eq!(
        (t.start, t.end),
        (0, 110),
        "a finished saga ends at its last event"
    );
    let kinds: Vec<EventKind> = t.markers.iter().map(|m| m.kind).collect();
    assert_eq!(kinds, [SagaStarted, SagaCompleted]);
}

#[test]
fn a_resumed_attempt_marks_the_one_before_interrupted() {
    let s = saga(&["book_flight"], SagaStatus::Completed);
    let history = [
        event(10, StepStarted, Some("book_flight"), 1, json!({})),
        event(
            50,
            StepStarted,
            Some("book_flight"),
            2,
            json!({ "resumed": true }),
        ),
        event(60, StepCompleted, Some("book_flight"), 2, json!({})),
    ];
    let bars = &build(&s, None, &history, 999).lanes[0].bars;
    assert_eq!(bars[0].outcome, Outcome::Interrupted);
    assert_eq!((bars[0].from, bars[0].to), (10, 50));
    assert_eq!(bars[1].outcome, Outcome::Succeeded);
}

#[test]
fn an_abort_cuts_the_waiting_attempt_and_compensations_get_lanes_in_the_order_they_ran() {
    let s = saga(
        &["book_flight", "book_hotel", "charge"],
        SagaStatus::Compensated,
    );
    let history = [
        event(0, StepStarted, Some("book_flight"), 1, json!({})),
        event(1, StepCompleted, Some("book_flight"), 1, json!({})),
        event(1, StepStarted, Some("book_hotel"), 1, json!({})),
        event(
            9,
            SagaAborted,
            None,
            0,
            json!({ "reason": "customer cancelled" }),
        ),
        // A worker picks the compensation up later.
        event(12, CompensationStarted, Some("book_hotel"), 1, json!({})),
        event(
            13,
            CompensationFailed,
            Some("book_hotel"),
            1,
            json!({ "error": "x", "retry_in_ms": 5 }),
        ),
        event(18, CompensationStarted, Some("book_hotel"), 2, json!({})),
        event(19, StepCompensated, Some("book_hotel"), 2, json!({})),
        event(
            19,
            CompensationStarted,
            Some("book_flight"),
            1,
            json!({ "compensation": "cancel_flight" }),
        ),
        event(
            20,
            StepCompensated,
            Some("book_flight"),
            1,
            json!({ "compensation": "cancel_flight" }),
        ),
        event(20, SagaCompensated, None, 0, json!({})),
    ];
    let t = build(&s, Some(&definition()), &history, 999);
    let keys: Vec<String> = t.lanes.iter().map(Lane::key).collect();
    assert_eq!(
        keys,
        [
            "action:book_flight",
            "action:book_hotel",
            "action:charge",
            "compensation:book_hotel",
            "compensation:book_flight"
        ]
    );
    let waited = &t.lanes[1].bars[0];
    assert_eq!(
        waited.outcome,
        Outcome::Interrupted,
        "the abort cut the wait off"
    );
    assert_eq!(
        (waited.from, waited.to),
        (1, 9),
        "at the abort, not when compensation began"
    );
    assert!(t.lanes[2].bars.is_empty(), "the pivot never started");
    let hotel: Vec<Outcome> = t.lanes[3].bars.iter().map(|b| b.outcome).collect();
    assert_eq!(hotel, [Outcome::Retrying, Outcome::Succeeded]);
    assert_eq!(t.lanes[3].waits, [Wait { from: 13, to: 18 }]);
    assert_eq!(svg::label(&t.lanes[4]), "undo book_flight (cancel_flight)");
    let abort = t.markers.iter().find(|m| m.kind == SagaAborted).unwrap();
    assert_eq!(abort.note.as_deref(), Some("customer cancelled"));
    assert_eq!(t.pivot_at, None, "the pivot never completed");
}

#[test]
fn an_abort_in_a_backoff_ends_the_wait_and_the_retry_that_never_came() {
    let s = saga(&["book_flight"], SagaStatus::Compensated);
    let history = [
        event(0, StepStarted, Some("book_flight"), 1, json!({})),
        event(
            3,
            StepFailed,
            Some("book_flight"),
            1,
            json!({ "error": "busy", "retry_in_ms": 1000 }),
        ),
        event(7, SagaAborted, None, 0, json!({ "reason": "stop" })),
        event(7, SagaCompensated, None, 0, json!({})),
    ];
    let t = build(&s, None, &history, 5000);
    let lane = &t.lanes[0];
    assert_eq!(lane.bars[0].outcome, Outcome::Failed, "no retry followed");
    assert_eq!(
        lane.waits,
        [Wait { from: 3, to: 7 }],
        "the backoff ended at the abort"
    );
    assert_eq!(t.end, 7);
}

#[test]
fn only_the_current_step_waits_in_a_backoff_until_now() {
    let mut s = saga(&["book_flight", "book_hotel"], SagaStatus::Compensating);
    // The compensation of book_flight is in its backoff now; no other lane waits until now.
    s.current_step = 0;
    s.next_attempt_at = Some(900);
    let history = [
        event(0, StepStarted, Some("book_flight"), 1, json!({})),
        event(1, StepCompleted, Some("book_flight"), 1, json!({})),
        event(1, StepStarted, Some("book_hotel"), 1, json!({})),
        event(
            2,
            StepFailed,
            Some("book_hotel"),
            1,
            json!({ "error": "no rooms" }),
        ),
        event(2, CompensationStarted, Some("book_flight"), 1, json!({})),
        event(
            4,
            CompensationFailed,
            Some("book_flight"),
            1,
            json!({ "error": "down", "retry_in_ms": 800 }),
        ),
    ];
    let t = build(&s, None, &history, 600);
    let undo = t
        .lanes
        .iter()
        .find(|l| l.key() == "compensation:book_flight")
        .unwrap();
    assert_eq!(undo.waits, [Wait { from: 4, to: 600 }]);
    assert!(t.lanes[0].waits.is_empty() && t.lanes[1].waits.is_empty());
}

#[test]
fn a_participant_step_waits_and_a_saga_in_backoff_waits_until_now() {
    let mut s = saga(
        &["book_flight", "book_hotel", "charge"],
        SagaStatus::Running,
    );
    let history = [
        event(0, StepStarted, Some("book_flight"), 1, json!({})),
        event(1, StepCompleted, Some("book_flight"), 1, json!({})),
        event(1, StepStarted, Some("book_hotel"), 1, json!({})),
    ];
    let def = definition();
    let t = build(&s, Some(&def), &history, 500);
    let hotel = &t.lanes[1];
    assert!(hotel.participant);
    assert_eq!(svg::label(hotel), "2. book_hotel · participant");
    assert_eq!(hotel.bars[0].outcome, Outcome::Awaiting);
    assert_eq!(
        (hotel.bars[0].to, t.end),
        (500, 500),
        "still waiting, until now"
    );

    s.steps[0].status = saga_engine::StepStatus::Running;
    s.next_attempt_at = Some(1003);
    let history = [
        event(0, StepStarted, Some("book_flight"), 1, json!({})),
        event(
            3,
            StepFailed,
            Some("book_flight"),
            1,
            json!({ "error": "busy", "retry_in_ms": 1000 }),
        ),
    ];
    let t = build(&s, Some(&def), &history, 400);
    assert_eq!(t.lanes[0].waits, [Wait { from: 3, to: 400 }]);
}

#[test]
fn the_pivot_is_marked_where_it_completed() {
    let s = saga(
        &["book_flight", "book_hotel", "charge"],
        SagaStatus::Completed,
    );
    let history = [
        event(0, StepStarted, Some("book_flight"), 1, json!({})),
        event(1, StepCompleted, Some("book_flight"), 1, json!({})),
        event(1, StepStarted, Some("book_hotel"), 1, json!({})),
        event(4, StepCompleted, Some("book_hotel"), 1, json!({})),
        event(4, StepStarted, Some("charge"), 1, json!({})),
        event(8, StepCompleted, Some("charge"), 1, json!({})),
    ];
    let t = build(&s, Some(&definition()), &history, 999);
    assert_eq!(t.pivot_at, Some(8));
    let drawn = svg::render(&t).into_string();
    assert!(drawn.contains("class=\"pivot-line\""));
    assert!(drawn.contains("◆ pivot"));
    assert_eq!(drawn.matches("class=\"lane action\"").count(), 3);
}

#[test]
fn text_from_steps_is_escaped_in_the_svg() {
    let s = saga(&["book_flight"], SagaStatus::Compensated);
    let history = [
        event(0, StepStarted, Some("book_flight"), 1, json!({})),
        event(
            1,
            StepFailed,
            Some("book_flight"),
            1,
            json!({ "error": "<script>alert(1)</script> & \"" }),
        ),
    ];
    let drawn = svg::document(&build(&s, None, &history, 999));
    assert!(!drawn.contains("<script>"));
    assert!(drawn.contains("&lt;script&gt;alert(1)&lt;/script&gt; &amp; &quot;"));
}

#[test]
fn parallel_branches_overlap_and_waits_say_what_they_wait_for() {
    let ok = |ctx: StepContext<Value>| async move { Ok(ctx.data) };
    let def = SagaDefinition::<Value>::new("Trip", 1)
        .parallel("book", [Step::new("flight", ok), Step::new("hotel", ok)])
        .step(Step::sleep("cool_off", std::time::Duration::from_secs(5)))
        .step(Step::signal("pay", "paid", |d: Value, _: Value| d))
        .build()
        .unwrap();
    let mut s = saga(&["flight", "hotel", "cool_off", "pay"], SagaStatus::Running);
    s.current_step = 3;
    s.next_attempt_at = Some(9_000);
    s.awaiting = Some(saga_engine::Awaiting {
        step: 3,
        phase: Phase::Action,
        attempt: 1,
        wait: saga_engine::Wait::Signal {
            name: "paid".into(),
            key: None,
            deadline: 9_000,
        },
    });
    let history = [
        event(0, SagaStarted, None, 0, json!({})),
        event(0, StepStarted, Some("flight"), 1, json!({})),
        event(0, StepStarted, Some("hotel"), 1, json!({})),
        event(30, StepCompleted, Some("hotel"), 1, json!({})),
        event(50, StepCompleted, Some("flight"), 1, json!({})),
        event(50, StepStarted, Some("cool_off"), 1, json!({})),
        event(
            50,
            TimerScheduled,
            Some("cool_off"),
            1,
            json!({ "fires_at": 5050 }),
        ),
        event(5050, TimerFired, Some("cool_off"), 1, json!({})),
        event(5050, StepCompleted, Some("cool_off"), 1, json!({})),
        event(5050, StepStarted, Some("pay"), 1, json!({})),
        event(
            5050,
            SignalAwaited,
            Some("pay"),
            1,
            json!({ "signal": "paid" }),
        ),
    ];
    let t = build(&s, Some(&def), &history, 6_000);
    let bar = |lane: usize| t.lanes[lane].bars[0].clone();
    // The two branches run at the same time: both bars start at 0.
    assert_eq!((bar(0).from, bar(1).from), (0, 0));
    assert_eq!((bar(0).to, bar(1).to), (50, 30));
    assert_eq!(bar(2).outcome, Outcome::Succeeded);
    assert_eq!(
        (bar(2).from, bar(2).to),
        (50, 5050),
        "the timer's bar spans its wait"
    );
    assert_eq!(bar(3).outcome, Outcome::Awaiting, "waiting for the signal");
    assert_eq!(t.lanes[2].waits_on.as_deref(), Some("timer"));
    assert_eq!(t.lanes[3].waits_on.as_deref(), Some("signal paid"));
    let drawn = svg::render(&t).into_string();
    assert!(drawn.contains("4. pay · signal paid"), "{drawn}");
    assert!(drawn.contains("1. flight · parallel book"), "{drawn}");
    assert!(drawn.contains("(waiting for the signal paid)"), "{drawn}");
}
