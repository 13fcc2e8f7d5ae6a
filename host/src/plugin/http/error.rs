//! Why an `http` config or a destination is refused: the error types every
//! part of [`super`] shares, so none of them depends on another for its
//! errors.
//!
//! Promise: each message says what was refused and why, and, where the
//! config could allow it, what to change. A [`PolicyError`] never repeats a
//! proxy URL (it may hold credentials).

use std::net::IpAddr;

use super::addr::AddrClass;

/// Why an `http` config cannot be used.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PolicyError {
    /// An `allow` entry is not a usable host pattern, or allows too much
    /// (`*`, `*.com`).
    #[error("http.allow entry {pattern:?} is not a host pattern: {reason}")]
    BadPattern {
        /// The entry as written.
        pattern: String,
        /// What is wrong with it.
        reason: String,
    },
    /// `user_agent` (given here) cannot be sent as a header value.
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
        /// The host, as the URL names it.
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
        /// The address refused.
        addr: IpAddr,
        /// Which kind of non-public address it is.
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
