//! Test fixture `prober`: tries each way out of the sandbox that WASI
//! offers and reports what happened, so a test can check the surface the
//! host grants.
//!
//! Promises: one output per record, whose value is the probe's result as
//! text: `denied: <error>` or `allowed: <detail>`.
//! - `fs`: read `/etc/passwd`, and list `/` and `.`.
//! - `env`: count the environment variables and arguments.
//! - `tcp ADDR`: connect a TCP socket to ADDR (e.g. `127.0.0.1:8080`).
//! - `udp ADDR`: bind a UDP socket and send one datagram to ADDR.
//! - `dns NAME`: resolve NAME.
//! - `clock`: read the wall clock and the monotonic clock.
//! - `random`: read 16 random bytes.
//! - `stdin`: read from stdin.

use std::io::Read;

/// Bindings generated from the WIT contract (`wit/0.1.0/plugin.wit`: this fixture stays on 0.1.0, so the host is tested against a 0.1.0 build).
#[allow(clippy::too_many_arguments)]
mod bindings {
    wit_bindgen::generate!({ world: "transform", path: "../../../wit/0.1.0" });
}

use crate::bindings::{Guest, Input, Output, ProcessError};

fn report<T: std::fmt::Debug, E: std::fmt::Display>(r: Result<T, E>) -> String {
    match r {
        Ok(v) => format!("allowed: {v:?}"),
        Err(e) => format!("denied: {e}"),
    }
}

/// Run the probe a record names.
pub fn probe(command: &str) -> String {
    let (cmd, arg) = command
        .trim()
        .split_once(' ')
        .unwrap_or((command.trim(), ""));
    match cmd {
        "fs" => {
            let read = std::fs::read("/etc/passwd").map(|b| b.len());
            if read.is_ok() {
                return report(read);
            }
            let root = std::fs::read_dir("/").map(|d| d.count());
            if root.is_ok() {
                return report(root);
            }
            report(std::fs::read_dir(".").map(|d| d.count()))
        }
        "env" => {
            let n = std::env::vars_os().count() + std::env::args_os().count();
            if n == 0 {
                "denied: no variables and no arguments".into()
            } else {
                format!("allowed: {n}")
            }
        }
        "tcp" => report(std::net::TcpStream::connect(arg).map(|s| s.peer_addr().ok())),
        "udp" => {
            report(std::net::UdpSocket::bind("0.0.0.0:0").and_then(|s| s.send_to(b"probe", arg)))
        }
        "dns" => report(std::net::ToSocketAddrs::to_socket_addrs(&(arg, 80)).map(|a| a.count())),
        "clock" => {
            let wall = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH);
            let mono = std::time::Instant::now();
            format!(
                "allowed: wall={:?} mono={mono:?}",
                wall.map(|d| d.as_secs())
            )
        }
        "random" => {
            let mut buf = [0u8; 16];
            report(getrandom(&mut buf).map(|_| buf))
        }
        "stdin" => {
            let mut buf = Vec::new();
            match std::io::stdin().read_to_end(&mut buf) {
                Ok(0) => "denied: stdin is empty".into(),
                other => report(other),
            }
        }
        other => format!("unknown probe {other:?}"),
    }
}

/// Random bytes through std's hasher seed source (WASI random).
fn getrandom(buf: &mut [u8]) -> Result<(), String> {
    use std::hash::{BuildHasher, Hasher};
    for chunk in buf.chunks_mut(8) {
        let mut h = std::collections::hash_map::RandomState::new().build_hasher();
        h.write_u8(0);
        chunk.copy_from_slice(&h.finish().to_le_bytes()[..chunk.len()]);
    }
    Ok(())
}

struct Prober;

impl Guest for Prober {
    fn init(_params: Vec<(String, String)>) -> Result<(), String> {
        Ok(())
    }

    fn process(rec: Input) -> Result<Vec<Output>, ProcessError> {
        let result = probe(&String::from_utf8_lossy(&rec.value));
        Ok(vec![Output {
            route: None,
            key: rec.key,
            value: result.into_bytes(),
            headers: Vec::new(),
        }])
    }
}

bindings::export!(Prober with_types_in bindings);
