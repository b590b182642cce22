//! End-to-end echo and fan-out benchmark: sonar (tokio, smol, async-std, the axum extractor, and the
//! `sonar serve` command) against tokio-tungstenite, fastwebsockets, tokio-websockets,
//! sockudo-ws, axum's own `extract::ws` and raw-TCP echoes on tokio, smol and async-std (the
//! ceilings), measured the way a user would measure them.
//!
//! - Every server runs in its own process (this executable run as `serve NAME`, or for
//!   `sonar-serve` the `sonar` executable built next to this one), on a current-thread runtime
//!   (smol and async-std on one thread too; `sonar serve` on its default runtime); where
//!   `taskset` exists the server runs on CPU 0 and the load generator on CPU 1.
//! - One load generator for all (a current-thread tokio runtime): each connection writes one
//!   pre-masked binary frame per write and counts echoes without copying them, so the client
//!   costs the same for every server.
//! - Every peer in its best documented echo shape (see `servers.rs`); all servers are built
//!   into this one binary, so with the same profile, and `sonar` is taken from the same
//!   profile's directory (`target/PROFILE/sonar`; `$SONAR_BIN` overrides it). Where it has not
//!   been built the `sonar-serve` row is skipped with a note on stderr. `cargo xtask bench`
//!   builds both with `--profile bench-lto` (fat LTO, one codegen unit).
//! - Rounds are interleaved (A B C .. A B C ..); a ratio is the median over rounds of the
//!   server's rate divided by the best peer's rate in the same round. `vs raw TCP, same
//!   runtime` is the same median with the raw-TCP echo of the row's runtime in place of the
//!   best peer (`raw-tcp`, `raw-tcp-smol`, `raw-tcp-async-std`; `-` when that row is not in the
//!   run). Each row also gives the largest share of the machine's CPU that other processes
//!   took during one of its rounds.
//!
//! Usage (normally through `cargo xtask bench`):
//! - `cargo bench -p sonar-benches --bench e2e -- --scenario 16:64:16 [--runs 5] [--secs 1]
//!   [--servers a,b]`: scenarios (payload bytes : connections : messages in flight per
//!   connection), printed as Markdown table rows on stdout.
//! - `--deflate` or `--deflate-no-context-takeover` with either of those: the load generator
//!   negotiates permessage-deflate and sends compressed JSON text (servers with compression
//!   only: sonar-tokio, sonar-axum, yawc).
//! - `cargo bench -p sonar-benches --bench e2e -- --mem 10000 [--after-one-message]`: idle
//!   resident memory per connection above the empty-server baseline.
//! - `cargo bench -p sonar-benches --bench e2e -- --fanout PAYLOAD:SUBSCRIBERS [--slow N]
//!   [--deflate-no-context-takeover] [--runs R] [--secs S] [--servers a,b] [--header]`: fan-out
//!   (issue 16): one publisher sends the same message to every subscriber as fast as its
//!   pattern allows, deliveries per second to the subscribers (`fanout.rs` for the load side,
//!   `fanout_servers.rs` for the servers: sonar's `Topics`, a per-connection `try_send` loop,
//!   tokio-tungstenite with `tokio::sync::broadcast`, a fastwebsockets write loop). `--slow N`
//!   adds N subscribers that never read, in rounds interleaved with runs without them.
//! - `cargo bench -p sonar-benches -- --test`: smoke run (every server echoes a few messages;
//!   every fan-out server delivers to 20 subscribers).
#![allow(
    missing_docs,
    unreachable_pub,
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic
)]

mod fanout;
mod fanout_servers;
mod load;
mod memory;
mod process;
mod report;
mod servers;

use load::{Compression, Scenario};
use servers::ServerKind;

/// The Markdown header of the rows `run_scenario` prints.
const TABLE_HEADER: &str = "| scenario | server | msgs/s | vs best peer | vs raw TCP, same runtime | p50 | \
                            p99 | p99 vs best peer | background CPU |\n| --- | --- | ---: | ---: | ---: \
                            | ---: | ---: | ---: | ---: |";

fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    if args.first().map(String::as_str) == Some("serve") {
        process::serve_child(args.get(1).map_or("", String::as_str));
        return;
    }
    if args.first().map(String::as_str) == Some("serve-fanout") {
        fanout::serve_child(&args[1..]);
        return;
    }
    let value = |flag: &str| {
        args.iter()
            .position(|a| a == flag)
            .and_then(|i| args.get(i + 1))
            .cloned()
    };
    let flag = |name: &str| args.iter().any(|a| a == name);
    let runs: usize = value("--runs").and_then(|v| v.parse().ok()).unwrap_or(5);
    let secs: f64 = value("--secs").and_then(|v| v.parse().ok()).unwrap_or(1.0);
    if let Some(scenarios) = value("--fanout") {
        assert!(
            !flag("--deflate"),
            "--fanout compresses only with --deflate-no-context-takeover"
        );
        if flag("--header") {
            println!("{}", fanout::FANOUT_HEADER);
        }
        let slow = value("--slow").map_or(0, |v| v.parse().expect("--slow N"));
        let compressed = flag("--deflate-no-context-takeover");
        let servers = value("--servers");
        fanout::run_cli(
            &scenarios,
            servers.as_deref(),
            slow,
            compressed,
            runs,
            secs,
            pin(),
        );
        return;
    }
    let servers: Vec<&'static ServerKind> = match value("--servers") {
        Some(list) => servers::SERVERS
            .iter()
            .filter(|k| list.split(',').any(|x| x == k.name))
            .collect(),
        None => servers::SERVERS.iter().collect(),
    };
    // A server that is another executable (`sonar serve`) runs only where it was built.
    let servers: Vec<&'static ServerKind> = servers
        .into_iter()
        .filter(|k| match k.launch {
            servers::Launch::InProcess(_) => true,
            servers::Launch::Command { program, env, .. } => {
                let found = process::command_path(program, env).is_some();
                if !found {
                    eprintln!(
                        "e2e: {}: no `{program}` next to this executable and ${env} unset: row \
                         skipped (build it with the same profile: `cargo build --profile bench -p \
                         sonar-cli`, or `--profile bench-lto` for `cargo bench --profile \
                         bench-lto`)",
                        k.name
                    );
                }
                found
            }
        })
        .collect();
    let pin = pin();
    let compression = if flag("--deflate") {
        Compression::Deflate {
            context_takeover: true,
        }
    } else if flag("--deflate-no-context-takeover") {
        Compression::Deflate {
            context_takeover: false,
        }
    } else {
        Compression::Off
    };
    if args.iter().any(|a| a == "--header") {
        println!("{TABLE_HEADER}");
    }
    if args.iter().any(|a| a == "--test") {
        // Smoke: every server echoes small and large frames correctly (no timing asserted).
        let mut ok = true;
        for sc in ["16:1:1", "65536:2:4"] {
            let sc = Scenario::parse(sc).unwrap();
            ok &= report::run_scenario(&servers, sc, 1, 0.05, pin);
        }
        // And with compression, on the servers that have it.
        let deflating: Vec<_> = servers.iter().copied().filter(|k| k.deflate).collect();
        for sc in ["1024:1:1", "65536:2:4"] {
            let mut sc = Scenario::parse(sc).unwrap();
            sc.compression = Compression::Deflate {
                context_takeover: true,
            };
            ok &= report::run_scenario(&deflating, sc, 1, 0.05, pin);
        }
        // Fan-out: every fan-out server delivers (see `fanout.rs`).
        let fanned = fanout::smoke(value("--servers").as_deref(), pin);
        assert!(ok, "a server failed to echo");
        assert!(fanned, "a fan-out server failed to deliver");
        return;
    }
    if let Some(conns) = value("--mem") {
        let conns = conns.parse().expect("--mem COUNT");
        memory::run_memory(
            &servers,
            conns,
            compression,
            flag("--after-one-message"),
            pin,
        );
        return;
    }
    let scenarios: Vec<Scenario> = value("--scenario")
        .unwrap_or_else(|| "16:64:1".to_owned())
        .split(',')
        .map(|s| Scenario::parse(s).expect("--scenario PAYLOAD:CONNS:INFLIGHT"))
        .map(|sc| Scenario { compression, ..sc })
        .collect();
    for sc in scenarios {
        report::run_scenario(&servers, sc, runs, secs, pin);
    }
}

/// Pins the load generator to its CPU (server children go to the other); false if it cannot.
fn pin() -> bool {
    let pin = process::can_pin() && process::pin_load_generator();
    if !pin {
        eprintln!("e2e: taskset or a second CPU is missing: server and load generator unpinned");
    }
    pin
}
