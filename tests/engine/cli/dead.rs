//! `saga dead-letters list|show|replay` on a real broker: a rejected command and an
//! unparseable message are listed with their reasons, shown, and the rejected one replayed to
//! the group that gave up on it; bad input gets the documented exit codes.

use std::process::Command;
use std::time::Duration;

use saga::engine::{bus::ConsumeOptions, bus::Route};
use saga::engine::{bus::Envelope, bus::Filter};
use serde_json::Value;

use super::{stderr, stdout, SAGA};
use crate::brokers::{Broker, TestBus};
use crate::common::BOUND;

on_buses!(dead_letters_are_listed_shown_and_replayed);

fn saga(tb: &TestBus, args: &[&str]) -> std::process::Output {
    Command::new(SAGA)
        .args(tb.args())
        .args(args)
        .env("NO_COLOR", "1")
        .env_remove("SAGA_BUS_URL")
        .output()
        .unwrap()
}

async fn dead_letters_are_listed_shown_and_replayed(broker: Broker) {
    if broker == Broker::InProcess {
        // The in-process bus keeps no dead letters across processes: the CLI refuses it.
        let out = Command::new(SAGA)
            .args(["dead-letters", "list"])
            .env_remove("SAGA_BUS_URL")
            .output()
            .unwrap();
        assert_eq!(out.status.code(), Some(2), "{}", stderr(&out));
        assert!(stderr(&out).contains("--bus"), "{}", stderr(&out));
        return;
    }
    let Some(tb) = TestBus::new(broker).await else {
        return;
    };
    let mut member = tb
        .bus
        .consume(
            "billing",
            Filter::types(["ChargeCard"]),
            ConsumeOptions::default(),
        )
        .await
        .unwrap();
    let mut command = Envelope::new("ChargeCard", serde_json::json!({ "cents": 5 }));
    command.definition = Some("Checkout".into());
    tb.bus.publish(command.clone()).await.unwrap();
    let d = tokio::time::timeout(BOUND, member.next())
        .await
        .unwrap()
        .unwrap();
    d.reject("no such account").await.unwrap();
    tb.bus
        .publish_raw(&Route::new(Some("Checkout"), "ChargeCard"), b"garbage")
        .await
        .unwrap();
    // The garbage is dead-lettered by the member as it reads on; wait for both letters.
    let dead = tb.bus.dead_letters();
    let started = std::time::Instant::now();
    let pending = tokio::spawn(async move { member.next().await.map(|d| d.event().clone()) });
    while dead.list(10).await.unwrap().len() < 2 {
        assert!(started.elapsed() < BOUND, "two dead letters");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }

    let out = saga(&tb, &["dead-letters", "list"]);
    assert!(out.status.success(), "{}", stderr(&out));
    let table = stdout(&out);
    assert!(table.contains("no such account"), "{table}");
    assert!(table.contains("unparseable"), "{table}");
    assert!(table.contains("Checkout.ChargeCard"), "{table}");
    assert!(table.contains(&command.event_id.to_string()), "{table}");

    let out = saga(&tb, &["dead-letters", "list", "--json"]);
    assert!(out.status.success(), "{}", stderr(&out));
    let listed: Value = serde_json::from_slice(&out.stdout).unwrap();
    let letters = listed["dead_letters"].as_array().unwrap();
    assert_eq!(letters.len(), 2);
    let rejected = letters
        .iter()
        .find(|l| l["reason"] == "no such account")
        .unwrap();
    assert_eq!(rejected["group"], "billing");
    let id = rejected["id"].as_str().unwrap().to_string();

    let out = saga(&tb, &["dead-letters", "show", &id]);
    assert!(out.status.success(), "{}", stderr(&out));
    let shown = stdout(&out);
    assert!(shown.contains("reason:     no such account"), "{shown}");
    assert!(
        shown.contains(&format!("event:      {} (ChargeCard)", command.event_id)),
        "{shown}"
    );

    for bad in [
        vec!["dead-letters", "show", "999999"],
        vec!["dead-letters", "replay", "999999"],
    ] {
        let out = saga(&tb, &bad);
        assert_eq!(out.status.code(), Some(3), "{bad:?}: {}", stderr(&out));
        assert!(stderr(&out).contains("no dead letter"), "{}", stderr(&out));
    }

    let out = saga(&tb, &["dead-letters", "replay", &id]);
    assert!(out.status.success(), "{}", stderr(&out));
    assert!(
        stdout(&out).contains("replayed dead letter"),
        "{}",
        stdout(&out)
    );
    let again = tokio::time::timeout(BOUND, pending).await.unwrap().unwrap();
    assert_eq!(again.map(|e| e.event_id), Some(command.event_id));
    let left = dead.list(10).await.unwrap();
    assert_eq!(left.len(), 1, "{left:?}");
    assert!(left[0].reason.starts_with("unparseable"), "{left:?}");
}
