//! The real-peers stage of `cargo xtask conformance`: Python `websockets` and Node `ws`
//! against the real `sonar` binary on every runtime, in both directions, on loopback.
//!
//! - peer as client: `sonar serve --ping-interval 0.2 --ping-timeout 2` and
//!   `conformance/peers/{py_peer.py,node_peer.js} client URL` (echo of text and binary up to
//!   1 MiB, the peer's own pings, sonar's keepalive pings, the peer's keepalive, closes 1000
//!   and 4001 from the peer, 1001 from sonar on SIGTERM; sonar's log must show the codes).
//! - peer as server: the script serves on port 0 and `sonar client` connects once per
//!   scenario (path `/echo`, `/idle`, `/their`, `/close4001`); the script reports what it saw.
//!
//! The scripts print `ok CHECK detail` or `FAIL CHECK: reason`; every expected check must
//! report ok. Every process and every wait is bounded.

use std::fs;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Command, ExitStatus, Stdio};
use std::thread;
use std::time::{Duration, Instant};

use sonar_testkit::{ChildGuard, LineReader, text_of};

use crate::{root, run};

/// The pinned Python peer (installed into the conformance venv).
const WEBSOCKETS: &str = "15.0.1";
/// The pinned Node peer (also pinned in conformance/peers/package.json and its lock file).
const WS: &str = "8.18.0";
const RUNTIMES: &[&str] = &["tokio", "smol", "async-std"];
/// Bound on one peer script run, one `sonar client` run, and a wait for a line.
const PEER_LIMIT: Duration = Duration::from_secs(60);
const CLIENT_LIMIT: Duration = Duration::from_secs(20);
const LINE_LIMIT: Duration = Duration::from_secs(15);

/// Checks a peer client reports against `sonar serve`.
const CLIENT_CHECKS: &[&str] = &[
    "deflate",
    "echo",
    "their-ping",
    "our-keepalive",
    "their-keepalive",
    "close-1000",
    "close-4001",
    "sonar-close",
];
/// Checks a peer server reports about the `sonar client` connections it served.
const SERVER_CHECKS: &[&str] = &[
    "deflate",
    "echo",
    "their-ping",
    "our-keepalive",
    "close-1000",
    "their-keepalive",
    "sent-4001",
];

struct Peer {
    name: String,
    program: PathBuf,
    script: PathBuf,
    node_path: Option<PathBuf>,
}

impl Peer {
    fn command(&self, args: &[&str]) -> Command {
        let mut c = Command::new(&self.program);
        c.arg(&self.script).args(args);
        if let Some(p) = &self.node_path {
            c.env("NODE_PATH", p);
        }
        c
    }
}

/// Runs every peer against every selected runtime in both directions; returns the problems
/// (empty: all green) after printing one summary line per peer, runtime and direction.
pub(crate) fn peers(sonar: &Path, python: &Path, only: &[&str]) -> Vec<String> {
    let started = Instant::now();
    let peers = match setup(python) {
        Ok(p) => p,
        Err(e) => return vec![format!("real peers: {e}")],
    };
    let mut summary = Vec::new();
    let mut problems = Vec::new();
    for rt in RUNTIMES
        .iter()
        .filter(|r| only.is_empty() || only.contains(r))
    {
        for peer in &peers {
            for direction in ["client", "server"] {
                let name = match direction {
                    "client" => format!("{} client -> sonar serve", peer.name),
                    _ => format!("{} server <- sonar client", peer.name),
                };
                eprintln!("==> peers: {name} on {rt}");
                let t = Instant::now();
                let (oks, fails) = match direction {
                    "client" => against_serve(sonar, peer, rt),
                    _ => against_client(sonar, peer, rt),
                };
                let verdict = if fails.is_empty() {
                    format!("ok ({} checks)", oks.len())
                } else {
                    format!(
                        "FAILED ({} of {} checks)",
                        fails.len(),
                        oks.len() + fails.len()
                    )
                };
                summary.push(format!(
                    "  {name:<40} {rt:<10} {verdict:<24} {:>5.1}s",
                    t.elapsed().as_secs_f64()
                ));
                problems.extend(fails.iter().map(|f| format!("{name} on {rt}: {f}")));
            }
        }
    }
    println!("\nReal peers summary:");
    for line in &summary {
        println!("{line}");
    }
    println!("  real peers took {:.0}s", started.elapsed().as_secs_f64());
    problems
}

/// Installs the pinned peers (idempotent) and describes how to run them.
fn setup(python: &Path) -> Result<Vec<Peer>, String> {
    let has = Command::new(python)
        .args([
            "-c",
            &format!(
                "import importlib.metadata as m; assert m.version('websockets') == '{WEBSOCKETS}'"
            ),
        ])
        .stderr(Stdio::null())
        .status()
        .map(|s| s.success())
        .unwrap_or(false);
    if !has {
        eprintln!("==> installing websockets=={WEBSOCKETS}");
        let mut c = Command::new(python);
        c.args(["-m", "pip", "install", "--quiet"])
            .arg(format!("websockets=={WEBSOCKETS}"));
        run(c)?;
    }

    let scripts = root().join("conformance").join("peers");
    let node_dir = root().join("target").join("conformance").join("node");
    let lock = fs::read(scripts.join("package-lock.json"))
        .map_err(|e| format!("conformance/peers/package-lock.json: {e}"))?;
    let installed = fs::read(node_dir.join("package-lock.json")).ok();
    let ws_manifest = node_dir
        .join("node_modules")
        .join("ws")
        .join("package.json");
    let ws_version_ok = fs::read_to_string(&ws_manifest)
        .map(|t| t.contains(&format!("\"version\": \"{WS}\"")))
        .unwrap_or(false);
    if installed.as_deref() != Some(lock.as_slice()) || !ws_version_ok {
        eprintln!("==> installing ws@{WS} into {}", node_dir.display());
        fs::create_dir_all(&node_dir).map_err(|e| format!("{}: {e}", node_dir.display()))?;
        for f in ["package.json", "package-lock.json"] {
            fs::copy(scripts.join(f), node_dir.join(f)).map_err(|e| format!("copying {f}: {e}"))?;
        }
        let mut c = Command::new("npm");
        c.args(["ci", "--no-audit", "--no-fund", "--quiet", "--prefix"])
            .arg(&node_dir);
        run(c).map_err(|e| format!("{e} (Node peers need node and npm on PATH)"))?;
    }
    Ok(vec![
        Peer {
            name: format!("websockets {WEBSOCKETS}"),
            program: python.to_path_buf(),
            script: scripts.join("py_peer.py"),
            node_path: None,
        },
        Peer {
            name: format!("ws {WS}"),
            program: PathBuf::from("node"),
            script: scripts.join("node_peer.js"),
            node_path: Some(node_dir.join("node_modules")),
        },
    ])
}

/// Waits at most `limit` for the child to exit (`None`: still running, or waiting failed).
fn wait_exit(child: &mut ChildGuard, limit: Duration) -> Option<ExitStatus> {
    child.wait_timeout(limit).ok().flatten()
}

/// Sorts a script's result lines into passed checks and failures, and names every expected
/// check that did not report.
fn tally(lines: &[String], expected: &[&str], oks: &mut Vec<String>, fails: &mut Vec<String>) {
    for line in lines {
        if let Some(rest) = line.strip_prefix("ok ") {
            oks.push(
                rest.split_whitespace()
                    .next()
                    .unwrap_or_default()
                    .to_owned(),
            );
        } else if let Some(rest) = line.strip_prefix("FAIL ") {
            fails.push(format!("check {rest}"));
        }
    }
    for check in expected {
        let reported = oks.iter().any(|o| o == check)
            || fails
                .iter()
                .any(|f| f.starts_with(&format!("check {check}:")));
        if !reported {
            fails.push(format!("check {check}: never reported"));
        }
    }
}

/// The peer as client against `sonar serve`.
fn against_serve(sonar: &Path, peer: &Peer, rt: &str) -> (Vec<String>, Vec<String>) {
    let mut oks = Vec::new();
    let mut fails = Vec::new();
    let spawned = Command::new(sonar)
        .args(["serve", "--addr", "127.0.0.1:0", "--runtime", rt])
        .args(["--ping-interval", "0.2", "--ping-timeout", "2"])
        .env("RUST_LOG", "info")
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn();
    // Every child is killed when its guard drops, so nothing outlives a failed step.
    let mut server = match spawned {
        Ok(c) => ChildGuard::new(c),
        Err(e) => return (oks, vec![format!("could not start sonar serve: {e}")]),
    };
    let out = server.stdout.take().map(LineReader::spawn);
    let log = server.stderr.take().map(text_of);
    let addr = out.as_ref().and_then(|rx| {
        let line = rx.next_line(LINE_LIMIT).ok()?;
        let rest = line.split("listening on ").nth(1)?;
        rest.split_whitespace().next().map(str::to_owned)
    });
    let Some(addr) = addr else {
        return (
            oks,
            vec!["sonar serve never printed `listening on ADDR`".into()],
        );
    };

    let spawned = peer
        .command(&["client", &format!("ws://{addr}/")])
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn();
    let mut client = match spawned {
        Ok(c) => ChildGuard::new(c),
        Err(e) => return (oks, vec![format!("could not start the peer: {e}")]),
    };
    let results = client.stdout.take().map(LineReader::spawn);
    let peer_err = client.stderr.take().map(text_of);
    let mut lines = Vec::new();
    let mut terminated = false;
    if let Some(rx) = &results {
        for line in rx.lines_for(PEER_LIMIT) {
            if line == "holding" && !terminated {
                // The peer holds a connection open: stop sonar, which must close it with 1001.
                let pid = server.id().to_string();
                terminated = Command::new("kill")
                    .args(["-TERM", &pid])
                    .status()
                    .map(|s| s.success())
                    .unwrap_or(false);
            }
            lines.push(line);
        }
    }
    match wait_exit(&mut client, Duration::from_secs(5)) {
        Some(_) => {}
        None => fails.push(format!("the peer did not finish within {PEER_LIMIT:?}")),
    }
    drop(client);
    tally(&lines, CLIENT_CHECKS, &mut oks, &mut fails);

    if !terminated {
        fails.push("check sonar-close: never asked sonar serve to stop".into());
    }
    match wait_exit(&mut server, Duration::from_secs(10)) {
        Some(s) if s.success() => oks.push("serve-exit".into()),
        Some(s) => fails.push(format!("check serve-exit: sonar serve exited with {s}")),
        None => fails.push("check serve-exit: sonar serve still running 10 s after SIGTERM".into()),
    }
    drop(server);
    let log = log.and_then(|h| h.join().ok()).unwrap_or_default();
    for (check, needle) in [
        (
            "serve-log-1000",
            "code=1000 reason=\"\" closed_by=\"client\"",
        ),
        (
            "serve-log-4001",
            "code=4001 reason=\"custom\" closed_by=\"client\"",
        ),
        (
            "serve-log-1001",
            "code=1001 reason=\"server shutting down\" closed_by=\"server\"",
        ),
    ] {
        if log.contains(needle) {
            oks.push(check.into());
        } else {
            fails.push(format!(
                "check {check}: sonar serve never logged `{needle}`"
            ));
        }
    }
    for bad in ["keepalive timeout", "connection failed"] {
        if let Some(line) = log.lines().find(|l| l.contains(bad)) {
            fails.push(format!("check serve-log: sonar serve logged `{line}`"));
        }
    }
    if !fails.is_empty() {
        let err = peer_err.and_then(|h| h.join().ok()).unwrap_or_default();
        if !err.trim().is_empty() {
            fails.push(format!("peer stderr: {}", err.trim()));
        }
    }
    (oks, fails)
}

/// What to feed `sonar client` on stdin.
enum Input {
    /// Nothing (`--echo`).
    None,
    /// After a pause, one line, then EOF.
    After(Duration, &'static str),
    /// Keep stdin open until the client exits.
    Hold,
}

struct ClientRun {
    status: Option<ExitStatus>,
    stdout: String,
    stderr: String,
}

fn sonar_client(sonar: &Path, args: &[&str], input: Input) -> Result<ClientRun, String> {
    let mut child = Command::new(sonar)
        .arg("client")
        .args(args)
        .env("RUST_LOG", "info")
        .stdin(match input {
            Input::None => Stdio::null(),
            _ => Stdio::piped(),
        })
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .map(ChildGuard::new)
        .map_err(|e| format!("could not start sonar client: {e}"))?;
    let out = child.stdout.take().map(text_of);
    let err = child.stderr.take().map(text_of);
    let stdin = child.stdin.take();
    let held = match (input, stdin) {
        (Input::After(pause, line), Some(mut stdin)) => {
            thread::sleep(pause);
            let _ = stdin.write_all(line.as_bytes());
            drop(stdin);
            None
        }
        (_, stdin) => stdin,
    };
    let status = wait_exit(&mut child, CLIENT_LIMIT);
    drop(held);
    drop(child);
    Ok(ClientRun {
        status,
        stdout: out.and_then(|h| h.join().ok()).unwrap_or_default(),
        stderr: err.and_then(|h| h.join().ok()).unwrap_or_default(),
    })
}

/// The peer as server, `sonar client` connecting to it once per scenario.
fn against_client(sonar: &Path, peer: &Peer, rt: &str) -> (Vec<String>, Vec<String>) {
    let mut oks = Vec::new();
    let mut fails = Vec::new();
    let spawned = peer
        .command(&["server"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn();
    let mut server = match spawned {
        Ok(c) => ChildGuard::new(c),
        Err(e) => return (oks, vec![format!("could not start the peer: {e}")]),
    };
    let results = server.stdout.take().map(LineReader::spawn);
    let peer_err = server.stderr.take().map(text_of);
    let port = results.as_ref().and_then(|rx| {
        let line = rx.next_line(LINE_LIMIT).ok()?;
        line.strip_prefix("port ").map(str::to_owned)
    });
    let Some(port) = port else {
        let err = peer_err.and_then(|h| h.join().ok()).unwrap_or_default();
        return (
            oks,
            vec![format!("the peer server never printed its port: {err}")],
        );
    };
    let base = format!("ws://127.0.0.1:{port}");

    type Expect = fn(&ClientRun) -> Result<(), String>;
    let scenarios: [(&str, Vec<String>, Input, Expect); 4] = [
        (
            "client-echo",
            vec!["--echo".into(), format!("{base}/echo")],
            Input::None,
            |r| {
                (r.status.is_some_and(|s| s.success())
                    && r.stderr.contains("server closed the connection code=1000"))
                .then_some(())
                .ok_or_else(|| "expected exit 0 after the server's close 1000".into())
            },
        ),
        (
            "client-idle",
            vec![
                "--ping-interval".into(),
                "0.2".into(),
                "--ping-timeout".into(),
                "2".into(),
                format!("{base}/idle"),
            ],
            Input::After(Duration::from_millis(1000), "hello\n"),
            |r| {
                (r.status.is_some_and(|s| s.success()) && r.stdout == "hello\n")
                    .then_some(())
                    .ok_or_else(|| "expected `hello` echoed and exit 0".into())
            },
        ),
        (
            "client-their",
            vec![
                "--ping-interval".into(),
                "0".into(),
                format!("{base}/their"),
            ],
            Input::After(Duration::from_millis(1200), "still here\n"),
            |r| {
                (r.status.is_some_and(|s| s.success()) && r.stdout == "still here\n")
                    .then_some(())
                    .ok_or_else(|| "expected `still here` echoed and exit 0".into())
            },
        ),
        (
            "client-4001",
            vec![format!("{base}/close4001")],
            Input::Hold,
            |r| {
                (r.status.is_some_and(|s| s.code() == Some(1))
                    && r.stderr
                        .contains("server closed the connection code=4001 reason=custom")
                    && r.stderr
                        .contains("sonar: server closed the connection with 4001 custom"))
                .then_some(())
                .ok_or_else(|| "expected code 4001 `custom` reported and exit 1".into())
            },
        ),
    ];
    for (check, args, input, expect) in scenarios {
        let mut all = vec!["--runtime", rt];
        all.extend(args.iter().map(String::as_str));
        match sonar_client(sonar, &all, input) {
            Ok(r) => match expect(&r) {
                Ok(()) => oks.push(check.to_owned()),
                Err(e) => fails.push(format!(
                    "check {check}: {e}; got {:?}, stdout {:?}, stderr {:?}",
                    r.status,
                    r.stdout.chars().take(200).collect::<String>(),
                    r.stderr.trim()
                )),
            },
            Err(e) => fails.push(format!("check {check}: {e}")),
        }
    }

    // The peer reports each connection when it ends; EOF on its stdin makes it exit.
    drop(server.stdin.take());
    let lines = results
        .as_ref()
        .map(|rx| rx.collect_for(LINE_LIMIT))
        .unwrap_or_default();
    if wait_exit(&mut server, Duration::from_secs(5)).is_none() {
        fails.push("the peer server did not exit after its stdin closed".into());
    }
    drop(server);
    tally(&lines, SERVER_CHECKS, &mut oks, &mut fails);
    if !fails.is_empty() {
        let err = peer_err.and_then(|h| h.join().ok()).unwrap_or_default();
        if !err.trim().is_empty() {
            fails.push(format!("peer stderr: {}", err.trim()));
        }
    }
    (oks, fails)
}
