//! Helpers shared by the CLI tests: the `sonar` binary as a child process (bounded waits,
//! output collected), a running `sonar serve` on port 0, and a raw client of it.
#![allow(
    dead_code,
    unreachable_pub,
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic
)]

use std::io::Write;
use std::net::SocketAddr;
use std::process::{Child, Command, ExitStatus, Stdio};
use std::thread;
use std::time::Duration;

use sonar_testkit::{ChildGuard, LineReader, Peer, text_of};

pub const SONAR: &str = env!("CARGO_BIN_EXE_sonar");
/// Upper bound for any one process to finish.
pub const LIMIT: Duration = Duration::from_secs(20);

/// What a finished `sonar` process left.
pub struct Output {
    pub status: ExitStatus,
    pub stdout: String,
    pub stderr: String,
}

/// Waits for `child` (killing it and failing the test past `limit`), collecting its output.
pub fn finish(child: Child, limit: Duration) -> Output {
    let mut child = ChildGuard::new(child);
    let stdout = child.stdout.take().map(text_of);
    let stderr = child.stderr.take().map(text_of);
    let status = child.expect_exit(limit, "sonar");
    let text = |h: Option<thread::JoinHandle<String>>| h.map(|h| h.join().unwrap());
    Output {
        status,
        stdout: text(stdout).unwrap_or_default(),
        stderr: text(stderr).unwrap_or_default(),
    }
}

/// `sonar ARGS` with `RUST_LOG=info`, no stdin, stdout and stderr piped.
pub fn sonar(args: &[&str]) -> Command {
    let mut cmd = Command::new(SONAR);
    cmd.args(args)
        .env("RUST_LOG", "info")
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    cmd
}

/// Runs `sonar` with `input` on stdin (then EOF).
pub fn run_with_input(args: &[&str], input: &str) -> Output {
    let mut child = sonar(args).stdin(Stdio::piped()).spawn().unwrap();
    let mut stdin = child.stdin.take().unwrap();
    stdin.write_all(input.as_bytes()).unwrap();
    drop(stdin);
    finish(child, LIMIT)
}

/// A running `sonar serve`, killed on drop.
pub struct Server {
    child: Option<ChildGuard>,
    pub addr: SocketAddr,
    pub stderr_lines: LineReader,
}

impl Server {
    pub fn start(runtime: &str) -> Server {
        Server::start_with(&["--runtime", runtime])
    }

    pub fn start_with(extra: &[&str]) -> Server {
        let mut args = vec!["serve", "--addr", "127.0.0.1:0"];
        args.extend_from_slice(extra);
        let mut child = ChildGuard::spawn(&mut sonar(&args)).unwrap();
        let stdout = LineReader::spawn(child.stdout.take().unwrap());
        let stderr_lines = LineReader::spawn(child.stderr.take().unwrap());
        let line = stdout.next_line(LIMIT).expect("serve prints its address");
        stdout.drain();
        let addr = line
            .split_whitespace()
            .find_map(|w| w.parse::<SocketAddr>().ok())
            .unwrap_or_else(|| panic!("no address in {line:?}"));
        assert!(line.contains(&format!("listening on {addr}")), "{line:?}");
        Server {
            child: Some(child),
            addr,
            stderr_lines,
        }
    }

    /// The server's process id.
    pub fn pid(&self) -> u32 {
        self.child.as_ref().map(|c| c.id()).unwrap()
    }

    pub fn url(&self) -> String {
        format!("ws://{}", self.addr)
    }

    /// Waits for a log line containing `needle`.
    pub fn wait_log(&self, needle: &str) -> String {
        self.stderr_lines
            .expect_line(LIMIT, &format!("containing {needle:?}"), |l| {
                l.contains(needle)
            })
    }

    /// Sends SIGTERM and waits (bounded) for the exit.
    pub fn terminate(&mut self) -> ExitStatus {
        let mut child = self.child.take().unwrap();
        let pid = child.id().to_string();
        let killed = Command::new("kill").args(["-TERM", &pid]).status().unwrap();
        assert!(killed.success());
        child.expect_exit(LIMIT, "serve after SIGTERM")
    }
}

/// A raw client of `sonar serve` at `addr`, past the handshake; returns it and the 101 head.
pub fn raw_client(addr: SocketAddr) -> (Peer, String) {
    // Answers to the server's close are masked with key 0.
    let mut s = Peer::tcp_client(addr, LIMIT)
        .unwrap()
        .with_mask(Some([0; 4]));
    let head = s.connect("127.0.0.1", "/").unwrap();
    (s, head)
}
