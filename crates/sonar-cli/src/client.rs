//! `sonar client`: stdin lines out as text messages, received messages to stdout; or
//! `--echo` (Autobahn client mode). Written once for every runtime.

use std::io::{BufRead, Write};
use std::pin::pin;
use std::process::ExitCode;
use std::time::Duration;

use futures_channel::mpsc;
use futures_util::future::{Either, join, select};
use futures_util::{SinkExt, StreamExt};
use sonar_async::{
    ClientRequest, CloseCode, CloseStatus, Config, Error, Message, RetryPolicy, Runtime, WebSocket,
    WsReader,
};
use sonar_handshake::{ClientError, StatusCode};

use crate::Failure;
use crate::args::ClientArgs;
use crate::rt::block_on_runtime;

/// Lines read ahead of the connection.
const STDIN_QUEUE: usize = 16;
/// At the end of stdin, how long to wait for more replies (when fewer messages than lines
/// sent have arrived) before sending Close.
const LINGER_QUIET: Duration = Duration::from_millis(500);
/// After a protocol failure, how long the exiting client lets its last frames go out.
const FAIL_LINGER: Duration = Duration::from_millis(200);

/// Runs `sonar client`.
pub(crate) fn run(args: ClientArgs) -> Result<ExitCode, Failure> {
    let mut request = ClientRequest::from_url(&args.url)
        .map_err(|e| Failure::usage(format!("invalid url `{}`: {e}", args.url)))?;
    for (name, value) in &args.headers {
        request = request.with_header(name.clone(), value.clone().into_bytes());
    }
    for protocol in &args.protocols {
        request = request.with_subprotocol(protocol.clone());
    }
    request
        .validate()
        .map_err(|e| Failure::usage(format!("invalid request: {e}")))?;
    let config = args
        .compression
        .apply(args.keepalive.apply(Config::default()))
        .with_tls(crate::tls::client_config(args.insecure));
    let lines = if args.echo {
        None
    } else {
        Some(stdin_lines()?)
    };
    let url = args.url;
    let reconnect = args.reconnect;
    block_on_runtime!(args.runtime, |runtime| client(
        runtime, url, request, config, lines, reconnect
    ))
}

/// Reads stdin lines on a thread of their own (blocking reads work with every runtime).
fn stdin_lines() -> Result<mpsc::Receiver<String>, Failure> {
    let (mut tx, rx) = mpsc::channel(STDIN_QUEUE);
    std::thread::Builder::new()
        .name("sonar-stdin".into())
        .spawn(move || {
            let mut stdin = std::io::stdin().lock();
            let mut line = Vec::new();
            loop {
                line.clear();
                match stdin.read_until(b'\n', &mut line) {
                    Ok(0) | Err(_) => break,
                    Ok(_) => {}
                }
                let text = String::from_utf8_lossy(&line);
                let text = text.trim_end_matches('\n').trim_end_matches('\r');
                if smol::block_on(tx.send(text.to_owned())).is_err() {
                    break;
                }
            }
        })
        .map_err(|e| Failure::new(format!("cannot start the stdin thread: {e}")))?;
    Ok(rx)
}

/// The one-line description of a connection failure.
pub(crate) fn describe(e: &Error) -> String {
    match e {
        Error::Handshake(ClientError::Rejected { status, reason, .. }) => {
            let reason = if reason.is_empty() {
                StatusCode::from_u16(*status)
                    .and_then(StatusCode::canonical_reason)
                    .unwrap_or("")
            } else {
                reason.as_str()
            };
            format!("handshake rejected: {status} {reason}")
                .trim_end()
                .to_owned()
        }
        Error::Keepalive(reason) => format!("connection lost (keepalive): {reason}"),
        other => chain(other),
    }
}

/// An error and its causes on one line, `error: cause: cause` (each error's `Display`
/// names only itself; its cause is its `source`).
pub(crate) fn chain(e: &dyn std::error::Error) -> String {
    let mut line = e.to_string();
    let mut source = e.source();
    while let Some(cause) = source {
        line.push_str(": ");
        line.push_str(&cause.to_string());
        source = cause.source();
    }
    line
}

fn print(message: &Message) {
    let mut out = std::io::stdout().lock();
    let _ = match message {
        Message::Text(text) => writeln!(out, "{}", text.as_str()),
        Message::Binary(bytes) => writeln!(out, "<binary {} bytes>", bytes.len()),
    };
    let _ = out.flush();
}

async fn client<R: Runtime>(
    rt: R,
    url: String,
    request: ClientRequest,
    config: Config,
    mut lines: Option<mpsc::Receiver<String>>,
    reconnect: bool,
) -> Result<ExitCode, Failure> {
    let policy = RetryPolicy::new();
    loop {
        let connected = if reconnect {
            sonar_async::connect_retrying(&rt, request.clone(), config.clone(), &policy).await
        } else {
            sonar_async::connect(&rt, request.clone(), config.clone()).await
        };
        let (ws, accepted) = connected.map_err(|e| match e {
            Error::Handshake(_) => Failure::new(describe(&e)),
            e => Failure::new(format!("cannot connect to {url}: {}", describe(&e))),
        })?;
        if let Some(protocol) = &accepted.subprotocol {
            tracing::debug!(%protocol, "subprotocol selected");
        }
        match session(&rt, ws, lines.as_mut()).await {
            Session::Lost(outcome) if reconnect => {
                let why = match &outcome {
                    Ok(_) => "the server closed the connection".to_owned(),
                    Err(failure) => failure.message().to_owned(),
                };
                eprintln!("sonar: {why}; connecting again to {url}");
            }
            Session::Lost(outcome) | Session::Finished(outcome) => return outcome,
        }
    }
}

/// How a connection's session ended.
enum Session {
    /// We ended it (end of stdin): the program's outcome.
    Finished(Result<ExitCode, Failure>),
    /// The connection ended (closed by the server, or failed): what it means if the client
    /// does not connect again.
    Lost(Result<ExitCode, Failure>),
}

/// One connection: stdin lines out and messages printed, or (`lines` is `None`) every
/// message echoed, until the connection or stdin ends.
async fn session<R: Runtime>(
    rt: &R,
    ws: WebSocket,
    lines: Option<&mut mpsc::Receiver<String>>,
) -> Session {
    let (mut rx, mut tx) = ws.into_split();

    let Some(lines) = lines else {
        // --echo: everything received goes back unchanged, until the server closes.
        let mut failure = None;
        while let Some(item) = rx.recv().await {
            match item {
                Ok(message) => {
                    let _ = tx.send(message).await;
                }
                Err(e) => failure = Some(e),
            }
        }
        // Let the connection task write the last echoes and its Close before exiting. After a
        // failure a client would wait up to the close timeout for the server's EOF; an exiting
        // program only needs its last frames written.
        linger(rt, &mut tx, failure.is_some()).await;
        return Session::Lost(finish(failure, rx.close_status(), true, false));
    };

    let mut failure = None;
    let (mut sent, mut received) = (0u64, 0u64);
    let mut stdin_done = false;
    let mut ended = false;
    while !stdin_done && !ended {
        let next_line = pin!(lines.next());
        let next_message = pin!(rx.recv());
        match select(next_line, next_message).await {
            Either::Left((Some(line), _)) => {
                // A refused send means the connection is ending; `recv` reports why.
                if tx.send(Message::text(line)).await.is_ok() {
                    sent += 1;
                }
            }
            Either::Left((None, _)) => stdin_done = true,
            Either::Right((Some(Ok(message)), _)) => {
                received += 1;
                print(&message);
            }
            Either::Right((Some(Err(e)), _)) => failure = Some(e),
            Either::Right((None, _)) => ended = true,
        }
    }
    // A peer answers Close at once, dropping replies it had not sent yet: before closing,
    // wait for as many messages as lines were sent (an echo server's replies), as long as
    // they keep coming.
    while !ended && received < sent {
        match crate::rt::timeout(rt, LINGER_QUIET, rx.recv()).await {
            None => break,
            Some(Some(Ok(message))) => {
                received += 1;
                print(&message);
            }
            Some(Some(Err(e))) => failure = Some(e),
            Some(None) => ended = true,
        }
    }
    if ended {
        linger(rt, &mut tx, failure.is_some()).await;
        return Session::Lost(finish(failure, rx.close_status(), false, false));
    }
    // End of stdin: Close 1000, and keep printing what arrives until the handshake is done.
    let close = tx.close(CloseCode::NORMAL, "");
    let drain = drain(&mut rx);
    let (closed, drained) = join(close, drain).await;
    let failure = drained.or(closed.err());
    Session::Finished(finish(failure, rx.close_status(), true, true))
}

/// Waits for the connection task to finish; after a failure, at most `FAIL_LINGER`.
async fn linger<R: Runtime>(rt: &R, tx: &mut sonar_async::WsWriter, failed: bool) {
    if failed {
        let _ = crate::rt::timeout(rt, FAIL_LINGER, tx.closed()).await;
    } else {
        tx.closed().await;
    }
}

async fn drain(rx: &mut WsReader) -> Option<Error> {
    let mut failure = None;
    while let Some(item) = rx.recv().await {
        match item {
            Ok(message) => print(&message),
            Err(e) => failure = Some(e),
        }
    }
    failure
}

/// The exit status once the connection has ended. `any_code`: a completed closing handshake
/// is a success whatever code the server sent (`--echo`, or after our own Close);
/// `we_closed`: we sent Close first (at the end of stdin).
fn finish(
    failure: Option<Error>,
    status: Option<CloseStatus>,
    any_code: bool,
    we_closed: bool,
) -> Result<ExitCode, Failure> {
    if let Some(e) = failure {
        return Err(Failure::new(describe(&e)));
    }
    let Some(status) = status else {
        return Err(Failure::new("connection ended without a closing handshake"));
    };
    let code = status.code;
    if code == CloseCode::ABNORMAL {
        return Err(Failure::new(if !we_closed {
            "connection closed without a closing handshake (1006)"
        } else {
            "the server did not complete the closing handshake in time (1006)"
        }));
    }
    let normal = [
        CloseCode::NORMAL,
        CloseCode::GOING_AWAY,
        CloseCode::NO_STATUS_RECEIVED,
    ];
    if status.by_peer {
        tracing::info!(code = code.as_u16(), reason = %status.reason, "server closed the connection");
    }
    if any_code || !status.by_peer || normal.contains(&code) {
        Ok(ExitCode::SUCCESS)
    } else {
        Err(Failure::new(format!(
            "server closed the connection with {code} {}",
            status.reason
        )))
    }
}
