//! The DNS resolver of a plugin's HTTP client: it looks a host name up and
//! hands reqwest only the addresses the policy allows.
//!
//! Promise: the client connects only to an address this resolver returned,
//! and it returns only addresses that passed [`HttpPolicy::vet_addr`] in the
//! same lookup. There is no second lookup between the check and the
//! connection, so DNS rebinding cannot swap the address. A name whose every
//! address is refused fails with [`Refused::Address`] (naming the first
//! refused address), which the client reports as `denied`. IP-literal hosts
//! never reach a resolver; [`HttpPolicy::vet_url`] checks those.
//!
//! With a configured proxy, reqwest resolves only the proxy's own name
//! here, and that name is trusted: the operator chose it.

use std::io;
use std::net::{IpAddr, SocketAddr, ToSocketAddrs as _};
use std::sync::Arc;

use reqwest::dns::{Addrs, Name, Resolve, Resolving};

use super::allow::normalize;
use super::error::Refused;
use super::policy::HttpPolicy;

/// Turns a host name into addresses. The system resolver in production; a
/// fixed table in tests.
pub(crate) trait Lookup: Send + Sync + 'static {
    fn lookup(&self, host: &str) -> io::Result<Vec<IpAddr>>;
}

/// `getaddrinfo`, through the standard library.
#[derive(Debug, Clone, Copy, Default)]
pub(crate) struct SystemLookup;

impl Lookup for SystemLookup {
    fn lookup(&self, host: &str) -> io::Result<Vec<IpAddr>> {
        Ok((host, 0).to_socket_addrs()?.map(|a| a.ip()).collect())
    }
}

/// A reqwest resolver that filters what [`Lookup`] finds through the
/// policy.
#[derive(Clone)]
pub(crate) struct VettingResolver {
    policy: HttpPolicy,
    lookup: Arc<dyn Lookup>,
    /// The configured proxy's host, resolved without vetting.
    proxy_host: Option<String>,
}

impl VettingResolver {
    pub(crate) fn new(policy: HttpPolicy, lookup: Arc<dyn Lookup>) -> Self {
        let proxy_host = policy.proxy().map(|p| p.host());
        VettingResolver {
            policy,
            lookup,
            proxy_host,
        }
    }

    /// The addresses of `host` a connection may use, in the order found.
    pub(crate) fn vet(&self, host: &str, found: Vec<IpAddr>) -> Result<Vec<IpAddr>, Refused> {
        if self.proxy_host.as_deref() == Some(normalize(host).as_str()) {
            return Ok(found);
        }
        let mut refused = None;
        let allowed: Vec<IpAddr> = found
            .into_iter()
            .filter(|ip| match self.policy.vet_addr(Some(host), *ip) {
                Ok(()) => true,
                Err(why) => {
                    refused.get_or_insert(why);
                    false
                }
            })
            .collect();
        match refused {
            Some(why) if allowed.is_empty() => Err(why),
            _ => Ok(allowed),
        }
    }

    async fn resolve_vetted(
        self,
        host: String,
    ) -> Result<Addrs, Box<dyn std::error::Error + Send + Sync>> {
        let lookup = self.lookup.clone();
        let name = host.clone();
        // getaddrinfo blocks; reqwest's own resolver runs it the same way.
        let found = tokio::task::spawn_blocking(move || lookup.lookup(&name)).await??;
        if found.is_empty() {
            return Err(
                io::Error::new(io::ErrorKind::NotFound, format!("{host} has no address")).into(),
            );
        }
        let allowed = self.vet(&host, found)?;
        tracing::trace!(%host, ?allowed, "resolved");
        // Port 0: reqwest puts in the URL's port.
        Ok(Box::new(
            allowed.into_iter().map(|ip| SocketAddr::new(ip, 0)),
        ))
    }
}

impl Resolve for VettingResolver {
    fn resolve(&self, name: Name) -> Resolving {
        Box::pin(self.clone().resolve_vetted(name.as_str().to_owned()))
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use std::collections::HashMap;
    use std::sync::Mutex;

    use super::*;
    use crate::config::http::HttpConfig;

    /// A resolver table; each name may answer differently on each lookup
    /// (the last answer repeats), to play a rebinding DNS server.
    #[derive(Default)]
    pub(crate) struct FakeLookup(Mutex<HashMap<String, Vec<Vec<IpAddr>>>>);

    impl FakeLookup {
        pub(crate) fn with(entries: &[(&str, &[&str])]) -> Arc<Self> {
            let fake = FakeLookup::default();
            for (name, addrs) in entries {
                fake.answer(name, addrs);
            }
            Arc::new(fake)
        }

        /// Queue one more answer for `name`.
        pub(crate) fn answer(&self, name: &str, addrs: &[&str]) {
            let addrs = addrs.iter().map(|a| a.parse().unwrap()).collect();
            self.0
                .lock()
                .unwrap()
                .entry(name.to_owned())
                .or_default()
                .push(addrs);
        }
    }

    impl Lookup for FakeLookup {
        fn lookup(&self, host: &str) -> io::Result<Vec<IpAddr>> {
            let mut table = self.0.lock().unwrap();
            let answers = table
                .get_mut(host)
                .ok_or_else(|| io::Error::new(io::ErrorKind::NotFound, "no such name"))?;
            Ok(if answers.len() > 1 {
                answers.remove(0)
            } else {
                answers[0].clone()
            })
        }
    }

    fn resolver(
        allow_private: bool,
        proxy: Option<&str>,
        lookup: Arc<FakeLookup>,
    ) -> VettingResolver {
        let policy = HttpPolicy::from_config(&HttpConfig {
            allow_private,
            proxy: proxy.map(str::to_owned),
            ..HttpConfig::default()
        })
        .unwrap();
        VettingResolver::new(policy, lookup)
    }

    async fn resolve(r: &VettingResolver, name: &str) -> Result<Vec<SocketAddr>, String> {
        let name: Name = name.parse().unwrap();
        match r.resolve(name).await {
            Ok(addrs) => Ok(addrs.collect()),
            Err(e) => Err(match e.downcast_ref::<Refused>() {
                Some(refused) => format!("refused: {refused}"),
                None => format!("error: {e}"),
            }),
        }
    }

    #[tokio::test]
    async fn only_vetted_addresses_are_handed_to_the_client() {
        let lookup = FakeLookup::with(&[
            ("public.example", &["93.184.216.34", "2606:2800:220:1::1"]),
            ("loop.example", &["127.0.0.1", "::1"]),
            ("metadata.example", &["169.254.169.254"]),
            ("mapped.example", &["::ffff:127.0.0.1"]),
            ("mixed.example", &["10.0.0.7", "93.184.216.34", "127.0.0.1"]),
            ("empty.example", &[]),
        ]);
        let r = resolver(false, None, lookup);
        assert_eq!(
            resolve(&r, "public.example").await.unwrap(),
            vec![
                "93.184.216.34:0".parse().unwrap(),
                "[2606:2800:220:1::1]:0".parse().unwrap()
            ]
        );
        assert_eq!(
            resolve(&r, "loop.example").await.unwrap_err(),
            "refused: loop.example resolves to 127.0.0.1, a loopback address; \
             set allow_private = true to allow it"
        );
        assert!(
            resolve(&r, "metadata.example")
                .await
                .unwrap_err()
                .contains("link-local"),
        );
        assert!(
            resolve(&r, "mapped.example")
                .await
                .unwrap_err()
                .contains("loopback")
        );
        // Refused addresses are dropped from a mixed answer: the client can
        // only connect to the public one.
        assert_eq!(
            resolve(&r, "mixed.example").await.unwrap(),
            vec!["93.184.216.34:0".parse().unwrap()]
        );
        assert!(
            resolve(&r, "empty.example")
                .await
                .unwrap_err()
                .contains("no address")
        );
        assert!(
            resolve(&r, "unknown.example")
                .await
                .unwrap_err()
                .starts_with("error: ")
        );
    }

    #[tokio::test]
    async fn a_rebinding_name_is_vetted_on_every_lookup() {
        // First answer public, then loopback: the classic rebinding trick.
        let lookup = FakeLookup::with(&[("rebind.example", &["93.184.216.34"])]);
        lookup.answer("rebind.example", &["127.0.0.1"]);
        let r = resolver(false, None, lookup);
        assert!(resolve(&r, "rebind.example").await.is_ok());
        assert!(
            resolve(&r, "rebind.example")
                .await
                .unwrap_err()
                .contains("loopback")
        );
    }

    #[tokio::test]
    async fn allow_private_passes_private_answers() {
        let lookup = FakeLookup::with(&[
            ("loop.example", &["127.0.0.1"]),
            ("zero.example", &["0.0.0.0"]),
        ]);
        let r = resolver(true, None, lookup);
        assert_eq!(
            resolve(&r, "loop.example").await.unwrap(),
            vec!["127.0.0.1:0".parse().unwrap()]
        );
        assert!(
            resolve(&r, "zero.example")
                .await
                .unwrap_err()
                .contains("never fetched")
        );
    }

    #[tokio::test]
    async fn the_configured_proxy_name_is_trusted() {
        let lookup = FakeLookup::with(&[
            ("proxy.internal", &["10.0.0.3"]),
            ("other.internal", &["10.0.0.4"]),
        ]);
        let r = resolver(false, Some("http://Proxy.Internal:3128"), lookup);
        assert_eq!(
            resolve(&r, "proxy.internal").await.unwrap(),
            vec!["10.0.0.3:0".parse().unwrap()]
        );
        assert!(
            resolve(&r, "other.internal")
                .await
                .unwrap_err()
                .contains("private")
        );
    }
}
