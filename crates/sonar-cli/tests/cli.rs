//! The real `sonar` binary over loopback: serve + client on every runtime, ping against
//! `sonar serve` and against broken raw servers, handshake rejection, keepalive timeout,
//! graceful shutdown on SIGTERM, help and exit codes. Every wait is bounded.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic, missing_docs)]

mod support;

use std::io::{Read, Write};
use std::net::SocketAddr;
use std::process::{ChildStdin, Command, Stdio};
use std::sync::mpsc;
use std::thread;
use std::time::Duration;

use sonar_testkit::{ChildGuard, FrameBuilder, LineReader, Peer};

use support::{LIMIT, Output, Server, finish, raw_client, run_with_input, sonar};

fn echo_on(runtime: &str) {
    let server = Server::start(runtime);
    let out = run_with_input(
        &["client", &server.url(), "--runtime", runtime],
        "hello\nworld\n",
    );
    assert!(out.status.success(), "{}", out.stderr);
    assert_eq!(out.stdout, "hello\nworld\n");
    server.wait_log("connection closed");
}

#[test]
fn serve_and_client_echo_on_tokio() {
    echo_on("tokio");
}

#[test]
fn serve_and_client_echo_on_smol() {
    echo_on("smol");
}

#[test]
fn serve_and_client_echo_on_async_std() {
    echo_on("async-std");
}

#[test]
fn clients_on_other_runtimes_talk_to_a_tokio_server() {
    let server = Server::start("tokio");
    for runtime in ["smol", "async-std"] {
        let out = run_with_input(
            &["client", &server.url(), "--runtime", runtime],
            "über\n\nlast line",
        );
        assert!(out.status.success(), "{}", out.stderr);
        assert_eq!(out.stdout, "über\n\nlast line\n");
    }
}

#[test]
fn ping_against_sonar_serve() {
    let server = Server::start("tokio");
    let child = sonar(&["ping", &server.url(), "-c", "3", "-i", "0.1"])
        .spawn()
        .unwrap();
    let out = finish(child, LIMIT);
    assert!(out.status.success(), "{}\n{}", out.stdout, out.stderr);
    let rtt_lines: Vec<&str> = out
        .stdout
        .lines()
        .filter(|l| l.starts_with("8 bytes from 127.0.0.1: seq="))
        .collect();
    assert_eq!(rtt_lines.len(), 3, "{}", out.stdout);
    for (i, line) in rtt_lines.iter().enumerate() {
        assert!(line.contains(&format!("seq={} rtt=", i + 1)), "{line}");
        assert!(line.ends_with(" ms"), "{line}");
    }
    assert!(!out.stdout.contains("warning"), "{}", out.stdout);
    assert!(out.stdout.contains(&format!(
        "--- {} websocket ping statistics ---",
        server.url()
    )));
    assert!(
        out.stdout
            .contains("3 pings sent, 3 pongs received, 0% loss")
    );
    assert!(out.stdout.contains("rtt min/avg/max = "));
}

// ----- raw servers ---------------------------------------------------------------------------

/// Serves one connection on a thread with `behave` (the raw server side, before the
/// handshake); returns the address.
fn raw_server(behave: impl FnOnce(Peer) + Send + 'static) -> SocketAddr {
    Peer::serve_one(LIMIT, behave).unwrap().0
}

/// A server that answers every ping with `pong(payload)`.
fn pong_server(pong: fn(&[u8]) -> Vec<u8>) -> SocketAddr {
    raw_server(move |mut s| {
        s.accept().unwrap();
        while let Ok(frame) = s.recv() {
            match frame.opcode() {
                0x9 => s.write_all(&pong(&frame.payload)).unwrap(),
                0x8 => {
                    let _ = s.send(FrameBuilder::new(0x8, &frame.payload));
                    break;
                }
                _ => {}
            }
        }
    })
}

fn ping_broken(addr: SocketAddr) -> Output {
    let url = format!("ws://{addr}/");
    let child = sonar(&["ping", &url, "-c", "2", "-i", "0.05", "-W", "2"])
        .spawn()
        .unwrap();
    finish(child, LIMIT)
}

#[test]
fn ping_warns_about_pongs_without_fin() {
    let addr = pong_server(|p| FrameBuilder::pong(p).fin(false).build());
    let out = ping_broken(addr);
    assert_eq!(out.status.code(), Some(1), "{}\n{}", out.stdout, out.stderr);
    assert!(
        out.stdout.contains("warning: seq=1: pong without FIN"),
        "{}",
        out.stdout
    );
    assert!(
        out.stdout.contains("warning: seq=2: pong without FIN"),
        "{}",
        out.stdout
    );
    assert!(out.stdout.contains("seq=1 rtt="), "{}", out.stdout);
    assert!(out.stdout.contains("(non-conforming)"), "{}", out.stdout);
    assert!(
        out.stdout
            .contains("2 pings sent, 2 pongs received, 0% loss, 2 non-conforming")
    );
}

#[test]
fn ping_warns_about_truncated_pongs() {
    let addr = pong_server(|p| FrameBuilder::pong(&p[..p.len() / 2]).build());
    let out = ping_broken(addr);
    assert_eq!(out.status.code(), Some(1), "{}\n{}", out.stdout, out.stderr);
    assert!(
        out.stdout
            .contains("warning: seq=1: pong payload truncated (4 of 8 bytes echoed)"),
        "{}",
        out.stdout
    );
    assert!(
        out.stdout.contains("4 bytes from 127.0.0.1: seq=2"),
        "{}",
        out.stdout
    );
}

#[test]
fn ping_warns_about_masked_rsv_pongs_and_garbage() {
    // Masked (key 0) with RSV1, and then bytes that are no frame at all.
    let addr = pong_server(|p| {
        let mut v = FrameBuilder::pong(p).rsv(0x40).mask([0; 4]).build();
        v.extend_from_slice(&[0xff, 0xff, 0xff]);
        v
    });
    let out = ping_broken(addr);
    assert_eq!(out.status.code(), Some(1), "{}\n{}", out.stdout, out.stderr);
    assert!(
        out.stdout.contains("pong with RSV bits set (0x40)"),
        "{}",
        out.stdout
    );
    assert!(
        out.stdout.contains("pong masked by the server"),
        "{}",
        out.stdout
    );
    assert!(
        out.stdout.contains("websocket ping statistics"),
        "{}",
        out.stdout
    );
}

#[test]
fn ping_counts_loss_against_a_silent_server() {
    let addr = raw_server(|mut s| {
        s.accept().unwrap();
        while s.recv().is_ok() {}
    });
    let url = format!("ws://{addr}");
    let child = sonar(&["ping", &url, "-c", "2", "-i", "0.05", "-W", "0.3"])
        .spawn()
        .unwrap();
    let out = finish(child, LIMIT);
    assert_eq!(out.status.code(), Some(1));
    assert!(
        out.stdout.contains("no pong for seq=1 within 0.300 s"),
        "{}",
        out.stdout
    );
    assert!(
        out.stdout
            .contains("2 pings sent, 0 pongs received, 100% loss"),
        "{}",
        out.stdout
    );
}

#[test]
fn client_reports_a_rejected_handshake() {
    let addr = raw_server(|mut s| {
        s.read_head().unwrap();
        s.write_all(b"HTTP/1.1 401 Unauthorized\r\nContent-Length: 0\r\n\r\n")
            .unwrap();
    });
    let out = run_with_input(&["client", &format!("ws://{addr}/")], "");
    assert_eq!(out.status.code(), Some(1));
    assert_eq!(
        out.stderr.trim_end(),
        "sonar: handshake rejected: 401 Unauthorized"
    );
    assert_eq!(out.stdout, "");
}

#[test]
fn ping_reports_a_rejected_handshake() {
    let addr = raw_server(|mut s| {
        s.read_head().unwrap();
        s.write_all(b"HTTP/1.1 403 Forbidden\r\nContent-Length: 0\r\n\r\n")
            .unwrap();
    });
    let out = finish(
        sonar(&["ping", &format!("ws://{addr}/"), "-c", "1"])
            .spawn()
            .unwrap(),
        LIMIT,
    );
    assert_eq!(out.status.code(), Some(1));
    assert!(
        out.stderr.contains("handshake rejected: 403 Forbidden"),
        "{}",
        out.stderr
    );
}

#[test]
fn client_fails_when_the_server_stops_answering_pings() {
    let addr = raw_server(|mut s| {
        s.accept().unwrap();
        // Read (so that writes never stall) but never answer.
        while s.recv().is_ok() {}
    });
    let mut child = sonar(&[
        "client",
        &format!("ws://{addr}/"),
        "--ping-interval",
        "0.2",
        "--ping-timeout",
        "0.2",
    ])
    .stdin(Stdio::piped())
    .spawn()
    .unwrap();
    // Keep stdin open: the client must notice the dead server by itself.
    let stdin: ChildStdin = child.stdin.take().unwrap();
    let out = finish(child, Duration::from_secs(10));
    drop(stdin);
    assert_eq!(out.status.code(), Some(1), "{}", out.stderr);
    let last = out.stderr.lines().last().unwrap_or_default();
    assert!(last.starts_with("sonar: "), "{}", out.stderr);
    assert!(last.contains("keepalive"), "{}", out.stderr);
}

#[test]
fn serve_sends_close_1001_on_sigterm() {
    for runtime in ["tokio", "smol", "async-std"] {
        close_1001_on_sigterm(runtime);
    }
}

fn close_1001_on_sigterm(runtime: &str) {
    let mut server = Server::start(runtime);
    let (mut s, head) = raw_client(server.addr);
    assert!(head.starts_with("HTTP/1.1 101"), "{head}");
    server.wait_log("connection opened");

    let kill = thread::spawn(move || server.terminate());
    let close = s.recv().expect("a close frame");
    let (first, payload) = (close.first(), close.payload);
    assert_eq!(first, 0x88);
    assert_eq!(&payload[..2], &1001u16.to_be_bytes());
    assert_eq!(&payload[2..], b"server shutting down");
    // Answer the close (masked, key 0) like a client would.
    s.send(FrameBuilder::close(1001, b"")).unwrap();
    let status = kill.join().unwrap();
    assert!(status.success(), "{runtime}: {status:?}");
}

#[test]
fn client_echo_mode_echoes_until_the_server_closes() {
    let (tx, rx) = mpsc::channel();
    let addr = raw_server(move |mut s| {
        s.accept().unwrap();
        s.send(FrameBuilder::text(b"text")).unwrap();
        s.send(FrameBuilder::binary(&[0, 1, 2])).unwrap();
        let got: Vec<_> = (0..2).map(|_| s.recv().unwrap().into_pair()).collect();
        s.send(FrameBuilder::close(1011, b"")).unwrap(); // any code is fine
        let close = s.recv().unwrap().into_pair();
        tx.send((got, close)).unwrap();
    });
    let out = run_with_input(&["client", &format!("ws://{addr}"), "--echo"], "ignored\n");
    assert!(out.status.success(), "{}", out.stderr);
    let (got, close) = rx.recv_timeout(LIMIT).unwrap();
    assert_eq!(got, vec![(0x81, b"text".to_vec()), (0x82, vec![0, 1, 2])]);
    assert_eq!(close, (0x88, vec![0x03, 0xf3]));
    assert_eq!(out.stdout, "");
}

#[test]
fn help_has_examples_and_exit_codes() {
    let out = finish(sonar(&["--help"]).spawn().unwrap(), LIMIT);
    assert!(out.status.success());
    assert!(out.stdout.contains("Exit codes:"), "{}", out.stdout);
    for sub in ["serve", "client", "ping"] {
        let out = finish(sonar(&[sub, "--help"]).spawn().unwrap(), LIMIT);
        assert!(out.status.success());
        assert!(out.stdout.contains("Examples:"), "{sub}: {}", out.stdout);
        assert!(out.stdout.contains(&format!("sonar {sub} ")), "{sub}");
    }
}

#[test]
fn usage_errors_exit_2() {
    for args in [
        &["ping"][..],
        &["ping", "ws://127.0.0.1:1", "-s", "126"],
        &["ping", "ws://127.0.0.1:1", "-c", "0"],
        &["ping", "ftp://127.0.0.1:1"],
        &["serve", "--ping-interval", "soon"],
        &["serve", "--threads", "0"],
        &["client", "http://127.0.0.1:1/"],
        &["frobnicate"],
    ] {
        let out = finish(sonar(args).spawn().unwrap(), LIMIT);
        assert_eq!(out.status.code(), Some(2), "{args:?}: {}", out.stderr);
    }
}

#[test]
fn client_sends_headers_and_subprotocols() {
    let (tx, rx) = mpsc::channel();
    let addr = raw_server(move |mut s| {
        let head = s.accept_with(Some("chat"), &[]).unwrap();
        s.send(FrameBuilder::close(1000, b"")).unwrap();
        let _ = s.recv();
        tx.send(head).unwrap();
    });
    let out = run_with_input(
        &[
            "client",
            &format!("ws://{addr}/room?x=1"),
            "-H",
            "Authorization: Bearer t0k3n",
            "--header",
            "X-Trace: 42",
            "--protocol",
            "chat",
            "--protocol",
            "superchat",
        ],
        "",
    );
    assert!(out.status.success(), "{}", out.stderr);
    let head = rx.recv_timeout(LIMIT).unwrap();
    assert!(head.starts_with("GET /room?x=1 HTTP/1.1\r\n"), "{head}");
    assert!(head.contains("\r\nSec-WebSocket-Key: "), "{head}");
    assert!(
        head.contains("\r\nAuthorization: Bearer t0k3n\r\n"),
        "{head}"
    );
    assert!(head.contains("\r\nX-Trace: 42\r\n"), "{head}");
    assert!(
        head.contains("\r\nSec-WebSocket-Protocol: chat, superchat\r\n"),
        "{head}"
    );
}

#[test]
fn serve_enforces_max_message_size() {
    let mut cmd = sonar(&["serve", "--addr", "127.0.0.1:0", "--max-message-size", "8"]);
    let mut child = ChildGuard::spawn(&mut cmd).unwrap();
    let line = LineReader::spawn(child.stdout.take().unwrap())
        .next_line(LIMIT)
        .unwrap();
    let addr = line
        .split_whitespace()
        .find_map(|w| w.parse::<SocketAddr>().ok())
        .unwrap();
    let out = run_with_input(
        &["client", &format!("ws://{addr}")],
        "this line is longer than eight bytes\n",
    );
    drop(child);
    assert_eq!(out.status.code(), Some(1), "{}", out.stderr);
    assert_eq!(out.stdout, "");
    assert!(
        out.stderr
            .contains("server closed the connection with 1009"),
        "{}",
        out.stderr
    );
}

#[test]
fn ping_prints_the_summary_on_ctrl_c() {
    let server = Server::start("tokio");
    let mut child = sonar(&["ping", &server.url(), "-i", "0.05"])
        .spawn()
        .unwrap();
    let stdout = LineReader::spawn(child.stdout.take().unwrap());
    let mut lines = Vec::new();
    while lines
        .iter()
        .filter(|l: &&String| l.contains(" rtt="))
        .count()
        < 2
    {
        lines.push(stdout.next_line(LIMIT).expect("rtt lines"));
    }
    let pid = child.id().to_string();
    assert!(
        Command::new("kill")
            .args(["-INT", &pid])
            .status()
            .unwrap()
            .success()
    );
    lines.extend(stdout.collect_for(LIMIT));
    let status = finish(child, LIMIT).status;
    let text = lines.join("\n");
    assert!(text.contains("websocket ping statistics"), "{text}");
    assert!(text.contains("rtt min/avg/max"), "{text}");
    let summary = lines.iter().find(|l| l.contains("pings sent")).unwrap();
    // Interrupted while waiting between pings (0 loss) or for a pong (that one is lost).
    assert!(
        status.code() == Some(0) || summary.contains("% loss"),
        "{text}"
    );
}

#[test]
fn serve_logs_keepalive_timeouts_on_every_runtime() {
    for runtime in ["tokio", "smol", "async-std"] {
        let server = Server::start_with(&[
            "--runtime",
            runtime,
            "--ping-interval",
            "0.1",
            "--ping-timeout",
            "0.2",
        ]);
        let (mut s, head) = raw_client(server.addr);
        assert!(head.starts_with("HTTP/1.1 101"));
        // Read the server's pings but never answer them.
        let reader = thread::spawn(move || {
            let mut sink = [0u8; 1024];
            while matches!(s.read(&mut sink), Ok(n) if n > 0) {}
        });
        let line = server.wait_log("keepalive timeout");
        assert!(line.contains("peer=127.0.0.1:"), "{runtime}: {line}");
        reader.join().unwrap();
    }
}

// `--reconnect`: the server restarts (Close 1012) after the first line; the client says so,
// connects again by itself, and the next stdin line goes out on the new connection. At the
// end of stdin it closes normally and exits 0.
#[test]
fn client_reconnect_carries_on_over_a_new_connection() {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = listener.local_addr().unwrap();
    let (tx, rx) = mpsc::channel();
    thread::spawn(move || {
        for _ in 0..2 {
            let Ok((tcp, _)) = listener.accept() else {
                break;
            };
            if tx.send(tcp).is_err() {
                break;
            }
        }
    });
    let url = format!("ws://{addr}/");
    let mut child =
        ChildGuard::spawn(sonar(&["client", "--reconnect", &url]).stdin(Stdio::piped())).unwrap();
    let mut stdin = child.stdin.take().unwrap();
    let stdout = LineReader::spawn(child.stdout.take().unwrap());
    let stderr = LineReader::spawn(child.stderr.take().unwrap());

    let mut first = Peer::server(rx.recv_timeout(LIMIT).unwrap());
    first.accept().unwrap();
    stdin.write_all(b"one\n").unwrap();
    assert_eq!(first.recv().unwrap().into_pair(), (0x81, b"one".to_vec()));
    first.send(FrameBuilder::text(b"reply one")).unwrap();
    stdout.expect_line(LIMIT, "with the first reply", |l| l == "reply one");
    first.send(FrameBuilder::close(1012, b"restart")).unwrap();
    assert_eq!(
        first.recv().unwrap().into_pair(),
        (0x88, vec![0x03, 0xf4]),
        "the client answers the Close with its code, 1012"
    );
    drop(first);
    stderr.expect_line(LIMIT, "saying it connects again", |l| {
        l.contains("connecting again")
    });

    let mut second = Peer::server(rx.recv_timeout(LIMIT).unwrap());
    second.accept().unwrap();
    stdin.write_all(b"two\n").unwrap();
    assert_eq!(second.recv().unwrap().into_pair(), (0x81, b"two".to_vec()));
    second.send(FrameBuilder::text(b"reply two")).unwrap();
    stdout.expect_line(LIMIT, "with the second reply", |l| l == "reply two");
    drop(stdin);
    let close = second.recv().unwrap().into_pair();
    assert_eq!(
        close,
        (0x88, vec![0x03, 0xe8]),
        "Close 1000 at the end of stdin"
    );
    second.send(FrameBuilder::close(1000, b"")).unwrap();
    drop(second);
    assert!(child.expect_exit(LIMIT, "sonar client").success());
}
