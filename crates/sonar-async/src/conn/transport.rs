//! The connection's byte stream: any futures-io stream, or one that can read straight into
//! uninitialised memory ([`ReadIntoSpare`], as tokio's `ReadBuf` allows); how one read is
//! buffered ([`read_plain`], [`read_spare`]) and how queued frames are written
//! ([`write_frames`]). The connection's state decides when to read and write; this module only
//! moves bytes.
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
/// let (ws, keeper, _request) =
///     sonar_async::server(transport, sonar_async::Config::default(), timer).await?;
/// # drop((ws, keeper)); Ok(()) }
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

/// Bytes asked of the transport per read.
pub(super) const SCRATCH_SIZE: usize = 64 * 1024;

thread_local! {
    /// One zeroed read buffer per thread, shared by every connection driven on it. Reads land
    /// here and only the bytes received are copied into the connection's own buffer: no read
    /// zeroes memory, and an idle connection holds no read buffer at all.
    static SCRATCH: std::cell::RefCell<Vec<u8>> = const { std::cell::RefCell::new(Vec::new()) };
}
/// The most a new read buffer reserves for a frame beyond the bytes at hand (twice those
/// bytes, or this): a peer's announced length alone never makes a connection allocate more.
const FRAME_RESERVE: usize = 128 * 1024;

/// The capacity of a new read buffer that starts with `data`: the whole of the frame whose
/// header `data` starts with, when it is known and within [`FRAME_RESERVE`] (or twice the
/// bytes at hand), so that the frame is received without the buffer growing.
fn buffer_for(data: &[u8]) -> usize {
    match sonar_core::FrameHeader::parse(data) {
        Ok(Some((header, wire))) => {
            let frame = usize::try_from(header.len)
                .unwrap_or(usize::MAX)
                .saturating_add(wire);
            frame.min(FRAME_RESERVE.max(data.len().saturating_mul(2)))
        }
        _ => data.len(),
    }
    .max(data.len())
}

/// Bytes a read into the per-thread buffer of a [`ReadIntoSpare`] transport asks for: a
/// 64 KiB frame with its header and the start of the next.
const SPARE_READ: usize = SCRATCH_SIZE + 4 * 1024;
/// The rest of a frame at least this large is read straight into the frame's own buffer.
const DIRECT_MIN: usize = 16 * 1024;
/// A frame at least this large that starts in a read takes the read's buffer as its own (no
/// copy); smaller ones are copied out, and the per-thread buffer is read into again.
const HANDOVER_MIN: usize = 8 * 1024;

thread_local! {
    /// The per-thread read buffers: the one [`ReadIntoSpare`] transports read into (never
    /// zeroed), and the emptied buffers of large payloads written in full ([`recycle`]),
    /// which large frames are read into next. Reusing them keeps the allocator from
    /// freeing a buffer per large message and allocating the next (glibc hands such memory
    /// back to the system and faults it in again: `madvise` alone took 7.9 % of the server
    /// at 64 KiB x 64 connections x 4 in flight). Bounded by [`RECYCLED_MAX`] and
    /// [`RECYCLED_BYTES`].
    static SPARE: std::cell::RefCell<Vec<BytesMut>> = const { std::cell::RefCell::new(Vec::new()) };
}

/// The most buffers a thread keeps for reuse.
const RECYCLED_MAX: usize = 8;
/// The most memory a thread keeps in buffers for reuse.
const RECYCLED_BYTES: usize = 2 << 20;

/// Keeps `buf` (emptied) for a later large read on this thread. Past the bounds the
/// smallest buffers go first, `buf` included.
pub(super) fn recycle(mut buf: BytesMut) {
    if !(HANDOVER_MIN..=RECYCLED_BYTES).contains(&buf.capacity()) {
        return;
    }
    buf.clear();
    let _ = SPARE.try_with(|cell| {
        let Ok(mut pool) = cell.try_borrow_mut() else {
            return;
        };
        pool.push(buf);
        while pool.len() > RECYCLED_MAX
            || pool.iter().map(BytesMut::capacity).sum::<usize>() > RECYCLED_BYTES
        {
            let smallest = (0..pool.len()).min_by_key(|&i| pool.get(i).map(BytesMut::capacity));
            if let Some(i) = smallest {
                pool.swap_remove(i);
            }
        }
    });
}

/// An empty buffer for `want` bytes: a kept one when `want` is large and one has the room
/// (reclaimed without allocating), else a new one.
fn take_buffer(want: usize) -> BytesMut {
    if want >= HANDOVER_MIN {
        let kept = SPARE
            .try_with(|cell| {
                let mut pool = cell.try_borrow_mut().ok()?;
                let i = pool.iter_mut().position(|b| b.try_reclaim(want))?;
                Some(pool.swap_remove(i))
            })
            .ok()
            .flatten();
        if let Some(buf) = kept {
            return buf;
        }
    }
    BytesMut::with_capacity(want)
}

/// One read of a plain futures-io transport: into the per-thread zeroed buffer, then the
/// bytes received are copied to `read_buf` (the end of the frame in progress) and to
/// `read_next` (the frames after it, in a buffer sized for the next one).
pub(super) fn read_plain(
    io: &mut Transport,
    cx: &mut Context<'_>,
    read_buf: &mut BytesMut,
    read_next: &mut Option<BytesMut>,
    remaining: Option<usize>,
) -> Poll<std::io::Result<usize>> {
    let mut read_into = |scratch: &mut Vec<u8>| {
        if scratch.len() < SCRATCH_SIZE {
            scratch.resize(SCRATCH_SIZE, 0);
        }
        let result = Pin::new(&mut *io).poll_read(cx, &mut scratch[..]);
        if let Poll::Ready(Ok(n)) = result {
            let data = scratch.get(..n).unwrap_or_default();
            match remaining {
                // The read completes the frame in progress and goes on into the next one:
                // the next frame's bytes start a buffer of their own, sized for it, so that
                // neither buffer grows (and copies) once a frame is under way.
                Some(k) if k < data.len() => {
                    let (this, next) = data.split_at(k);
                    read_buf.extend_from_slice(this);
                    let mut buf = take_buffer(buffer_for(next));
                    buf.extend_from_slice(next);
                    *read_next = Some(buf);
                }
                _ => {
                    if read_buf.is_empty() {
                        let want = buffer_for(data);
                        if read_buf.capacity() < want {
                            *read_buf = take_buffer(want);
                        }
                    }
                    read_buf.extend_from_slice(data);
                }
            }
        }
        result
    };
    SCRATCH.with(|cell| match cell.try_borrow_mut() {
        Ok(mut scratch) => read_into(&mut scratch),
        // Only if a transport re-entered another connection on this thread.
        Err(_) => read_into(&mut Vec::new()),
    })
}

/// One read of a [`ReadIntoSpare`] transport. The rest of a large frame is read straight
/// into its buffer, up to the frame's end. Otherwise the read goes into the per-thread
/// buffer: the end of the frame in progress is copied to `read_buf`, and what follows
/// either takes the buffer's memory as its own (a large frame: no copy) or is copied into a
/// buffer of its size (small frames), into `read_buf` or, after a frame's end, `read_next`.
pub(super) fn read_spare(
    io: &mut Transport,
    cx: &mut Context<'_>,
    read_buf: &mut BytesMut,
    read_next: &mut Option<BytesMut>,
    remaining: Option<usize>,
) -> Poll<std::io::Result<usize>> {
    if let Some(k) = remaining
        && k >= DIRECT_MIN
    {
        // The buffer grows at most to twice what has arrived (or FRAME_RESERVE), whatever
        // length the peer announced.
        let limit = k.min(read_buf.len().max(FRAME_RESERVE));
        return io.poll_read_spare(cx, read_buf, limit);
    }
    let mut data = take_buffer(SPARE_READ);
    let result = io.poll_read_spare(cx, &mut data, SPARE_READ);
    if let Poll::Ready(Ok(n)) = result
        && n > 0
    {
        if let Some(k) = remaining {
            let end = data.split_to(k.min(data.len()));
            read_buf.extend_from_slice(&end);
        }
        if !data.is_empty() {
            if remaining.is_none() && !read_buf.is_empty() {
                // After a partial header: the bytes must follow it.
                read_buf.extend_from_slice(&data);
                data.clear();
            } else {
                let want = buffer_for(&data);
                let buf = if want >= HANDOVER_MIN {
                    let mut buf = std::mem::take(&mut data);
                    buf.reserve(want - buf.len());
                    buf
                } else {
                    let mut buf = BytesMut::with_capacity(want);
                    buf.extend_from_slice(&data);
                    data.clear();
                    buf
                };
                match remaining {
                    Some(_) => *read_next = Some(buf),
                    None => *read_buf = buf,
                }
            }
        }
    }
    recycle(data);
    result
}

/// Queued bytes up to which a write of several frames is copied into one buffer.
const COALESCE_BYTES: usize = 4 * 1024;

/// Writes the frames in `slices` (`total` bytes in all): several small ones copied into one
/// buffer and written with one `write` (one contiguous write costs the kernel less than a
/// vector of tiny slices, and a transport without vectored writes, such as TLS, would
/// otherwise take one slice per call), larger output vectored.
pub(super) fn write_frames(
    io: &mut Transport,
    cx: &mut Context<'_>,
    slices: &[io::IoSlice<'_>],
    total: usize,
) -> Poll<io::Result<usize>> {
    if slices.len() > 1 && total <= COALESCE_BYTES {
        SCRATCH.with(|cell| match cell.try_borrow_mut() {
            Ok(mut scratch) => {
                if scratch.len() < SCRATCH_SIZE {
                    scratch.resize(SCRATCH_SIZE, 0);
                }
                let mut len = 0;
                for slice in slices {
                    if let Some(dst) = scratch.get_mut(len..len + slice.len()) {
                        dst.copy_from_slice(slice);
                        len += slice.len();
                    }
                }
                let data = scratch.get(..len).unwrap_or_default();
                Pin::new(&mut *io).poll_write(cx, data)
            }
            Err(_) => Pin::new(&mut *io).poll_write_vectored(cx, slices),
        })
    } else {
        Pin::new(&mut *io).poll_write_vectored(cx, slices)
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use super::*;

    fn kept() -> Vec<usize> {
        SPARE.with(|cell| cell.borrow().iter().map(BytesMut::capacity).collect())
    }

    #[test]
    fn a_recycled_buffer_is_the_next_large_read_buffer() {
        let mut buf = BytesMut::with_capacity(SPARE_READ);
        buf.extend_from_slice(&[9; 100]);
        let address = buf.as_ptr();
        recycle(buf);
        let again = take_buffer(SPARE_READ);
        assert_eq!(again.as_ptr(), address, "the same memory, no allocation");
        assert!(again.is_empty() && again.capacity() >= SPARE_READ);
        assert!(kept().is_empty());
    }

    #[test]
    fn a_payload_split_from_a_buffer_gives_back_the_whole_buffer() {
        // A received frame's payload starts after its header: reclaimed once it is the only
        // reference, the buffer serves a read as large as the original allocation.
        let mut read = BytesMut::with_capacity(SPARE_READ);
        read.extend_from_slice(&[1; 64 * 1024 + 8]);
        let start = read.as_ptr();
        let header = read.split_to(8);
        let payload = read.freeze();
        drop(header);
        recycle(payload.try_into_mut().unwrap());
        let again = take_buffer(SPARE_READ);
        assert_eq!(again.as_ptr(), start);
    }

    #[test]
    fn small_wants_and_small_buffers_do_not_use_the_pool() {
        recycle(BytesMut::with_capacity(HANDOVER_MIN - 1));
        assert!(kept().is_empty(), "too small to keep");
        recycle(BytesMut::with_capacity(SPARE_READ));
        let small = take_buffer(HANDOVER_MIN - 1);
        assert!(
            small.capacity() < SPARE_READ,
            "a small frame gets its own buffer"
        );
        assert_eq!(kept().len(), 1);
    }

    #[test]
    fn the_pool_is_bounded_in_count_and_bytes_and_keeps_the_largest() {
        for _ in 0..RECYCLED_MAX + 3 {
            recycle(BytesMut::with_capacity(HANDOVER_MIN));
        }
        assert_eq!(kept().len(), RECYCLED_MAX);
        // Full: a larger buffer takes the place of a smaller one.
        recycle(BytesMut::with_capacity(SPARE_READ));
        assert_eq!(kept().len(), RECYCLED_MAX);
        assert!(kept().contains(&SPARE_READ));
        // Full: one as small as the smallest kept takes no one's place.
        recycle(BytesMut::with_capacity(HANDOVER_MIN));
        assert_eq!(
            kept().iter().filter(|&&c| c == HANDOVER_MIN).count(),
            RECYCLED_MAX - 1
        );
        // One larger than the byte bound is never kept.
        recycle(BytesMut::with_capacity(RECYCLED_BYTES + 1));
        assert!(!kept().contains(&(RECYCLED_BYTES + 1)));
        assert_eq!(kept().len(), RECYCLED_MAX);
        // Past the byte bound the smallest go, down to what fits.
        recycle(BytesMut::with_capacity(RECYCLED_BYTES - SPARE_READ));
        assert_eq!(kept(), vec![SPARE_READ, RECYCLED_BYTES - SPARE_READ]);
        assert!(kept().iter().sum::<usize>() <= RECYCLED_BYTES);
    }
}
