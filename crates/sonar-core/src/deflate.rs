//! permessage-deflate (RFC 7692) in the codec: the negotiated parameters, a compressor for the
//! messages we send and a bounded, resumable decompressor for the messages we receive.
//!
//! Backend: `zlib-rs` (safe API), because it honours window bits 9..=15 and the memory level
//! when compressing (`miniz_oxide` always uses a 32 KiB window, so it could not honour a peer's
//! `*_max_window_bits` below 15).
//!
//! Choices (see `docs/compression.md`):
//! - A compressor limited to an 8-bit window (zlib and zlib-rs cannot compress with one: they
//!   silently use 9 or refuse) never runs: every message goes out uncompressed (RSV1 clear),
//!   which RFC 7692 §6 allows per message and which uses no window at all.
//! - The decompressor always runs with a 15-bit window: a larger window than the peer's
//!   decodes the same stream, tolerates peers whose zlib raised 8 to 9, and costs nothing
//!   more in zlib-rs (it allocates a 32 KiB window whatever the window bits).
//! - Corrupt compressed data fails the connection with 1007 (see [`crate::ProtocolError`]).

use alloc::vec::Vec;

use bytes::{Bytes, BytesMut};
use zlib_rs::{DeflateFlush, InflateFlush, Status};

use crate::config::Role;
use crate::utf8::Utf8Validator;

/// The 4 octets a sync flush ends with; stripped when sending (RFC 7692 §7.2.1) and
/// appended before inflating (§7.2.2).
pub(crate) const TAIL: [u8; 4] = [0x00, 0x00, 0xff, 0xff];

/// Inflated output is kept in pieces of at most this many bytes (and compressed output is
/// grown by this much), so an inflated message never holds more than `max_message_size` + one
/// piece: no buffer doubles past the limit.
const CHUNK: usize = 32 * 1024;

/// The first output buffer of a message is at least this large.
const FIRST_PIECE: usize = 256;

/// The default compression level (zlib's scale 0..=9).
pub const DEFAULT_LEVEL: u8 = 1;
/// The default zlib memory level (1..=9).
pub const DEFAULT_MEMORY_LEVEL: u8 = 5;
/// The default size below which a message is sent uncompressed.
pub const DEFAULT_MIN_MESSAGE_SIZE: usize = 32;

/// permessage-deflate for one connection: the parameters agreed in the opening handshake
/// (RFC 7692 §7.1) and how this end compresses.
///
/// The four negotiated fields use the RFC's server/client naming; the connection picks the
/// ones for its side by its role (a server compresses with the `server_*` values and
/// inflates what the client compressed with the `client_*` values, and vice versa).
/// Hand it to [`Config::with_deflate`](crate::Config::with_deflate).
///
/// ```
/// use sonar_core::{Config, Deflate};
/// // What a handshake agreed: "permessage-deflate; server_no_context_takeover;
/// // client_max_window_bits=10".
/// let deflate = Deflate::new()
///     .with_server_no_context_takeover(true)
///     .with_client_max_window_bits(10)
///     .with_level(1);
/// let config = Config::default().with_deflate(Some(deflate));
/// assert!(config.deflate.is_some());
/// ```
#[non_exhaustive]
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct Deflate {
    /// The server resets its compression context after every message (§7.1.1.1).
    pub server_no_context_takeover: bool,
    /// The client resets its compression context after every message (§7.1.1.2).
    pub client_no_context_takeover: bool,
    /// The largest LZ77 window the server compresses with, 8..=15 (§7.1.2.1; 15 if absent).
    pub server_max_window_bits: u8,
    /// The largest LZ77 window the client compresses with, 8..=15 (§7.1.2.2; 15 if absent).
    pub client_max_window_bits: u8,
    /// Compression level, 0 (stored) ..= 9 (best); default 1 (fastest; see `docs/compression.md`).
    pub level: u8,
    /// zlib memory level, 1..=9 (memory for the compressor's symbol buffers); default 5.
    pub memory_level: u8,
    /// Messages shorter than this are sent uncompressed (default 32 bytes).
    pub min_message_size: usize,
}

impl Default for Deflate {
    fn default() -> Self {
        Self::new()
    }
}

impl Deflate {
    /// No negotiated restrictions (context takeover both ways, 15-bit windows) and the
    /// default level, memory level and minimum size.
    pub const fn new() -> Self {
        Deflate {
            server_no_context_takeover: false,
            client_no_context_takeover: false,
            server_max_window_bits: 15,
            client_max_window_bits: 15,
            level: DEFAULT_LEVEL,
            memory_level: DEFAULT_MEMORY_LEVEL,
            min_message_size: DEFAULT_MIN_MESSAGE_SIZE,
        }
    }
    /// Sets [`server_no_context_takeover`](Self::server_no_context_takeover).
    pub const fn with_server_no_context_takeover(mut self, v: bool) -> Self {
        self.server_no_context_takeover = v;
        self
    }
    /// Sets [`client_no_context_takeover`](Self::client_no_context_takeover).
    pub const fn with_client_no_context_takeover(mut self, v: bool) -> Self {
        self.client_no_context_takeover = v;
        self
    }
    /// Sets [`server_max_window_bits`](Self::server_max_window_bits) (clamped to 8..=15).
    pub const fn with_server_max_window_bits(mut self, v: u8) -> Self {
        self.server_max_window_bits = clamp(v, 8, 15);
        self
    }
    /// Sets [`client_max_window_bits`](Self::client_max_window_bits) (clamped to 8..=15).
    pub const fn with_client_max_window_bits(mut self, v: u8) -> Self {
        self.client_max_window_bits = clamp(v, 8, 15);
        self
    }
    /// Sets [`level`](Self::level) (clamped to 0..=9).
    pub const fn with_level(mut self, v: u8) -> Self {
        self.level = clamp(v, 0, 9);
        self
    }
    /// Sets [`memory_level`](Self::memory_level) (clamped to 1..=9).
    pub const fn with_memory_level(mut self, v: u8) -> Self {
        self.memory_level = clamp(v, 1, 9);
        self
    }
    /// Sets [`min_message_size`](Self::min_message_size).
    pub const fn with_min_message_size(mut self, v: usize) -> Self {
        self.min_message_size = v;
        self
    }

    /// (no context takeover, window bits) of the compressor of `role`.
    fn side(&self, role: Role) -> (bool, u8) {
        match role {
            Role::Server => (self.server_no_context_takeover, self.server_max_window_bits),
            Role::Client => (self.client_no_context_takeover, self.client_max_window_bits),
        }
    }

    pub(crate) fn compressor(&self, role: Role) -> Compressor {
        let (reset, bits) = self.side(role);
        Compressor {
            state: None,
            settings: Settings {
                window_bits: clamp(bits, 8, 15),
                level: i32::from(clamp(self.level, 0, 9)),
                mem_level: i32::from(clamp(self.memory_level, 1, 9)),
                min_size: self.min_message_size,
            },
            reset_each: reset,
            stats: DeflateStats::default(),
        }
    }

    pub(crate) fn inflater(&self, role: Role) -> Inflater {
        let peer = match role {
            Role::Server => Role::Client,
            Role::Client => Role::Server,
        };
        let (reset, _bits) = self.side(peer);
        Inflater {
            state: None,
            reset_each: reset,
            ended: false,
            fed: false,
            out: Pieces::default(),
            stats: DeflateStats::default(),
        }
    }
}

/// Byte counts of permessage-deflate on one connection
/// ([`Connection::deflate_stats`](crate::Connection::deflate_stats)): what compression saved.
///
/// Only messages that went through the compressor or decompressor count; messages sent or
/// received uncompressed do not.
#[non_exhaustive]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub struct DeflateStats {
    /// Messages sent compressed.
    pub messages_compressed: u64,
    /// Their payload bytes before compression.
    pub bytes_before_compression: u64,
    /// Their payload bytes after compression (what went on the wire, without frame headers).
    pub bytes_compressed: u64,
    /// Compressed messages received.
    pub messages_inflated: u64,
    /// Their compressed payload bytes as received (without frame headers).
    pub bytes_received_compressed: u64,
    /// Their payload bytes after inflation.
    pub bytes_inflated: u64,
}

const fn clamp(v: u8, lo: u8, hi: u8) -> u8 {
    if v < lo {
        lo
    } else if v > hi {
        hi
    } else {
        v
    }
}

/// Why compressing a message failed (only on an inconsistent zlib state; never peer input).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct CompressFailed;

/// What decides a compressor's output once it resets after every message: two connections
/// whose compressors have equal settings and no context takeover compress a message to the
/// same bytes, so a [`PreparedMessage`](crate::PreparedMessage) compresses once per settings.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub(crate) struct Settings {
    /// 8 means "may not compress" (no backend has an 8-bit compressor window).
    window_bits: u8,
    level: i32,
    mem_level: i32,
    min_size: usize,
}

impl Settings {
    /// Whether `input` goes out plain without trying. An empty message goes out plain: zlib
    /// emits nothing for a second sync flush with no input, and an empty compressed payload
    /// would make a peer that appends the tail start an unfinished stored block.
    pub(crate) fn sends_plain(&self, input: &[u8]) -> bool {
        input.is_empty() || input.len() < self.min_size || self.window_bits < 9
    }

    fn new_state(&self) -> zlib_rs::Deflate {
        zlib_rs::Deflate::new_with_config(zlib_rs::DeflateConfig {
            level: self.level,
            // Negative: a raw deflate stream (no zlib header), RFC 7692 §7.2.
            window_bits: -i32::from(self.window_bits),
            mem_level: self.mem_level,
            ..zlib_rs::DeflateConfig::default()
        })
    }
}

/// Compresses one whole message as a compressor with `settings` and no context takeover
/// would (a fresh stream, freed afterwards); `Ok(None)`: send it plain.
pub(crate) fn compress_once(
    settings: Settings,
    input: &[u8],
) -> Result<Option<Bytes>, CompressFailed> {
    if settings.sends_plain(input) {
        return Ok(None);
    }
    let out = sync_flush(&mut settings.new_state(), input)?;
    Ok(finish(out, input.len(), true))
}

/// Strips the sync flush's tail (§7.2.1); `None` when a message compressed with a reset
/// context gained nothing (it is sent plain, and nothing carries over to the next one).
fn finish(mut out: BytesMut, input_len: usize, reset_each: bool) -> Option<Bytes> {
    if out.ends_with(&TAIL) {
        out.truncate(out.len() - TAIL.len());
    }
    if reset_each && out.len() >= input_len {
        return None;
    }
    Some(out.freeze())
}

/// The compressor for the messages we send.
pub(crate) struct Compressor {
    /// `None` between messages with no context takeover (freed), or before the first one.
    state: Option<zlib_rs::Deflate>,
    settings: Settings,
    reset_each: bool,
    /// The sending half of the counts.
    pub(crate) stats: DeflateStats,
}

impl core::fmt::Debug for Compressor {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.debug_struct("Compressor")
            .field("allocated", &self.state.is_some())
            .field("window_bits", &self.settings.window_bits)
            .field("reset_each", &self.reset_each)
            .finish_non_exhaustive()
    }
}

impl Compressor {
    /// Whether the compressor holds zlib state now (tests and memory accounting).
    pub(crate) fn is_allocated(&self) -> bool {
        self.state.is_some()
    }

    /// The settings under which this compressor's output can be shared with other
    /// connections: `Some` only without context takeover.
    pub(crate) fn shared_settings(&self) -> Option<Settings> {
        self.reset_each.then_some(self.settings)
    }

    /// Counts a message sent compressed (by this compressor or shared).
    pub(crate) fn record(&mut self, before: usize, after: usize) {
        let s = &mut self.stats;
        s.messages_compressed += 1;
        s.bytes_before_compression += before as u64;
        s.bytes_compressed += after as u64;
    }

    /// Compresses one whole message: `Ok(Some(payload))` to send with RSV1, `Ok(None)` to send
    /// `input` uncompressed (too short, 8-bit window, or no gain without context takeover).
    pub(crate) fn compress(&mut self, input: &[u8]) -> Result<Option<Bytes>, CompressFailed> {
        if self.settings.sends_plain(input) {
            return Ok(None);
        }
        let settings = self.settings;
        let state = self.state.get_or_insert_with(|| settings.new_state());
        let result = sync_flush(state, input);
        if self.reset_each || result.is_err() {
            // No context takeover: the next message starts from an empty window, and an idle
            // connection holds no compressor. After an error, a fresh stream (which never
            // refers back) is still valid for the peer.
            self.state = None;
        }
        let out = finish(result?, input.len(), self.reset_each);
        if let Some(out) = &out {
            self.record(input.len(), out.len());
        }
        Ok(out)
    }
}

/// Compresses `input` and sync-flushes (the output ends with 00 00 ff ff).
fn sync_flush(state: &mut zlib_rs::Deflate, input: &[u8]) -> Result<BytesMut, CompressFailed> {
    let mut out = BytesMut::new();
    let start_in = state.total_in();
    let mut piece = (input.len() / 2).clamp(64, CHUNK);
    loop {
        let consumed = usize::try_from(state.total_in() - start_in).map_err(|_| CompressFailed)?;
        let rest = input.get(consumed..).unwrap_or(&[]);
        let len = out.len();
        out.resize(len + piece, 0);
        let before = state.total_out();
        let r = state.compress(
            rest,
            out.get_mut(len..).unwrap_or(&mut []),
            DeflateFlush::SyncFlush,
        );
        let produced = usize::try_from(state.total_out() - before).map_err(|_| CompressFailed)?;
        out.truncate(len + produced);
        r.map_err(|_| CompressFailed)?;
        let used = usize::try_from(state.total_in() - start_in).map_err(|_| CompressFailed)?;
        if used == input.len() && produced < piece {
            // All input taken and the flush completed with output room to spare.
            return Ok(out);
        }
        if produced == 0 && used == consumed {
            // No progress with room for output: zlib's state is inconsistent.
            return Err(CompressFailed);
        }
        piece = CHUNK;
    }
}

/// Why inflating a message failed.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum InflateFailed {
    /// The inflated message passed the limit; the size reached (the limit + 1).
    TooLarge(usize),
    /// Not a valid deflate stream.
    Invalid,
    /// A text message whose inflated bytes are not valid UTF-8.
    Utf8,
}

/// The inflated bytes of the message in progress: full pieces of [`CHUNK`] bytes and the one
/// being filled. `cur` is zero-filled ahead of the output (doubling, up to [`CHUNK`]) and
/// `filled` says how much of it is output, so no byte is zero-filled twice however small the
/// reads are.
#[derive(Debug, Default)]
struct Pieces {
    full: Vec<Bytes>,
    cur: BytesMut,
    /// Output bytes at the front of `cur`.
    filled: usize,
    /// Output bytes in all pieces.
    len: usize,
}

impl Pieces {
    /// The whole message as one buffer (one copy only if it spans several pieces).
    fn take(&mut self) -> Bytes {
        let mut cur = core::mem::take(&mut self.cur);
        cur.truncate(core::mem::take(&mut self.filled));
        let len = core::mem::take(&mut self.len);
        if self.full.is_empty() {
            return cur.freeze();
        }
        let mut all = BytesMut::with_capacity(len);
        for p in self.full.drain(..) {
            all.extend_from_slice(&p);
        }
        all.extend_from_slice(&cur);
        self.full = Vec::new();
        all.freeze()
    }

    /// Room for at most `want` more output bytes: (start, length) within `cur`.
    fn room(&mut self, want: usize, hint: usize) -> (usize, usize) {
        if self.filled >= CHUNK {
            let mut full = core::mem::take(&mut self.cur);
            full.truncate(core::mem::take(&mut self.filled));
            self.full.push(full.freeze());
        }
        if self.filled >= self.cur.len() {
            // Double the piece being filled (at least FIRST_PIECE, or what the input
            // suggests), never past CHUNK.
            let add = self
                .filled
                .max(hint)
                .max(FIRST_PIECE)
                .min(CHUNK.saturating_sub(self.filled))
                .max(1);
            self.cur.resize(self.filled + add, 0);
        }
        let start = self.filled;
        (start, (self.cur.len() - start).min(want))
    }

    /// The output slice handed out by [`room`](Self::room).
    fn slot(&mut self, start: usize, len: usize) -> &mut [u8] {
        self.cur.get_mut(start..start + len).unwrap_or(&mut [])
    }

    /// Records `n` more output bytes at the end.
    fn advance(&mut self, n: usize) {
        self.filled += n;
        self.len = self.len.saturating_add(n);
    }
}

/// The decompressor for the messages we receive: resumable across reads and fragments.
pub(crate) struct Inflater {
    /// `None` between messages with no context takeover (freed), or before the first one.
    state: Option<zlib_rs::Inflate>,
    reset_each: bool,
    /// The peer ended the deflate stream (BFINAL) in the current message.
    ended: bool,
    /// Some compressed bytes of the current message were fed.
    fed: bool,
    /// The inflated bytes of the current message.
    out: Pieces,
    /// The receiving half of the counts.
    pub(crate) stats: DeflateStats,
}

impl core::fmt::Debug for Inflater {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.debug_struct("Inflater")
            .field("allocated", &self.state.is_some())
            .field("reset_each", &self.reset_each)
            .field("ended", &self.ended)
            .field("fed", &self.fed)
            .finish()
    }
}

impl Inflater {
    /// Whether the decompressor holds zlib state now (tests and memory accounting).
    pub(crate) fn is_allocated(&self) -> bool {
        self.state.is_some()
    }

    /// Inflates `input` (compressed payload bytes of the current message, in order),
    /// failing as soon as the message passes `max` inflated bytes; new bytes are checked with
    /// `utf8` (text messages).
    pub(crate) fn feed(
        &mut self,
        input: &[u8],
        max: usize,
        utf8: Option<&mut Utf8Validator>,
    ) -> Result<(), InflateFailed> {
        if input.is_empty() {
            return Ok(());
        }
        self.fed = true;
        self.stats.bytes_received_compressed += input.len() as u64;
        self.inflate(input, max, utf8)
    }

    /// [`feed`](Self::feed) without the bookkeeping (also used for the tail).
    fn inflate(
        &mut self,
        mut input: &[u8],
        max: usize,
        mut utf8: Option<&mut Utf8Validator>,
    ) -> Result<(), InflateFailed> {
        if input.is_empty() {
            return Ok(());
        }
        if self.ended {
            // Data after a final block (BFINAL=1) starts a new deflate stream, as in the
            // RFC 7692 §7.2.3.4 example (a final block, then 0x00 and the tail). The new
            // stream cannot refer back to the old one's window.
            self.state = None;
            self.ended = false;
        }
        // A 15-bit window decodes any window the peer may use (see the module docs).
        let state = self
            .state
            .get_or_insert_with(|| zlib_rs::Inflate::new(false, 15));
        let out = &mut self.out;
        loop {
            // One byte of room past the limit tells "at the limit" from "over it".
            let room = max.saturating_sub(out.len).saturating_add(1);
            let (start, piece) = out.room(room, input.len().saturating_mul(4));
            let (in0, out0) = (state.total_in(), state.total_out());
            let r = state.decompress(input, out.slot(start, piece), InflateFlush::NoFlush);
            let used = usize::try_from(state.total_in() - in0).unwrap_or(usize::MAX);
            let produced = usize::try_from(state.total_out() - out0)
                .unwrap_or(usize::MAX)
                .min(piece);
            out.advance(produced);
            input = input.get(used..).unwrap_or(&[]);
            if out.len > max {
                return Err(InflateFailed::TooLarge(out.len));
            }
            if let Some(v) = utf8.as_deref_mut() {
                v.feed(out.cur.get(start..start + produced).unwrap_or(&[]))
                    .map_err(|_| InflateFailed::Utf8)?;
            }
            match r {
                Err(_) => return Err(InflateFailed::Invalid),
                Ok(Status::StreamEnd) => {
                    if input.is_empty() {
                        self.ended = true;
                        return Ok(());
                    }
                    // More data after the final block: a new stream (see above).
                    *state = zlib_rs::Inflate::new(false, 15);
                    continue;
                }
                Ok(Status::Ok | Status::BufError) => {}
            }
            if produced < piece && input.is_empty() {
                // Output room left over and nothing more to read: all caught up.
                return Ok(());
            }
            if produced == 0 && used == 0 {
                // Room for output and input left, yet no progress.
                return Err(InflateFailed::Invalid);
            }
        }
    }

    /// Ends the current message: appends the tail (§7.2.2), returns the inflated message and
    /// frees the state when the peer resets its context after each message.
    pub(crate) fn finish(
        &mut self,
        max: usize,
        utf8: Option<&mut Utf8Validator>,
    ) -> Result<Bytes, InflateFailed> {
        let r = if self.ended || !self.fed {
            // A final block ended the stream right at the end of the message, or the message
            // has no compressed bytes at all (a zlib peer's empty message): the tail is not
            // part of it (it would start a stored block that never ends).
            Ok(())
        } else {
            self.inflate(&TAIL, max, utf8)
        };
        if self.reset_each || self.ended || r.is_err() {
            // A new stream next time (after a final block the old one cannot go on).
            self.state = None;
        }
        self.ended = false;
        self.fed = false;
        let out = self.out.take();
        if r.is_ok() {
            self.stats.messages_inflated += 1;
            self.stats.bytes_inflated += out.len() as u64;
        }
        r.map(|()| out)
    }

    /// Drops a message in progress (a Close arrived mid-message; reading stops).
    pub(crate) fn abort(&mut self) {
        self.state = None;
        self.ended = false;
        self.fed = false;
        self.out = Pieces::default();
    }
}
