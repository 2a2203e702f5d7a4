//! The list page's filters, read from the query string strictly: an unknown status, a bad
//! time, a malformed cursor or an unknown parameter is a 400 that names it, not an empty list.

use saga_engine::store::ListQuery;
use saga_engine::SagaStatus;
use uuid::Uuid;

use super::UiError;

/// Longer query strings than any the pages make are refused (414).
pub(super) const MAX_QUERY: usize = 2048;
/// The most sagas one page lists.
pub(super) const MAX_LIMIT: usize = 500;
const DEFAULT_LIMIT: usize = 50;

/// The list page's filters as given, kept to build the links to other pages.
#[derive(Debug, Clone, Default)]
pub(super) struct Filters {
    pub statuses: Vec<SagaStatus>,
    pub definition: Option<String>,
    /// As typed (`2h`, an RFC 3339 time), and as a time.
    pub since: Option<(String, i64)>,
    pub before: Option<Uuid>,
    pub limit: usize,
    /// An id or id prefix to find.
    pub find: Option<String>,
}

/// Splits a query string into its pairs, refusing one that is too long or not URL-encoded.
pub(super) fn pairs(raw: Option<&str>) -> Result<Vec<(String, String)>, UiError> {
    let raw = raw.unwrap_or("");
    if raw.len() > MAX_QUERY {
        return Err(UiError::TooLong(format!(
            "the query string is {} bytes; at most {MAX_QUERY} are read",
            raw.len()
        )));
    }
    serde_urlencoded::from_str(raw)
        .map_err(|e| UiError::BadRequest(format!("the query string is malformed: {e}")))
}

impl Filters {
    /// Reads the filters of `GET /`.
    pub(super) fn parse(raw: Option<&str>) -> Result<Self, UiError> {
        let mut filters = Filters {
            limit: DEFAULT_LIMIT,
            ..Filters::default()
        };
        for (key, value) in pairs(raw)? {
            let value = value.trim().to_string();
            if value.is_empty() {
                continue; // an empty form field means "any"
            }
            match key.as_str() {
                "status" => filters.statuses.push(
                    crate::args::parse_status(&value).map_err(|e| UiError::BadRequest(format!("status: {e}")))?,
                ),
                "definition" => filters.definition = Some(value),
                "since" => {
                    let at = crate::args::parse_since(&value)
                        .map_err(|e| UiError::BadRequest(format!("since: {e}")))?;
                    filters.since = Some((value, at));
                }
                "before" => {
                    filters.before = Some(Uuid::parse_str(&value).map_err(|_| {
                        UiError::BadRequest(format!("before: `{value}` is not a saga id"))
                    })?)
                }
                "limit" => {
                    filters.limit = value
                        .parse::<usize>()
                        .ok()
                        .filter(|n| (1..=MAX_LIMIT).contains(n))
                        .ok_or_else(|| {
                            UiError::BadRequest(format!(
                                "limit: `{value}` is not a number from 1 to {MAX_LIMIT}"
                            ))
                        })?
                }
                "find" => filters.find = Some(value),
                other => {
                    return Err(UiError::BadRequest(format!(
                        "unknown parameter `{other}`; the list takes status, definition, since, before, limit and find"
                    )))
                }
            }
        }
        filters.statuses.sort();
        filters.statuses.dedup();
        Ok(filters)
    }

    /// The store's query for these filters.
    pub(super) fn query(&self) -> ListQuery {
        ListQuery {
            statuses: self.statuses.clone(),
            definition: self.definition.clone(),
            since: self.since.as_ref().map(|s| s.1),
            before: self.before,
            limit: self.limit,
        }
    }

    /// The query string of these filters, with `before` replaced by `cursor`.
    pub(super) fn link(&self, cursor: Option<Uuid>) -> String {
        let mut pairs: Vec<(&str, String)> = self
            .statuses
            .iter()
            .map(|s| ("status", s.as_str().to_string()))
            .collect();
        if let Some(d) = &self.definition {
            pairs.push(("definition", d.clone()));
        }
        if let Some((text, _)) = &self.since {
            pairs.push(("since", text.clone()));
        }
        if let Some(c) = cursor {
            pairs.push(("before", c.to_string()));
        }
        if self.limit != DEFAULT_LIMIT {
            pairs.push(("limit", self.limit.to_string()));
        }
        let query = serde_urlencoded::to_string(&pairs).unwrap_or_default();
        if query.is_empty() {
            "/".to_string()
        } else {
            format!("/?{query}")
        }
    }
}
