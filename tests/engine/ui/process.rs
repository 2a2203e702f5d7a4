//! The real `saga ui` process: where it listens and what it warns, the token from the
//! environment, refusals at start, and `saga show ID --svg`.

use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpStream;
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;

use saga::cli::ui::UiOptions;

use super::*;

const SAGA: &str = env!("CARGO_BIN_EXE_saga");

/// A running `saga ui`, killed when dropped.
pub(super) struct Server {
    child: Child,
    /// `127.0.0.1:PORT`.
    pub addr: String,
    /// What it wrote to stderr up to its first line on stdout.
    pub stderr: mpsc::Receiver<String>,
}

impl Server {
    /// Stops the server and returns everything it wrote to stderr.
    pub fn stop(mut self) -> Vec<String> {
        let _ = self.child.kill();
        let _ = self.child.wait();
        // The reader thread ends at the pipe's end, closing the channel.
        std::iter::from_fn(|| self.stderr.recv_timeout(BOUND).ok()).collect()
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// `saga` on the store of `env` (its participants beside it).
pub(super) fn saga(env: &Env) -> Command {
    let mut cmd = Command::new(SAGA);
    cmd.args(["--database", &env.url])
        .env("SAGA_PARTICIPANTS_URL", &env.local)
        .env_remove(saga::cli::ui::TOKEN_ENV)
        .env("NO_COLOR", "1");
    cmd
}

/// Starts `saga ui ARGS` and waits (bounded) for the address it serves on.
pub(super) fn serve(env: &Env, args: &[&str], vars: &[(&str, &str)]) -> Server {
    let mut cmd = saga(env);
    cmd.arg("ui").args(args);
    for (k, v) in vars {
        cmd.env(k, v);
    }
    let mut child = cmd
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let (line_tx, line_rx) = mpsc::channel();
    let stdout = child.stdout.take().unwrap();
    std::thread::spawn(move || {
        for line in BufReader::new(stdout).lines().map_while(Result::ok) {
            let _ = line_tx.send(line);
        }
    });
    let (err_tx, err_rx) = mpsc::channel();
    let stderr = child.stderr.take().unwrap();
    std::thread::spawn(move || {
        for line in BufReader::new(stderr).lines().map_while(Result::ok) {
            let _ = err_tx.send(line);
        }
    });
    let line = line_rx
        .recv_timeout(BOUND)
        .unwrap_or_else(|_| panic!("saga ui {args:?} printed no address"));
    let url = line
        .split("http://")
        .nth(1)
        .unwrap_or_else(|| panic!("{line}"));
    let port = url
        .trim_end_matches(|c: char| c != '/')
        .trim_end_matches('/');
    let port = port.rsplit(':').next().unwrap();
    Server {
        child,
        addr: format!("127.0.0.1:{port}"),
        stderr: err_rx,
    }
}

/// A plain HTTP/1.1 GET: the status code and the body.
pub(super) fn http_get(addr: &str, path: &str, headers: &[&str]) -> (u16, String) {
    let mut stream = TcpStream::connect(addr).unwrap();
    stream.set_read_timeout(Some(BOUND)).unwrap();
    let extra: String = headers.iter().map(|h| format!("{h}\r\n")).collect();
    write!(
        stream,
        "GET {path} HTTP/1.1\r\nHost: {addr}\r\n{extra}Connection: close\r\n\r\n"
    )
    .unwrap();
    let mut response = String::new();
    stream.read_to_string(&mut response).unwrap();
    let status = response
        .split(' ')
        .nth(1)
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(|| panic!("no status line: {response}"));
    let body = response
        .split_once("\r\n\r\n")
        .map_or("", |(_, b)| b)
        .to_string();
    (status, body)
}

on_both!(
    serves_the_store_and_warns_off_loopback,
    token_from_the_environment,
    refusals_at_start,
    show_writes_the_timeline_as_svg,
);

async fn serves_the_store_and_warns_off_loopback() {
    let site = Site::new(UiOptions::default()).await;
    let quiet = serve(&site.env, &["--listen", "127.0.0.1:0"], &[]);
    let (status, body) = http_get(&quiet.addr, "/", &[]);
    assert_eq!(status, 200, "{body}");
    for id in [site.completed, site.compensated, site.failed] {
        assert!(body.contains(&id.to_string()));
    }
    let (status, page) = http_get(&quiet.addr, &format!("/sagas/{}", site.compensated), &[]);
    assert_eq!(status, 200);
    assert_eq!(super::attrs(&page, "data-lane"), COMPENSATED_LANES);
    let said = quiet.stop();
    assert!(
        said.iter().all(|l| !l.contains("warning")),
        "no warning on loopback: {said:?}"
    );
    let open = serve(&site.env, &["--listen", "0.0.0.0:0"], &[]);
    let warning = open.stderr.recv_timeout(BOUND).unwrap();
    assert!(
        warning.starts_with("warning: saga ui listens on 0.0.0.0:")
            && !warning.starts_with("warning: saga ui listens on 0.0.0.0:0,")
            && warning.contains("other machines can reach")
            && warning.contains("give --token"),
        "{warning}"
    );
    assert_eq!(http_get(&open.addr, "/definitions", &[]).0, 200);
    // The default address is the loopback one.
    let help = saga(&site.env).args(["ui", "--help"]).output().unwrap();
    assert!(String::from_utf8_lossy(&help.stdout).contains("[default: 127.0.0.1:8080]"));
}

async fn token_from_the_environment() {
    let site = Site::new(UiOptions::default()).await;
    let server = serve(
        &site.env,
        &["--listen", "127.0.0.1:0"],
        &[(saga::cli::ui::TOKEN_ENV, "from-env")],
    );
    assert_eq!(http_get(&server.addr, "/", &[]).0, 401);
    assert_eq!(
        http_get(&server.addr, "/", &["Authorization: Bearer wrong"]).0,
        401
    );
    assert_eq!(
        http_get(&server.addr, "/", &["Authorization: Bearer from-env"]).0,
        200
    );
}

async fn refusals_at_start() {
    let site = Site::new(UiOptions::default()).await;
    let by_name = serve(&site.env, &["--listen", "localhost:0"], &[]);
    assert_eq!(
        http_get(&by_name.addr, "/", &[]).0,
        200,
        "localhost:PORT is loopback"
    );
    let bad = saga(&site.env)
        .args(["ui", "--listen", "localhost"])
        .output()
        .unwrap();
    assert_eq!(bad.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&bad.stderr)
        .contains("`localhost` is not an address and port such as 127.0.0.1:8080"));
    let first = serve(&site.env, &["--listen", "127.0.0.1:0"], &[]);
    let taken = saga(&site.env)
        .args(["ui", "--listen", &first.addr])
        .output()
        .unwrap();
    assert_eq!(taken.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&taken.stderr)
        .contains(&format!("cannot listen on {}", first.addr)));
    let missing = Command::new(SAGA)
        .args(["--database", "sqlite:///nonexistent-dir/none.db", "ui"])
        .output()
        .unwrap();
    assert_eq!(missing.status.code(), Some(4), "no store, no server");
}

async fn show_writes_the_timeline_as_svg() {
    let site = Site::new(UiOptions::default()).await;
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("timeline.svg");
    let out = saga(&site.env)
        .args(["show", &site.compensated.to_string()[..30], "--svg"])
        .arg(&file)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(String::from_utf8_lossy(&out.stdout).contains("compensated"));
    let svg = std::fs::read_to_string(&file).unwrap();
    assert!(svg.starts_with("<?xml") && svg.contains("<svg xmlns=\"http://www.w3.org/2000/svg\""));
    assert_eq!(super::attrs(&svg, "data-lane"), COMPENSATED_LANES);
    // The same drawing the page serves.
    let served = site
        .ok(&format!("/sagas/{}/timeline.svg", site.compensated))
        .await;
    assert_eq!(
        super::attrs(&served.body, "data-outcome"),
        super::attrs(&svg, "data-outcome")
    );
    let dash = saga(&site.env)
        .args(["show", &site.compensated.to_string(), "--svg", "-"])
        .output()
        .unwrap();
    assert_eq!(dash.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&dash.stderr).contains("--svg takes a file name"));
    let unwritable = saga(&site.env)
        .args([
            "show",
            &site.compensated.to_string(),
            "--svg",
            "/nonexistent-dir/t.svg",
        ])
        .output()
        .unwrap();
    assert_eq!(unwritable.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&unwritable.stderr)
        .contains("cannot write the timeline to /nonexistent-dir/t.svg"));
}
