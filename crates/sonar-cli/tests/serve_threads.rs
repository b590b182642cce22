//! `sonar serve --threads N` and `--reuse-port` with the real binary on every runtime: the
//! number of threads that run the connections, echo through N accept loops on one port,
//! connections spread over the loops by the kernel, and a graceful shutdown that reaches the
//! clients of every loop. Loopback only; every wait is bounded in time and count.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic, missing_docs)]

mod support;

use std::collections::{BTreeMap, BTreeSet};
use std::thread;
use std::time::{Duration, Instant};

use sonar_testkit::{FrameBuilder, Peer};

use support::{LIMIT, Server, finish, raw_client, run_with_input, sonar};

const RUNTIMES: &[&str] = &["tokio", "smol", "async-std"];

/// How many distinct thread names of process `pid` start with `prefix` (Linux:
/// `/proc/PID/task/*/comm`).
///
/// Distinct names, not threads: a new thread starts with its creator's name and renames
/// itself only once it runs, so a helper a runtime spawns from one of our threads (async-io's
/// reactor thread, spawned lazily from the first loop that uses it) shows up for a moment as a
/// second `sonar-loop-1`. Ours are numbered, so each real one has a name of its own.
#[cfg(target_os = "linux")]
fn threads_named(pid: u32, prefix: &str) -> usize {
    let tasks = std::fs::read_dir(format!("/proc/{pid}/task")).unwrap();
    tasks
        .flatten()
        .filter_map(|t| std::fs::read_to_string(t.path().join("comm")).ok())
        .filter(|name| name.starts_with(prefix))
        .collect::<BTreeSet<_>>()
        .len()
}

/// Waits (bounded) until `pid` has `n` threads named `prefix*`, then checks it has no more. A
/// new thread names itself once it runs, so the count can lag the `listening on` line a
/// little; it never goes above `n`.
#[cfg(target_os = "linux")]
fn expect_threads(pid: u32, prefix: &str, n: usize, what: &str) {
    let deadline = Instant::now() + LIMIT;
    let mut seen = threads_named(pid, prefix);
    while seen < n && Instant::now() < deadline {
        thread::sleep(Duration::from_millis(10));
        seen = threads_named(pid, prefix);
    }
    assert_eq!(seen, n, "{what}: threads named {prefix}*");
}

#[cfg(not(target_os = "linux"))]
fn expect_threads(_pid: u32, _prefix: &str, _n: usize, _what: &str) {}

/// `--threads 1` and `--threads 3`: exactly that many worker threads, and the echo works.
fn threads_echo_on(runtime: &str) {
    for n in ["1", "3"] {
        let what = format!("{runtime} --threads {n}");
        let server = Server::start_with(&["--runtime", runtime, "--threads", n]);
        expect_threads(server.pid(), "sonar-worker-", n.parse().unwrap(), &what);
        let out = run_with_input(&["client", &server.url()], "one\ntwo\n");
        assert!(out.status.success(), "{what}: {}", out.stderr);
        assert_eq!(out.stdout, "one\ntwo\n", "{what}");
        server.wait_log("connection closed");
    }
}

#[test]
fn threads_1_and_3_echo_on_tokio() {
    threads_echo_on("tokio");
}

#[test]
fn threads_1_and_3_echo_on_smol() {
    threads_echo_on("smol");
}

#[test]
fn threads_1_and_3_echo_on_async_std() {
    threads_echo_on("async-std");
}

#[test]
fn async_std_thread_count_must_agree_with_threads() {
    let out = finish(
        sonar(&[
            "serve",
            "--addr",
            "127.0.0.1:0",
            "--runtime",
            "async-std",
            "--threads",
            "3",
        ])
        .env("ASYNC_STD_THREAD_COUNT", "2")
        .spawn()
        .unwrap(),
        LIMIT,
    );
    assert_eq!(out.status.code(), Some(2), "{}", out.stderr);
    assert!(
        out.stderr
            .contains("ASYNC_STD_THREAD_COUNT=2 and --threads 3 disagree"),
        "{}",
        out.stderr
    );
}

/// The accept loop (its `listener{n=K}` span) that logged `connection opened` for each
/// client whose local port is in `ports`, from the server's log lines as they come (in any
/// order), waiting at most [`LIMIT`] in all.
fn loops_of(server: &Server, ports: &[u16]) -> BTreeMap<u16, String> {
    let deadline = Instant::now() + LIMIT;
    let mut found = BTreeMap::new();
    while found.len() < ports.len() {
        let left = deadline.saturating_duration_since(Instant::now());
        let line = server
            .stderr_lines
            .next_line(left)
            .unwrap_or_else(|e| panic!("{e}: `connection opened` lines so far {found:?}"));
        if !line.contains("connection opened") {
            continue;
        }
        let field = |prefix: &str, end: char| -> String {
            let rest = line
                .split(prefix)
                .nth(1)
                .unwrap_or_else(|| panic!("no {prefix:?} in {line:?}"));
            rest.split(end).next().unwrap().to_owned()
        };
        let port: u16 = field("peer=127.0.0.1:", ' ').parse().unwrap();
        if ports.contains(&port) {
            found.insert(port, field("listener{n=", '}'));
        }
    }
    found
}

fn local_port(peer: &Peer) -> u16 {
    peer.get_ref().local_addr().unwrap().port()
}

/// Connections at once through `--reuse-port --threads 2`.
const MANY: usize = 40;

/// 40 clients open at once all echo, and both loops got some of them. The kernel picks a
/// listener by a hash of each connection's addresses and ports; with 40 ephemeral ports the
/// chance that one loop gets none is 2 in 2^40, so this checks the spreading without being
/// flaky.
fn reuse_port_echoes_on(runtime: &str) {
    let server = Server::start_with(&["--runtime", runtime, "--reuse-port", "--threads", "2"]);
    expect_threads(server.pid(), "sonar-loop-", 2, runtime);
    let mut clients: Vec<Peer> = (0..MANY)
        .map(|_| {
            let (peer, head) = raw_client(server.addr);
            assert!(head.starts_with("HTTP/1.1 101"), "{runtime}: {head}");
            peer
        })
        .collect();
    for (i, peer) in clients.iter_mut().enumerate() {
        let text = format!("message {i}");
        peer.send(FrameBuilder::text(text.as_bytes())).unwrap();
        let echo = peer.recv().unwrap().into_pair();
        assert_eq!(echo, (0x81, text.into_bytes()), "{runtime}: client {i}");
    }
    let ports: Vec<u16> = clients.iter().map(local_port).collect();
    let mut per_loop: BTreeMap<String, usize> = BTreeMap::new();
    for n in loops_of(&server, &ports).into_values() {
        *per_loop.entry(n).or_default() += 1;
    }
    let loops: Vec<&str> = per_loop.keys().map(String::as_str).collect();
    assert_eq!(
        loops,
        ["1", "2"],
        "{runtime}: connections per loop {per_loop:?}"
    );
}

#[test]
fn reuse_port_40_connections_echo_over_both_loops_on_tokio() {
    reuse_port_echoes_on("tokio");
}

#[test]
fn reuse_port_40_connections_echo_over_both_loops_on_smol() {
    reuse_port_echoes_on("smol");
}

#[test]
fn reuse_port_40_connections_echo_over_both_loops_on_async_std() {
    reuse_port_echoes_on("async-std");
}

/// Clients are added until each of the two loops has one (at most this many: the chance of
/// needing more is 2 in 2^64).
const MAX_CLIENTS: usize = 64;

/// SIGTERM stops both loops: every client, whichever loop accepted it, gets Close 1001, and
/// the server exits 0 once they answered.
#[test]
fn reuse_port_shutdown_sends_1001_to_clients_of_both_loops() {
    for runtime in RUNTIMES {
        let mut server =
            Server::start_with(&["--runtime", runtime, "--reuse-port", "--threads", "2"]);
        let mut clients: Vec<(Peer, String)> = Vec::new();
        while clients.len() < MAX_CLIENTS {
            let (peer, head) = raw_client(server.addr);
            assert!(head.starts_with("HTTP/1.1 101"), "{runtime}: {head}");
            let port = local_port(&peer);
            let n = loops_of(&server, &[port]).remove(&port).unwrap();
            clients.push((peer, n));
            let first = &clients[0].1;
            if clients.iter().any(|(_, n)| n != first) {
                break;
            }
        }
        assert!(
            clients.iter().any(|(_, n)| n == "1") && clients.iter().any(|(_, n)| n == "2"),
            "{runtime}: {MAX_CLIENTS} clients all on one loop"
        );

        let kill = thread::spawn(move || server.terminate());
        for (peer, n) in &mut clients {
            let close = peer.recv().expect("a close frame").into_pair();
            let mut want = 1001u16.to_be_bytes().to_vec();
            want.extend_from_slice(b"server shutting down");
            assert_eq!(close, (0x88, want), "{runtime}: a client of loop {n}");
            peer.send(FrameBuilder::close(1001, b"")).unwrap();
        }
        let status = kill.join().unwrap();
        assert!(status.success(), "{runtime}: {status:?}");
    }
}
