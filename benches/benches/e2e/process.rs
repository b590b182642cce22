//! Each server in its own process, pinned apart from the load generator, and the CPU time the
//! rest of the machine took during a run (so a disturbed run shows in the table).
//!
//! The harness re-runs its own executable as `serve NAME`: the child starts the server, prints
//! `addr ADDR`, answers each `rss` line on stdin with `rss BYTES` (its VmRSS), and stops when
//! stdin closes. A server that is another executable (`sonar serve`, [`Launch::Command`]) is
//! found next to this executable (`target/PROFILE/sonar` for `target/PROFILE/deps/e2e-HASH`,
//! so built with the same profile) or at the path in its environment variable; its address
//! comes from its `listening on ADDR` line, its VmRSS from `/proc/PID/status`, and it is
//! stopped with SIGTERM. Where `taskset` exists and the machine has two CPUs or more, every
//! server child runs on CPU 0 and the load generator (this process, every thread) on CPU 1.

use std::io::{BufRead, BufReader, Write};
use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::{Child, ChildStdin, ChildStdout, Command, Stdio};
use std::time::{Duration, Instant};

use crate::servers::{self, Launch, ServerKind};

/// The CPU the server children run on.
pub const SERVER_CPU: &str = "0";
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

/// The executable of a [`Launch::Command`] server: `$env` if set, else `program` in the
/// directory above this executable's `deps/` (where cargo puts the binaries of the same
/// profile). None if it does not exist (build it with `cargo build --profile PROFILE -p
/// sonar-cli`; `cargo xtask bench` does).
pub fn command_path(program: &str, env: &str) -> Option<PathBuf> {
    let path = match std::env::var_os(env) {
        Some(path) => PathBuf::from(path),
        None => {
            let exe = std::env::current_exe().ok()?;
            let deps = exe.parent()?;
            let dir = if deps.ends_with("deps") {
                deps.parent()?
            } else {
                deps
            };
            dir.join(program)
        }
    };
    path.is_file().then_some(path)
}

/// The command that starts `program` with `args` as a server child: on `cpus` (a taskset
/// list; [`SERVER_CPU`] for every server but the multi-threaded rows) when `pin`, stdin and
/// stdout piped.
pub fn server_command(program: PathBuf, args: &[&str], pin: bool, cpus: &str) -> Command {
    let mut command = if pin {
        let mut c = Command::new("taskset");
        c.args(["-c", cpus]).arg(program);
        c
    } else {
        Command::new(program)
    };
    command
        .args(args)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped());
    command
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
        let (program, args, cpus): (PathBuf, Vec<&str>, &str) = match &kind.launch {
            Launch::InProcess(_) => (
                std::env::current_exe().expect("current exe"),
                vec!["serve", kind.name],
                SERVER_CPU,
            ),
            Launch::Command {
                program,
                env,
                args,
                cpus,
            } => (
                command_path(program, env)
                    .unwrap_or_else(|| panic!("{}: no {program} executable", kind.name)),
                args.to_vec(),
                cpus,
            ),
        };
        let external = matches!(kind.launch, Launch::Command { .. });
        let mut command = server_command(program, &args, pin, cpus);
        if external {
            // `sonar serve` logs every connection on stderr: kept out of the bench's output.
            command.stderr(Stdio::null());
        }
        let mut child = command.spawn().expect("spawn server child");
        let stdin = child.stdin.take();
        let mut stdout = BufReader::new(child.stdout.take().expect("child stdout"));
        let mut first = String::new();
        stdout.read_line(&mut first).expect("child address line");
        let addr = if external {
            first
                .split_once("listening on ")
                .and_then(|(_, rest)| rest.split_whitespace().next().and_then(|a| a.parse().ok()))
        } else {
            first
                .trim()
                .strip_prefix("addr ")
                .and_then(|a| a.parse().ok())
        };
        let addr =
            addr.unwrap_or_else(|| panic!("{}: no address from the child: {first:?}", kind.name));
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
        if let Launch::Command { .. } = self.kind.launch {
            return vm_rss(&format!("/proc/{}/status", self.child.id()));
        }
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
        child_ticks(&self.child)
    }

    /// Closes the child's stdin (SIGTERM for another executable) and waits (up to 10 s, then
    /// kills it).
    pub fn stop(mut self) {
        drop(self.stdin.take());
        if let Launch::Command { .. } = self.kind.launch {
            let _ = Command::new("kill")
                .args(["-TERM", &self.child.id().to_string()])
                .status();
        }
        wait_or_kill(&mut self.child, Duration::from_secs(10));
    }
}

/// Waits for `child` to exit, up to `within`, then kills it.
pub fn wait_or_kill(child: &mut Child, within: Duration) {
    let deadline = Instant::now() + within;
    loop {
        match child.try_wait() {
            Ok(Some(_)) => return,
            _ if Instant::now() > deadline => {
                let _ = child.kill();
                let _ = child.wait();
                return;
            }
            _ => std::thread::sleep(Duration::from_millis(20)),
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
        println!("rss {}", vm_rss("/proc/self/status"));
        let _ = std::io::stdout().flush();
    }
    server.stop();
}

/// A child's CPU time so far (utime + stime), in clock ticks.
pub fn child_ticks(child: &Child) -> u64 {
    process_ticks(&format!("/proc/{}/stat", child.id()))
}

/// VmRSS in bytes from a `/proc/PID/status` file (0 where it cannot be read).
pub fn vm_rss(path: &str) -> u64 {
    let status = std::fs::read_to_string(path).unwrap_or_default();
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
        CpuMark::with_server_ticks(server.cpu_ticks())
    }

    /// Marks now; `server_ticks`: the CPU time of the server child under load so far
    /// ([`child_ticks`]).
    pub fn with_server_ticks(server_ticks: u64) -> CpuMark {
        let (busy, total) = machine_ticks();
        CpuMark {
            busy,
            total,
            ours: process_ticks("/proc/self/stat") + server_ticks,
        }
    }

    /// The share of the machine's CPU time since the mark that neither the load generator nor
    /// the server used (0.0 to 1.0; NaN if `/proc` cannot be read).
    pub fn background_since(&self, server: &ServerProcess) -> f64 {
        self.background_with_server_ticks(server.cpu_ticks())
    }

    /// [`background_since`](Self::background_since) for a server child whose CPU time is
    /// now `server_ticks`.
    pub fn background_with_server_ticks(&self, server_ticks: u64) -> f64 {
        let later = CpuMark::with_server_ticks(server_ticks);
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
