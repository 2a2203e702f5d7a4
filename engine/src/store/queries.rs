//! What the stores read the same way on every backend: the listing's query, the counts, the
//! definitions in flight, and id prefixes.

use uuid::Uuid;

use super::StoreError;
use crate::state::{Millis, SagaStatus};

/// Which sagas [`super::SagaStore::list`] returns: newest first, all filters combined.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ListQuery {
    /// Any of these statuses (all when empty).
    pub statuses: Vec<SagaStatus>,
    /// Only this definition.
    pub definition: Option<String>,
    /// Only sagas created at or after this time.
    pub since: Option<Millis>,
    /// Only sagas older than this one (the cursor of the next page).
    pub before: Option<Uuid>,
    /// At most this many.
    pub limit: usize,
}

impl Default for ListQuery {
    fn default() -> Self {
        Self {
            statuses: Vec::new(),
            definition: None,
            since: None,
            before: None,
            limit: 50,
        }
    }
}

/// [`SagaStore::counts`], the same on every backend.
pub(super) const COUNTS: &str = "SELECT definition, status, COUNT(*) FROM saga_instances \
                      GROUP BY definition, status ORDER BY definition, status";

/// Reads `(depth, oldest age in ms)` rows of an outbox query into [`OutboxStats`].
pub(super) fn outbox_stats((depth, age): (i64, Option<i64>)) -> super::OutboxStats {
    super::OutboxStats {
        depth: u64::try_from(depth).unwrap_or(0),
        oldest_age: std::time::Duration::from_millis(
            age.and_then(|a| u64::try_from(a).ok()).unwrap_or(0),
        ),
    }
}

/// [`SagaStore::in_flight_counts`], the same on every backend (by the status index).
pub(super) const IN_FLIGHT: &str = "SELECT definition, status, COUNT(*) FROM saga_instances \
                      WHERE status IN ('running', 'compensating') \
                      GROUP BY definition, status ORDER BY definition, status";

/// [`SagaStore::unfinished_definitions`], the same on every backend.
pub(super) const UNFINISHED: &str = "SELECT definition, version, COUNT(*) FROM saga_instances \
                          WHERE status IN ('running', 'compensating') GROUP BY definition, version";

/// Parses `(definition, version, count)` rows of [`UNFINISHED`].
pub(super) fn parse_unfinished(rows: Vec<(String, i64, i64)>) -> Vec<(String, u32, u64)> {
    rows.into_iter()
        .map(|(d, v, n)| (d, u32::try_from(v).unwrap_or(u32::MAX), n.max(0) as u64))
        .collect()
}

/// Parses `(definition, status, count)` rows of [`SagaStore::counts`].
pub(super) fn parse_counts(
    rows: Vec<(String, String, i64)>,
) -> Result<Vec<(String, SagaStatus, u64)>, StoreError> {
    rows.into_iter()
        .map(|(d, s, n)| {
            let status = s.parse().map_err(|e| StoreError::Corrupt {
                id: format!("(a saga of {d})"),
                reason: format!("{e}"),
            })?;
            Ok((d, status, n.max(0) as u64))
        })
        .collect()
}

/// The smallest and largest ids whose hyphenated text starts with `prefix`, or `None` when no id
/// can (the prefix is not lower-case hex with hyphens where a UUID has them).
#[cfg(feature = "postgres")]
pub(super) fn prefix_range(prefix: &str) -> Option<(Uuid, Uuid)> {
    const LOW: &str = "00000000-0000-0000-0000-000000000000";
    const HIGH: &str = "ffffffff-ffff-ffff-ffff-ffffffffffff";
    let tail = LOW.len().checked_sub(prefix.len())?;
    let pad = |template: &str| format!("{prefix}{}", &template[LOW.len() - tail..]);
    let low = Uuid::parse_str(&pad(LOW)).ok()?;
    let high = Uuid::parse_str(&pad(HIGH)).ok()?;
    // Parsing also accepts upper case; stored ids are printed lower case.
    (low.to_string().starts_with(prefix)).then_some((low, high))
}
