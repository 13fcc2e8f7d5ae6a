//! The `[admin]` section: where the admin API (`/plugins`, reload,
//! rollback) listens, the bearer token it asks for, and the host names it
//! answers to.
//!
//! Promise: the listener defaults to loopback; the token is held as a
//! [`Secret`], so it never shows in `Debug` output or logs.

use std::net::{IpAddr, Ipv4Addr, SocketAddr};

use serde::Deserialize;

use super::secret::Secret;

/// The default admin address: loopback only.
pub const DEFAULT_LISTEN: SocketAddr = SocketAddr::new(IpAddr::V4(Ipv4Addr::LOCALHOST), 9465);

/// The admin API listener. Without an `[admin]` section there is no admin
/// API at all.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AdminConfig {
    /// Address to listen on (default "127.0.0.1:9465"). Keep it on loopback
    /// or a private network: the token is sent in clear over plain HTTP.
    #[serde(default = "default_listen")]
    pub listen: SocketAddr,
    /// The bearer token every request must carry as `Authorization: Bearer
    /// <token>`; give it through the environment: `token =
    /// "${SLUICE_ADMIN_TOKEN}"`. Without one (or with an empty one), reload
    /// and rollback are refused and `GET /plugins` is open.
    #[serde(default)]
    pub token: Option<Secret<String>>,
    /// Extra names the `Host` header may carry (`name` or `name:port`), for
    /// reaching the API through a DNS name or a proxy. The listen address,
    /// `localhost`, `127.0.0.1` and `[::1]` with the listener's port are
    /// always accepted; any other `Host` gets 421, which stops DNS
    /// rebinding from a browser.
    #[serde(default)]
    pub hosts: Vec<String>,
}

fn default_listen() -> SocketAddr {
    DEFAULT_LISTEN
}

impl AdminConfig {
    /// The token, unless none (or an empty one) is configured.
    pub fn token(&self) -> Option<&str> {
        self.token
            .as_ref()
            .map(|t| t.expose().as_str())
            .filter(|t| !t.is_empty())
    }

    /// Check the host names; `at` names the section in errors.
    pub fn validate(&self, at: &str) -> Result<(), String> {
        for (i, h) in self.hosts.iter().enumerate() {
            let ok = !h.is_empty()
                && h.chars()
                    .all(|c| c.is_ascii_alphanumeric() || "-.:[]_".contains(c));
            if !ok {
                return Err(format!(
                    "{at}.hosts[{i}]: {h:?} is not a host name (`name` or `name:port`)"
                ));
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_to_loopback_without_a_token() {
        let a: AdminConfig = toml::from_str("").unwrap();
        assert_eq!(a.listen, DEFAULT_LISTEN);
        assert_eq!(a.token(), None);
        let a: AdminConfig = toml::from_str("token = ''").unwrap();
        assert_eq!(a.token(), None, "an empty token is no token");
        let a: AdminConfig =
            toml::from_str("listen = '0.0.0.0:1'\ntoken = 'hunter2'\nhosts = ['sluice.internal']")
                .unwrap();
        assert_eq!(a.token(), Some("hunter2"));
        assert!(!format!("{a:?}").contains("hunter2"));
        a.validate("admin").unwrap();
        let bad = AdminConfig {
            hosts: vec!["a b".into()],
            ..a
        };
        assert!(
            bad.validate("admin")
                .unwrap_err()
                .contains("admin.hosts[0]")
        );
    }
}
