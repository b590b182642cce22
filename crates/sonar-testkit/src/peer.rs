//! A raw, blocking WebSocket peer: the other end a test scripts byte by byte.

use std::io::{self, Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::sync::mpsc::{self, Receiver};
use std::thread;
use std::time::Duration;

use sonar_core::testing::{FrameBuilder, RFC_KEY};

use crate::frame::{Frame, FrameError, read_frame};
use crate::handshake::{HandshakeError, SAMPLE_KEY, accept_response, upgrade_request};
use crate::head::{HeadError, read_head};

/// Why a peer's handshake failed.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum PeerError {
    /// The other side's head could not be read.
    #[error(transparent)]
    Head(#[from] HeadError),
    /// The head could not be answered, or the answer was no 101.
    #[error(transparent)]
    Handshake(#[from] HandshakeError),
    /// Writing failed.
    #[error("writing a head: {0}")]
    Io(#[from] io::Error),
}

/// A raw WebSocket peer over a blocking stream (a loopback `TcpStream` by default).
///
/// Server side ([`Peer::server`]) it sends frames unmasked; client side ([`Peer::client`])
/// masked with [`RFC_KEY`] (or [`Peer::with_mask`]). Bytes read past a head (frames the other
/// side wrote together with its head) are kept and read first, so nothing is lost. The peer
/// is itself `Read + Write` for raw bytes.
#[derive(Debug)]
pub struct Peer<S = TcpStream> {
    io: S,
    pending: Vec<u8>,
    pos: usize,
    mask: Option<[u8; 4]>,
}

impl Peer<TcpStream> {
    /// The client side of a new TCP connection to `addr` (a loopback address), before the
    /// handshake: connect and every read bounded by `timeout`, `TCP_NODELAY` set.
    pub fn tcp_client(addr: SocketAddr, timeout: Duration) -> io::Result<Self> {
        let tcp = TcpStream::connect_timeout(&addr, timeout)?;
        tcp.set_read_timeout(Some(timeout))?;
        tcp.set_nodelay(true)?;
        Ok(Peer::client(tcp))
    }

    /// Serves one connection on `127.0.0.1` on a thread: `behave` gets the server side of the
    /// accepted connection before the handshake (reads bounded by `timeout`, `TCP_NODELAY`
    /// set), and what it returns comes over the receiver (nothing if it panics or the accept
    /// fails). Returns the address to connect to.
    pub fn serve_one<T, F>(timeout: Duration, behave: F) -> io::Result<(SocketAddr, Receiver<T>)>
    where
        T: Send + 'static,
        F: FnOnce(Peer) -> T + Send + 'static,
    {
        let listener = TcpListener::bind(("127.0.0.1", 0))?;
        let addr = listener.local_addr()?;
        let (tx, rx) = mpsc::channel();
        thread::spawn(move || {
            let Ok((tcp, _)) = listener.accept() else {
                return;
            };
            if tcp.set_read_timeout(Some(timeout)).is_err() || tcp.set_nodelay(true).is_err() {
                return;
            }
            let _ = tx.send(behave(Peer::server(tcp)));
        });
        Ok((addr, rx))
    }
}

impl<S: Read + Write> Peer<S> {
    /// The server side of `io`, before the handshake.
    pub fn server(io: S) -> Self {
        Peer {
            io,
            pending: Vec::new(),
            pos: 0,
            mask: None,
        }
    }

    /// The client side of `io`, before the handshake; masks with [`RFC_KEY`].
    pub fn client(io: S) -> Self {
        Peer {
            mask: Some(RFC_KEY),
            ..Self::server(io)
        }
    }

    /// Masks every frame sent with `key` from now on (`None`: unmasked).
    pub fn with_mask(mut self, key: Option<[u8; 4]>) -> Self {
        self.mask = key;
        self
    }

    /// Reads the other side's head (request or response) and returns it as text; the bytes
    /// after it are kept for the next reads.
    pub fn read_head(&mut self) -> Result<String, HeadError> {
        let head = read_head(self)?;
        let text = head.text()?.to_owned();
        let mut rest = head.rest;
        rest.extend_from_slice(self.pending.get(self.pos..).unwrap_or(&[]));
        self.pending = rest;
        self.pos = 0;
        Ok(text)
    }

    /// Server side: reads the request head and answers `101` (see
    /// [`accept_response`](crate::accept_response)); returns the request head.
    pub fn accept(&mut self) -> Result<String, PeerError> {
        self.accept_with(None, &[])
    }

    /// [`accept`](Self::accept) with `Sec-WebSocket-Protocol: protocol` in the 101 if given,
    /// and `then` (frames, say) sent in the same write as the 101.
    pub fn accept_with(
        &mut self,
        protocol: Option<&str>,
        then: &[u8],
    ) -> Result<String, PeerError> {
        let request = self.read_head()?;
        let mut response = accept_response(&request, protocol)?.into_bytes();
        response.extend_from_slice(then);
        self.io.write_all(&response)?;
        Ok(request)
    }

    /// Client side: sends an upgrade request for `path` on `host` with
    /// [`SAMPLE_KEY`](crate::SAMPLE_KEY) and reads the response head, which must be a `101`;
    /// returns the response head.
    pub fn connect(&mut self, host: &str, path: &str) -> Result<String, PeerError> {
        self.io
            .write_all(upgrade_request(host, path, SAMPLE_KEY).as_bytes())?;
        let response = self.read_head()?;
        if !response.starts_with("HTTP/1.1 101") {
            let status = response.lines().next().unwrap_or_default().to_owned();
            return Err(HandshakeError::NotSwitching(status).into());
        }
        Ok(response)
    }

    /// Sends one frame, masked with the peer's key on the client side.
    pub fn send(&mut self, frame: FrameBuilder) -> io::Result<()> {
        let frame = match self.mask {
            Some(key) => frame.mask(key),
            None => frame,
        };
        self.io.write_all(&frame.build())
    }

    /// Reads one frame (the bytes kept from a head first).
    pub fn recv(&mut self) -> Result<Frame, FrameError> {
        read_frame(self)
    }

    /// Reads until the stream ends or fails (a read timeout ends it too) and returns every
    /// byte read; bounded by the stream's own end or timeout.
    pub fn read_to_end(&mut self) -> Vec<u8> {
        let mut all = self.pending.split_off(self.pos.min(self.pending.len()));
        self.pending.clear();
        self.pos = 0;
        let _ = self.io.read_to_end(&mut all);
        all
    }

    /// The stream (bytes kept from a head are not in it).
    pub fn get_mut(&mut self) -> &mut S {
        &mut self.io
    }

    /// The stream (bytes kept from a head are not in it).
    pub fn get_ref(&self) -> &S {
        &self.io
    }
}

impl<S: Read> Read for Peer<S> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let kept = self.pending.get(self.pos..).unwrap_or(&[]);
        if kept.is_empty() {
            return self.io.read(buf);
        }
        let n = kept.len().min(buf.len());
        buf.get_mut(..n)
            .unwrap_or(&mut [])
            .copy_from_slice(kept.get(..n).unwrap_or(&[]));
        self.pos += n;
        Ok(n)
    }
}

impl<S: Write> Write for Peer<S> {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        self.io.write(buf)
    }
    fn flush(&mut self) -> io::Result<()> {
        self.io.flush()
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;
    use crate::SAMPLE_ACCEPT;

    /// Input from a byte slice, output into a Vec.
    struct Script {
        input: io::Cursor<Vec<u8>>,
        output: Vec<u8>,
    }
    impl Read for Script {
        fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
            self.input.read(buf)
        }
    }
    impl Write for Script {
        fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
            self.output.write(buf)
        }
        fn flush(&mut self) -> io::Result<()> {
            Ok(())
        }
    }
    fn script(input: &[u8]) -> Script {
        Script {
            input: io::Cursor::new(input.to_vec()),
            output: Vec::new(),
        }
    }

    #[test]
    fn server_accepts_and_keeps_frames_sent_with_the_request() {
        let mut input = upgrade_request("h", "/", SAMPLE_KEY).into_bytes();
        input.extend(FrameBuilder::ping(b"hi").mask(RFC_KEY).build());
        let mut peer = Peer::server(script(&input));
        let request = peer.accept().unwrap();
        assert!(request.starts_with("GET / HTTP/1.1\r\n"));
        let out = String::from_utf8(peer.get_ref().output.clone()).unwrap();
        assert!(out.contains(SAMPLE_ACCEPT), "{out}");
        let ping = peer.recv().unwrap();
        assert_eq!((ping.first(), ping.payload), (0x89, b"hi".to_vec()));
        assert!(matches!(peer.recv(), Err(FrameError::Eof)));
    }

    #[test]
    fn client_masks_and_checks_the_status() {
        let mut peer = Peer::client(script(b"HTTP/1.1 403 Forbidden\r\n\r\n"));
        let err = peer.connect("h", "/").unwrap_err();
        assert!(
            matches!(err, PeerError::Handshake(HandshakeError::NotSwitching(_))),
            "{err}"
        );
        peer.send(FrameBuilder::text(b"a")).unwrap();
        let sent = &peer.get_ref().output;
        assert!(sent.ends_with(&FrameBuilder::text(b"a").mask(RFC_KEY).build()));
    }
}
