//! Participant replies at the edges: duplicates, late replies, unknown sagas, malformed replies,
//! a participant that never answers, and a wait that outlives its mediator. The test plays the
//! participant of a small saga: `a` (local) then `b`, sent as `DoB` and undone by `UndoB`
//! (and, where a test needs a saga still waiting after `b`, then `c`, sent as `DoC`).

use std::sync::Arc;
use std::time::Duration;

use saga::engine::operator::Refused;
use saga::engine::participant::Command;
use saga::engine::{
    bus::EventBus, bus::Filter, bus::InProcessBus, bus::Subscription, operator, Mediator, Registry,
    RetryPolicy, SagaDefinition, SagaState, SagaStatus, Step, StepContext,
};
use serde::{Deserialize, Serialize};
use serde_json::json;
use uuid::Uuid;

use crate::common::*;

const NAME: &str = "reply-test";

#[derive(Debug, Default, Serialize, Deserialize)]
struct Data {
    b: Option<String>,
}

#[derive(Debug, Serialize, Deserialize)]
struct Output {
    value: String,
}

fn registry(reply_timeout: Duration, attempts: u32, with_c: bool) -> Registry {
    let quick =
        |n| RetryPolicy::attempts(n).backoff(Duration::from_millis(5), Duration::from_millis(10));
    let mut def = SagaDefinition::<Data>::new(NAME, 1)
        .step(
            Step::new("a", |ctx: StepContext<Data>| async move { Ok(ctx.data) })
                .compensate(|ctx: StepContext<Data>| async move { Ok(ctx.data) }),
        )
        .step(
            Step::participant("b", "DoB", |mut d: Data, o: Output| {
                d.b = Some(o.value);
                d
            })
            .compensate_with_command("UndoB")
            .retry(quick(attempts))
            .compensation_retry(quick(3))
            .timeout(reply_timeout),
        );
    if with_c {
        def = def.step(
            Step::participant("c", "DoC", |d: Data, _: Output| d).timeout(Duration::from_secs(30)),
        );
    }
    let mut registry = Registry::new();
    registry.register(def.build().unwrap()).unwrap();
    registry
}

struct Setup {
    env: Env,
    bus: Arc<dyn EventBus>,
    m: Mediator,
    commands: Subscription,
}

async fn setup(reply_timeout: Duration, attempts: u32) -> Setup {
    setup_with(
        registry(reply_timeout, attempts, false),
        Some(Duration::from_millis(50)),
    )
    .await
}

/// A mediator over `registry` that looks for work every `poll`, or, with `None`, never: it
/// drives the sagas it starts and applies replies, but takes up nothing at its due time.
async fn setup_with(registry: Registry, poll: Option<Duration>) -> Setup {
    let env = Env::new().await;
    let bus: Arc<dyn EventBus> = Arc::new(InProcessBus::new());
    let commands = bus
        .subscribe(Filter::types(["DoB", "UndoB", "DoC"]))
        .await
        .unwrap();
    let m = Mediator::builder(env.store.clone(), registry)
        .bus(bus.clone())
        .lease(Duration::from_millis(600))
        .poll_interval(poll.unwrap_or(Duration::from_secs(30)))
        .claim(poll.is_some())
        .start()
        .await
        .unwrap();
    Setup {
        env,
        bus,
        m,
        commands,
    }
}

async fn next_command(commands: &mut Subscription) -> Command {
    let e = tokio::time::timeout(BOUND, commands.next())
        .await
        .unwrap()
        .unwrap();
    Command::parse(&e).unwrap()
}

/// Answers every command of saga `id` that `commands` (subscribed before the saga started)
/// delivers, with success, until the task is aborted.
fn answer_all(
    bus: &Arc<dyn EventBus>,
    mut commands: Subscription,
    id: Uuid,
) -> tokio::task::JoinHandle<()> {
    let bus = bus.clone();
    tokio::spawn(async move {
        while let Some(e) = commands.next().await {
            let c = Command::parse(&e).unwrap();
            if c.saga_id == id {
                bus.publish(c.success(&json!({ "value": "answered" })))
                    .await
                    .unwrap();
            }
        }
    })
}

/// The saga as stored, with its history, to compare before and after a reply.
async fn snapshot(m: &Mediator, id: Uuid) -> (SagaState, usize) {
    (m.get(id).await.unwrap(), m.history(id).await.unwrap().len())
}

/// Returns once the listener has processed every reply published before: it handles replies in
/// order, so a marker saga's replies, published last, are applied last.
async fn settle(s: &Setup) {
    let commands = s
        .bus
        .subscribe(Filter::types(["DoB", "UndoB", "DoC"]))
        .await
        .unwrap();
    let marker = s.m.start(NAME, &Data::default()).await.unwrap();
    let responder = answer_all(&s.bus, commands, marker);
    assert_eq!(wait(&s.m, marker).await.status, SagaStatus::Completed);
    responder.abort();
}

async fn a_duplicate_reply_while_the_saga_still_waits_changes_nothing() {
    let mut s = setup_with(
        registry(Duration::from_secs(30), 3, true),
        Some(Duration::from_millis(50)),
    )
    .await;
    let id = s.m.start(NAME, &Data::default()).await.unwrap();
    let b = next_command(&mut s.commands).await;
    assert_eq!((b.saga_id, b.step.as_str(), b.attempt), (id, "b", 1));
    assert_eq!(b.idempotency_key, format!("{id}:b:action"));
    let reply = b.success(&json!({ "value": "done" }));
    s.bus.publish(reply.clone()).await.unwrap();
    let c = next_command(&mut s.commands).await;
    assert_eq!(c.step, "c");
    until("the saga to wait for c", || async {
        s.m.get(id)
            .await
            .unwrap()
            .awaiting
            .is_some_and(|a| a.step == 2)
    })
    .await;

    let before = snapshot(&s.m, id).await;
    s.bus.publish(reply.clone()).await.unwrap();
    let mut again = reply;
    again.event_id = Uuid::now_v7(); // the same reply re-sent under a new id
    s.bus.publish(again).await.unwrap();
    settle(&s).await;
    assert_eq!(
        snapshot(&s.m, id).await,
        before,
        "duplicates of b's reply change nothing"
    );
    assert_eq!(before.0.data["b"], "done");

    s.bus
        .publish(c.success(&json!({ "value": "c" })))
        .await
        .unwrap();
    assert_eq!(wait(&s.m, id).await.status, SagaStatus::Completed);
}

async fn a_late_reply_for_a_timed_out_attempt_changes_nothing() {
    let mut s = setup(Duration::from_millis(300), 3).await;
    let id = s.m.start(NAME, &Data::default()).await.unwrap();
    let first = next_command(&mut s.commands).await;
    // No answer: the deadline passes and attempt 2 is sent.
    let second = next_command(&mut s.commands).await;
    assert_eq!((first.attempt, second.attempt), (1, 2));
    assert_eq!(
        first.idempotency_key, second.idempotency_key,
        "same key on every attempt"
    );

    let before = snapshot(&s.m, id).await;
    s.bus
        .publish(first.success(&json!({ "value": "late" })))
        .await
        .unwrap();
    settle(&s).await;
    let after = snapshot(&s.m, id).await;
    assert_eq!(
        after.0.steps[1].attempts, 2,
        "the reply for attempt 1 was not applied"
    );
    assert_eq!(after.0.data, before.0.data);

    s.bus
        .publish(second.success(&json!({ "value": "on time" })))
        .await
        .unwrap();
    let saga = wait(&s.m, id).await;
    assert_eq!(saga.status, SagaStatus::Completed);
    assert_eq!(saga.data["b"], "on time");
    let history = s.m.history(id).await.unwrap();
    let failed = history
        .iter()
        .find(|e| e.kind.as_str() == "StepFailed")
        .unwrap();
    assert_eq!(failed.detail["kind"], "timeout");
    // The retry waited out its backoff after the timeout.
    let retried = history
        .iter()
        .find(|e| e.kind.as_str() == "StepStarted" && e.attempt == Some(2))
        .unwrap();
    let backoff = failed.detail["retry_in_ms"].as_i64().unwrap();
    assert!(
        retried.at >= failed.at + backoff,
        "attempt 2 at {} before {} + {backoff}",
        retried.at,
        failed.at
    );
}

async fn a_reply_after_its_deadline_is_late_even_before_anyone_noticed() {
    // A mediator that takes up no work at its due time: nobody notices the deadline pass.
    let mut s = setup_with(registry(Duration::from_millis(200), 3, false), None).await;
    let id = s.m.start(NAME, &Data::default()).await.unwrap();
    let command = next_command(&mut s.commands).await;
    let deadline = s.m.get(id).await.unwrap().next_attempt_at.unwrap();
    until("the deadline to pass", || async move {
        let now = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .as_millis() as i64;
        now > deadline + 20
    })
    .await;
    let before = snapshot(&s.m, id).await;
    s.bus
        .publish(command.success(&json!({ "value": "too late" })))
        .await
        .unwrap();
    settle(&s).await;
    assert_eq!(
        snapshot(&s.m, id).await,
        before,
        "a reply after its deadline is refused"
    );
}

async fn unknown_and_malformed_replies_change_nothing() {
    let mut s = setup(Duration::from_secs(30), 3).await;
    let id = s.m.start(NAME, &Data::default()).await.unwrap();
    let command = next_command(&mut s.commands).await;
    let before = snapshot(&s.m, id).await;

    // For a saga that does not exist.
    let mut stranger = command.success(&json!({ "value": "x" }));
    stranger.saga_id = Some(Uuid::now_v7());
    s.bus.publish(stranger).await.unwrap();
    // For a step the saga does not have.
    let mut wrong_step = command.success(&json!({ "value": "x" }));
    wrong_step.step = Some("zzz".into());
    s.bus.publish(wrong_step).await.unwrap();
    // Not JSON at all, and a reply whose payload makes no sense.
    assert!(s
        .bus
        .publish_json("{\"type\":\"ParticipantReply\", garbage")
        .await
        .is_err());
    let mut nonsense = command.success(&json!({}));
    nonsense.payload = json!({ "outcome": "maybe" });
    s.bus.publish(nonsense).await.unwrap();
    settle(&s).await;
    assert_eq!(snapshot(&s.m, id).await, before);

    // An operator cannot retry it either: its reply is still awaited.
    let refused = operator::retry(s.env.store.as_ref(), s.m.registry(), id, "impatient")
        .await
        .unwrap_err();
    assert!(
        matches!(
            refused,
            operator::OperatorError::Refused {
                reason: Refused::AwaitingReply,
                ..
            }
        ),
        "{refused}"
    );

    // The real reply still works: nothing panicked, nothing stopped listening.
    s.bus
        .publish(command.success(&json!({ "value": "ok" })))
        .await
        .unwrap();
    assert_eq!(wait(&s.m, id).await.status, SagaStatus::Completed);
}

async fn a_participant_that_never_answers_is_timed_out_and_compensated() {
    let s = setup(Duration::from_millis(200), 2).await;
    // DoB is never answered; every UndoB is.
    let mut undo = s.bus.subscribe(Filter::types(["UndoB"])).await.unwrap();
    let bus = s.bus.clone();
    let responder = tokio::spawn(async move {
        while let Some(e) = undo.next().await {
            let c = Command::parse(&e).unwrap();
            assert!(c.idempotency_key.ends_with(":b:compensate"));
            bus.publish(c.success(&json!(null))).await.unwrap();
        }
    });
    let id = s.m.start(NAME, &Data::default()).await.unwrap();
    let saga = wait(&s.m, id).await;
    responder.abort();
    assert_eq!(saga.status, SagaStatus::Compensated);
    assert!(
        saga.steps[1].outcome_unknown,
        "a timed-out command may have taken effect"
    );
    assert_eq!(saga.steps[1].attempts, 2);
    assert_eq!(
        compensations(&s.m.history(id).await.unwrap()),
        [
            "CompensationStarted b",
            "StepCompensated b",
            "CompensationStarted a",
            "StepCompensated a"
        ]
    );
}

async fn a_reply_wait_survives_a_restart() {
    let mut s = setup(Duration::from_secs(30), 3).await;
    let id = s.m.start(NAME, &Data::default()).await.unwrap();
    let command = next_command(&mut s.commands).await;
    until("the wait to be recorded", || async {
        s.m.get(id).await.unwrap().awaiting.is_some()
    })
    .await;
    let waiting = s.m.get(id).await.unwrap();
    assert!(waiting.lease_owner.is_none(), "no lease while waiting");
    assert_eq!(s.m.in_flight(), 0, "no task while waiting");
    drop(s.m); // the mediator goes away while the participant works

    let bus: Arc<dyn EventBus> = Arc::new(InProcessBus::new());
    let m = fast(
        Mediator::builder(
            s.env.reopen().await,
            registry(Duration::from_secs(30), 3, false),
        )
        .bus(bus.clone()),
    )
    .await;
    bus.publish(command.success(&json!({ "value": "after restart" })))
        .await
        .unwrap();
    let saga = wait(&m, id).await;
    assert_eq!(saga.status, SagaStatus::Completed);
    assert_eq!(saga.data["b"], "after restart");
}

on_both!(
    a_duplicate_reply_while_the_saga_still_waits_changes_nothing,
    a_late_reply_for_a_timed_out_attempt_changes_nothing,
    a_reply_after_its_deadline_is_late_even_before_anyone_noticed,
    unknown_and_malformed_replies_change_nothing,
    a_participant_that_never_answers_is_timed_out_and_compensated,
    a_reply_wait_survives_a_restart,
);
