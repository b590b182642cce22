//! `sonar serve`: the echo server, written once for every runtime.

use std::collections::HashMap;
use std::io::Write;
use std::net::SocketAddr;
use std::pin::pin;
use std::process::ExitCode;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use futures_channel::{mpsc, oneshot};
use futures_util::StreamExt;
use futures_util::future::{Either, select};
use sonar_async::{CloseCode, Config, Error, Incoming, Listener, Runtime, WsWriter};

use crate::Failure;
use crate::args::ServeArgs;
use crate::rt::{self, block_on_runtime};

/// How long a graceful shutdown waits for clients to finish their closing handshake.
const SHUTDOWN_WAIT: Duration = Duration::from_secs(5);
/// Pause after a failed `accept` (out of file descriptors...) before trying again.
const ACCEPT_BACKOFF: Duration = Duration::from_millis(50);

/// Runs `sonar serve`.
pub(crate) fn run(args: ServeArgs) -> Result<ExitCode, Failure> {
    let mut config = args
        .compression
        .apply(args.keepalive.apply(Config::default()));
    if let Some(max) = args.max_message_size {
        config = config.with_max_message_size(max.max(1));
    }
    let shutdown = crate::signal::shutdown_signal()?;
    block_on_runtime!(args.runtime, |runtime| serve(
        runtime, args.addr, config, shutdown
    ))
}

/// The open connections, so that a shutdown can close them all.
#[derive(Default)]
struct Clients {
    shutting_down: bool,
    writers: HashMap<u64, WsWriter>,
}

type SharedClients = Arc<Mutex<Clients>>;

async fn serve<R: Runtime>(
    rt: R,
    addr: SocketAddr,
    config: Config,
    mut shutdown: oneshot::Receiver<&'static str>,
) -> Result<ExitCode, Failure> {
    let listener = Listener::bind(rt.clone(), addr, config)
        .await
        .map_err(|e| Failure::new(format!("cannot listen on {addr}: {e}")))?;
    let local = listener
        .local_addr()
        .map_err(|e| Failure::new(format!("cannot read the bound address: {e}")))?;
    {
        let mut out = std::io::stdout().lock();
        let _ = writeln!(
            out,
            "sonar: echo server listening on {local} (ws://{local}/)"
        );
        let _ = out.flush();
    }
    tracing::info!(%local, "listening");

    let clients = SharedClients::default();
    // Every connection task holds a clone of `done_tx`; when all are gone, `done_rx` ends.
    let (done_tx, mut done_rx) = mpsc::channel::<()>(0);
    let mut next_id: u64 = 0;
    let signal = loop {
        let accept = pin!(listener.accept());
        match select(accept, &mut shutdown).await {
            Either::Left((Ok((incoming, peer)), _)) => {
                next_id += 1;
                let task = connection(
                    rt.clone(),
                    incoming,
                    peer,
                    next_id,
                    clients.clone(),
                    done_tx.clone(),
                );
                rt.spawn(Box::pin(task));
            }
            Either::Left((Err(e), _)) => {
                tracing::warn!(error = %e, "accept failed");
                rt::sleep(&rt, ACCEPT_BACKOFF).await;
            }
            Either::Right((signal, _)) => break signal.unwrap_or("shutdown"),
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
        rt.spawn(Box::pin(going_away(writer)));
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
    Ok(ExitCode::SUCCESS)
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
    let (ws, request) = match incoming.upgrade_with(|_| Ok(None)).await {
        Ok(accepted) => accepted,
        Err(e) => {
            tracing::info!(%peer, error = %e, "handshake failed");
            return;
        }
    };
    tracing::info!(%peer, id, path = request.path(), "connection opened");
    let late = match clients.lock() {
        Ok(mut c) if !c.shutting_down => {
            c.writers.insert(id, ws.sender());
            false
        }
        _ => true,
    };
    if late {
        // The server began shutting down during this handshake.
        rt.spawn(Box::pin(going_away(ws.sender())));
    }

    let (mut rx, mut tx) = ws.into_split();
    let mut failure: Option<Error> = None;
    while let Some(item) = rx.recv().await {
        match item {
            // A send refused because the connection is closing is not an error worth a line:
            // the close status below tells what happened.
            Ok(message) => {
                let _ = tx.send(message).await;
            }
            Err(e) => failure = Some(e),
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
    failure: Option<Error>,
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
    match failure {
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
