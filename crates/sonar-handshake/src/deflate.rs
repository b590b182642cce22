//! permessage-deflate negotiation (RFC 7692 §5, §7.1): the client's offer, the server's
//! answer, and the client's check of that answer.
//!
//! [`DeflateConfig`] is written in terms of "us" and "the peer", so that one value serves
//! both roles; the wire parameters carry the RFC's server/client names:
//!
//! | config field               | as a client offers                 | as a server answers                          |
//! |----------------------------|------------------------------------|----------------------------------------------|
//! | `max_window_bits` (ours)   | `client_max_window_bits[=N]`       | `server_max_window_bits=N` (≤ the offer's)   |
//! | `peer_max_window_bits`     | `server_max_window_bits=N`         | `client_max_window_bits=N` if offered        |
//! | `no_context_takeover`      | `client_no_context_takeover`       | `server_no_context_takeover`                 |
//! | `peer_no_context_takeover` | `server_no_context_takeover`       | `client_no_context_takeover`                 |
//!
//! Window bits 8: zlib (and zlib-rs) cannot compress with an 8-bit window (zlib silently
//! uses 9). An agreement that limits a compressor to 8 bits is honoured by the codec by never
//! compressing on that side (every message goes out with RSV1 clear, which RFC 7692 allows
//! per message), so no larger window is ever used and the offer need not be declined.

use alloc::string::String;
use core::fmt;

use crate::extensions::ExtensionParams;

/// The extension name, `permessage-deflate` (RFC 7692 §7).
pub const PERMESSAGE_DEFLATE: &str = "permessage-deflate";

/// One of the four permessage-deflate parameters (RFC 7692 §7.1).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum DeflateParam {
    /// `server_no_context_takeover` (§7.1.1.1).
    ServerNoContextTakeover,
    /// `client_no_context_takeover` (§7.1.1.2).
    ClientNoContextTakeover,
    /// `server_max_window_bits` (§7.1.2.1).
    ServerMaxWindowBits,
    /// `client_max_window_bits` (§7.1.2.2).
    ClientMaxWindowBits,
}

impl DeflateParam {
    /// The parameter name on the wire.
    pub const fn as_str(self) -> &'static str {
        match self {
            Self::ServerNoContextTakeover => "server_no_context_takeover",
            Self::ClientNoContextTakeover => "client_no_context_takeover",
            Self::ServerMaxWindowBits => "server_max_window_bits",
            Self::ClientMaxWindowBits => "client_max_window_bits",
        }
    }

    fn from_name(name: &str) -> Option<Self> {
        [
            Self::ServerNoContextTakeover,
            Self::ClientNoContextTakeover,
            Self::ServerMaxWindowBits,
            Self::ClientMaxWindowBits,
        ]
        .into_iter()
        .find(|p| p.as_str().eq_ignore_ascii_case(name))
    }
}

impl fmt::Display for DeflateParam {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Why a permessage-deflate offer is declined (server) or an answer refused (client,
/// [`ClientError::Deflate`](crate::ClientError::Deflate), RFC 7692 §5.1).
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum DeflateError {
    /// A parameter RFC 7692 does not define.
    #[error("unknown permessage-deflate parameter {0:?}")]
    UnknownParameter(String),
    /// A parameter given twice.
    #[error("duplicate {0} parameter")]
    DuplicateParameter(DeflateParam),
    /// A value on a parameter that takes none (`*_no_context_takeover`).
    #[error("{0} takes no value")]
    UnexpectedValue(DeflateParam),
    /// A parameter without the value it needs here (window bits in an answer).
    #[error("{0} needs a value")]
    MissingValue(DeflateParam),
    /// Window bits that are not a decimal integer 8..=15 without leading zeros.
    #[error("{0} must be 8 to 15")]
    InvalidWindowBits(DeflateParam),
    /// The answer has window bits above the limit the offer asked for.
    #[error("server answered {0} above the offered limit")]
    AboveOffer(DeflateParam),
    /// The answer drops a parameter of the offer that it must accept or decline the offer
    /// for (`server_no_context_takeover`, `server_max_window_bits`).
    #[error("server answer does not accept the offered {0}")]
    NotAccepted(DeflateParam),
}

/// How this end wants permessage-deflate negotiated and run; one value for both roles,
/// written in terms of us and the peer. The wire parameters carry the RFC's names:
///
/// | field                      | as a client offers                 | as a server answers                          |
/// |----------------------------|------------------------------------|----------------------------------------------|
/// | `max_window_bits` (ours)   | `client_max_window_bits[=N]`       | `server_max_window_bits=N` (≤ the offer's)   |
/// | `peer_max_window_bits`     | `server_max_window_bits=N`         | `client_max_window_bits=N` if offered        |
/// | `no_context_takeover`      | `client_no_context_takeover`       | `server_no_context_takeover`                 |
/// | `peer_no_context_takeover` | `server_no_context_takeover`       | `client_no_context_takeover`                 |
///
/// The codec settings (`level`, `memory_level`, `min_message_size`) are not negotiated; they
/// travel to the codec with the agreed [`DeflateParams`].
///
/// Window bits 8: zlib cannot compress with an 8-bit window (it silently uses 9). An
/// agreement that limits a compressor to 8 bits is honoured by the codec by never compressing
/// on that side (RSV1 clear on every message, which RFC 7692 allows per message), so such
/// offers and answers are accepted rather than declined.
///
/// ```
/// use sonar_handshake::DeflateConfig;
/// let config = DeflateConfig::default()
///     .with_max_window_bits(10)
///     .with_no_context_takeover(true);
/// assert!(config.enabled);
/// assert_eq!(
///     config.offer().to_string(),
///     "permessage-deflate; client_no_context_takeover; client_max_window_bits=10"
/// );
/// ```
#[non_exhaustive]
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct DeflateConfig {
    /// Offer (client) or accept (server) permessage-deflate at all (default `true`).
    pub enabled: bool,
    /// Compression level 0..=9 (default 1, the fastest; 6 compresses text about 40% smaller
    /// at a third of the speed, see `docs/compression.md`).
    pub level: u8,
    /// zlib memory level 1..=9 (default 5).
    pub memory_level: u8,
    /// Messages shorter than this are sent uncompressed (default 32 bytes).
    pub min_message_size: usize,
    /// The largest window our compressor uses, 8..=15 (default 12; 8 means we never
    /// compress, see the module docs).
    pub max_window_bits: u8,
    /// The largest window we ask the peer's compressor to use, 8..=15 (default `None`: no
    /// limit asked). A server that cannot honour it declines the offer.
    pub peer_max_window_bits: Option<u8>,
    /// We reset our compression context after every message (default `false`): less idle
    /// memory (no compressor between messages), worse ratio on small similar messages.
    pub no_context_takeover: bool,
    /// We ask the peer to reset its context after every message (default `false`): frees
    /// our decompressor between messages.
    pub peer_no_context_takeover: bool,
}

impl Default for DeflateConfig {
    fn default() -> Self {
        Self {
            enabled: true,
            level: 1,
            memory_level: 5,
            min_message_size: 32,
            max_window_bits: 12,
            peer_max_window_bits: None,
            no_context_takeover: false,
            peer_no_context_takeover: false,
        }
    }
}

impl DeflateConfig {
    /// The defaults, but not enabled.
    pub fn disabled() -> Self {
        Self {
            enabled: false,
            ..Self::default()
        }
    }
    /// Sets [`enabled`](Self::enabled).
    pub fn with_enabled(mut self, v: bool) -> Self {
        self.enabled = v;
        self
    }
    /// Sets [`level`](Self::level) (clamped to 0..=9).
    pub fn with_level(mut self, v: u8) -> Self {
        self.level = v.min(9);
        self
    }
    /// Sets [`memory_level`](Self::memory_level) (clamped to 1..=9).
    pub fn with_memory_level(mut self, v: u8) -> Self {
        self.memory_level = v.clamp(1, 9);
        self
    }
    /// Sets [`min_message_size`](Self::min_message_size).
    pub fn with_min_message_size(mut self, v: usize) -> Self {
        self.min_message_size = v;
        self
    }
    /// Sets [`max_window_bits`](Self::max_window_bits) (clamped to 8..=15).
    pub fn with_max_window_bits(mut self, v: u8) -> Self {
        self.max_window_bits = v.clamp(8, 15);
        self
    }
    /// Sets [`peer_max_window_bits`](Self::peer_max_window_bits) (clamped to 8..=15).
    pub fn with_peer_max_window_bits(mut self, v: Option<u8>) -> Self {
        self.peer_max_window_bits = v.map(|v| v.clamp(8, 15));
        self
    }
    /// Sets [`no_context_takeover`](Self::no_context_takeover).
    pub fn with_no_context_takeover(mut self, v: bool) -> Self {
        self.no_context_takeover = v;
        self
    }
    /// Sets [`peer_no_context_takeover`](Self::peer_no_context_takeover).
    pub fn with_peer_no_context_takeover(mut self, v: bool) -> Self {
        self.peer_no_context_takeover = v;
        self
    }

    fn own_bits(&self) -> u8 {
        self.max_window_bits.clamp(8, 15)
    }

    fn peer_bits(&self) -> Option<u8> {
        self.peer_max_window_bits.map(|v| v.clamp(8, 15))
    }

    /// The client's offer for this config (RFC 7692 §5, §7.1). It always includes
    /// `client_max_window_bits`, so that a server may limit our window.
    pub fn offer(&self) -> ExtensionParams {
        let mut e = ExtensionParams::new(PERMESSAGE_DEFLATE);
        if self.peer_no_context_takeover {
            e = e.with_param(DeflateParam::ServerNoContextTakeover.as_str(), None);
        }
        if self.no_context_takeover {
            e = e.with_param(DeflateParam::ClientNoContextTakeover.as_str(), None);
        }
        if let Some(bits) = self.peer_bits() {
            e = e.with_param(
                DeflateParam::ServerMaxWindowBits.as_str(),
                Some(bits_str(bits)),
            );
        }
        let own = self.own_bits();
        let hint = (own < 15).then(|| bits_str(own));
        e.with_param(DeflateParam::ClientMaxWindowBits.as_str(), hint)
    }

    /// Server: the answer to the first acceptable permessage-deflate offer among `offers`
    /// (every element of every `Sec-WebSocket-Extensions` line, in order). Offers with an
    /// unknown, duplicated or invalid parameter are declined and the next one is tried.
    /// `None` if disabled or nothing is acceptable.
    ///
    /// ```
    /// use sonar_handshake::{DeflateConfig, ExtensionParams};
    /// let offers = [
    ///     ExtensionParams::new("permessage-deflate").with_param("x-unknown", None),
    ///     ExtensionParams::new("permessage-deflate").with_param("client_max_window_bits", None),
    /// ];
    /// let answer = DeflateConfig::default().negotiate(&offers).unwrap();
    /// assert_eq!(
    ///     answer.response.to_string(),
    ///     "permessage-deflate; server_max_window_bits=12"
    /// );
    /// assert_eq!(answer.params.server_max_window_bits, 12);
    /// ```
    pub fn negotiate(&self, offers: &[ExtensionParams]) -> Option<DeflateAnswer> {
        if !self.enabled {
            return None;
        }
        offers
            .iter()
            .filter(|o| o.name() == PERMESSAGE_DEFLATE)
            .find_map(|o| Offer::parse(o).ok().map(|o| self.answer(&o)))
    }

    /// The server's answer to one valid offer: only what RFC 7692 §7.1 allows for it.
    fn answer(&self, offer: &Offer) -> DeflateAnswer {
        let mut e = ExtensionParams::new(PERMESSAGE_DEFLATE);
        // §7.1.1.1: accept a requested server_no_context_takeover; we may also add it.
        let server_nct = offer.server_nct || self.no_context_takeover;
        if server_nct {
            e = e.with_param(DeflateParam::ServerNoContextTakeover.as_str(), None);
        }
        // §7.1.1.2: the server may always include client_no_context_takeover; a client that
        // offered it resets anyway, so saying so lets us free our decompressor.
        let client_nct = offer.client_nct || self.peer_no_context_takeover;
        if client_nct {
            e = e.with_param(DeflateParam::ClientNoContextTakeover.as_str(), None);
        }
        // §7.1.2.1: a requested limit is answered with the same or a smaller value; without
        // one, the server may still announce its own limit.
        let own = self.own_bits();
        let server_bits = match offer.server_bits {
            Some(asked) => Some(asked.min(own)),
            None => (own < 15).then_some(own),
        };
        if let Some(bits) = server_bits {
            e = e.with_param(
                DeflateParam::ServerMaxWindowBits.as_str(),
                Some(bits_str(bits)),
            );
        }
        // §7.1.2.2: only if the client offered the parameter, and not above its hint.
        let mut client_bits = 15;
        if let Some(hint) = offer.client_bits {
            let limit = self.peer_bits().unwrap_or(15).min(hint.unwrap_or(15));
            if limit < 15 || hint.is_some() {
                e = e.with_param(
                    DeflateParam::ClientMaxWindowBits.as_str(),
                    Some(bits_str(limit)),
                );
            }
            client_bits = limit;
        }
        DeflateAnswer {
            params: DeflateParams {
                server_no_context_takeover: server_nct,
                client_no_context_takeover: client_nct,
                server_max_window_bits: server_bits.unwrap_or(15),
                client_max_window_bits: client_bits,
            },
            response: e,
        }
    }

    /// Client: checks the server's answer against our [`offer`](Self::offer) (RFC 7692
    /// §5.1, §7.1) and returns what was agreed.
    pub fn accept_response(&self, answer: &ExtensionParams) -> Result<DeflateParams, DeflateError> {
        let a = Offer::parse(answer)?;
        // §7.1.1.1: an offered server_no_context_takeover must be accepted in the answer.
        if self.peer_no_context_takeover && !a.server_nct {
            return Err(DeflateError::NotAccepted(
                DeflateParam::ServerNoContextTakeover,
            ));
        }
        // §7.1.2.1: in an answer, server_max_window_bits has a value, not above the request.
        let server_bits = match (a.server_bits, self.peer_bits()) {
            (Some(got), Some(asked)) if got > asked => {
                return Err(DeflateError::AboveOffer(DeflateParam::ServerMaxWindowBits));
            }
            (None, Some(_)) => {
                return Err(DeflateError::NotAccepted(DeflateParam::ServerMaxWindowBits));
            }
            (got, _) => got.unwrap_or(15),
        };
        // §7.1.2.2: we always offer client_max_window_bits; in an answer it needs a value.
        // A value above our hint is allowed (the server may ignore the hint): we compress
        // with the smaller of the two.
        let client_bits = match a.client_bits {
            Some(None) => {
                return Err(DeflateError::MissingValue(
                    DeflateParam::ClientMaxWindowBits,
                ));
            }
            Some(Some(v)) => v.min(self.own_bits()),
            None => self.own_bits(),
        };
        Ok(DeflateParams {
            server_no_context_takeover: a.server_nct,
            // We reset when asked to, and when we want to (our side, our choice).
            client_no_context_takeover: a.client_nct || self.no_context_takeover,
            server_max_window_bits: server_bits,
            client_max_window_bits: client_bits,
        })
    }
}

/// What the opening handshake agreed for permessage-deflate (RFC 7692 §7.1), in the RFC's
/// server/client terms; absent window bits are 15.
///
/// [`Accepted::deflate`](crate::Accepted::deflate) (client) and
/// [`DeflateAnswer::params`] (server) hold it; the driver hands it to the frame codec.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub struct DeflateParams {
    /// The server resets its compression context after every message.
    pub server_no_context_takeover: bool,
    /// The client resets its compression context after every message.
    pub client_no_context_takeover: bool,
    /// The largest window the server compresses with (8..=15).
    pub server_max_window_bits: u8,
    /// The largest window the client compresses with (8..=15).
    pub client_max_window_bits: u8,
}

/// A server's acceptance of a permessage-deflate offer: what was agreed, and the
/// `Sec-WebSocket-Extensions` element to answer with
/// ([`AcceptOptions::with_deflate`](crate::AcceptOptions::with_deflate)).
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub struct DeflateAnswer {
    /// What was agreed.
    pub params: DeflateParams,
    /// The answer to write in the 101.
    pub response: ExtensionParams,
}

/// The parameters of one offer or answer, each checked once (§7.1).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
struct Offer {
    server_nct: bool,
    client_nct: bool,
    server_bits: Option<u8>,
    /// `Some(None)`: bare `client_max_window_bits`.
    client_bits: Option<Option<u8>>,
}

impl Offer {
    fn parse(e: &ExtensionParams) -> Result<Self, DeflateError> {
        let mut o = Offer::default();
        let mut seen = [false; 4];
        for p in e.params() {
            let param = DeflateParam::from_name(&p.name)
                .ok_or_else(|| DeflateError::UnknownParameter(p.name.clone()))?;
            let slot = match param {
                DeflateParam::ServerNoContextTakeover => 0,
                DeflateParam::ClientNoContextTakeover => 1,
                DeflateParam::ServerMaxWindowBits => 2,
                DeflateParam::ClientMaxWindowBits => 3,
            };
            if let Some(s) = seen.get_mut(slot) {
                if *s {
                    return Err(DeflateError::DuplicateParameter(param));
                }
                *s = true;
            }
            let value = p.value.as_deref();
            match param {
                DeflateParam::ServerNoContextTakeover | DeflateParam::ClientNoContextTakeover => {
                    if value.is_some() {
                        return Err(DeflateError::UnexpectedValue(param));
                    }
                    if param == DeflateParam::ServerNoContextTakeover {
                        o.server_nct = true;
                    } else {
                        o.client_nct = true;
                    }
                }
                DeflateParam::ServerMaxWindowBits => {
                    // §7.1.2.1: a value is required, in an offer and in an answer.
                    let v = value.ok_or(DeflateError::MissingValue(param))?;
                    o.server_bits = Some(parse_bits(v, param)?);
                }
                DeflateParam::ClientMaxWindowBits => {
                    o.client_bits = Some(value.map(|v| parse_bits(v, param)).transpose()?);
                }
            }
        }
        Ok(o)
    }
}

/// A window-bits value: 1*DIGIT without leading zeros, 8..=15 (§7.1.2).
fn parse_bits(v: &str, param: DeflateParam) -> Result<u8, DeflateError> {
    match v.as_bytes() {
        [d @ b'8'..=b'9'] => Ok(d - b'0'),
        [b'1', d @ b'0'..=b'5'] => Ok(10 + (d - b'0')),
        _ => Err(DeflateError::InvalidWindowBits(param)),
    }
}

fn bits_str(bits: u8) -> &'static str {
    match bits {
        8 => "8",
        9 => "9",
        10 => "10",
        11 => "11",
        12 => "12",
        13 => "13",
        14 => "14",
        _ => "15",
    }
}

/// A permessage-deflate offer, checked parameter by parameter (for applications that want
/// to see why an offer would be declined).
///
/// ```
/// use sonar_handshake::{check_deflate_offer, DeflateError, DeflateParam, ExtensionParams};
/// let offer = ExtensionParams::new("permessage-deflate").with_param("server_max_window_bits", Some("7"));
/// assert_eq!(
///     check_deflate_offer(&offer),
///     Err(DeflateError::InvalidWindowBits(DeflateParam::ServerMaxWindowBits))
/// );
/// ```
pub fn check_deflate_offer(offer: &ExtensionParams) -> Result<(), DeflateError> {
    Offer::parse(offer).map(|_| ())
}

#[cfg(test)]
mod tests {
    use super::*;
    use alloc::string::ToString;
    use alloc::vec::Vec;

    fn offers(values: &[&[u8]]) -> Vec<ExtensionParams> {
        crate::extensions::parse_values(values.iter().copied()).unwrap_or_default()
    }

    #[test]
    fn parse_bits_rejects_leading_zeros_and_out_of_range() {
        for ok in ["8", "9", "10", "15"] {
            assert!(
                parse_bits(ok, DeflateParam::ClientMaxWindowBits).is_ok(),
                "{ok}"
            );
        }
        for bad in ["7", "16", "08", "010", "", "1", "+9", "9 "] {
            assert!(
                parse_bits(bad, DeflateParam::ClientMaxWindowBits).is_err(),
                "{bad}"
            );
        }
    }

    #[test]
    fn bits_str_round_trips() {
        for b in 8..=15 {
            assert_eq!(
                parse_bits(bits_str(b), DeflateParam::ServerMaxWindowBits),
                Ok(b)
            );
        }
    }

    #[test]
    fn negotiate_over_several_lines() {
        let o = offers(&[
            b"x-other, permessage-deflate; server_max_window_bits=16",
            b"permessage-deflate",
        ]);
        let a = DeflateConfig::default()
            .with_max_window_bits(15)
            .negotiate(&o)
            .unwrap();
        assert_eq!(a.response.to_string(), "permessage-deflate");
    }
}
