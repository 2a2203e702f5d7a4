//! `GET /sagas/ID/events?after=SEQ`: server-sent events for an open saga page. The store may be
//! written by workers in other processes, which wake nothing here, so the server reads the
//! saga's row twice a second (one primary-key read per open page) and, when the history has
//! grown past `after`, reads the history and sends the page's live part again; it ends the
//! stream once the saga is final.

use std::convert::Infallible;
use std::time::Duration;

use axum::extract::{Path, RawQuery, State};
use axum::response::sse::{Event, KeepAlive, Sse};
use axum::response::{IntoResponse, Response};
use futures::stream::{self, Stream};

use super::query::pairs;
use super::saga::{self, parse_id};
use super::{Shared, UiError};

/// How often an open page's saga is read.
const EVERY: Duration = Duration::from_millis(500);

/// `GET /sagas/ID/events`.
pub(super) async fn events(
    State(ui): State<Shared>,
    Path(id): Path<String>,
    RawQuery(raw): RawQuery,
) -> Result<Response, UiError> {
    let id = parse_id(&id)?;
    let mut after = 0;
    for (key, value) in pairs(raw.as_deref())? {
        match key.as_str() {
            "after" => {
                after = value.parse::<i64>().map_err(|_| {
                    UiError::BadRequest(format!("after: `{value}` is not a history position"))
                })?
            }
            other => return Err(UiError::BadRequest(format!("unknown parameter `{other}`"))),
        }
    }
    // 404 now rather than an empty stream.
    if ui.store.get(id).await?.is_none() {
        return Err(UiError::NotFound(format!("no saga with id {id}")));
    }
    Ok(Sse::new(updates(ui, id, after))
        .keep_alive(KeepAlive::default())
        .into_response())
}

/// What the stream has sent: the history position of its last update, and whether that one
/// was final (the stream then ends).
struct Follow {
    ui: Shared,
    id: uuid::Uuid,
    every: tokio::time::Interval,
    after: i64,
    done: bool,
}

fn updates(
    ui: Shared,
    id: uuid::Uuid,
    after: i64,
) -> impl Stream<Item = Result<Event, Infallible>> {
    // The first tick is at once: a page opened late gets what it missed straight away.
    let mut every = tokio::time::interval(EVERY);
    every.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let start = Follow {
        ui,
        id,
        every,
        after,
        done: false,
    };
    stream::unfold(start, |mut f| async move {
        while !f.done {
            f.every.tick().await;
            // A store error ends the stream; the browser reconnects and tries again.
            let saga = f.ui.store.get(f.id).await.ok()??;
            if saga.last_seq != f.after {
                let history = f.ui.store.history(f.id).await.ok()?;
                f.after = saga.last_seq;
                f.done = saga.status.is_final();
                let html = saga::live(&f.ui, &saga, &history).into_string();
                let event = Event::default()
                    .event("update")
                    .id(saga.last_seq.to_string())
                    .data(html);
                return Some((Ok(event), f));
            }
            f.done = saga.status.is_final();
        }
        None
    })
}
