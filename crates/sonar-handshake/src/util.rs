//! Small HTTP helpers shared by the client and server sides: tokens, lists, header writing.

use alloc::string::String;
use alloc::vec::Vec;

/// Header names and values as the decoders keep them: original-case names, raw value bytes.
pub(crate) type HeaderList = Vec<(String, Vec<u8>)>;

/// `tchar` of RFC 9110 §5.6.2.
pub(crate) const fn is_tchar(b: u8) -> bool {
    matches!(b,
        b'a'..=b'z' | b'A'..=b'Z' | b'0'..=b'9'
        | b'!' | b'#' | b'$' | b'%' | b'&' | b'\'' | b'*' | b'+'
        | b'-' | b'.' | b'^' | b'_' | b'`' | b'|' | b'~')
}

/// A non-empty `token`.
pub(crate) fn is_token(s: &[u8]) -> bool {
    !s.is_empty() && s.iter().all(|&b| is_tchar(b))
}

/// A field value we may write: HTAB, SP, VCHAR and obs-text, no CR, LF, NUL or other controls.
pub(crate) fn is_field_value(v: &[u8]) -> bool {
    v.iter()
        .all(|&b| b == b'\t' || (b' '..=b'~').contains(&b) || b >= 0x80)
}

/// Strips optional whitespace (SP / HTAB) at both ends.
pub(crate) fn trim_ows(mut v: &[u8]) -> &[u8] {
    while let Some((&first, rest)) = v.split_first()
        && (first == b' ' || first == b'\t')
    {
        v = rest;
    }
    while let Some((&last, rest)) = v.split_last()
        && (last == b' ' || last == b'\t')
    {
        v = rest;
    }
    v
}

/// All values of the header `name` (case-insensitive), in order.
pub(crate) fn values<'a>(
    headers: &'a [(String, Vec<u8>)],
    name: &'a str,
) -> impl Iterator<Item = &'a [u8]> + 'a {
    headers
        .iter()
        .filter(move |(n, _)| n.eq_ignore_ascii_case(name))
        .map(|(_, v)| v.as_slice())
}

/// The first value of the header `name` (case-insensitive).
pub(crate) fn first<'a>(headers: &'a [(String, Vec<u8>)], name: &str) -> Option<&'a [u8]> {
    headers
        .iter()
        .find(|(n, _)| n.eq_ignore_ascii_case(name))
        .map(|(_, v)| v.as_slice())
}

/// How many times the header `name` occurs.
pub(crate) fn count(headers: &[(String, Vec<u8>)], name: &str) -> usize {
    headers
        .iter()
        .filter(|(n, _)| n.eq_ignore_ascii_case(name))
        .count()
}

/// The single value of a header that must not repeat: `Ok(None)` if absent, `Err(())` if repeated.
pub(crate) fn single<'a>(
    headers: &'a [(String, Vec<u8>)],
    name: &str,
) -> Result<Option<&'a [u8]>, ()> {
    match count(headers, name) {
        0 => Ok(None),
        1 => Ok(first(headers, name)),
        _ => Err(()),
    }
}

/// Elements of a comma-separated list (RFC 9110 §5.6.1), trimmed, empty elements skipped.
pub(crate) fn list_elements(v: &[u8]) -> impl Iterator<Item = &[u8]> {
    v.split(|&b| b == b',')
        .map(trim_ows)
        .filter(|e| !e.is_empty())
}

/// Whether any value of the token-list header `name` contains `token` (case-insensitive).
pub(crate) fn list_contains(headers: &[(String, Vec<u8>)], name: &str, token: &str) -> bool {
    values(headers, name)
        .flat_map(list_elements)
        .any(|e| e.eq_ignore_ascii_case(token.as_bytes()))
}

/// Whether every value of the header `name` is ASCII (interpreted headers must be).
pub(crate) fn all_ascii(headers: &[(String, Vec<u8>)], name: &str) -> bool {
    values(headers, name).all(|v| v.is_ascii())
}

/// Appends `name: value\r\n`.
pub(crate) fn push_header(out: &mut Vec<u8>, name: &str, value: &[u8]) {
    out.extend_from_slice(name.as_bytes());
    out.extend_from_slice(b": ");
    out.extend_from_slice(value);
    out.extend_from_slice(b"\r\n");
}

/// Appends the decimal digits of `n`.
pub(crate) fn push_decimal(out: &mut Vec<u8>, mut n: usize) {
    let mut digits = [0u8; 20];
    let mut len = 0;
    loop {
        if let Some(slot) = digits.get_mut(len) {
            // `n % 10` is below 10, so the cast cannot truncate.
            *slot = b'0' + (n % 10) as u8;
        }
        len += 1;
        n /= 10;
        if n == 0 || len >= digits.len() {
            break;
        }
    }
    out.extend(digits.iter().take(len).rev());
}

/// Whether an application-supplied extra header may be written as given: a token name that is
/// not one the handshake writes itself, and a value without CR, LF or other controls.
pub(crate) fn is_writable_extra_header(name: &str, value: &[u8]) -> bool {
    is_token(name.as_bytes()) && !is_reserved(name) && is_field_value(value)
}

/// Headers the handshake writes itself; extra headers may not repeat or override them.
pub(crate) fn is_reserved(name: &str) -> bool {
    const RESERVED: [&str; 11] = [
        "host",
        "upgrade",
        "connection",
        "sec-websocket-key",
        "sec-websocket-version",
        "sec-websocket-accept",
        "sec-websocket-protocol",
        "sec-websocket-extensions",
        "content-length",
        "transfer-encoding",
        "content-type",
    ];
    RESERVED.iter().any(|r| r.eq_ignore_ascii_case(name))
}

/// Runs `f` with `n` empty httparse header slots (on the stack up to 64).
pub(crate) fn with_slots<'b, R>(n: usize, f: impl FnOnce(&mut [httparse::Header<'b>]) -> R) -> R {
    const INLINE: usize = 64;
    if n <= INLINE {
        let mut slots: [httparse::Header<'b>; INLINE] = [httparse::EMPTY_HEADER; INLINE];
        f(slots.get_mut(..n).unwrap_or(&mut []))
    } else {
        let mut slots: Vec<httparse::Header<'b>> = alloc::vec![httparse::EMPTY_HEADER; n];
        f(&mut slots)
    }
}

/// Copies parsed httparse headers into an owned list.
pub(crate) fn own_headers(parsed: &[httparse::Header<'_>]) -> HeaderList {
    parsed
        .iter()
        .map(|h| (String::from(h.name), h.value.to_vec()))
        .collect()
}

/// A short static description of an httparse error.
pub(crate) fn describe(e: httparse::Error) -> &'static str {
    match e {
        httparse::Error::HeaderName => "invalid header name",
        httparse::Error::HeaderValue => "invalid header value",
        httparse::Error::NewLine => "invalid line ending",
        httparse::Error::Status => "invalid status line",
        httparse::Error::Token => "invalid token",
        httparse::Error::TooManyHeaders => "too many headers",
        httparse::Error::Version => "invalid http version",
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn decimal() {
        for n in [0usize, 7, 10, 431, 65535, usize::MAX] {
            let mut out = Vec::new();
            push_decimal(&mut out, n);
            assert_eq!(out, alloc::format!("{n}").into_bytes());
        }
    }

    #[test]
    fn trims_and_lists() {
        assert_eq!(trim_ows(b" \t a b \t"), b"a b");
        assert_eq!(trim_ows(b"   "), b"");
        let v: Vec<&[u8]> = list_elements(b" keep-alive ,, Upgrade ,").collect();
        assert_eq!(v, [&b"keep-alive"[..], b"Upgrade"]);
    }
}
