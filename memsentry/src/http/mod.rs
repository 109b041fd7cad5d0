//! A small HTTP debug endpoint: Prometheus metrics, heap profiles, the snapshot, the
//! sampling rate: the Rust twin of Go's `promhttp` and `net/http/pprof`.
//!
//! | path | method | answer |
//! |---|---|---|
//! | `/metrics` | GET | Prometheus text exposition (when a renderer is set: [`crate::prometheus::install`] sets it) |
//! | `/debug/pprof/heap` | GET | gzipped pprof, default view `inuse_space` |
//! | `/debug/pprof/allocs` | GET | the same profile, default view `alloc_space` |
//! | `/debug/memsentry/snapshot` | GET | the [snapshot](crate::snapshot) as JSON |
//! | `/debug/memsentry/sample_rate` | GET, POST | the sampling rate; POST sets it (body or `?rate=`: `524288`, `512KiB`, `0`) |
//! | `/debug/memsentry/tasks` | GET | per-task statistics ([`crate::task::report`]) as JSON; `?debug=1`: the text table |
//! | `/debug/memsentry/watchdog` | GET | the running [watchdog](crate::watch)'s status as JSON; `?debug=1`: text |
//! | `/debug/memsentry/dumps` | GET | the watchdog's dump files, newest first, as JSON; `?debug=1`: text |
//! | `/debug/memsentry/dumps/NAME` | GET | one dump file (only names of the dump files' shape are served) |
//! | `/debug/memsentry/` | GET | a page for a browser: live charts, the top in-use sites, tasks, leak suspects, links (`/` redirects to it) |
//! | `/debug/memsentry/lifetimes` | GET | how long sampled blocks live, per call site ([`crate::profile::lifetimes`]), as text |
//! | `/debug/memsentry/leaks` | GET | [leak suspects](crate::profile::leak_suspects) as JSON; `?debug=1`: text |
//! | `/healthz` | GET | `ok` |
//!
//! The profile paths take `?peak=1` (the heap at its high-water mark, [`profile::peak`](crate::profile::peak)),
//! `?seconds=N` (a delta over N seconds), `?debug=1` (the text top report), `?format=pprof|folded|svg|top`,
//! `?sample_index=inuse_space|inuse_objects|alloc_space|alloc_objects` and
//! `?symbolization=offline`. Every GET also answers HEAD (the same status and headers,
//! no body). Unknown paths answer 404, other methods 405, unknown or bad
//! query parameters 400, requests whose head exceeds 8 KiB 431 and bodies over 1 KiB 413,
//! each with a one-line reason.
//!
//! # Security
//!
//! The server binds to `127.0.0.1:6060` unless told otherwise. With
//! [`token`](Server::token) set, every path but `/healthz` needs
//! `Authorization: Bearer TOKEN` (401 otherwise). Binding to an address other than
//! loopback without a token prints a warning on stderr: profiles reveal code structure
//! and the sample-rate endpoint changes the process's behaviour.
//!
//! # Concurrency
//!
//! One thread, `memsentry-http`, accepts connections; each is served on a short-lived
//! thread of its own (at most 32 at once, further connections get 503), with 5 s to send
//! its request and 10 s to take the answer, so a slow client cannot hold up the others.
//! One request per connection (`Connection: close`).

use std::io::{self, Read, Write};
use std::net::{IpAddr, Ipv4Addr, Shutdown, SocketAddr, TcpListener, TcpStream};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::thread::JoinHandle;
use std::time::Duration;

use self::request::read_request;
use self::response::Response;
use self::settings::Settings;

mod fleet;
mod page;
mod profiles;
mod request;
mod response;
mod routes;
mod settings;
mod stats;
mod watchdog;

/// The address the server binds unless told otherwise: Go's pprof examples' port, on
/// loopback.
pub const DEFAULT_ADDR: SocketAddr = SocketAddr::new(IpAddr::V4(Ipv4Addr::LOCALHOST), 6060);

/// The lowest sampling rate a request may set without [`Server::allow_changes`]: lower
/// rates sample so often that they slow the service (rate 1 samples every allocation).
pub const MIN_SAMPLE_RATE: u64 = 4096;

/// The variable [`Server::addr_from_env`] reads.
pub const ADDR_VAR: &str = "MEMSENTRY_HTTP_ADDR";

/// The variable [`Server::token_from_env`] reads.
pub const TOKEN_VAR: &str = "MEMSENTRY_HTTP_TOKEN";

const MAX_CONNECTIONS: usize = 32;
const READ_TIMEOUT: Duration = Duration::from_secs(5);
const WRITE_TIMEOUT: Duration = Duration::from_secs(10);

/// Renders the `/metrics` page.
type Render = Arc<dyn Fn() -> String + Send + Sync>;

/// The endpoint's settings; [`start`](Server::start) runs it.
///
/// ```rust,standalone_crate
/// #[global_allocator]
/// static GLOBAL: memsentry::MemSentry = memsentry::MemSentry::new();
///
/// fn main() -> Result<(), memsentry::http::HttpError> {
///     let server = memsentry::http::Server::new()
///         .addr("127.0.0.1:0".parse().unwrap()) // any free port; the default is 6060
///         .start()?;
///     println!("curl http://{}/debug/pprof/heap?debug=1", server.local_addr());
///     server.stop();
///     Ok(())
/// }
/// ```
#[derive(Clone)]
#[must_use = "nothing is served until `start()`"]
pub struct Server {
    addr: SocketAddr,
    token: Option<String>,
    metrics: Option<Render>,
    allow_changes: bool,
}

impl std::fmt::Debug for Server {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Server")
            .field("addr", &self.addr)
            .field("token", &self.token.as_ref().map(|_| "…"))
            .field("metrics", &self.metrics.is_some())
            .field("allow_changes", &self.allow_changes)
            .finish()
    }
}

impl Default for Server {
    fn default() -> Self {
        Server::new()
    }
}

impl Server {
    /// Serves on [`DEFAULT_ADDR`], without a token and without `/metrics`.
    pub fn new() -> Server {
        Server {
            addr: DEFAULT_ADDR,
            token: None,
            metrics: None,
            allow_changes: false,
        }
    }

    /// The address to bind (port 0: any free port, see [`ServerHandle::local_addr`]).
    pub fn addr(mut self, addr: SocketAddr) -> Server {
        self.addr = addr;
        self
    }

    /// The address from `MEMSENTRY_HTTP_ADDR` if it is set (`127.0.0.1:6060`,
    /// `0.0.0.0:9000`, `[::1]:6060`); otherwise unchanged.
    ///
    /// # Errors
    ///
    /// [`HttpError::BadAddr`] if the variable is set but is not a socket address.
    pub fn addr_from_env(self) -> Result<Server, HttpError> {
        match std::env::var(ADDR_VAR) {
            Ok(value) => value
                .trim()
                .parse()
                .map(|addr| self.addr(addr))
                .map_err(|_| HttpError::BadAddr(value)),
            Err(_) => Ok(self),
        }
    }

    /// The token from `MEMSENTRY_HTTP_TOKEN` if it is set and not empty; otherwise
    /// unchanged. ([`crate::prometheus::install`] reads it.)
    pub fn token_from_env(self) -> Server {
        match std::env::var(TOKEN_VAR) {
            Ok(token) if !token.trim().is_empty() => self.token(token.trim()),
            _ => self,
        }
    }

    /// Requires `Authorization: Bearer TOKEN` on every path but `/healthz` (and the page
    /// at `/debug/memsentry/`, which holds no data: its requests for data need the token).
    pub fn token(mut self, token: impl Into<String>) -> Server {
        self.token = Some(token.into());
        self
    }

    /// Lets requests change the process's behaviour without a token (`POST
    /// /debug/memsentry/sample_rate`), and set a sampling rate under [`MIN_SAMPLE_RATE`]
    /// even with one. Off by default: reading is open on loopback, changing is not, so
    /// that the endpoint can be left to scrapers.
    pub fn allow_changes(mut self, allowed: bool) -> Server {
        self.allow_changes = allowed;
        self
    }

    /// Serves `/metrics` with what `render` returns (Prometheus text exposition).
    pub fn metrics(mut self, render: impl Fn() -> String + Send + Sync + 'static) -> Server {
        self.metrics = Some(Arc::new(render));
        self
    }

    /// Binds and starts serving on a thread named `memsentry-http`.
    ///
    /// # Errors
    ///
    /// [`HttpError::Bind`] if the address cannot be bound, [`HttpError::Thread`] if the
    /// thread cannot be spawned.
    pub fn start(self) -> Result<ServerHandle, HttpError> {
        let listener = TcpListener::bind(self.addr).map_err(|source| HttpError::Bind {
            addr: self.addr,
            source,
        })?;
        let local_addr = listener.local_addr().map_err(|source| HttpError::Bind {
            addr: self.addr,
            source,
        })?;
        if !local_addr.ip().is_loopback() && self.token.is_none() {
            eprintln!(
                "memsentry: WARNING: the debug endpoint listens on {local_addr}, beyond this \
                 machine, without a token: anyone who can reach it can read heap profiles \
                 and change the sampling rate. Set a token or bind to 127.0.0.1."
            );
        }
        let stopping = Arc::new(AtomicBool::new(false));
        let settings = Arc::new(Settings {
            token: self.token,
            metrics: self.metrics,
            allow_changes: self.allow_changes,
        });
        let thread = {
            let stopping = Arc::clone(&stopping);
            std::thread::Builder::new()
                .name("memsentry-http".to_owned())
                .spawn(move || accept(&listener, &settings, &stopping))
                .map_err(|source| HttpError::Thread { source })?
        };
        Ok(ServerHandle {
            local_addr,
            stopping,
            thread: Some(thread),
        })
    }
}

/// Why the endpoint could not start.
#[derive(Debug)]
#[non_exhaustive]
pub enum HttpError {
    /// `MEMSENTRY_HTTP_ADDR` is not a socket address.
    BadAddr(String),
    /// The address could not be bound.
    Bind {
        /// The address.
        addr: SocketAddr,
        /// Why.
        source: io::Error,
    },
    /// The thread could not be spawned.
    Thread {
        /// Why.
        source: io::Error,
    },
}

impl std::fmt::Display for HttpError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            HttpError::BadAddr(value) => write!(
                f,
                "{ADDR_VAR}={value:?} is not a socket address (expected e.g. 127.0.0.1:6060)"
            ),
            HttpError::Bind { addr, source } => write!(f, "cannot listen on {addr}: {source}"),
            HttpError::Thread { source } => {
                write!(f, "cannot start the debug endpoint's thread: {source}")
            }
        }
    }
}

impl std::error::Error for HttpError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match self {
            HttpError::BadAddr(_) => None,
            HttpError::Bind { source, .. } | HttpError::Thread { source } => Some(source),
        }
    }
}

/// A running [`Server`]: stops it when dropped.
#[derive(Debug)]
#[must_use = "dropping the handle stops the server"]
pub struct ServerHandle {
    local_addr: SocketAddr,
    stopping: Arc<AtomicBool>,
    thread: Option<JoinHandle<()>>,
}

impl ServerHandle {
    /// The address the server listens on.
    #[must_use]
    pub fn local_addr(&self) -> SocketAddr {
        self.local_addr
    }

    /// Stops accepting connections and waits for the accepting thread; requests being
    /// served finish on their own threads.
    pub fn stop(self) {
        drop(self);
    }
}

impl Drop for ServerHandle {
    fn drop(&mut self) {
        self.stopping.store(true, Ordering::SeqCst);
        // Wake the blocking accept with a connection of our own.
        let mut wake = self.local_addr;
        if wake.ip().is_unspecified() {
            wake.set_ip(match wake.ip() {
                IpAddr::V4(_) => IpAddr::V4(Ipv4Addr::LOCALHOST),
                IpAddr::V6(_) => IpAddr::V6(std::net::Ipv6Addr::LOCALHOST),
            });
        }
        let _ = TcpStream::connect_timeout(&wake, Duration::from_secs(1));
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

/// The accept loop: one thread per connection, at most [`MAX_CONNECTIONS`].
fn accept(listener: &TcpListener, settings: &Arc<Settings>, stopping: &AtomicBool) {
    let active = Arc::new(AtomicUsize::new(0));
    for stream in listener.incoming() {
        if stopping.load(Ordering::SeqCst) {
            return;
        }
        let Ok(mut stream) = stream else {
            // Out of file descriptors and the like: back off a little.
            std::thread::sleep(Duration::from_millis(10));
            continue;
        };
        let _ = stream.set_read_timeout(Some(READ_TIMEOUT));
        let _ = stream.set_write_timeout(Some(WRITE_TIMEOUT));
        if active.fetch_add(1, Ordering::SeqCst) >= MAX_CONNECTIONS {
            active.fetch_sub(1, Ordering::SeqCst);
            refuse(&mut stream);
            continue;
        }
        let (settings, guard) = (Arc::clone(settings), Active(Arc::clone(&active)));
        let spawned = std::thread::Builder::new()
            .name("memsentry-http-conn".to_owned())
            .spawn(move || {
                let _guard = guard;
                serve(&mut stream, &settings);
            });
        // On failure the closure, and with it the guard and the stream, is dropped.
        drop(spawned);
    }
}

/// Answers 503 on the accepting thread, spending at most ~0.2 s on it: the request is
/// read first (what has arrived), so that closing does not reset the connection before
/// the client reads the answer.
fn refuse(stream: &mut TcpStream) {
    let _ = stream.set_read_timeout(Some(Duration::from_millis(100)));
    let _ = stream.set_write_timeout(Some(Duration::from_millis(100)));
    let mut head = [0u8; 1024];
    let _ = stream.read(&mut head);
    let _ = Response::error(503, "too many connections; try again").write(stream, false);
    let _ = stream.shutdown(Shutdown::Write);
}

/// Counts a connection being served while it lives.
struct Active(Arc<AtomicUsize>);

impl Drop for Active {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::SeqCst);
    }
}

fn serve(stream: &mut TcpStream, settings: &Settings) {
    let mut head_only = false;
    let response = match read_request(stream) {
        Ok(mut request) => {
            // HEAD: the GET's status and headers (its Content-Length included), no body.
            if request.method == "HEAD" {
                head_only = true;
                "GET".clone_into(&mut request.method);
            }
            routes::answer(settings, &request)
        }
        Err(response) => response,
    };
    let _ = response.write(stream, head_only);
    let _ = stream.flush();
    let _ = stream.shutdown(Shutdown::Write);
    // Drain what the client still sends (a body we refused) so closing does not reset
    // the connection before it reads the answer.
    let _ = stream.set_read_timeout(Some(Duration::from_millis(200)));
    let mut sink = [0u8; 1024];
    while matches!(stream.read(&mut sink), Ok(n) if n > 0) {}
}
