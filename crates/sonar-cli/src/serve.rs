//! `sonar serve`: the echo server, written once for every runtime.
//!
//! One accept loop ([`serve`]) is generic over `sonar_async::Runtime`; what differs is how
//! many of them run and on which threads: one loop with `--threads` worker threads, or with
//! `--reuse-port` one loop per thread, each on a listener of its own ([`crate::reuse_port`]).

use std::collections::HashMap;
use std::io::Write;
use std::net::SocketAddr;
use std::pin::pin;
use std::process::ExitCode;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use futures_channel::mpsc;
use futures_util::StreamExt;
use futures_util::future::{BoxFuture, Either, FutureExt, Shared, select};
use sonar_async::{CloseCode, Config, Error, Incoming, Listener, Runtime, WsWriter};
use tracing::Instrument;

use crate::Failure;
use crate::args::ServeArgs;
use crate::rt::{self, Threads, block_on_pool};

/// How long a graceful shutdown waits for clients to finish their closing handshake.
const SHUTDOWN_WAIT: Duration = Duration::from_secs(5);
/// Pause after a failed `accept` (out of file descriptors...) before trying again.
const ACCEPT_BACKOFF: Duration = Duration::from_millis(50);

/// Resolves with the name of the signal that stops the server; every accept loop holds a
/// clone.
pub(crate) type Shutdown = Shared<BoxFuture<'static, &'static str>>;

/// Connection ids, unique across every accept loop of the process.
pub(crate) type Ids = Arc<AtomicU64>;

/// Runs `sonar serve`.
pub(crate) fn run(args: ServeArgs) -> Result<ExitCode, Failure> {
    let mut config = args
        .compression
        .apply(args.keepalive.apply(Config::default()));
    if let Some(max) = args.max_message_size {
        config = config.with_max_message_size(max.max(1));
    }
    let threads = Threads::resolve(args.threads, args.runtime)?;
    let signal = crate::signal::shutdown_signal()?;
    let shutdown: Shutdown = async move { signal.await.unwrap_or("shutdown") }
        .boxed()
        .shared();
    if args.reuse_port {
        return crate::reuse_port::run(args.runtime, args.addr, config, threads, shutdown);
    }
    let addr = args.addr;
    block_on_pool!(args.runtime, threads, |runtime| bind_and_serve(
        runtime, addr, config, threads, shutdown
    ))
}

/// Binds `addr` and runs one accept loop on it (the server without `--reuse-port`).
async fn bind_and_serve<R: Runtime>(
    rt: R,
    addr: SocketAddr,
    config: Config,
    threads: Threads,
    shutdown: Shutdown,
) -> Result<ExitCode, Failure> {
    let listener = Listener::bind(rt.clone(), addr, config)
        .await
        .map_err(|e| Failure::new(format!("cannot listen on {addr}: {e}")))?;
    let local = listener
        .local_addr()
        .map_err(|e| Failure::new(format!("cannot read the bound address: {e}")))?;
    announce(local, threads.count(), false);
    serve(rt, listener, Ids::default(), shutdown).await;
    Ok(ExitCode::SUCCESS)
}

/// Prints the line that says the server is ready (`listening on ADDR`, parsed by tests and
/// tools), once.
pub(crate) fn announce(local: SocketAddr, threads: usize, reuse_port: bool) {
    {
        let mut out = std::io::stdout().lock();
        let _ = writeln!(
            out,
            "sonar: echo server listening on {local} (ws://{local}/)"
        );
        let _ = out.flush();
    }
    tracing::info!(%local, threads, reuse_port, "listening");
}

/// The open connections, so that a shutdown can close them all.
#[derive(Default)]
struct Clients {
    shutting_down: bool,
    writers: HashMap<u64, WsWriter>,
}

type SharedClients = Arc<Mutex<Clients>>;

/// One accept loop: accepts on `listener` until `shutdown`, then sends Close 1001 to every
/// client it accepted and waits (at most [`SHUTDOWN_WAIT`]) for their closing handshakes.
/// Connection tasks run in the span the loop runs in (a `listener{n=..}` with --reuse-port).
pub(crate) async fn serve<R: Runtime>(
    rt: R,
    listener: Listener<R>,
    ids: Ids,
    mut shutdown: Shutdown,
) {
    let clients = SharedClients::default();
    // Every connection task holds a clone of `done_tx`; when all are gone, `done_rx` ends.
    let (done_tx, mut done_rx) = mpsc::channel::<()>(0);
    let signal = loop {
        let accept = pin!(listener.accept());
        match select(accept, &mut shutdown).await {
            Either::Left((Ok((incoming, peer)), _)) => {
                let id = ids.fetch_add(1, Ordering::Relaxed) + 1;
                let task = connection(
                    rt.clone(),
                    incoming,
                    peer,
                    id,
                    clients.clone(),
                    done_tx.clone(),
                );
                rt.spawn(task.in_current_span());
            }
            Either::Left((Err(e), _)) => {
                tracing::warn!(error = %e, "accept failed");
                rt::sleep(&rt, ACCEPT_BACKOFF).await;
            }
            Either::Right((signal, _)) => break signal,
        }
    };
    drop(listener);

    let writers: Vec<WsWriter> = match clients.lock() {
        Ok(mut c) => {
            c.shutting_down = true;
            c.writers.drain().map(|(_, w)| w).collect()
        }
        Err(_) => Vec::new(),
    };
    tracing::info!(
        signal,
        connections = writers.len(),
        "shutting down: sending close 1001 to every client"
    );
    for writer in writers {
        rt.spawn(going_away(writer).in_current_span());
    }
    drop(done_tx);
    let all_done = async { while done_rx.next().await.is_some() {} };
    if rt::timeout(&rt, SHUTDOWN_WAIT, all_done).await.is_none() {
        tracing::warn!(
            wait_secs = SHUTDOWN_WAIT.as_secs(),
            "some connections did not close in time; exiting anyway"
        );
    } else {
        tracing::info!("all connections closed; bye");
    }
}

async fn going_away(mut writer: WsWriter) {
    let _ = writer
        .close(CloseCode::GOING_AWAY, "server shutting down")
        .await;
}

/// One connection: the handshake (here, so a slow client never blocks `accept`), then echo.
async fn connection<R: Runtime>(
    rt: R,
    incoming: Incoming<R>,
    peer: SocketAddr,
    id: u64,
    clients: SharedClients,
    _done: mpsc::Sender<()>,
) {
    let ws = match incoming.upgrade_with(|_| Ok(None)).await {
        Ok((ws, request)) => {
            tracing::info!(%peer, id, path = request.path(), "connection opened");
            ws
        }
        Err(e) => {
            tracing::info!(%peer, error = %e, "handshake failed");
            return;
        }
    };
    let late = match clients.lock() {
        Ok(mut c) if !c.shutting_down => {
            c.writers.insert(id, ws.sender());
            false
        }
        _ => true,
    };
    if late {
        // The server began shutting down during this handshake.
        rt.spawn(going_away(ws.sender()).in_current_span());
    }

    let (mut rx, mut tx) = ws.into_split();
    // Boxed: the error is rare, and the task carries its room for as long as it lives.
    let mut failure: Option<Box<Error>> = None;
    while let Some(item) = rx.recv().await {
        match item {
            // A send refused because the connection is closing is not an error worth a line:
            // the close status below tells what happened.
            Ok(message) => {
                let _ = tx.send(message).await;
            }
            Err(e) => failure = Some(Box::new(e)),
        }
    }
    if let Ok(mut c) = clients.lock() {
        c.writers.remove(&id);
    }
    log_end(peer, id, failure, rx.close_status());
}

fn describe(e: &Error) -> String {
    match e {
        Error::Keepalive(reason) => reason.to_string(),
        other => crate::client::chain(other),
    }
}

fn log_end(
    peer: SocketAddr,
    id: u64,
    failure: Option<Box<Error>>,
    status: Option<sonar_async::CloseStatus>,
) {
    let (code, reason, by) = match &status {
        Some(s) => (
            s.code.as_u16(),
            s.reason.as_str(),
            if s.by_peer { "client" } else { "server" },
        ),
        None => (CloseCode::ABNORMAL.as_u16(), "", "nobody"),
    };
    match failure.map(|e| *e) {
        Some(e @ Error::Keepalive(_)) => {
            let sent = e.close_code().map(|c| c.as_u16());
            tracing::warn!(%peer, id, code, sent_code = ?sent, "keepalive timeout: {}", describe(&e));
        }
        Some(e) => {
            let sent = e.close_code().map(|c| c.as_u16());
            tracing::warn!(%peer, id, code, sent_code = ?sent, error = %e, "connection failed");
        }
        None => {
            tracing::info!(%peer, id, code, reason, closed_by = by, "connection closed");
        }
    }
}
