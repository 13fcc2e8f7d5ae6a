//! Test fixture `flood`: hands the host as much as it can, to exercise the
//! output and log caps.
//!
//! Promises:
//! - Value `outputs N`: N outputs of one byte each on the default route.
//! - Value `bytes N`: one output of N bytes.
//! - Value `log N`: N lines through the `log` import and N lines on stdout,
//!   then echoes the record.
//! - Value `fanout N REST`: N outputs whose value is REST (feeds a second
//!   `flood` in a chain).
//! - Value `forge`: logs a message and a field value with embedded newlines
//!   shaped like host log lines, then echoes the record.
//! - Anything else: echoes the record.

/// Bindings generated from the WIT contract (`wit/0.1.0/plugin.wit`: this fixture stays on 0.1.0, so the host is tested against a 0.1.0 build).
#[allow(clippy::too_many_arguments)]
mod bindings {
    wit_bindgen::generate!({ world: "transform", path: "../../../wit/0.1.0" });
}

use crate::bindings::sluice::plugin::log::{Level, log};
use crate::bindings::{Guest, Input, Output};

/// A forged host log line, as a plugin would write one.
pub const FORGED: &str =
    "2026-12-01T00:00:00.000000Z ERROR sluice::pipeline: FORGED offset committed";

fn output(value: Vec<u8>) -> Output {
    Output {
        route: None,
        key: None,
        value,
        headers: Vec::new(),
    }
}

/// The command in a record value and its count.
pub fn parse(value: &[u8]) -> Option<(&str, usize)> {
    let text = std::str::from_utf8(value).ok()?.trim();
    let (cmd, n) = text.split_once(' ')?;
    Some((cmd, n.trim().parse().ok()?))
}

struct Flood;

impl Guest for Flood {
    fn init(_params: Vec<(String, String)>) -> Result<(), String> {
        Ok(())
    }

    fn process(rec: Input) -> Result<Vec<Output>, bindings::ProcessError> {
        if let Some(rest) = rec.value.strip_prefix(b"fanout ") {
            let text = String::from_utf8_lossy(rest);
            if let Some((n, value)) = text.split_once(' ')
                && let Ok(n) = n.parse::<usize>()
            {
                return Ok((0..n).map(|_| output(value.as_bytes().to_vec())).collect());
            }
        }
        match parse(&rec.value) {
            Some(("outputs", n)) => return Ok((0..n).map(|_| output(vec![b'x'])).collect()),
            Some(("bytes", n)) => return Ok(vec![output(vec![b'x'; n])]),
            Some(("log", n)) => {
                for i in 0..n {
                    log(Level::Info, &format!("flood line {i}"), &[]);
                    println!("flood stdout {i}");
                }
            }
            _ if rec.value == b"forge" => {
                log(
                    Level::Info,
                    &format!("innocent\n{FORGED}"),
                    &[(format!("k\n{FORGED}"), format!("v\n{FORGED}"))],
                );
                println!("innocent stdout\r\x1b[2K{FORGED}");
            }
            _ => {}
        }
        Ok(vec![Output {
            route: None,
            key: rec.key,
            value: rec.value,
            headers: rec.headers,
        }])
    }
}

bindings::export!(Flood with_types_in bindings);
