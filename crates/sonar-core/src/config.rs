//! Role, configuration, the mask source and the extension seam.

use alloc::boxed::Box;
use alloc::sync::Arc;
use core::fmt;
use core::time::Duration;

use bytes::Bytes;

#[cfg(feature = "deflate")]
use crate::deflate::Deflate;
use crate::error::ExtensionError;
use crate::message::DataKind;

/// Which end of the connection we are. Clients mask, servers do not (RFC 6455 §5.1).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Role {
    /// We opened the connection; every frame we send is masked.
    Client,
    /// We accepted the connection; frames we receive must be masked.
    Server,
}

/// Source of masking keys for the client role.
///
/// RFC 6455 §5.3 requires a fresh key per frame from a strong source of entropy; the async
/// driver passes a CSPRNG-backed implementation. Tests use
/// [`testing::FixedMask`](crate::testing::FixedMask) (feature `test-util`).
pub trait MaskSource {
    /// A fresh 32-bit masking key.
    fn next_mask(&mut self) -> [u8; 4];
}

impl<F: FnMut() -> [u8; 4]> MaskSource for F {
    fn next_mask(&mut self) -> [u8; 4] {
        self()
    }
}

/// A negotiated extension: the seam that lets one be added without reworking the codec.
/// permessage-deflate (RFC 7692) is built in instead (`Config::deflate`, feature `deflate`),
/// because it inflates as frames arrive rather than per whole message.
///
/// Rules the codec enforces around it: RSV bits not in [`Extension::rsv_bits`] are errors;
/// RSV bits are only accepted on the first frame of a data message (never on control frames
/// or continuations); a message whose first frame carried RSV bits is passed
/// whole to [`Extension::decode`] and text is validated as UTF-8 after decoding.
pub trait Extension: Send {
    /// The RSV bits (a combination of [`RSV1`](crate::RSV1), [`RSV2`](crate::RSV2),
    /// [`RSV3`](crate::RSV3)) this extension was negotiated to use.
    fn rsv_bits(&self) -> u8;

    /// Transforms a whole received message whose first frame carried `rsv` (non-zero).
    /// Must not produce more than `max_size` bytes (fail with 1009 instead).
    fn decode(&mut self, rsv: u8, payload: Bytes, max_size: usize)
    -> Result<Bytes, ExtensionError>;

    /// Transforms a whole outgoing message; returns the RSV bits for its first frame and the
    /// payload to send. Returning `(0, payload)` sends it untransformed.
    fn encode(&mut self, kind: DataKind, payload: Bytes) -> Result<(u8, Bytes), ExtensionError>;
}

type ExtensionFactory = dyn Fn() -> Box<dyn Extension> + Send + Sync;

/// Connection configuration: limits, fragmentation, close timeout, auto-pong, extension.
///
/// ```
/// use core::time::Duration;
/// use sonar_core::Config;
/// let config = Config::default()
///     .with_max_message_size(1 << 20)
///     .with_close_timeout(Duration::from_secs(5));
/// assert_eq!(config.max_frame_size, 16 << 20);
/// assert_eq!(config.auto_fragment_size, Some(64 << 10));
/// ```
#[non_exhaustive]
#[derive(Clone)]
pub struct Config {
    /// Largest accepted data frame payload (default 16 MiB); larger fails with 1009.
    pub max_frame_size: usize,
    /// Largest accepted message, summed over its fragments (default 64 MiB); larger fails with 1009.
    pub max_message_size: usize,
    /// Outgoing messages larger than this are split into fragments of this size
    /// (default `Some(64 KiB)`). `None` disables auto-fragmentation.
    pub auto_fragment_size: Option<usize>,
    /// How long to wait for the peer's Close (and, as a client, for the server's EOF)
    /// after we sent ours (default 10 s).
    pub close_timeout: Duration,
    /// Answer pings automatically (default `true`).
    pub auto_pong: bool,
    /// Maximum number of user pings/pongs queued and not yet written (default 32).
    pub max_queued_control: usize,
    /// Defer the Close that fails the connection after a protocol error (default `false`).
    ///
    /// When set, a protocol error still stops all input processing at once (§7.1.7), but the
    /// failing Close is queued only when the driver calls
    /// [`Connection::commit_failure`](crate::Connection::commit_failure); until then data
    /// frames may still be sent and nothing already queued is dropped. A driver uses this to
    /// let the application answer the messages that arrived before the error (the Autobahn
    /// suite grades failing before those answers as NON-STRICT).
    pub defer_fail_close: bool,
    /// permessage-deflate as negotiated in the opening handshake (default `None`: RSV1 is a
    /// protocol error and nothing is compressed). When set, the extension factory of
    /// [`with_extension`](Self::with_extension) is not used.
    #[cfg(feature = "deflate")]
    pub deflate: Option<Deflate>,
    pub(crate) extension: Option<Arc<ExtensionFactory>>,
}

impl Default for Config {
    fn default() -> Self {
        Config {
            max_frame_size: 16 << 20,
            max_message_size: 64 << 20,
            auto_fragment_size: Some(64 << 10),
            close_timeout: Duration::from_secs(10),
            auto_pong: true,
            max_queued_control: 32,
            defer_fail_close: false,
            #[cfg(feature = "deflate")]
            deflate: None,
            extension: None,
        }
    }
}

impl fmt::Debug for Config {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut d = f.debug_struct("Config");
        d.field("max_frame_size", &self.max_frame_size)
            .field("max_message_size", &self.max_message_size)
            .field("auto_fragment_size", &self.auto_fragment_size)
            .field("close_timeout", &self.close_timeout)
            .field("auto_pong", &self.auto_pong)
            .field("max_queued_control", &self.max_queued_control)
            .field("defer_fail_close", &self.defer_fail_close);
        #[cfg(feature = "deflate")]
        d.field("deflate", &self.deflate);
        d.field("extension", &self.extension.is_some()).finish()
    }
}

impl Config {
    /// Sets [`Config::max_frame_size`].
    pub fn with_max_frame_size(mut self, v: usize) -> Self {
        self.max_frame_size = v;
        self
    }
    /// Sets [`Config::max_message_size`].
    pub fn with_max_message_size(mut self, v: usize) -> Self {
        self.max_message_size = v;
        self
    }
    /// Sets [`Config::auto_fragment_size`] (a size of 0 is treated as `None`).
    pub fn with_auto_fragment_size(mut self, v: Option<usize>) -> Self {
        self.auto_fragment_size = v.filter(|&n| n > 0);
        self
    }
    /// Sets [`Config::close_timeout`].
    pub fn with_close_timeout(mut self, v: Duration) -> Self {
        self.close_timeout = v;
        self
    }
    /// Sets [`Config::auto_pong`].
    pub fn with_auto_pong(mut self, v: bool) -> Self {
        self.auto_pong = v;
        self
    }
    /// Sets [`Config::max_queued_control`].
    pub fn with_max_queued_control(mut self, v: usize) -> Self {
        self.max_queued_control = v;
        self
    }

    /// Sets [`defer_fail_close`](Self::defer_fail_close).
    pub fn with_defer_fail_close(mut self, v: bool) -> Self {
        self.defer_fail_close = v;
        self
    }
    /// Sets [`deflate`](Self::deflate): the permessage-deflate parameters the opening
    /// handshake agreed on for this connection (`None`: not negotiated).
    #[cfg(feature = "deflate")]
    pub fn with_deflate(mut self, v: Option<Deflate>) -> Self {
        self.deflate = v;
        self
    }
    /// Configures a negotiated extension; `factory` is called once per connection.
    pub fn with_extension<F>(mut self, factory: F) -> Self
    where
        F: Fn() -> Box<dyn Extension> + Send + Sync + 'static,
    {
        self.extension = Some(Arc::new(factory));
        self
    }
    /// Whether an extension is configured.
    pub fn has_extension(&self) -> bool {
        self.extension.is_some()
    }
}
