//! Shared test parts: an echo app on the extractor, plain and TLS servers (HTTP/1.1 and
//! HTTP/2 on the same port), hyper's HTTP/2 client with extended CONNECT, raw frames.
#![allow(
    dead_code,
    unreachable_pub,
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic
)]

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use axum::Router;
use axum::extract::State;
use axum::response::Response;
use axum::routing::{any, get};
use http_body_util::Empty;
use hyper::body::Bytes;
use hyper_util::rt::{TokioExecutor, TokioIo};
use sonar_axum::{UpgradeInfo, WebSocketUpgrade};
use sonar_tokio::{Compat, Config, Error, Message, Role, WebSocket};
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::mpsc;
use tokio_rustls::rustls;

/// The bound on every wait in these tests.
pub const LIMIT: Duration = Duration::from_secs(10);

/// The subprotocol the echo app selects when offered.
pub const PROTOCOL: &str = "echo.v1";

/// What the echo handler saw of one WebSocket.
#[derive(Debug)]
pub enum Event {
    /// The handler started, with what the extractor told it.
    Upgraded(UpgradeInfo),
    /// The handler's receive loop ended: `None` when the stream ended cleanly.
    Ended(Option<Error>),
}

#[derive(Clone)]
struct AppState {
    config: Config,
    events: mpsc::UnboundedSender<Event>,
}

async fn echo(State(state): State<AppState>, ws: WebSocketUpgrade) -> Response {
    ws.protocols(["other.v9", PROTOCOL])
        .config(state.config.clone())
        .on_upgrade_with(move |socket, info| async move {
            let _ = state.events.send(Event::Upgraded(info));
            let end = echo_loop(socket).await;
            let _ = state.events.send(Event::Ended(end));
        })
}

/// Echoes until the stream ends; the error that ended it, if any.
pub async fn echo_loop(mut socket: WebSocket) -> Option<Error> {
    while let Some(message) = socket.recv().await {
        match message {
            Ok(message) => {
                if let Err(e) = socket.send(message).await {
                    return Some(e);
                }
            }
            Err(e) => return Some(e),
        }
    }
    None
}

/// `/echo` (any method: HTTP/2 uses CONNECT) is the WebSocket, `/health` plain HTTP.
pub fn echo_app(config: Config) -> (Router, mpsc::UnboundedReceiver<Event>) {
    let (events, rx) = mpsc::unbounded_channel();
    let app = Router::new()
        .route("/echo", any(echo))
        .route("/health", get(|| async { "ok" }))
        .with_state(AppState { config, events });
    (app, rx)
}

/// Serves `app` with `axum::serve` (HTTP/1.1, and HTTP/2 with prior knowledge) on loopback.
pub async fn serve_plain(app: Router) -> SocketAddr {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move { axum::serve(listener, app).await });
    addr
}

/// A self-signed certificate for `localhost` and `127.0.0.1`.
pub struct Cert {
    pub der: rustls::pki_types::CertificateDer<'static>,
    pub key: rustls::pki_types::PrivatePkcs8KeyDer<'static>,
}

pub fn cert() -> Cert {
    let ck =
        rcgen::generate_simple_self_signed(vec!["localhost".into(), "127.0.0.1".into()]).unwrap();
    Cert {
        der: ck.cert.der().clone(),
        key: rustls::pki_types::PrivatePkcs8KeyDer::from(ck.signing_key.serialize_der()),
    }
}

fn provider() -> Arc<rustls::crypto::CryptoProvider> {
    Arc::new(rustls::crypto::ring::default_provider())
}

/// Serves `app` over TLS on loopback, ALPN `h2` then `http/1.1`, with hyper-util's
/// auto builder (extended CONNECT enabled, as `axum::serve` does).
pub async fn serve_tls(app: Router, cert: &Cert) -> SocketAddr {
    let mut config = rustls::ServerConfig::builder_with_provider(provider())
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_no_client_auth()
        .with_single_cert(vec![cert.der.clone()], cert.key.clone_key().into())
        .unwrap();
    config.alpn_protocols = vec![b"h2".to_vec(), b"http/1.1".to_vec()];
    let acceptor = tokio_rustls::TlsAcceptor::from(Arc::new(config));
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move {
        loop {
            let Ok((tcp, _)) = listener.accept().await else {
                return;
            };
            let _ = tcp.set_nodelay(true);
            let acceptor = acceptor.clone();
            let app = app.clone();
            tokio::spawn(async move {
                let Ok(tls) = acceptor.accept(tcp).await else {
                    return;
                };
                let mut builder =
                    hyper_util::server::conn::auto::Builder::new(TokioExecutor::new());
                builder.http2().enable_connect_protocol();
                let service = hyper_util::service::TowerToHyperService::new(app);
                let _ = builder
                    .serve_connection_with_upgrades(TokioIo::new(tls), service)
                    .await;
            });
        }
    });
    addr
}

/// A TLS client that trusts `cert` and offers only `h2`.
pub async fn tls_connect(
    addr: SocketAddr,
    cert: &Cert,
) -> tokio_rustls::client::TlsStream<TcpStream> {
    let mut roots = rustls::RootCertStore::empty();
    roots.add(cert.der.clone()).unwrap();
    let mut config = rustls::ClientConfig::builder_with_provider(provider())
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_root_certificates(roots)
        .with_no_client_auth();
    config.alpn_protocols = vec![b"h2".to_vec()];
    let connector = tokio_rustls::TlsConnector::from(Arc::new(config));
    let tcp = TcpStream::connect(addr).await.unwrap();
    let name = rustls::pki_types::ServerName::try_from("localhost").unwrap();
    connector.connect(name, tcp).await.unwrap()
}

pub type H2Sender = hyper::client::conn::http2::SendRequest<Empty<Bytes>>;

/// hyper's HTTP/2 client over `io`, ready for extended CONNECT: it has seen the server's
/// SETTINGS (one plain request has been answered) and the server enabled the protocol.
pub async fn h2_client<T>(io: T, authority: &str) -> H2Sender
where
    T: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    let (mut sender, conn) = hyper::client::conn::http2::Builder::new(TokioExecutor::new())
        .handshake(TokioIo::new(io))
        .await
        .unwrap();
    // The connection task answers one question once asked: did the server enable
    // extended CONNECT? (Its SETTINGS come before any response, so once `/health` is
    // answered they have been read.)
    type Reply = tokio::sync::oneshot::Sender<bool>;
    let (ask_tx, ask_rx) = tokio::sync::oneshot::channel::<Reply>();
    tokio::spawn(async move {
        let mut conn = std::pin::pin!(conn);
        let mut ask = Some(ask_rx);
        std::future::poll_fn(|cx| {
            let poll = conn.as_mut().poll(cx);
            if let Some(rx) = ask.as_mut()
                && let std::task::Poll::Ready(asked) = std::pin::Pin::new(rx).poll(cx)
            {
                ask = None;
                if let Ok(reply) = asked {
                    let _ = reply.send(conn.is_extended_connect_protocol_enabled());
                }
            }
            poll
        })
        .await
    });
    let health = http::Request::get(format!("http://{authority}/health"))
        .body(Empty::new())
        .unwrap();
    let response = sender.send_request(health).await.unwrap();
    assert_eq!(response.status(), 200);
    let (reply_tx, reply_rx) = tokio::sync::oneshot::channel();
    ask_tx.send(reply_tx).unwrap();
    let enabled = tokio::time::timeout(LIMIT, reply_rx)
        .await
        .unwrap()
        .unwrap();
    assert!(
        enabled,
        "the server enables extended CONNECT (SETTINGS_ENABLE_CONNECT_PROTOCOL)"
    );
    sender
}

/// An extended CONNECT request for a WebSocket at `path`.
pub fn h2_request(authority: &str, path: &str, scheme: &str) -> http::request::Builder {
    http::Request::builder()
        .method(http::Method::CONNECT)
        .uri(format!("{scheme}://{authority}{path}"))
        .extension(hyper::ext::Protocol::from_static("websocket"))
        .header("sec-websocket-version", "13")
}

/// Opens a WebSocket over `sender` with extended CONNECT, offering [`PROTOCOL`]; returns a
/// sonar client on the stream and the response head.
pub async fn h2_websocket(
    sender: &mut H2Sender,
    authority: &str,
    scheme: &str,
    config: Config,
) -> (WebSocket, http::response::Parts) {
    let request = h2_request(authority, "/echo", scheme)
        .header("sec-websocket-protocol", PROTOCOL)
        .body(Empty::new())
        .unwrap();
    let upgraded = h2_upgrade(sender, request).await;
    let (parts, io) = upgraded;
    (
        sonar_tokio::from_upgraded(TokioIo::new(io), Role::Client, config),
        parts,
    )
}

/// Sends an extended CONNECT, expects 200 and returns the response head and the stream.
pub async fn h2_upgrade(
    sender: &mut H2Sender,
    request: http::Request<Empty<Bytes>>,
) -> (http::response::Parts, hyper::upgrade::Upgraded) {
    let mut response = sender.send_request(request).await.unwrap();
    assert_eq!(response.status(), 200, "extended CONNECT accepted");
    let upgraded = tokio::time::timeout(LIMIT, hyper::upgrade::on(&mut response))
        .await
        .unwrap()
        .unwrap();
    (response.into_parts().0, upgraded)
}

/// Echoes a spread of messages (empty, text, binary, 1 MiB) through `ws` and checks them.
pub async fn check_echo(ws: &mut WebSocket) {
    let big: Vec<u8> = (0..(1usize << 20)).map(|i| (i * 7 % 251) as u8).collect();
    let messages = [
        Message::text(""),
        Message::text("hello"),
        Message::binary((0..=255u8).collect::<Vec<_>>()),
        Message::text("é".repeat(40_000)),
        Message::binary(big),
    ];
    for message in messages {
        ws.send(message.clone()).await.unwrap();
        let echoed = tokio::time::timeout(LIMIT, ws.recv())
            .await
            .expect("echo in time")
            .expect("stream open")
            .unwrap();
        assert_eq!(echoed, message);
    }
}

/// Waits for the next event of the echo handler.
pub async fn next_event(events: &mut mpsc::UnboundedReceiver<Event>) -> Event {
    tokio::time::timeout(LIMIT, events.recv())
        .await
        .expect("handler event in time")
        .expect("handler events open")
}

/// A masked client frame (FIN set).
pub fn client_frame(opcode: u8, payload: &[u8], mask: [u8; 4]) -> Vec<u8> {
    sonar_testkit::FrameBuilder::new(opcode, payload)
        .mask(mask)
        .build()
}

/// Reads one unmasked server frame: (first byte, payload).
pub async fn read_server_frame<T: AsyncRead + Unpin>(io: &mut T) -> (u8, Vec<u8>) {
    let frame = sonar_testkit::read_frame_async(&mut Compat::new(io))
        .await
        .unwrap();
    assert_eq!(frame.header.mask, None, "server frames are not masked");
    let len = frame.payload.len();
    assert!(len <= 1 << 20, "frame length {len} in bounds");
    frame.into_pair()
}

/// Reads an HTTP/1.1 response head (bounded): status and lower-cased headers.
pub async fn read_response_head<T: AsyncRead + Unpin>(io: &mut T) -> (u16, Vec<(String, String)>) {
    let head = sonar_testkit::read_head_exact_async(&mut Compat::new(io))
        .await
        .expect("response head in bounds");
    let text = String::from_utf8(head).unwrap();
    let mut lines = text.split("\r\n");
    let status = lines
        .next()
        .and_then(|l| l.split(' ').nth(1))
        .and_then(|s| s.parse().ok())
        .unwrap();
    let headers = lines
        .filter_map(|l| l.split_once(':'))
        .map(|(n, v)| (n.trim().to_ascii_lowercase(), v.trim().to_owned()))
        .collect();
    (status, headers)
}

/// The value of header `name` in `headers` (from [`read_response_head`]).
pub fn header<'a>(headers: &'a [(String, String)], name: &str) -> Option<&'a str> {
    headers
        .iter()
        .find(|(n, _)| n == name)
        .map(|(_, v)| v.as_str())
}
