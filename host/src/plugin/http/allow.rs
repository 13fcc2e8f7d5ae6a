//! The allow-list of a plugin's `http` config: which host names, on which
//! ports, its fetches may name.
//!
//! Promises:
//! - Deny by default: an empty list allows nothing.
//! - An entry is an exact name or IP address, or `*.suffix` for the names
//!   under `suffix` (not `suffix` itself), with an optional port. Without a
//!   port it allows [`DEFAULT_PORTS`] only; with one, that port only.
//! - `*`, and a wildcard over a top-level domain (`*.com`) or a common
//!   registry suffix (`*.co.uk`), are refused, naming the entry.
//! - Patterns and URL hosts are both normalised by the URL parser reqwest
//!   uses (lower case, punycode, canonical IP addresses, no trailing dot),
//!   so the check sees the name the connection will use.
//!
//! Names only: whether the address behind a name may be reached is
//! [`super::policy`]'s business.

use std::net::IpAddr;

use reqwest::Url;

use super::error::{PolicyError, Refused};

/// Ports a host may be fetched on when its allow entry names no port.
pub const DEFAULT_PORTS: [u16; 2] = [80, 443];

/// Second-level labels under which registries sell names (`co.uk`,
/// `com.au`): `*.co.uk` is as broad as `*.com`. A heuristic, not the public
/// suffix list; it catches the common mistakes.
const REGISTRY_LABELS: [&str; 16] = [
    "ac", "co", "com", "edu", "go", "gob", "gov", "gv", "ltd", "mil", "ne", "net", "nic", "nom",
    "or", "org",
];

/// Which hosts an allow entry matches.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Hosts {
    Exact(String),
    /// Stored with its leading dot: `.example.com`.
    Suffix(String),
}

#[derive(Debug, Clone, PartialEq, Eq)]
struct Entry {
    hosts: Hosts,
    /// None: [`DEFAULT_PORTS`].
    port: Option<u16>,
}

impl Entry {
    fn matches(&self, host: &str) -> bool {
        match &self.hosts {
            Hosts::Exact(name) => name == host,
            Hosts::Suffix(s) => host.len() > s.len() && host.ends_with(s.as_str()),
        }
    }

    fn allows_port(&self, port: u16) -> bool {
        match self.port {
            Some(p) => p == port,
            None => DEFAULT_PORTS.contains(&port),
        }
    }
}

/// The hosts a plugin may reach: exact names, and `*.suffix` wildcards that
/// match any name ending in `.suffix` (but not `suffix` itself), each with
/// an optional port (`api.example.com:8443`, `[::1]:8080`).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct AllowList {
    entries: Vec<Entry>,
}

impl AllowList {
    /// Parse patterns; an empty list allows nothing.
    pub fn new<S: AsRef<str>>(patterns: &[S]) -> Result<Self, PolicyError> {
        let entries = patterns
            .iter()
            .map(|p| parse_entry(p.as_ref()))
            .collect::<Result<_, _>>()?;
        Ok(AllowList { entries })
    }

    /// Whether `host` (as in a URL, e.g. `Api.Example.com`, `[::1]`) may be
    /// reached on `port`.
    pub fn allows(&self, host: &str, port: u16) -> bool {
        self.check(host, port).is_ok()
    }

    /// As [`AllowList::allows`], saying why not.
    pub(super) fn check(&self, host: &str, port: u16) -> Result<(), Refused> {
        // Run the host through the URL parser as the patterns were, so
        // `127.1` and `127.0.0.1`, or `BÜCHER.de` and `xn--bcher-kva.de`, agree.
        let Some(host) = canonical_host(host) else {
            return Err(Refused::Host(normalize(host)));
        };
        let matching: Vec<&Entry> = self.entries.iter().filter(|e| e.matches(&host)).collect();
        if matching.is_empty() {
            return Err(Refused::Host(host));
        }
        if matching.iter().any(|e| e.allows_port(port)) {
            return Ok(());
        }
        let mut ports: Vec<u16> = matching
            .iter()
            .flat_map(|e| e.port.map_or(DEFAULT_PORTS.to_vec(), |p| vec![p]))
            .collect();
        ports.sort_unstable();
        ports.dedup();
        let authority = if host.contains(':') {
            format!("[{host}]:{port}")
        } else {
            format!("{host}:{port}")
        };
        Err(Refused::Port {
            host,
            authority,
            ports,
        })
    }

    /// Whether the list allows nothing.
    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }
}

fn parse_entry(pattern: &str) -> Result<Entry, PolicyError> {
    let bad = |reason: &str| PolicyError::BadPattern {
        pattern: pattern.to_owned(),
        reason: reason.to_owned(),
    };
    let trimmed = pattern.trim();
    if trimmed == "*" {
        return Err(bad(
            "`*` would allow every host; list the hosts the plugin needs",
        ));
    }
    let (wildcard, name) = match trimmed.strip_prefix("*.") {
        Some(rest) => (true, rest),
        None => (false, trimmed),
    };
    if name.is_empty() {
        return Err(bad("it names no host"));
    }
    if name.contains('*') {
        return Err(bad(
            "`*` may only start a pattern, as in `*.example.com`; list hosts explicitly",
        ));
    }
    if name.contains(['/', '@', '?', '#']) || name.contains(char::is_whitespace) {
        return Err(bad(
            "give a host name only, without scheme, path or credentials",
        ));
    }
    // Split the port off the text ourselves: the URL parser drops one that
    // equals the scheme's default, so `[::1]:80` would lose its port.
    let (name, port) = split_port(name).map_err(|reason| bad(&reason))?;
    let host = canonical_host(name).ok_or_else(|| bad("it is not a valid host name"))?;
    if host.is_empty() {
        return Err(bad("it names no host"));
    }
    let hosts = if wildcard {
        if host.parse::<IpAddr>().is_ok() {
            return Err(bad(
                "a `*.` wildcard needs a domain name, not an IP address",
            ));
        }
        if too_broad(&host) {
            return Err(bad(&format!(
                "`*.{host}` would allow every name under a public suffix; \
                 list the hosts, or a narrower `*.example.{host}`"
            )));
        }
        Hosts::Suffix(format!(".{host}"))
    } else {
        Hosts::Exact(host)
    };
    Ok(Entry { hosts, port })
}

/// `host[:port]` or `[v6][:port]`.
fn split_port(name: &str) -> Result<(&str, Option<u16>), String> {
    let (host, port) = if let Some(rest) = name.strip_prefix('[') {
        let (_, after) = rest
            .split_once(']')
            .ok_or("an IPv6 address needs its closing `]`, as in `[::1]:8080`")?;
        let host = &name[..name.len() - after.len()];
        match after {
            "" => (host, None),
            _ => match after.strip_prefix(':') {
                Some(port) => (host, Some(port)),
                None => return Err(format!("unexpected {after:?} after the address")),
            },
        }
    } else {
        match name.matches(':').count() {
            0 => (name, None),
            1 => match name.split_once(':') {
                Some((host, port)) => (host, Some(port)),
                None => (name, None),
            },
            _ => return Err("write IPv6 addresses in brackets, as in `[::1]:8080`".into()),
        }
    };
    let port = match port {
        None => None,
        Some(text) => match text.parse::<u16>() {
            Ok(p) if p > 0 => Some(p),
            _ => return Err(format!("port {text:?} is not a port number (1-65535)")),
        },
    };
    Ok((host, port))
}

/// Whether a `*.` suffix covers a top-level domain or a registry suffix.
fn too_broad(suffix: &str) -> bool {
    match suffix.split('.').collect::<Vec<_>>().as_slice() {
        [_] => true,
        [second, cc] => cc.len() == 2 && REGISTRY_LABELS.contains(second),
        _ => false,
    }
}

/// `host` as the URL parser normalises it, then [`normalize`]d; none if it
/// does not parse as a host.
fn canonical_host(host: &str) -> Option<String> {
    let url = Url::parse(&format!("http://{host}/")).ok()?;
    let host = normalize(url.host_str().unwrap_or_default());
    (!host.is_empty()).then_some(host)
}

/// A host name for comparison and for `denied` messages: no IPv6 brackets,
/// no trailing dot, lower case.
pub(super) fn normalize(host: &str) -> String {
    host.trim_start_matches('[')
        .trim_end_matches(']')
        .trim_end_matches('.')
        .to_ascii_lowercase()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn list(patterns: &[&str]) -> AllowList {
        AllowList::new(patterns).unwrap()
    }

    #[test]
    fn empty_list_allows_nothing() {
        let l = list(&[]);
        assert!(l.is_empty());
        for host in ["localhost", "127.0.0.1", "example.com", "", "[::1]"] {
            assert!(!l.allows(host, 80), "{host}");
        }
    }

    #[test]
    fn exact_names_match_exactly() {
        let l = list(&["api.example.com", "localhost"]);
        assert!(l.allows("api.example.com", 443));
        assert!(l.allows("API.Example.COM", 443));
        assert!(l.allows("api.example.com.", 443));
        assert!(l.allows("localhost", 80));
        assert!(!l.allows("example.com", 443));
        assert!(!l.allows("x.api.example.com", 443));
        assert!(!l.allows("api.example.com.evil.net", 443));
        assert!(!l.allows("evilapi.example.com", 443));
        assert!(
            !l.allows("127.0.0.1", 80),
            "localhost does not allow its address"
        );
    }

    #[test]
    fn wildcard_matches_subdomains_only() {
        let l = list(&["*.example.com"]);
        assert!(l.allows("a.example.com", 443));
        assert!(l.allows("a.b.example.com", 443));
        assert!(l.allows("A.EXAMPLE.com", 443));
        assert!(!l.allows("example.com", 443));
        assert!(!l.allows("badexample.com", 443));
        assert!(!l.allows("example.com.evil.net", 443));
        assert!(!l.allows(".example.com", 443));
    }

    #[test]
    fn addresses_are_compared_canonically() {
        let l = list(&["127.0.0.1", "[::1]"]);
        assert!(l.allows("127.0.0.1", 80));
        assert!(l.allows("127.1", 80));
        assert!(l.allows("2130706433", 80));
        assert!(l.allows("[::1]", 80));
        assert!(l.allows("[0:0:0:0:0:0:0:1]", 80));
        assert!(!l.allows("127.0.0.2", 80));
        assert!(!l.allows("localhost", 80));
        let idn = list(&["bücher.de"]);
        assert!(idn.allows("xn--bcher-kva.de", 443));
    }

    #[test]
    fn without_a_port_only_80_and_443_are_allowed() {
        let l = list(&["api.example.com", "*.example.org"]);
        for port in [80, 443] {
            assert!(l.allows("api.example.com", port));
            assert!(l.allows("a.example.org", port));
        }
        for port in [8080, 22, 6379, 9464, 1] {
            assert!(!l.allows("api.example.com", port), "{port}");
            assert!(!l.allows("a.example.org", port), "{port}");
        }
    }

    #[test]
    fn a_named_port_is_the_only_port() {
        let l = list(&["api.example.com:8080", "[::1]:8443", "*.example.org:9000"]);
        assert!(l.allows("api.example.com", 8080));
        assert!(!l.allows("api.example.com", 80));
        assert!(!l.allows("api.example.com", 443));
        assert!(l.allows("[::1]", 8443));
        assert!(!l.allows("[::1]", 80));
        assert!(l.allows("x.example.org", 9000));
        assert!(!l.allows("x.example.org", 443));
        // The default port is kept when named, though the URL parser would
        // drop it.
        let l = list(&["[::1]:80", "h:443"]);
        assert!(l.allows("[::1]", 80) && !l.allows("[::1]", 443));
        assert!(l.allows("h", 443) && !l.allows("h", 80));
        // Entries add up.
        let l = list(&["h", "h:8080"]);
        assert!(l.allows("h", 80) && l.allows("h", 443) && l.allows("h", 8080));
    }

    #[test]
    fn port_refusal_says_which_ports_and_how_to_allow() {
        let err = list(&["localhost"]).check("localhost", 8080).unwrap_err();
        assert_eq!(
            err.to_string(),
            "localhost:8080 is not on the allow-list: localhost is allowed on ports 80, 443 \
             only; add \"localhost:8080\" to allow it"
        );
        let err = list(&["[::1]:9"]).check("[::1]", 8080).unwrap_err();
        assert_eq!(
            err.to_string(),
            "[::1]:8080 is not on the allow-list: ::1 is allowed on port 9 only; \
             add \"[::1]:8080\" to allow it"
        );
        assert_eq!(
            list(&["localhost"]).check("other", 80).unwrap_err(),
            Refused::Host("other".into())
        );
    }

    #[test]
    fn bad_patterns_are_refused_with_a_reason() {
        for (pattern, why) in [
            ("", "no host"),
            ("*", "every host"),
            ("*.", "no host"),
            ("a.*.com", "`*`"),
            ("*example.com", "`*`"),
            ("*.com", "public suffix"),
            ("*.COM.", "public suffix"),
            ("*.localhost", "public suffix"),
            ("*.co.uk", "public suffix"),
            ("*.com.au:443", "public suffix"),
            ("http://example.com", "without scheme"),
            ("example.com/path", "without scheme"),
            ("example.com:0", "port number"),
            ("example.com:99999", "port number"),
            ("example.com:http", "port number"),
            ("example.com:", "port number"),
            ("[::1", "closing"),
            ("[::1]x", "after the address"),
            ("::1", "brackets"),
            ("*.127.0.0.1", "IP address"),
            ("exa mple.com", "without scheme"),
        ] {
            let err = AllowList::new(&[pattern]).unwrap_err();
            assert!(
                matches!(&err, PolicyError::BadPattern { pattern: p, .. } if p == pattern),
                "{pattern}: {err:?}"
            );
            assert!(err.to_string().contains(why), "{pattern}: {err}");
            assert!(err.to_string().contains(&format!("{pattern:?}")), "{err}");
        }
        // Narrow wildcards are fine, including under a country code.
        list(&[
            "*.example.com",
            "*.example.co.uk",
            "*.gov.example",
            "*.bbc.co.uk",
        ]);
    }
}
