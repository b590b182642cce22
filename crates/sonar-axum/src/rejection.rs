//! Why an upgrade request was refused, and the HTTP response that says so.

use axum::body::Body;
use axum::response::{IntoResponse, Response};
use http::header::{CONTENT_TYPE, HeaderValue, SEC_WEBSOCKET_VERSION};
use sonar_tokio::{RejectReason, Rejection, StatusCode};

/// Why the [`WebSocketUpgrade`](crate::WebSocketUpgrade) extractor refused a request.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum RejectionReason {
    /// The request failed the checks of sonar's own server handshake (for HTTP/1.1 all of
    /// them; for HTTP/2 the version, subprotocol, extension and host checks), with the same
    /// status: 400, or 426 with `Sec-WebSocket-Version: 13` for a version other than 13.
    #[error(transparent)]
    Handshake(RejectReason),
    /// An HTTP/2 request whose method is not `CONNECT` (RFC 8441 §4). 400.
    #[error("http/2 websocket requests must use the connect method")]
    MethodNotConnect,
    /// An HTTP/2 `CONNECT` without `:protocol` = `websocket` (RFC 8441 §4). 400.
    #[error("http/2 websocket requests must carry the :protocol pseudo-header websocket")]
    ProtocolNotWebSocket,
    /// The request is valid but the connection cannot be upgraded: it did not come from a
    /// hyper server with upgrades enabled (or the extractor already took the upgrade). 500.
    #[error("this connection cannot be upgraded")]
    NotUpgradable,
}

impl RejectionReason {
    /// The status this reason is answered with.
    pub fn status(&self) -> StatusCode {
        match self {
            Self::Handshake(reason) => reason.default_status(),
            Self::MethodNotConnect | Self::ProtocolNotWebSocket => StatusCode::BAD_REQUEST,
            Self::NotUpgradable => StatusCode::INTERNAL_SERVER_ERROR,
        }
    }
}

/// The rejection of the [`WebSocketUpgrade`](crate::WebSocketUpgrade) extractor: an HTTP
/// status and a typed reason, answered as a `text/plain` response whose body is the reason
/// (plus `Sec-WebSocket-Version: 13` on a 426), like sonar's own server handshake.
///
/// ```
/// use axum::response::IntoResponse;
/// use sonar_axum::{RejectionReason, WebSocketUpgradeRejection};
/// use sonar_tokio::{RejectReason, StatusCode};
///
/// let rejection = WebSocketUpgradeRejection::from(RejectionReason::Handshake(
///     RejectReason::UnsupportedVersion,
/// ));
/// assert_eq!(rejection.status(), StatusCode::UPGRADE_REQUIRED);
/// let response = rejection.into_response();
/// assert_eq!(response.status(), 426);
/// assert_eq!(response.headers()["sec-websocket-version"], "13");
/// ```
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("websocket upgrade rejected with {status}: {reason}")]
pub struct WebSocketUpgradeRejection {
    status: StatusCode,
    reason: RejectionReason,
}

impl WebSocketUpgradeRejection {
    /// The HTTP status of the response.
    pub fn status(&self) -> StatusCode {
        self.status
    }

    /// Why the request was refused.
    pub fn reason(&self) -> &RejectionReason {
        &self.reason
    }

    /// The plain-text body: the reason and a newline.
    pub fn body(&self) -> String {
        format!("{}\n", self.reason)
    }
}

impl From<RejectionReason> for WebSocketUpgradeRejection {
    fn from(reason: RejectionReason) -> Self {
        Self {
            status: reason.status(),
            reason,
        }
    }
}

impl From<Rejection> for WebSocketUpgradeRejection {
    fn from(rejection: Rejection) -> Self {
        Self {
            status: rejection.status,
            reason: RejectionReason::Handshake(rejection.reason),
        }
    }
}

impl IntoResponse for WebSocketUpgradeRejection {
    fn into_response(self) -> Response {
        let mut response = Response::new(Body::from(self.body()));
        *response.status_mut() = http::StatusCode::from_u16(self.status.as_u16())
            .unwrap_or(http::StatusCode::BAD_REQUEST);
        let headers = response.headers_mut();
        headers.insert(CONTENT_TYPE, HeaderValue::from_static("text/plain"));
        if self.status == StatusCode::UPGRADE_REQUIRED {
            headers.insert(SEC_WEBSOCKET_VERSION, HeaderValue::from_static("13"));
        }
        response
    }
}
