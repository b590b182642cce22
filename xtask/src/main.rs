//! `cargo xtask`: the project's automation, in Rust so that it runs wherever cargo does.
//!
//! - `cargo xtask ci`: every check CI runs, one summary line per step.
//! - `cargo xtask loom [--deep]`: the loom models of `sonar-keepalive` and `sonar-async`.
//! - `cargo xtask fuzz [TARGET...] [--seconds N]`: bounded cargo-fuzz runs.

mod bench;
mod conformance;

use std::env;
use std::path::{Path, PathBuf};
use std::process::{Command, ExitCode};
use std::time::{Duration, Instant};

/// The leaf crates that must build without `std`.
const NO_STD_CRATES: &[&str] = &["sonar-core", "sonar-handshake", "sonar-keepalive"];

/// Fuzz targets under `fuzz/fuzz_targets`, run by `cargo xtask fuzz` when none is named.
const FUZZ_TARGETS: &[&str] = &[
    "core_server",
    "core_client",
    "core_deflate",
    "handshake_request",
    "handshake_response",
];

fn main() -> ExitCode {
    let args: Vec<String> = env::args().skip(1).collect();
    let (cmd, rest) = match args.split_first() {
        Some((c, r)) => (c.as_str(), r),
        None => ("help", &[][..]),
    };
    let result = match cmd {
        "ci" => ci(rest),
        "loom" => loom(rest.iter().any(|a| a == "--deep")),
        "fuzz" => fuzz(rest),
        "conformance" => conformance::conformance(rest),
        "bench" => bench::bench(rest),
        "help" | "--help" | "-h" => {
            println!("{USAGE}");
            Ok(())
        }
        other => Err(format!("unknown command `{other}`\n{USAGE}")),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("xtask: {e}");
            ExitCode::FAILURE
        }
    }
}

const USAGE: &str = "usage: cargo xtask <command>
  ci                      fmt, clippy, tests (debug and release), no_std builds, loom,
                          Autobahn conformance, docs, bench smoke test
  loom [--deep]           loom models of sonar-keepalive and sonar-async (LOOM_MAX_PREEMPTIONS=2, 3 with --deep)
  conformance [--bless] [--runtime=R] [--only=autobahn|peers|nginx]
                          Autobahn cases (kosoku) against `sonar serve` / `sonar client --echo`
                          on every runtime, gated on conformance/expected-*.json; real peers
                          (Python websockets, Node ws); nginx as a reverse proxy in front of
                          two `sonar serve` (keepalive through proxy_read_timeout, failover)
  bench [--quick]         criterion benches and side-by-side runs against other crates
                          (e2e harness and `sonar` built with --profile bench-lto),
                          report in target/bench-report.md
  fuzz [TARGET..] [--seconds N]
                          run cargo-fuzz targets for N seconds each (default 600)";

pub(crate) fn root() -> PathBuf {
    // xtask/ sits one level below the workspace root.
    let manifest = env::var_os("CARGO_MANIFEST_DIR").map(PathBuf::from);
    manifest
        .and_then(|p| p.parent().map(Path::to_path_buf))
        .unwrap_or_else(|| PathBuf::from("."))
}

/// Cargo's target directory: `CARGO_TARGET_DIR` if set, else `target/` in the workspace.
pub(crate) fn target_dir() -> PathBuf {
    match env::var_os("CARGO_TARGET_DIR") {
        Some(dir) if !dir.is_empty() => {
            let dir = PathBuf::from(dir);
            if dir.is_absolute() {
                dir
            } else {
                root().join(dir)
            }
        }
        _ => root().join("target"),
    }
}

pub(crate) fn cargo() -> Command {
    let mut c = Command::new(env::var_os("CARGO").unwrap_or_else(|| "cargo".into()));
    c.current_dir(root());
    c
}

pub(crate) fn run(mut cmd: Command) -> Result<(), String> {
    let shown = format!("{cmd:?}");
    let status = cmd
        .status()
        .map_err(|e| format!("could not start {shown}: {e}"))?;
    if status.success() {
        Ok(())
    } else {
        Err(format!("{shown} failed: {status}"))
    }
}

/// One CI step: a name and the work it does.
type StepFn = Box<dyn Fn() -> Result<(), String>>;

struct Step {
    name: String,
    took: Duration,
    ok: bool,
}

fn ci(args: &[String]) -> Result<(), String> {
    let keep_going = !args.iter().any(|a| a == "--fail-fast");
    let mut steps: Vec<(String, StepFn)> = Vec::new();

    steps.push((
        "fmt".into(),
        Box::new(|| {
            let mut c = cargo();
            c.args(["fmt", "--all", "--check"]);
            run(c)
        }),
    ));
    steps.push((
        "clippy".into(),
        Box::new(|| {
            let mut c = cargo();
            c.args([
                "clippy",
                "--workspace",
                "--all-targets",
                "--all-features",
                "--",
                "-D",
                "warnings",
            ]);
            run(c)
        }),
    ));
    steps.push((
        "test".into(),
        Box::new(|| {
            let mut c = cargo();
            c.args(["test", "--workspace", "--all-features"]);
            run(c)
        }),
    ));
    steps.push((
        "test (release)".into(),
        Box::new(|| {
            // Users run optimized builds: the whole suite again with optimizations, which once
            // caught a bug that only optimized builds had.
            let mut c = cargo();
            c.args([
                "test",
                "--release",
                "--workspace",
                "--all-features",
                "--exclude",
                "xtask",
            ]);
            run(c)
        }),
    ));
    for krate in NO_STD_CRATES {
        steps.push((
            format!("no_std build {krate}"),
            Box::new(move || {
                let mut c = cargo();
                c.args(["build", "-p", krate, "--no-default-features"]);
                run(c)
            }),
        ));
    }
    steps.push(("loom".into(), Box::new(|| loom(false))));
    steps.push((
        "conformance (Autobahn)".into(),
        Box::new(|| conformance::conformance(&[])),
    ));
    steps.push((
        "doc".into(),
        Box::new(|| {
            let mut c = cargo();
            c.args(["doc", "--workspace", "--no-deps", "--all-features"]);
            c.env("RUSTDOCFLAGS", "-D warnings");
            run(c)
        }),
    ));
    steps.push((
        "bench smoke".into(),
        Box::new(|| {
            // Runs every benchmark once so that none of them rots; timings are not read. On
            // the `bench` profile (no LTO); the `sonar-serve` row runs the `sonar` built next
            // to the harness (`target/release/`, the `bench` profile's directory).
            let mut c = cargo();
            c.args(["build", "--release", "--quiet", "-p", "sonar-cli"]);
            run(c)?;
            let mut c = cargo();
            c.args(["bench", "-p", "sonar-benches", "--", "--test"]);
            run(c)
        }),
    ));

    let mut done: Vec<Step> = Vec::new();
    for (name, f) in &steps {
        eprintln!("\n==> xtask ci: {name}");
        let start = Instant::now();
        let ok = match f() {
            Ok(()) => true,
            Err(e) => {
                eprintln!("xtask ci: step `{name}` failed: {e}");
                false
            }
        };
        done.push(Step {
            name: name.clone(),
            took: start.elapsed(),
            ok,
        });
        if !ok && !keep_going {
            break;
        }
    }

    println!("\nxtask ci summary:");
    for s in &done {
        let verdict = if s.ok { "ok" } else { "FAILED" };
        println!(
            "  {:<32} {:>6} {:>7.1}s",
            s.name,
            verdict,
            s.took.as_secs_f64()
        );
    }
    let failed: Vec<&str> = done
        .iter()
        .filter(|s| !s.ok)
        .map(|s| s.name.as_str())
        .collect();
    if failed.is_empty() {
        println!("xtask ci: all {} steps passed", done.len());
        Ok(())
    } else {
        Err(format!(
            "{} step(s) failed: {}",
            failed.len(),
            failed.join(", ")
        ))
    }
}

/// The loom models: the ping registry (sonar-keepalive) and the connection's wake-up hub
/// (sonar-async).
fn loom(deep: bool) -> Result<(), String> {
    for krate in ["sonar-keepalive", "sonar-async"] {
        let mut c = cargo();
        c.args(["test", "--release", "-p", krate, "--lib"]);
        c.arg("--target-dir")
            .arg(root().join("target").join("loom"));
        c.env("RUSTFLAGS", "--cfg loom");
        c.env("LOOM_MAX_PREEMPTIONS", if deep { "3" } else { "2" });
        run(c)?;
    }
    Ok(())
}

fn fuzz(args: &[String]) -> Result<(), String> {
    let mut seconds: u64 = 600;
    let mut targets: Vec<String> = Vec::new();
    let mut it = args.iter();
    while let Some(a) = it.next() {
        if a == "--seconds" {
            let v = it.next().ok_or("--seconds needs a value")?;
            seconds = v
                .parse()
                .map_err(|_| format!("--seconds: not a number: {v}"))?;
        } else {
            targets.push(a.clone());
        }
    }
    if targets.is_empty() {
        targets = FUZZ_TARGETS.iter().map(|s| s.to_string()).collect();
    }
    ensure_cargo_fuzz()?;
    for t in &targets {
        eprintln!("==> fuzzing {t} for {seconds}s");
        let mut c = cargo();
        c.current_dir(root().join("fuzz"));
        // The machine has one stable toolchain; cargo-fuzz needs a few nightly flags.
        c.env("RUSTC_BOOTSTRAP", "1");
        c.args(["fuzz", "run", "--sanitizer", "none", t, "--"]);
        c.arg(format!("-max_total_time={seconds}"));
        c.arg("-max_len=65536");
        run(c)?;
    }
    Ok(())
}

fn ensure_cargo_fuzz() -> Result<(), String> {
    let found = cargo()
        .args(["fuzz", "--version"])
        .output()
        .map(|o| o.status.success())
        .unwrap_or(false);
    if found {
        return Ok(());
    }
    eprintln!("==> installing cargo-fuzz");
    let mut c = cargo();
    c.args(["install", "cargo-fuzz", "--locked"]);
    run(c)
}
