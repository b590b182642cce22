//! The extractor: validate in `from_request_parts`, answer in `on_upgrade`, bridge hyper's
//! upgraded stream to sonar once the response has gone out.

use std::fmt;
use std::future::Future;

use axum::body::Body;
use axum::extract::{FromRequestParts, OptionalFromRequestParts};
use axum::response::Response;
use http::header;
use http::request::Parts;
use hyper::upgrade::OnUpgrade;
use hyper_util::rt::TokioIo;
use sonar_handshake::{AcceptOptions, ServerHandshake};
use sonar_tokio::{Config, DeflateParams, Role, UpgradeRequest, WebSocket};

use crate::rejection::{RejectionReason, WebSocketUpgradeRejection};
use crate::request::{HttpVersion, check, is_websocket_attempt};

/// Extractor for a WebSocket upgrade, over HTTP/1.1 (`GET` + `Upgrade: websocket`) or HTTP/2
/// (extended `CONNECT`, RFC 8441). The handler receives a sonar [`WebSocket`] with keepalive
/// running.
///
/// It has the shape of axum's own `axum::extract::ws::WebSocketUpgrade`: pick a subprotocol
/// with [`protocols`](Self::protocols), set limits and keepalive with
/// [`config`](Self::config), then return [`on_upgrade`](Self::on_upgrade)'s response. HTTP/2
/// requests use the `CONNECT` method, so route with [`any`](axum::routing::any) (a `get`
/// route sees only HTTP/1.1). `axum::serve` enables extended CONNECT on HTTP/2 by itself; a
/// hand-built hyper server needs `http2().enable_connect_protocol()`.
///
/// A request that is not a valid upgrade is refused with a [`WebSocketUpgradeRejection`]:
/// the same statuses as sonar's server handshake (400, 426 with `Sec-WebSocket-Version: 13`).
///
/// ```no_run
/// use axum::{Router, response::Response, routing::any};
/// use sonar_axum::WebSocketUpgrade;
/// use sonar_tokio::{Config, Message};
/// use std::time::Duration;
///
/// async fn chat(ws: WebSocketUpgrade) -> Response {
///     println!("websocket over {}", ws.http_version());
///     ws.protocols(["chat.v2"])
///         .config(Config::default().with_ping_interval(Some(Duration::from_secs(10))))
///         .on_upgrade(|mut socket| async move {
///             while let Some(Ok(message)) = socket.recv().await {
///                 if let Message::Text(text) = &message {
///                     println!("{text} (rtt {:?})", socket.rtt().map(|r| r.smoothed));
///                 }
///                 if socket.send(message).await.is_err() {
///                     break;
///                 }
///             }
///         })
/// }
///
/// # async fn demo() -> std::io::Result<()> {
/// let app = Router::new().route("/chat", any(chat));
/// let listener = tokio::net::TcpListener::bind("127.0.0.1:9001").await?;
/// axum::serve(listener, app).await
/// # }
/// ```
#[must_use]
pub struct WebSocketUpgrade<F = DefaultOnFailedUpgrade> {
    request: UpgradeRequest,
    version: HttpVersion,
    config: Config,
    protocol: Option<String>,
    on_upgrade: OnUpgrade,
    on_failed_upgrade: F,
}

impl<F> fmt::Debug for WebSocketUpgrade<F> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("WebSocketUpgrade")
            .field("version", &self.version)
            .field("requested_protocols", &self.request.subprotocols())
            .field("protocol", &self.protocol)
            .field("config", &self.config)
            .finish_non_exhaustive()
    }
}

/// What the handler of [`WebSocketUpgrade::on_upgrade_with`] learns about its WebSocket.
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub struct UpgradeInfo {
    /// The HTTP version the WebSocket arrived over.
    pub version: HttpVersion,
    /// The subprotocol sent in the response, if any.
    pub protocol: Option<String>,
    /// The permessage-deflate parameters agreed in the response, if the client offered it
    /// and [`Config::deflate`] is enabled.
    pub deflate: Option<DeflateParams>,
}

impl<F> WebSocketUpgrade<F> {
    /// Sets the connection's configuration: message and frame limits, keepalive (ping
    /// interval, pong timeout), queues, close timeout, and compression (`Config::deflate`:
    /// permessage-deflate is accepted when the client offers it, unless disabled). The
    /// handshake timeout does not apply: the HTTP server has read the request already.
    ///
    /// ```
    /// # use sonar_axum::WebSocketUpgrade;
    /// use std::time::Duration;
    /// use sonar_tokio::Config;
    /// # fn demo(ws: WebSocketUpgrade) -> axum::response::Response {
    /// let config = Config::default()
    ///     .with_max_message_size(1 << 20)
    ///     .with_ping_interval(Some(Duration::from_secs(5)))
    ///     .with_pong_timeout(Some(Duration::from_secs(5)));
    /// ws.config(config).on_upgrade(|_socket| async {})
    /// # }
    /// ```
    pub fn config(mut self, config: Config) -> Self {
        self.config = config;
        self
    }

    /// Selects the first of `protocols` (in the server's order of preference) that the
    /// client offered in `Sec-WebSocket-Protocol`; none is selected if the client offered
    /// none of them. The selection is sent in the response.
    ///
    /// ```
    /// # use sonar_axum::WebSocketUpgrade;
    /// # fn demo(ws: WebSocketUpgrade) -> axum::response::Response {
    /// let ws = ws.protocols(["chat.v2", "chat"]);
    /// println!("selected {:?}", ws.selected_protocol());
    /// ws.on_upgrade(|_socket| async {})
    /// # }
    /// ```
    pub fn protocols<I, S>(mut self, protocols: I) -> Self
    where
        I: IntoIterator<Item = S>,
        S: Into<String>,
    {
        self.protocol = ServerHandshake::new()
            .with_subprotocols(protocols)
            .select_subprotocol(&self.request)
            .map(String::from);
        self
    }

    /// The subprotocols the client offered, in its order.
    pub fn requested_protocols(&self) -> impl Iterator<Item = &str> {
        self.request.subprotocols().iter().map(String::as_str)
    }

    /// Selects `protocol` if the client offered it, and returns whether it did (a
    /// subprotocol the client did not offer is never sent).
    pub fn set_selected_protocol(&mut self, protocol: &str) -> bool {
        let offered = self.request.subprotocols().iter().any(|p| p == protocol);
        if offered {
            self.protocol = Some(protocol.to_owned());
        }
        offered
    }

    /// The subprotocol that will be sent in the response, if any.
    pub fn selected_protocol(&self) -> Option<&str> {
        self.protocol.as_deref()
    }

    /// The HTTP version of the request: [`HttpVersion::Http2`] for an RFC 8441 extended
    /// `CONNECT`.
    pub fn http_version(&self) -> HttpVersion {
        self.version
    }

    /// Sets what to call if the HTTP server fails to hand over the connection after the
    /// response (the client went away first, the server shut down). By default the failure
    /// is ignored.
    ///
    /// ```
    /// # use sonar_axum::WebSocketUpgrade;
    /// # fn demo(ws: WebSocketUpgrade) -> axum::response::Response {
    /// ws.on_failed_upgrade(|error| eprintln!("upgrade failed: {error}"))
    ///     .on_upgrade(|_socket| async {})
    /// # }
    /// ```
    pub fn on_failed_upgrade<C: OnFailedUpgrade>(self, callback: C) -> WebSocketUpgrade<C> {
        WebSocketUpgrade {
            request: self.request,
            version: self.version,
            config: self.config,
            protocol: self.protocol,
            on_upgrade: self.on_upgrade,
            on_failed_upgrade: callback,
        }
    }

    /// Returns the response that accepts the WebSocket (`101 Switching Protocols` over
    /// HTTP/1.1, `200 OK` over HTTP/2) and, once the server has handed over the connection,
    /// runs `callback` with the WebSocket in a task of its own.
    ///
    /// ```
    /// # use sonar_axum::WebSocketUpgrade;
    /// # fn demo(ws: WebSocketUpgrade) -> axum::response::Response {
    /// ws.on_upgrade(|mut socket| async move {
    ///     while let Some(Ok(message)) = socket.recv().await {
    ///         if socket.send(message).await.is_err() {
    ///             break;
    ///         }
    ///     }
    /// })
    /// # }
    /// ```
    #[must_use = "the upgrade happens only once this response is returned"]
    pub fn on_upgrade<C, Fut>(self, callback: C) -> Response
    where
        C: FnOnce(WebSocket) -> Fut + Send + 'static,
        Fut: Future<Output = ()> + Send + 'static,
        F: OnFailedUpgrade,
    {
        self.on_upgrade_with(move |socket, _info| callback(socket))
    }

    /// As [`on_upgrade`](Self::on_upgrade), and tells `callback` the HTTP version, the
    /// subprotocol and the compression agreed.
    ///
    /// ```
    /// # use sonar_axum::{HttpVersion, WebSocketUpgrade};
    /// # fn demo(ws: WebSocketUpgrade) -> axum::response::Response {
    /// ws.on_upgrade_with(|socket, info| async move {
    ///     if info.version == HttpVersion::Http2 {
    ///         println!("one stream of an HTTP/2 connection, protocol {:?}", info.protocol);
    ///     }
    ///     drop(socket);
    /// })
    /// # }
    /// ```
    #[must_use = "the upgrade happens only once this response is returned"]
    pub fn on_upgrade_with<C, Fut>(self, callback: C) -> Response
    where
        C: FnOnce(WebSocket, UpgradeInfo) -> Fut + Send + 'static,
        Fut: Future<Output = ()> + Send + 'static,
        F: OnFailedUpgrade,
    {
        let mut options = AcceptOptions::new();
        if let Some(protocol) = &self.protocol {
            options = options.with_subprotocol(protocol.clone());
        }
        // permessage-deflate (RFC 7692), negotiated as sonar's own server handshake does it
        // (`Config::deflate`, on by default): the answer goes into the response of either
        // HTTP version, the agreement to the codec.
        let deflate = self.request.negotiate_deflate(&self.config.deflate);
        if let Some(answer) = &deflate {
            options = options.with_deflate(answer);
        }
        let mut response: Response =
            ServerHandshake::new().accept_response_with::<Body>(&self.request, &options);
        if self.version == HttpVersion::Http2 {
            // RFC 8441 §5: a 2xx, no Upgrade, Connection or accept key.
            *response.status_mut() = http::StatusCode::OK;
            let headers = response.headers_mut();
            headers.remove(header::UPGRADE);
            headers.remove(header::CONNECTION);
            headers.remove(header::SEC_WEBSOCKET_ACCEPT);
        }
        let deflate = deflate.map(|answer| answer.params);
        let info = UpgradeInfo {
            version: self.version,
            protocol: self.protocol,
            deflate,
        };
        let config = self.config;
        let on_upgrade = self.on_upgrade;
        let on_failed_upgrade = self.on_failed_upgrade;
        tokio::spawn(async move {
            match on_upgrade.await {
                Ok(upgraded) => {
                    // hyper replays what it read past the request head, so frames sent
                    // right behind it reach the codec.
                    let io = TokioIo::new(upgraded);
                    let socket = match deflate {
                        Some(params) => {
                            sonar_tokio::from_upgraded_deflate(io, Role::Server, params, config)
                        }
                        None => sonar_tokio::from_upgraded(io, Role::Server, config),
                    };
                    callback(socket, info).await;
                }
                Err(error) => on_failed_upgrade.call(UpgradeError::Upgrade(error)),
            }
        });
        response
    }
}

impl<S: Send + Sync> FromRequestParts<S> for WebSocketUpgrade<DefaultOnFailedUpgrade> {
    type Rejection = WebSocketUpgradeRejection;

    async fn from_request_parts(parts: &mut Parts, _state: &S) -> Result<Self, Self::Rejection> {
        let (request, version) = check(parts)?;
        let on_upgrade = parts
            .extensions
            .remove::<OnUpgrade>()
            .ok_or(RejectionReason::NotUpgradable)?;
        Ok(WebSocketUpgrade {
            request,
            version,
            config: Config::default(),
            protocol: None,
            on_upgrade,
            on_failed_upgrade: DefaultOnFailedUpgrade,
        })
    }
}

/// `Option<WebSocketUpgrade>` serves a page and a WebSocket on one route: `None` for a
/// request that does not ask for a WebSocket (no `Upgrade: websocket`, no HTTP/2
/// `:protocol` of `websocket`); a request that asks for one is validated in full and refused
/// as [`WebSocketUpgrade`] refuses it.
///
/// ```
/// use axum::response::{IntoResponse, Response};
/// use sonar_axum::WebSocketUpgrade;
///
/// async fn page_or_socket(ws: Option<WebSocketUpgrade>) -> Response {
///     match ws {
///         Some(ws) => ws.on_upgrade(|_socket| async {}),
///         None => "an HTML page would be here".into_response(),
///     }
/// }
/// # let _ = axum::Router::<()>::new().route("/", axum::routing::any(page_or_socket));
/// ```
impl<S: Send + Sync> OptionalFromRequestParts<S> for WebSocketUpgrade<DefaultOnFailedUpgrade> {
    type Rejection = WebSocketUpgradeRejection;

    async fn from_request_parts(
        parts: &mut Parts,
        state: &S,
    ) -> Result<Option<Self>, Self::Rejection> {
        if !is_websocket_attempt(parts) {
            return Ok(None);
        }
        <Self as FromRequestParts<S>>::from_request_parts(parts, state)
            .await
            .map(Some)
    }
}

/// Why the HTTP server did not hand over the connection after the upgrade response.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum UpgradeError {
    /// hyper reported the upgrade failed (connection closed first, server shut down, or
    /// the request came without an upgradable connection).
    #[error("http upgrade failed")]
    Upgrade(#[source] hyper::Error),
}

/// What to do when the HTTP server fails to hand over an upgraded connection; see
/// [`WebSocketUpgrade::on_failed_upgrade`]. Implemented for every `FnOnce(UpgradeError)`.
pub trait OnFailedUpgrade: Send + 'static {
    /// Called once, with the failure.
    fn call(self, error: UpgradeError);
}

impl<F> OnFailedUpgrade for F
where
    F: FnOnce(UpgradeError) + Send + 'static,
{
    fn call(self, error: UpgradeError) {
        self(error)
    }
}

/// The default [`OnFailedUpgrade`]: ignores the failure (the client is gone).
#[derive(Clone, Copy, Debug, Default)]
#[non_exhaustive]
pub struct DefaultOnFailedUpgrade;

impl OnFailedUpgrade for DefaultOnFailedUpgrade {
    fn call(self, _error: UpgradeError) {}
}
