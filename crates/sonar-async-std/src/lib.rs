//! sonar WebSockets on the async-std runtime.
//!
//! async-std is discontinued upstream (RUSTSEC-2025-0052); this crate stays a thin bridge for
//! existing users: async-std's TCP (already futures-io), its spawner, and the async-io timer
//! that async-std itself runs on. New code should prefer `sonar-smol` or `sonar-tokio`.
//!
//! ```no_run
//! # fn main() -> Result<(), sonar_async_std::Error> {
//! async_std::task::block_on(async {
//!     let mut ws = sonar_async_std::connect("ws://127.0.0.1:9001/").await?;
//!     ws.send(sonar_async_std::Message::text("hello")).await?;
//!     ws.close(sonar_async_std::CloseCode::NORMAL, "").await
//! })
//! # }
//! ```
#![warn(missing_docs)]
#![deny(unsafe_code)]

use std::io;
use std::net::SocketAddr;
use std::sync::Arc;

use sonar_smol::AsyncIoTimer;

pub use sonar_async::*;

/// The async-std runtime, as seen by sonar.
#[derive(Debug, Clone, Copy, Default)]
pub struct AsyncStd;

/// A listener on async-std (see [`listen`]).
pub type Listener = sonar_async::Listener<AsyncStd>;
/// An accepted, not yet upgraded connection on async-std.
pub type Incoming = sonar_async::Incoming<AsyncStd>;

/// Connects to a `ws://` URL with the default configuration.
pub async fn connect(url: &str) -> Result<WebSocket, Error> {
    sonar_async::connect_url(&AsyncStd, url).await
}

/// Connects with a full request (headers, subprotocols) and configuration.
pub async fn connect_with(
    request: ClientRequest,
    config: Config,
) -> Result<(WebSocket, Accepted), Error> {
    sonar_async::connect(&AsyncStd, request, config).await
}

/// Runs the server handshake on an accepted stream (any path, no subprotocol).
pub async fn accept(stream: async_std::net::TcpStream) -> Result<WebSocket, Error> {
    let config = Config::default();
    sonar_async::accept_with(&AsyncStd, stream, config, |_| Ok(None))
        .await
        .map(|(ws, _)| ws)
}

/// Binds a WebSocket listener on `addr` with `config`.
pub async fn listen(addr: SocketAddr, config: Config) -> io::Result<Listener> {
    Listener::bind(AsyncStd, addr, config).await
}

impl Runtime for AsyncStd {
    type Tcp = async_std::net::TcpStream;
    type TcpListener = async_std::net::TcpListener;

    fn timer(&self) -> Arc<dyn Timer> {
        Arc::new(AsyncIoTimer)
    }

    fn spawn(&self, task: BoxFuture<()>) {
        drop(async_std::task::spawn(task));
    }

    fn connect_tcp(&self, host: &str, port: u16) -> BoxFuture<io::Result<Self::Tcp>> {
        let host = host.to_owned();
        Box::pin(async move {
            let tcp = async_std::net::TcpStream::connect((host.as_str(), port)).await?;
            tcp.set_nodelay(true)?;
            Ok(tcp)
        })
    }

    fn bind(&self, addr: SocketAddr) -> BoxFuture<io::Result<Self::TcpListener>> {
        Box::pin(async move { async_std::net::TcpListener::bind(addr).await })
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
