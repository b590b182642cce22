//! The runtime seam: what an adapter provides (time, spawning, TCP), and the conveniences
//! written once on top of it (`connect`, `accept`).

use std::future::Future;
use std::io;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::Arc;

use futures_io::{AsyncRead, AsyncWrite};
use sonar_handshake::{Accepted, ClientRequest, Rejection, Request as UpgradeRequest};

use crate::{Config, Error, Timer, Transport, WebSocket};

/// A boxed, sendable future, as runtimes spawn them.
pub type BoxFuture<T> = Pin<Box<dyn Future<Output = T> + Send + 'static>>;

/// A boxed, sendable future borrowing from its caller.
pub type RefFuture<'a, T> = Pin<Box<dyn Future<Output = T> + Send + 'a>>;

/// What a runtime adapter bridges: a timer, spawning, and TCP connections.
///
/// Everything else (handshakes, the connection and its keeper task, keepalive) is written once in this
/// crate; an adapter is an implementation of this trait plus type aliases.
pub trait Runtime: Clone + Send + Sync + 'static {
    /// A connected TCP stream of this runtime, as a futures-io stream.
    type Tcp: AsyncRead + AsyncWrite + Unpin + Send + 'static;
    /// A listening TCP socket of this runtime.
    type TcpListener: Send + Sync + 'static;

    /// The runtime's clock and sleeps.
    fn timer(&self) -> Arc<dyn Timer>;

    /// Runs a task in the background (a connection's keeper, a server's connection task).
    /// Generic, so that the executor keeps the future in the task's own allocation (a
    /// [`BoxFuture`] is a future too, for tasks whose type cannot be named).
    fn spawn<F>(&self, task: F)
    where
        F: Future<Output = ()> + Send + 'static;

    /// Opens a TCP connection to `host:port` (with `TCP_NODELAY` set).
    fn connect_tcp(&self, host: &str, port: u16) -> BoxFuture<io::Result<Self::Tcp>>;

    /// Binds a listening socket.
    fn bind(&self, addr: SocketAddr) -> BoxFuture<io::Result<Self::TcpListener>>;

    /// Adopts a listening socket that was bound elsewhere, for example by `socket2` with
    /// options [`bind`](Runtime::bind) does not set (`SO_REUSEPORT`). `listener` must be in
    /// non-blocking mode ([`Listener::from_std`] sets it). Runtimes with a reactor per
    /// runtime (tokio) must be called from inside the runtime that will run the listener.
    ///
    /// ```no_run
    /// use sonar_async::Runtime;
    /// # fn demo<R: Runtime>(rt: R) -> std::io::Result<()> {
    /// let std_listener = std::net::TcpListener::bind("127.0.0.1:0")?;
    /// std_listener.set_nonblocking(true)?;
    /// let listener: R::TcpListener = rt.listener_from_std(std_listener)?;
    /// println!("listening on {}", rt.local_addr(&listener)?);
    /// # Ok(()) }
    /// ```
    fn listener_from_std(&self, listener: std::net::TcpListener) -> io::Result<Self::TcpListener>;

    /// Accepts one TCP connection (with `TCP_NODELAY` set).
    fn accept_tcp<'a>(
        &self,
        listener: &'a Self::TcpListener,
    ) -> RefFuture<'a, io::Result<(Self::Tcp, SocketAddr)>>;

    /// The address a listening socket is bound to.
    fn local_addr(&self, listener: &Self::TcpListener) -> io::Result<SocketAddr>;

    /// The connection's transport over a TCP stream of this runtime. By default it is read
    /// through futures-io; a runtime whose streams read into uninitialised memory returns
    /// [`Transport::with_spare_reads`] (sonar-tokio does).
    fn transport(tcp: Self::Tcp) -> Transport {
        Transport::new(tcp)
    }
}

/// A TCP listener whose connections become WebSockets.
///
/// [`accept`](Listener::accept) returns as soon as TCP accepted; the opening handshake runs
/// when the [`Incoming`] is upgraded, typically in a task of its own, so one slow client
/// never holds up the others.
pub struct Listener<R: Runtime> {
    rt: R,
    inner: R::TcpListener,
    /// Shared by every `Incoming`: a connection's task does not carry a copy of it.
    config: Arc<Config>,
}

impl<R: Runtime> std::fmt::Debug for Listener<R> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Listener")
            .field("addr", &self.local_addr().ok())
            .finish()
    }
}

impl<R: Runtime> Listener<R> {
    /// Binds `addr` on runtime `rt`; every connection gets `config`.
    pub async fn bind(rt: R, addr: SocketAddr, config: Config) -> io::Result<Self> {
        let inner = rt.bind(addr).await?;
        Ok(Listener {
            rt,
            inner,
            config: Arc::new(config),
        })
    }

    /// Makes a listening socket bound elsewhere a WebSocket listener on runtime `rt` (see
    /// [`Runtime::listener_from_std`]); it is put into non-blocking mode first. This is the
    /// way in for sockets with options of their own, such as `SO_REUSEPORT` set with `socket2`
    /// so that several listeners, each on its own thread, share one port.
    ///
    /// ```no_run
    /// use sonar_async::{Config, Listener, Runtime};
    /// # async fn demo<R: Runtime>(rt: R) -> std::io::Result<()> {
    /// let std_listener = std::net::TcpListener::bind("127.0.0.1:0")?;
    /// let listener = Listener::from_std(rt, std_listener, Config::default())?;
    /// let (incoming, peer) = listener.accept().await?;
    /// # drop((incoming, peer)); Ok(()) }
    /// ```
    pub fn from_std(rt: R, listener: std::net::TcpListener, config: Config) -> io::Result<Self> {
        listener.set_nonblocking(true)?;
        let inner = rt.listener_from_std(listener)?;
        Ok(Listener {
            rt,
            inner,
            config: Arc::new(config),
        })
    }

    /// The bound address (useful with port 0).
    pub fn local_addr(&self) -> io::Result<SocketAddr> {
        self.rt.local_addr(&self.inner)
    }

    /// Waits for the next TCP connection.
    pub async fn accept(&self) -> io::Result<(Incoming<R>, SocketAddr)> {
        let (tcp, peer) = self.rt.accept_tcp(&self.inner).await?;
        let incoming = Incoming {
            rt: self.rt.clone(),
            tcp,
            config: Arc::clone(&self.config),
        };
        Ok((incoming, peer))
    }
}

/// An accepted TCP connection that has not done its WebSocket handshake yet.
pub struct Incoming<R: Runtime> {
    rt: R,
    tcp: R::Tcp,
    config: Arc<Config>,
}

impl<R: Runtime> std::fmt::Debug for Incoming<R> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Incoming").finish_non_exhaustive()
    }
}

impl<R: Runtime> Incoming<R> {
    /// Runs the handshake, accepting any path and no subprotocol.
    ///
    /// The handshake runs in a boxed future: its buffers and timer are freed when it is
    /// done, so the task that awaits it (and lives as long as the connection) stays small.
    pub fn upgrade(self) -> impl Future<Output = Result<WebSocket, Error>> {
        let handshake = self.upgrade_with(|_| Ok(None));
        async move { handshake.await.map(|(ws, _)| ws) }
    }

    /// Runs the handshake with a policy that sees the request first (see
    /// [`server_with`](crate::server_with)). Boxed like [`upgrade`](Self::upgrade).
    pub fn upgrade_with<F>(
        self,
        policy: F,
    ) -> impl Future<Output = Result<(WebSocket, UpgradeRequest), Error>>
    where
        F: FnOnce(&UpgradeRequest) -> Result<Option<String>, Rejection>,
    {
        let Incoming { rt, tcp, config } = self;
        Box::pin(async move {
            accept_with(&rt, R::transport(tcp), Config::clone(&config), policy).await
        })
    }

    /// Runs the TLS handshake with `acceptor`, then the WebSocket handshake (`wss://`).
    /// Boxed like [`upgrade`](Self::upgrade).
    #[cfg(feature = "rustls")]
    pub fn upgrade_tls<F>(
        self,
        acceptor: &crate::tls::TlsAcceptor,
        policy: F,
    ) -> impl Future<Output = Result<(WebSocket, UpgradeRequest), Error>>
    where
        F: FnOnce(&UpgradeRequest) -> Result<Option<String>, Rejection>,
    {
        let Incoming { rt, tcp, config } = self;
        Box::pin(async move {
            let timer = rt.timer();
            let tls =
                crate::handshake::timeout(&*timer, config.handshake_timeout, acceptor.accept(tcp))
                    .await??;
            accept_with(&rt, tls, Config::clone(&config), policy).await
        })
    }

    /// The raw TCP stream, for callers that handle the upgrade themselves.
    pub fn into_inner(self) -> R::Tcp {
        self.tcp
    }
}

/// Connects to a `ws://` URL: TCP, the opening handshake, and the keeper task spawned on
/// `rt`. Returns the handle and what the server accepted.
pub async fn connect<R: Runtime>(
    rt: &R,
    request: ClientRequest,
    config: Config,
) -> Result<(WebSocket, Accepted), Error> {
    // Boxed for the same reason as `Incoming::upgrade_with`.
    Box::pin(connect_inner(rt, request, config)).await
}

async fn connect_inner<R: Runtime>(
    rt: &R,
    request: ClientRequest,
    config: Config,
) -> Result<(WebSocket, Accepted), Error> {
    let timer = rt.timer();
    let limit = config.handshake_timeout;
    let tcp = crate::handshake::timeout(
        &*timer,
        limit,
        rt.connect_tcp(request.host(), request.port()),
    )
    .await??;
    if request.is_secure() {
        #[cfg(feature = "rustls")]
        {
            let host = request.host().to_owned();
            let tls =
                crate::handshake::timeout(&*timer, limit, crate::tls::connect(&config, &host, tcp))
                    .await??;
            let (ws, keeper, accepted) = crate::client(tls, request, config, timer).await?;
            spawn_keeper(rt, keeper);
            return Ok((ws, accepted));
        }
        #[cfg(not(feature = "rustls"))]
        {
            drop(tcp);
            return Err(Error::TlsNotEnabled);
        }
    }
    let (ws, keeper, accepted) = crate::client(R::transport(tcp), request, config, timer).await?;
    spawn_keeper(rt, keeper);
    Ok((ws, accepted))
}

/// Runs the server handshake on an accepted stream and spawns the keeper task on `rt`.
/// `policy` may inspect the request and pick a subprotocol or reject it (see
/// [`server_with`](crate::server_with)).
pub async fn accept_with<R, T, F>(
    rt: &R,
    io: T,
    config: Config,
    policy: F,
) -> Result<(WebSocket, UpgradeRequest), Error>
where
    R: Runtime,
    T: AsyncRead + AsyncWrite + Unpin + Send + 'static,
    F: FnOnce(&UpgradeRequest) -> Result<Option<String>, Rejection>,
{
    let (ws, keeper, req) = crate::server_with(io, config, rt.timer(), policy).await?;
    spawn_keeper(rt, keeper);
    Ok((ws, req))
}

fn spawn_keeper<R: Runtime>(rt: &R, keeper: crate::Keeper) {
    rt.spawn(keeper.detach());
}

/// Connects to a `ws://` URL with the default configuration (see [`connect`]).
pub async fn connect_url<R: Runtime>(rt: &R, url: &str) -> Result<WebSocket, Error> {
    let request = ClientRequest::from_url(url).map_err(Error::Url)?;
    connect(rt, request, Config::default())
        .await
        .map(|(ws, _)| ws)
}

/// Writes the conveniences every runtime adapter offers (`connect`, `connect_with`,
/// `listen`, and the `Listener` / `Incoming` aliases) for one [`Runtime`] value, so the
/// adapters share them instead of repeating them.
#[doc(hidden)]
#[macro_export]
macro_rules! adapter_conveniences {
    ($rt:expr, $Rt:ty, $name:literal) => {
        #[doc = concat!("A WebSocket listener on ", $name, " (see [`listen`]).")]
        pub type Listener = $crate::Listener<$Rt>;
        #[doc = concat!("An accepted, not yet upgraded connection on ", $name, ".")]
        pub type Incoming = $crate::Incoming<$Rt>;
        #[doc = concat!("A client that connects again whenever its connection has ended, on ", $name, " (see `sonar_async::Reconnect`).")]
        pub type Reconnect = $crate::Reconnect<$Rt>;

        #[doc = concat!("Connects to a `ws://` (or, with the `rustls` feature, `wss://`) URL with \
            the default configuration; the keeper task runs on ", $name, ".")]
        pub async fn connect(
            url: &str,
        ) -> ::core::result::Result<$crate::WebSocket, $crate::Error> {
            $crate::connect_url(&$rt, url).await
        }

        /// Connects with a full request (headers, subprotocols) and configuration.
        pub async fn connect_with(
            request: $crate::ClientRequest,
            config: $crate::Config,
        ) -> ::core::result::Result<($crate::WebSocket, $crate::Accepted), $crate::Error> {
            $crate::connect(&$rt, request, config).await
        }

        /// Binds a WebSocket listener on `addr`; every connection gets `config`.
        pub async fn listen(
            addr: ::std::net::SocketAddr,
            config: $crate::Config,
        ) -> ::std::io::Result<Listener> {
            $crate::Listener::bind($rt, addr, config).await
        }
    };
}
