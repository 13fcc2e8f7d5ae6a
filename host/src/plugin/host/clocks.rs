//! `wasi:clocks/monotonic-clock`, with every wait cut off at the running
//! call's deadline.
//!
//! Why this and not async wasmtime: epochs interrupt only running guest
//! code, and the one way a sandboxed plugin can block the thread without
//! running code is a clock wait (`poll` or `pollable.block` on a timer from
//! `subscribe-duration`/`subscribe-instant`; `std::thread::sleep`, Python's
//! `time.sleep` and JS timers all lower to these). Sockets and files, the
//! other blocking sources WASI offers, are not granted (see [`super`]), and
//! the `http` import clamps its own time to the same deadline. So clamping
//! timers is enough to make the deadline a bound on the whole call, while
//! the per-record path stays synchronous: no future per record, no runtime
//! hop. Async wasmtime would bound the same waits at the cost of both.
//!
//! Promise: a timer made during a call fires no later than that call's
//! deadline. A timer asked for once the deadline has passed traps the call
//! with [`Trap::Interrupt`], which the host reports as a `deadline` error,
//! exactly like an epoch interrupt. `now` and `resolution` are the host's.

use std::time::{Duration, Instant};

use wasmtime::Trap;
use wasmtime::component::{HasData, Resource};
use wasmtime_wasi::clocks::WasiClocksCtxView;
use wasmtime_wasi::p2::DynPollable;
use wasmtime_wasi::p2::bindings::clocks::monotonic_clock::{self, Duration as WasiDuration};

/// The `HasData` marker under which [`BudgetedClock`] is linked.
pub struct Budgeted;

impl HasData for Budgeted {
    type Data<'a> = BudgetedClock<'a>;
}

/// The WASI clocks of one store, with the running call's deadline.
pub struct BudgetedClock<'a> {
    pub(super) clocks: WasiClocksCtxView<'a>,
    /// When the running call must end; `None` outside a call.
    pub(super) deadline: Option<Instant>,
}

/// `wanted`, cut to what is left before `deadline`, or a deadline trap when
/// nothing is left. A zero wait is a non-blocking poll and always allowed, so
/// a guest's event loop can look at its pollables without trapping.
fn clamp(deadline: Option<Instant>, wanted: Duration) -> Result<Duration, Trap> {
    match deadline {
        None => Ok(wanted),
        Some(deadline) => match deadline.checked_duration_since(Instant::now()) {
            Some(left) if !left.is_zero() => Ok(wanted.min(left)),
            _ if wanted.is_zero() => Ok(wanted),
            _ => Err(Trap::Interrupt),
        },
    }
}

impl monotonic_clock::Host for BudgetedClock<'_> {
    fn now(&mut self) -> wasmtime::Result<u64> {
        monotonic_clock::Host::now(&mut self.clocks)
    }

    fn resolution(&mut self) -> wasmtime::Result<u64> {
        monotonic_clock::Host::resolution(&mut self.clocks)
    }

    fn subscribe_instant(&mut self, when: u64) -> wasmtime::Result<Resource<DynPollable>> {
        let now = monotonic_clock::Host::now(&mut self.clocks)?;
        self.subscribe_duration(when.saturating_sub(now))
    }

    fn subscribe_duration(
        &mut self,
        duration: WasiDuration,
    ) -> wasmtime::Result<Resource<DynPollable>> {
        let wait = clamp(self.deadline, Duration::from_nanos(duration))?;
        let nanos = u64::try_from(wait.as_nanos()).unwrap_or(u64::MAX);
        monotonic_clock::Host::subscribe_duration(&mut self.clocks, nanos)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn waits_end_at_the_deadline() {
        let hour = Duration::from_secs(3600);
        assert_eq!(clamp(None, hour), Ok(hour));
        let soon = Instant::now() + Duration::from_millis(100);
        let got = clamp(Some(soon), hour).unwrap();
        assert!(
            got <= Duration::from_millis(100) && got > Duration::ZERO,
            "{got:?}"
        );
        let short = Duration::from_millis(1);
        assert_eq!(clamp(Some(soon), short), Ok(short));
    }

    #[test]
    fn a_wait_past_the_deadline_is_a_deadline_trap() {
        let past = Instant::now() - Duration::from_millis(1);
        assert_eq!(
            clamp(Some(past), Duration::from_secs(1)),
            Err(Trap::Interrupt)
        );
        assert_eq!(clamp(Some(past), Duration::ZERO), Ok(Duration::ZERO));
    }
}
