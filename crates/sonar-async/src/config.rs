//! Configuration of one WebSocket connection.

use std::time::Duration;

pub use sonar_core::Config as CodecConfig;
pub use sonar_handshake::DeflateConfig;
pub use sonar_keepalive::KeepaliveConfig;

/// Everything that can be configured on a connection; `Config::default()` is what
/// an experienced user of tokio-tungstenite or Python `websockets` would expect:
/// keepalive on (ping after 20 s of inbound silence, 20 s pong timeout), 10 s close and
/// handshake timeouts, 16 MiB frames and 64 MiB messages at most (inflated size), and
/// permessage-deflate offered and accepted (see [`DeflateConfig`]; `docs/compression.md`).
///
/// ```
/// use std::time::Duration;
/// use sonar_async::Config;
///
/// let config = Config::default()
///     .with_ping_interval(Some(Duration::from_secs(5)))
///     .with_pong_timeout(Some(Duration::from_secs(5)))
///     .with_max_message_size(1 << 20);
/// assert_eq!(config.codec.max_message_size, 1 << 20);
/// ```
#[derive(Clone, Debug)]
#[non_exhaustive]
pub struct Config {
    /// Frame codec limits and behaviour (frame and message size, auto-fragmentation,
    /// close timeout, auto-pong).
    pub codec: CodecConfig,
    /// Keepalive: ping interval, pong timeout, write-stall detection.
    pub keepalive: KeepaliveConfig,
    /// permessage-deflate (RFC 7692): whether to offer (client) or accept (server) it, and
    /// with which windows, context takeover, level and memory level. On by default;
    /// [`DeflateConfig::disabled`] turns it off.
    pub deflate: DeflateConfig,
    /// How long a peer may take to complete the opening handshake.
    pub handshake_timeout: Duration,
    /// Received messages buffered for the application before the connection stops reading
    /// from the transport (read backpressure).
    pub read_queue: usize,
    /// Messages queued and not yet written to the transport before `send` waits.
    pub write_queue: usize,
    /// Bytes of encoded frames queued and not yet written before `send` waits (write
    /// backpressure).
    pub write_buffer: usize,
    /// User pings (`WebSocket::ping`) that may wait for their pong at once.
    pub max_queued_pings: usize,
    /// TLS client configuration for `wss://` (`None`: the Mozilla roots, see
    /// [`tls::default_client_config`](crate::tls::default_client_config)).
    #[cfg(feature = "rustls")]
    pub tls: Option<std::sync::Arc<crate::tls::rustls::ClientConfig>>,
}

impl Default for Config {
    fn default() -> Self {
        Config {
            codec: CodecConfig::default(),
            keepalive: KeepaliveConfig::default(),
            deflate: DeflateConfig::default(),
            handshake_timeout: Duration::from_secs(10),
            read_queue: 64,
            write_queue: 64,
            write_buffer: 256 * 1024,
            max_queued_pings: 16,
            #[cfg(feature = "rustls")]
            tls: None,
        }
    }
}

impl Config {
    /// Sets the keepalive ping interval (`None` disables keepalive pings).
    pub fn with_ping_interval(mut self, interval: Option<Duration>) -> Self {
        self.keepalive.ping_interval = interval;
        self
    }

    /// Sets how long to wait for a pong before the peer is declared dead (`None`: never).
    pub fn with_pong_timeout(mut self, timeout: Option<Duration>) -> Self {
        self.keepalive.pong_timeout = timeout;
        self
    }

    /// Sets the largest message accepted from the peer (close code 1009 beyond it).
    pub fn with_max_message_size(mut self, bytes: usize) -> Self {
        self.codec.max_message_size = bytes;
        if self.codec.max_frame_size > bytes {
            self.codec.max_frame_size = bytes;
        }
        self
    }

    /// Sets how long a closing handshake may take before the transport is closed anyway.
    pub fn with_close_timeout(mut self, timeout: Duration) -> Self {
        self.codec.close_timeout = timeout;
        self
    }

    /// Sets how many received messages are buffered before reading pauses.
    pub fn with_read_queue(mut self, messages: usize) -> Self {
        self.read_queue = messages.max(1);
        self
    }

    /// Sets how many messages the application may queue before `send` waits.
    pub fn with_write_queue(mut self, messages: usize) -> Self {
        self.write_queue = messages.max(1);
        self
    }

    /// Sets how many bytes of encoded frames may wait for the transport before `send`
    /// waits (and `try_send` hands the message back).
    pub fn with_write_buffer(mut self, bytes: usize) -> Self {
        self.write_buffer = bytes.max(1);
        self
    }
    /// Sets the TLS client configuration used for `wss://`.
    #[cfg(feature = "rustls")]
    pub fn with_tls(mut self, tls: std::sync::Arc<crate::tls::rustls::ClientConfig>) -> Self {
        self.tls = Some(tls);
        self
    }

    /// Sets the permessage-deflate configuration (`DeflateConfig::disabled()` to turn
    /// compression off).
    pub fn with_deflate(mut self, deflate: DeflateConfig) -> Self {
        self.deflate = deflate;
        self
    }

    /// Sets how long the opening handshake may take.
    pub fn with_handshake_timeout(mut self, timeout: Duration) -> Self {
        self.handshake_timeout = timeout;
        self
    }
}
