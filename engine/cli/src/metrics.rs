//! `saga worker --metrics ADDR`: the worker's figures as Prometheus text at `GET /metrics`.
//! The engine reports them through the `metrics` facade; this installs the Prometheus recorder
//! and serves what it renders, after reading the gauges that come from the store (sagas in
//! flight, the outbox), so a scrape sees them as they are at that moment.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use axum::extract::State;
use axum::http::{header, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use metrics_exporter_prometheus::{Matcher, PrometheusBuilder, PrometheusHandle};
use saga_engine::figures;
use saga_engine::store::SagaStore;

use crate::error::CliError;

/// Bucket bounds for durations, in seconds: a millisecond step to a minute-long one.
const SECONDS: &[f64] = &[
    0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0,
    60.0,
];
/// Bucket bounds for transitions per commit.
const BATCH: &[f64] = &[1.0, 2.0, 4.0, 8.0, 16.0, 32.0, 64.0, 128.0, 256.0];

#[derive(Clone)]
struct Scrape {
    handle: PrometheusHandle,
    store: Arc<dyn SagaStore>,
    /// The registered definitions: each has its in-flight gauges, 0 or not.
    definitions: Arc<[String]>,
}

/// `--metrics ADDR`: `IP:PORT`, or `HOST:PORT` resolved when the command line is read (to the
/// host's IPv4 address where it has one, as scrapers of `localhost` mostly expect), so a bad
/// address is refused before anything is opened.
pub(crate) fn listen_address(text: &str) -> Result<SocketAddr, String> {
    use std::net::ToSocketAddrs;
    let all: Vec<SocketAddr> = text
        .to_socket_addrs()
        .map_err(|e| format!("{e} (expected IP:PORT or HOST:PORT)"))?
        .collect();
    all.iter()
        .find(|a| a.is_ipv4())
        .or(all.first())
        .copied()
        .ok_or_else(|| format!("`{text}` names no address"))
}

/// Installs the Prometheus recorder and serves `/metrics` on `addr` until the process ends,
/// with the in-flight gauges of `definitions`. Returns the address it listens on.
pub(crate) async fn serve(
    addr: SocketAddr,
    store: Arc<dyn SagaStore>,
    definitions: Vec<String>,
) -> Result<SocketAddr, CliError> {
    let cannot = |e: &dyn std::fmt::Display| CliError::Usage(format!("--metrics {addr}: {e}"));
    let listener = tokio::net::TcpListener::bind(addr)
        .await
        .map_err(|e| cannot(&e))?;
    let bound = listener.local_addr().map_err(|e| cannot(&e))?;
    let handle = PrometheusBuilder::new()
        .set_buckets_for_metric(Matcher::Suffix("_seconds".into()), SECONDS)
        .and_then(|b| {
            b.set_buckets_for_metric(Matcher::Full(figures::COMMIT_BATCH_SIZE.into()), BATCH)
        })
        .and_then(|b| b.install_recorder())
        .map_err(|e| cannot(&e))?;
    figures::describe();
    // Upkeep keeps the histograms' buffers from growing between scrapes.
    let upkeep = handle.clone();
    tokio::spawn(async move {
        loop {
            tokio::time::sleep(Duration::from_secs(5)).await;
            upkeep.run_upkeep();
        }
    });
    let app = axum::Router::new()
        .route("/metrics", get(scrape))
        .with_state(Scrape {
            handle,
            store,
            definitions: definitions.into(),
        });
    tokio::spawn(async move {
        if let Err(error) = axum::serve(listener, app).await {
            tracing::error!(%error, "the metrics endpoint stopped");
        }
    });
    Ok(bound)
}

async fn scrape(State(scrape): State<Scrape>) -> Response {
    // A store that cannot be read leaves its gauges as last read; the counters still matter
    // then (failed lease renewals most of all), so they are served all the same.
    let names = scrape.definitions.iter().map(String::as_str);
    if let Err(error) = figures::sample(scrape.store.as_ref(), names).await {
        tracing::warn!(%error, "reading the store's gauges for a scrape failed");
    }
    (
        StatusCode::OK,
        [(header::CONTENT_TYPE, "text/plain; version=0.0.4")],
        scrape.handle.render(),
    )
        .into_response()
}
