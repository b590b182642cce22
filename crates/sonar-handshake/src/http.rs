//! Conversions from and to the `http` crate's types (feature `http`), for hyper and axum users.

use alloc::string::String;
use alloc::vec::Vec;

use crate::server::{AcceptOptions, Rejection, Request, ServerHandshake, accept_headers, validate};
use crate::util::HeaderList;

/// Validates an upgrade request that an HTTP server (hyper, axum) already parsed, with the same
/// rules as [`ServerHandshake::decode_request`]. A missing `Host` header is taken from the URI
/// authority when present.
impl<B> TryFrom<&http::Request<B>> for Request {
    type Error = Rejection;

    fn try_from(req: &http::Request<B>) -> Result<Self, Rejection> {
        let mut headers: HeaderList = req
            .headers()
            .iter()
            .map(|(n, v)| (String::from(n.as_str()), v.as_bytes().to_vec()))
            .collect();
        if !req.headers().contains_key(http::header::HOST)
            && let Some(authority) = req.uri().authority()
        {
            headers.push((String::from("host"), authority.as_str().as_bytes().to_vec()));
        }
        let target = req.uri().path_and_query().map_or("/", |pq| pq.as_str());
        validate(
            req.method().as_str(),
            req.version() == http::Version::HTTP_11,
            target,
            headers,
        )
    }
}

/// Rebuilds an `http::Request<()>` from a decoded request (method, target, version, headers).
impl TryFrom<&Request> for http::Request<()> {
    type Error = http::Error;

    fn try_from(req: &Request) -> Result<Self, http::Error> {
        let mut builder = http::Request::builder()
            .method(req.method())
            .uri(req.target())
            .version(http::Version::HTTP_11);
        for (name, value) in req.headers() {
            builder = builder.header(name.as_str(), value.as_slice());
        }
        builder.body(())
    }
}

fn to_header_map(headers: Vec<(String, Vec<u8>)>) -> http::HeaderMap {
    let mut map = http::HeaderMap::new();
    for (name, value) in headers {
        // Every header here was validated as a token name and a field value when written.
        if let (Ok(n), Ok(v)) = (
            http::HeaderName::from_bytes(name.as_bytes()),
            http::HeaderValue::from_bytes(&value),
        ) {
            map.append(n, v);
        }
    }
    map
}

impl ServerHandshake {
    /// The 101 for `req` as an `http::Response` with an empty body of the server's body
    /// type (`()`, `axum::body::Body`, `http_body_util::Empty<Bytes>`, ...), with the same
    /// headers as [`encode_accept`](Self::encode_accept).
    pub fn accept_response<B: Default>(
        &self,
        req: &Request,
        subprotocol: Option<&str>,
    ) -> http::Response<B> {
        let mut opts = AcceptOptions::new();
        if let Some(p) = subprotocol {
            opts = opts.with_subprotocol(p);
        }
        self.accept_response_with(req, &opts)
    }

    /// The 101 for `req` with options, as [`accept_response`](Self::accept_response) (same
    /// headers as [`encode_accept_with`](Self::encode_accept_with)).
    pub fn accept_response_with<B: Default>(
        &self,
        req: &Request,
        opts: &AcceptOptions,
    ) -> http::Response<B> {
        let mut resp = http::Response::new(B::default());
        *resp.status_mut() = http::StatusCode::SWITCHING_PROTOCOLS;
        let mut headers: HeaderList = Vec::new();
        accept_headers(req, opts, |n, v| {
            headers.push((String::from(n), v.to_vec()))
        });
        *resp.headers_mut() = to_header_map(headers);
        resp
    }
}

impl Rejection {
    /// The rejection as an `http::Response` with its plain-text body (same status and headers
    /// as [`ServerHandshake::encode_reject`]).
    pub fn to_http_response(&self) -> http::Response<String> {
        let mut resp = http::Response::new(self.body());
        *resp.status_mut() = http::StatusCode::from_u16(self.status.as_u16())
            .unwrap_or(http::StatusCode::BAD_REQUEST);
        *resp.headers_mut() = to_header_map(self.response_headers());
        resp
    }
}
