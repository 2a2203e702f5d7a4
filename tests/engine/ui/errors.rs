//! Bad input on both backends: a 4xx HTML page that names the problem, never a 500, and
//! nothing written.

use axum::http::StatusCode;
use saga::cli::ui::UiOptions;
use saga::engine::store::ListQuery;

use super::*;

on_both!(bad_input_gets_a_clear_4xx);

async fn bad_input_gets_a_clear_4xx() {
    let site = Site::new(UiOptions::default()).await;
    let long = format!("/?definition={}", "x".repeat(3000));
    let missing = uuid::Uuid::new_v4();
    let histories = |site: &Site| {
        let ids = [site.completed, site.compensated, site.failed];
        let store = site.env.store.clone();
        async move {
            let mut lengths = Vec::new();
            for id in ids {
                lengths.push(store.history(id).await.unwrap().len());
            }
            lengths
        }
    };
    let before = histories(&site).await;
    let cases: Vec<(String, StatusCode, &str)> = vec![
        (
            "/?status=bogus".into(),
            StatusCode::BAD_REQUEST,
            "unknown status `bogus`",
        ),
        (
            "/?since=yesterday".into(),
            StatusCode::BAD_REQUEST,
            "`yesterday` is neither a duration",
        ),
        (
            "/?before=xyz".into(),
            StatusCode::BAD_REQUEST,
            "before: `xyz` is not a saga id",
        ),
        (
            "/?limit=0".into(),
            StatusCode::BAD_REQUEST,
            "limit: `0` is not a number from 1 to 500",
        ),
        (
            "/?limit=100000".into(),
            StatusCode::BAD_REQUEST,
            "limit: `100000`",
        ),
        (
            "/?colour=red".into(),
            StatusCode::BAD_REQUEST,
            "unknown parameter `colour`",
        ),
        (
            "/?find=zz".into(),
            StatusCode::BAD_REQUEST,
            "`zz` is neither a saga id nor an id prefix",
        ),
        (
            "/?status=%ZZ".into(),
            StatusCode::BAD_REQUEST,
            "unknown status",
        ),
        (long, StatusCode::URI_TOO_LONG, "at most 2048 are read"),
        (
            "/sagas/not-an-id".into(),
            StatusCode::BAD_REQUEST,
            "`not-an-id` is neither a saga id nor an id prefix",
        ),
        (
            format!("/sagas/{}/timeline.svg", "x".repeat(100)),
            StatusCode::BAD_REQUEST,
            "`xxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxx…` is not a saga id",
        ),
        (
            format!("/sagas/{missing}"),
            StatusCode::NOT_FOUND,
            "no saga with id",
        ),
        (
            format!("/sagas/{missing}/timeline.svg"),
            StatusCode::NOT_FOUND,
            "no saga with id",
        ),
        (
            format!("/sagas/{missing}/events"),
            StatusCode::NOT_FOUND,
            "no saga with id",
        ),
        (
            format!("/sagas/{}/events?after=x", site.completed),
            StatusCode::BAD_REQUEST,
            "after: `x`",
        ),
        (
            "/definitions?x=1".into(),
            StatusCode::BAD_REQUEST,
            "unknown parameter `x`",
        ),
        (
            "/no/such/page".into(),
            StatusCode::NOT_FOUND,
            "no such page",
        ),
    ];
    for (uri, status, message) in cases {
        let page = site.get(&uri).await;
        assert_eq!(page.status, status, "GET {uri}: {}", page.body);
        assert!(
            page.body.contains("class=\"error\""),
            "GET {uri} answers an HTML page"
        );
        assert!(
            page.body.contains(message),
            "GET {uri} says `{message}`: {}",
            page.body
        );
    }
    // Nothing was written.
    assert_eq!(histories(&site).await, before);
    assert_eq!(
        site.env
            .store
            .list(&ListQuery::default())
            .await
            .unwrap()
            .len(),
        3
    );
}
