//! A mediator's commits: through [`crate::commit`], the one place every transition is written,
//! holding this mediator's lease, then handing the events to the dispatcher.

use super::Inner;
use crate::state::SagaState;
use crate::store::{Lease, StoreError};
use crate::transition::Change;

impl Inner {
    /// Commits a transition of a saga this mediator drives, then hands its events to the
    /// dispatcher.
    pub(crate) async fn commit(
        &self,
        current: Option<&SagaState>,
        change: Change,
    ) -> Result<SagaState, StoreError> {
        self.commit_checked(current, change, false).await
    }

    /// [`Inner::commit`] for a participant's reply: refused once the reply's deadline passed.
    pub(crate) async fn commit_checked(
        &self,
        current: Option<&SagaState>,
        change: Change,
        before_deadline: bool,
    ) -> Result<SagaState, StoreError> {
        let lease = Lease {
            owner: &self.config.owner,
            duration: self.config.lease,
        };
        let written = crate::commit::write_checked(
            self.store.as_ref(),
            current,
            change,
            Some(lease),
            &self.config.faults,
            before_deadline,
        )
        .await?;
        self.dispatch(written.outbox);
        Ok(written.state)
    }
}
