//! `saga show` links a parent and its child saga both ways, in text and in `--json`: a trip
//! queued by `saga run` (with data that leaves its bookings out), paid by `saga signal`, run by
//! a `saga worker` until its loyalty child completes it, every booking kept.

use saga::engine::SagaStatus;

use super::*;

on_both!(multi: saga_show_links_a_trip_and_its_loyalty_child_both_ways);

async fn saga_show_links_a_trip_and_its_loyalty_child_both_ways() {
    let db = Db::new().await;
    let started = db.json(&[
        "run",
        "trip",
        "--data",
        r#"{"trip_id":"t-9","traveller":"ada","paid":0,"points":0}"#,
    ]);
    let id = started["id"].as_str().unwrap().to_string();
    let paid = db.saga(&["signal", &id, "paid", "--data", r#"{"amount":120000}"#]);
    assert!(paid.status.success(), "{}", stderr(&paid));
    let _worker = db.worker("");
    db.until_status(id.parse().unwrap(), SagaStatus::Completed)
        .await;

    let parent = db.json(&["show", &id]);
    assert_eq!(parent["parent"], Value::Null, "{parent:#}");
    // The data given left the bookings out: every branch's booking is kept all the same.
    for (field, booked) in [
        ("flight", "flight-t-9"),
        ("hotel", "hotel-t-9"),
        ("car", "car-t-9"),
    ] {
        assert_eq!(parent["data"][field], booked, "{parent:#}");
    }
    let children = parent["children"].as_array().unwrap();
    assert_eq!(children.len(), 1, "{parent:#}");
    assert_eq!(children[0]["step"], "earn_points");
    let child = children[0]["id"].as_str().unwrap().to_string();
    assert_ne!(child, id);

    let shown = db.json(&["show", &child]);
    assert_eq!(shown["definition"], "loyalty");
    assert_eq!(shown["status"], "completed");
    assert_eq!(shown["parent"], json!({ "id": id, "step": "earn_points" }));
    assert_eq!(shown["children"], json!([]));

    let text = stdout(&db.saga(&["show", &id]));
    assert!(
        text.contains(&format!("child       {child} (started by earn_points)")),
        "{text}"
    );
    assert!(!text.contains("parent      "), "{text}");
    let text = stdout(&db.saga(&["show", &child]));
    assert!(
        text.contains(&format!("parent      {id} (its step earn_points)")),
        "{text}"
    );
    assert!(!text.contains("child       "), "{text}");
}
