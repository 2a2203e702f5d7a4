//! The guards: the `Host` a request names (against DNS rebinding), the optional bearer token on
//! every page, and the cross-site check on every action.

use std::net::IpAddr;

use axum::extract::{Request, State};
use axum::http::uri::Authority;
use axum::http::{header, HeaderMap, HeaderValue, Method, StatusCode};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};

use super::{Shared, UiError};

/// Compares without stopping at the first difference, so timing tells nothing about the token.
fn same(a: &str, b: &str) -> bool {
    a.len() == b.len() && a.bytes().zip(b.bytes()).fold(0u8, |d, (x, y)| d | (x ^ y)) == 0
}

/// The host the request names (`Host`, else the URI's authority), with its port if it has one.
fn authority(request: &Request) -> Option<Authority> {
    match request.headers().get(header::HOST) {
        Some(host) => host.to_str().ok()?.parse().ok(),
        None => request.uri().authority().cloned(),
    }
}

/// Refuses a request whose `Host` is a DNS name other than `localhost` or one allowed by
/// `--allow-host`. A page on another site whose name is made to resolve to this machine (DNS
/// rebinding) would otherwise be same-origin with these pages and read them; it cannot name an
/// IP address, so IP literals pass.
pub(super) async fn host(State(ui): State<Shared>, request: Request, next: Next) -> Response {
    if let Some(authority) = authority(&request) {
        let name = authority.host();
        let ip = name.trim_start_matches('[').trim_end_matches(']');
        let allowed = name.eq_ignore_ascii_case("localhost")
            || ip.parse::<IpAddr>().is_ok()
            || ui
                .options
                .allowed_hosts
                .iter()
                .any(|h| h.eq_ignore_ascii_case(name));
        if !allowed {
            return UiError::Forbidden(format!(
                "this saga ui does not serve the host name `{name}`; open it by IP address or localhost, or start it with --allow-host {name}"
            ))
            .into_response();
        }
    }
    next.run(request).await
}

fn bearer(headers: &HeaderMap) -> Option<&str> {
    headers
        .get(header::AUTHORIZATION)?
        .to_str()
        .ok()?
        .strip_prefix("Bearer ")
        .map(str::trim)
}

/// The session cookie's name: one per port, since cookies do not tell ports apart.
fn cookie_name(request: &Request) -> String {
    let port = authority(request).and_then(|a| a.port_u16()).unwrap_or(80);
    format!("saga_ui_{port}")
}

fn cookie<'a>(headers: &'a HeaderMap, name: &str) -> Option<&'a str> {
    headers
        .get_all(header::COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(';'))
        .filter_map(|pair| pair.trim().split_once('='))
        .find(|(n, _)| *n == name)
        .map(|(_, value)| value)
}

/// The query string without its `token` pair, and the token it gave.
fn split_token(query: &str) -> (String, Option<String>) {
    let pairs: Vec<(String, String)> = serde_urlencoded::from_str(query).unwrap_or_default();
    let token = pairs
        .iter()
        .find(|(k, _)| k == "token")
        .map(|(_, v)| v.clone());
    let rest: Vec<&(String, String)> = pairs.iter().filter(|(k, _)| k != "token").collect();
    (
        serde_urlencoded::to_string(&rest).unwrap_or_default(),
        token,
    )
}

/// Lets a request through when no token is set, or it carries the token as a bearer header, or
/// the session cookie, or it asks for an asset. A `GET` with the right `?token=` sets that cookie (a random value made at
/// start, not the token) and redirects to the same page without it, so a browser can open the
/// pages from a link.
pub(super) async fn token(State(ui): State<Shared>, request: Request, next: Next) -> Response {
    let Some(expected) = ui.options.token.as_deref().filter(|t| !t.is_empty()) else {
        return next.run(request).await;
    };
    // The stylesheet and script hold no data; the 401 page itself is styled with them.
    if request.uri().path().starts_with("/assets/") {
        return next.run(request).await;
    }
    let name = cookie_name(&request);
    let (rest, given) = match request.method() {
        &Method::GET => split_token(request.uri().query().unwrap_or("")),
        _ => (String::new(), None),
    };
    match given {
        Some(given) if same(&given, expected) => {
            let path = request.uri().path();
            let location = match rest.is_empty() {
                true => path.to_string(),
                false => format!("{path}?{rest}"),
            };
            let cookie = format!("{name}={}; Path=/; HttpOnly; SameSite=Lax", ui.session);
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
        Some(_) => {}
        None => {
            let headers = request.headers();
            if bearer(headers).is_some_and(|t| same(t, expected))
                || cookie(headers, &name).is_some_and(|s| same(s, &ui.session))
            {
                return next.run(request).await;
            }
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
/// match, and the browser's word on where the request came from must be this server
/// (`Sec-Fetch-Site`, which every current browser sends; else `Origin` against `Host`).
pub(super) fn same_site(ui: &Shared, headers: &HeaderMap, secret: &str) -> Result<(), UiError> {
    let refused = |why: &str| {
        Err(UiError::Forbidden(format!(
            "refused a cross-site request: {why}; use the form on the saga's page"
        )))
    };
    match headers.get("sec-fetch-site").and_then(|v| v.to_str().ok()) {
        Some("same-origin" | "none") => {}
        Some(site) => return refused(&format!("the browser says it came from a {site} page")),
        None => {
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
        }
    }
    if !same(secret, &ui.csrf) {
        return refused("the form's token is missing or stale (reload the page)");
    }
    Ok(())
}
