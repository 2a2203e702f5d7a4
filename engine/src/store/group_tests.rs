//! The commit pipeline's own tests: a batch that was not made durable confirms nothing.

use super::*;

struct Saga(Uuid);

impl Encoded for Saga {
    fn saga(&self) -> Uuid {
        self.0
    }
    fn creates(&self) -> bool {
        false
    }
}

#[test]
fn a_batch_that_was_not_made_durable_confirms_nothing_it_wrote() {
    let (applied, refused) = (Uuid::now_v7(), Uuid::now_v7());
    let writes: Vec<Write<Saga, ()>> = vec![
        Write::Transition(Box::new(Saga(applied))),
        Write::Transition(Box::new(Saga(refused))),
        Write::RemoveOutbox(()),
    ];
    let (senders, receivers): (Vec<_>, Vec<_>) = (0..3).map(|_| oneshot::channel()).unzip();
    let outcomes = vec![Ok(7), Err(StoreError::LeaseLost(refused)), Ok(0)];
    let failed = Err(StoreError::CommitFailed("disk gone".into()));
    answer(senders, outcomes, &writes, failed);
    let heard: Vec<Outcome> = receivers
        .into_iter()
        .map(|mut r| r.try_recv().unwrap())
        .collect();
    assert!(matches!(heard[0], Err(StoreError::Unconfirmed(id)) if id == applied));
    assert!(matches!(heard[1], Err(StoreError::LeaseLost(id)) if id == refused));
    assert!(matches!(&heard[2], Err(StoreError::CommitFailed(m)) if m.contains("disk gone")));
}
