//! `sonar`: a WebSocket echo server, a stdin/stdout client and ping(8) for WebSocket.
//!
//! The command's contract (flags, output lines, exit codes) is relied on by the conformance
//! runs and the benchmarks; see `sonar --help`.
#![warn(missing_docs)]
#![deny(unsafe_code)]

mod args;
mod client;
mod ping;
mod reuse_port;
mod rt;
mod serve;
mod signal;
mod tls;

use std::process::ExitCode;

use clap::Parser;

use crate::args::{Cli, Command};

/// A failure that ends the command with one line on stderr and exit code 1 (2 for usage).
#[derive(Debug)]
pub(crate) struct Failure {
    message: String,
    usage: bool,
}

impl Failure {
    /// A failure: exit code 1.
    pub(crate) fn new(message: impl Into<String>) -> Self {
        Failure {
            message: message.into(),
            usage: false,
        }
    }

    /// What failed, as printed.
    pub(crate) fn message(&self) -> &str {
        &self.message
    }

    /// A usage error found after parsing (an invalid URL): exit code 2.
    pub(crate) fn usage(message: impl Into<String>) -> Self {
        Failure {
            message: message.into(),
            usage: true,
        }
    }
}

fn init_logging() {
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        // The driver's own keepalive line has no peer address; ours does (one line each).
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info,sonar_async=warn"));
    tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
        .with_target(false)
        .init();
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    init_logging();
    let result = match cli.command {
        Command::Serve(args) => serve::run(args),
        Command::Client(args) => client::run(args),
        Command::Ping(args) => ping::run(args),
    };
    match result {
        Ok(code) => code,
        Err(failure) => {
            // One line, whatever the error text holds.
            let line = failure.message.replace(['\r', '\n'], " ");
            eprintln!("sonar: {line}");
            ExitCode::from(if failure.usage { 2 } else { 1 })
        }
    }
}
