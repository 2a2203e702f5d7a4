//! `saga ui` on the filled store: a real `saga ui` process, its pages fetched over HTTP, the
//! server's own time read from each response's `Server-Timing` header.

use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpStream;
use std::path::Path;
use std::process::{Command, Stdio};

use uuid::Uuid;

use crate::BoxError;

/// One GET: the server's time (ms, from `Server-Timing`) and the status code.
fn get(addr: &str, path: &str) -> Result<(f64, u16), BoxError> {
    let mut stream = TcpStream::connect(addr)?;
    write!(
        stream,
        "GET {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n\r\n"
    )?;
    let mut response = String::new();
    stream.read_to_string(&mut response)?;
    let status = response
        .split(' ')
        .nth(1)
        .and_then(|s| s.parse().ok())
        .ok_or("no status line")?;
    let server = response
        .lines()
        .find_map(|l| l.strip_prefix("server-timing: app;dur="))
        .and_then(|v| v.trim().parse().ok())
        .ok_or("no Server-Timing header")?;
    Ok((server, status))
}

/// Serves the store at `url` with `saga ui` and times its pages.
/// `cursor` is the id ten pages of 50 down the list.
pub fn pages(
    saga: &Path,
    url: &str,
    total: u64,
    failed: Uuid,
    cursor: Uuid,
) -> Result<(), BoxError> {
    let mut child = Command::new(saga)
        .args(["--database", url, "ui", "--listen", "127.0.0.1:0"])
        .stdout(Stdio::piped())
        .spawn()?;
    let mut line = String::new();
    if let Some(stdout) = child.stdout.take() {
        BufReader::new(stdout).read_line(&mut line)?;
    }
    let addr = line
        .split("http://")
        .nth(1)
        .and_then(|rest| rest.split('/').next())
        .ok_or_else(|| format!("saga ui printed no address: {line:?}"))?
        .to_string();
    let id = failed.to_string();
    let pages = [
        ("the list", "/".to_string()),
        ("the list, failed only", "/?status=failed".to_string()),
        ("the list, 10th page", format!("/?before={cursor}")),
        ("a failed saga", format!("/sagas/{id}")),
        ("find by prefix", format!("/?find={}", &id[..30])),
        ("definitions", "/definitions".to_string()),
    ];
    println!("\n| `saga ui` page on {total} sagas | runs | median server ms | min | max |");
    println!("|---|---:|---:|---:|---:|");
    let result = (|| {
        for (name, path) in pages {
            let mut times = Vec::new();
            for _ in 0..11 {
                let (ms, status) = get(&addr, &path)?;
                if !(200..400).contains(&status) {
                    return Err(format!("GET {path} answered {status}").into());
                }
                times.push(ms);
            }
            times.sort_by(f64::total_cmp);
            println!(
                "| {name} (`{}`) | {} | {:.1} | {:.1} | {:.1} |",
                if path.len() > 40 { &path[..40] } else { &path },
                times.len(),
                times[times.len() / 2],
                times[0],
                times[times.len() - 1]
            );
        }
        Ok::<(), BoxError>(())
    })();
    let _ = child.kill();
    let _ = child.wait();
    result
}
