//! Fault injection for the fault tests: a TCP proxy to put between sluice
//! and PostgreSQL or the broker, and a private PostgreSQL instance that a
//! test may stop and start without disturbing any other test.
//!
//! The proxy passes traffic, cuts every connection, refuses new ones,
//! stalls (accepts and holds every byte, never answering), adds latency,
//! or closes a connection right after a given byte pattern has passed from
//! client to server, so the server acts on a request whose answer the
//! client never sees (how a `COMMIT` whose acknowledgement is lost is
//! simulated).

use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::Command;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::watch;
use tokio_util::sync::CancellationToken;

/// What the proxy does with traffic.
#[derive(Debug, Clone, PartialEq)]
pub enum Mode {
    /// Forward everything.
    Pass,
    /// Accept connections and read nothing more: every byte is held and no
    /// answer comes back, as behind a black hole. Leaving the mode releases
    /// the held bytes unless the connections are cut first.
    Stall,
    /// Forward everything after the given delay per chunk.
    Latency(Duration),
    /// Close every new connection at once, as an unreachable host refuses.
    Refuse,
}

struct Shared {
    /// Closes every connection open when it fires; replaced after a cut.
    cut: Mutex<CancellationToken>,
    /// A pattern which, once seen from client to server, makes the proxy
    /// forward it and then close that connection. Fires once.
    close_after: Mutex<Option<Vec<u8>>>,
    /// How many times `close_after` fired.
    fired: std::sync::atomic::AtomicUsize,
}

/// A TCP proxy to `upstream`, on its own runtime thread; stops on drop.
pub struct FaultProxy {
    pub port: u16,
    mode: watch::Sender<Mode>,
    shared: Arc<Shared>,
    stop: CancellationToken,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl FaultProxy {
    pub fn start(upstream: SocketAddr) -> FaultProxy {
        FaultProxy::start_on(0, upstream)
    }

    /// A proxy on `port` (0: any free port).
    pub fn start_on(port: u16, upstream: SocketAddr) -> FaultProxy {
        let std_listener = std::net::TcpListener::bind(("127.0.0.1", port)).unwrap();
        std_listener.set_nonblocking(true).unwrap();
        let port = std_listener.local_addr().unwrap().port();
        let (mode, mode_rx) = watch::channel(Mode::Pass);
        let shared = Arc::new(Shared {
            cut: Mutex::new(CancellationToken::new()),
            close_after: Mutex::new(None),
            fired: 0.into(),
        });
        let stop = CancellationToken::new();
        let (s, st) = (shared.clone(), stop.clone());
        let thread = std::thread::spawn(move || {
            let rt = tokio::runtime::Builder::new_multi_thread()
                .worker_threads(1)
                .enable_all()
                .build()
                .unwrap();
            rt.block_on(async move {
                let listener = TcpListener::from_std(std_listener).unwrap();
                loop {
                    let (client, _) = tokio::select! {
                        _ = st.cancelled() => return,
                        a = listener.accept() => match a { Ok(a) => a, Err(_) => continue },
                    };
                    if *mode_rx.borrow() == Mode::Refuse {
                        drop(client);
                        continue;
                    }
                    let cut = s.cut.lock().unwrap().clone();
                    let (s, mode, st) = (s.clone(), mode_rx.clone(), st.clone());
                    tokio::spawn(async move {
                        let Ok(server) = TcpStream::connect(upstream).await else {
                            return;
                        };
                        let _ = client.set_nodelay(true);
                        let _ = server.set_nodelay(true);
                        let done = CancellationToken::new();
                        let mute = CancellationToken::new();
                        let (cr, cw) = client.into_split();
                        let (sr, sw) = server.into_split();
                        let up = pump(
                            cr,
                            sw,
                            mode.clone(),
                            Some(s.clone()),
                            mute.clone(),
                            done.clone(),
                        );
                        let down = pump(sr, cw, mode, None, mute, done.clone());
                        tokio::select! {
                            _ = cut.cancelled() => {}
                            _ = st.cancelled() => {}
                            _ = done.cancelled() => {}
                            _ = async { tokio::join!(up, down) } => {}
                        }
                    });
                }
            });
        });
        FaultProxy {
            port,
            mode,
            shared,
            stop,
            thread: Some(thread),
        }
    }

    pub fn addr(&self) -> String {
        format!("127.0.0.1:{}", self.port)
    }

    pub fn set(&self, mode: Mode) {
        self.mode.send_replace(mode);
    }

    /// Close every open connection (new ones are accepted as the mode says).
    pub fn cut(&self) {
        let mut c = self.shared.cut.lock().unwrap();
        c.cancel();
        *c = CancellationToken::new();
    }

    /// Close the next connection that sends `pattern` to the server, right
    /// after the pattern has been forwarded.
    pub fn close_after(&self, pattern: &[u8]) {
        *self.shared.close_after.lock().unwrap() = Some(pattern.to_vec());
    }

    /// How many connections `close_after` has closed.
    pub fn fired(&self) -> usize {
        self.shared.fired.load(std::sync::atomic::Ordering::SeqCst)
    }
}

impl Drop for FaultProxy {
    fn drop(&mut self) {
        self.stop.cancel();
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

/// Copy one direction. `watch_for` is set on the client-to-server side,
/// where `close_after` patterns are looked for; once one is seen, `mute`
/// stops the server-to-client side from passing anything more.
async fn pump(
    mut from: tokio::net::tcp::OwnedReadHalf,
    mut to: tokio::net::tcp::OwnedWriteHalf,
    mut mode: watch::Receiver<Mode>,
    watch_for: Option<Arc<Shared>>,
    mute: CancellationToken,
    done: CancellationToken,
) {
    let mut buf = vec![0u8; 64 * 1024];
    // The tail of the previous chunk, so a pattern split across two reads
    // is still seen.
    let mut tail: Vec<u8> = Vec::new();
    loop {
        // Stalled: read nothing, so every byte waits in the socket buffers.
        while *mode.borrow_and_update() == Mode::Stall {
            if mode.changed().await.is_err() {
                return;
            }
        }
        let n = tokio::select! {
            r = from.read(&mut buf) => match r {
                Ok(0) | Err(_) => {
                    let _ = to.shutdown().await;
                    return;
                }
                Ok(n) => n,
            },
            _ = mute.cancelled(), if watch_for.is_none() => return,
        };
        if watch_for.is_none() && mute.is_cancelled() {
            return;
        }
        let delay = match &*mode.borrow() {
            Mode::Latency(d) => Some(*d),
            _ => None,
        };
        if let Some(d) = delay {
            tokio::time::sleep(d).await;
        }
        let mut close = false;
        if let Some(s) = &watch_for {
            let mut armed = s.close_after.lock().unwrap();
            if let Some(p) = armed.as_ref() {
                let mut hay = std::mem::take(&mut tail);
                hay.extend_from_slice(&buf[..n]);
                if hay.windows(p.len()).any(|w| w == &p[..]) {
                    // From now on the client hears nothing back.
                    mute.cancel();
                    close = true;
                    *armed = None;
                    s.fired.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
                } else {
                    let keep = p.len().saturating_sub(1).min(hay.len());
                    tail = hay[hay.len() - keep..].to_vec();
                }
            }
        }
        if to.write_all(&buf[..n]).await.is_err() {
            return;
        }
        if close {
            // The server has the request; the client never hears back.
            let _ = to.flush().await;
            tokio::time::sleep(Duration::from_millis(50)).await;
            done.cancel();
            return;
        }
    }
}

/// A PostgreSQL instance of this test's own, on a free port, in a
/// temporary directory; stopped and removed on drop. Runs as the
/// `postgres` user when the test runs as root (initdb refuses root).
pub struct PrivatePg {
    pub port: u16,
    dir: PathBuf,
    bin: PathBuf,
    as_postgres: bool,
}

impl PrivatePg {
    pub fn start() -> PrivatePg {
        let bin = std::fs::read_dir("/usr/lib/postgresql")
            .expect("PostgreSQL binaries in /usr/lib/postgresql")
            .filter_map(|e| e.ok())
            .map(|e| e.path().join("bin"))
            .find(|p| p.join("initdb").exists())
            .expect("initdb under /usr/lib/postgresql/*/bin");
        let dir = std::env::temp_dir().join(super::random_name("sluice-pg"));
        std::fs::create_dir_all(&dir).unwrap();
        let as_postgres = is_root();
        if as_postgres {
            let ok = Command::new("chown")
                .args(["-R", "postgres:postgres"])
                .arg(&dir)
                .status()
                .unwrap()
                .success();
            assert!(ok, "chown {} to postgres", dir.display());
        }
        let pg = PrivatePg {
            port: super::free_port(),
            dir,
            bin,
            as_postgres,
        };
        let data = pg.dir.join("data");
        pg.run(
            "initdb",
            &[
                "-D",
                data.to_str().unwrap(),
                "-A",
                "trust",
                "-U",
                "postgres",
                "--no-sync",
            ],
        );
        pg.start_again();
        pg
    }

    /// `tool args…`, as the `postgres` user when the test runs as root.
    fn command(&self, tool: &str, args: &[&str]) -> Command {
        let exe = self.bin.join(tool);
        let mut c = if self.as_postgres {
            let mut c = Command::new("runuser");
            c.args(["-u", "postgres", "--"]).arg(exe);
            c
        } else {
            Command::new(exe)
        };
        c.args(args);
        c
    }

    fn run(&self, tool: &str, args: &[&str]) {
        let out = self.command(tool, args).output().unwrap();
        assert!(
            out.status.success(),
            "{tool} {args:?}: {}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
    }

    /// Start (again) and wait until it accepts connections.
    pub fn start_again(&self) {
        let data = self.dir.join("data");
        let log = self.dir.join("log");
        let opts = format!(
            "-p {} -k {} -c listen_addresses=127.0.0.1 -c fsync=off",
            self.port,
            self.dir.display()
        );
        self.run(
            "pg_ctl",
            &[
                "-D",
                data.to_str().unwrap(),
                "-l",
                log.to_str().unwrap(),
                "-o",
                &opts,
                "-w",
                "start",
            ],
        );
    }

    /// Stop immediately (connections are cut, as in a crash).
    pub fn stop(&self) {
        let data = self.dir.join("data");
        self.run(
            "pg_ctl",
            &[
                "-D",
                data.to_str().unwrap(),
                "-m",
                "immediate",
                "-w",
                "stop",
            ],
        );
    }

    /// Serve TLS (as well as plaintext) with a fresh self-signed
    /// certificate: stops, configures `ssl = on`, starts again.
    pub fn enable_tls(&self) {
        self.stop();
        let data = self.dir.join("data");
        let (crt, key) = (data.join("server.crt"), data.join("server.key"));
        let out = Command::new("openssl")
            .args([
                "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "1",
            ])
            .args(["-subj", "/CN=localhost", "-keyout"])
            .arg(&key)
            .arg("-out")
            .arg(&crt)
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "openssl: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        for f in [&crt, &key] {
            if self.as_postgres {
                Command::new("chown")
                    .arg("postgres:postgres")
                    .arg(f)
                    .status()
                    .unwrap();
            }
            Command::new("chmod").arg("600").arg(f).status().unwrap();
        }
        let conf = data.join("postgresql.conf");
        let mut text = std::fs::read_to_string(&conf).unwrap();
        text.push_str("\nssl = on\n");
        std::fs::write(&conf, text).unwrap();
        self.start_again();
    }

    pub fn addr(&self) -> SocketAddr {
        SocketAddr::from(([127, 0, 0, 1], self.port))
    }

    /// A URL to this instance's `postgres` database through `addr`
    /// (the instance itself, or a proxy in front of it).
    pub fn url_via(&self, addr: &str) -> String {
        format!("postgres://postgres@{addr}/postgres")
    }

    pub fn url(&self) -> String {
        self.url_via(&format!("127.0.0.1:{}", self.port))
    }
}

impl Drop for PrivatePg {
    fn drop(&mut self) {
        let data = self.dir.join("data");
        let args = ["-D", data.to_str().unwrap_or(""), "-m", "immediate", "stop"];
        let _ = self.command("pg_ctl", &args).output();
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

fn is_root() -> bool {
    Command::new("id")
        .arg("-u")
        .output()
        .map(|o| String::from_utf8_lossy(&o.stdout).trim() == "0")
        .unwrap_or(false)
}
