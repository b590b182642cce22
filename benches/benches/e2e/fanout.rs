//! The fan-out benchmark (issue 16), load side: one published message to many subscribers,
//! messages delivered per second, each server (`fanout_servers.rs`) in its own child process
//! pinned apart from the load generator, as for the echo table.
//!
//! A run: a fresh server child; `SUBSCRIBERS` WebSocket connections (the handshake of
//! `load.rs`; with compression the offer `permessage-deflate; client_max_window_bits;
//! server_no_context_takeover; client_no_context_takeover`), plus `--slow N` that complete the
//! handshake and then never read (receive buffer [`SLOW_RCVBUF`]); `go`; each fast connection counts the complete data frames
//! it receives (`load::FrameCounter`, no payload copied) during `secs` seconds after a warm-up
//! of a fifth of that; `stop`; the rate is the frames received by the fast subscribers over
//! `secs`. Rounds are interleaved (every server, and with `--slow` its run with and without
//! the slow subscribers in alternating order); ratios are medians of per-round ratios.

use std::io::{BufRead, BufReader, Write};
use std::net::SocketAddr;
use std::process::{Child, ChildStdin};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use tokio::io::AsyncReadExt;
use tokio::net::TcpStream;

use crate::fanout_servers::{self, FANOUT_SERVERS, FanoutKind};
use crate::load::{self, Compression, FrameCounter};
use crate::process::{self, CpuMark};
use crate::report::{fmt_pct, fmt_rate, fmt_ratio, median};
use crate::servers::current_thread_runtime;

/// The Markdown header of the rows [`run_fanout`] prints.
pub const FANOUT_HEADER: &str = "| scenario | server | deliveries/s | vs best peer | publishes/s | \
                                 vs no slow subscriber | max unsent bytes of a subscriber | \
                                 server RSS | background CPU |\n| --- | --- | ---: | ---: | ---: \
                                 | ---: | ---: | ---: | ---: |";

/// `SO_RCVBUF` of a slow subscriber (bytes).
const SLOW_RCVBUF: u32 = 4096;

/// One fan-out scenario: payload bytes, fast subscribers, slow ones, compression.
#[derive(Clone, Copy, Debug)]
pub struct FanoutScenario {
    pub payload: usize,
    pub subscribers: usize,
    pub slow: usize,
    pub compressed: bool,
}

impl FanoutScenario {
    /// `PAYLOAD:SUBSCRIBERS`.
    pub fn parse(text: &str) -> Option<FanoutScenario> {
        let (payload, subscribers) = text.split_once(':')?;
        Some(FanoutScenario {
            payload: payload.parse().ok()?,
            subscribers: subscribers.parse().ok()?,
            slow: 0,
            compressed: false,
        })
    }

    fn compression(&self) -> Compression {
        if self.compressed {
            Compression::Deflate {
                context_takeover: false,
            }
        } else {
            Compression::Off
        }
    }

    pub fn label(&self) -> String {
        let size = match self.payload {
            p if p >= 1 << 10 && p % (1 << 10) == 0 => format!("{} KiB", p >> 10),
            p => format!("{p} B"),
        };
        let kind = if self.compressed {
            " text, deflate no context takeover,"
        } else {
            ""
        };
        let slow = if self.slow > 0 {
            format!(" + {} slow", self.slow)
        } else {
            String::new()
        };
        format!("fan-out {size}{kind} to {} subs{slow}", self.subscribers)
    }
}

/// What the server child said when it stopped.
#[derive(Clone, Copy, Debug, Default)]
struct Done {
    published: u64,
    max_buffered: Option<u64>,
    /// `Topics` counters (sonar-topics only).
    delivered: Option<u64>,
    skipped: Option<u64>,
    rss: u64,
}

impl Done {
    fn parse(line: &str) -> Option<Done> {
        let rest = line.trim().strip_prefix("done ")?;
        let field = |name: &str| -> Option<i64> {
            rest.split_whitespace()
                .find_map(|kv| kv.strip_prefix(name)?.strip_prefix('='))
                .and_then(|v| v.parse().ok())
        };
        Some(Done {
            published: u64::try_from(field("published")?).ok()?,
            max_buffered: field("max_buffered").and_then(|v| u64::try_from(v).ok()),
            delivered: field("delivered").and_then(|v| u64::try_from(v).ok()),
            skipped: field("skipped").and_then(|v| u64::try_from(v).ok()),
            rss: u64::try_from(field("rss")?).unwrap_or(0),
        })
    }
}

/// One run of one server.
#[derive(Clone, Copy, Debug)]
struct FanoutSample {
    deliveries_per_sec: f64,
    publishes_per_sec: f64,
    background: f64,
    /// Every fast subscriber's first frame was byte-identical, and every frame had the
    /// message's length (uncompressed).
    consistent: bool,
    /// Fast subscribers connected (of the scenario's), and whether the server saw them all.
    connected: usize,
    done: Done,
}

/// A fan-out server child (`serve-fanout NAME PAYLOAD COMPRESSED`).
struct FanoutChild {
    child: Child,
    stdin: Option<ChildStdin>,
    lines: mpsc::Receiver<String>,
    addr: SocketAddr,
}

impl FanoutChild {
    fn start(kind: &FanoutKind, sc: FanoutScenario, pin: bool) -> FanoutChild {
        let exe = std::env::current_exe().expect("current exe");
        let payload = sc.payload.to_string();
        let compressed = if sc.compressed { "1" } else { "0" };
        let mut child = process::server_command(
            exe,
            &["serve-fanout", kind.name, &payload, compressed],
            pin,
            process::SERVER_CPU,
        )
        .spawn()
        .expect("spawn fan-out server");
        let stdin = child.stdin.take();
        let stdout = BufReader::new(child.stdout.take().expect("child stdout"));
        // A thread reads the child's lines, so the load generator never blocks on the pipe.
        let (tx, lines) = mpsc::channel();
        std::thread::spawn(move || {
            for line in stdout.lines() {
                let Ok(line) = line else { break };
                if tx.send(line).is_err() {
                    break;
                }
            }
        });
        let first = lines
            .recv_timeout(Duration::from_secs(10))
            .unwrap_or_default();
        let addr = first
            .strip_prefix("addr ")
            .and_then(|a| a.parse().ok())
            .unwrap_or_else(|| panic!("{}: no address from the child: {first:?}", kind.name));
        FanoutChild {
            child,
            stdin,
            lines,
            addr,
        }
    }

    fn say(&mut self, line: &str) {
        if let Some(stdin) = self.stdin.as_mut() {
            let _ = writeln!(stdin, "{line}").and_then(|()| stdin.flush());
        }
    }

    /// The next line starting with `prefix`, waiting up to `within` without blocking the
    /// runtime (the connections' tasks keep reading meanwhile).
    async fn line(&self, prefix: &str, within: Duration) -> Option<String> {
        let deadline = Instant::now() + within;
        while Instant::now() < deadline {
            match self.lines.try_recv() {
                Ok(line) if line.starts_with(prefix) => return Some(line),
                Ok(_) => {}
                Err(mpsc::TryRecvError::Empty) => {
                    tokio::time::sleep(Duration::from_millis(1)).await;
                }
                Err(mpsc::TryRecvError::Disconnected) => return None,
            }
        }
        None
    }

    fn ticks(&self) -> u64 {
        process::child_ticks(&self.child)
    }

    fn finish(mut self) {
        drop(self.stdin.take());
        process::wait_or_kill(&mut self.child, Duration::from_secs(10));
    }
}

/// One fast subscriber's count.
struct Received {
    frames: u64,
    wrong_length: u64,
    /// The first frame's bytes (header and payload), if it arrived whole in the first 64 KiB.
    first_frame: Option<Vec<u8>>,
}

/// Reads `tcp` until `stop`; counts complete data messages that arrive in `[warm, end)`.
async fn count_frames(
    mut tcp: TcpStream,
    payload: Option<u64>,
    warm: Instant,
    end: Instant,
    mut stop: tokio::sync::watch::Receiver<bool>,
) -> Received {
    const FIRST_MAX: usize = 64 << 10;
    let mut buf = vec![0u8; 32 << 10];
    let mut parser = FrameCounter::default();
    let mut first = Vec::new();
    let mut first_len: Option<usize> = None;
    let mut result = Received {
        frames: 0,
        wrong_length: 0,
        first_frame: None,
    };
    loop {
        let n = tokio::select! {
            biased;
            _ = stop.changed() => break,
            r = tcp.read(&mut buf) => match r {
                Ok(0) | Err(_) => break,
                Ok(n) => n,
            },
        };
        let data = &buf[..n];
        if first_len.is_none() && first.len() < FIRST_MAX {
            first.extend_from_slice(&data[..n.min(FIRST_MAX - first.len())]);
        }
        let now = Instant::now();
        let counting = now >= warm && now < end;
        parser.feed(data, |b0, len| {
            if b0 & 0x80 == 0 || b0 & 0x0f > 2 {
                return; // a fragment or a control frame
            }
            if first_len.is_none() {
                let ext = match len {
                    0..126 => 0,
                    126..65536 => 2,
                    _ => 8,
                };
                first_len = Some(2 + ext + len as usize);
            }
            if payload.is_some_and(|p| p != len) {
                result.wrong_length += 1;
            }
            if counting {
                result.frames += 1;
            }
        });
    }
    if let Some(len) = first_len
        && first.len() >= len
    {
        first.truncate(len);
        result.first_frame = Some(first);
    }
    result
}

/// One run: a fresh child and fresh connections.
fn run_once(
    rt: &tokio::runtime::Runtime,
    kind: &FanoutKind,
    sc: FanoutScenario,
    secs: f64,
    pin: bool,
) -> FanoutSample {
    let mut child = FanoutChild::start(kind, sc, pin);
    let fast = rt.block_on(load::open_many(
        child.addr,
        true,
        sc.compression(),
        sc.subscribers,
    ));
    // The slow subscribers: connected, never read, with a small receive buffer so that the
    // kernel does not absorb minutes of messages before the server has to hold them.
    let slow: Vec<TcpStream> = rt.block_on(async {
        let mut slow = Vec::new();
        for _ in 0..sc.slow {
            let open = load::open_with(child.addr, true, sc.compression(), Some(SLOW_RCVBUF));
            if let Ok(Ok(tcp)) = tokio::time::timeout(Duration::from_secs(20), open).await {
                slow.push(tcp);
            }
        }
        slow
    });
    if fast.len() + slow.len() != sc.subscribers + sc.slow {
        eprintln!(
            "  {}: only {} of {} connections opened",
            kind.name,
            fast.len() + slow.len(),
            sc.subscribers + sc.slow
        );
    }
    let connected = fast.len();
    child.say(&format!("go {}", connected + slow.len()));
    let payload = (!sc.compressed).then_some(sc.payload as u64);
    let (sample, received) = rt.block_on(async {
        let going = child.line("going ", Duration::from_secs(30)).await;
        let subscribed: usize = going
            .as_deref()
            .and_then(|l| l.strip_prefix("going "))
            .and_then(|n| n.parse().ok())
            .unwrap_or(0);
        if subscribed != connected + slow.len() {
            eprintln!(
                "  {}: the server saw {subscribed} of {} subscribers",
                kind.name,
                connected + slow.len()
            );
        }
        let start = Instant::now();
        let warm = start + Duration::from_secs_f64(secs * 0.2);
        let end = warm + Duration::from_secs_f64(secs);
        let (stop_tx, stop_rx) = tokio::sync::watch::channel(false);
        let tasks: Vec<_> = fast
            .into_iter()
            .map(|tcp| tokio::spawn(count_frames(tcp, payload, warm, end, stop_rx.clone())))
            .collect();
        tokio::time::sleep_until(tokio::time::Instant::from_std(warm)).await;
        let mark = CpuMark::with_server_ticks(child.ticks());
        tokio::time::sleep_until(tokio::time::Instant::from_std(end)).await;
        let background = mark.background_with_server_ticks(child.ticks());
        // Stop the publisher while the subscribers still read (a publisher that waits on a
        // socket then still gets to see `stop`).
        child.say("stop");
        let stopped = Instant::now();
        let done = child.line("done ", Duration::from_secs(10)).await;
        let done = done.as_deref().and_then(Done::parse);
        if done.is_none() {
            eprintln!("  {}: no `done` from the child", kind.name);
        }
        let _ = stop_tx.send(true);
        let mut received = Vec::with_capacity(tasks.len());
        for task in tasks {
            if let Ok(r) = task.await {
                received.push(r);
            }
        }
        let done = done.unwrap_or_default();
        let publish_secs = stopped.duration_since(start).as_secs_f64();
        let sample = FanoutSample {
            deliveries_per_sec: received.iter().map(|r| r.frames).sum::<u64>() as f64 / secs,
            publishes_per_sec: done.published as f64 / publish_secs,
            background,
            consistent: true,
            connected: subscribed.min(connected),
            done,
        };
        (sample, received)
    });
    drop(slow);
    child.finish();
    let wrong: u64 = received.iter().map(|r| r.wrong_length).sum();
    let firsts: Vec<&Vec<u8>> = received
        .iter()
        .filter_map(|r| r.first_frame.as_ref())
        .collect();
    let identical = firsts.len() == received.len() && firsts.windows(2).all(|w| w[0] == w[1]);
    if wrong > 0 || !identical {
        eprintln!(
            "  {}: {wrong} frames of the wrong length; first frames identical: {identical} \
             ({} of {} subscribers had one)",
            kind.name,
            firsts.len(),
            received.len()
        );
    }
    FanoutSample {
        consistent: wrong == 0 && identical,
        ..sample
    }
}

/// Raises this process's soft limit of open files to `need` if it is lower (with `prlimit`;
/// server children inherit it).
fn ensure_open_files(need: u64) {
    let limits = std::fs::read_to_string("/proc/self/limits").unwrap_or_default();
    let soft = limits
        .lines()
        .find(|l| l.starts_with("Max open files"))
        .and_then(|l| l.split_whitespace().nth(3))
        .and_then(|v| v.parse::<u64>().ok());
    if soft.is_some_and(|s| s >= need) {
        return;
    }
    let raised = std::process::Command::new("prlimit")
        .args([
            "--pid",
            &std::process::id().to_string(),
            &format!("--nofile={need}:{need}"),
        ])
        .status()
        .is_ok_and(|s| s.success());
    if !raised {
        eprintln!("e2e: open files limit {soft:?} < {need} and prlimit failed: raise `ulimit -n`");
    }
}

/// The fan-out servers named in `list` (all when `None`), those with compression only when
/// `compressed`.
pub fn fanout_servers(list: Option<&str>, compressed: bool) -> Vec<&'static FanoutKind> {
    FANOUT_SERVERS
        .iter()
        .filter(|k| list.is_none_or(|l| l.split(',').any(|x| x == k.name)))
        .filter(|k| k.deflate || !compressed)
        .collect()
}

/// Runs one scenario over `kinds`, `runs` interleaved rounds (with `sc.slow > 0`, each server
/// also without the slow subscribers, in alternating order), and prints one Markdown row per
/// server and variant. False if a server delivered nothing or inconsistent frames.
pub fn run_fanout(
    kinds: &[&'static FanoutKind],
    sc: FanoutScenario,
    runs: usize,
    secs: f64,
    pin: bool,
) -> bool {
    ensure_open_files(2 * (sc.subscribers + sc.slow) as u64 + 256);
    let rt = current_thread_runtime();
    let variants: Vec<FanoutScenario> = if sc.slow > 0 {
        vec![FanoutScenario { slow: 0, ..sc }, sc]
    } else {
        vec![sc]
    };
    // rounds[kind][variant][run]
    let mut rounds: Vec<Vec<Vec<FanoutSample>>> =
        vec![vec![Vec::new(); variants.len()]; kinds.len()];
    for run in 0..runs {
        for (k, kind) in kinds.iter().enumerate() {
            let mut order: Vec<usize> = (0..variants.len()).collect();
            if run % 2 == 1 {
                order.reverse();
            }
            for v in order {
                let s = run_once(&rt, kind, variants[v], secs, pin);
                eprintln!(
                    "  [{}] run {}/{runs} {:<28} {:>10} deliveries/s {:>10} publishes/s \
                     max unsent {} skipped {} background CPU {}",
                    variants[v].label(),
                    run + 1,
                    kind.name,
                    fmt_rate(s.deliveries_per_sec),
                    fmt_rate(s.publishes_per_sec),
                    s.done
                        .max_buffered
                        .map_or_else(|| "-".to_owned(), |b| b.to_string()),
                    match (s.done.delivered, s.done.skipped) {
                        (Some(d), Some(k)) => format!("{k} of {}", d + k),
                        _ => "-".to_owned(),
                    },
                    fmt_pct(s.background),
                );
                rounds[k][v].push(s);
            }
        }
    }
    drop(rt);
    // The reference of a round: the best peer (uncompressed), or the per-connection loop.
    let reference: Vec<usize> = (0..kinds.len())
        .filter(|&k| {
            if sc.compressed {
                kinds[k].compressed_reference
            } else {
                kinds[k].peer
            }
        })
        .collect();
    let best = |run: usize| {
        reference
            .iter()
            .map(|&k| rounds[k][0][run].deliveries_per_sec)
            .fold(f64::NAN, f64::max)
    };
    let mut ok = true;
    for (k, kind) in kinds.iter().enumerate() {
        for (v, variant) in variants.iter().enumerate() {
            let samples = &rounds[k][v];
            let per_run = |f: &dyn Fn(usize) -> f64| median((0..samples.len()).map(f).collect());
            let rate = per_run(&|r| samples[r].deliveries_per_sec);
            let publishes = per_run(&|r| samples[r].publishes_per_sec);
            let vs_best = if v == 0 && !reference.contains(&k) {
                per_run(&|r| samples[r].deliveries_per_sec / best(r))
            } else {
                f64::NAN
            };
            let vs_no_slow = if variant.slow > 0 {
                per_run(&|r| samples[r].deliveries_per_sec / rounds[k][0][r].deliveries_per_sec)
            } else {
                f64::NAN
            };
            let max_buffered = samples
                .iter()
                .filter_map(|s| s.done.max_buffered)
                .max()
                .map_or_else(
                    || "-".to_owned(),
                    |b| format!("{:.1} KiB", b as f64 / 1024.0),
                );
            let rss = samples.iter().map(|s| s.done.rss).max().unwrap_or(0);
            let background = samples
                .iter()
                .map(|s| s.background)
                .filter(|v| !v.is_nan())
                .fold(f64::NAN, f64::max);
            let consistent = samples.iter().all(|s| s.consistent);
            let all_connected = samples.iter().all(|s| s.connected == variant.subscribers);
            ok &= consistent && all_connected && rate > 0.0;
            let mut notes = String::new();
            if !consistent {
                notes.push_str(" (inconsistent frames)");
            }
            if !all_connected {
                notes.push_str(" (not every subscriber connected)");
            }
            println!(
                "| {} | {}{notes} | {} | {} | {} | {} | {max_buffered} | {:.1} MiB | {} |",
                variant.label(),
                kind.name,
                fmt_rate(rate),
                fmt_ratio(vs_best),
                fmt_rate(publishes),
                fmt_ratio(vs_no_slow),
                rss as f64 / (1 << 20) as f64,
                fmt_pct(background),
            );
        }
    }
    let _ = std::io::stdout().flush();
    ok
}

/// The CI smoke: every fan-out server delivers to 20 subscribers (frames byte-identical
/// across subscribers), with compression on the sonar servers, and sonar-topics with a slow
/// subscriber. No timing asserted.
pub fn smoke(list: Option<&str>, pin: bool) -> bool {
    let sc = FanoutScenario::parse("16:20").unwrap();
    let mut ok = run_fanout(&fanout_servers(list, false), sc, 1, 0.05, pin);
    let compressed = FanoutScenario {
        payload: 1024,
        compressed: true,
        ..sc
    };
    ok &= run_fanout(&fanout_servers(list, true), compressed, 1, 0.05, pin);
    let topics: Vec<_> = fanout_servers(list, false)
        .into_iter()
        .filter(|k| k.name == "sonar-topics")
        .collect();
    ok &= run_fanout(&topics, FanoutScenario { slow: 1, ..sc }, 1, 0.05, pin);
    ok
}

/// `--fanout PAYLOAD:SUBSCRIBERS[,..]` from the command line.
pub fn run_cli(
    scenarios: &str,
    list: Option<&str>,
    slow: usize,
    compressed: bool,
    runs: usize,
    secs: f64,
    pin: bool,
) {
    let kinds = fanout_servers(list, compressed);
    for text in scenarios.split(',') {
        let sc = FanoutScenario::parse(text).expect("--fanout PAYLOAD:SUBSCRIBERS");
        run_fanout(
            &kinds,
            FanoutScenario {
                slow,
                compressed,
                ..sc
            },
            runs,
            secs,
            pin,
        );
    }
}

/// The child side (`serve-fanout NAME PAYLOAD COMPRESSED`).
pub fn serve_child(args: &[String]) {
    fanout_servers::serve_fanout_child(args);
}
