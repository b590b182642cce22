//! `Sec-WebSocket-Extensions` values (RFC 6455 §9.1) as structured name + parameters.

use alloc::string::String;
use alloc::vec::Vec;
use core::fmt;

use crate::util::{is_tchar, is_token};

/// One extension in a `Sec-WebSocket-Extensions` offer or answer: a name and its parameters.
///
/// ```
/// use sonar_handshake::ExtensionParams;
/// let pmd = ExtensionParams::new("permessage-deflate")
///     .with_param("client_max_window_bits", None)
///     .with_param("server_max_window_bits", Some("10"));
/// assert_eq!(
///     pmd.to_string(),
///     "permessage-deflate; client_max_window_bits; server_max_window_bits=10"
/// );
/// assert_eq!(pmd.param("server_max_window_bits"), Some(Some("10")));
/// ```
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct ExtensionParams {
    name: String,
    params: Vec<ExtensionParam>,
}

/// An extension as offered by a client; the same structure as an answer.
pub type ExtensionOffer = ExtensionParams;

/// One `name[=value]` parameter of an extension.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct ExtensionParam {
    /// The parameter name (a token).
    pub name: String,
    /// The value, unquoted; `None` for a bare parameter.
    pub value: Option<String>,
}

impl ExtensionParams {
    /// An extension with no parameters.
    pub fn new(name: impl Into<String>) -> Self {
        Self {
            name: name.into(),
            params: Vec::new(),
        }
    }

    /// Adds a parameter (`None` for a bare `name`).
    pub fn with_param(mut self, name: impl Into<String>, value: Option<&str>) -> Self {
        self.params.push(ExtensionParam {
            name: name.into(),
            value: value.map(String::from),
        });
        self
    }

    /// The extension name.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// The parameters in order.
    pub fn params(&self) -> &[ExtensionParam] {
        &self.params
    }

    /// The first parameter named `name` (case-insensitive): `Some(None)` when it is bare.
    pub fn param(&self, name: &str) -> Option<Option<&str>> {
        self.params
            .iter()
            .find(|p| p.name.eq_ignore_ascii_case(name))
            .map(|p| p.value.as_deref())
    }

    /// Whether this can be written on the wire: name and parameter names are tokens, values
    /// contain no control characters.
    pub fn is_valid(&self) -> bool {
        is_token(self.name.as_bytes())
            && self.params.iter().all(|p| {
                is_token(p.name.as_bytes())
                    && p.value
                        .as_deref()
                        .is_none_or(|v| v.bytes().all(|b| b == b'\t' || (b' '..=b'~').contains(&b)))
            })
    }
}

impl fmt::Display for ExtensionParams {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.name)?;
        for p in &self.params {
            write!(f, "; {}", p.name)?;
            if let Some(v) = &p.value {
                if is_token(v.as_bytes()) {
                    write!(f, "={v}")?;
                } else {
                    f.write_str("=\"")?;
                    for c in v.chars() {
                        if c == '"' || c == '\\' {
                            f.write_str("\\")?;
                        }
                        write!(f, "{c}")?;
                    }
                    f.write_str("\"")?;
                }
            }
        }
        Ok(())
    }
}

/// Writes a list of extensions as one header value; invalid entries are skipped.
pub(crate) fn write_list(exts: &[ExtensionParams]) -> String {
    let mut s = String::new();
    for e in exts.iter().filter(|e| e.is_valid()) {
        if !s.is_empty() {
            s.push_str(", ");
        }
        // Writing into a String cannot fail.
        let _ = fmt::Write::write_fmt(&mut s, format_args!("{e}"));
    }
    s
}

/// Parses every value of the `Sec-WebSocket-Extensions` headers; `Err(())` on bad syntax.
pub(crate) fn parse_values<'a>(
    values: impl Iterator<Item = &'a [u8]>,
) -> Result<Vec<ExtensionParams>, ()> {
    let mut out = Vec::new();
    for v in values {
        Parser { s: v, i: 0 }.list(&mut out)?;
    }
    Ok(out)
}

/// A cursor over one header value.
struct Parser<'a> {
    s: &'a [u8],
    i: usize,
}

impl Parser<'_> {
    fn peek(&self) -> Option<u8> {
        self.s.get(self.i).copied()
    }

    fn ows(&mut self) {
        while matches!(self.peek(), Some(b' ' | b'\t')) {
            self.i += 1;
        }
    }

    fn token(&mut self) -> Result<String, ()> {
        let start = self.i;
        while self.peek().is_some_and(is_tchar) {
            self.i += 1;
        }
        let t = self.s.get(start..self.i).ok_or(())?;
        if t.is_empty() {
            return Err(());
        }
        // Tokens are ASCII.
        core::str::from_utf8(t).map(String::from).map_err(|_| ())
    }

    fn quoted(&mut self) -> Result<String, ()> {
        // Opening quote already checked by the caller.
        self.i += 1;
        let mut v = String::new();
        loop {
            match self.peek() {
                None => return Err(()),
                Some(b'"') => {
                    self.i += 1;
                    return Ok(v);
                }
                Some(b'\\') => {
                    self.i += 1;
                    match self.peek() {
                        Some(b) if b == b'\t' || (b' '..=b'~').contains(&b) => v.push(b as char),
                        _ => return Err(()),
                    }
                    self.i += 1;
                }
                Some(b) if b == b'\t' || (b' '..=b'~').contains(&b) => {
                    v.push(b as char);
                    self.i += 1;
                }
                Some(_) => return Err(()),
            }
        }
    }

    fn list(&mut self, out: &mut Vec<ExtensionParams>) -> Result<(), ()> {
        loop {
            self.ows();
            match self.peek() {
                None => return Ok(()),
                Some(b',') => {
                    // Empty list element.
                    self.i += 1;
                    continue;
                }
                Some(_) => {}
            }
            let mut ext = ExtensionParams::new(self.token()?);
            loop {
                self.ows();
                if self.peek() != Some(b';') {
                    break;
                }
                self.i += 1;
                self.ows();
                let name = self.token()?;
                self.ows();
                let value = if self.peek() == Some(b'=') {
                    self.i += 1;
                    self.ows();
                    let v = if self.peek() == Some(b'"') {
                        self.quoted()?
                    } else {
                        self.token()?
                    };
                    // RFC 6455 §9.1: a quoted value must still be a token once unquoted.
                    if !is_token(v.as_bytes()) {
                        return Err(());
                    }
                    Some(v)
                } else {
                    None
                };
                ext.params.push(ExtensionParam { name, value });
            }
            out.push(ext);
            self.ows();
            match self.peek() {
                None => return Ok(()),
                Some(b',') => self.i += 1,
                Some(_) => return Err(()),
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use alloc::string::ToString;

    #[test]
    fn parses_offers() {
        let v: &[&[u8]] = &[
            b"permessage-deflate; client_max_window_bits, permessage-deflate;server_max_window_bits=\"10\"",
            b" x-foo ,",
        ];
        let exts = parse_values(v.iter().copied()).unwrap();
        assert_eq!(exts.len(), 3);
        assert_eq!(exts[0].name(), "permessage-deflate");
        assert_eq!(exts[0].param("client_max_window_bits"), Some(None));
        assert_eq!(exts[1].param("server_max_window_bits"), Some(Some("10")));
        assert_eq!(exts[2], ExtensionParams::new("x-foo"));
    }

    #[test]
    fn rejects_bad_syntax() {
        for bad in [
            &b"a;"[..],
            b"a b",
            b";a",
            b"a; b=",
            b"a; b=\"x y\"",
            b"a; b=\"unterminated",
            b"a=1",
            b"\xff",
        ] {
            assert_eq!(parse_values([bad].into_iter()), Err(()), "{bad:?}");
        }
    }

    #[test]
    fn round_trips() {
        let e = ExtensionParams::new("e")
            .with_param("a", None)
            .with_param("b", Some("x y"));
        assert_eq!(e.to_string(), "e; a; b=\"x y\"");
        let e = ExtensionParams::new("e").with_param("b", Some("1"));
        let s = write_list(&[e.clone(), ExtensionParams::new("bad name")]);
        assert_eq!(s, "e; b=1");
        assert_eq!(parse_values([s.as_bytes()].into_iter()).unwrap(), [e]);
    }
}
