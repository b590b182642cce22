//! sonar WebSockets on the tokio runtime.
//!
//! This crate is a bridge: tokio's I/O traits to futures-io ([`TokioIo`]), tokio's clock
//! and sleeps to [`sonar_async::Timer`], spawning and TCP. The protocol, handshakes and
//! keepalive live once in `sonar-async` and below.
//!
//! ```no_run
//! # async fn demo() -> Result<(), sonar_tokio::Error> {
//! let mut ws = sonar_tokio::connect("ws://127.0.0.1:9001/").await?;
//! ws.send(sonar_tokio::Message::text("hello")).await?;
//! if let Some(reply) = ws.recv().await {
//!     println!("{:?}", reply?);
//! }
//! ws.close(sonar_tokio::CloseCode::NORMAL, "bye").await?;
//! # Ok(()) }
//! ```
#![warn(missing_docs)]
#![deny(unsafe_code)]

use std::io;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Instant;

use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};

pub use sonar_async::*;

/// The tokio runtime, as seen by sonar: spawns on the current tokio runtime.
#[derive(Debug, Clone, Copy, Default)]
pub struct Tokio;

sonar_async::adapter_conveniences!(Tokio, Tokio, "tokio");

/// Runs the server handshake on an accepted tokio stream (any path, no subprotocol).
pub async fn accept<T>(stream: T) -> Result<WebSocket, Error>
where
    T: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    accept_with(stream, Config::default(), |_| Ok(None))
        .await
        .map(|(ws, _)| ws)
}

/// Runs the server handshake with a configuration and a request policy.
pub async fn accept_with<T, F>(
    stream: T,
    config: Config,
    policy: F,
) -> Result<(WebSocket, Request), Error>
where
    T: AsyncRead + AsyncWrite + Unpin + Send + 'static,
    F: FnOnce(&Request) -> Result<Option<String>, Rejection>,
{
    sonar_async::accept_with(&Tokio, TokioIo::new(stream), config, policy).await
}

impl Runtime for Tokio {
    type Tcp = TokioIo<tokio::net::TcpStream>;
    type TcpListener = tokio::net::TcpListener;

    fn timer(&self) -> Arc<dyn Timer> {
        Arc::new(TokioTimer)
    }

    fn spawn(&self, task: BoxFuture<()>) {
        tokio::spawn(task);
    }

    fn connect_tcp(&self, host: &str, port: u16) -> BoxFuture<io::Result<Self::Tcp>> {
        let host = host.to_owned();
        Box::pin(async move {
            let tcp = tokio::net::TcpStream::connect((host.as_str(), port)).await?;
            tcp.set_nodelay(true)?;
            Ok(TokioIo::new(tcp))
        })
    }

    fn bind(&self, addr: SocketAddr) -> BoxFuture<io::Result<Self::TcpListener>> {
        Box::pin(tokio::net::TcpListener::bind(addr))
    }

    fn accept_tcp<'a>(
        &self,
        listener: &'a Self::TcpListener,
    ) -> RefFuture<'a, io::Result<(Self::Tcp, SocketAddr)>> {
        Box::pin(async move {
            let (tcp, peer) = listener.accept().await?;
            tcp.set_nodelay(true)?;
            Ok((TokioIo::new(tcp), peer))
        })
    }

    fn local_addr(&self, listener: &Self::TcpListener) -> io::Result<SocketAddr> {
        listener.local_addr()
    }
}

/// tokio's clock and sleeps; honours `tokio::time::pause` (virtual time in tests).
#[derive(Debug, Clone, Copy, Default)]
pub struct TokioTimer;

struct TokioSleep(Pin<Box<tokio::time::Sleep>>);

impl std::future::Future for TokioSleep {
    type Output = ();
    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<()> {
        self.0.as_mut().poll(cx)
    }
}

impl Sleep for TokioSleep {
    fn reset(mut self: Pin<&mut Self>, deadline: Instant) {
        self.0.as_mut().reset(deadline.into());
    }
}

impl Timer for TokioTimer {
    fn now(&self) -> Instant {
        tokio::time::Instant::now().into_std()
    }

    fn sleep_until(&self, deadline: Instant) -> Pin<Box<dyn Sleep>> {
        Box::pin(TokioSleep(Box::pin(tokio::time::sleep_until(
            deadline.into(),
        ))))
    }
}

/// Bridges a tokio stream to the futures-io traits sonar's driver uses.
#[derive(Debug)]
pub struct TokioIo<T>(T);

impl<T> TokioIo<T> {
    /// Wraps a tokio stream.
    pub fn new(inner: T) -> Self {
        TokioIo(inner)
    }

    /// The wrapped stream.
    pub fn into_inner(self) -> T {
        self.0
    }
}

impl<T: AsyncRead + Unpin> futures_io::AsyncRead for TokioIo<T> {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut [u8],
    ) -> Poll<io::Result<usize>> {
        let mut rb = ReadBuf::new(buf);
        match Pin::new(&mut self.0).poll_read(cx, &mut rb) {
            Poll::Ready(Ok(())) => Poll::Ready(Ok(rb.filled().len())),
            Poll::Ready(Err(e)) => Poll::Ready(Err(e)),
            Poll::Pending => Poll::Pending,
        }
    }
}

impl<T: AsyncWrite + Unpin> futures_io::AsyncWrite for TokioIo<T> {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.0).poll_write(cx, buf)
    }

    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.0).poll_write_vectored(cx, bufs)
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.0).poll_flush(cx)
    }

    fn poll_close(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.0).poll_shutdown(cx)
    }
}
