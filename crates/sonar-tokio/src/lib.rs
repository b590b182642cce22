//! sonar WebSockets on the tokio runtime: a client with built-in keepalive and RTT in three
//! lines, servers from a bare listener or from any HTTP server's upgraded connection.
//!
//! ```no_run
//! # async fn demo() -> Result<(), sonar_tokio::Error> {
//! let mut ws = sonar_tokio::connect("ws://127.0.0.1:9001/").await?;
//! ws.send("hello").await?;
//! if let Some(reply) = ws.recv().await {
//!     println!("{:?} (rtt {:?})", reply?, ws.rtt());
//! }
//! ws.close(sonar_tokio::CloseCode::NORMAL, "bye").await?;
//! # Ok(()) }
//! ```
//!
//! Keepalive is on in every connection: pings go out after 20 s of silence, a peer that does
//! not answer within 20 s more is declared dead ([`Error::Keepalive`]), and the peer's pings
//! are answered whether or not the application is reading.
//!
//! This crate is a bridge: tokio's I/O traits to futures-io ([`Compat`]), tokio's clock and
//! sleeps ([`TokioTimer`]), spawning and TCP. The protocol, handshakes and keepalive live once
//! in `sonar-async`; its runtime-generic layer is in [`generic`].
#![warn(missing_docs)]
#![deny(unsafe_code)]

use std::io;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Instant;

use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};

#[cfg(feature = "rustls")]
pub use sonar_async::tls;
pub use sonar_async::{
    AcceptOptions, Accepted, ClientError, ClientRequest, CloseCode, CloseFrame, CloseStatus,
    CodecConfig, Config, DeadReason, DeflateAnswer, DeflateConfig, DeflateParams, Delivery, Error,
    KeepaliveConfig, Message, OnBackpressure, PingError, PreparedMessage, ProtocolError,
    RejectReason, Rejection, RetryPolicy, ReuniteError, Role, RttStats, SendError, Stats,
    StatusCode, TopicStats, Topics, TrySendError, UpgradeRequest, UrlError, Utf8Bytes, WebSocket,
    WsReader, WsWriter,
};

/// A client that connects again whenever its connection has ended, on tokio (see
/// [`sonar_async::Reconnect`]).
pub type Reconnect = sonar_async::Reconnect<Tokio>;

pub mod generic {
    //! The runtime-generic layer under this adapter (`sonar-async`), for custom transports
    //! and executors: handshakes over any futures-io stream that return the connection's
    //! [`Keeper`] for the caller to spawn, the [`Runtime`] seam, and the [`Timer`] seam.
    pub use sonar_async::{
        BoxFuture, DetachedKeeper, Incoming, Keeper, Listener, ReadIntoSpare, RefFuture, Runtime,
        Sleep, TAKEOVER_DELAY, Timer, Transport, WATCH_INTERVAL_MAX, accept_with, client, connect,
        connect_retrying, connect_url, from_upgraded, from_upgraded_deflate, server, server_with,
    };
}

use sonar_async::{BoxFuture, RefFuture, Runtime, Sleep, Timer};

/// The tokio runtime, as seen by sonar: spawns on the current tokio runtime.
#[derive(Debug, Clone, Copy, Default)]
pub struct Tokio;

/// Connects to a `ws://` URL (or, with the `rustls` feature, `wss://`) with the default
/// configuration. The connection's keepalive runs in a task spawned on the current runtime.
///
/// ```no_run
/// # async fn demo() -> Result<(), sonar_tokio::Error> {
/// let ws = sonar_tokio::connect("ws://127.0.0.1:9001/").await?;
/// let rtt = ws.ping().await?;
/// println!("round trip {rtt:?}, smoothed {:?}", ws.rtt().map(|r| r.smoothed));
/// # Ok(()) }
/// ```
pub async fn connect(url: &str) -> Result<WebSocket, Error> {
    sonar_async::connect_url(&Tokio, url).await
}

/// Connects with a full request (headers, subprotocols) and configuration; returns what the
/// server accepted.
///
/// ```no_run
/// use std::time::Duration;
/// use sonar_tokio::{ClientRequest, Config, KeepaliveConfig};
/// # async fn demo() -> Result<(), sonar_tokio::Error> {
/// let request = ClientRequest::from_url("ws://127.0.0.1:9001/chat")?
///     .with_header("Authorization", "Bearer secret")
///     .with_subprotocol("chat.v2");
/// let mut config = Config::default();
/// config.keepalive = KeepaliveConfig::default().with_ping_interval(Some(Duration::from_secs(10)));
/// let (ws, accepted) = sonar_tokio::connect_with(request, config).await?;
/// println!("subprotocol {:?}", accepted.subprotocol);
/// # drop(ws); Ok(()) }
/// ```
pub async fn connect_with(
    request: ClientRequest,
    config: Config,
) -> Result<(WebSocket, Accepted), Error> {
    sonar_async::connect(&Tokio, request, config).await
}

/// Binds a WebSocket listener on `addr`; every connection gets `config`.
///
/// ```no_run
/// # async fn demo() -> Result<(), Box<dyn std::error::Error>> {
/// let listener = sonar_tokio::listen("127.0.0.1:9001".parse()?, Default::default()).await?;
/// loop {
///     let (incoming, _peer) = listener.accept().await?;
///     tokio::spawn(async move {
///         let mut ws = incoming.upgrade().await?;
///         while let Some(message) = ws.recv().await {
///             ws.send(message?).await?;
///         }
///         Ok::<_, sonar_tokio::Error>(())
///     });
/// }
/// # }
/// ```
pub async fn listen(addr: SocketAddr, config: Config) -> io::Result<Listener> {
    sonar_async::Listener::bind(Tokio, addr, config)
        .await
        .map(Listener)
}

/// A TCP listener whose connections become WebSockets (see [`listen`]).
///
/// [`accept`](Self::accept) returns as soon as TCP accepted; the opening handshake runs when
/// the [`Incoming`] is upgraded, typically in a task of its own, so one slow client never
/// holds up the others.
///
/// ```no_run
/// # async fn demo() -> std::io::Result<()> {
/// let listener = sonar_tokio::listen("127.0.0.1:0".parse().unwrap(), Default::default()).await?;
/// println!("listening on ws://{}", listener.local_addr()?);
/// let (incoming, peer) = listener.accept().await?;
/// tokio::spawn(async move {
///     match incoming.upgrade().await {
///         Ok(ws) => println!("{peer} connected: {:?}", ws.stats()),
///         Err(e) => eprintln!("{peer}: {e}"),
///     }
/// });
/// # Ok(()) }
/// ```
#[derive(Debug)]
pub struct Listener(sonar_async::Listener<Tokio>);

impl Listener {
    /// Makes a listening socket bound elsewhere (for example with `socket2`, to set
    /// `SO_REUSEPORT`) a WebSocket listener; call it inside the tokio runtime that will run it.
    ///
    /// ```no_run
    /// # async fn demo() -> std::io::Result<()> {
    /// let std_listener = std::net::TcpListener::bind("127.0.0.1:0")?;
    /// let listener = sonar_tokio::Listener::from_std(std_listener, Default::default())?;
    /// println!("listening on ws://{}", listener.local_addr()?);
    /// # Ok(()) }
    /// ```
    pub fn from_std(listener: std::net::TcpListener, config: Config) -> io::Result<Self> {
        sonar_async::Listener::from_std(Tokio, listener, config).map(Listener)
    }

    /// The bound address (useful with port 0).
    pub fn local_addr(&self) -> io::Result<SocketAddr> {
        self.0.local_addr()
    }

    /// Waits for the next TCP connection.
    pub async fn accept(&self) -> io::Result<(Incoming, SocketAddr)> {
        let (incoming, peer) = self.0.accept().await?;
        Ok((Incoming(incoming), peer))
    }
}

/// An accepted TCP connection that has not done its WebSocket handshake yet.
#[derive(Debug)]
pub struct Incoming(sonar_async::Incoming<Tokio>);

impl Incoming {
    /// Runs the handshake, accepting any path and no subprotocol.
    pub async fn upgrade(self) -> Result<WebSocket, Error> {
        self.0.upgrade().await
    }

    /// Runs the handshake with a policy that sees the request first: route on its path,
    /// authenticate on its headers, pick a subprotocol (or `None`), or answer with an HTTP
    /// error instead of the `101`.
    ///
    /// ```no_run
    /// use sonar_tokio::{Incoming, Rejection};
    /// # async fn demo(incoming: Incoming) -> Result<(), sonar_tokio::Error> {
    /// let (ws, request) = incoming
    ///     .upgrade_with(|req| {
    ///         if req.path() != "/chat" {
    ///             return Err(Rejection::not_found());
    ///         }
    ///         if req.header("authorization") != Some(&b"Bearer secret"[..]) {
    ///             return Err(Rejection::unauthorized().with_header("WWW-Authenticate", "Bearer"));
    ///         }
    ///         let chosen = req.subprotocols().iter().find(|p| *p == "chat.v2");
    ///         Ok(chosen.cloned())
    ///     })
    ///     .await?;
    /// println!("{} joined", request.path());
    /// # drop(ws); Ok(()) }
    /// ```
    pub async fn upgrade_with<F>(self, policy: F) -> Result<(WebSocket, UpgradeRequest), Error>
    where
        F: FnOnce(&UpgradeRequest) -> Result<Option<String>, Rejection>,
    {
        self.0.upgrade_with(policy).await
    }

    /// Runs the TLS handshake with `acceptor`, then the WebSocket handshake (`wss://`).
    #[cfg(feature = "rustls")]
    pub async fn upgrade_tls<F>(
        self,
        acceptor: &tls::TlsAcceptor,
        policy: F,
    ) -> Result<(WebSocket, UpgradeRequest), Error>
    where
        F: FnOnce(&UpgradeRequest) -> Result<Option<String>, Rejection>,
    {
        self.0.upgrade_tls(acceptor, policy).await
    }

    /// The raw TCP stream, for callers that handle the upgrade themselves.
    pub fn into_inner(self) -> tokio::net::TcpStream {
        self.0.into_inner().into_inner()
    }
}

/// Runs the server handshake on an accepted tokio stream (any path, no subprotocol).
pub async fn accept<T>(stream: T) -> Result<WebSocket, Error>
where
    T: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    accept_with(stream, Config::default(), |_| Ok(None))
        .await
        .map(|(ws, _)| ws)
}

/// Runs the server handshake on an accepted tokio stream with a configuration and a request
/// policy (see [`Incoming::upgrade_with`]).
pub async fn accept_with<T, F>(
    stream: T,
    config: Config,
    policy: F,
) -> Result<(WebSocket, UpgradeRequest), Error>
where
    T: AsyncRead + AsyncWrite + Unpin + Send + 'static,
    F: FnOnce(&UpgradeRequest) -> Result<Option<String>, Rejection>,
{
    sonar_async::accept_with(&Tokio, Compat::transport(stream), config, policy).await
}

/// Wraps a stream whose upgrade another HTTP server already completed (hyper, axum), and
/// starts the connection's keepalive task on the current runtime.
///
/// `io` is any tokio stream; for hyper's `Upgraded`, wrap it in `hyper_util::rt::TokioIo`
/// first (hyper replays the bytes it read past the head, so none are lost).
///
/// ```no_run
/// use sonar_tokio::{Config, Role};
/// # async fn demo(upgraded: hyper::upgrade::Upgraded) {
/// let io = hyper_util::rt::TokioIo::new(upgraded);
/// let mut ws = sonar_tokio::from_upgraded(io, Role::Server, Config::default());
/// while let Some(Ok(message)) = ws.recv().await {
///     if ws.send(message).await.is_err() {
///         break;
///     }
/// }
/// # }
/// ```
pub fn from_upgraded<T>(io: T, role: Role, config: Config) -> WebSocket
where
    T: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    let (ws, keeper) = sonar_async::from_upgraded(
        Compat::transport(io),
        role,
        &[],
        config,
        Arc::new(TokioTimer),
    );
    spawn_keeper(keeper);
    ws
}

/// [`from_upgraded`] for an upgrade that agreed on permessage-deflate (`deflate`: the
/// server's `UpgradeRequest::negotiate_deflate(..)` answer's `params`, also written into the
/// `101` with `AcceptOptions::with_deflate`).
pub fn from_upgraded_deflate<T>(
    io: T,
    role: Role,
    deflate: DeflateParams,
    config: Config,
) -> WebSocket
where
    T: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    let (ws, keeper) = sonar_async::from_upgraded_deflate(
        Compat::transport(io),
        role,
        &[],
        deflate,
        config,
        Arc::new(TokioTimer),
    );
    spawn_keeper(keeper);
    ws
}

fn spawn_keeper(keeper: sonar_async::Keeper) {
    tokio::spawn(keeper.detach());
}

impl Runtime for Tokio {
    type Tcp = Compat<tokio::net::TcpStream>;
    type TcpListener = tokio::net::TcpListener;

    fn transport(tcp: Self::Tcp) -> sonar_async::Transport {
        sonar_async::Transport::with_spare_reads(tcp)
    }

    fn timer(&self) -> Arc<dyn Timer> {
        Arc::new(TokioTimer)
    }

    fn spawn<F>(&self, task: F)
    where
        F: std::future::Future<Output = ()> + Send + 'static,
    {
        tokio::spawn(task);
    }

    fn connect_tcp(&self, host: &str, port: u16) -> BoxFuture<io::Result<Self::Tcp>> {
        let host = host.to_owned();
        Box::pin(async move {
            let tcp = tokio::net::TcpStream::connect((host.as_str(), port)).await?;
            tcp.set_nodelay(true)?;
            Ok(Compat::new(tcp))
        })
    }

    fn bind(&self, addr: SocketAddr) -> BoxFuture<io::Result<Self::TcpListener>> {
        Box::pin(tokio::net::TcpListener::bind(addr))
    }

    /// Panics outside a tokio runtime with I/O enabled (as `TcpListener::from_std` does).
    fn listener_from_std(&self, listener: std::net::TcpListener) -> io::Result<Self::TcpListener> {
        tokio::net::TcpListener::from_std(listener)
    }

    fn accept_tcp<'a>(
        &self,
        listener: &'a Self::TcpListener,
    ) -> RefFuture<'a, io::Result<(Self::Tcp, SocketAddr)>> {
        Box::pin(async move {
            let (tcp, peer) = listener.accept().await?;
            tcp.set_nodelay(true)?;
            Ok((Compat::new(tcp), peer))
        })
    }

    fn local_addr(&self, listener: &Self::TcpListener) -> io::Result<SocketAddr> {
        listener.local_addr()
    }
}

/// tokio's clock and sleeps; honours `tokio::time::pause` (virtual time in tests).
#[derive(Debug, Clone, Copy, Default)]
pub struct TokioTimer;

pin_project_lite::pin_project! {
    /// tokio's sleep, in the one allocation the [`Timer`] seam makes for it.
    struct TokioSleep {
        #[pin]
        sleep: tokio::time::Sleep,
    }
}

impl std::future::Future for TokioSleep {
    type Output = ();
    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<()> {
        self.project().sleep.poll(cx)
    }
}

impl Sleep for TokioSleep {
    fn reset(self: Pin<&mut Self>, deadline: Instant) {
        self.project().sleep.reset(deadline.into());
    }
}

impl Timer for TokioTimer {
    fn now(&self) -> Instant {
        tokio::time::Instant::now().into_std()
    }

    fn sleep_until(&self, deadline: Instant) -> Pin<Box<dyn Sleep>> {
        Box::pin(TokioSleep {
            sleep: tokio::time::sleep_until(deadline.into()),
        })
    }
}

/// Makes a tokio stream a futures-io stream, the traits sonar's connection uses (the
/// direction opposite to `hyper_util::rt::TokioIo`).
#[derive(Debug)]
pub struct Compat<T>(T);

impl<T> Compat<T> {
    /// Wraps a tokio stream.
    pub fn new(inner: T) -> Self {
        Compat(inner)
    }

    /// The wrapped stream.
    pub fn into_inner(self) -> T {
        self.0
    }
}

impl<T: AsyncRead + AsyncWrite + Unpin + Send + 'static> Compat<T> {
    /// The connection's transport over `inner`: reads go straight into the connection's
    /// buffers (tokio reads into uninitialised memory; see [`sonar_async::ReadIntoSpare`]).
    pub fn transport(inner: T) -> sonar_async::Transport {
        sonar_async::Transport::with_spare_reads(Compat(inner))
    }
}

impl<T: AsyncRead + AsyncWrite + Unpin + Send + 'static> sonar_async::ReadIntoSpare for Compat<T> {
    fn poll_read_spare(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut bytes::BytesMut,
        limit: usize,
    ) -> Poll<io::Result<usize>> {
        buf.reserve(limit);
        let mut limited = bytes::BufMut::limit(&mut *buf, limit);
        tokio_util::io::poll_read_buf(Pin::new(&mut self.0), cx, &mut limited)
    }
}

impl<T: AsyncRead + Unpin> futures_io::AsyncRead for Compat<T> {
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

impl<T: AsyncWrite + Unpin> futures_io::AsyncWrite for Compat<T> {
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
