//! `POST /sagas/ID/retry` and `/abort`: the operator's actions, only with `--allow-actions`,
//! only from this server's own form (see [`super::guard::same_site`]), each with a reason that
//! the history records exactly as `saga retry` / `saga abort` record it. The engine refuses
//! where the CLI refuses (409), with the CLI's sentence.

use axum::extract::rejection::FormRejection;
use axum::extract::{Path, State};
use axum::http::HeaderMap;
use axum::response::{IntoResponse, Redirect, Response};
use axum::Form;
use serde::Deserialize;

use super::guard::same_site;
use super::saga::parse_id;
use super::{Shared, UiError};
use saga_engine::operator;

/// The action form's fields.
#[derive(Debug, Deserialize)]
pub(super) struct ActionForm {
    #[serde(default)]
    reason: String,
    #[serde(default)]
    csrf: String,
}

#[derive(Clone, Copy)]
enum Action {
    Retry,
    Abort,
}

/// `POST /sagas/ID/retry`.
pub(super) async fn retry(
    state: State<Shared>,
    id: Path<String>,
    headers: HeaderMap,
    form: Result<Form<ActionForm>, FormRejection>,
) -> Result<Response, UiError> {
    act(state, id, headers, form, Action::Retry).await
}

/// `POST /sagas/ID/abort`.
pub(super) async fn abort(
    state: State<Shared>,
    id: Path<String>,
    headers: HeaderMap,
    form: Result<Form<ActionForm>, FormRejection>,
) -> Result<Response, UiError> {
    act(state, id, headers, form, Action::Abort).await
}

async fn act(
    State(ui): State<Shared>,
    Path(id): Path<String>,
    headers: HeaderMap,
    form: Result<Form<ActionForm>, FormRejection>,
    action: Action,
) -> Result<Response, UiError> {
    if !ui.options.allow_actions {
        return Err(UiError::Forbidden(
            "actions are off: start saga ui with --allow-actions to retry and abort from the page"
                .into(),
        ));
    }
    let Form(form) =
        form.map_err(|e| UiError::BadRequest(format!("the form is malformed: {e}")))?;
    same_site(&ui, &headers, &form.csrf)?;
    let id = parse_id(&id)?;
    let reason = form.reason.trim();
    if reason.is_empty() {
        return Err(UiError::BadRequest(
            "give a reason: it is recorded in the saga's history".into(),
        ));
    }
    if reason.len() > 1000 {
        return Err(UiError::BadRequest(format!(
            "the reason is {} bytes; keep it under 1000",
            reason.len()
        )));
    }
    let store = ui.store.as_ref();
    match action {
        Action::Retry => operator::retry(store, &ui.registry, id, reason).await?,
        Action::Abort => operator::abort(store, &ui.registry, id, reason).await?,
    };
    Ok(Redirect::to(&format!("/sagas/{id}")).into_response())
}
