//! A small, strict `ws://` / `wss://` URL parser (RFC 6455 §3).

/// Why a WebSocket URL was refused by [`ClientRequest::from_url`](crate::ClientRequest::from_url).
#[derive(Clone, Copy, Debug, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum UrlError {
    /// The scheme is not `ws` or `wss`, or `://` is missing.
    #[error("url scheme must be ws:// or wss://")]
    UnsupportedScheme,
    /// The authority has no host.
    #[error("url has no host")]
    MissingHost,
    /// The host has characters outside a DNS name, IPv4 or bracketed IPv6 literal.
    #[error("url host is invalid")]
    InvalidHost,
    /// The port is empty, not a number, or outside 1..=65535.
    #[error("url port is invalid")]
    InvalidPort,
    /// `user:password@` is not allowed in a WebSocket URL.
    #[error("url must not contain userinfo")]
    Userinfo,
    /// A `#fragment` is not allowed in a WebSocket URL (RFC 6455 §3).
    #[error("url must not contain a fragment")]
    Fragment,
    /// The path or query contains characters that are not allowed in a URI.
    #[error("url path or query is invalid")]
    InvalidPath,
}

/// The parts of a parsed URL.
#[derive(Debug, PartialEq, Eq)]
pub(crate) struct Parts<'a> {
    pub(crate) secure: bool,
    /// Host without IPv6 brackets.
    pub(crate) host: &'a str,
    pub(crate) port: Option<u16>,
    /// Never empty; starts with `/`, `"/" + query` when the URL had only a query.
    pub(crate) path_and_query: alloc::string::String,
}

/// Characters allowed in a path or query as written (`pchar`, `/`, `?`, percent escapes checked separately).
pub(crate) const fn is_path_char(b: u8) -> bool {
    matches!(b,
        b'a'..=b'z' | b'A'..=b'Z' | b'0'..=b'9'
        | b'-' | b'.' | b'_' | b'~'
        | b'!' | b'$' | b'&' | b'\'' | b'(' | b')' | b'*' | b'+' | b',' | b';' | b'='
        | b':' | b'@' | b'/' | b'?' | b'%')
}

/// Whether a path-and-query is valid as a request target: allowed characters, well-formed `%XX`.
pub(crate) fn is_valid_path(pq: &str) -> bool {
    let b = pq.as_bytes();
    if !b.iter().all(|&c| is_path_char(c)) {
        return false;
    }
    b.iter().enumerate().all(|(i, &c)| {
        c != b'%'
            || matches!(
                (b.get(i + 1), b.get(i + 2)),
                (Some(x), Some(y)) if x.is_ascii_hexdigit() && y.is_ascii_hexdigit()
            )
    })
}

/// A DNS name or IPv4 address (`reg-name` restricted to unreserved characters).
pub(crate) fn is_valid_reg_name(host: &str) -> bool {
    !host.is_empty()
        && host
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'.' | b'_' | b'~'))
}

/// The inside of an IPv6 literal: hex digits, `:` and `.` (for an embedded IPv4), at least one `:`.
pub(crate) fn is_valid_ipv6(host: &str) -> bool {
    host.contains(':')
        && host.len() <= 45
        && host
            .bytes()
            .all(|b| b.is_ascii_hexdigit() || b == b':' || b == b'.')
}

pub(crate) fn parse(url: &str) -> Result<Parts<'_>, UrlError> {
    let (scheme, rest) = url.split_once("://").ok_or(UrlError::UnsupportedScheme)?;
    let secure = if scheme.eq_ignore_ascii_case("wss") {
        true
    } else if scheme.eq_ignore_ascii_case("ws") {
        false
    } else {
        return Err(UrlError::UnsupportedScheme);
    };
    if rest.contains('#') {
        return Err(UrlError::Fragment);
    }
    let end = rest.find(['/', '?']).unwrap_or(rest.len());
    let (authority, pq) = rest.split_at_checked(end).ok_or(UrlError::InvalidPath)?;
    if authority.contains('@') {
        return Err(UrlError::Userinfo);
    }
    if authority.is_empty() {
        return Err(UrlError::MissingHost);
    }
    let (host, port) = if let Some(inner) = authority.strip_prefix('[') {
        let (host, after) = inner.split_once(']').ok_or(UrlError::InvalidHost)?;
        if !is_valid_ipv6(host) {
            return Err(UrlError::InvalidHost);
        }
        let port = match after {
            "" => None,
            p => Some(p.strip_prefix(':').ok_or(UrlError::InvalidHost)?),
        };
        (host, port)
    } else {
        match authority.split_once(':') {
            Some((h, p)) => (h, Some(p)),
            None => (authority, None),
        }
    };
    if host.is_empty() {
        return Err(UrlError::MissingHost);
    }
    if !authority.starts_with('[') && !is_valid_reg_name(host) {
        return Err(UrlError::InvalidHost);
    }
    let port = match port {
        None => None,
        Some(p) => {
            if p.is_empty() || p.len() > 5 || !p.bytes().all(|b| b.is_ascii_digit()) {
                return Err(UrlError::InvalidPort);
            }
            match p.parse::<u16>() {
                Ok(0) | Err(_) => return Err(UrlError::InvalidPort),
                Ok(n) => Some(n),
            }
        }
    };
    let mut path_and_query = alloc::string::String::new();
    if !pq.starts_with('/') {
        path_and_query.push('/');
    }
    path_and_query.push_str(pq);
    if !is_valid_path(&path_and_query) {
        return Err(UrlError::InvalidPath);
    }
    Ok(Parts {
        secure,
        host,
        port,
        path_and_query,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn good() {
        let p = parse("ws://127.0.0.1:9001/chat?x=1").unwrap();
        assert_eq!(
            (p.secure, p.host, p.port, p.path_and_query.as_str()),
            (false, "127.0.0.1", Some(9001), "/chat?x=1")
        );
        let p = parse("WSS://example.com").unwrap();
        assert_eq!((p.secure, p.host, p.port), (true, "example.com", None));
        assert_eq!(p.path_and_query, "/");
        let p = parse("ws://[::1]:8080?q=%20").unwrap();
        assert_eq!((p.host, p.port), ("::1", Some(8080)));
        assert_eq!(p.path_and_query, "/?q=%20");
        let p = parse("ws://[::ffff:127.0.0.1]/").unwrap();
        assert_eq!((p.host, p.port), ("::ffff:127.0.0.1", None));
    }

    #[test]
    fn bad() {
        for (url, err) in [
            ("http://a/", UrlError::UnsupportedScheme),
            ("ws:/a", UrlError::UnsupportedScheme),
            ("ws://", UrlError::MissingHost),
            ("ws:///x", UrlError::MissingHost),
            ("ws://:80/", UrlError::MissingHost),
            ("ws://u:p@a/", UrlError::Userinfo),
            ("ws://a/#f", UrlError::Fragment),
            ("ws://a:/", UrlError::InvalidPort),
            ("ws://a:0/", UrlError::InvalidPort),
            ("ws://a:65536/", UrlError::InvalidPort),
            ("ws://a:+1/", UrlError::InvalidPort),
            ("ws://a:1:2/", UrlError::InvalidPort),
            ("ws://[::1/", UrlError::InvalidHost),
            ("ws://[zz]/", UrlError::InvalidHost),
            ("ws://[::1]x/", UrlError::InvalidHost),
            ("ws://a b/", UrlError::InvalidHost),
            ("ws://a/b c", UrlError::InvalidPath),
            ("ws://a/%zz", UrlError::InvalidPath),
            ("ws://a/é", UrlError::InvalidPath),
        ] {
            assert_eq!(parse(url), Err(err), "{url}");
        }
    }
}
