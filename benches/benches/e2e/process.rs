//! Each server in its own process, pinned apart from the load generator, and the CPU time the
//! rest of the machine took during a run (so a disturbed run shows in the table).
//!
//! The harness re-runs its own executable as `serve NAME`: the child starts the server, prints
//! `addr ADDR`, answers each `rss` line on stdin with `rss BYTES` (its VmRSS), and stops when
//! stdin closes. Where `taskset` exists and the machine has two CPUs or more, the server child
//! runs on CPU 0 and the load generator (this process, every thread) on CPU 1.

use std::io::{BufRead, BufReader, Write};
use std::net::SocketAddr;
use std::process::{Child, ChildStdin, ChildStdout, Command, Stdio};
use std::time::{Duration, Instant};

use crate::servers::{self, ServerKind};

/// The CPU the server children run on.
const SERVER_CPU: &str = "0";
/// The CPU the load generator runs on.
const LOAD_CPU: &str = "1";

/// Whether server and load generator can be pinned to different CPUs here.
pub fn can_pin() -> bool {
    std::thread::available_parallelism().is_ok_and(|n| n.get() >= 2)
        && Command::new("taskset")
            .arg("--version")
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status()
            .is_ok_and(|s| s.success())
}

/// Pins every thread of this process (and the threads it starts later) to the load CPU.
pub fn pin_load_generator() -> bool {
    Command::new("taskset")
        .args(["-a", "-p", "-c", LOAD_CPU, &std::process::id().to_string()])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .is_ok_and(|s| s.success())
}

/// A server running in a child process.
pub struct ServerProcess {
    pub kind: &'static ServerKind,
    pub addr: SocketAddr,
    child: Child,
    stdin: Option<ChildStdin>,
    stdout: BufReader<ChildStdout>,
}

impl ServerProcess {
    /// Starts `kind` in a child (on the server CPU when `pin`) and waits for its address.
    pub fn start(kind: &'static ServerKind, pin: bool) -> ServerProcess {
        let exe = std::env::current_exe().expect("current exe");
        let mut command = if pin {
            let mut c = Command::new("taskset");
            c.args(["-c", SERVER_CPU]).arg(exe);
            c
        } else {
            Command::new(exe)
        };
        let mut child = command
            .args(["serve", kind.name])
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .spawn()
            .expect("spawn server child");
        let stdin = child.stdin.take();
        let mut stdout = BufReader::new(child.stdout.take().expect("child stdout"));
        let mut first = String::new();
        stdout.read_line(&mut first).expect("child address line");
        let addr = first
            .trim()
            .strip_prefix("addr ")
            .and_then(|a| a.parse().ok())
            .unwrap_or_else(|| panic!("{}: no address from the child: {first:?}", kind.name));
        ServerProcess {
            kind,
            addr,
            child,
            stdin,
            stdout,
        }
    }

    /// The child's resident memory in bytes.
    pub fn rss(&mut self) -> u64 {
        let stdin = self.stdin.as_mut().expect("child stdin");
        writeln!(stdin, "rss").expect("ask rss");
        stdin.flush().expect("flush");
        let mut line = String::new();
        self.stdout.read_line(&mut line).expect("rss line");
        line.trim()
            .strip_prefix("rss ")
            .and_then(|v| v.parse().ok())
            .unwrap_or(0)
    }

    /// The child's CPU time so far, in clock ticks.
    pub fn cpu_ticks(&self) -> u64 {
        process_ticks(&format!("/proc/{}/stat", self.child.id()))
    }

    /// Closes the child's stdin and waits (up to 10 s, then kills it).
    pub fn stop(mut self) {
        drop(self.stdin.take());
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            match self.child.try_wait() {
                Ok(Some(_)) => return,
                _ if Instant::now() > deadline => {
                    let _ = self.child.kill();
                    let _ = self.child.wait();
                    return;
                }
                _ => std::thread::sleep(Duration::from_millis(20)),
            }
        }
    }
}

/// The child side: runs the server called `name` until stdin closes.
pub fn serve_child(name: &str) {
    let kind = servers::kind(name).unwrap_or_else(|| panic!("unknown server {name}"));
    let server = servers::Running::start(kind);
    println!("addr {}", server.addr);
    let _ = std::io::stdout().flush();
    for line in std::io::stdin().lock().lines() {
        let Ok(line) = line else { break };
        if line.trim() != "rss" {
            break;
        }
        println!("rss {}", vm_rss());
        let _ = std::io::stdout().flush();
    }
    server.stop();
}

fn vm_rss() -> u64 {
    let status = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse::<u64>().ok())
        .map_or(0, |kb| kb * 1024)
}

/// utime + stime of a process, from its `/proc/PID/stat` (0 where it cannot be read).
fn process_ticks(path: &str) -> u64 {
    let stat = std::fs::read_to_string(path).unwrap_or_default();
    // The command name (field 2) may hold spaces: count fields after its closing parenthesis.
    let rest = stat.rsplit_once(')').map_or("", |(_, r)| r);
    let fields: Vec<&str> = rest.split_whitespace().collect();
    let field = |i: usize| {
        fields
            .get(i)
            .and_then(|v| v.parse::<u64>().ok())
            .unwrap_or(0)
    };
    // After ')': state is index 0, so utime (field 14) is 11 and stime (15) is 12.
    field(11) + field(12)
}

/// Busy and total clock ticks of the whole machine (`/proc/stat`, all CPUs).
fn machine_ticks() -> (u64, u64) {
    let stat = std::fs::read_to_string("/proc/stat").unwrap_or_default();
    let values: Vec<u64> = stat
        .lines()
        .next()
        .unwrap_or("")
        .split_whitespace()
        .skip(1)
        .filter_map(|v| v.parse().ok())
        .collect();
    let total: u64 = values.iter().take(8).sum();
    // idle (3) and iowait (4) are not busy.
    let idle = values.get(3).copied().unwrap_or(0) + values.get(4).copied().unwrap_or(0);
    (total.saturating_sub(idle), total)
}

/// A reading taken before a run, to measure what the rest of the machine used during it.
pub struct CpuMark {
    busy: u64,
    total: u64,
    ours: u64,
}

impl CpuMark {
    /// Marks now; `server` is the child under load.
    pub fn now(server: &ServerProcess) -> CpuMark {
        let (busy, total) = machine_ticks();
        CpuMark {
            busy,
            total,
            ours: process_ticks("/proc/self/stat") + server.cpu_ticks(),
        }
    }

    /// The share of the machine's CPU time since the mark that neither the load generator nor
    /// the server used (0.0 to 1.0; NaN if `/proc` cannot be read).
    pub fn background_since(&self, server: &ServerProcess) -> f64 {
        let later = CpuMark::now(server);
        let total = later.total.saturating_sub(self.total);
        if total == 0 {
            return f64::NAN;
        }
        let others = later
            .busy
            .saturating_sub(self.busy)
            .saturating_sub(later.ours.saturating_sub(self.ours));
        others as f64 / total as f64
    }
}
