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
//! - [`allow`]: the allow-list (names and ports);
//! - [`policy`]: the checked config, and the vetting of a URL, a redirect
//!   hop and a resolved address;
//! - [`error`]: why a config or a destination is refused;
//! - [`resolve`]: the DNS resolver that hands reqwest only vetted addresses;
//! - [`client`]: the fetch itself (redirects, retries, time budget, size
//!   cap, error mapping).
//!
//! The wasmtime `Host` impl of the `http` import is in
//! `plugin/host/http.rs`, beside the store state it needs; nothing here
//! knows the store.

pub mod addr;
pub mod allow;
pub mod client;
pub mod error;
pub mod policy;
mod resolve;

pub use addr::AddrClass;
pub use allow::AllowList;
pub use client::HttpClient;
pub use error::{PolicyError, Refused};
pub use policy::HttpPolicy;
