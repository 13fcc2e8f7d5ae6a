//! A plugin's checked `http` config: which destinations its fetches may
//! reach, and the bounds of each fetch.
//!
//! Promises:
//! - A destination is allowed only if the [`AllowList`] allows its name and
//!   port, and the address it connects to is public — unless
//!   `allow_private = true`, which also lets loopback, private, link-local
//!   and the like through (never unspecified, multicast or broadcast; see
//!   [`super::addr`]).
//! - [`HttpPolicy::vet_url`] checks a URL's scheme, name, port and IP
//!   literal; [`HttpPolicy::vet_addr`] checks a resolved address, and is
//!   what the client's resolver calls; every redirect hop goes through
//!   [`HttpPolicy::vet_hop`], which also refuses an https→http downgrade.
//!   These three are the only places a destination is judged.

use std::net::IpAddr;
use std::sync::Arc;
use std::time::Duration;

use reqwest::Url;
use reqwest::header::HeaderValue;

use super::addr::{self, AddrClass};
use super::allow::{AllowList, normalize};
use super::error::{PolicyError, Refused};
use crate::config::http::HttpConfig;

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

    /// The URL, credentials included: only for handing to the HTTP client.
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

    /// The host names and ports fetches may reach.
    pub fn allow(&self) -> &AllowList {
        &self.allow
    }

    /// Whether allowed hosts may resolve to loopback, private, link-local and
    /// similar addresses (`allow_private`).
    pub fn allow_private(&self) -> bool {
        self.allow_private
    }

    /// The proxy every request goes through, if one is configured.
    pub fn proxy(&self) -> Option<&ProxyUrl> {
        self.proxy.as_ref()
    }

    /// Total time one fetch may take: retries, backoff, redirects and the body
    /// included.
    pub fn timeout(&self) -> Duration {
        self.timeout
    }

    /// Largest response body accepted, in bytes.
    pub fn max_bytes(&self) -> u64 {
        self.max_bytes
    }

    /// Redirects followed before a fetch fails; 0 refuses every redirect.
    pub fn max_redirects(&self) -> u32 {
        self.max_redirects
    }

    /// Retries after a connection error or a 5xx response.
    pub fn retries(&self) -> u32 {
        self.retries
    }

    /// Pause before the first retry; it doubles for each later one.
    pub fn backoff(&self) -> Duration {
        self.backoff
    }

    /// The `User-Agent` header sent with every request.
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

    #[test]
    fn the_crawler_example_reaches_no_local_host_unless_told_to() {
        let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../examples/crawler");
        let text = std::fs::read_to_string(dir.join("pipeline.toml")).unwrap();
        let policy_with = |env: &dyn Fn(&str) -> Option<String>| {
            let file = crate::config::pipeline::parse(&text, &dir, env).unwrap();
            let http = file
                .pipelines
                .iter()
                .flat_map(|p| &p.plugins)
                .find_map(|p| p.http.as_ref())
                .unwrap();
            HttpPolicy::from_config(http).unwrap()
        };
        let default = policy_with(&|_| None);
        assert!(!default.allow_private());
        assert!(!default.allow().allows("localhost", 80));
        assert!(
            default
                .vet_addr(Some("x"), "127.0.0.1".parse().unwrap())
                .is_err()
        );
        let opted_in = policy_with(&|k| match k {
            "CRAWL_HOST" => Some("localhost:8000".into()),
            "CRAWL_ALLOW_PRIVATE" => Some("true".into()),
            _ => None,
        });
        assert!(opted_in.allow_private());
        assert!(opted_in.allow().allows("localhost", 8000));
        assert!(!opted_in.allow().allows("localhost", 9464));
    }
}
