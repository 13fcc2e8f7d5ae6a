//! Outbound HTTP for plugins: the host fetches on a plugin's behalf, and
//! only where the plugin's `http` config ([`crate::config::http`]) allows.
//!
//! Promise: a plugin's fetch cannot reach the host's own network. It reaches
//! a destination only when the host name is on its allow-list, the port is
//! one the entry allows (80 and 443 unless the entry names one), and the
//! address the connection really goes to is public, unless the config sets
//! `allow_private = true`. Redirects are held to the same rules, hop by
//! hop. Without an `http` config every fetch is denied.
//!
//! The parts, each owning one rule:
//! - [`addr`]: which IP addresses are public (the address classifier);
//! - [`policy`]: the checked config, the allow-list, and the vetting of a
//!   URL, a redirect hop and a resolved address;
//! - [`resolve`]: the DNS resolver that hands reqwest only vetted addresses;
//! - [`client`]: the fetch itself (redirects, retries, time budget, size
//!   cap, error mapping).
//!
//! The wasmtime `Host` impl of the `http` import is in
//! `plugin/host/http.rs`, beside the store state it needs; nothing here
//! knows the store.

pub mod addr;
pub mod client;
pub mod policy;
mod resolve;

pub use addr::AddrClass;
pub use client::HttpClient;
pub use policy::{AllowList, HttpPolicy, PolicyError, Refused};
