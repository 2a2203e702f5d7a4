//! A message a mediator can never handle is counted, by its group, as it goes to the dead
//! letters.

use super::*;
use saga::engine::bus::{Envelope, InProcessBus};
use saga::engine::participant::REPLY;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_dead_letter_is_counted_by_its_group() {
    figures();
    let db = db().await;
    let bus: Arc<dyn EventBus> = Arc::new(InProcessBus::new());
    // A group of its own: the recorder is the whole test process's.
    let group = format!("figures-{}", Uuid::now_v7().simple());
    let mut registry = Registry::new();
    order::events::register(&mut registry, &order::Options::default()).unwrap();
    let mediator = Mediator::builder(db.store.clone(), registry)
        .bus(bus.clone())
        .group(&group)
        .start()
        .await
        .unwrap();
    let series = format!("saga_dead_letters_total{{group=\"{group}\"}}");
    assert_eq!(sample(&figures().render(), &series), None);

    // A reply whose payload is not a reply: it can never be handled.
    let mut reply = Envelope::new(REPLY, json!({ "nope": 1 }));
    reply.saga_id = Some(Uuid::now_v7());
    reply.definition = Some(order::events::NAME.into());
    reply.step = Some("charge_payment".into());
    reply.attempt = Some(1);
    bus.publish(reply.clone()).await.unwrap();

    let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
    while sample(&figures().render(), &series).is_none() {
        assert!(
            tokio::time::Instant::now() < deadline,
            "{series} never appeared"
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    let letters = bus.dead_letters().list(10).await.unwrap();
    assert_eq!(letters.len(), 1, "{letters:?}");
    assert_eq!(letters[0].event_id(), Some(reply.event_id));
    assert_eq!(letters[0].group, group);
    assert_eq!(sample(&figures().render(), &series), Some(1.0));
    // Nothing was written for it.
    assert!(db.store.list(&Default::default()).await.unwrap().is_empty());
    mediator.shutdown().await;
}
