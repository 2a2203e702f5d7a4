//! `saga ui`: its router called in-process over a real store on both backends (every route,
//! filters, paging, errors, actions, token), the real `saga ui` process, and a real Chromium.

mod actions;
mod browser;
mod errors;
mod pages;
mod process;
mod running;

use std::sync::Arc;

use axum::body::Body;
use axum::http::{HeaderMap, Request, StatusCode};
use axum::Router;
use http_body_util::BodyExt;
use saga::cli::ui::{self, UiOptions};
use saga::engine::fault::{Fault, FaultPlan};
use saga::engine::{Phase, SagaStatus};
use saga::sagas::order;
use tower::ServiceExt;
use uuid::Uuid;

use crate::common::*;

/// A store with three finished OrderSagas (one of each ending) and the pages over it.
pub(super) struct Site {
    pub env: Env,
    pub router: Router,
    pub completed: Uuid,
    pub compensated: Uuid,
    pub failed: Uuid,
}

/// A response: status, headers and body as text.
pub(super) struct Page {
    pub status: StatusCode,
    pub headers: HeaderMap,
    pub body: String,
}

impl Page {
    /// The values of `attr="..."` in document order.
    pub fn attrs(&self, attr: &str) -> Vec<String> {
        attrs(&self.body, attr)
    }

    pub fn header(&self, name: &str) -> &str {
        self.headers
            .get(name)
            .map_or("", |v| v.to_str().unwrap_or(""))
    }
}

/// The values of `attr="..."` in `html`, in document order.
pub(super) fn attrs(html: &str, attr: &str) -> Vec<String> {
    let needle = format!(" {attr}=\"");
    html.match_indices(&needle)
        .map(|(i, _)| {
            let rest = &html[i + needle.len()..];
            rest[..rest.find('"').unwrap()].to_string()
        })
        .collect()
}

/// The body of a `GET` of `uri` on `router`, which must answer 200.
pub(super) async fn body_of(router: &Router, uri: &str) -> String {
    let request = Request::get(uri).body(Body::empty()).unwrap();
    let response = router.clone().oneshot(request).await.unwrap();
    assert_eq!(response.status(), StatusCode::OK, "GET {uri}");
    let bytes = response.into_body().collect().await.unwrap().to_bytes();
    String::from_utf8(bytes.to_vec()).unwrap()
}

/// Runs one OrderSaga to its end with `faults`.
pub(super) async fn run(env: &Env, faults: FaultPlan, tag: &str) -> Uuid {
    let m = env.mediator(faults).await;
    let id = m.start(order::NAME, &good_order(tag)).await.unwrap();
    wait(&m, id).await;
    m.shutdown().await;
    id
}

impl Site {
    pub async fn new(options: UiOptions) -> Site {
        let env = Env::new().await;
        // One retry on the way, so the timeline has a backoff.
        let completed = run(
            &env,
            FaultPlan::new().inject("charge_payment", Phase::Action, Fault::FailTimes(1)),
            "ui-completed",
        )
        .await;
        let compensated = run(
            &env,
            FaultPlan::new().fail_at("create_shipment"),
            "ui-compensated",
        )
        .await;
        let failed = run(
            &env,
            FaultPlan::new().fail_at("create_shipment").inject(
                "reserve_inventory",
                Phase::Compensation,
                Fault::Fail,
            ),
            "ui-failed",
        )
        .await;
        for (id, status) in [
            (completed, SagaStatus::Completed),
            (compensated, SagaStatus::Compensated),
            (failed, SagaStatus::Failed),
        ] {
            assert_eq!(env.store.get(id).await.unwrap().unwrap().status, status);
        }
        let router = ui::router(env.store.clone(), Arc::new(env.registry()), options);
        Site {
            env,
            router,
            completed,
            compensated,
            failed,
        }
    }

    pub async fn request(&self, request: Request<Body>) -> Page {
        let response = self.router.clone().oneshot(request).await.unwrap();
        let status = response.status();
        let headers = response.headers().clone();
        let bytes = response.into_body().collect().await.unwrap().to_bytes();
        Page {
            status,
            headers,
            body: String::from_utf8(bytes.to_vec()).unwrap(),
        }
    }

    pub async fn get(&self, uri: &str) -> Page {
        self.request(Request::get(uri).body(Body::empty()).unwrap())
            .await
    }

    /// A `GET` that must answer 200.
    pub async fn ok(&self, uri: &str) -> Page {
        let page = self.get(uri).await;
        assert_eq!(page.status, StatusCode::OK, "GET {uri}: {}", page.body);
        page
    }
}

/// The lanes the timeline of a compensated OrderSaga (failed at the pivot) must draw, in order.
pub(super) const COMPENSATED_LANES: [&str; 7] = [
    "action:validate_order",
    "action:reserve_inventory",
    "action:charge_payment",
    "action:create_shipment",
    "action:confirm_order",
    "compensation:charge_payment",
    "compensation:reserve_inventory",
];
