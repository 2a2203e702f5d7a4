//! Every page on both backends: the list with counts, filters, paging and find; a compensated
//! and a failed saga's page with its timeline and history; the definitions; the standalone SVG.

use axum::http::StatusCode;
use saga::cli::ui::UiOptions;
use saga::engine::store::ListQuery;

use super::*;

on_both!(
    list_counts_filters_and_pages,
    list_finds_by_id_prefix,
    compensated_saga_page,
    failed_saga_page_says_what_it_needs,
    data_only_with_show_data,
    definitions_page,
    timeline_svg_stands_alone,
    assets_are_embedded,
);

async fn list_counts_filters_and_pages() {
    let site = Site::new(UiOptions::default()).await;
    let all = site.ok("/").await;
    let newest_first: Vec<String> = site
        .env
        .store
        .list(&ListQuery::default())
        .await
        .unwrap()
        .iter()
        .map(|s| s.id.to_string())
        .collect();
    assert_eq!(all.attrs("data-saga"), newest_first);
    assert_eq!(newest_first.len(), 3);
    // Counts by status at the top, the failed one marked as needing attention.
    for (status, n) in [
        ("all", 3),
        ("completed", 1),
        ("compensated", 1),
        ("failed", 1),
        ("running", 0),
    ] {
        let tile = format!("data-count=\"{status}\"");
        let at = all
            .body
            .find(&tile)
            .unwrap_or_else(|| panic!("no {status} tile"));
        assert!(
            all.body[at..].contains(&format!("<span class=\"n\">{n}</span>")),
            "{status} count is {n}"
        );
    }
    assert!(all.body.contains("class=\"failed attention\""));
    let failed_row = format!("class=\"attention\" data-saga=\"{}\"", site.failed);
    assert!(
        all.body.contains(&failed_row),
        "the failed saga's row is marked"
    );
    assert_eq!(all.body.matches("⚠ needs attention").count(), 1);

    // Filters.
    let compensated = site.ok("/?status=compensated").await;
    assert_eq!(
        compensated.attrs("data-saga"),
        vec![site.compensated.to_string()]
    );
    let two = site.ok("/?status=completed&status=failed").await;
    assert_eq!(
        two.attrs("data-saga"),
        vec![site.failed.to_string(), site.completed.to_string()]
    );
    assert_eq!(
        site.ok("/?definition=OrderSaga")
            .await
            .attrs("data-saga")
            .len(),
        3
    );
    let none = site.ok("/?definition=NoSuchSaga&since=1h").await;
    assert!(none.attrs("data-saga").is_empty());
    assert!(none.body.contains("No sagas match."));
    // The tiles count the chosen definition's sagas (of any age), and link to just those.
    assert!(
        none.body
            .contains("data-count=\"all\"><span class=\"n\">0</span>"),
        "tiles follow the definition"
    );
    assert!(none
        .body
        .contains("href=\"/?status=failed&amp;definition=NoSuchSaga\""));
    assert_eq!(site.ok("/?since=1h").await.attrs("data-saga").len(), 3);
    assert_eq!(
        site.ok("/?since=2000-01-01T00:00:00Z")
            .await
            .attrs("data-saga")
            .len(),
        3
    );
    assert!(site
        .ok("/?since=2999-01-01T00:00:00Z")
        .await
        .attrs("data-saga")
        .is_empty());
    // Empty form fields mean "any".
    assert_eq!(
        site.ok("/?definition=&since=&find=")
            .await
            .attrs("data-saga")
            .len(),
        3
    );

    // Paging with the cursor of `saga list --before`, filters kept.
    let mut seen = Vec::new();
    let mut uri = "/?limit=1".to_string();
    for _ in 0..5 {
        let page = site.ok(&uri).await;
        let ids = page.attrs("data-saga");
        assert_eq!(ids.len(), 1, "{uri} after {seen:?}");
        seen.extend(ids);
        match page.body.find("id=\"next-page\"") {
            Some(_) => {
                let next = page
                    .attrs("href")
                    .into_iter()
                    .find(|h| h.contains("before="))
                    .unwrap()
                    .replace("&amp;", "&");
                assert!(
                    next.contains("limit=1"),
                    "the next page keeps the filters: {next}"
                );
                uri = next;
            }
            None => break,
        }
    }
    assert_eq!(
        seen, newest_first,
        "paging visits every saga once, newest first"
    );
}

async fn list_finds_by_id_prefix() {
    let site = Site::new(UiOptions::default()).await;
    let id = site.compensated.to_string();
    let found = site.get(&format!("/?find={}", &id[..30])).await;
    assert_eq!(found.status, StatusCode::SEE_OTHER);
    assert_eq!(found.header("location"), format!("/sagas/{id}"));
    let full = site.get(&format!("/?find={id}")).await;
    assert_eq!(full.header("location"), format!("/sagas/{id}"));
    // The three ids share their first (timestamp) characters: all listed, none opened.
    let ids: Vec<String> = [site.completed, site.failed]
        .iter()
        .map(|i| i.to_string())
        .collect();
    let shared = id
        .chars()
        .zip(ids[0].chars().zip(ids[1].chars()))
        .take_while(|(a, (b, c))| a == b && a == c)
        .count()
        .min(8);
    assert!(
        shared >= 4,
        "ids made seconds apart share their first characters"
    );
    let common = &id[..shared];
    let many = site.ok(&format!("/?find={common}")).await;
    assert_eq!(many.attrs("data-saga").len(), 3);
    assert!(many
        .body
        .contains(&format!("3 saga ids start with `{common}`")));
    let by_path = site.get(&format!("/sagas/{}", &id[..30])).await;
    assert_eq!(
        by_path.status,
        StatusCode::SEE_OTHER,
        "a prefix in the path, as `saga show` takes"
    );
    assert_eq!(by_path.header("location"), format!("/sagas/{id}"));
    let missing = site.get("/?find=ffffffff").await;
    assert_eq!(missing.status, StatusCode::NOT_FOUND);
    assert!(missing.body.contains("no saga id starts with `ffffffff`"));
    let unknown = uuid::Uuid::new_v4();
    let gone = site.get(&format!("/?find={unknown}")).await;
    assert_eq!(gone.status, StatusCode::NOT_FOUND);
}

async fn compensated_saga_page() {
    let site = Site::new(UiOptions::default()).await;
    let page = site.ok(&format!("/sagas/{}", site.compensated)).await;
    assert!(page.body.contains("data-status=\"compensated\""));
    assert!(page.body.contains("OrderSaga v1"));
    assert!(
        page.body.contains("`create_shipment` failed"),
        "the last error is shown"
    );
    // The timeline: the step lanes in order, then the compensations in the order they ran.
    assert_eq!(page.attrs("data-lane"), COMPENSATED_LANES);
    assert!(page.body.contains("◆ pivot"));
    assert!(page.body.contains("undo charge_payment (refund_payment)"));
    assert!(page
        .body
        .contains("undo reserve_inventory (release_inventory)"));
    // Bars by outcome: four steps ran, the pivot failed for good, both compensations succeeded.
    let outcomes = page.attrs("data-outcome");
    assert_eq!(
        outcomes,
        [
            "succeeded",
            "succeeded",
            "succeeded",
            "failed",
            "succeeded",
            "succeeded"
        ]
    );
    // The full history, in order, with the compensations last step first.
    let stored = site.env.store.history(site.compensated).await.unwrap();
    let rows = &page.body[page.body.find("class=\"history\"").unwrap()..];
    let kinds: Vec<String> = stored.iter().map(|e| e.kind.to_string()).collect();
    assert_eq!(super::attrs(rows, "data-event"), kinds);
    let first = rows
        .find("CompensationStarted</td><td>charge_payment")
        .unwrap();
    let second = rows
        .find("CompensationStarted</td><td>reserve_inventory")
        .unwrap();
    assert!(first < second, "compensations in the order they ran");
    assert!(rows.contains("compensation=refund_payment"));
    // Nothing to do: no lease, nothing to undo, no actions offered (not allowed).
    assert!(page.body.contains("none (finished)"));
    assert!(!page.body.contains("still to undo"));
    assert!(!page.body.contains("-form\""));
}

async fn failed_saga_page_says_what_it_needs() {
    let site = Site::new(UiOptions::default()).await;
    let page = site.ok(&format!("/sagas/{}", site.failed)).await;
    assert!(page.body.contains("data-status=\"failed\""));
    assert!(page.body.contains("data-field=\"needs\""));
    assert!(page.body.contains(&format!("saga retry {}", site.failed)));
    assert!(page
        .body
        .contains("none (nothing runs until an operator retries it)"));
    assert!(page
        .body
        .contains("compensation of `reserve_inventory` failed"));
    let undo = page
        .body
        .find("data-field=\"to-undo\"")
        .expect("what is left to undo");
    assert!(page.body[undo..].starts_with("data-field=\"to-undo\">reserve_inventory<"));
    assert_eq!(page.attrs("data-lane"), COMPENSATED_LANES);
    assert_eq!(
        page.attrs("data-outcome"),
        [
            "succeeded",
            "succeeded",
            "succeeded",
            "failed",
            "succeeded",
            "failed"
        ]
    );
}

async fn data_only_with_show_data() {
    let site = Site::new(UiOptions::default()).await;
    let hidden = site.ok(&format!("/sagas/{}", site.completed)).await;
    assert!(
        !hidden.body.contains("ui-completed"),
        "payloads are hidden by default"
    );
    assert!(!hidden.body.contains("id=\"data\""));
    let site = Site::new(UiOptions::default().show_data(true)).await;
    let shown = site.ok(&format!("/sagas/{}", site.completed)).await;
    assert!(shown.body.contains("id=\"data\""));
    assert!(shown.body.contains("ui-completed"));
    // The completed saga retried charge_payment once: a failed-and-retried bar, then a backoff.
    assert_eq!(
        shown.attrs("data-outcome"),
        [
            "succeeded",
            "succeeded",
            "retrying",
            "succeeded",
            "succeeded",
            "succeeded"
        ]
    );
    assert!(shown.body.contains("class=\"wait\""));
}

async fn definitions_page() {
    let site = Site::new(UiOptions::default()).await;
    let page = site.ok("/definitions").await;
    let section = &page.body[page
        .body
        .find("data-definition=\"OrderSaga\" data-version=\"1\"")
        .unwrap()..];
    let steps = super::attrs(section, "data-step");
    assert_eq!(
        &steps[..5],
        [
            "validate_order",
            "reserve_inventory",
            "charge_payment",
            "create_shipment",
            "confirm_order"
        ]
    );
    let kinds = super::attrs(section, "data-kind");
    assert_eq!(
        &kinds[..5],
        [
            "compensatable",
            "compensatable",
            "compensatable",
            "pivot",
            "retriable"
        ]
    );
    assert!(section.contains("release_inventory"));
    assert!(section.contains("0 in flight on this version"));
    let row = &page.body[page.body.find("<tr data-definition=\"OrderSaga\"").unwrap()..];
    let row = &row[..row.find("</tr>").unwrap()];
    for status in ["completed", "compensated", "failed"] {
        assert!(row.contains(&format!("data-status=\"{status}\"><a href=\"/?definition=OrderSaga&amp;status={status}\">1</a>")), "{row}");
    }
    assert!(row.contains("<td>3</td>"));
}

async fn timeline_svg_stands_alone() {
    let site = Site::new(UiOptions::default()).await;
    let svg = site
        .ok(&format!("/sagas/{}/timeline.svg", site.compensated))
        .await;
    assert_eq!(svg.header("content-type"), "image/svg+xml");
    assert!(svg.body.starts_with("<?xml"));
    assert!(svg.body.contains("xmlns=\"http://www.w3.org/2000/svg\""));
    assert_eq!(svg.attrs("data-lane"), COMPENSATED_LANES);
}

/// The stylesheet and the live-update script come from the binary, cacheable, and every page
/// links them.
async fn assets_are_embedded() {
    let site = Site::new(UiOptions::default()).await;
    let css = site.ok("/assets/style.css").await;
    assert_eq!(css.header("content-type"), "text/css; charset=utf-8");
    assert!(css.body.contains(".timeline-box"));
    let js = site.ok("/assets/live.js").await;
    assert_eq!(js.header("content-type"), "text/javascript; charset=utf-8");
    assert!(js.body.contains("EventSource"));
    assert!(js.header("cache-control").starts_with("max-age="));
    let page = site.ok("/definitions").await;
    assert!(page.body.contains("href=\"/assets/style.css\""));
    assert!(page.body.contains("src=\"/assets/live.js\""));
    assert_eq!(page.header("x-frame-options"), "DENY");
    assert!(page.header("server-timing").starts_with("app;dur="));
}
