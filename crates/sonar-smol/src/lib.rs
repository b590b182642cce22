//! sonar WebSockets on the smol runtime.
//!
//! A bridge only: smol's TCP (already futures-io), the async-io timer, and spawning on smol's
//! global executor ([`Smol`]) or on an executor of the caller's ([`SmolExecutor`]). The protocol, handshakes and keepalive live once in `sonar-async`.
//!
//! ```no_run
//! # fn main() -> Result<(), sonar_smol::Error> {
//! smol::block_on(async {
//!     let mut ws = sonar_smol::connect("ws://127.0.0.1:9001/").await?;
//!     ws.send(sonar_smol::Message::text("hello")).await?;
//!     let reply = ws.recv().await;
//!     ws.close(sonar_smol::CloseCode::NORMAL, "").await
//! })
//! # }
//! ```
#![warn(missing_docs)]
#![deny(unsafe_code)]

use std::io;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Instant;

pub use sonar_async::*;

/// The smol runtime, as seen by sonar: connection tasks run on smol's global executor.
#[derive(Debug, Clone, Copy, Default)]
pub struct Smol;

sonar_async::adapter_conveniences!(Smol, Smol, "smol");

/// Runs the server handshake on an accepted stream (any path, no subprotocol).
pub async fn accept(stream: smol::net::TcpStream) -> Result<WebSocket, Error> {
    sonar_async::accept_with(&Smol, stream, Config::default(), |_| Ok(None))
        .await
        .map(|(ws, _)| ws)
}

impl Runtime for Smol {
    type Tcp = smol::net::TcpStream;
    type TcpListener = smol::net::TcpListener;

    fn timer(&self) -> Arc<dyn Timer> {
        Arc::new(AsyncIoTimer)
    }

    fn spawn<F>(&self, task: F)
    where
        F: std::future::Future<Output = ()> + Send + 'static,
    {
        smol::spawn(task).detach();
    }

    fn connect_tcp(&self, host: &str, port: u16) -> BoxFuture<io::Result<Self::Tcp>> {
        let host = host.to_owned();
        Box::pin(async move {
            let tcp = smol::net::TcpStream::connect((host.as_str(), port)).await?;
            tcp.set_nodelay(true)?;
            Ok(tcp)
        })
    }

    fn bind(&self, addr: SocketAddr) -> BoxFuture<io::Result<Self::TcpListener>> {
        Box::pin(smol::net::TcpListener::bind(addr))
    }

    fn listener_from_std(&self, listener: std::net::TcpListener) -> io::Result<Self::TcpListener> {
        smol::net::TcpListener::try_from(listener)
    }

    fn accept_tcp<'a>(
        &self,
        listener: &'a Self::TcpListener,
    ) -> RefFuture<'a, io::Result<(Self::Tcp, SocketAddr)>> {
        Box::pin(async move {
            let (tcp, peer) = listener.accept().await?;
            tcp.set_nodelay(true)?;
            Ok((tcp, peer))
        })
    }

    fn local_addr(&self, listener: &Self::TcpListener) -> io::Result<SocketAddr> {
        listener.local_addr()
    }
}

/// smol with sonar's tasks on a [`smol::Executor`] of the caller's instead of smol's global
/// one (which runs on one thread unless `SMOL_THREADS` says more): the threads that run the
/// executor run the connections. An executor that one thread runs makes a single-threaded
/// runtime; one that N threads run, a pool of N.
///
/// ```no_run
/// use std::sync::Arc;
/// # fn main() -> std::io::Result<()> {
/// let ex = Arc::new(smol::Executor::new());
/// // Four threads run the connections until `stop` is dropped.
/// let (stop, stopped) = smol::channel::bounded::<()>(1);
/// for _ in 0..4 {
///     let (ex, stopped) = (Arc::clone(&ex), stopped.clone());
///     std::thread::spawn(move || smol::block_on(ex.run(stopped.recv())));
/// }
/// let rt = sonar_smol::SmolExecutor::new(ex);
/// smol::block_on(async {
///     let addr = "127.0.0.1:9001".parse().unwrap();
///     let listener = sonar_async::Listener::bind(rt, addr, Default::default()).await?;
///     let (incoming, _peer) = listener.accept().await?;
///     # drop((incoming, stop));
///     Ok(())
/// })
/// # }
/// ```
#[derive(Debug, Clone)]
pub struct SmolExecutor(Arc<smol::Executor<'static>>);

impl SmolExecutor {
    /// Spawns sonar's tasks on `executor`.
    pub fn new(executor: Arc<smol::Executor<'static>>) -> Self {
        SmolExecutor(executor)
    }

    /// The executor the tasks are spawned on.
    pub fn executor(&self) -> &Arc<smol::Executor<'static>> {
        &self.0
    }
}

impl Runtime for SmolExecutor {
    type Tcp = <Smol as Runtime>::Tcp;
    type TcpListener = <Smol as Runtime>::TcpListener;

    fn timer(&self) -> Arc<dyn Timer> {
        Smol.timer()
    }

    fn spawn<F>(&self, task: F)
    where
        F: std::future::Future<Output = ()> + Send + 'static,
    {
        self.0.spawn(task).detach();
    }

    fn connect_tcp(&self, host: &str, port: u16) -> BoxFuture<io::Result<Self::Tcp>> {
        Smol.connect_tcp(host, port)
    }

    fn bind(&self, addr: SocketAddr) -> BoxFuture<io::Result<Self::TcpListener>> {
        Smol.bind(addr)
    }

    fn listener_from_std(&self, listener: std::net::TcpListener) -> io::Result<Self::TcpListener> {
        Smol.listener_from_std(listener)
    }

    fn accept_tcp<'a>(
        &self,
        listener: &'a Self::TcpListener,
    ) -> RefFuture<'a, io::Result<(Self::Tcp, SocketAddr)>> {
        Smol.accept_tcp(listener)
    }

    fn local_addr(&self, listener: &Self::TcpListener) -> io::Result<SocketAddr> {
        Smol.local_addr(listener)
    }
}

/// The async-io reactor's clock and timers, shared by smol and async-std.
#[derive(Debug, Clone, Copy, Default)]
pub struct AsyncIoTimer;

struct AsyncIoSleep(async_io::Timer);

impl std::future::Future for AsyncIoSleep {
    type Output = ();
    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<()> {
        Pin::new(&mut self.0).poll(cx).map(|_| ())
    }
}

impl Sleep for AsyncIoSleep {
    fn reset(mut self: Pin<&mut Self>, deadline: Instant) {
        self.0.set_at(deadline);
    }
}

impl Timer for AsyncIoTimer {
    fn now(&self) -> Instant {
        Instant::now()
    }

    fn sleep_until(&self, deadline: Instant) -> Pin<Box<dyn Sleep>> {
        Box::pin(AsyncIoSleep(async_io::Timer::at(deadline)))
    }
}
