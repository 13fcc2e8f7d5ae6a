//! Values that must not leak: passwords, tokens, database URLs.
//!
//! Promise: `Debug` and `Display` of a [`Secret`] never show its value, and
//! those of a [`DbUrl`] show the URL with its password (in the user info or
//! in a query parameter) replaced by `***`. The value itself is reached only
//! through an explicit `expose()` / `as_str()`, at the one place that hands
//! it to a client library.

use serde::{Deserialize, Deserializer};
use sha2::{Digest as _, Sha256};

/// A secret string (or other value): deserialized like the inner value,
/// printed as `***`.
#[derive(Clone, PartialEq, Eq, Default)]
pub struct Secret<T>(T);

impl<T> Secret<T> {
    /// Wrap a value so that it is never printed.
    pub fn new(value: T) -> Self {
        Secret(value)
    }

    /// The value itself: only for handing it to the client that needs it.
    pub fn expose(&self) -> &T {
        &self.0
    }
}

impl From<&str> for Secret<String> {
    fn from(s: &str) -> Self {
        Secret(s.to_owned())
    }
}

impl<T> std::fmt::Debug for Secret<T> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("\"***\"")
    }
}

impl<T> std::fmt::Display for Secret<T> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("***")
    }
}

impl<'de, T: Deserialize<'de>> Deserialize<'de> for Secret<T> {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        T::deserialize(d).map(Secret)
    }
}

/// A database URL (`postgres://user:password@host/db?sslmode=require`,
/// `sqlite://file.db`); printed with its password hidden.
#[derive(Clone, PartialEq, Eq)]
pub struct DbUrl(String);

impl DbUrl {
    /// Wrap a database URL.
    pub fn new(url: impl Into<String>) -> Self {
        DbUrl(url.into())
    }

    /// The whole URL, password included: only for connecting.
    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// The URL with its password replaced by `***`.
    pub fn redacted(&self) -> String {
        redact_url(&self.0)
    }

    /// Whether the URL starts with `prefix`: for telling the scheme
    /// (`postgres://`, `sqlite:`) without exposing the URL.
    pub fn starts_with(&self, prefix: &str) -> bool {
        self.0.starts_with(prefix)
    }
}

impl std::fmt::Debug for DbUrl {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{:?}", self.redacted())
    }
}

impl std::fmt::Display for DbUrl {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.redacted())
    }
}

impl<'de> Deserialize<'de> for DbUrl {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        String::deserialize(d).map(DbUrl)
    }
}

/// Query parameters that carry a credential (libpq and sqlx names).
fn is_secret_param(name: &str) -> bool {
    let n = name.to_ascii_lowercase();
    n.contains("password") || n.contains("secret") || n.contains("token") || n == "sslkey"
}

/// Hide the password of a URL: the one after `user:` and any query
/// parameter named like a password.
pub fn redact_url(url: &str) -> String {
    let (head, query) = match url.split_once('?') {
        Some((h, q)) => (h, Some(q)),
        None => (url, None),
    };
    let mut out = match (head.find("://"), head.rfind('@')) {
        (Some(s), Some(at)) if at > s => {
            let creds = &head[s + 3..at];
            match creds.split_once(':') {
                Some((user, _)) => format!("{}{user}:***{}", &head[..s + 3], &head[at..]),
                None => head.to_owned(),
            }
        }
        _ => head.to_owned(),
    };
    if let Some(q) = query {
        out.push('?');
        let parts: Vec<String> = q
            .split('&')
            .map(|kv| match kv.split_once('=') {
                Some((k, _)) if is_secret_param(k) => format!("{k}=***"),
                _ => kv.to_owned(),
            })
            .collect();
        out.push_str(&parts.join("&"));
    }
    out
}

/// `text` with each `(shown, value)`'s value replaced by `shown`. Values
/// shorter than 4 characters are replaced only where quoted (`"v"`, `'v'`,
/// `` `v` `` or Rust's `{:?}` form), so that a value like `3` does not
/// garble the rest of the message.
pub fn hide<'a>(text: &str, secrets: impl IntoIterator<Item = (String, &'a str)>) -> String {
    let mut secrets: Vec<(String, &str)> =
        secrets.into_iter().filter(|(_, v)| !v.is_empty()).collect();
    // Longest first, so a value that contains another is hidden whole.
    secrets.sort_by_key(|(_, v)| std::cmp::Reverse(v.len()));
    let mut out = text.to_owned();
    for (shown, v) in secrets {
        out = out.replace(&format!("{v:?}"), &format!("\"{shown}\""));
        if v.chars().count() >= 4 {
            out = out.replace(v, &shown);
        } else {
            for q in ['`', '\'', '"'] {
                out = out.replace(&format!("{q}{v}{q}"), &format!("{q}{shown}{q}"));
            }
        }
    }
    out
}

/// `text` (a plugin's error, say) with the values of `params` hidden, as
/// `<param name>`: a plugin that quotes a bad param must not show a
/// secret in logs or the admin API.
pub fn hide_params(text: &str, params: &[(String, String)]) -> String {
    hide(
        text,
        params
            .iter()
            .map(|(k, v)| (format!("<param {k}>"), v.as_str())),
    )
}

/// The first 12 hex digits of the SHA-256 of `value`: enough to see that a
/// value changed, without showing it.
pub fn fingerprint(value: &str) -> String {
    let h = hex::encode(Sha256::digest(value.as_bytes()));
    format!("sha256:{}", &h[..12])
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn secrets_never_print() {
        #[derive(Deserialize)]
        struct T {
            p: Secret<String>,
        }
        let t: T = toml::from_str("p = 'hunter2'").unwrap();
        assert_eq!(t.p.expose(), "hunter2");
        let shown = format!("{:?} {} {:#?}", t.p, t.p, t.p);
        assert!(!shown.contains("hunter2"), "{shown}");
    }

    #[test]
    fn urls_hide_passwords_everywhere() {
        assert_eq!(
            redact_url("postgres://u:secret@h/db"),
            "postgres://u:***@h/db"
        );
        assert_eq!(redact_url("postgres://u@h/db"), "postgres://u@h/db");
        assert_eq!(redact_url("sqlite://x.db"), "sqlite://x.db");
        assert_eq!(
            redact_url("postgres://h/db?user=u&password=x&sslmode=require"),
            "postgres://h/db?user=u&password=***&sslmode=require"
        );
        assert_eq!(
            redact_url("postgres://u:p%40ss@h:5432/db?sslpassword=k"),
            "postgres://u:***@h:5432/db?sslpassword=***"
        );
        let url = DbUrl::new("postgres://u:sekrit@h/db");
        assert!(!format!("{url:?} {url}").contains("sekrit"));
        assert_eq!(url.as_str(), "postgres://u:sekrit@h/db");
    }

    #[test]
    fn hidden_values_are_gone_and_short_ones_only_when_quoted() {
        let params = vec![
            ("key".to_owned(), "hunter2\"x".to_owned()),
            ("n".to_owned(), "3".to_owned()),
        ];
        let msg = "line 3: got \"hunter2\\\"x\" and `3` and 3; raw hunter2\"x";
        let shown = hide_params(msg, &params);
        assert!(!shown.contains("hunter2"), "{shown}");
        assert_eq!(
            shown,
            "line 3: got \"<param key>\" and `<param n>` and 3; raw <param key>"
        );
    }

    #[test]
    fn fingerprints_are_short_and_stable() {
        assert_eq!(fingerprint("abc"), "sha256:ba7816bf8f01");
        assert_ne!(fingerprint("abc"), fingerprint("abd"));
    }
}
