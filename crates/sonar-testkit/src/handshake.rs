//! The two heads a raw peer writes: an upgrade request and the 101 that accepts one.

/// The RFC 6455 §1.3 sample `Sec-WebSocket-Key`.
pub const SAMPLE_KEY: &str = "dGhlIHNhbXBsZSBub25jZQ==";
/// The `Sec-WebSocket-Accept` for [`SAMPLE_KEY`].
pub const SAMPLE_ACCEPT: &str = "s3pPLMBiTxaQ9kYGzzhZRbK+xOo=";

/// Why a request head could not be accepted.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum HandshakeError {
    /// The request has no `Sec-WebSocket-Key` header.
    #[error("request has no sec-websocket-key")]
    NoKey,
    /// The response is not a `101`; holds its status line.
    #[error("not a 101: {0}")]
    NotSwitching(String),
}

/// A minimal upgrade request for `path` on `host` with `key` (for example [`SAMPLE_KEY`]).
pub fn upgrade_request(host: &str, path: &str, key: &str) -> String {
    format!(
        "GET {path} HTTP/1.1\r\nHost: {host}\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\
         Sec-WebSocket-Key: {key}\r\nSec-WebSocket-Version: 13\r\n\r\n"
    )
}

/// The `101 Switching Protocols` for a request head: its `Sec-WebSocket-Key` (the header name
/// in any case) answered with [`sonar_handshake::accept_key`], and `Sec-WebSocket-Protocol:
/// protocol` if given. Nothing else of the request is checked: a test's raw server is lenient.
pub fn accept_response(request: &str, protocol: Option<&str>) -> Result<String, HandshakeError> {
    let key = header(request, "sec-websocket-key").ok_or(HandshakeError::NoKey)?;
    let accept = sonar_handshake::accept_key(key.as_bytes());
    let protocol = protocol
        .map(|p| format!("Sec-WebSocket-Protocol: {p}\r\n"))
        .unwrap_or_default();
    Ok(format!(
        "HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\
         Sec-WebSocket-Accept: {accept}\r\n{protocol}\r\n"
    ))
}

/// The trimmed value of the first header called `name` (ASCII case-insensitive) in a head.
pub(crate) fn header<'a>(head: &'a str, name: &str) -> Option<&'a str> {
    head.split("\r\n").skip(1).find_map(|line| {
        let (n, v) = line.split_once(':')?;
        n.trim().eq_ignore_ascii_case(name).then(|| v.trim())
    })
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn the_101_carries_the_rfc_accept_key_for_any_header_case() {
        let req =
            upgrade_request("h", "/", SAMPLE_KEY).replace("Sec-WebSocket-Key", "SEC-websocket-KEY");
        let res = accept_response(&req, Some("chat")).unwrap();
        assert!(res.starts_with("HTTP/1.1 101 Switching Protocols\r\n"));
        assert!(res.contains(&format!("\r\nSec-WebSocket-Accept: {SAMPLE_ACCEPT}\r\n")));
        assert!(res.ends_with("\r\nSec-WebSocket-Protocol: chat\r\n\r\n"));
        assert_eq!(
            accept_response("GET / HTTP/1.1\r\n\r\n", None),
            Err(HandshakeError::NoKey)
        );
    }
}
