//! The `sluice:plugin/http` import: each `fetch` goes to the instance's
//! [`HttpClient`](crate::plugin::http::HttpClient), which owns every rule
//! about what may be fetched, and ends by the running call's deadline (or
//! traps the call when that deadline cuts it off).

use crate::plugin::bindings::sluice::plugin::http::{FetchError, Host, Request, Response};
use crate::plugin::host::HostState;

impl Host for HostState {
    /// A fetch that runs out of the call's deadline (rather than its own
    /// `timeout`) traps the call with a deadline error: the plugin does not
    /// get to turn it into a transient failure and retry the record.
    fn fetch(&mut self, req: Request) -> wasmtime::Result<Result<Response, FetchError>> {
        let deadline = self.call_deadline();
        let result = self.http().fetch(req, deadline);
        if matches!(result, Err(FetchError::Timeout))
            && deadline.is_some_and(|d| std::time::Instant::now() >= d)
        {
            return Err(wasmtime::Trap::Interrupt.into());
        }
        Ok(result)
    }
}
