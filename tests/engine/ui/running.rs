//! Running sagas on both backends: the live stream sends the page's new state after a
//! transition, a saga waiting for a participant's reply says so, and a trip's page and its
//! loyalty child's link to each other.

use std::time::Duration;

use axum::http::StatusCode;
use http_body_util::BodyExt;
use saga::cli::ui::UiOptions;
use saga::engine::{enqueue, operator};
use saga::sagas::order;

use super::*;

on_both!(
    live_stream_follows_a_running_saga,
    a_saga_waiting_for_a_reply
);
on_both!(multi: a_trip_and_its_child_link_to_each_other);

async fn live_stream_follows_a_running_saga() {
    let site = Site::new(UiOptions::default()).await;
    let registry = site.env.registry();
    let id = enqueue(
        site.env.store.as_ref(),
        &registry,
        order::NAME,
        serde_json::to_value(good_order("ui-live")).unwrap(),
    )
    .await
    .unwrap();
    let page = site.ok(&format!("/sagas/{id}")).await;
    assert!(page.body.contains("data-final=\"false\""));
    let seq = page.attrs("data-seq")[0].clone();
    let response = site
        .router
        .clone()
        .oneshot(
            axum::http::Request::get(format!("/sagas/{id}/events?after={seq}"))
                .body(axum::body::Body::empty())
                .unwrap(),
        )
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::OK);
    assert_eq!(response.headers()["content-type"], "text/event-stream");
    let mut body = response.into_body();
    // Reads the stream until it holds `marker`, bounded.
    async fn read_until(body: &mut axum::body::Body, text: &mut String, marker: &str) -> bool {
        let read = async {
            while let Some(frame) = body.frame().await {
                if let Ok(data) = frame.unwrap().into_data() {
                    text.push_str(&String::from_utf8_lossy(&data));
                    if text.contains(marker) {
                        return true;
                    }
                }
            }
            false
        };
        tokio::time::timeout(BOUND, read).await == Ok(true)
    }
    let mut text = String::new();
    // A first transition (an operator's "run now"), then, once its update came, a second one:
    // the stream keeps reading the store after it has sent something.
    operator::retry(site.env.store.as_ref(), &registry, id, "now please")
        .await
        .unwrap();
    let next = format!("data-seq=\"{}\"", seq.parse::<i64>().unwrap() + 1);
    assert!(
        read_until(&mut body, &mut text, &next).await,
        "an update after the retry: {text}"
    );
    assert!(text.starts_with("event: update\n"), "{text}");
    assert!(text.contains("SagaRetried") && text.contains("data-final=\"false\""));
    operator::abort(site.env.store.as_ref(), &registry, id, "stop the live test")
        .await
        .unwrap();
    assert!(
        read_until(&mut body, &mut text, "data-status=\"compensated\"").await,
        "an update after the abort: {text}"
    );
    // Aborted with nothing done yet, it is compensated at once: the stream's last update.
    assert!(text.contains("SagaAborted") && text.contains("data-final=\"true\""));
    assert!(
        body.frame().await.is_none(),
        "the stream ends once the saga is final"
    );
    // A finished saga's stream says nothing and ends.
    let done = tokio::time::timeout(
        Duration::from_secs(30),
        site.get(&format!("/sagas/{}/events?after=999999", site.completed)),
    )
    .await
    .unwrap();
    assert!(
        done.body.contains("event: update"),
        "one last update, then the end"
    );
}

/// OrderSaga over events with no participant serving: it waits for the inventory's reply, and
/// the page says so (what it waits for and until when, no lease) and draws the wait.
async fn a_saga_waiting_for_a_reply() {
    let env = Env::new().await;
    let options = saga::sagas::order::Options {
        step_timeout: Duration::from_secs(600),
        ..fast_options()
    };
    let (m, router) = deployed(&env, || {
        let mut registry = saga::engine::Registry::new();
        order::register_both(&mut registry, &env.participants, &options, true).unwrap();
        registry
    })
    .await;
    let id = m
        .start(order::events::NAME, &good_order("ui-awaiting"))
        .await
        .unwrap();
    until("the saga to wait for a reply", || async {
        env.store.get(id).await.unwrap().unwrap().awaiting.is_some()
    })
    .await;
    let body = super::body_of(&router, &format!("/sagas/{id}")).await;
    let waiting = &body[body
        .find("data-field=\"awaiting\"")
        .expect("says what it waits for")..];
    assert!(
        waiting.starts_with(
            "data-field=\"awaiting\">the reply to reserve_inventory's action command (attempt 1), deadline "
        ),
        "{}",
        &waiting[..200]
    );
    assert!(body.contains("none (nothing runs until what it waits for comes, or its deadline)"));
    assert_eq!(
        super::attrs(&body, "data-outcome"),
        ["succeeded", "awaiting"]
    );
    assert!(body.contains("2. reserve_inventory · participant"));
    m.shutdown().await;
}

/// A paid trip completes with its loyalty child: the parent's page links the child (and its
/// timeline tags the child step's lane), the child's page links the parent.
async fn a_trip_and_its_child_link_to_each_other() {
    use saga::sagas::trip;
    let env = Env::new().await;
    let (m, router) = deployed(&env, || {
        let mut registry = saga::engine::Registry::new();
        trip::register(&mut registry, &env.local, Duration::from_secs(60)).unwrap();
        registry
    })
    .await;
    let id = m
        .start(trip::NAME, &trip::Trip::new("ui-trip", "ada"))
        .await
        .unwrap();
    let paid = serde_json::json!({ "amount": 120_000 });
    m.signal(id, "paid", &paid).await.unwrap();
    assert_eq!(wait(&m, id).await.status, SagaStatus::Completed);
    let (child, _) = env.store.children_of(id).await.unwrap()[0].clone();
    let parent = super::body_of(&router, &format!("/sagas/{id}")).await;
    assert_eq!(super::attrs(&parent, "data-link"), ["child"]);
    assert!(
        parent.contains(&format!(
            "<a href=\"/sagas/{child}\" data-link=\"child\">{child}</a> (started by earn_points)"
        )),
        "{parent}"
    );
    assert!(parent.contains("· child saga loyalty"), "{parent}");
    let page_of_child = super::body_of(&router, &format!("/sagas/{child}")).await;
    assert_eq!(super::attrs(&page_of_child, "data-link"), ["parent"]);
    assert!(
        page_of_child.contains(&format!(
            "child of <a href=\"/sagas/{id}\" data-link=\"parent\">{id}</a> (its step earn_points)"
        )),
        "{page_of_child}"
    );
    m.shutdown().await;
}

/// A mediator over `env`'s store with the definitions `registry` makes, and the pages over the
/// same store and definitions.
async fn deployed(
    env: &Env,
    registry: impl Fn() -> saga::engine::Registry,
) -> (saga::engine::Mediator, axum::Router) {
    let m = fast(saga::engine::Mediator::builder(
        env.store.clone(),
        registry(),
    ))
    .await;
    let pages = Arc::new(registry());
    let router = saga::cli::ui::router(env.store.clone(), pages, UiOptions::default());
    (m, router)
}
