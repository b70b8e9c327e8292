//! Host and Origin headers, as the admin listener and the WebSocket
//! listeners check them.
//!
//! A web page the operator visits can make the browser send requests to
//! the broker's HTTP endpoints: cross-site (the page's Origin is foreign)
//! or, after DNS rebinding, "same-origin" under a name the attacker
//! controls (the Host header carries that name). The Origin check stops
//! the first, the Host check the second. An IP literal or `localhost` in
//! Host cannot be rebound by a third party, so those are always accepted.

use std::net::IpAddr;

/// The `host[:port]` of a Host header or an origin, host lower-cased
/// (IPv6 literals keep their brackets).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Authority {
    pub host: String,
    pub port: Option<u16>,
}

impl Authority {
    /// Parses `host`, `host:port`, `[v6]` or `[v6]:port`; `None` for
    /// anything else (user info, paths, bare IPv6, bad ports).
    pub fn parse(text: &str) -> Option<Authority> {
        let text = text.trim();
        if text.is_empty() || text.contains(['/', '@', ' ', '\t', '?', '#']) {
            return None;
        }
        let (host, port) = if text.starts_with('[') {
            let end = text.find(']')?;
            let rest = &text[end + 1..];
            let port = match rest {
                "" => None,
                _ => Some(rest.strip_prefix(':')?),
            };
            (&text[..=end], port)
        } else {
            match text.split_once(':') {
                Some((h, p)) if !p.contains(':') => (h, Some(p)),
                Some(_) => return None,
                None => (text, None),
            }
        };
        if host.is_empty() {
            return None;
        }
        let port = match port {
            Some(p) => Some(p.parse::<u16>().ok()?),
            None => None,
        };
        Some(Authority {
            host: host.to_ascii_lowercase(),
            port,
        })
    }

    /// The host as an IP address, if it is a literal.
    fn ip(&self) -> Option<IpAddr> {
        let bare = self
            .host
            .strip_prefix('[')
            .and_then(|h| h.strip_suffix(']'))
            .unwrap_or(&self.host);
        bare.parse().ok()
    }
}

/// A parsed `Origin` header value: `scheme://host[:port]`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WebOrigin {
    pub scheme: String,
    pub authority: Authority,
}

impl WebOrigin {
    /// `None` for `null` (sandboxed frames, files) and anything malformed.
    pub fn parse(text: &str) -> Option<WebOrigin> {
        let (scheme, rest) = text.trim().split_once("://")?;
        let scheme = scheme.to_ascii_lowercase();
        if scheme.is_empty()
            || !scheme
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || c == '+')
        {
            return None;
        }
        Some(WebOrigin {
            authority: Authority::parse(rest.strip_suffix('/').unwrap_or(rest))?,
            scheme,
        })
    }

    /// The port, the scheme's default when none is written.
    pub fn port(&self) -> Option<u16> {
        self.authority.port.or(match self.scheme.as_str() {
            "http" | "ws" => Some(80),
            "https" | "wss" => Some(443),
            _ => None,
        })
    }

    /// Same host and port as the request's Host header (whose port
    /// defaults to `default_port`, the listener's scheme's). The scheme is
    /// not compared: a page is served over http or https, the socket it
    /// reaches may speak the other (a proxy terminating TLS, paho's
    /// `https://` origin on a ws listener); one host and port is one
    /// service either way.
    pub fn same_as_host(&self, host: &Authority, default_port: u16) -> bool {
        self.authority.host == host.host && self.port() == Some(host.port.unwrap_or(default_port))
    }
}

/// Whether the Host header names something DNS rebinding cannot reach us
/// through: an IP literal, `localhost`, or an entry of `allowed` (`*`,
/// `name` for any port, `name:port`).
pub fn host_allowed(host: &Authority, allowed: &[String]) -> bool {
    if host.ip().is_some() || host.host == "localhost" {
        return true;
    }
    allowed.iter().any(|entry| {
        entry == "*"
            || Authority::parse(entry)
                .is_some_and(|a| a.host == host.host && (a.port.is_none() || a.port == host.port))
    })
}

/// Whether `origin` (the header's text) is in `allowed` (`*` = any),
/// compared without case and a trailing `/`.
pub fn origin_listed(origin: &str, allowed: &[String]) -> bool {
    let origin = origin.trim().trim_end_matches('/');
    allowed
        .iter()
        .any(|a| a == "*" || a.trim_end_matches('/').eq_ignore_ascii_case(origin))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn auth(s: &str) -> Authority {
        Authority::parse(s).unwrap()
    }

    #[test]
    fn authorities_parse_strictly() {
        assert_eq!(auth("Example.COM:8080").host, "example.com");
        assert_eq!(auth("example.com:8080").port, Some(8080));
        assert_eq!(auth("[::1]:80").host, "[::1]");
        assert_eq!(auth("[::1]").port, None);
        for bad in ["", "a/b", "u@h", "::1", "h:99999", "h:", "[::1]x", ":80"] {
            assert_eq!(Authority::parse(bad), None, "{bad}");
        }
    }

    #[test]
    fn ip_literals_and_localhost_pass_names_need_the_list() {
        for ok in ["127.0.0.1:8080", "10.1.2.3", "[::1]:8080", "localhost:8080"] {
            assert!(host_allowed(&auth(ok), &[]), "{ok}");
        }
        assert!(!host_allowed(&auth("evil.example:8080"), &[]));
        let list = vec!["broker.lan".to_string(), "ops.lan:9000".to_string()];
        assert!(host_allowed(&auth("BROKER.lan:8080"), &list));
        assert!(host_allowed(&auth("ops.lan:9000"), &list));
        assert!(!host_allowed(&auth("ops.lan:9001"), &list));
        assert!(host_allowed(&auth("any.where"), &["*".to_string()]));
    }

    #[test]
    fn same_origin_compares_host_and_port_with_scheme_defaults() {
        let o = |s| WebOrigin::parse(s).unwrap();
        assert!(o("http://127.0.0.1:8080").same_as_host(&auth("127.0.0.1:8080"), 80));
        assert!(o("https://h").same_as_host(&auth("h"), 443));
        assert!(o("http://h").same_as_host(&auth("h:80"), 443));
        assert!(!o("http://h:8081").same_as_host(&auth("h:8080"), 80));
        assert!(!o("http://evil:8080").same_as_host(&auth("h:8080"), 80));
        assert_eq!(WebOrigin::parse("null"), None);
        assert_eq!(WebOrigin::parse("http://a/b"), None);
    }

    #[test]
    fn listed_origins_ignore_case_and_trailing_slash() {
        let list = vec!["https://Ops.example/".to_string()];
        assert!(origin_listed("https://ops.example", &list));
        assert!(!origin_listed("https://ops.example:444", &list));
        assert!(origin_listed("http://x", &["*".to_string()]));
    }
}
