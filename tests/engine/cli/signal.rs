//! `saga signal` and what `saga show` says of a waiting saga, with the real binary: a booking
//! started by `saga run` waits on its timer (`saga show` says when it fires), a payment sent by
//! `saga signal` before the wait is kept, the same signal id sent again changes nothing, bad
//! signals exit 3 naming the problem with nothing kept, and a worker then completes it.

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
    assert_eq!(misfit.status.code(), Some(1));
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
    let defs = stdout(&db.saga(&["definitions"]));
    assert!(
        defs.contains("signal paid (key booking_id)") && defs.contains("timer 2s"),
        "{defs}"
    );
}
