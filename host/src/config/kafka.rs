//! Kafka source and producer settings, and their translation to librdkafka
//! properties.
//!
//! Promise: a key in `properties` that a typed field also sets is refused,
//! naming both, so there is never a question of which one wins.

use std::collections::BTreeMap;
use std::time::Duration;

use rdkafka::ClientConfig;
use serde::Deserialize;

use super::secret::Secret;

/// Where a pipeline reads from.
#[derive(Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct KafkaSource {
    /// Bootstrap brokers, comma-separated `host:port`.
    pub brokers: String,
    /// Topics to subscribe to, with group-managed partition assignment.
    #[serde(default)]
    pub topics: Vec<String>,
    /// Explicit partitions to read instead of `topics` (no rebalancing; the
    /// group id is still used for committed offsets).
    #[serde(default)]
    pub assign: Vec<AssignedPartition>,
    /// Consumer group id.
    pub group_id: String,
    /// Where to start when the group has no committed offset.
    #[serde(default)]
    pub auto_offset_reset: OffsetReset,
    /// Most records of one partition that may be in flight (read but not yet
    /// acknowledged by every sink) at once.
    #[serde(default = "default_max_in_flight")]
    pub max_in_flight: usize,
    /// Most bytes (keys, values, headers) of one partition's records that
    /// may be in flight at once, whatever `max_in_flight` allows: large
    /// records get a smaller window. A record larger than this still goes,
    /// alone. A number of bytes or a string such as "8MiB".
    #[serde(
        default = "default_max_in_flight_bytes",
        deserialize_with = "crate::config::bytes::deserialize"
    )]
    pub max_in_flight_bytes: u64,
    /// Group session timeout.
    #[serde(default = "default_session_timeout", with = "humantime_serde")]
    pub session_timeout: Duration,
    /// How often stored offsets are committed.
    #[serde(default = "default_commit_interval", with = "humantime_serde")]
    pub commit_interval: Duration,
    /// Connection security.
    #[serde(default)]
    pub security: Security,
    /// Extra librdkafka consumer properties, passed through.
    #[serde(default)]
    pub properties: BTreeMap<String, String>,
}

fn default_max_in_flight() -> usize {
    5000
}
fn default_max_in_flight_bytes() -> u64 {
    8 * 1024 * 1024
}
fn default_session_timeout() -> Duration {
    Duration::from_secs(10)
}
fn default_commit_interval() -> Duration {
    Duration::from_secs(1)
}

/// A partition to read, for `assign`.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AssignedPartition {
    /// Topic name.
    pub topic: String,
    /// Partition number.
    pub partition: i32,
}

/// `auto.offset.reset`.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum OffsetReset {
    /// Start from the oldest record.
    #[default]
    Earliest,
    /// Start from new records only.
    Latest,
}

/// SASL/SSL settings. Secrets should come from `${ENV}` interpolation.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Security {
    /// `plaintext` (default), `ssl`, `sasl_plaintext` or `sasl_ssl`.
    #[serde(default)]
    pub protocol: Protocol,
    /// `PLAIN`, `SCRAM-SHA-256` or `SCRAM-SHA-512`; required for SASL.
    #[serde(default)]
    pub mechanism: Option<SaslMechanism>,
    /// SASL username.
    #[serde(default)]
    pub username: Option<String>,
    /// SASL password (never printed; give it as `"${KAFKA_PASSWORD}"`).
    #[serde(default)]
    pub password: Option<Secret<String>>,
    /// CA certificate file for SSL.
    #[serde(default)]
    pub ca_location: Option<String>,
}

/// `security.protocol`.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Protocol {
    /// `plaintext`: neither TLS nor SASL.
    #[default]
    Plaintext,
    /// `ssl`: TLS, without SASL.
    Ssl,
    /// `sasl_plaintext`: SASL authentication without TLS.
    SaslPlaintext,
    /// `sasl_ssl`: SASL authentication over TLS.
    SaslSsl,
}

/// `sasl.mechanism`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
pub enum SaslMechanism {
    /// `PLAIN`: the password itself is sent, so use it with `sasl_ssl`.
    #[serde(rename = "PLAIN")]
    Plain,
    /// `SCRAM-SHA-256`: challenge-response; the password is not sent.
    #[serde(rename = "SCRAM-SHA-256")]
    ScramSha256,
    /// `SCRAM-SHA-512`: as `SCRAM-SHA-256`, with SHA-512.
    #[serde(rename = "SCRAM-SHA-512")]
    ScramSha512,
}

/// Producer settings shared by every Kafka route of a pipeline.
#[derive(Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ProducerConfig {
    /// Bootstrap brokers; defaults to the source's.
    #[serde(default)]
    pub brokers: Option<String>,
    /// Connection security; defaults to the source's.
    #[serde(default)]
    pub security: Option<Security>,
    /// Extra librdkafka producer properties, passed through.
    #[serde(default)]
    pub properties: BTreeMap<String, String>,
}

/// Pass-through properties as `Debug` shows them: the values of keys that
/// name a credential (`sasl.password`, `ssl.key.password`, ...) hidden.
struct ShownProperties<'a>(&'a BTreeMap<String, String>);

impl std::fmt::Debug for ShownProperties<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let secret = |k: &str| {
            let k = k.to_ascii_lowercase();
            k.contains("password")
                || k.contains("secret")
                || k.contains("token")
                || k.ends_with(".pem")
        };
        f.debug_map()
            .entries(
                self.0
                    .iter()
                    .map(|(k, v)| (k, if secret(k) { "***" } else { v.as_str() })),
            )
            .finish()
    }
}

impl std::fmt::Debug for KafkaSource {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("KafkaSource")
            .field("brokers", &self.brokers)
            .field("topics", &self.topics)
            .field("assign", &self.assign)
            .field("group_id", &self.group_id)
            .field("auto_offset_reset", &self.auto_offset_reset)
            .field("max_in_flight", &self.max_in_flight)
            .field("max_in_flight_bytes", &self.max_in_flight_bytes)
            .field("session_timeout", &self.session_timeout)
            .field("commit_interval", &self.commit_interval)
            .field("security", &self.security)
            .field("properties", &ShownProperties(&self.properties))
            .finish()
    }
}

impl std::fmt::Debug for ProducerConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ProducerConfig")
            .field("brokers", &self.brokers)
            .field("security", &self.security)
            .field("properties", &ShownProperties(&self.properties))
            .finish()
    }
}

/// Builds a `ClientConfig` from typed settings plus pass-through properties,
/// refusing a pass-through key that a typed setting owns.
pub struct PropertyBuilder {
    typed: BTreeMap<&'static str, (String, &'static str)>,
}

impl PropertyBuilder {
    /// An empty builder: no typed property set yet.
    pub fn new() -> Self {
        PropertyBuilder {
            typed: BTreeMap::new(),
        }
    }

    /// Set a property from a typed field; `field` names it in errors.
    pub fn set(&mut self, key: &'static str, value: impl Into<String>, field: &'static str) {
        self.typed.insert(key, (value.into(), field));
    }

    /// Set the properties `security` owns: `security.protocol`, the SASL
    /// mechanism, username and password (each required with a SASL protocol,
    /// refused without one) and `ssl.ca.location`.
    pub fn security(&mut self, s: &Security) -> Result<(), String> {
        let proto = match s.protocol {
            Protocol::Plaintext => "plaintext",
            Protocol::Ssl => "ssl",
            Protocol::SaslPlaintext => "sasl_plaintext",
            Protocol::SaslSsl => "sasl_ssl",
        };
        self.set("security.protocol", proto, "security.protocol");
        let sasl = matches!(s.protocol, Protocol::SaslPlaintext | Protocol::SaslSsl);
        if sasl {
            let mech = s.mechanism.ok_or(
                "security.mechanism is required for a SASL protocol (PLAIN, SCRAM-SHA-256, SCRAM-SHA-512)",
            )?;
            let mech = match mech {
                SaslMechanism::Plain => "PLAIN",
                SaslMechanism::ScramSha256 => "SCRAM-SHA-256",
                SaslMechanism::ScramSha512 => "SCRAM-SHA-512",
            };
            self.set("sasl.mechanism", mech, "security.mechanism");
            let user = s
                .username
                .as_deref()
                .ok_or("security.username is required for SASL")?;
            let pass = s
                .password
                .as_ref()
                .map(|p| p.expose().as_str())
                .ok_or("security.password is required for SASL")?;
            self.set("sasl.username", user, "security.username");
            self.set("sasl.password", pass, "security.password");
        } else if s.mechanism.is_some() || s.username.is_some() || s.password.is_some() {
            return Err(format!(
                "security.mechanism/username/password need protocol sasl_plaintext or sasl_ssl, not {proto}"
            ));
        }
        if let Some(ca) = &s.ca_location {
            self.set("ssl.ca.location", ca, "security.ca_location");
        }
        Ok(())
    }

    /// Merge pass-through `properties`, then produce the client config.
    pub fn build(self, properties: &BTreeMap<String, String>) -> Result<ClientConfig, String> {
        let mut cfg = ClientConfig::new();
        for (key, value) in properties {
            if let Some((_, field)) = self.typed.get(key.as_str()) {
                return Err(format!(
                    "property {key:?} is set by the typed field `{field}`; set it there, not in `properties`"
                ));
            }
            cfg.set(key, value);
        }
        for (key, (value, _)) in self.typed {
            cfg.set(key, value);
        }
        Ok(cfg)
    }
}

impl Default for PropertyBuilder {
    fn default() -> Self {
        Self::new()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn refuses_property_owned_by_typed_field() {
        let mut b = PropertyBuilder::new();
        b.set("group.id", "g", "group_id");
        let mut props = BTreeMap::new();
        props.insert("group.id".to_string(), "other".to_string());
        let err = b.build(&props).err().unwrap();
        assert!(
            err.contains("group.id") && err.contains("group_id"),
            "{err}"
        );
    }

    #[test]
    fn sasl_needs_credentials() {
        let mut b = PropertyBuilder::new();
        let s = Security {
            protocol: Protocol::SaslPlaintext,
            mechanism: Some(SaslMechanism::ScramSha256),
            username: Some("u".into()),
            password: None,
            ca_location: None,
        };
        assert!(b.security(&s).unwrap_err().contains("password"));
        let ok = Security {
            password: Some("p".into()),
            ..s
        };
        let mut b = PropertyBuilder::new();
        b.security(&ok).unwrap();
        let cfg = b.build(&BTreeMap::new()).unwrap();
        assert_eq!(cfg.get("sasl.mechanism"), Some("SCRAM-SHA-256"));
        assert_eq!(cfg.get("security.protocol"), Some("sasl_plaintext"));
    }
}
