//! Statistics and the Markdown rows: medians over interleaved rounds, ratios to the best peer
//! of each round, and to the raw-TCP echo on the row's own runtime in the same round
//! ([`ServerKind::ceiling`]; `-` when that echo is not among the servers run).

use std::io::Write as _;

use crate::load::{self, Sample, Scenario};
use crate::process::{CpuMark, ServerProcess};
use crate::servers::{ServerKind, current_thread_runtime};

pub fn median(mut values: Vec<f64>) -> f64 {
    values.retain(|v| !v.is_nan());
    if values.is_empty() {
        return f64::NAN;
    }
    values.sort_by(f64::total_cmp);
    let mid = values.len() / 2;
    if values.len() % 2 == 1 {
        values[mid]
    } else {
        (values[mid - 1] + values[mid]) / 2.0
    }
}

pub fn fmt_rate(v: f64) -> String {
    if v.is_nan() {
        "-".into()
    } else if v >= 1e6 {
        format!("{:.2} M", v / 1e6)
    } else if v >= 1e3 {
        format!("{:.1} k", v / 1e3)
    } else {
        format!("{v:.0}")
    }
}

fn fmt_us(v: f64) -> String {
    if v.is_nan() {
        "-".into()
    } else if v >= 1000.0 {
        format!("{:.2} ms", v / 1000.0)
    } else {
        format!("{v:.0} µs")
    }
}

/// One round of one server: its sample and the machine's background CPU share during it.
#[derive(Clone, Copy)]
struct Round {
    sample: Sample,
    background: f64,
}

/// Runs one scenario, interleaved over `servers` (each in its own process), and prints one
/// Markdown row per server. False if a server echoed wrongly or not at all.
pub fn run_scenario(
    servers: &[&'static ServerKind],
    sc: Scenario,
    runs: usize,
    secs: f64,
    pin: bool,
) -> bool {
    let running: Vec<ServerProcess> = servers
        .iter()
        .map(|k| ServerProcess::start(k, pin))
        .collect();
    let rt = current_thread_runtime();
    // rounds[server][run]
    let mut rounds: Vec<Vec<Round>> = vec![Vec::new(); running.len()];
    for run in 0..runs {
        for (i, server) in running.iter().enumerate() {
            let mark = CpuMark::now(server);
            let sample = rt.block_on(load::run_once(server.addr, server.kind.websocket, sc, secs));
            let background = mark.background_since(server);
            eprintln!(
                "  [{}] run {}/{runs} {:<18} {:>10} msg/s p50 {} p99 {} background CPU {}",
                sc.label(),
                run + 1,
                server.kind.name,
                fmt_rate(sample.msgs_per_sec),
                fmt_us(sample.p50_us),
                fmt_us(sample.p99_us),
                fmt_pct(background),
            );
            rounds[i].push(Round { sample, background });
        }
    }
    drop(rt);
    let kinds: Vec<&ServerKind> = running.iter().map(|s| s.kind).collect();
    for server in running {
        server.stop();
    }
    // The reference of each round: the best peer in that round (highest rate, lowest p99).
    let peers: Vec<usize> = (0..kinds.len()).filter(|&i| kinds[i].peer).collect();
    let best_of = |run: usize, pick: fn(&Sample) -> f64, better: fn(f64, f64) -> f64| {
        peers
            .iter()
            .map(|&i| pick(&rounds[i][run].sample))
            .filter(|v| !v.is_nan())
            .fold(f64::NAN, better)
    };
    let mut ok = true;
    for (i, kind) in kinds.iter().enumerate() {
        let per_run = |f: &dyn Fn(usize) -> f64| median((0..runs).map(f).collect());
        let rate = per_run(&|r| rounds[i][r].sample.msgs_per_sec);
        let p50 = per_run(&|r| rounds[i][r].sample.p50_us);
        let p99 = per_run(&|r| rounds[i][r].sample.p99_us);
        let ratio = per_run(&|r| {
            rounds[i][r].sample.msgs_per_sec / best_of(r, |s| s.msgs_per_sec, f64::max)
        });
        let p99_ratio =
            per_run(&|r| rounds[i][r].sample.p99_us / best_of(r, |s| s.p99_us, f64::min));
        let ceiling = kind
            .ceiling
            .and_then(|name| kinds.iter().position(|k| k.name == name));
        let ceiling_ratio = ceiling.map_or(f64::NAN, |c| {
            per_run(&|r| rounds[i][r].sample.msgs_per_sec / rounds[c][r].sample.msgs_per_sec)
        });
        let background = rounds[i]
            .iter()
            .map(|r| r.background)
            .filter(|v| !v.is_nan())
            .fold(f64::NAN, f64::max);
        let bad_frames: u64 = rounds[i].iter().map(|r| r.sample.bad_frames).sum();
        let fragments: u64 = rounds[i].iter().map(|r| r.sample.fragments).sum();
        if bad_frames > 0 || rate.is_nan() || rate <= 0.0 {
            ok = false;
        }
        let mut notes = if bad_frames > 0 {
            format!(" ({bad_frames} wrong-length echoes)")
        } else {
            String::new()
        };
        if fragments > 0 {
            notes.push_str(" (fragments its echoes)");
        }
        println!(
            "| {} | {}{notes} | {} | {} | {} | {} | {} | {} | {} |",
            sc.label(),
            kind.name,
            fmt_rate(rate),
            fmt_ratio(ratio),
            fmt_ratio(ceiling_ratio),
            fmt_us(p50),
            fmt_us(p99),
            fmt_ratio(p99_ratio),
            fmt_pct(background),
        );
    }
    let _ = std::io::stdout().flush();
    ok
}

pub fn fmt_ratio(v: f64) -> String {
    if v.is_nan() {
        "-".into()
    } else {
        format!("{v:.2}x")
    }
}

pub fn fmt_pct(v: f64) -> String {
    if v.is_nan() {
        "-".into()
    } else {
        format!("{:.0} %", v * 100.0)
    }
}
