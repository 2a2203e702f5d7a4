//! The two guards: the optional bearer token on every page, and the cross-site check on every
//! action.

use axum::extract::{Request, State};
use axum::http::{header, HeaderMap, HeaderValue, Method, StatusCode};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};

use super::{Shared, UiError};

const COOKIE: &str = "saga_ui_token";

/// Compares without stopping at the first difference, so timing tells nothing about the token.
fn same(a: &str, b: &str) -> bool {
    a.len() == b.len() && a.bytes().zip(b.bytes()).fold(0u8, |d, (x, y)| d | (x ^ y)) == 0
}

fn bearer(headers: &HeaderMap) -> Option<&str> {
    headers
        .get(header::AUTHORIZATION)?
        .to_str()
        .ok()?
        .strip_prefix("Bearer ")
        .map(str::trim)
}

fn cookie(headers: &HeaderMap) -> Option<&str> {
    headers
        .get_all(header::COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(';'))
        .filter_map(|pair| pair.trim().split_once('='))
        .find(|(name, _)| *name == COOKIE)
        .map(|(_, value)| value)
}

/// Lets a request through when no token is set, or it carries the token as a bearer header or
/// cookie. A `GET` with `?token=` and the right token sets the cookie and redirects to the same
/// page without it, so a browser can open the pages once from a link.
pub(super) async fn token(State(ui): State<Shared>, request: Request, next: Next) -> Response {
    let Some(expected) = ui.options.token.as_deref() else {
        return next.run(request).await;
    };
    let headers = request.headers();
    if bearer(headers)
        .or_else(|| cookie(headers))
        .is_some_and(|t| same(t, expected))
    {
        return next.run(request).await;
    }
    let query = request.uri().query().unwrap_or("");
    let pairs: Vec<(String, String)> = serde_urlencoded::from_str(query).unwrap_or_default();
    let given = pairs
        .iter()
        .find(|(k, _)| k == "token")
        .map(|(_, v)| v.as_str());
    if request.method() == Method::GET && given.is_some_and(|t| same(t, expected)) {
        let rest: Vec<&(String, String)> = pairs.iter().filter(|(k, _)| k != "token").collect();
        let rest = serde_urlencoded::to_string(&rest).unwrap_or_default();
        let path = request.uri().path();
        let location = match rest.is_empty() {
            true => path.to_string(),
            false => format!("{path}?{rest}"),
        };
        let cookie = format!("{COOKIE}={expected}; Path=/; HttpOnly; SameSite=Strict");
        if let (Ok(location), Ok(cookie)) = (
            HeaderValue::from_str(&location),
            HeaderValue::from_str(&cookie),
        ) {
            let mut response = StatusCode::SEE_OTHER.into_response();
            response.headers_mut().insert(header::LOCATION, location);
            response.headers_mut().insert(header::SET_COOKIE, cookie);
            return response;
        }
    }
    let mut response = UiError::Unauthorized(
        "this saga ui needs its token: send `Authorization: Bearer TOKEN`, or open any page once with ?token=TOKEN"
            .into(),
    )
    .into_response();
    response.headers_mut().insert(
        header::WWW_AUTHENTICATE,
        HeaderValue::from_static("Bearer realm=\"saga ui\""),
    );
    response
}

/// Refuses an action that did not come from this server's own page: the form's secret must
/// match, and where the browser says where the request came from (`Origin`, `Sec-Fetch-Site`)
/// that must be this server.
pub(super) fn same_site(ui: &Shared, headers: &HeaderMap, secret: &str) -> Result<(), UiError> {
    let refused = |why: &str| {
        Err(UiError::Forbidden(format!(
            "refused a cross-site request: {why}; use the form on the saga's page"
        )))
    };
    if let Some(site) = headers.get("sec-fetch-site").and_then(|v| v.to_str().ok()) {
        if site != "same-origin" && site != "none" {
            return refused(&format!("the browser says it came from a {site} page"));
        }
    }
    if let Some(origin) = headers.get(header::ORIGIN).and_then(|v| v.to_str().ok()) {
        let host = headers
            .get(header::HOST)
            .and_then(|v| v.to_str().ok())
            .unwrap_or("");
        let from = origin
            .strip_prefix("http://")
            .or_else(|| origin.strip_prefix("https://"))
            .unwrap_or(origin);
        if from != host {
            return refused(&format!("it came from {origin}, not from {host}"));
        }
    }
    if !same(secret, &ui.csrf) {
        return refused("the form's token is missing or stale (reload the page)");
    }
    Ok(())
}
