//! The connection of `sonar ping`: TCP, then TLS and the opening handshake through
//! [`sonar_async::client_raw`] (no handshake loop of our own), all within one limit; then
//! the [`Link`] over the raw transport, which writes masked frames by hand (each write
//! bounded) and reads the server's frames leniently ([`FrameReader`]).

use std::fmt;
use std::io;
use std::sync::Arc;
use std::time::Duration;

use futures_util::io::{AsyncReadExt, AsyncWriteExt};
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use sonar_async::{ClientRequest, ClientStream, Config};
use sonar_core::{FrameHeader, MAX_HEADER_LEN, OpCode, apply_mask};
use sonar_tokio::{Compat, TokioTimer};
use tokio::net::TcpStream;
use tokio::time::Instant;

use super::frames::{FrameReader, Item};
use super::session::WriteFailure;

/// The transport: TCP, or TLS over it.
type Transport = ClientStream<Compat<TcpStream>>;

/// Bytes read from the server at a time.
const READ_CHUNK: usize = 8192;

/// Why the connection could not be opened.
#[derive(Debug)]
pub(crate) enum OpenError {
    /// TCP failed.
    Connect {
        host: String,
        port: u16,
        error: io::Error,
    },
    /// TCP, TLS and the handshake together took longer than the limit.
    TimedOut(Duration),
    /// The host of a `wss://` URL is not a TLS server name.
    InvalidServerName(String),
    /// The TLS handshake failed (certificate, alert).
    Tls(Arc<io::Error>),
    /// The server refused or botched the upgrade, or the transport failed during it.
    Handshake(sonar_async::Error),
}

impl fmt::Display for OpenError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            OpenError::Connect { host, port, error } => {
                write!(f, "cannot connect to {host}:{port}: {error}")
            }
            OpenError::TimedOut(limit) => write!(
                f,
                "connection and handshake did not complete within {:.3} s",
                limit.as_secs_f64()
            ),
            OpenError::InvalidServerName(host) => {
                write!(f, "`{host}` is not a valid tls server name")
            }
            OpenError::Tls(e) => write!(f, "tls handshake failed: {e}"),
            OpenError::Handshake(e) => f.write_str(&crate::client::describe(e)),
        }
    }
}

impl OpenError {
    fn from_handshake(e: sonar_async::Error, host: &str, limit: Duration) -> Self {
        match e {
            sonar_async::Error::HandshakeTimeout => OpenError::TimedOut(limit),
            sonar_async::Error::InvalidServerName => OpenError::InvalidServerName(host.to_owned()),
            // rustls reports what went wrong in the TLS handshake inside the i/o error.
            sonar_async::Error::Io(e)
                if e.get_ref()
                    .is_some_and(|inner| inner.is::<sonar_async::tls::rustls::Error>()) =>
            {
                OpenError::Tls(e)
            }
            other => OpenError::Handshake(other),
        }
    }
}

/// Connects to the server of `request` and runs the opening handshake, all within `limit`.
/// `insecure` accepts any TLS certificate.
pub(crate) async fn open(
    request: &ClientRequest,
    insecure: bool,
    limit: Duration,
    write_limit: Duration,
) -> Result<Link, OpenError> {
    let deadline = Instant::now() + limit;
    let (host, port) = (request.host(), request.port());
    let tcp = match tokio::time::timeout_at(deadline, TcpStream::connect((host, port))).await {
        Err(_) => return Err(OpenError::TimedOut(limit)),
        Ok(Err(error)) => {
            return Err(OpenError::Connect {
                host: host.to_owned(),
                port,
                error,
            });
        }
        Ok(Ok(tcp)) => tcp,
    };
    let _ = tcp.set_nodelay(true);
    let config = Config::default()
        .with_tls(crate::tls::client_config(insecure))
        .with_handshake_timeout(deadline.saturating_duration_since(Instant::now()));
    let raw = sonar_async::client_raw(Compat::new(tcp), request.clone(), &config, &TokioTimer)
        .await
        .map_err(|e| OpenError::from_handshake(e, host, limit))?;
    Ok(Link {
        io: raw.io,
        reader: FrameReader::default(),
        leftover: raw.leftover.to_vec(),
        write_limit,
        masks: StdRng::from_os_rng(),
    })
}

/// What one read brought.
#[derive(Debug)]
pub(crate) enum Read {
    /// Whatever frames the bytes completed (perhaps none).
    Items(Vec<Item>),
    /// The server ended the stream.
    Eof,
    /// The transport failed.
    Failed(io::Error),
}

/// The open connection: frames out, frames in.
pub(crate) struct Link {
    io: Transport,
    reader: FrameReader,
    /// Bytes that came with the `101`: read first.
    leftover: Vec<u8>,
    write_limit: Duration,
    masks: StdRng,
}

impl Link {
    /// Writes one masked frame with FIN set, within the write limit.
    pub(crate) async fn write(
        &mut self,
        opcode: OpCode,
        payload: &[u8],
    ) -> Result<(), WriteFailure> {
        let frame = masked_frame(opcode, payload, self.masks.random());
        let write = async {
            self.io.write_all(&frame).await?;
            self.io.flush().await
        };
        match tokio::time::timeout(self.write_limit, write).await {
            Ok(Ok(())) => Ok(()),
            Ok(Err(e)) => Err(WriteFailure::Io(e)),
            Err(_) => Err(WriteFailure::TimedOut(self.write_limit)),
        }
    }

    /// Reads once (the bytes that came with the `101` first). Cancel-safe: nothing read is
    /// lost if the future is dropped.
    pub(crate) async fn read(&mut self) -> Read {
        let mut items = Vec::new();
        if !self.leftover.is_empty() {
            self.reader
                .push(&std::mem::take(&mut self.leftover), &mut items);
            return Read::Items(items);
        }
        let mut buf = [0u8; READ_CHUNK];
        match self.io.read(&mut buf).await {
            Ok(0) => Read::Eof,
            Ok(n) => {
                self.reader.push(buf.get(..n).unwrap_or(&[]), &mut items);
                Read::Items(items)
            }
            Err(e) => Read::Failed(e),
        }
    }
}

/// A client frame: FIN, `opcode`, masked with `key`.
fn masked_frame(opcode: OpCode, payload: &[u8], key: [u8; 4]) -> Vec<u8> {
    let header = FrameHeader {
        fin: true,
        rsv: 0,
        opcode,
        mask: Some(key),
        len: payload.len() as u64,
    };
    let mut head = [0u8; MAX_HEADER_LEN];
    let n = header.encode(&mut head);
    let mut frame = Vec::with_capacity(n + payload.len());
    frame.extend_from_slice(head.get(..n).unwrap_or(&[]));
    let start = frame.len();
    frame.extend_from_slice(payload);
    if let Some(body) = frame.get_mut(start..) {
        apply_mask(body, key, 0);
    }
    frame
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use super::*;

    #[test]
    fn frames_are_masked_with_fin_and_read_back_by_the_frame_reader() {
        let frame = masked_frame(OpCode::PING, b"abcdefgh", [1, 2, 3, 4]);
        let mut items = Vec::new();
        FrameReader::default().push(&frame, &mut items);
        let [Item::Frame(f)] = items.as_slice() else {
            unreachable!("one frame: {items:?}")
        };
        assert!(f.header.fin);
        assert_eq!(f.header.opcode, OpCode::PING);
        assert_eq!(f.header.mask, Some([1, 2, 3, 4]));
        assert_eq!(f.payload, b"abcdefgh");
        assert_ne!(&frame[frame.len() - 8..], b"abcdefgh");
    }

    #[test]
    fn tls_failures_keep_their_own_message() {
        let limit = Duration::from_secs(5);
        let cert = sonar_async::tls::rustls::Error::InvalidCertificate(
            sonar_async::tls::rustls::CertificateError::UnknownIssuer,
        );
        let io = io::Error::new(io::ErrorKind::InvalidData, cert);
        let e = OpenError::from_handshake(sonar_async::Error::from(io), "h", limit);
        assert!(matches!(e, OpenError::Tls(_)), "{e:?}");
        assert!(e.to_string().starts_with("tls handshake failed: "), "{e}");
        let e = OpenError::from_handshake(sonar_async::Error::HandshakeTimeout, "h", limit);
        assert_eq!(
            e.to_string(),
            "connection and handshake did not complete within 5.000 s"
        );
        let e = OpenError::from_handshake(sonar_async::Error::HandshakeEof, "h", limit);
        assert_eq!(
            e.to_string(),
            "connection closed during the opening handshake"
        );
    }
}
