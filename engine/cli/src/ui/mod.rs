//! `saga ui`: web pages over any store the CLI can open. The list of sagas, one saga's page
//! with its timeline and history, the definitions with counts, and (when asked for) the
//! operator's retry and abort. Server-rendered HTML (maud), hand-written SVG, and one small
//! script for live updates, all embedded in the binary.
//!
//! [`router`] is public so a program can mount the pages inside its own axum application;
//! `saga ui` serves the same router on its own.

mod actions;
mod counts;
mod definitions;
mod error;
mod guard;
mod layout;
mod list;
mod live;
mod query;
mod saga;

use std::sync::Arc;
use std::time::Instant;

use axum::extract::Request;
use axum::http::{header, HeaderValue};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::Router;

pub use error::UiError;
use saga_engine::store::SagaStore;
use saga_engine::Registry;

/// The environment variable `saga ui` reads its bearer token from when `--token` is not given.
pub const TOKEN_ENV: &str = "SAGA_UI_TOKEN";

/// What the pages may show and do. The defaults are the safe ones: no payloads, no actions, no
/// token.
#[derive(Debug, Clone, Default)]
#[non_exhaustive]
pub struct UiOptions {
    /// Show each saga's data on its page (payloads are hidden by default, as in logs).
    pub show_data: bool,
    /// Offer retry and abort on a saga's page (refused with 403 otherwise).
    pub allow_actions: bool,
    /// When set, every page needs this bearer token: an `Authorization: Bearer` header, or the
    /// cookie a first visit with `?token=` sets. An empty token counts as none.
    pub token: Option<String>,
    /// Host names (besides `localhost` and IP addresses) requests may name in `Host`, such as
    /// the name a proxy in front serves the pages under.
    pub allowed_hosts: Vec<String>,
}

impl UiOptions {
    /// Shows each saga's data.
    pub fn show_data(mut self, yes: bool) -> Self {
        self.show_data = yes;
        self
    }

    /// Offers retry and abort.
    pub fn allow_actions(mut self, yes: bool) -> Self {
        self.allow_actions = yes;
        self
    }

    /// Guards every page with `token` (ignored when empty).
    pub fn token(mut self, token: Option<String>) -> Self {
        self.token = token.filter(|t| !t.is_empty());
        self
    }

    /// Serves requests that name `host` (a DNS name) in their `Host` header.
    pub fn allow_host(mut self, host: impl Into<String>) -> Self {
        self.allowed_hosts.push(host.into());
        self
    }
}

/// What every handler reads: the store, the registered sagas, the options, the secret the
/// action forms carry against cross-site requests, and the value of the session cookie.
pub(crate) struct Ui {
    pub store: Arc<dyn SagaStore>,
    pub registry: Arc<Registry>,
    pub options: UiOptions,
    pub csrf: String,
    pub session: String,
    pub counts: counts::Counts,
}

pub(crate) type Shared = Arc<Ui>;

/// The pages as an axum router over `store`, with `registry` for the definitions (steps, kinds,
/// what is still to undo) and for the actions.
pub fn router(store: Arc<dyn SagaStore>, registry: Arc<Registry>, options: UiOptions) -> Router {
    let ui = Arc::new(Ui {
        store,
        registry,
        options,
        csrf: secret(),
        session: secret(),
        counts: counts::Counts::default(),
    });
    // Count once now, so the first list need not wait for a slow count.
    if let Ok(runtime) = tokio::runtime::Handle::try_current() {
        let ui = ui.clone();
        runtime.spawn(async move { counts::Counts::get(&ui).await.map(|_| ()) });
    }
    Router::new()
        .route("/", get(list::page))
        .route("/definitions", get(definitions::page))
        .route("/sagas/{id}", get(saga::page))
        .route("/sagas/{id}/timeline.svg", get(saga::timeline_svg))
        .route("/sagas/{id}/events", get(live::events))
        .route("/sagas/{id}/abort", post(actions::abort))
        .route("/sagas/{id}/retry", post(actions::retry))
        .route("/assets/style.css", get(layout::style))
        .route("/assets/live.js", get(layout::script))
        .fallback(|| async { UiError::NotFound("no such page".into()) })
        .method_not_allowed_fallback(|| async {
            UiError::MethodNotAllowed(
                "this page takes no such request (actions are POSTs from a saga's page)".into(),
            )
        })
        .layer(middleware::from_fn_with_state(ui.clone(), guard::token))
        .layer(middleware::from_fn_with_state(ui.clone(), guard::host))
        .layer(middleware::from_fn(response_headers))
        .with_state(ui)
}

/// 256 random bits as hex (UUID v4 draws from the operating system's generator).
fn secret() -> String {
    format!(
        "{}{}",
        uuid::Uuid::new_v4().simple(),
        uuid::Uuid::new_v4().simple()
    )
}

/// Adds `Server-Timing: app;dur=MS` (how long the server took, for browsers' tools and for the
/// benchmark) and the headers that keep browsers from sniffing types or framing the pages.
async fn response_headers(request: Request, next: Next) -> Response {
    let begun = Instant::now();
    let mut response = next.run(request).await;
    let ms = begun.elapsed().as_secs_f64() * 1000.0;
    if let Ok(value) = HeaderValue::from_str(&format!("app;dur={ms:.2}")) {
        response.headers_mut().insert("server-timing", value);
    }
    response.headers_mut().insert(
        header::X_CONTENT_TYPE_OPTIONS,
        HeaderValue::from_static("nosniff"),
    );
    response
        .headers_mut()
        .insert(header::X_FRAME_OPTIONS, HeaderValue::from_static("DENY"));
    response
}

/// Serves the pages on `listener` until `stop` resolves, then stops accepting and returns at
/// once, without waiting on open pages' live streams: those connections end when the runtime
/// does (when `saga ui` exits), and their browsers reconnect to whatever serves next.
pub async fn serve(
    listener: tokio::net::TcpListener,
    router: Router,
    stop: impl std::future::Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    tokio::select! {
        served = axum::serve(listener, router.into_make_service()) => served,
        () = stop => Ok(()),
    }
}

impl IntoResponse for UiError {
    fn into_response(self) -> Response {
        error::page(self)
    }
}
