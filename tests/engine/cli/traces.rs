//! The `saga` binary exporting its traces over OTLP/HTTP, as `OTEL_EXPORTER_OTLP_ENDPOINT`
//! says, to a collector that is a plain socket in this test: what arrives names the saga's
//! trace, and `saga show` prints that trace's id. A collector that refuses the connection is
//! said on stderr, and the saga runs all the same.

use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpListener;
use std::sync::mpsc;

use super::*;

/// Accepts OTLP/HTTP requests on `listener`, answers 200, and sends each request's path and
/// body on.
fn collector(listener: TcpListener) -> mpsc::Receiver<(String, Vec<u8>)> {
    let (tx, rx) = mpsc::channel();
    std::thread::spawn(move || {
        for stream in listener.incoming() {
            let Ok(stream) = stream else { return };
            let mut reader = BufReader::new(stream);
            let mut request = String::new();
            if reader.read_line(&mut request).is_err() {
                continue;
            }
            let mut length = 0;
            loop {
                let mut line = String::new();
                if reader.read_line(&mut line).is_err() || line.trim().is_empty() {
                    break;
                }
                if let Some((name, value)) = line.split_once(':') {
                    if name.eq_ignore_ascii_case("content-length") {
                        length = value.trim().parse().unwrap_or(0);
                    }
                }
            }
            let mut body = vec![0; length];
            if reader.read_exact(&mut body).is_err() {
                continue;
            }
            let mut stream = reader.into_inner();
            let answer = b"HTTP/1.1 200 OK\r\ncontent-length: 0\r\nconnection: close\r\n\r\n";
            let _ = stream.write_all(answer);
            let path = request.split_whitespace().nth(1).unwrap_or("").to_string();
            if tx.send((path, body)).is_err() {
                return;
            }
        }
    });
    rx
}

async fn a_saga_run_exports_its_trace_over_otlp_and_show_names_it() {
    let db = Db::new().await;
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let endpoint = format!("http://{}", listener.local_addr().unwrap());
    let received = collector(listener);
    let run = db.saga_env(
        &[
            "run",
            "OrderSaga",
            "--data",
            &order("tr1", 500_000, "FR"),
            "--wait",
            "--json",
        ],
        &[
            ("OTEL_EXPORTER_OTLP_ENDPOINT", &endpoint),
            ("OTEL_SERVICE_NAME", "saga-trace-test"),
        ],
    );
    // Declined and compensated: exit 1, with the saga's JSON all the same.
    assert_eq!(run.status.code(), Some(1), "{}", stderr(&run));
    let id = id_of(&serde_json::from_slice(&run.stdout).unwrap());

    let show = db.json(&["show", &id.to_string()]);
    let trace = show["trace_id"]
        .as_str()
        .expect("a traced saga has a trace id");
    assert_eq!(trace.len(), 32, "{trace}");
    let text = db.saga(&["show", &id.to_string()]);
    let out = String::from_utf8_lossy(&text.stdout).to_string();
    assert!(out.contains(&format!("trace       {trace}")), "{out}");

    // The process flushed its spans before it exited: the trace's id is in what arrived, as
    // the 16 bytes OTLP's protobuf carries, with the service's name.
    let wanted: Vec<u8> = (0..16)
        .map(|i| u8::from_str_radix(&trace[2 * i..2 * i + 2], 16).unwrap())
        .collect();
    let mut bodies = Vec::new();
    while let Ok((path, body)) = received.recv_timeout(std::time::Duration::from_secs(10)) {
        assert_eq!(path, "/v1/traces");
        bodies.push(body);
        let all: Vec<u8> = bodies.concat();
        let has = |needle: &[u8]| all.windows(needle.len()).any(|w| w == needle);
        if has(&wanted) && has(b"saga-trace-test") && has(b"compensate reserve_inventory") {
            return;
        }
    }
    panic!("the saga's trace never arrived ({} requests)", bodies.len());
}

async fn a_collector_that_cannot_be_reached_is_said_and_the_saga_runs_all_the_same() {
    let db = Db::new().await;
    // A port nobody listens on any more.
    let closed = TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap();
    let endpoint = format!("http://{closed}");
    let run = db.saga_env(
        &[
            "run",
            "OrderSaga",
            "--data",
            &order("tr3", 1_000, "FR"),
            "--wait",
        ],
        &[("OTEL_EXPORTER_OTLP_ENDPOINT", &endpoint)],
    );
    assert_eq!(run.status.code(), Some(0), "{}", stderr(&run));
    let said = stderr(&run);
    // The SDK's own words, from warnings up.
    assert!(said.contains("telemetry data will be lost"), "{said}");
    assert!(said.contains("BatchSpanProcessor.ExportError"), "{said}");
}

async fn an_untraced_saga_shows_no_trace() {
    let db = Db::new().await;
    let run = db.json(&["run", "OrderSaga", "--data", &order("tr2", 1_000, "FR")]);
    let show = db.json(&["show", &id_of(&run).to_string()]);
    assert!(show["trace_id"].is_null(), "{show}");
}

on_both!(
    a_saga_run_exports_its_trace_over_otlp_and_show_names_it,
    a_collector_that_cannot_be_reached_is_said_and_the_saga_runs_all_the_same,
    an_untraced_saga_shows_no_trace,
);
