//! sonar WebSockets on the async-std runtime.
//!
//! async-std is discontinued upstream (RUSTSEC-2025-0052); this crate stays a thin bridge for
//! existing users. async-std runs on async-io, so TCP and timers are the async-io ones that
//! `sonar-smol` bridges; only spawning is async-std's own. New code should prefer `sonar-smol`
//! or `sonar-tokio`.
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

use sonar_smol::Smol;

pub use sonar_async::*;

/// The async-std runtime, as seen by sonar: tasks spawned on async-std, async-io underneath.
#[derive(Debug, Clone, Copy, Default)]
pub struct AsyncStd;

sonar_async::adapter_conveniences!(AsyncStd, AsyncStd, "async-std");

/// Runs the server handshake on an accepted async-std stream (any path, no subprotocol).
pub async fn accept(stream: async_std::net::TcpStream) -> Result<WebSocket, Error> {
    let config = Config::default();
    sonar_async::accept_with(&AsyncStd, stream, config, |_| Ok(None))
        .await
        .map(|(ws, _)| ws)
}

impl Runtime for AsyncStd {
    type Tcp = <Smol as Runtime>::Tcp;
    type TcpListener = <Smol as Runtime>::TcpListener;

    fn timer(&self) -> Arc<dyn Timer> {
        Smol.timer()
    }

    fn spawn<F>(&self, task: F)
    where
        F: std::future::Future<Output = ()> + Send + 'static,
    {
        drop(async_std::task::spawn(task));
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
