//! `sonar ping`: ping(8) for WebSocket.
//!
//! This deliberately bypasses the high-level connection (which would fail on a broken pong):
//! [`open`] connects and runs the handshake through `sonar_async::client_raw`, then writes
//! Ping frames by hand and reads the server's frames leniently ([`frames::FrameReader`]),
//! with bounded buffers and a deadline on every wait. What to send and what to say is decided
//! by the sans-I/O [`session::Session`]; every line printed is a [`report::Line`]. This
//! module only drives the three.

mod frames;
mod open;
mod report;
mod session;

use std::pin::pin;
use std::process::ExitCode;
use std::time::Duration;

use futures_util::FutureExt;
use rand::SeedableRng;
use rand::rngs::StdRng;
use sonar_core::OpCode;
use sonar_handshake::ClientRequest;
use tokio::time::Instant;

use self::open::{Link, Read};
use self::report::{Line, Report, Target};
use self::session::{Action, Input, Plan, Session};
use crate::Failure;
use crate::args::PingArgs;

/// The least time the connection and handshake may take, whatever `-W` says.
const MIN_OPEN_LIMIT: Duration = Duration::from_secs(5);

/// Runs `sonar ping`.
pub(crate) fn run(args: PingArgs) -> Result<ExitCode, Failure> {
    let request = ClientRequest::from_url(&args.url)
        .map_err(|e| Failure::usage(format!("invalid url `{}`: {e}", args.url)))?;
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(|e| Failure::new(format!("cannot start the tokio runtime: {e}")))?;
    runtime.block_on(ping(args, request))
}

async fn ping(args: PingArgs, request: ClientRequest) -> Result<ExitCode, Failure> {
    let open_limit = args.timeout.max(MIN_OPEN_LIMIT);
    let mut link = open::open(&request, args.insecure, open_limit, args.timeout)
        .await
        .map_err(|e| Failure::new(e.to_string()))?;
    let mut report = Report::stdout(Target {
        url: args.url.clone(),
        host: request.host().to_owned(),
        port: request.port(),
    });
    report.line(&Line::Start { size: args.size });
    let clock = Clock(Instant::now());
    let plan = Plan {
        count: args.count,
        interval: args.interval,
        timeout: args.timeout,
        size: args.size,
    };
    let mut session = Session::new(plan, StdRng::from_os_rng(), clock.now());
    drive(&mut session, &mut link, &mut report, clock).await;
    let summary = session.summary();
    for line in summary.lines() {
        report.line(&line);
    }
    Ok(if summary.perfect() {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    })
}

/// The session's time: since the start of the pinging.
#[derive(Clone, Copy)]
struct Clock(Instant);

impl Clock {
    fn now(self) -> Duration {
        self.0.elapsed()
    }
}

/// Acts for the session until it is done: what it asks for, then a wait for the server, a
/// deadline or Ctrl-C, and again.
async fn drive<W: std::io::Write>(
    session: &mut Session,
    link: &mut Link,
    report: &mut Report<W>,
    clock: Clock,
) {
    // Fused: Ctrl-C is seen once; polling it again stays pending.
    let mut interrupt = pin!(tokio::signal::ctrl_c().fuse());
    loop {
        act(session, link, report, clock).await;
        if session.is_done() {
            return;
        }
        let deadline = session.next_deadline().map(|d| clock.0 + d);
        let sleep = async {
            match deadline {
                Some(at) => tokio::time::sleep_until(at).await,
                None => std::future::pending().await,
            }
        };
        // Ctrl-C first, even against a flood; then bytes already there, before a deadline
        // that passed meanwhile (deadlines are checked again by `act` after every read).
        let read = tokio::select! {
            biased;
            _ = interrupt.as_mut() => {
                session.handle(clock.now(), Input::Interrupted);
                continue;
            }
            read = link.read() => read,
            () = sleep => continue,
        };
        match read {
            // One frame at a time, acting on each before the next, as the server sent them.
            Read::Items(items) => {
                for item in items {
                    session.handle(clock.now(), Input::Item(item));
                    act_on_frame(session, link, report, clock).await;
                }
            }
            Read::Eof => session.handle(clock.now(), Input::Eof),
            Read::Failed(e) => session.handle(clock.now(), Input::ReadFailed(e)),
        }
    }
}

/// Does everything the session asks for now, deadlines included.
async fn act<W: std::io::Write>(
    session: &mut Session,
    link: &mut Link,
    report: &mut Report<W>,
    clock: Clock,
) {
    while let Some(action) = session.poll(clock.now()) {
        perform(action, session, link, report, clock).await;
    }
}

/// Does what the handling of one frame asked for (no deadline work: the rest of the same
/// read comes first).
async fn act_on_frame<W: std::io::Write>(
    session: &mut Session,
    link: &mut Link,
    report: &mut Report<W>,
    clock: Clock,
) {
    while let Some(action) = session.next_action() {
        perform(action, session, link, report, clock).await;
    }
}

/// Prints a line, or writes a frame and tells the session how that went.
async fn perform<W: std::io::Write>(
    action: Action,
    session: &mut Session,
    link: &mut Link,
    report: &mut Report<W>,
    clock: Clock,
) {
    let (opcode, payload) = match action {
        Action::Report(line) => return report.line(&line),
        Action::Ping(payload) => (OpCode::PING, payload),
        Action::Pong(payload) => (OpCode::PONG, payload),
        Action::Close(body) => (OpCode::CLOSE, body),
    };
    let written = match link.write(opcode, &payload).await {
        Ok(()) => Input::Written(opcode),
        Err(failure) => Input::WriteFailed(failure),
    };
    session.handle(clock.now(), written);
}
