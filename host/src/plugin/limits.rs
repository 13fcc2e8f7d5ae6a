//! Per-plugin resource limits: a memory cap enforced by a `ResourceLimiter`,
//! a per-call deadline (epoch interruption for guest code, clamped clock
//! waits and fetches for time spent in the host; see
//! [`super::host::clocks`]), and caps on what one call may hand back.
//!
//! Promises:
//! - `memory` bounds the sum of an instance's linear memories *and* tables
//!   (a table element counts as one pointer): the Nth memory or a
//!   `table.grow` past the cap is refused, however many of them a component
//!   declares. When the cap refuses a growth the limiter remembers it, so the
//!   host can tell a memory failure apart from any other trap.
//! - What one call returns is at most `max_outputs` outputs and
//!   `max_output_bytes` bytes (default: the memory cap), and the host never
//!   copies more than that out of the guest for one call.

use std::time::Duration;

use serde::Deserialize;
use wasmtime::ResourceLimiter;

use super::PluginError;

/// Default memory cap per plugin instance.
pub const DEFAULT_MEMORY: u64 = 64 * 1024 * 1024;
/// Default cap on the outputs of one record.
pub const DEFAULT_MAX_OUTPUTS: usize = 10_000;
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
    /// Most outputs one record may produce, summed along the chain.
    pub max_outputs: usize,
    /// Most bytes (keys, values, headers, routes) the outputs of one record
    /// may hold, summed along the chain; default: `memory`.
    #[serde(deserialize_with = "crate::config::bytes::deserialize_opt")]
    pub max_output_bytes: Option<u64>,
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            memory: DEFAULT_MEMORY,
            deadline: DEFAULT_DEADLINE,
            init_deadline: DEFAULT_INIT_DEADLINE,
            max_outputs: DEFAULT_MAX_OUTPUTS,
            max_output_bytes: None,
        }
    }
}

impl Limits {
    /// The cap on the output bytes of one record.
    pub fn output_bytes(&self) -> u64 {
        self.max_output_bytes.unwrap_or(self.memory)
    }

    /// The output caps, in one place: `count` outputs holding `bytes` bytes
    /// (for one call, or summed along a chain for one source record) are
    /// allowed, or this is the `output-limit` error to report.
    pub fn check_outputs(&self, count: usize, bytes: u64) -> Result<(), PluginError> {
        if count > self.max_outputs {
            return Err(PluginError::OutputLimit(format!(
                "{count} outputs for one record; max_outputs is {}",
                self.max_outputs
            )));
        }
        if bytes > self.output_bytes() {
            return Err(PluginError::OutputLimit(format!(
                "{bytes} output bytes for one record; max_output_bytes is {}",
                self.output_bytes()
            )));
        }
        Ok(())
    }
}

/// Part of wasmtime's message when a call hands the host more data than its
/// hostcall fuel allows (the error type itself is private).
pub const HOSTCALL_FUEL_EXHAUSTED: &str = "fuel allocated for hostcalls has been exhausted";

/// How much the host lets one guest call copy out to it: the output byte
/// cap, plus room for the host-side structs of `max_outputs` outputs (what
/// wasmtime counts) and for the headers of the result.
pub fn hostcall_fuel(limits: &Limits) -> usize {
    let bytes = usize::try_from(limits.output_bytes()).unwrap_or(usize::MAX);
    let structs = limits
        .max_outputs
        .saturating_mul(std::mem::size_of::<super::Output>() + 64);
    bytes.saturating_add(structs).saturating_add(64 << 10)
}

/// Most core instances, memories and tables one component instance may
/// create. Generous for every supported toolchain; the byte cap is what
/// bounds memory.
const MAX_INSTANCES: usize = 64;
const MAX_MEMORIES: usize = 32;
const MAX_TABLES: usize = 64;

/// Bytes a table element is charged: one pointer.
const TABLE_ELEMENT: usize = std::mem::size_of::<usize>();

/// A `ResourceLimiter` keeping one budget for all of an instance's memories
/// and tables, and recording whether it ever refused a growth.
pub struct Limiter {
    cap: usize,
    /// Bytes granted so far, over every memory and table of the store.
    used: usize,
    memory_refused: bool,
}

impl Limiter {
    /// A fresh budget of `limits.memory` bytes, nothing granted yet.
    pub fn new(limits: &Limits) -> Self {
        Limiter {
            cap: usize::try_from(limits.memory).unwrap_or(usize::MAX),
            used: 0,
            memory_refused: false,
        }
    }

    /// Whether a growth was refused since the last `reset`.
    pub fn memory_refused(&self) -> bool {
        self.memory_refused
    }

    /// Forget earlier refusals; called before every guest call.
    pub fn reset(&mut self) {
        self.memory_refused = false;
    }

    /// Grant `bytes` more from the budget, or refuse and remember it.
    fn grow(&mut self, bytes: usize, within_maximum: bool) -> bool {
        match self.used.checked_add(bytes) {
            Some(total) if total <= self.cap && within_maximum => {
                self.used = total;
                true
            }
            _ => {
                self.memory_refused = true;
                false
            }
        }
    }
}

impl ResourceLimiter for Limiter {
    fn memory_growing(
        &mut self,
        current: usize,
        desired: usize,
        maximum: Option<usize>,
    ) -> wasmtime::Result<bool> {
        let within = maximum.is_none_or(|max| desired <= max);
        Ok(self.grow(desired.saturating_sub(current), within))
    }

    fn table_growing(
        &mut self,
        current: usize,
        desired: usize,
        maximum: Option<usize>,
    ) -> wasmtime::Result<bool> {
        let within = maximum.is_none_or(|max| desired <= max);
        let bytes = desired
            .saturating_sub(current)
            .saturating_mul(TABLE_ELEMENT);
        Ok(self.grow(bytes, within))
    }

    fn instances(&self) -> usize {
        MAX_INSTANCES
    }

    fn tables(&self) -> usize {
        MAX_TABLES
    }

    fn memories(&self) -> usize {
        MAX_MEMORIES
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
    fn the_cap_is_a_total_over_memories_and_tables() {
        let limits = Limits {
            memory: 1 << 20,
            ..Limits::default()
        };
        let mut l = Limiter::new(&limits);
        assert!(l.memory_growing(0, 600 << 10, None).unwrap());
        // A second memory of the same size would pass a per-memory cap.
        assert!(!l.memory_growing(0, 600 << 10, None).unwrap());
        assert!(l.memory_refused());

        let mut l = Limiter::new(&limits);
        assert!(!l.table_growing(0, 10_000_000, None).unwrap());
        assert!(l.memory_refused());

        let mut l = Limiter::new(&limits);
        assert!(l.memory_growing(0, 512 << 10, None).unwrap());
        assert!(l.table_growing(0, 1000, None).unwrap());
        assert!(l.memory_growing(512 << 10, 1000 << 10, None).unwrap());
        // 1000 KiB of memory plus 8000 bytes of table: 64 KiB more is over.
        assert!(!l.memory_growing(1000 << 10, 1064 << 10, None).unwrap());
        assert!(
            !l.memory_growing(0, 10, Some(5)).unwrap(),
            "declared maximum"
        );
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
