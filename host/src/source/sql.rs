//! The SQL source (the crawler example's producer side): poll a query for unprocessed
//! rows and publish each as a record, keyed by a chosen column.
//!
//! Promise: a row is published again only if the query still returns it
//! after `retry_after` (its processing failed or is very slow); rows the
//! query stops returning are forgotten. Nothing is lost across a restart:
//! the query, not this process, is the record of what is unprocessed, so a
//! restart at worst publishes in-flight rows again (duplicates, never loss).
//! A row counts as published only once the broker acknowledged it.

use std::collections::{HashMap, HashSet};
use std::time::{Duration, Instant};

use crate::sink::acks::Acks;
use crate::sink::kafka::Record;
use anyhow::Context as _;
use serde::Deserialize;
use tokio_util::sync::CancellationToken;

use crate::config::kafka::Security;
use crate::config::secret::DbUrl;

/// A query whose rows become records.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SqlSourceConfig {
    /// Unique name, used in logs.
    pub name: String,
    /// `postgres://...` database to poll (`sslmode` honoured; printed with
    /// its password hidden).
    pub url: DbUrl,
    /// A SELECT returning the unprocessed rows. Each row is published as a
    /// JSON object of its columns.
    pub query: String,
    /// Column whose value keys the record (and identifies the row).
    pub key: String,
    /// Topic to publish to.
    pub topic: String,
    /// Bootstrap brokers.
    pub brokers: String,
    /// Connection security.
    #[serde(default)]
    pub security: Security,
    /// How often to poll.
    #[serde(default = "default_interval", with = "humantime_serde")]
    pub interval: Duration,
    /// Publish a row again if the query still returns it this long after it
    /// was published.
    #[serde(default = "default_retry_after", with = "humantime_serde")]
    pub retry_after: Duration,
}

fn default_interval() -> Duration {
    Duration::from_secs(5)
}
fn default_retry_after() -> Duration {
    Duration::from_secs(600)
}

/// Which rows are in flight: published, not yet seen processed.
#[derive(Debug, Default)]
pub struct InFlight {
    published: HashMap<String, Instant>,
}

impl InFlight {
    /// Keep only keys the latest poll returned, and say which of those to
    /// publish now.
    pub fn due(&mut self, keys: &[String], now: Instant, retry_after: Duration) -> Vec<usize> {
        let returned: HashSet<&str> = keys.iter().map(String::as_str).collect();
        self.published.retain(|k, _| returned.contains(k.as_str()));
        keys.iter()
            .enumerate()
            .filter(|(_, k)| {
                self.published
                    .get(*k)
                    .is_none_or(|at| now.duration_since(*at) >= retry_after)
            })
            .map(|(i, _)| i)
            .collect()
    }

    /// Record that the row `key` was published at `now`; [`InFlight::due`]
    /// holds it back until `retry_after` has passed.
    pub fn mark(&mut self, key: String, now: Instant) {
        self.published.insert(key, now);
    }

    /// How many rows are in flight.
    pub fn len(&self) -> usize {
        self.published.len()
    }

    /// Whether no row is in flight.
    pub fn is_empty(&self) -> bool {
        self.published.is_empty()
    }
}

/// Poll and publish until cancelled.
pub async fn run(cfg: SqlSourceConfig, cancel: CancellationToken) -> anyhow::Result<()> {
    let at = format!("sql_source `{}`", cfg.name);
    anyhow::ensure!(
        cfg.url.starts_with("postgres://") || cfg.url.starts_with("postgresql://"),
        "{at}: url must be a postgres:// URL"
    );
    let pool = sqlx::postgres::PgPoolOptions::new()
        .max_connections(1)
        .connect(cfg.url.as_str())
        .await
        .with_context(|| format!("{at}: cannot connect"))?;
    let producer: crate::sink::kafka::Producer =
        crate::sink::kafka::producer(&cfg.brokers, &cfg.security, None, &Default::default())
            .map_err(anyhow::Error::msg)
            .with_context(|| format!("{at}: producer"))?;
    // Each row as JSON text, whatever its columns.
    let sql = format!("SELECT row_to_json(q)::text FROM ({}) q", cfg.query);
    let mut inflight = InFlight::default();
    loop {
        // A failing query (the database restarting, a table not created
        // yet) is retried at the next poll: the rows are still there.
        let rows: Vec<String> = match sqlx::query_scalar(&sql).fetch_all(&pool).await {
            Ok(rows) => rows,
            Err(e) => {
                tracing::warn!(source = %cfg.name, error = %e, "query failed; retrying at the next poll");
                tokio::select! {
                    _ = tokio::time::sleep(cfg.interval) => continue,
                    _ = cancel.cancelled() => return Ok(()),
                }
            }
        };
        // A row without a key cannot be tracked, so it is skipped (and
        // counted) rather than stopping every pipeline of the file.
        let mut keyless = 0usize;
        let mut keyed = Vec::with_capacity(rows.len());
        let mut keys = Vec::with_capacity(rows.len());
        for r in rows {
            let v: serde_json::Value = serde_json::from_str(&r)?;
            let key = match v.get(&cfg.key) {
                Some(serde_json::Value::String(s)) => s.clone(),
                Some(other) if !other.is_null() => other.to_string(),
                _ => {
                    keyless += 1;
                    continue;
                }
            };
            keys.push(key);
            keyed.push(r);
        }
        let rows = keyed;
        if keyless > 0 {
            metrics::counter!(crate::metrics::SQL_SOURCE_KEYLESS, "source" => cfg.name.clone())
                .increment(keyless as u64);
            tracing::warn!(source = %cfg.name, rows = keyless, key = %cfg.key, "rows with a NULL or missing key column skipped");
        }
        let now = Instant::now();
        let due = inflight.due(&keys, now, cfg.retry_after);
        let mut acks = Vec::with_capacity(due.len());
        for &i in &due {
            // One acknowledgement per row: each row is marked on its own.
            let ack = Acks::new();
            let rec = Record::with_opaque_to(&cfg.topic, ack.clone())
                .key(keys[i].as_bytes())
                .payload(rows[i].as_bytes());
            let sent = crate::sink::kafka::enqueue(&producer, rec).await;
            ack.seal();
            acks.push((i, sent.map(|()| ack)));
        }
        let mut published = 0;
        for (i, ack) in acks {
            let result = match ack {
                Ok(ack) => ack.wait().await,
                Err(e) => Err(e),
            };
            match result {
                Ok(()) => {
                    inflight.mark(keys[i].clone(), now);
                    published += 1;
                }
                // Not marked: the next poll publishes it again.
                Err(e) => {
                    tracing::warn!(source = %cfg.name, key = %keys[i], error = %e, "publish failed")
                }
            }
        }
        if published > 0 {
            tracing::info!(source = %cfg.name, published, unprocessed = rows.len(), "published rows");
        }
        tokio::select! {
            _ = tokio::time::sleep(cfg.interval) => {}
            _ = cancel.cancelled() => return Ok(()),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rows_are_not_republished_while_in_flight() {
        let mut f = InFlight::default();
        let t0 = Instant::now();
        let keys = vec!["a".to_string(), "b".to_string()];
        assert_eq!(f.due(&keys, t0, Duration::from_secs(60)), vec![0, 1]);
        f.mark("a".into(), t0);
        f.mark("b".into(), t0);
        assert!(
            f.due(&keys, t0 + Duration::from_secs(1), Duration::from_secs(60))
                .is_empty()
        );
        // "a" got processed (the query no longer returns it); "c" is new.
        let keys = vec!["b".to_string(), "c".to_string()];
        assert_eq!(
            f.due(&keys, t0 + Duration::from_secs(2), Duration::from_secs(60)),
            vec![1]
        );
        assert_eq!(f.len(), 1);
        // "b" is still unprocessed after the retry delay: publish it again.
        assert_eq!(
            f.due(&keys, t0 + Duration::from_secs(61), Duration::from_secs(60)),
            vec![0, 1]
        );
    }
}
