//! What a page answers when it cannot show what was asked: a 4xx page that names the problem
//! (or 503 when the store is unreachable), never a bare 500.

use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use maud::html;

use super::layout;
use crate::error::CliError;
use saga_engine::operator::OperatorError;
use saga_engine::store::StoreError;

/// Why a request got no page.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum UiError {
    /// The request is malformed: a bad filter, id or form field.
    #[error("{0}")]
    BadRequest(String),
    /// No bearer token, or the wrong one.
    #[error("{0}")]
    Unauthorized(String),
    /// Not allowed: actions are off, or the request came from another site.
    #[error("{0}")]
    Forbidden(String),
    /// No such saga or page.
    #[error("{0}")]
    NotFound(String),
    /// The path exists but not for this method (a `GET` of an action, a `POST` of a page).
    #[error("{0}")]
    MethodNotAllowed(String),
    /// The operation was refused in the saga's current state (as the CLI refuses it).
    #[error("{0}")]
    Conflict(String),
    /// The query string is longer than any the pages make.
    #[error("{0}")]
    TooLong(String),
    /// The store cannot be reached or read.
    #[error("{0}")]
    Store(String),
}

impl UiError {
    /// The HTTP status this error is answered with.
    pub fn status(&self) -> StatusCode {
        match self {
            UiError::BadRequest(_) => StatusCode::BAD_REQUEST,
            UiError::Unauthorized(_) => StatusCode::UNAUTHORIZED,
            UiError::Forbidden(_) => StatusCode::FORBIDDEN,
            UiError::NotFound(_) => StatusCode::NOT_FOUND,
            UiError::MethodNotAllowed(_) => StatusCode::METHOD_NOT_ALLOWED,
            UiError::Conflict(_) => StatusCode::CONFLICT,
            UiError::TooLong(_) => StatusCode::URI_TOO_LONG,
            UiError::Store(_) => StatusCode::SERVICE_UNAVAILABLE,
        }
    }
}

impl From<CliError> for UiError {
    fn from(e: CliError) -> Self {
        match e {
            CliError::Usage(m) => UiError::BadRequest(m),
            CliError::NotFound(m) => UiError::NotFound(m),
            CliError::Refused(m) => UiError::Conflict(m),
            other => UiError::Store(other.to_string()),
        }
    }
}

impl From<StoreError> for UiError {
    fn from(e: StoreError) -> Self {
        UiError::Store(e.to_string())
    }
}

impl From<OperatorError> for UiError {
    fn from(e: OperatorError) -> Self {
        match e {
            // The saga exists; this program just cannot run it on.
            OperatorError::UnknownVersion { .. } => UiError::Conflict(e.to_string()),
            e => CliError::from(e).into(),
        }
    }
}

/// The error page.
pub(super) fn page(error: UiError) -> Response {
    let status = error.status();
    let title = status.canonical_reason().unwrap_or("Error");
    let token_form = matches!(error, UiError::Unauthorized(_));
    let body = layout::page(
        title,
        html! {
            section class="error" data-status=(status.as_u16()) {
                h1 { (status.as_u16()) " " (title) }
                p class="message" { (error.to_string()) }
                @if token_form {
                    form method="get" action="" {
                        label { "Token " input type="password" name="token" autocomplete="off"; }
                        button type="submit" { "Open" }
                    }
                } @else {
                    p { a href="/" { "Back to the list of sagas" } }
                }
            }
        },
    );
    (status, body).into_response()
}
