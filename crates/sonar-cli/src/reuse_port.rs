//! `sonar serve --reuse-port`: N accept loops on one port, each on a thread of its own with a
//! runtime of its own and a listener of its own bound with `SO_REUSEPORT`, so that the kernel
//! spreads the incoming connections over them (as nginx's `listen ... reuseport` does).
//!
//! Every loop is the one generic [`serve`] loop; they share the shutdown signal and the
//! connection ids, nothing else.

use std::net::{SocketAddr, TcpListener};
use std::process::ExitCode;
use std::sync::mpsc;
use std::thread;

use sonar_async::{Config, Listener, Runtime};
use tracing::Instrument;

use crate::Failure;
use crate::args::RuntimeKind;
use crate::rt::{Threads, block_on_single};
use crate::serve::{Ids, Shutdown, announce, serve};

/// Connections the kernel queues on each listener before its loop accepts them.
#[cfg(any(target_os = "linux", target_os = "android"))]
const BACKLOG: i32 = 1024;

/// Runs `threads` accept loops on `addr` until `shutdown`; prints `listening on` once every
/// loop is ready.
pub(crate) fn run(
    kind: RuntimeKind,
    addr: SocketAddr,
    config: Config,
    threads: Threads,
    shutdown: Shutdown,
) -> Result<ExitCode, Failure> {
    let listeners = bind_all(addr, threads.count())?;
    let local = listeners
        .first()
        .and_then(|l| l.local_addr().ok())
        .ok_or_else(|| Failure::new("cannot read the bound address"))?;
    if kind == RuntimeKind::AsyncStd {
        // async-std has one global executor, which runs the connections of every loop (the
        // loops themselves accept on their own threads): size it before its first use.
        crate::rt::size_async_std(threads);
    }
    let ids = Ids::default();
    let (ready_tx, ready_rx) = mpsc::channel::<Result<(), Failure>>();
    let mut loops = Vec::with_capacity(listeners.len());
    for (i, std_listener) in listeners.into_iter().enumerate() {
        let n = i + 1;
        let (config, ids, shutdown, ready) = (
            config.clone(),
            ids.clone(),
            shutdown.clone(),
            ready_tx.clone(),
        );
        let spawned = thread::Builder::new()
            .name(format!("sonar-loop-{n}"))
            .spawn(move || -> Result<(), Failure> {
                let start = Start {
                    n,
                    local,
                    listener: std_listener,
                    config,
                    ids,
                    shutdown,
                    ready,
                };
                block_on_single!(kind, |runtime| accept_loop(runtime, start))
            })
            .map_err(|e| Failure::new(format!("cannot start accept loop {n}: {e}")))?;
        loops.push(spawned);
    }
    drop(ready_tx);
    // A loop that cannot start fails the whole server (returning from `main` ends the
    // other loops); the line is printed only when every listener has a loop accepting on it.
    for _ in 0..loops.len() {
        match ready_rx.recv() {
            Ok(Ok(())) => {}
            Ok(Err(failure)) => return Err(failure),
            Err(_) => return Err(Failure::new("an accept loop ended before it started")),
        }
    }
    announce(local, loops.len(), true);
    let mut result = Ok(ExitCode::SUCCESS);
    for handle in loops {
        let outcome = handle
            .join()
            .unwrap_or_else(|_| Err(Failure::new("an accept loop panicked")));
        if let (Err(failure), Ok(_)) = (outcome, &result) {
            result = Err(failure);
        }
    }
    result
}

/// What one accept loop starts from.
struct Start {
    /// The loop's number, from 1 (its span: `listener{n=..}`).
    n: usize,
    local: SocketAddr,
    listener: TcpListener,
    config: Config,
    ids: Ids,
    shutdown: Shutdown,
    /// Told once the loop accepts (or could not start).
    ready: mpsc::Sender<Result<(), Failure>>,
}

/// One loop: adopts its listener into the thread's runtime, says so, and serves.
async fn accept_loop<R: Runtime>(rt: R, start: Start) -> Result<(), Failure> {
    let Start {
        n,
        local,
        listener,
        config,
        ids,
        shutdown,
        ready,
    } = start;
    let listener = match Listener::from_std(rt.clone(), listener, config) {
        Ok(listener) => listener,
        Err(e) => {
            let message = format!("cannot start accept loop {n} on {local}: {e}");
            let _ = ready.send(Err(Failure::new(message.clone())));
            return Err(Failure::new(message));
        }
    };
    let _ = ready.send(Ok(()));
    drop(ready);
    serve(rt, listener, ids, shutdown)
        .instrument(tracing::info_span!("listener", n))
        .await;
    Ok(())
}

/// `n` listening sockets on `addr`, all with `SO_REUSEPORT` and `SO_REUSEADDR`, non-blocking.
/// With port 0 the first one picks a free port and the others bind to that same port.
#[cfg(any(target_os = "linux", target_os = "android"))]
fn bind_all(addr: SocketAddr, n: usize) -> Result<Vec<TcpListener>, Failure> {
    let mut at = addr;
    let mut listeners = Vec::with_capacity(n);
    for _ in 0..n {
        let listener = bind_one(at)
            .map_err(|e| Failure::new(format!("cannot listen on {at} with SO_REUSEPORT: {e}")))?;
        if at.port() == 0 {
            at = listener
                .local_addr()
                .map_err(|e| Failure::new(format!("cannot read the bound address: {e}")))?;
        }
        listeners.push(listener);
    }
    Ok(listeners)
}

#[cfg(any(target_os = "linux", target_os = "android"))]
fn bind_one(addr: SocketAddr) -> std::io::Result<TcpListener> {
    use socket2::{Domain, Protocol, Socket, Type};
    let socket = Socket::new(Domain::for_address(addr), Type::STREAM, Some(Protocol::TCP))?;
    socket.set_reuse_address(true)?;
    socket.set_reuse_port(true)?;
    socket.set_nonblocking(true)?;
    socket.bind(&addr.into())?;
    socket.listen(BACKLOG)?;
    Ok(socket.into())
}

/// Elsewhere `SO_REUSEPORT` either does not exist or does not spread connections over the
/// listeners (macOS and the BSDs let several sockets bind the port but do not balance
/// connections over them; FreeBSD has `SO_REUSEPORT_LB` for that).
#[cfg(not(any(target_os = "linux", target_os = "android")))]
fn bind_all(_addr: SocketAddr, _n: usize) -> Result<Vec<TcpListener>, Failure> {
    Err(Failure::usage(
        "--reuse-port needs Linux: only its SO_REUSEPORT spreads connections over the \
         listeners; run without it (one listener, --threads worker threads)",
    ))
}
