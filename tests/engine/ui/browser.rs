//! A real browser: headless Chromium, driven over WebDriver by chromedriver, loads the list and
//! a compensated saga's page, reads the timeline's lanes and their drawn order from the DOM,
//! watches a running saga's page update by itself, aborts a saga through the page's form, and
//! saves screenshots under the build directory (`target/tmp/ui-screenshots/`). Without
//! Chromium and chromedriver the test says so loudly and passes, unless
//! `SAGA_REQUIRE_BROWSER=1` (CI), where it fails.

use std::net::TcpListener;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};

use fantoccini::{ClientBuilder, Locator};
use saga::cli::ui::UiOptions;
use saga::engine::{enqueue, operator, EventKind};
use saga::sagas::order;
use serde_json::{json, Value};

use super::process::serve;
use super::*;

const CHROMIUM: &str = "/usr/bin/chromium";
const CHROMEDRIVER: &str = "/usr/bin/chromedriver";

/// Whether Chromium and chromedriver are installed; panics when not and they are required.
fn browser_installed() -> bool {
    let missing: Vec<&str> = [CHROMIUM, CHROMEDRIVER]
        .into_iter()
        .filter(|p| !std::path::Path::new(p).exists())
        .collect();
    if missing.is_empty() {
        return true;
    }
    if std::env::var("SAGA_REQUIRE_BROWSER").as_deref() == Ok("1") {
        panic!("a browser is required (SAGA_REQUIRE_BROWSER=1) but {missing:?} is missing");
    }
    eprintln!(
        "\n!!! SKIPPING the browser test: {missing:?} not installed \
         (apt-get install chromium chromium-driver).\n\
         !!! Set SAGA_REQUIRE_BROWSER=1 to fail instead.\n"
    );
    false
}

/// chromedriver on a free port, killed when dropped.
struct Driver {
    child: Child,
    url: String,
}

impl Drop for Driver {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn chromedriver() -> Driver {
    let port = TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let mut child = Command::new(CHROMEDRIVER)
        .arg(format!("--port={port}"))
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    // It says when it listens.
    let (tx, rx) = std::sync::mpsc::channel();
    let stdout = child.stdout.take().unwrap();
    std::thread::spawn(move || {
        use std::io::BufRead;
        for line in std::io::BufReader::new(stdout)
            .lines()
            .map_while(Result::ok)
        {
            if line.contains("started successfully") {
                let _ = tx.send(());
            }
        }
    });
    rx.recv_timeout(BOUND)
        .unwrap_or_else(|_| panic!("chromedriver did not start on port {port}"));
    Driver {
        child,
        url: format!("http://127.0.0.1:{port}"),
    }
}

/// Clicks the element `css` finds.
async fn click(client: &fantoccini::Client, css: &str) {
    let element = client.find(Locator::Css(css)).await.unwrap();
    element.click().await.unwrap();
}

fn screenshots() -> PathBuf {
    let dir = PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join("ui-screenshots");
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn chromium_shows_the_list_a_timeline_and_live_updates() {
    if !browser_installed() {
        return;
    }
    let site = Site::new(UiOptions::default()).await;
    let registry = site.env.registry();
    let queue = |tag: &str| {
        enqueue(
            site.env.store.as_ref(),
            &registry,
            order::NAME,
            serde_json::to_value(good_order(tag)).unwrap(),
        )
    };
    let live = queue("ui-browser-live").await.unwrap();
    let act = queue("ui-browser-act").await.unwrap();
    let server = serve(
        &site.env,
        &["--listen", "127.0.0.1:0", "--allow-actions"],
        &[],
    );
    let base = format!("http://{}", server.addr);
    let driver = chromedriver();
    let profile = tempfile::tempdir().unwrap();
    let mut caps = serde_json::Map::new();
    caps.insert(
        "goog:chromeOptions".into(),
        json!({
            "binary": CHROMIUM,
            "args": [
                "--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage",
                "--disable-quic", "--no-first-run", "--disable-background-networking",
                "--disable-component-update", "--disable-sync", "--window-size=1400,1000",
                format!("--user-data-dir={}", profile.path().display()),
            ],
        }),
    );
    let client = ClientBuilder::new(hyper_util::client::legacy::connect::HttpConnector::new())
        .capabilities(caps)
        .connect(&driver.url)
        .await
        .unwrap_or_else(|e| panic!("no WebDriver session at {}: {e}", driver.url));
    let wait = || client.wait().at_most(BOUND);
    let shots = screenshots();

    // The list: five sagas newest first, the failed one marked.
    client.goto(&format!("{base}/")).await.unwrap();
    let rows = client
        .find_all(Locator::Css("table.sagas tbody tr"))
        .await
        .unwrap();
    assert_eq!(rows.len(), 5);
    let marked = client
        .find(Locator::Css("tr.attention"))
        .await
        .unwrap()
        .attr("data-saga")
        .await
        .unwrap();
    assert_eq!(marked, Some(site.failed.to_string()));
    std::fs::write(shots.join("list.png"), client.screenshot().await.unwrap()).unwrap();

    // A click to the compensated saga; its timeline's lanes, in order, drawn top to bottom.
    click(&client, &format!("a[href='/sagas/{}']", site.compensated)).await;
    wait()
        .for_element(Locator::Css("svg.timeline g.lane"))
        .await
        .unwrap();
    let lanes = client
        .execute(
            "return [...document.querySelectorAll('svg.timeline g.lane')].map(g => ({
                lane: g.dataset.lane,
                top: g.querySelector('.lane-bg').getBoundingClientRect().top,
                bars: [...g.querySelectorAll('rect.bar')].map(b => b.dataset.outcome),
                label: g.querySelector('text.label').textContent,
            }));",
            vec![],
        )
        .await
        .unwrap();
    let lanes = lanes.as_array().unwrap();
    let names: Vec<&str> = lanes.iter().map(|l| l["lane"].as_str().unwrap()).collect();
    assert_eq!(names, COMPENSATED_LANES);
    let tops: Vec<f64> = lanes.iter().map(|l| l["top"].as_f64().unwrap()).collect();
    assert!(
        tops.windows(2).all(|w| w[0] < w[1]),
        "drawn top to bottom: {tops:?}"
    );
    let bars = |i: usize| lanes[i]["bars"].clone();
    assert_eq!(bars(3), json!(["failed"]), "the pivot failed");
    assert_eq!(bars(4), json!([]), "confirm_order never ran");
    assert_eq!(bars(5), json!(["succeeded"]));
    assert_eq!(bars(6), json!(["succeeded"]));
    assert_eq!(lanes[5]["label"], "undo charge_payment (refund_payment)");
    let status = client
        .find(Locator::Css("#live"))
        .await
        .unwrap()
        .attr("data-status")
        .await
        .unwrap();
    assert_eq!(status.as_deref(), Some("compensated"));
    std::fs::write(
        shots.join("compensated-saga.png"),
        client.screenshot().await.unwrap(),
    )
    .unwrap();

    // A running saga's page follows it without reloading.
    client.goto(&format!("{base}/sagas/{live}")).await.unwrap();
    client.execute("window.stayed = 42;", vec![]).await.unwrap();
    let before: Value = client
        .execute(
            "return document.querySelector('#live').dataset.status;",
            vec![],
        )
        .await
        .unwrap();
    assert_eq!(before, "running");
    operator::abort(
        site.env.store.as_ref(),
        &registry,
        live,
        "stopped while watched",
    )
    .await
    .unwrap();
    wait()
        .for_element(Locator::Css("#live[data-status='compensated']"))
        .await
        .unwrap();
    let stayed = client
        .execute("return window.stayed;", vec![])
        .await
        .unwrap();
    assert_eq!(stayed, 42, "updated in place, not reloaded");
    let aborted = client
        .find(Locator::Css("#live tr[data-event='SagaAborted']"))
        .await;
    assert!(aborted.is_ok(), "the new history row is on the page");

    // An abort through the page's form, with its reason.
    client.goto(&format!("{base}/sagas/{act}")).await.unwrap();
    client
        .find(Locator::Css("#abort-form input[name='reason']"))
        .await
        .unwrap()
        .send_keys("stopped from the browser")
        .await
        .unwrap();
    click(&client, "#abort-form button").await;
    wait()
        .for_element(Locator::Css("#live[data-status='compensated']"))
        .await
        .unwrap();
    let history = site.env.store.history(act).await.unwrap();
    let event = history
        .iter()
        .find(|e| e.kind == EventKind::SagaAborted)
        .unwrap();
    assert_eq!(
        event.detail,
        json!({ "reason": "stopped from the browser" })
    );
    std::fs::write(
        shots.join("aborted-saga.png"),
        client.screenshot().await.unwrap(),
    )
    .unwrap();
    client.close().await.unwrap();
    drop(server);
}
