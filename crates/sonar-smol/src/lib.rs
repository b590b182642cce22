//! sonar WebSockets on the smol runtime.
//!
//! A bridge only: smol's TCP (already futures-io), the async-io timer, and spawning on smol's
//! global executor. The protocol, handshakes and keepalive live once in `sonar-async`.
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

    fn spawn(&self, task: BoxFuture<()>) {
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
