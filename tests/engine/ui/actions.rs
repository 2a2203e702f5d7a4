//! Retry and abort from the page: refused without `--allow-actions`, without the form's secret,
//! from another site, without a reason, and where the CLI refuses; when allowed, recorded in
//! the history exactly as `saga abort` / `saga retry` record it. And the bearer token.

use axum::body::Body;
use axum::http::{header, Request, StatusCode};
use saga::cli::ui::UiOptions;
use saga::engine::{enqueue, EventKind, SagaStatus};
use saga::sagas::order;
use serde_json::json;

use super::*;

on_both!(
    actions_refused_without_the_flag,
    actions_refused_across_sites,
    abort_and_retry_recorded_as_from_the_cli,
    token_guards_every_page,
    host_names_other_than_localhost_refused,
);

fn form(uri: &str) -> axum::http::request::Builder {
    Request::post(uri)
        .header(header::CONTENT_TYPE, "application/x-www-form-urlencoded")
        .header(header::HOST, "127.0.0.1:8080")
}

/// A running saga (queued, no worker) and the secret its page's forms carry.
async fn running(site: &Site) -> (uuid::Uuid, String) {
    let id = enqueue(
        site.env.store.as_ref(),
        &site.env.registry(),
        order::NAME,
        serde_json::to_value(good_order("ui-act")).unwrap(),
    )
    .await
    .unwrap();
    let page = site.ok(&format!("/sagas/{id}")).await;
    let csrf = page
        .attrs("value")
        .into_iter()
        .find(|v| v.len() == 64)
        .unwrap_or_default();
    (id, csrf)
}

async fn history_len(site: &Site, id: uuid::Uuid) -> usize {
    site.env.store.history(id).await.unwrap().len()
}

async fn actions_refused_without_the_flag() {
    let site = Site::new(UiOptions::default()).await;
    let (id, csrf) = running(&site).await;
    assert!(csrf.is_empty(), "no action forms without --allow-actions");
    let before = history_len(&site, id).await;
    for verb in ["abort", "retry"] {
        let body = "reason=because&csrf=anything";
        let page = site
            .request(
                form(&format!("/sagas/{id}/{verb}"))
                    .body(Body::from(body))
                    .unwrap(),
            )
            .await;
        assert_eq!(page.status, StatusCode::FORBIDDEN, "{verb}: {}", page.body);
        assert!(page.body.contains("start saga ui with --allow-actions"));
    }
    assert_eq!(history_len(&site, id).await, before, "nothing was written");
    let saga = site.env.store.get(id).await.unwrap().unwrap();
    assert_eq!(saga.status, SagaStatus::Running);
}

async fn actions_refused_across_sites() {
    let site = Site::new(UiOptions::default().allow_actions(true)).await;
    let (id, csrf) = running(&site).await;
    assert_eq!(csrf.len(), 64, "the page's forms carry the secret");
    let before = history_len(&site, id).await;
    let uri = format!("/sagas/{id}/abort");
    let good = format!("reason=stop&csrf={csrf}");
    let cases: Vec<(Request<Body>, StatusCode, &str)> = vec![
        (
            form(&uri).body(Body::from("reason=stop")).unwrap(),
            StatusCode::FORBIDDEN,
            "the form's token is missing or stale",
        ),
        (
            form(&uri)
                .body(Body::from("reason=stop&csrf=0000"))
                .unwrap(),
            StatusCode::FORBIDDEN,
            "the form's token is missing or stale",
        ),
        (
            form(&uri)
                .header(header::ORIGIN, "http://evil.example")
                .body(Body::from(good.clone()))
                .unwrap(),
            StatusCode::FORBIDDEN,
            "it came from http://evil.example",
        ),
        (
            form(&uri)
                .header("sec-fetch-site", "cross-site")
                .body(Body::from(good.clone()))
                .unwrap(),
            StatusCode::FORBIDDEN,
            "came from a cross-site page",
        ),
        (
            form(&uri)
                .body(Body::from(format!("reason=+&csrf={csrf}")))
                .unwrap(),
            StatusCode::BAD_REQUEST,
            "give a reason",
        ),
        (
            Request::post(&uri).body(Body::from(good.clone())).unwrap(),
            StatusCode::BAD_REQUEST,
            "the form is malformed",
        ),
    ];
    for (request, status, message) in cases {
        let page = site.request(request).await;
        assert_eq!(page.status, status, "{}", page.body);
        assert!(
            page.body.contains(message),
            "says `{message}`: {}",
            page.body
        );
    }
    assert_eq!(history_len(&site, id).await, before, "nothing was written");
}

async fn abort_and_retry_recorded_as_from_the_cli() {
    let site = Site::new(UiOptions::default().allow_actions(true)).await;
    let (id, csrf) = running(&site).await;
    // Each page offers what the engine would do: a queued saga both, a failed one a retry,
    // a finished one nothing.
    let forms = |page: Page| -> Vec<String> {
        page.attrs("id")
            .into_iter()
            .filter(|i| i.ends_with("-form"))
            .collect()
    };
    assert_eq!(
        forms(site.ok(&format!("/sagas/{id}")).await),
        ["retry-form", "abort-form"]
    );
    assert_eq!(
        forms(site.ok(&format!("/sagas/{}", site.failed)).await),
        ["retry-form"]
    );
    assert!(forms(site.ok(&format!("/sagas/{}", site.completed)).await).is_empty());
    let body = format!("reason=customer+called+to+cancel&csrf={csrf}");
    let page = site
        .request(
            form(&format!("/sagas/{id}/abort"))
                .header(header::ORIGIN, "http://127.0.0.1:8080")
                .header("sec-fetch-site", "same-origin")
                .body(Body::from(body))
                .unwrap(),
        )
        .await;
    assert_eq!(page.status, StatusCode::SEE_OTHER, "{}", page.body);
    assert_eq!(page.header("location"), format!("/sagas/{id}"));
    let history = site.env.store.history(id).await.unwrap();
    let aborted = history
        .iter()
        .find(|e| e.kind == EventKind::SagaAborted)
        .unwrap();
    assert_eq!(
        aborted.detail,
        json!({ "reason": "customer called to cancel" })
    );
    let saga = site.env.store.get(id).await.unwrap().unwrap();
    // Nothing had run yet, so there was nothing to undo.
    assert_eq!(saga.status, SagaStatus::Compensated);

    // Refused where the CLI refuses, with its sentence: a completed saga cannot be retried.
    let cli = saga::engine::operator::retry(
        site.env.store.as_ref(),
        &site.env.registry(),
        site.completed,
        "again",
    )
    .await
    .unwrap_err()
    .to_string();
    let before = history_len(&site, site.completed).await;
    let body = format!("reason=again&csrf={csrf}");
    let page = site
        .request(
            form(&format!("/sagas/{}/retry", site.completed))
                .body(Body::from(body))
                .unwrap(),
        )
        .await;
    assert_eq!(page.status, StatusCode::CONFLICT, "{}", page.body);
    assert!(page.body.contains(&cli), "{cli} in {}", page.body);
    assert_eq!(history_len(&site, site.completed).await, before);

    // Retry of the failed saga resumes its compensation, recorded with the reason.
    let body = format!("reason=stock+fixed+by+hand&csrf={csrf}");
    let page = site
        .request(
            form(&format!("/sagas/{}/retry", site.failed))
                .body(Body::from(body))
                .unwrap(),
        )
        .await;
    assert_eq!(page.status, StatusCode::SEE_OTHER, "{}", page.body);
    let history = site.env.store.history(site.failed).await.unwrap();
    let retried = history.last().unwrap();
    assert!(
        history.iter().any(|e| e.kind == EventKind::SagaRetried
            && e.detail == json!({ "reason": "stock fixed by hand" })),
        "{retried:?}"
    );
    let unknown = uuid::Uuid::new_v4();
    let body = format!("reason=x&csrf={csrf}");
    let page = site
        .request(
            form(&format!("/sagas/{unknown}/abort"))
                .body(Body::from(body))
                .unwrap(),
        )
        .await;
    assert_eq!(page.status, StatusCode::NOT_FOUND, "{}", page.body);
}

async fn token_guards_every_page() {
    let site = Site::new(UiOptions::default().token(Some("s3cret-token".into()))).await;
    for uri in [
        "/",
        "/definitions",
        &format!("/sagas/{}", site.completed),
        &format!("/sagas/{}/timeline.svg", site.completed),
        &format!("/sagas/{}/events", site.completed),
        "/nope",
    ] {
        let page = site.get(uri).await;
        assert_eq!(page.status, StatusCode::UNAUTHORIZED, "GET {uri}");
        assert!(page.header("www-authenticate").starts_with("Bearer"));
        assert!(page.body.contains("needs its token"));
    }
    // The 401 page is styled: the assets hold no data and need no token.
    assert_eq!(site.get("/assets/style.css").await.status, StatusCode::OK);
    let wrong = site
        .request(
            Request::get("/")
                .header(header::AUTHORIZATION, "Bearer nope")
                .body(Body::empty())
                .unwrap(),
        )
        .await;
    assert_eq!(wrong.status, StatusCode::UNAUTHORIZED);
    let post = site
        .request(
            form(&format!("/sagas/{}/abort", site.completed))
                .body(Body::from("reason=x&csrf=y"))
                .unwrap(),
        )
        .await;
    assert_eq!(
        post.status,
        StatusCode::UNAUTHORIZED,
        "actions need the token too"
    );
    assert_eq!(
        site.get("/?token=nope").await.status,
        StatusCode::UNAUTHORIZED
    );
    let right = site
        .request(
            Request::get("/")
                .header(header::AUTHORIZATION, "Bearer s3cret-token")
                .body(Body::empty())
                .unwrap(),
        )
        .await;
    assert_eq!(right.status, StatusCode::OK);
    // A link with the token sets a cookie and drops the token from the address.
    let link = site.get("/?status=failed&token=s3cret-token").await;
    assert_eq!(link.status, StatusCode::SEE_OTHER);
    assert_eq!(link.header("location"), "/?status=failed");
    let cookie = link.header("set-cookie").to_string();
    assert!(
        cookie.contains("HttpOnly") && cookie.contains("SameSite=Lax"),
        "{cookie}"
    );
    assert!(
        !cookie.contains("s3cret-token"),
        "the cookie holds a session, not the token"
    );
    let pair = cookie.split(';').next().unwrap();
    assert!(pair.starts_with("saga_ui_"), "{pair}");
    // A bookmarked link with the token still works once the cookie is set.
    let again = site
        .request(
            Request::get("/?token=s3cret-token")
                .header(header::COOKIE, pair)
                .body(Body::empty())
                .unwrap(),
        )
        .await;
    assert_eq!(again.status, StatusCode::SEE_OTHER);
    assert_eq!(again.header("location"), "/");
    let page = site
        .request(
            Request::get("/?status=failed")
                .header(header::COOKIE, pair)
                .body(Body::empty())
                .unwrap(),
        )
        .await;
    assert_eq!(page.status, StatusCode::OK);
    assert_eq!(page.attrs("data-saga"), vec![site.failed.to_string()]);
}

/// DNS rebinding: a page on another site cannot name this server by a host name of its own.
async fn host_names_other_than_localhost_refused() {
    let site = Site::new(UiOptions::default()).await;
    let with_host = |host: &'static str| {
        Request::get("/")
            .header(header::HOST, host)
            .body(Body::empty())
            .unwrap()
    };
    for host in ["127.0.0.1:8080", "localhost:8080", "[::1]:8080", "10.1.2.3"] {
        assert_eq!(
            site.request(with_host(host)).await.status,
            StatusCode::OK,
            "{host}"
        );
    }
    let refused = site
        .request(with_host("rebind.attacker.example:8080"))
        .await;
    assert_eq!(refused.status, StatusCode::FORBIDDEN);
    assert!(refused
        .body
        .contains("does not serve the host name `rebind.attacker.example`"));
    let site = Site::new(UiOptions::default().allow_host("sagas.internal.example")).await;
    let allowed = site.request(with_host("sagas.internal.example")).await;
    assert_eq!(allowed.status, StatusCode::OK);
    let other = site.request(with_host("rebind.attacker.example")).await;
    assert_eq!(other.status, StatusCode::FORBIDDEN);
}
