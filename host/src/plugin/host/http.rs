//! The `sluice:plugin/http` import: each `fetch` goes to the instance's
//! [`HttpClient`](crate::plugin::http::HttpClient), which owns every rule
//! about what may be fetched, and ends by the running call's deadline.

use crate::plugin::bindings::sluice::plugin::http::{FetchError, Host, Request, Response};
use crate::plugin::host::HostState;

impl Host for HostState {
    fn fetch(&mut self, req: Request) -> Result<Response, FetchError> {
        self.http().fetch(req, self.call_deadline())
    }
}
