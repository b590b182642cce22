//! Headless Chromium (Debian package `chromium`) against the extractor: it loads a page over
//! HTTPS from the axum server (self-signed certificate, ALPN `h2`), whose script opens a
//! WebSocket to the same origin and echoes 100 messages. The server records the HTTP version
//! each WebSocket arrived over; the test asserts the echo completed, that it was HTTP/2, and
//! that permessage-deflate (which Chromium always offers) was agreed.
//!
//! Without Chromium the test is skipped with a note, except under `CI`, where it fails.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod support;

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use axum::Router;
use axum::extract::State;
use axum::response::{Html, Response};
use axum::routing::{any, get, post};
use sonar_axum::{HttpVersion, WebSocketUpgrade};
use sonar_tokio::CloseCode;
use tokio::sync::mpsc;

/// The bound on the whole browser run.
const BROWSER_LIMIT: Duration = Duration::from_secs(60);
const MESSAGES: usize = 100;

const PAGE: &str = r#"<!doctype html>
<html><head><title>sonar-axum echo</title></head><body><pre id="log"></pre><script>
const N = 100;
function report(text) { fetch('/report', { method: 'POST', body: text }); }
function payload(i) { return i + ':' + 'x'.repeat(i * 97); }
try {
  const ws = new WebSocket('wss://' + location.host + '/ws', ['echo.v1']);
  let next = 0, ok = 0;
  ws.onopen = () => ws.send(payload(next));
  ws.onmessage = (e) => {
    if (e.data === payload(next)) ok++;
    next++;
    if (next < N) ws.send(payload(next));
    else ws.send('done ok=' + ok + ' protocol=' + ws.protocol);
  };
  ws.onerror = () => report('websocket error after ' + next);
  ws.onclose = (e) => { if (next < N) report('closed after ' + next + ' code ' + e.code); };
} catch (e) { report('exception ' + e); }
</script></body></html>
"#;

/// What the server learned from the browser.
#[derive(Debug)]
enum Report {
    /// The page's final message, with what the server saw of its WebSocket.
    Done {
        version: HttpVersion,
        deflate: bool,
        echoed: usize,
        text: String,
    },
    /// The page reported a failure with a fetch.
    Failed(String),
}

async fn ws(
    State(reports): State<mpsc::UnboundedSender<Report>>,
    ws: WebSocketUpgrade,
) -> Response {
    ws.protocols(["echo.v1"])
        .on_upgrade_with(move |mut socket, info| async move {
            let (version, deflate) = (info.version, info.deflate.is_some());
            let mut echoed = 0;
            while let Some(Ok(message)) = socket.recv().await {
                if let Some(text) = message.as_text()
                    && text.starts_with("done ")
                {
                    let text = text.to_owned();
                    let _ = reports.send(Report::Done {
                        version,
                        deflate,
                        echoed,
                        text,
                    });
                    let _ = socket.close(CloseCode::NORMAL, "done").await;
                    return;
                }
                echoed += 1;
                if socket.send(message).await.is_err() {
                    break;
                }
            }
            let _ = reports.send(Report::Failed(format!(
                "server: the websocket ended after {echoed} echoes"
            )));
        })
}

fn app(reports: mpsc::UnboundedSender<Report>) -> Router {
    Router::new()
        .route("/", get(|| async { Html(PAGE) }))
        .route("/ws", any(ws))
        .route(
            "/report",
            post(
                |State(reports): State<mpsc::UnboundedSender<Report>>, body: String| async move {
                    let _ = reports.send(Report::Failed(body));
                },
            ),
        )
        .with_state(reports)
}

/// The Chromium binary: `$CHROMIUM`, or `chromium` / `chromium-browser` on `PATH`.
fn find_chromium() -> Option<PathBuf> {
    if let Some(path) = std::env::var_os("CHROMIUM") {
        return Some(PathBuf::from(path));
    }
    let path = std::env::var_os("PATH")?;
    std::env::split_paths(&path)
        .flat_map(|dir| ["chromium", "chromium-browser"].map(|name| dir.join(name)))
        .find(|candidate| candidate.is_file())
}

/// Kills the browser's whole process group (it was started as the group's leader) when
/// dropped, so no renderer outlives the test.
struct Browser {
    child: Child,
    log: PathBuf,
}

impl Browser {
    fn start(binary: &Path, url: &str, profile: &Path, log: PathBuf) -> Browser {
        use std::os::unix::process::CommandExt;
        let log_file = std::fs::File::create(&log).unwrap();
        let child = Command::new(binary)
            .args([
                "--headless",
                // Chromium's sandbox cannot run as root (CI runs as root).
                "--no-sandbox",
                "--ignore-certificate-errors",
                "--disable-gpu",
                "--no-first-run",
                "--no-default-browser-check",
                "--disable-extensions",
                "--disable-background-networking",
                "--disable-dev-shm-usage",
            ])
            .arg(format!("--user-data-dir={}", profile.display()))
            .arg(url)
            .stdin(Stdio::null())
            .stdout(log_file.try_clone().unwrap())
            .stderr(log_file)
            .process_group(0)
            .spawn()
            .unwrap_or_else(|e| panic!("starting {}: {e}", binary.display()));
        Browser { child, log }
    }

    fn log_tail(&self) -> String {
        let log = std::fs::read_to_string(&self.log).unwrap_or_default();
        let lines: Vec<&str> = log.lines().collect();
        lines[lines.len().saturating_sub(30)..].join("\n")
    }
}

impl Drop for Browser {
    fn drop(&mut self) {
        // SIGTERM first, so the browser reaps its own helpers; then SIGKILL to the group
        // (its id is the leader's pid: the browser and its helpers only).
        let pid = self.child.id().to_string();
        let _ = Command::new("kill").args(["-TERM", &pid]).status();
        let deadline = std::time::Instant::now() + Duration::from_secs(5);
        while std::time::Instant::now() < deadline {
            match self.child.try_wait() {
                Ok(Some(_)) | Err(_) => break,
                Ok(None) => std::thread::sleep(Duration::from_millis(20)),
            }
        }
        let group = format!("-{pid}");
        let _ = Command::new("kill")
            .args(["-KILL", "--", &group])
            .stderr(Stdio::null())
            .status();
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn chromium_echoes_100_messages_over_an_h2_websocket_with_permessage_deflate() {
    let Some(binary) = find_chromium() else {
        if std::env::var_os("CI").is_some() {
            panic!(
                "chromium not found (CI is set): install the Debian package `chromium` \
                 (.ci/run does) or point CHROMIUM at the binary"
            );
        }
        eprintln!("note: chromium not found; skipping (apt-get install chromium to run this test)");
        return;
    };
    let cert = support::cert();
    let (reports_tx, mut reports) = mpsc::unbounded_channel();
    let addr = support::serve_tls(app(reports_tx), &cert).await;

    let dir = Path::new(env!("CARGO_TARGET_TMPDIR")).join(format!(
        "chromium-{}-{}",
        std::process::id(),
        addr.port()
    ));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    let url = format!("https://localhost:{}/", addr.port());
    let browser = Browser::start(
        &binary,
        &url,
        &dir.join("profile"),
        dir.join("chromium.log"),
    );

    let report = tokio::time::timeout(BROWSER_LIMIT, reports.recv()).await;
    let report = match report {
        Ok(Some(report)) => report,
        Ok(None) => unreachable!("the server holds a sender"),
        Err(_) => panic!(
            "no result from chromium within {BROWSER_LIMIT:?}; its log ends:\n{}",
            browser.log_tail()
        ),
    };
    match report {
        Report::Done {
            version,
            deflate,
            echoed,
            text,
        } => {
            eprintln!(
                "chromium: {text}; server saw the websocket over {version}, {echoed} echoes, \
                 permessage-deflate {deflate}"
            );
            assert_eq!(text, format!("done ok={MESSAGES} protocol=echo.v1"));
            assert_eq!(echoed, MESSAGES);
            assert_eq!(
                version,
                HttpVersion::Http2,
                "chromium's websocket arrived over HTTP/2"
            );
            assert!(
                deflate,
                "chromium offers permessage-deflate and the extractor accepts it"
            );
        }
        Report::Failed(why) => panic!(
            "the page failed: {why}; chromium's log ends:\n{}",
            browser.log_tail()
        ),
    }
    drop(browser);
    let _ = std::fs::remove_dir_all(&dir);
}
