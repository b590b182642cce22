//! Opening handshakes over any futures-io stream, each bounded by the handshake timeout.

use std::future::{Future, poll_fn};
use std::pin::{Pin, pin};
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use bytes::BytesMut;
use futures_io::{AsyncRead, AsyncWrite};
use sonar_core::{Connection, Role};
use sonar_handshake::{
    AcceptOptions, Accepted, ClientHandshake, ClientRequest, DeflateParams, Rejection,
    Request as UpgradeRequest, ServerHandshake,
};
use sonar_keepalive::ping_channel;

use crate::conn::{Inner, Parts, Transport, codec_config};
use crate::keeper::Keeper;
use crate::{Config, Error, Timer, WebSocket, rng};

/// Bytes read per call while the handshake head is incomplete.
const HEAD_READ: usize = 2048;
/// The most bytes buffered while waiting for a handshake head; the handshake decoders
/// reject heads larger than their own (smaller) limits well before this.
const HEAD_BUFFER_MAX: usize = 64 * 1024;

/// Runs the client's opening handshake over `io` (a connected TCP or TLS stream), then
/// returns the application's handle, the keeper task to spawn ([`Keeper`]), and what the server
/// accepted (subprotocol, extensions, headers).
///
/// Bytes the server sent right after its `101` response (often a first Ping) are kept and
/// handed to the codec before anything else is read.
pub async fn client<T>(
    mut io: T,
    request: ClientRequest,
    config: Config,
    timer: Arc<dyn Timer>,
) -> Result<(WebSocket, Keeper, Accepted), Error>
where
    T: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    let handshake_timeout = config.handshake_timeout;
    // The request's own permessage-deflate offer wins; otherwise the configuration's.
    let request = match request.deflate() {
        Some(_) => request,
        None => request.with_deflate(config.deflate),
    };
    let work = client_head(&mut io, request);
    let (accepted, leftover) = timeout(&*timer, handshake_timeout, work).await??;
    tracing::debug!(subprotocol = ?accepted.subprotocol, "websocket client connected");
    let conn = Connection::client(
        codec_config(&config, accepted.deflate),
        Box::new(rng::OsMask::new()),
    );
    let (ws, keeper) = assemble(io, conn, leftover, config, timer);
    Ok((ws, keeper, accepted))
}

/// Writes the client's upgrade request and reads the server's response head: the one
/// client handshake loop, shared by [`client`] and [`client_raw`]. Returns what the server
/// accepted and the bytes read past the head.
async fn client_head<T>(io: &mut T, request: ClientRequest) -> Result<(Accepted, BytesMut), Error>
where
    T: AsyncRead + AsyncWrite + Unpin,
{
    let mut hs = ClientHandshake::new(request, rng::handshake_key());
    let mut out = Vec::with_capacity(256);
    hs.encode_request(&mut out);
    write_all(io, &out).await?;
    let mut buf = BytesMut::with_capacity(HEAD_READ);
    loop {
        if read_some(io, &mut buf).await? == 0 {
            return Err(Error::HandshakeEof);
        }
        match hs.decode_response(&buf) {
            Ok(Some((accepted, used))) => {
                let _head = buf.split_to(used.min(buf.len()));
                return Ok((accepted, buf));
            }
            Ok(None) if buf.len() >= HEAD_BUFFER_MAX => return Err(Error::HandshakeEof),
            Ok(None) => {}
            Err(e) => return Err(Error::Handshake(e)),
        }
    }
}

/// A client connection right after its opening handshake, with no codec and no keeper task:
/// what [`client_raw`] returns, for tools that read and write frames themselves (a ping
/// tool that must see a broken pong as sent, a protocol tester).
#[derive(Debug)]
#[non_exhaustive]
pub struct RawClient<T> {
    /// The transport: the stream passed in, or TLS over it for a `wss://` request.
    pub io: ClientStream<T>,
    /// What the server accepted (subprotocol, extensions, headers).
    pub accepted: Accepted,
    /// Bytes the server sent after its `101` head, in the same reads (often a first
    /// frame): the start of the WebSocket stream, to parse before reading `io` again.
    pub leftover: BytesMut,
}

/// The stream of a [`RawClient`]: plain for `ws://`, TLS for `wss://`. Reads and writes go
/// straight to the transport.
#[derive(Debug)]
#[non_exhaustive]
pub enum ClientStream<T> {
    /// `ws://`: the stream itself.
    Plain(T),
    /// `wss://`: rustls over the stream (feature `rustls`).
    #[cfg(feature = "rustls")]
    Tls(Box<futures_rustls::client::TlsStream<T>>),
}

impl<T: AsyncRead + AsyncWrite + Unpin> AsyncRead for ClientStream<T> {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut [u8],
    ) -> Poll<std::io::Result<usize>> {
        match self.get_mut() {
            ClientStream::Plain(io) => Pin::new(io).poll_read(cx, buf),
            #[cfg(feature = "rustls")]
            ClientStream::Tls(io) => Pin::new(io.as_mut()).poll_read(cx, buf),
        }
    }
}

impl<T: AsyncRead + AsyncWrite + Unpin> AsyncWrite for ClientStream<T> {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<std::io::Result<usize>> {
        match self.get_mut() {
            ClientStream::Plain(io) => Pin::new(io).poll_write(cx, buf),
            #[cfg(feature = "rustls")]
            ClientStream::Tls(io) => Pin::new(io.as_mut()).poll_write(cx, buf),
        }
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        match self.get_mut() {
            ClientStream::Plain(io) => Pin::new(io).poll_flush(cx),
            #[cfg(feature = "rustls")]
            ClientStream::Tls(io) => Pin::new(io.as_mut()).poll_flush(cx),
        }
    }

    fn poll_close(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        match self.get_mut() {
            ClientStream::Plain(io) => Pin::new(io).poll_close(cx),
            #[cfg(feature = "rustls")]
            ClientStream::Tls(io) => Pin::new(io.as_mut()).poll_close(cx),
        }
    }
}

/// Runs the client's opening handshake over `io` (a connected TCP stream) and hands back the
/// raw transport, without a codec or keeper task: TLS first when `request` is `wss://`
/// (`Config::tls`, or the default roots), then the upgrade request, then the `101` head.
/// TLS and the upgrade together are bounded by [`Config::handshake_timeout`]
/// ([`Error::HandshakeTimeout`]).
///
/// The request is sent as given: no permessage-deflate offer is added (a raw caller has no
/// inflater), and of the configuration only the TLS settings and the timeout are used.
/// Frames the server wrote in the same segment as its `101` are in
/// [`RawClient::leftover`], never lost.
///
/// ```no_run
/// use sonar_async::{ClientRequest, Config, Timer};
/// use futures_util::io::AsyncWriteExt;
///
/// # async fn demo<T>(tcp: T, timer: &dyn Timer) -> Result<(), sonar_async::Error>
/// # where T: futures_io::AsyncRead + futures_io::AsyncWrite + Unpin {
/// let request = ClientRequest::from_url("ws://127.0.0.1:9001/")?;
/// let mut raw = sonar_async::client_raw(tcp, request, &Config::default(), timer).await?;
/// // Frames the server sent along with its 101 come first.
/// println!("{} bytes already read", raw.leftover.len());
/// // A masked, empty Ping frame, written by hand.
/// raw.io.write_all(&[0x89, 0x80, 0, 0, 0, 0]).await?;
/// # Ok(()) }
/// ```
pub async fn client_raw<T>(
    io: T,
    request: ClientRequest,
    config: &Config,
    timer: &dyn Timer,
) -> Result<RawClient<T>, Error>
where
    T: AsyncRead + AsyncWrite + Unpin,
{
    let work = async {
        let mut io = secure(io, &request, config).await?;
        let (accepted, leftover) = client_head(&mut io, request).await?;
        Ok(RawClient {
            io,
            accepted,
            leftover,
        })
    };
    timeout(timer, config.handshake_timeout, work).await?
}

/// TLS over `io` when the request is `wss://`.
async fn secure<T>(
    io: T,
    request: &ClientRequest,
    config: &Config,
) -> Result<ClientStream<T>, Error>
where
    T: AsyncRead + AsyncWrite + Unpin,
{
    if !request.is_secure() {
        return Ok(ClientStream::Plain(io));
    }
    #[cfg(feature = "rustls")]
    {
        let tls = crate::tls::connect(config, request.host(), io).await?;
        Ok(ClientStream::Tls(Box::new(tls)))
    }
    #[cfg(not(feature = "rustls"))]
    {
        let _ = (io, config);
        Err(Error::TlsNotEnabled)
    }
}

/// Runs the server's opening handshake over `io`, accepting any path and no subprotocol.
/// See [`server_with`] to route, authenticate or pick a subprotocol.
pub async fn server<T>(
    io: T,
    config: Config,
    timer: Arc<dyn Timer>,
) -> Result<(WebSocket, Keeper, UpgradeRequest), Error>
where
    T: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    server_with(io, config, timer, |_| Ok(None)).await
}

/// Runs the server's opening handshake over `io`. `policy` sees the request (path, query,
/// headers, offered subprotocols) before anything is answered, and returns the subprotocol to
/// select (or `None`), or a [`Rejection`] (403, 404, ...) that is sent instead of the `101`.
///
/// Malformed requests are answered with the right HTTP error (400, 426 with
/// `Sec-WebSocket-Version: 13`, 431) and reported as [`Error::Rejected`].
pub async fn server_with<T, F>(
    mut io: T,
    config: Config,
    timer: Arc<dyn Timer>,
    policy: F,
) -> Result<(WebSocket, Keeper, UpgradeRequest), Error>
where
    T: AsyncRead + AsyncWrite + Unpin + Send + 'static,
    F: FnOnce(&UpgradeRequest) -> Result<Option<String>, Rejection>,
{
    let handshake_timeout = config.handshake_timeout;
    let work = async {
        let hs = ServerHandshake::default();
        let mut buf = BytesMut::with_capacity(HEAD_READ);
        let decoded = loop {
            if read_some(&mut io, &mut buf).await? == 0 {
                return Err(Error::HandshakeEof);
            }
            match hs.decode_request(&buf) {
                Ok(Some(done)) => break Ok(done),
                Ok(None) if buf.len() >= HEAD_BUFFER_MAX => return Err(Error::HandshakeEof),
                Ok(None) => {}
                Err(rejection) => break Err(rejection),
            }
        };
        let mut out = Vec::with_capacity(256);
        let answer = decoded.and_then(|(req, used)| {
            let protocol = policy(&req)?;
            Ok((req, used, protocol))
        });
        match answer {
            Ok((req, used, protocol)) => {
                let deflate = req.negotiate_deflate(&config.deflate);
                let mut opts = AcceptOptions::new();
                if let Some(p) = protocol {
                    opts = opts.with_subprotocol(p);
                }
                if let Some(answer) = &deflate {
                    opts = opts.with_deflate(answer);
                }
                hs.encode_accept_with(&req, &opts, &mut out);
                write_all(&mut io, &out).await?;
                let _head = buf.split_to(used.min(buf.len()));
                Ok((req, buf, deflate.map(|a| a.params)))
            }
            Err(rejection) => {
                ServerHandshake::encode_reject(&rejection, &mut out);
                write_all(&mut io, &out).await?;
                let _ = poll_fn(|cx| Pin::new(&mut io).poll_close(cx)).await;
                Err(Error::Rejected(rejection))
            }
        }
    };
    let (req, leftover, deflate) = timeout(&*timer, handshake_timeout, work).await??;
    tracing::debug!(
        path = req.path(),
        deflate = deflate.is_some(),
        "websocket server accepted"
    );
    let conn = Connection::server(codec_config(&config, deflate));
    let (ws, keeper) = assemble(io, conn, leftover, config, timer);
    Ok((ws, keeper, req))
}

/// Wraps a stream whose upgrade another HTTP server already completed (hyper, axum):
/// `leftover` is whatever that server read past the request or response head. No
/// extension is in use; see [`from_upgraded_deflate`] when the upgrade agreed on
/// permessage-deflate.
pub fn from_upgraded<T>(
    io: T,
    role: Role,
    leftover: &[u8],
    config: Config,
    timer: Arc<dyn Timer>,
) -> (WebSocket, Keeper)
where
    T: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    upgraded(io, role, leftover, None, config, timer)
}

/// [`from_upgraded`] for an upgrade that agreed on permessage-deflate: `deflate` is the
/// agreement (a server's `Request::negotiate_deflate(..).params`, written into its `101` with
/// `AcceptOptions::with_deflate`; a client's `Accepted::deflate`).
pub fn from_upgraded_deflate<T>(
    io: T,
    role: Role,
    leftover: &[u8],
    deflate: DeflateParams,
    config: Config,
    timer: Arc<dyn Timer>,
) -> (WebSocket, Keeper)
where
    T: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    upgraded(io, role, leftover, Some(deflate), config, timer)
}

fn upgraded<T>(
    io: T,
    role: Role,
    leftover: &[u8],
    deflate: Option<DeflateParams>,
    config: Config,
    timer: Arc<dyn Timer>,
) -> (WebSocket, Keeper)
where
    T: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    let codec = codec_config(&config, deflate);
    let conn = match role {
        Role::Client => Connection::client(codec, Box::new(rng::OsMask::new())),
        Role::Server => Connection::server(codec),
    };
    assemble(io, conn, BytesMut::from(leftover), config, timer)
}

fn assemble<T>(
    io: T,
    conn: Connection,
    leftover: BytesMut,
    config: Config,
    timer: Arc<dyn Timer>,
) -> (WebSocket, Keeper)
where
    T: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    let (registry, pinger) = ping_channel(config.max_queued_pings.max(1));
    let inner = Inner::new(Parts {
        io: Transport::new(io),
        conn,
        leftover,
        config,
        timer,
        registry,
        salt: rng::salt(),
    });
    (WebSocket::new(inner.clone(), pinger), Keeper::new(inner))
}

pub(crate) async fn timeout<F: Future>(
    timer: &dyn Timer,
    limit: Duration,
    fut: F,
) -> Result<F::Output, Error> {
    let mut sleep = timer.sleep_until(timer.now() + limit);
    let mut fut = pin!(fut);
    poll_fn(|cx| {
        if let Poll::Ready(v) = fut.as_mut().poll(cx) {
            return Poll::Ready(Ok(v));
        }
        if sleep.as_mut().poll(cx).is_ready() {
            return Poll::Ready(Err(Error::HandshakeTimeout));
        }
        Poll::Pending
    })
    .await
}

async fn write_all<T: AsyncWrite + Unpin>(io: &mut T, mut data: &[u8]) -> Result<(), Error> {
    while !data.is_empty() {
        let n = poll_fn(|cx| Pin::new(&mut *io).poll_write(cx, data)).await?;
        if n == 0 {
            return Err(std::io::Error::from(std::io::ErrorKind::WriteZero).into());
        }
        data = data.get(n..).unwrap_or_default();
    }
    poll_fn(|cx| Pin::new(&mut *io).poll_flush(cx)).await?;
    Ok(())
}

/// Appends what one read returns to `buf`; 0 means end of stream.
async fn read_some<T: AsyncRead + Unpin>(io: &mut T, buf: &mut BytesMut) -> Result<usize, Error> {
    let len = buf.len();
    buf.resize(len + HEAD_READ, 0);
    let result = poll_fn(|cx| Pin::new(&mut *io).poll_read(cx, &mut buf[len..])).await;
    match result {
        Ok(n) => {
            buf.truncate(len + n);
            Ok(n)
        }
        Err(e) => {
            buf.truncate(len);
            Err(e.into())
        }
    }
}
