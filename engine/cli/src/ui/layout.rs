//! The frame every page shares (title, navigation, the stylesheet and the live-update script,
//! both embedded in the binary) and small pieces the pages repeat.

use axum::http::header;
use axum::response::IntoResponse;
use maud::{html, Markup, DOCTYPE};

use crate::output::{absolute, relative};
use saga_engine::Millis;

const STYLE: &str = include_str!("assets/style.css");
const SCRIPT: &str = include_str!("assets/live.js");

/// `/assets/style.css`.
pub(super) async fn style() -> impl IntoResponse {
    (
        [
            (header::CONTENT_TYPE, "text/css; charset=utf-8"),
            (header::CACHE_CONTROL, "max-age=3600"),
        ],
        STYLE,
    )
}

/// `/assets/live.js`.
pub(super) async fn script() -> impl IntoResponse {
    (
        [
            (header::CONTENT_TYPE, "text/javascript; charset=utf-8"),
            (header::CACHE_CONTROL, "max-age=3600"),
        ],
        SCRIPT,
    )
}

/// A whole page around `body`.
pub(super) fn page(title: &str, body: Markup) -> Markup {
    html! {
        (DOCTYPE)
        html lang="en" {
            head {
                meta charset="utf-8";
                meta name="viewport" content="width=device-width, initial-scale=1";
                title { (title) " · saga" }
                link rel="stylesheet" href="/assets/style.css";
                script src="/assets/live.js" defer {}
            }
            body {
                header class="top" {
                    a class="brand" href="/" { "saga" }
                    nav {
                        a href="/" { "Sagas" }
                        a href="/definitions" { "Definitions" }
                    }
                }
                main { (body) }
            }
        }
    }
}

/// A status as a coloured badge.
pub(super) fn badge(status: &str) -> Markup {
    html! { span class={ "badge " (status) } data-status=(status) { (status) } }
}

/// A time as `2026-12-01T10:00:00Z` with `3m ago` beside it.
pub(super) fn when(at: Millis) -> Markup {
    html! { time datetime=(absolute(at)) title=(absolute(at)) { (absolute(at)) } " " span class="ago" { "(" (relative(at)) ")" } }
}
