//! Per-plugin resource limits: a memory cap enforced by a `ResourceLimiter`
//! and a per-call deadline enforced by epoch interruption.
//!
//! Promise: a plugin never grows its linear memories past `memory` bytes in
//! total, and a call never runs longer than `deadline` plus one epoch tick.
//! When the memory cap refuses a growth the limiter remembers it, so the
//! host can tell a memory failure apart from any other trap.

use std::time::Duration;

use serde::Deserialize;
use wasmtime::{ResourceLimiter, StoreLimits, StoreLimitsBuilder};

/// Default memory cap per plugin instance.
pub const DEFAULT_MEMORY: u64 = 64 * 1024 * 1024;
/// Default deadline for one `process` call.
pub const DEFAULT_DEADLINE: Duration = Duration::from_millis(100);
/// Default deadline for instantiation plus `init`, which may do real work
/// (interpreted guests such as Python build their heap here).
pub const DEFAULT_INIT_DEADLINE: Duration = Duration::from_secs(10);

/// Limits applied to every instance of one plugin.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Limits {
    /// Maximum linear memory, in bytes, summed over the instance's memories.
    /// Accepts a number of bytes or a string such as "64MiB".
    #[serde(deserialize_with = "crate::config::bytes::deserialize")]
    pub memory: u64,
    /// Wall-clock deadline for one `process` call, e.g. "100ms".
    #[serde(with = "humantime_serde")]
    pub deadline: Duration,
    /// Wall-clock deadline for instantiation plus `init`, e.g. "10s".
    #[serde(with = "humantime_serde")]
    pub init_deadline: Duration,
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            memory: DEFAULT_MEMORY,
            deadline: DEFAULT_DEADLINE,
            init_deadline: DEFAULT_INIT_DEADLINE,
        }
    }
}

/// A `StoreLimits` that records whether it ever refused a memory growth.
pub struct Limiter {
    inner: StoreLimits,
    memory_refused: bool,
}

impl Limiter {
    pub fn new(limits: &Limits) -> Self {
        let memory = usize::try_from(limits.memory).unwrap_or(usize::MAX);
        Limiter {
            inner: StoreLimitsBuilder::new()
                .memory_size(memory)
                .instances(64)
                .memories(64)
                .tables(64)
                .build(),
            memory_refused: false,
        }
    }

    /// Whether a memory growth was refused since the last `reset`.
    pub fn memory_refused(&self) -> bool {
        self.memory_refused
    }

    /// Forget earlier refusals; called before every guest call.
    pub fn reset(&mut self) {
        self.memory_refused = false;
    }
}

impl ResourceLimiter for Limiter {
    fn memory_growing(
        &mut self,
        current: usize,
        desired: usize,
        maximum: Option<usize>,
    ) -> wasmtime::Result<bool> {
        let ok = self.inner.memory_growing(current, desired, maximum)?;
        if !ok {
            self.memory_refused = true;
        }
        Ok(ok)
    }

    fn table_growing(
        &mut self,
        current: usize,
        desired: usize,
        maximum: Option<usize>,
    ) -> wasmtime::Result<bool> {
        self.inner.table_growing(current, desired, maximum)
    }

    fn instances(&self) -> usize {
        self.inner.instances()
    }

    fn tables(&self) -> usize {
        self.inner.tables()
    }

    fn memories(&self) -> usize {
        self.inner.memories()
    }
}

/// Number of epoch ticks that covers `deadline`, rounded up, at least one.
pub fn ticks_for(deadline: Duration, tick: Duration) -> u64 {
    let tick = tick.as_nanos().max(1);
    let ticks = deadline.as_nanos().div_ceil(tick);
    u64::try_from(ticks).unwrap_or(u64::MAX).max(1)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ticks_round_up() {
        let tick = Duration::from_millis(10);
        assert_eq!(ticks_for(Duration::from_millis(100), tick), 10);
        assert_eq!(ticks_for(Duration::from_millis(101), tick), 11);
        assert_eq!(ticks_for(Duration::from_millis(1), tick), 1);
        assert_eq!(ticks_for(Duration::ZERO, tick), 1);
    }

    #[test]
    fn limiter_records_refusal() {
        let mut l = Limiter::new(&Limits {
            memory: 1 << 20,
            ..Limits::default()
        });
        assert!(l.memory_growing(0, 1 << 19, None).unwrap());
        assert!(!l.memory_refused());
        assert!(!l.memory_growing(0, 2 << 20, None).unwrap());
        assert!(l.memory_refused());
        l.reset();
        assert!(!l.memory_refused());
    }

    #[test]
    fn limits_parse_human_units() {
        let l: Limits = toml::from_str("memory = \"16MiB\"\ndeadline = \"250ms\"").unwrap();
        assert_eq!(l.memory, 16 << 20);
        assert_eq!(l.deadline, Duration::from_millis(250));
        assert_eq!(l.init_deadline, DEFAULT_INIT_DEADLINE);
        let err = toml::from_str::<Limits>("memroy = 1").unwrap_err();
        assert!(err.to_string().contains("memroy"), "{err}");
    }
}
