//! `cargo xtask bench [--quick]`: the criterion benchmarks and the side-by-side end-to-end
//! runs against other Rust WebSocket crates, written to `target/bench-report.md`.
//!
//! Full mode: every micro bench with criterion's defaults; 20 end-to-end scenarios (payload 16 B,
//! 1 KiB, 64 KiB, 1 MiB x 1, 64, 1000 connections x closed loop / pipelined: 16 messages in
//! flight up to 1 KiB, 4 from 64 KiB; less the four whose in-flight bytes pass 64 MiB), 5
//! interleaved rounds of 1 s; the axum table (sonar's
//! extractor against axum's `extract::ws`, 8 scenarios); the compressed table (sonar against
//! yawc with permessage-deflate, 7 scenarios); idle memory with 10,000 connections, and with
//! compression after one message.
//! Quick mode: criterion with 10 samples and short warm-up/measurement; 7 scenarios and the
//! axum table, 3 rounds of 0.5 s; idle memory with 10,000 connections.
//!
//! Every server runs in its own process, pinned apart from the load generator where `taskset`
//! exists (see `benches/benches/e2e/main.rs`). Before the runs, the e2e harness (which holds
//! every server but one) and the `sonar` executable (the `sonar-serve` row) are built with
//! `--profile bench-lto` (root `Cargo.toml`: fat LTO, one codegen unit, no debug info), so
//! every compared server has the same profile; the harness finds `sonar` next to itself in
//! `target/bench-lto/`. The micro benches stay on the `bench` profile, and so does the CI
//! smoke run (`cargo bench -p sonar-benches -- --test`), which needs no LTO.
//!
//! The main table has every peer (tokio-tungstenite, fastwebsockets, tokio-websockets,
//! sockudo-ws, and yawc, uncompressed there since the load generator offers no extension),
//! sonar on each runtime, `sonar serve`, and the raw-TCP echo of each runtime
//! (`raw-tcp`, `raw-tcp-smol`, `raw-tcp-async-std`): `vs raw TCP, same runtime` compares each
//! sonar row with the one of its runtime.

use std::fmt::Write as _;
use std::process::Stdio;
use std::time::Instant;

use crate::{cargo, root};

/// Payload : connections : messages in flight per connection.
const FULL_SCENARIOS: &[&str] = &[
    "16:1:1",
    "16:1:16",
    "16:64:1",
    "16:64:16",
    "16:1000:1",
    "16:1000:16",
    "1024:1:1",
    "1024:1:16",
    "1024:64:1",
    "1024:64:16",
    "1024:1000:1",
    "1024:1000:16",
    "65536:1:1",
    "65536:1:4",
    "65536:64:1",
    "65536:64:4",
    "65536:1000:1",
    "1048576:1:1",
    "1048576:1:4",
    "1048576:64:1",
];

const QUICK_SCENARIOS: &[&str] = &[
    "16:1:1",
    "16:64:1",
    "16:64:16",
    "16:1000:1",
    "1024:64:16",
    "65536:1:1",
    "1048576:1:1",
];

/// The servers of the main table (the axum pair has its own table).
const MAIN_SERVERS: &str = "sonar-tokio,sonar-serve,sonar-smol,sonar-async-std,tokio-tungstenite,\
                            fastwebsockets,tokio-websockets,sockudo-ws,yawc,raw-tcp,raw-tcp-smol,\
                            raw-tcp-async-std";

/// The profile of the e2e harness and of `sonar` (root `Cargo.toml`).
const PROFILE: &str = "bench-lto";

/// sonar's axum extractor and axum's own `extract::ws`.
const AXUM_SERVERS: &str = "sonar-axum,axum-ws";

/// The axum table: small and large messages, one and many connections, closed and pipelined.
const AXUM_SCENARIOS: &[&str] = &[
    "16:1:1",
    "16:1:16",
    "16:64:1",
    "16:64:16",
    "65536:1:1",
    "65536:1:4",
    "65536:64:1",
    "65536:64:4",
];

/// The compressed echo: sonar against yawc, both negotiating permessage-deflate.
const DEFLATE_SERVERS: &str = "sonar-tokio,yawc";

/// Compressible JSON text, small to large, one and many connections.
const DEFLATE_SCENARIOS: &[&str] = &[
    "16:1:1",
    "16:64:1",
    "1024:1:1",
    "1024:64:1",
    "1024:64:16",
    "65536:1:1",
    "65536:64:1",
];

const MICRO_BENCHES: &[&str] = &["mask", "frame", "utf8", "handshake", "deflate"];

/// Memory is measured with this many idle connections (the file-descriptor limit must allow it:
/// the server child and the load generator each hold one descriptor per connection).
const MEMORY_CONNECTIONS: &str = "10000";

pub(crate) fn bench(args: &[String]) -> Result<(), String> {
    let quick = args.iter().any(|a| a == "--quick");
    let started = Instant::now();
    let mut report = String::new();
    let mode = if quick { "quick" } else { "full" };
    let _ = writeln!(report, "# sonar benchmark report ({mode} mode)\n");
    let _ = writeln!(report, "Machine: {}\n", machine());

    // Every compared server with the same profile: the harness (all servers but one) and the
    // `sonar` executable, which the harness finds next to itself in `target/bench-lto/`.
    let build = Instant::now();
    eprintln!("xtask bench: building the e2e harness and `sonar` with --profile {PROFILE}");
    let mut c = cargo();
    c.args(["build", "--profile", PROFILE, "-p", "sonar-cli"]);
    crate::run(c)?;
    let mut c = cargo();
    c.args([
        "bench",
        "--no-run",
        "--profile",
        PROFILE,
        "-p",
        "sonar-benches",
        "--bench",
        "e2e",
    ]);
    crate::run(c)?;
    let _ = writeln!(
        report,
        "Servers built with `--profile {PROFILE}` (fat LTO, codegen-units 1) in {:.0} s.\n",
        build.elapsed().as_secs_f64()
    );

    // End to end first: it is what the report is for.
    let (scenarios, runs, secs) = if quick {
        (QUICK_SCENARIOS, "3", "0.5")
    } else {
        (FULL_SCENARIOS, "5", "1")
    };
    let _ = writeln!(
        report,
        "## End to end (echo, {runs} interleaved rounds of {secs} s per scenario)\n\n\
         Every server in its own process (pinned to CPU 0 where `taskset` exists, the load \
         generator on CPU 1), one frame per client write. `vs best peer`: median over rounds \
         of the server's rate divided by the best of tokio-tungstenite, fastwebsockets, \
         tokio-websockets and sockudo-ws in the same round. `vs raw TCP, same runtime`: the \
         same with the raw-TCP echo on the row's runtime (`raw-tcp` for tokio and `sonar \
         serve`, `raw-tcp-smol`, `raw-tcp-async-std`). `background CPU`: the largest share of \
         the machine that other processes took during one of the server's rounds.\n"
    );
    report.push_str(&table(
        MAIN_SERVERS,
        scenarios,
        runs,
        secs,
        &[],
        "scenario",
    )?);

    let _ = writeln!(
        report,
        "\n## axum: sonar's extractor against axum's own `extract::ws`\n\n\
         Both behind `axum::serve` (HTTP/1.1, TCP_NODELAY set through `tap_io`); axum's echo \
         feeds and flushes as `StreamExt::forward` does. `vs best peer` is to axum's \
         `extract::ws`.\n"
    );
    report.push_str(&table(
        AXUM_SERVERS,
        AXUM_SCENARIOS,
        runs,
        secs,
        &[],
        "axum scenario",
    )?);

    let _ = writeln!(
        report,
        "\n## Compressed: sonar against yawc (permessage-deflate)\n\n\
         The load generator offers `permessage-deflate; client_max_window_bits` and sends JSON \
         text compressed once up front; both servers answer with their default compression \
         (yawc: low-latency level, UTF-8 validation on). `vs best peer` is to yawc.\n"
    );
    report.push_str(&table(
        DEFLATE_SERVERS,
        DEFLATE_SCENARIOS,
        runs,
        secs,
        &["--deflate"],
        "deflate scenario",
    )?);

    let _ = writeln!(
        report,
        "\n## Idle memory ({MEMORY_CONNECTIONS} connections, default config, keepalive as \
         configured by default)\n\nVmRSS of the server process (a child of the harness) above \
         its empty-server baseline.\n"
    );
    let _ = writeln!(
        report,
        "| server | connections | empty | loaded | per connection |\n\
         | --- | ---: | ---: | ---: | ---: |"
    );
    eprintln!("xtask bench: idle memory");
    report.push_str(&e2e(&[
        "--servers",
        MAIN_SERVERS,
        "--mem",
        MEMORY_CONNECTIONS,
    ])?);

    let _ = writeln!(
        report,
        "\n## Memory with compression ({MEMORY_CONNECTIONS} connections, each after one \
         echoed 1 KiB message)\n\nThe same measurement: first without compression, then with \
         permessage-deflate and context takeover, then without context takeover.\n"
    );
    let _ = writeln!(
        report,
        "| server | connections | empty | loaded | per connection |\n\
         | --- | ---: | ---: | ---: | ---: |"
    );
    for mode in ["", "--deflate", "--deflate-no-context-takeover"] {
        eprintln!("xtask bench: memory after one message {mode}");
        let mut args = vec!["--servers", DEFLATE_SERVERS, "--mem", MEMORY_CONNECTIONS];
        args.push("--after-one-message");
        if !mode.is_empty() {
            args.push(mode);
        }
        let rows = e2e(&args)?;
        let label = if mode.is_empty() {
            "off"
        } else {
            mode.trim_start_matches("--")
        };
        for row in rows.lines() {
            let _ = writeln!(
                report,
                "{}",
                row.replacen("| ", &format!("| ({label}) "), 1)
            );
        }
    }

    eprintln!("xtask bench: micro benches");
    let micro = micro(quick)?;
    let _ = writeln!(
        report,
        "\n## Micro benches (criterion)\n\n```text\n{micro}```"
    );
    let _ = writeln!(
        report,
        "\nTotal time: {:.0} s.",
        started.elapsed().as_secs_f64()
    );

    let path = root().join("target").join("bench-report.md");
    if let Some(dir) = path.parent() {
        std::fs::create_dir_all(dir).map_err(|e| format!("create {}: {e}", dir.display()))?;
    }
    std::fs::write(&path, &report).map_err(|e| format!("write {}: {e}", path.display()))?;
    println!("{report}");
    eprintln!("xtask bench: report written to {}", path.display());
    Ok(())
}

/// One table: every scenario over `servers`, `runs` rounds of `secs`, with `extra` flags; the
/// header row comes with the first scenario.
fn table(
    servers: &str,
    scenarios: &[&str],
    runs: &str,
    secs: &str,
    extra: &[&str],
    label: &str,
) -> Result<String, String> {
    let mut rows = String::new();
    for (i, scenario) in scenarios.iter().enumerate() {
        eprintln!("xtask bench: {label} {scenario}");
        let mut args = vec!["--servers", servers, "--scenario", scenario];
        args.extend(["--runs", runs, "--secs", secs]);
        args.extend(extra);
        if i == 0 {
            args.push("--header");
        }
        rows.push_str(&e2e(&args)?);
    }
    Ok(rows)
}

/// Runs the end-to-end bench binary with `args`; returns its Markdown rows (stdout).
fn e2e(args: &[&str]) -> Result<String, String> {
    let mut c = cargo();
    c.args(["bench", "-q", "--profile", PROFILE, "-p", "sonar-benches"])
        .args(["--bench", "e2e", "--"])
        .args(args)
        .stderr(Stdio::inherit());
    let out = c
        .output()
        .map_err(|e| format!("could not start the e2e bench: {e}"))?;
    if !out.status.success() {
        return Err(format!("e2e bench {args:?} failed: {}", out.status));
    }
    let text = String::from_utf8_lossy(&out.stdout);
    Ok(text
        .lines()
        .filter(|l| l.starts_with('|'))
        .fold(String::new(), |mut acc, l| {
            acc.push_str(l);
            acc.push('\n');
            acc
        }))
}

/// Runs the criterion benches; returns their `time:`/`thrpt:` lines with the bench names.
fn micro(quick: bool) -> Result<String, String> {
    let mut c = cargo();
    c.args(["bench", "-q", "-p", "sonar-benches"]);
    for b in MICRO_BENCHES {
        c.args(["--bench", b]);
    }
    c.arg("--");
    if quick {
        c.args([
            "--warm-up-time",
            "0.2",
            "--measurement-time",
            "0.4",
            "--sample-size",
            "10",
        ]);
    }
    c.stderr(Stdio::inherit());
    let out = c
        .output()
        .map_err(|e| format!("could not start the micro benches: {e}"))?;
    if !out.status.success() {
        return Err(format!("micro benches failed: {}", out.status));
    }
    let text = String::from_utf8_lossy(&out.stdout);
    let mut kept = String::new();
    let mut previous = "";
    for line in text.lines() {
        if line.contains("time:") {
            if line.starts_with(char::is_whitespace) && !previous.trim().is_empty() {
                kept.push_str(previous.trim_end());
                kept.push('\n');
            }
            kept.push_str(line.trim_end());
            kept.push('\n');
        } else if line.contains("thrpt:") {
            kept.push_str(line.trim_end());
            kept.push('\n');
        }
        previous = line;
    }
    Ok(kept)
}

/// `nproc` and the CPU model, for the report header.
fn machine() -> String {
    let cpus = std::thread::available_parallelism().map_or(0, usize::from);
    let model = std::fs::read_to_string("/proc/cpuinfo")
        .ok()
        .and_then(|info| {
            info.lines()
                .find_map(|l| l.strip_prefix("model name"))
                .map(|m| m.trim_start_matches([' ', '\t', ':']).to_owned())
        })
        .unwrap_or_else(|| "unknown CPU".into());
    format!("{cpus} CPUs, {model}")
}
