//! A plugin's `http` table: which hosts its fetches may reach and how each
//! fetch is bounded (timeout, body size, redirects, retries, user agent).
//!
//! Promise: without this table a plugin can reach no host at all; with it,
//! only the hosts listed in `allow`, on ports 80 and 443 unless an entry
//! names its port, and only at public addresses unless `allow_private` is
//! set. Every other field has a safe default, so
//! `http = { allow = ["api.example.com"] }` is a complete config. Checking
//! the `allow` patterns and the proxy themselves happens when the plugin is
//! instantiated (see [`crate::plugin::http`]), so `sluice check` reports a
//! bad pattern.

use std::time::Duration;

use serde::Deserialize;

/// Default total timeout of one fetch.
pub const DEFAULT_TIMEOUT: Duration = Duration::from_secs(10);
/// Default cap on a response body: 10 MiB.
pub const DEFAULT_MAX_BYTES: u64 = 10 * 1024 * 1024;
/// Default number of redirects followed.
pub const DEFAULT_MAX_REDIRECTS: u32 = 5;
/// Default number of retries after the first attempt.
pub const DEFAULT_RETRIES: u32 = 2;
/// Default pause before the first retry; it doubles for each later one.
pub const DEFAULT_BACKOFF: Duration = Duration::from_millis(200);

/// The user agent sent when the config names none: `sluice/<version>`.
pub fn default_user_agent() -> String {
    format!("sluice/{}", env!("CARGO_PKG_VERSION"))
}

/// Outbound HTTP for one plugin.
#[derive(Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct HttpConfig {
    /// Hosts the plugin may fetch from, deny by default. Each entry is an
    /// exact host name or IP address (`api.example.com`, `127.0.0.1`,
    /// `[::1]`), or `*.example.com` for any subdomain of `example.com` (not
    /// `example.com` itself), optionally with a port (`api.example.com:8443`).
    /// An entry without a port allows ports 80 and 443 only; one with a port
    /// allows that port only. Case-insensitive. A wildcard over a top-level
    /// domain or public suffix (`*.com`, `*.co.uk`) and `*` are refused.
    /// Redirect targets are checked too.
    #[serde(default)]
    pub allow: Vec<String>,
    /// Let fetches reach loopback, private (RFC 1918, unique-local),
    /// link-local (cloud metadata), carrier-grade NAT, documentation and
    /// reserved addresses. Off by default: a host name on the allow-list
    /// that resolves to such an address, or such an IP literal, is denied.
    /// Unspecified, multicast and broadcast addresses are denied even when
    /// on. Meant for local development and tests. `true`/`false`, or the
    /// same as a string (so it can come from `${VAR}`).
    #[serde(default, deserialize_with = "bool_or_string")]
    pub allow_private: bool,
    /// Send every fetch through this HTTP proxy (`http://proxy:3128`,
    /// credentials in the URL allowed). Proxy variables in the environment
    /// (`HTTP_PROXY`, `ALL_PROXY`, ...) are always ignored. The proxy
    /// resolves names itself, so through a proxy the host name, port and IP
    /// literals are still checked, but not the address a name resolves to:
    /// the proxy must do that filtering.
    #[serde(default)]
    pub proxy: Option<String>,
    /// Total time one fetch may take, retries, backoff, redirects and
    /// reading the body included, e.g. "10s". The plugin's `deadline` must
    /// be larger, since it keeps running while the host fetches.
    #[serde(default = "default_timeout", with = "humantime_serde")]
    pub timeout: Duration,
    /// Largest response body accepted, e.g. "10MiB". A larger body is not
    /// read past the cap and the fetch fails with `too-large`. The body is
    /// copied into the plugin's memory, so keep this below its `memory`.
    #[serde(
        default = "default_max_bytes",
        deserialize_with = "crate::config::bytes::deserialize"
    )]
    pub max_bytes: u64,
    /// Redirects followed before the fetch fails with `too-many-redirects`;
    /// 0 refuses every redirect.
    #[serde(default = "default_max_redirects")]
    pub max_redirects: u32,
    /// Retries after a connection error or a 5xx response. When they are
    /// used up, a 5xx is returned to the plugin as a normal response.
    #[serde(default = "default_retries")]
    pub retries: u32,
    /// Pause before the first retry, e.g. "200ms"; it doubles for each
    /// later retry. A retry whose pause would pass `timeout` is not made.
    #[serde(default = "default_backoff", with = "humantime_serde")]
    pub backoff: Duration,
    /// The `User-Agent` header sent with every request. Plugins cannot
    /// override it.
    #[serde(default = "default_user_agent")]
    pub user_agent: String,
}

/// `proxy` is shown without its URL: it may carry credentials.
impl std::fmt::Debug for HttpConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("HttpConfig")
            .field("allow", &self.allow)
            .field("allow_private", &self.allow_private)
            .field("proxy", &self.proxy.as_ref().map(|_| "<set>"))
            .field("timeout", &self.timeout)
            .field("max_bytes", &self.max_bytes)
            .field("max_redirects", &self.max_redirects)
            .field("retries", &self.retries)
            .field("backoff", &self.backoff)
            .field("user_agent", &self.user_agent)
            .finish()
    }
}

impl Default for HttpConfig {
    fn default() -> Self {
        HttpConfig {
            allow: Vec::new(),
            allow_private: false,
            proxy: None,
            timeout: DEFAULT_TIMEOUT,
            max_bytes: DEFAULT_MAX_BYTES,
            max_redirects: DEFAULT_MAX_REDIRECTS,
            retries: DEFAULT_RETRIES,
            backoff: DEFAULT_BACKOFF,
            user_agent: default_user_agent(),
        }
    }
}

/// A bool written as `true` or as `"true"`: the string form lets a
/// `${VAR:-false}` default stay valid TOML however interpolation is done.
fn bool_or_string<'de, D: serde::Deserializer<'de>>(d: D) -> Result<bool, D::Error> {
    #[derive(Deserialize)]
    #[serde(untagged)]
    enum Flag {
        Bool(bool),
        Text(String),
    }
    match Flag::deserialize(d)? {
        Flag::Bool(b) => Ok(b),
        Flag::Text(t) => match t.trim() {
            "true" => Ok(true),
            "false" => Ok(false),
            other => Err(serde::de::Error::custom(format!(
                "expected true or false, got {other:?}"
            ))),
        },
    }
}

fn default_timeout() -> Duration {
    DEFAULT_TIMEOUT
}

fn default_max_bytes() -> u64 {
    DEFAULT_MAX_BYTES
}

fn default_max_redirects() -> u32 {
    DEFAULT_MAX_REDIRECTS
}

fn default_retries() -> u32 {
    DEFAULT_RETRIES
}

fn default_backoff() -> Duration {
    DEFAULT_BACKOFF
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_fill_every_field() {
        let c: HttpConfig = toml::from_str("allow = [\"api.example.com\"]").unwrap();
        assert_eq!(
            c,
            HttpConfig {
                allow: vec!["api.example.com".into()],
                ..HttpConfig::default()
            }
        );
        assert_eq!(c.timeout, Duration::from_secs(10));
        assert_eq!(c.max_bytes, 10 << 20);
        assert_eq!(c.max_redirects, 5);
        assert_eq!(c.retries, 2);
        assert_eq!(c.backoff, Duration::from_millis(200));
        assert!(c.user_agent.starts_with("sluice/"), "{}", c.user_agent);
        assert!(!c.allow_private);
        assert_eq!(c.proxy, None);
    }

    #[test]
    fn allow_private_and_proxy() {
        for (text, want) in [
            ("allow_private = true", true),
            ("allow_private = false", false),
            ("allow_private = \"true\"", true),
            ("allow_private = \" false \"", false),
        ] {
            let c: HttpConfig = toml::from_str(text).unwrap();
            assert_eq!(c.allow_private, want, "{text}");
        }
        let err = toml::from_str::<HttpConfig>("allow_private = \"yes\"").unwrap_err();
        assert!(err.to_string().contains("true or false"), "{err}");
        let c: HttpConfig = toml::from_str("proxy = \"http://u:secret@proxy:3128\"").unwrap();
        assert_eq!(c.proxy.as_deref(), Some("http://u:secret@proxy:3128"));
        assert!(!format!("{c:?}").contains("secret"), "{c:?}");
    }

    #[test]
    fn parses_human_units() {
        let c: HttpConfig = toml::from_str(
            "allow = [\"*.example.com\"]\ntimeout = \"1500ms\"\nmax_bytes = \"64KiB\"\n\
             max_redirects = 0\nretries = 4\nbackoff = \"1s\"\nuser_agent = \"bot/1\"",
        )
        .unwrap();
        assert_eq!(c.timeout, Duration::from_millis(1500));
        assert_eq!(c.max_bytes, 64 << 10);
        assert_eq!(c.max_redirects, 0);
        assert_eq!(c.retries, 4);
        assert_eq!(c.backoff, Duration::from_secs(1));
        assert_eq!(c.user_agent, "bot/1");
    }

    #[test]
    fn unknown_fields_are_named() {
        let err = toml::from_str::<HttpConfig>("allow_hosts = [\"x\"]").unwrap_err();
        assert!(err.to_string().contains("allow_hosts"), "{err}");
        let err = toml::from_str::<HttpConfig>("timeout = \"soon\"").unwrap_err();
        assert!(err.to_string().contains("timeout"), "{err}");
    }
}
