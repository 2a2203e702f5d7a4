//! `saga signal` and what `saga show` says of a waiting saga, with the real binary: a booking
//! started by `saga run` waits on its timer (`saga show` says when it fires), a payment sent by
//! `saga signal` before the wait is kept, the same signal id sent again changes nothing, bad
//! signals exit 1 (2 for data that does not fit, 3 for no such saga) naming the problem, a
//! worker then completes it, and the same signal sent again after that is still "already sent".
//! Over NATS and RabbitMQ, a `PaymentReceived` event that another process publishes pays a
//! booking that a `saga worker --bus` process runs.

use saga::engine::SagaStatus;
use uuid::Uuid;

use super::*;

on_both!(multi: saga_signal_pays_a_waiting_booking);

async fn saga_signal_pays_a_waiting_booking() {
    let db = Db::new().await;
    let started = db.json(&[
        "run",
        "booking",
        "--data",
        r#"{"booking_id":"bk-7","paid":0}"#,
    ]);
    let id = started["id"].as_str().unwrap().to_string();

    let unknown = db.saga(&["signal", &id, "shipped"]);
    assert_eq!(unknown.status.code(), Some(1), "{}", stderr(&unknown));
    assert!(
        stderr(&unknown).contains(
            "no step of `booking` waits for a signal named `shipped` (it waits for: paid)"
        ),
        "{}",
        stderr(&unknown)
    );
    let misfit = db.saga(&["signal", &id, "paid", "--data", r#"{"amount":"lots"}"#]);
    assert_eq!(misfit.status.code(), Some(2), "bad input, as for saga run");
    let no_data = db.saga(&["signal", &id, "paid"]);
    assert_eq!(no_data.status.code(), Some(2));
    assert!(
        stderr(&no_data).contains("expected struct Payment (no --data was given)"),
        "{}",
        stderr(&no_data)
    );
    let by_key_unknown = db.saga(&["signal", "--key", "bk-7", "payed"]);
    assert_eq!(by_key_unknown.status.code(), Some(1));
    assert!(
        stderr(&by_key_unknown).contains(
            "no saga registered here takes a signal named `payed` by key (by key they take: paid)"
        ),
        "{}",
        stderr(&by_key_unknown)
    );
    let by_key_nobody = db.saga(&[
        "signal",
        "--key",
        "nobody",
        "paid",
        "--data",
        r#"{"amount":1}"#,
    ]);
    assert!(by_key_nobody.status.success(), "{}", stderr(&by_key_nobody));
    assert!(
        stdout(&by_key_nobody).contains("no saga waits on that key now"),
        "{}",
        stdout(&by_key_nobody)
    );
    assert!(
        stderr(&misfit).contains("the signal's data does not fit"),
        "{}",
        stderr(&misfit)
    );
    let not_json = db.saga(&["signal", &id, "paid", "--data", "{amount"]);
    assert_eq!(not_json.status.code(), Some(2), "{}", stderr(&not_json));
    let nobody = db.saga(&["signal", &Uuid::now_v7().to_string(), "paid"]);
    assert_eq!(nobody.status.code(), Some(3), "{}", stderr(&nobody));

    let signal_id = Uuid::now_v7().to_string();
    let send = || {
        db.saga(&[
            "signal",
            &id,
            "paid",
            "--data",
            r#"{"amount":75}"#,
            "--event-id",
            &signal_id,
        ])
    };
    let sent = send();
    assert!(sent.status.success(), "{}", stderr(&sent));
    assert!(
        stdout(&sent).contains("kept until a signal step takes it"),
        "{}",
        stdout(&sent)
    );
    let again = send();
    assert!(again.status.success());
    assert!(
        stdout(&again).contains("was already sent"),
        "{}",
        stdout(&again)
    );

    // Nothing runs it yet: the first step is still to be taken by a worker.
    let _worker = db.worker("");
    until("the booking waits on its timer", || async {
        let text = stdout(&db.saga(&["show", &id]));
        text.contains("cool_off's timer, which fires")
    })
    .await;
    until("the booking completes", || async {
        db.status(id.parse().unwrap()).await == SagaStatus::Completed
    })
    .await;
    let shown = db.json(&["show", &id]);
    assert_eq!(shown["data"]["paid"], 75);
    let history = stdout(&db.saga(&["history", &id]));
    for kind in [
        "TimerScheduled",
        "TimerFired",
        "SignalAwaited",
        "SignalReceived",
    ] {
        assert!(history.contains(kind), "{kind} missing: {history}");
    }
    let late = db.saga(&["signal", &id, "paid", "--data", r#"{"amount":1}"#]);
    assert_eq!(late.status.code(), Some(1));
    assert!(
        stderr(&late).contains("already completed"),
        "{}",
        stderr(&late)
    );
    // A sender retrying the signal it sent (a webhook delivered again) still hears it was sent.
    let retried = send();
    assert!(retried.status.success(), "{}", stderr(&retried));
    assert!(
        stdout(&retried).contains("was already sent"),
        "{}",
        stdout(&retried)
    );
    let defs = stdout(&db.saga(&["definitions"]));
    assert!(
        defs.contains("signal paid (key booking_id)") && defs.contains("timer 2s"),
        "{defs}"
    );
}

/// On each broker (the in-process bus does not cross processes).
mod a_payment_event_from_another_process_pays_the_booking {
    use crate::brokers::Broker;

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn nats() {
        super::a_payment_event_from_another_process_pays_the_booking(Broker::Nats).await
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn rabbitmq() {
        super::a_payment_event_from_another_process_pays_the_booking(Broker::Rabbitmq).await
    }
}

/// The worker is a real `saga worker --bus` process; the payment service is this test's
/// process, publishing `PaymentReceived` (only the booking's business key in its payload) on a
/// connection of its own.
async fn a_payment_event_from_another_process_pays_the_booking(broker: crate::brokers::Broker) {
    let Some(tb) = crate::brokers::TestBus::new(broker).await else {
        return;
    };
    let db = Db::new().await;
    let started = db.json(&[
        "run",
        "booking",
        "--data",
        r#"{"booking_id":"bk-ext","paid":0}"#,
    ]);
    let id = started["id"].as_str().unwrap().to_string();
    let child = db
        .command()
        .args(["worker", "--poll", "50ms", "--lease", "2s"])
        .args(tb.args())
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap();
    let _worker = Worker(child);
    until("the booking waits for its payment", || async {
        stdout(&db.saga(&["show", &id])).contains("the signal `paid`")
    })
    .await;
    let payment = saga::engine::bus::Envelope::new(
        "PaymentReceived",
        serde_json::json!({ "booking_id": "bk-ext", "amount": 33 }),
    );
    tb.connect().await.publish(payment.clone()).await.unwrap();
    until("the booking completes", || async {
        db.status(id.parse().unwrap()).await == SagaStatus::Completed
    })
    .await;
    let shown = db.json(&["show", &id]);
    assert_eq!(shown["data"]["paid"], 33);
    assert_eq!(shown["steps"][2]["name"], "await_payment");
    let history = db.json(&["history", &id]);
    let received = history["events"]
        .as_array()
        .unwrap()
        .iter()
        .find(|e| e["type"] == "SignalReceived")
        .cloned()
        .unwrap();
    assert_eq!(
        received["detail"]["signal_id"],
        serde_json::json!(payment.event_id)
    );
}
