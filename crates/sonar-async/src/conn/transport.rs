//! The connection's byte stream: any futures-io stream, or one that can read straight into
//! uninitialised memory ([`ReadIntoSpare`], as tokio's `ReadBuf` allows).
//!
//! futures-io reads need initialised memory, so a plain stream is read into a per-thread
//! buffer and the bytes received are copied out (no read zeroes memory, and an idle
//! connection holds no read buffer). A [`ReadIntoSpare`] stream is read into the connection's
//! own buffers, so a large frame arrives without that copy.

use std::fmt;
use std::io;
use std::pin::Pin;
use std::task::{Context, Poll};

use bytes::BytesMut;
use futures_io::{AsyncRead, AsyncWrite};

/// A stream that reads into the spare capacity of a [`BytesMut`] without initialising it
/// first. Runtime adapters implement it for their streams (sonar-tokio does, through tokio's
/// `ReadBuf`) and hand them over as [`Transport::with_spare_reads`].
pub trait ReadIntoSpare: AsyncRead + AsyncWrite + Unpin + Send + 'static {
    /// Reads at most `limit` bytes and appends them to `buf` (reserving what it needs):
    /// `Ready(Ok(0))` at the end of the stream, as `poll_read`.
    fn poll_read_spare(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut BytesMut,
        limit: usize,
    ) -> Poll<io::Result<usize>>;
}

/// Any futures-io stream, type-erased.
trait PlainIo: AsyncRead + AsyncWrite + Unpin + Send {}
impl<T: AsyncRead + AsyncWrite + Unpin + Send> PlainIo for T {}

/// A [`ReadIntoSpare`] stream, type-erased.
trait SpareIo: PlainIo + ReadIntoSpare {}
impl<T: ReadIntoSpare> SpareIo for T {}

enum Kind {
    Plain(Box<dyn PlainIo>),
    Spare(Box<dyn SpareIo>),
}

/// The byte stream a connection runs over.
///
/// Every entry point that takes a futures-io stream also takes a `Transport` (it is one), and
/// keeps its way of reading: a runtime adapter whose streams can read into uninitialised
/// memory passes them as [`Transport::with_spare_reads`].
///
/// ```
/// # async fn demo<T>(io: T) -> Result<(), sonar_async::Error>
/// # where T: futures_io::AsyncRead + futures_io::AsyncWrite + Unpin + Send + 'static {
/// use std::sync::Arc;
/// # let timer: Arc<dyn sonar_async::Timer> = unimplemented!();
/// let transport = sonar_async::Transport::new(io);
/// let (ws, driver, _request) =
///     sonar_async::server(transport, sonar_async::Config::default(), timer).await?;
/// # drop((ws, driver)); Ok(()) }
/// ```
pub struct Transport {
    kind: Kind,
}

impl fmt::Debug for Transport {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Transport")
            .field("spare_reads", &self.reads_into_spare())
            .finish_non_exhaustive()
    }
}

impl Transport {
    /// A futures-io stream, read through `poll_read` into initialised memory. A `Transport`
    /// passed here comes back as it is.
    pub fn new<T: AsyncRead + AsyncWrite + Unpin + Send + 'static>(io: T) -> Transport {
        let mut slot = Some(io);
        if let Some(t) = (&mut slot as &mut dyn std::any::Any)
            .downcast_mut::<Option<Transport>>()
            .and_then(Option::take)
        {
            return t;
        }
        match slot {
            Some(io) => Transport {
                kind: Kind::Plain(Box::new(io)),
            },
            // `slot` is only emptied when `T` is `Transport`, which returned above.
            None => unreachable!("a transport is taken only when it is one"),
        }
    }

    /// A stream that reads into uninitialised memory ([`ReadIntoSpare`]).
    pub fn with_spare_reads<T: ReadIntoSpare>(io: T) -> Transport {
        Transport {
            kind: Kind::Spare(Box::new(io)),
        }
    }

    /// Whether reads go straight into the connection's buffers.
    pub(crate) fn reads_into_spare(&self) -> bool {
        matches!(self.kind, Kind::Spare(_))
    }

    /// Reads into the spare capacity of `buf` (see [`ReadIntoSpare`]); a plain stream has
    /// the bytes zeroed and then read, which is correct but gains nothing.
    pub(crate) fn poll_read_spare(
        &mut self,
        cx: &mut Context<'_>,
        buf: &mut BytesMut,
        limit: usize,
    ) -> Poll<io::Result<usize>> {
        match &mut self.kind {
            Kind::Spare(io) => Pin::new(&mut **io).poll_read_spare(cx, buf, limit),
            Kind::Plain(io) => {
                let start = buf.len();
                buf.resize(start + limit, 0);
                let result = Pin::new(&mut **io).poll_read(cx, &mut buf[start..]);
                let n = match &result {
                    Poll::Ready(Ok(n)) => *n,
                    _ => 0,
                };
                buf.truncate(start + n);
                result
            }
        }
    }

    fn io(&mut self) -> Pin<&mut dyn PlainIo> {
        match &mut self.kind {
            Kind::Plain(io) => Pin::new(&mut **io),
            Kind::Spare(io) => Pin::new(&mut **io as &mut dyn PlainIo),
        }
    }
}

impl AsyncRead for Transport {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut [u8],
    ) -> Poll<io::Result<usize>> {
        self.get_mut().io().poll_read(cx, buf)
    }
}

impl AsyncWrite for Transport {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        self.get_mut().io().poll_write(cx, buf)
    }

    fn poll_write_vectored(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        self.get_mut().io().poll_write_vectored(cx, bufs)
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        self.get_mut().io().poll_flush(cx)
    }

    fn poll_close(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        self.get_mut().io().poll_close(cx)
    }
}
