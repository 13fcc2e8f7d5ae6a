//! A plugin's checked `http` config: which destinations its fetches may
//! reach, and the bounds of each fetch.
//!
//! Promises:
//! - Deny by default: an empty allow-list reaches nothing.
//! - A destination is allowed only if its host name matches an allow entry,
//!   its port is one that entry allows (the entry's own port, or 80 and 443
//!   when it names none), and the address it connects to is public — unless
//!   `allow_private = true`, which also lets loopback, private, link-local
//!   and the like through (never unspecified, multicast or broadcast; see
//!   [`super::addr`]). [`HttpPolicy::vet_url`] checks name, port and IP
//!   literals; [`HttpPolicy::vet_addr`] checks a resolved address, and is
//!   what the client's resolver calls. Every redirect hop goes through
//!   [`HttpPolicy::vet_hop`], which also refuses an https→http downgrade.
//! - An allow entry that would match a whole top-level domain (`*.com`), a
//!   common public suffix (`*.co.uk`) or everything (`*`) is a config error
//!   naming the entry.
//! - Patterns and URL hosts are both normalised by the URL parser reqwest
//!   uses (lower case, punycode, canonical IP addresses, no trailing dot),
//!   so the check sees the name the connection will use.

use std::net::IpAddr;
use std::sync::Arc;
use std::time::Duration;

use reqwest::Url;
use reqwest::header::HeaderValue;

use super::addr::{self, AddrClass};
use crate::config::http::HttpConfig;

/// Ports a host may be fetched on when its allow entry names no port.
pub const DEFAULT_PORTS: [u16; 2] = [80, 443];

/// Second-level labels under which registries sell names (`co.uk`,
/// `com.au`): `*.co.uk` is as broad as `*.com`. A heuristic, not the public
/// suffix list; it catches the common mistakes.
const REGISTRY_LABELS: [&str; 16] = [
    "ac", "co", "com", "edu", "go", "gob", "gov", "gv", "ltd", "mil", "ne", "net", "nic", "nom",
    "or", "org",
];

/// Why an `http` config cannot be used.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PolicyError {
    #[error("http.allow entry {pattern:?} is not a host pattern: {reason}")]
    BadPattern { pattern: String, reason: String },
    #[error("http.user_agent {0:?} is not a valid header value")]
    BadUserAgent(String),
    /// The reason never repeats the URL, which may hold credentials.
    #[error("http.proxy is not a usable proxy URL: {0}")]
    BadProxy(String),
}

/// Why a destination is refused. Each message says why, and what to change
/// when the config can allow it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Refused {
    /// No allow entry matches the host. The message is the host alone, as
    /// the WIT's `denied` documents.
    Host(String),
    /// The host is allowed, but not on this port.
    Port {
        host: String,
        /// `host:port` as a URL writes it (`[::1]:8080`).
        authority: String,
        /// The ports the host's entries allow.
        ports: Vec<u16>,
    },
    /// The address the request would connect to is not public.
    Address {
        /// The host name that resolved to `addr`; none for an IP literal.
        name: Option<String>,
        addr: IpAddr,
        class: AddrClass,
    },
    /// A redirect from https to http (the target URL).
    Downgrade(String),
    /// A URL (first or redirect) whose scheme is not http or https.
    Scheme(String),
}

impl std::fmt::Display for Refused {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Refused::Host(host) => f.write_str(host),
            Refused::Port {
                host,
                authority,
                ports,
            } => write!(
                f,
                "{authority} is not on the allow-list: {host} is allowed on port{} {} only; \
                 add \"{authority}\" to allow it",
                if ports.len() == 1 { "" } else { "s" },
                list_ports(ports)
            ),
            Refused::Address { name, addr, class } => {
                f.write_str(&describe_address(name.as_deref(), *addr, *class))
            }
            Refused::Downgrade(to) => write!(
                f,
                "redirect to {to} refused: an https fetch is never redirected to plain http"
            ),
            Refused::Scheme(scheme) => {
                write!(
                    f,
                    "a {scheme}: URL is refused: only http and https are fetched"
                )
            }
        }
    }
}

impl std::error::Error for Refused {}

fn list_ports(ports: &[u16]) -> String {
    let text: Vec<String> = ports.iter().map(u16::to_string).collect();
    text.join(", ")
}

fn describe_address(name: Option<&str>, addr: IpAddr, class: AddrClass) -> String {
    let what = match name {
        Some(name) => format!("{name} resolves to {addr}, {class}"),
        None => format!("{addr} is {class}"),
    };
    if class.private_may_allow() {
        format!("{what}; set allow_private = true to allow it")
    } else {
        format!("{what}, which is never fetched")
    }
}

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
    fn check(&self, host: &str, port: u16) -> Result<(), Refused> {
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

/// A proxy URL that never shows its credentials in `Debug`.
#[derive(Clone)]
pub struct ProxyUrl(Url);

impl ProxyUrl {
    fn parse(text: &str) -> Result<Self, PolicyError> {
        let bad = |reason: &str| PolicyError::BadProxy(reason.to_owned());
        let url = Url::parse(text).map_err(|e| bad(&e.to_string()))?;
        if !matches!(url.scheme(), "http" | "https") {
            return Err(bad("its scheme must be http or https"));
        }
        if url.host_str().is_none_or(str::is_empty) {
            return Err(bad("it names no host"));
        }
        Ok(ProxyUrl(url))
    }

    pub fn url(&self) -> &Url {
        &self.0
    }

    /// The proxy's host, normalised as [`normalize`] does.
    pub fn host(&self) -> String {
        normalize(self.0.host_str().unwrap_or_default())
    }
}

impl std::fmt::Debug for ProxyUrl {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let port = self.0.port().map(|p| format!(":{p}")).unwrap_or_default();
        write!(f, "{}://{}{port}", self.0.scheme(), self.host())
    }
}

/// A checked `http` config, ready to build a client from.
#[derive(Debug, Clone)]
pub struct HttpPolicy {
    allow: Arc<AllowList>,
    allow_private: bool,
    proxy: Option<ProxyUrl>,
    timeout: Duration,
    max_bytes: u64,
    max_redirects: u32,
    retries: u32,
    backoff: Duration,
    user_agent: HeaderValue,
}

impl HttpPolicy {
    /// Check a config: every allow pattern, the proxy and the user agent.
    pub fn from_config(config: &HttpConfig) -> Result<Self, PolicyError> {
        let user_agent = HeaderValue::from_str(&config.user_agent)
            .map_err(|_| PolicyError::BadUserAgent(config.user_agent.clone()))?;
        let proxy = config.proxy.as_deref().map(ProxyUrl::parse).transpose()?;
        Ok(HttpPolicy {
            allow: Arc::new(AllowList::new(&config.allow)?),
            allow_private: config.allow_private,
            proxy,
            timeout: config.timeout,
            max_bytes: config.max_bytes,
            max_redirects: config.max_redirects,
            retries: config.retries,
            backoff: config.backoff,
            user_agent,
        })
    }

    /// The policy of a plugin without an `http` config: every fetch is
    /// denied.
    pub fn deny_all() -> Self {
        let defaults = HttpConfig::default();
        HttpPolicy {
            allow: Arc::new(AllowList::default()),
            allow_private: false,
            proxy: None,
            timeout: defaults.timeout,
            max_bytes: defaults.max_bytes,
            max_redirects: defaults.max_redirects,
            retries: defaults.retries,
            backoff: defaults.backoff,
            user_agent: HeaderValue::from_static("sluice"),
        }
    }

    pub fn allow(&self) -> &AllowList {
        &self.allow
    }

    pub fn allow_private(&self) -> bool {
        self.allow_private
    }

    pub fn proxy(&self) -> Option<&ProxyUrl> {
        self.proxy.as_ref()
    }

    pub fn timeout(&self) -> Duration {
        self.timeout
    }

    pub fn max_bytes(&self) -> u64 {
        self.max_bytes
    }

    pub fn max_redirects(&self) -> u32 {
        self.max_redirects
    }

    pub fn retries(&self) -> u32 {
        self.retries
    }

    pub fn backoff(&self) -> Duration {
        self.backoff
    }

    pub fn user_agent(&self) -> &HeaderValue {
        &self.user_agent
    }

    /// Whether `url` may be requested: scheme, host name, port, and the
    /// address when the host is an IP literal (a literal is never resolved,
    /// so [`HttpPolicy::vet_addr`] would not see it otherwise). A host name
    /// is vetted again when it resolves.
    pub fn vet_url(&self, url: &Url) -> Result<(), Refused> {
        if !matches!(url.scheme(), "http" | "https") {
            return Err(Refused::Scheme(url.scheme().to_owned()));
        }
        let host = url.host_str().unwrap_or_default();
        let port = url.port_or_known_default().unwrap_or(0);
        self.allow.check(host, port)?;
        // The URL parser has already turned every numeric form (`127.1`,
        // `2130706433`, `0x7f.1`) into a canonical address, so a host that
        // does not parse as one is a name.
        match normalize(host).parse::<IpAddr>() {
            Ok(ip) => self.vet_addr(None, ip),
            Err(_) => Ok(()),
        }
    }

    /// Whether a redirect from `from` to `to` may be followed: `to` passes
    /// [`HttpPolicy::vet_url`], and https is not downgraded to http.
    pub fn vet_hop(&self, from: &Url, to: &Url) -> Result<(), Refused> {
        if from.scheme() == "https" && to.scheme() == "http" {
            return Err(Refused::Downgrade(to.to_string()));
        }
        self.vet_url(to)
    }

    /// Whether a connection may go to `addr`, which `name` resolved to (none
    /// for an IP literal).
    pub fn vet_addr(&self, name: Option<&str>, addr: IpAddr) -> Result<(), Refused> {
        let class = addr::classify(addr);
        if class == AddrClass::Global || (self.allow_private && class.private_may_allow()) {
            return Ok(());
        }
        Err(Refused::Address {
            name: name.map(normalize),
            addr,
            class,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn list(patterns: &[&str]) -> AllowList {
        AllowList::new(patterns).unwrap()
    }

    fn policy(allow: &[&str], allow_private: bool) -> HttpPolicy {
        HttpPolicy::from_config(&HttpConfig {
            allow: allow.iter().map(|s| (*s).to_owned()).collect(),
            allow_private,
            ..HttpConfig::default()
        })
        .unwrap()
    }

    fn url(s: &str) -> Url {
        Url::parse(s).unwrap()
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

    #[test]
    fn policy_checks_user_agent_and_proxy() {
        let config = HttpConfig {
            user_agent: "bad\nagent".into(),
            ..HttpConfig::default()
        };
        assert!(matches!(
            HttpPolicy::from_config(&config),
            Err(PolicyError::BadUserAgent(_))
        ));
        for (proxy, why) in [
            ("not a url", "relative URL"),
            ("socks5://127.0.0.1:1080", "http or https"),
            ("ftp://user:secret@proxy:21", "http or https"),
        ] {
            let config = HttpConfig {
                proxy: Some(proxy.into()),
                ..HttpConfig::default()
            };
            let err = HttpPolicy::from_config(&config).unwrap_err();
            assert!(err.to_string().contains(why), "{proxy}: {err}");
            assert!(!err.to_string().contains("secret"), "{err}");
        }
        let config = HttpConfig {
            proxy: Some("http://user:secret@Proxy.Internal:3128".into()),
            ..HttpConfig::default()
        };
        let policy = HttpPolicy::from_config(&config).unwrap();
        let shown = format!("{policy:?}");
        assert!(shown.contains("http://proxy.internal:3128"), "{shown}");
        assert!(!shown.contains("secret"), "{shown}");
    }

    #[test]
    fn literal_addresses_are_vetted_without_allow_private() {
        let p = policy(
            &["127.0.0.1:8080", "[::1]:8080", "10.0.0.1", "8.8.8.8"],
            false,
        );
        for (u, want) in [
            (
                "http://127.0.0.1:8080/",
                "127.0.0.1 is a loopback address; set allow_private = true to allow it",
            ),
            (
                "http://2130706433:8080/",
                "127.0.0.1 is a loopback address; set allow_private = true to allow it",
            ),
            (
                "http://[::1]:8080/",
                "::1 is a loopback address; set allow_private = true to allow it",
            ),
            (
                "http://10.0.0.1/",
                "10.0.0.1 is a private address; set allow_private = true to allow it",
            ),
        ] {
            let err = p.vet_url(&url(u)).unwrap_err();
            assert_eq!(err.to_string(), want, "{u}");
        }
        p.vet_url(&url("http://8.8.8.8/")).unwrap();
        // The allow-list is checked first: an unlisted address is just
        // "not allowed", whatever kind it is.
        assert_eq!(
            p.vet_url(&url("http://[::ffff:127.0.0.1]:8080/")),
            Err(Refused::Host("::ffff:7f00:1".into()))
        );
    }

    #[test]
    fn allow_private_lets_private_addresses_through_but_not_non_destinations() {
        let p = policy(
            &["127.0.0.1:8080", "[::1]:8080", "0.0.0.0", "localhost"],
            true,
        );
        p.vet_url(&url("http://127.0.0.1:8080/")).unwrap();
        p.vet_url(&url("http://[::1]:8080/")).unwrap();
        p.vet_addr(Some("localhost"), "127.0.0.1".parse().unwrap())
            .unwrap();
        assert_eq!(
            p.vet_url(&url("http://0.0.0.0/")).unwrap_err().to_string(),
            "0.0.0.0 is an unspecified address, which is never fetched"
        );
        assert!(p.vet_addr(None, "224.0.0.1".parse().unwrap()).is_err());
    }

    #[test]
    fn resolved_addresses_are_named_in_the_refusal() {
        let p = policy(&["metadata.example"], false);
        let err = p
            .vet_addr(
                Some("Metadata.Example."),
                "169.254.169.254".parse().unwrap(),
            )
            .unwrap_err();
        assert_eq!(
            err.to_string(),
            "metadata.example resolves to 169.254.169.254, a link-local address; \
             set allow_private = true to allow it"
        );
        p.vet_addr(Some("metadata.example"), "93.184.216.34".parse().unwrap())
            .unwrap();
    }

    #[test]
    fn redirect_hops_are_vetted_like_first_requests() {
        let p = policy(
            &["a.example", "b.example", "b.example:8080", "127.0.0.1"],
            false,
        );
        let from = url("https://a.example/start");
        // Downgrade refused, even to the same host.
        assert_eq!(
            p.vet_hop(&from, &url("http://a.example/x")),
            Err(Refused::Downgrade("http://a.example/x".into()))
        );
        // Upgrade and same-scheme hops to allowed hosts are fine.
        p.vet_hop(&url("http://a.example/"), &url("https://b.example/"))
            .unwrap();
        p.vet_hop(&from, &url("https://b.example:8080/")).unwrap();
        // Name, port and literal address rules apply to the hop.
        assert_eq!(
            p.vet_hop(&from, &url("https://c.example/")),
            Err(Refused::Host("c.example".into()))
        );
        assert!(matches!(
            p.vet_hop(&from, &url("https://b.example:9000/")),
            Err(Refused::Port { .. })
        ));
        assert!(matches!(
            p.vet_hop(&url("http://a.example/"), &url("http://127.0.0.1/")),
            Err(Refused::Address { name: None, .. })
        ));
        assert_eq!(
            p.vet_hop(&from, &url("ftp://a.example/")),
            Err(Refused::Scheme("ftp".into()))
        );
    }
}
