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
//! The profile paths take `?peak=1` (the heap at its high-water mark, [`profile::peak`]),
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

use std::fmt::Write as _;
use std::io::{self, Read, Write};
use std::net::{IpAddr, Ipv4Addr, Shutdown, SocketAddr, TcpListener, TcpStream};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::thread::JoinHandle;
use std::time::{Duration, UNIX_EPOCH};

use crate::profile::{self, SampleType, Symbolization};

mod fleet;

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

const MAX_HEAD: usize = 8 * 1024;
const MAX_BODY: usize = 1024;
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
        let routes = Arc::new(Routes {
            token: self.token,
            metrics: self.metrics,
            allow_changes: self.allow_changes,
        });
        let thread = {
            let stopping = Arc::clone(&stopping);
            std::thread::Builder::new()
                .name("memsentry-http".to_owned())
                .spawn(move || accept(&listener, &routes, &stopping))
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

struct Routes {
    token: Option<String>,
    metrics: Option<Render>,
    allow_changes: bool,
}

/// The accept loop: one thread per connection, at most [`MAX_CONNECTIONS`].
fn accept(listener: &TcpListener, routes: &Arc<Routes>, stopping: &AtomicBool) {
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
        let (routes, guard) = (Arc::clone(routes), Active(Arc::clone(&active)));
        let spawned = std::thread::Builder::new()
            .name("memsentry-http-conn".to_owned())
            .spawn(move || {
                let _guard = guard;
                serve(&mut stream, &routes);
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

fn serve(stream: &mut TcpStream, routes: &Routes) {
    let mut head_only = false;
    let response = match read_request(stream) {
        Ok(mut request) => {
            // HEAD: the GET's status and headers (its Content-Length included), no body.
            if request.method == "HEAD" {
                head_only = true;
                "GET".clone_into(&mut request.method);
            }
            routes.answer(&request)
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

/// A parsed request.
#[derive(Debug, PartialEq)]
struct Request {
    method: String,
    path: String,
    query: Vec<(String, String)>,
    authorization: Option<String>,
    body: Vec<u8>,
}

/// Reads one request: its head (at most [`MAX_HEAD`]) and body (at most [`MAX_BODY`]).
fn read_request(stream: &mut impl Read) -> Result<Request, Response> {
    let mut buffer = Vec::with_capacity(1024);
    let mut chunk = [0u8; 1024];
    let head_end = loop {
        if let Some(end) = find(&buffer, b"\r\n\r\n") {
            break end;
        }
        if buffer.len() > MAX_HEAD {
            return Err(Response::error(431, "request head larger than 8 KiB"));
        }
        match stream.read(&mut chunk) {
            Ok(0) => return Err(Response::error(400, "incomplete request")),
            Ok(n) => buffer.extend_from_slice(&chunk[..n]),
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(_) => return Err(Response::error(408, "request not received in time")),
        }
    };
    if head_end > MAX_HEAD {
        return Err(Response::error(431, "request head larger than 8 KiB"));
    }
    let head = std::str::from_utf8(&buffer[..head_end])
        .map_err(|_| Response::error(400, "request head is not UTF-8"))?;
    let mut request = parse_head(head)?;
    let length = content_length(head)?;
    if length > MAX_BODY {
        return Err(Response::error(413, "request body larger than 1 KiB"));
    }
    let mut body = buffer[head_end + 4..].to_vec();
    while body.len() < length {
        match stream.read(&mut chunk) {
            Ok(0) => {
                return Err(Response::error(
                    400,
                    "request body shorter than Content-Length",
                ));
            }
            Ok(n) => body.extend_from_slice(&chunk[..n]),
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(_) => return Err(Response::error(408, "request body not received in time")),
        }
    }
    body.truncate(length);
    request.body = body;
    Ok(request)
}

fn find(haystack: &[u8], needle: &[u8]) -> Option<usize> {
    haystack.windows(needle.len()).position(|w| w == needle)
}

/// Parses the request line and the headers memsentry uses.
fn parse_head(head: &str) -> Result<Request, Response> {
    let mut lines = head.split("\r\n");
    let line = lines.next().unwrap_or("");
    let mut parts = line.split(' ');
    let (Some(method), Some(target), Some(version), None) =
        (parts.next(), parts.next(), parts.next(), parts.next())
    else {
        return Err(Response::error(400, "malformed request line"));
    };
    if !version.starts_with("HTTP/1.") || method.is_empty() || !target.starts_with('/') {
        return Err(Response::error(400, "malformed request line"));
    }
    let (path, query) = target.split_once('?').unwrap_or((target, ""));
    let query = query
        .split('&')
        .filter(|pair| !pair.is_empty())
        .map(|pair| {
            let (key, value) = pair.split_once('=').unwrap_or((pair, ""));
            Ok((percent_decode(key)?, percent_decode(value)?))
        })
        .collect::<Result<Vec<_>, Response>>()?;
    let authorization = lines
        .filter_map(|line| line.split_once(':'))
        .find(|(name, _)| name.trim().eq_ignore_ascii_case("authorization"))
        .map(|(_, value)| value.trim().to_owned());
    Ok(Request {
        method: method.to_owned(),
        path: path.to_owned(),
        query,
        authorization,
        body: Vec::new(),
    })
}

fn content_length(head: &str) -> Result<usize, Response> {
    head.split("\r\n")
        .skip(1)
        .filter_map(|line| line.split_once(':'))
        .find(|(name, _)| name.trim().eq_ignore_ascii_case("content-length"))
        .map_or(Ok(0), |(_, value)| {
            value
                .trim()
                .parse()
                .map_err(|_| Response::error(400, "bad Content-Length"))
        })
}

fn percent_decode(text: &str) -> Result<String, Response> {
    let bytes = text.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        match bytes[i] {
            b'%' => {
                let hex = bytes
                    .get(i + 1..i + 3)
                    .and_then(|h| std::str::from_utf8(h).ok())
                    .and_then(|h| u8::from_str_radix(h, 16).ok())
                    .ok_or_else(|| Response::error(400, "bad percent-encoding in the query"))?;
                out.push(hex);
                i += 3;
            }
            b'+' => {
                out.push(b' ');
                i += 1;
            }
            byte => {
                out.push(byte);
                i += 1;
            }
        }
    }
    String::from_utf8(out).map_err(|_| Response::error(400, "query is not UTF-8"))
}

/// An answer.
#[derive(Debug)]
struct Response {
    status: u16,
    content_type: &'static str,
    headers: Vec<(&'static str, String)>,
    body: Vec<u8>,
}

impl Response {
    fn ok(content_type: &'static str, body: impl Into<Vec<u8>>) -> Response {
        Response {
            status: 200,
            content_type,
            headers: Vec::new(),
            body: body.into(),
        }
    }

    /// A status with a one-line reason as its body.
    fn error(status: u16, reason: &str) -> Response {
        Response {
            status,
            content_type: "text/plain; charset=utf-8",
            headers: Vec::new(),
            body: format!("{reason}\n").into_bytes(),
        }
    }

    fn header(mut self, name: &'static str, value: impl Into<String>) -> Response {
        self.headers.push((name, value.into()));
        self
    }

    /// Writes the answer; only its head if `head_only` (a HEAD request).
    fn write(&self, stream: &mut impl Write, head_only: bool) -> io::Result<()> {
        let reason = match self.status {
            200 => "OK",
            302 => "Found",
            400 => "Bad Request",
            401 => "Unauthorized",
            403 => "Forbidden",
            404 => "Not Found",
            405 => "Method Not Allowed",
            408 => "Request Timeout",
            413 => "Content Too Large",
            431 => "Request Header Fields Too Large",
            500 => "Internal Server Error",
            503 => "Service Unavailable",
            _ => "",
        };
        let mut head = format!(
            "HTTP/1.1 {} {reason}\r\nContent-Type: {}\r\nContent-Length: {}\r\nConnection: close\r\n",
            self.status,
            self.content_type,
            self.body.len()
        );
        for (name, value) in &self.headers {
            let _ = write!(head, "{name}: {value}\r\n");
        }
        head.push_str("\r\n");
        stream.write_all(head.as_bytes())?;
        if head_only {
            return Ok(());
        }
        stream.write_all(&self.body)
    }
}

const TEXT: &str = "text/plain; charset=utf-8";

impl Routes {
    fn answer(&self, request: &Request) -> Response {
        let path = request.path.as_str();
        let methods: &[&str] = match path {
            "/debug/memsentry/sample_rate" => &["GET", "HEAD", "POST"],
            "/metrics"
            | "/healthz"
            | "/debug/pprof/heap"
            | "/debug/pprof/allocs"
            | "/debug/memsentry/snapshot"
            | "/debug/memsentry/tasks"
            | "/debug/memsentry/watchdog"
            | "/debug/memsentry/dumps"
            | "/debug/pprof/"
            | "/debug/pprof/delta_heap"
            | "/debug/pprof/goroutine"
            | "/debug/memsentry/leaks"
            | "/debug/memsentry/lifetimes"
            | "/debug/memsentry/"
            | "/" => &["GET", "HEAD"],
            _ if path.starts_with(DUMPS_PREFIX) => &["GET", "HEAD"],
            _ if fleet::NOT_IN_RUST.contains(&path) => return fleet::not_in_rust(path),
            _ => return Response::error(404, &format!("no such path: {path}")),
        };
        if !methods.contains(&request.method.as_str()) {
            return Response::error(405, &format!("{} does not take {}", path, request.method))
                .header("Allow", methods.join(", "));
        }
        // The page itself holds no data (its requests for data need the token), and a
        // browser cannot send a bearer token when it navigates: it is served without one.
        let open = matches!(path, "/healthz" | "/" | "/debug/memsentry/");
        if !open && !self.authorized(request) {
            return Response::error(401, "missing or wrong bearer token")
                .header("WWW-Authenticate", "Bearer");
        }
        match path {
            "/healthz" => no_query(request).unwrap_or_else(|| Response::ok(TEXT, "ok\n")),
            "/metrics" => no_query(request).unwrap_or_else(|| match &self.metrics {
                Some(render) => Response::ok("text/plain; version=0.0.4; charset=utf-8", render()),
                None => Response::error(
                    404,
                    "no metrics renderer: start the endpoint with memsentry::prometheus::install",
                ),
            }),
            "/debug/pprof/heap" => profile_response(request, SampleType::InuseSpace),
            "/debug/pprof/allocs" => profile_response(request, SampleType::AllocSpace),
            "/debug/memsentry/snapshot" => no_query(request)
                .unwrap_or_else(|| Response::ok("application/json", snapshot_json())),
            "/debug/memsentry/tasks" => tasks(request),
            "/debug/pprof/" => no_query(request).unwrap_or_else(fleet::index),
            "/" => Response::error(302, "the page is at /debug/memsentry/")
                .header("Location", "/debug/memsentry/"),
            "/debug/memsentry/" => no_query(request).unwrap_or_else(|| {
                Response::ok("text/html; charset=utf-8", PAGE)
                    .header("Content-Security-Policy", "default-src 'self'; style-src 'unsafe-inline'; script-src 'unsafe-inline'; img-src 'self' blob: data:; frame-src blob:")
            }),
            "/debug/memsentry/leaks" => leaks(request),
            "/debug/memsentry/lifetimes" => no_query(request)
                .unwrap_or_else(|| Response::ok(TEXT, profile::lifetimes().to_string())),
            "/debug/pprof/delta_heap" => fleet::delta_heap(request),
            "/debug/pprof/goroutine" => fleet::goroutine(request),
            "/debug/memsentry/watchdog" => watchdog(request),
            "/debug/memsentry/dumps" => dumps(request),
            _ if path.starts_with(DUMPS_PREFIX) => {
                no_query(request).unwrap_or_else(|| dump_file(&path[DUMPS_PREFIX.len()..]))
            }
            _ => self.sample_rate(request),
        }
    }

    fn authorized(&self, request: &Request) -> bool {
        let Some(token) = &self.token else {
            return true;
        };
        let Some(given) = request
            .authorization
            .as_deref()
            .and_then(|value| value.strip_prefix("Bearer "))
        else {
            return false;
        };
        // Compared in time independent of where they differ.
        given.len() == token.len()
            && given
                .bytes()
                .zip(token.bytes())
                .fold(0u8, |diff, (a, b)| diff | (a ^ b))
                == 0
    }
}

/// A 400 if the request has query parameters where none are taken.
fn no_query(request: &Request) -> Option<Response> {
    request.query.first().map(|(key, _)| unknown_parameter(key))
}

fn unknown_parameter(key: &str) -> Response {
    Response::error(400, &format!("unknown query parameter {key:?}"))
}

/// The value of `?debug=`: whether the text form is asked for (`1`, or Go's `2`).
fn debug_flag(value: &str) -> Result<bool, Response> {
    match value {
        "0" => Ok(false),
        "1" | "2" => Ok(true),
        _ => Err(Response::error(
            400,
            &format!("debug={value:?}: expected 0 or 1"),
        )),
    }
}

/// The output of a profile path.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Format {
    Pprof,
    Top,
    Folded,
    Svg,
}

fn profile_response(request: &Request, default_type: SampleType) -> Response {
    let mut format = Format::Pprof;
    let mut sample_type = None;
    let mut symbolization = Symbolization::InProcess;
    let mut window = None;
    let mut peak = false;
    for (key, value) in &request.query {
        match key.as_str() {
            "peak" => match debug_flag(value) {
                Ok(flag) => peak = flag,
                Err(response) => return response,
            },
            "debug" => match debug_flag(value) {
                Ok(true) => format = Format::Top,
                Ok(false) => {}
                Err(response) => return response,
            },
            "seconds" => match fleet::seconds(value) {
                Ok(seconds) => window = Some(seconds),
                Err(response) => return response,
            },
            "gc" => {
                if let Err(response) = fleet::gc(value) {
                    return response;
                }
            }
            "format" => {
                format = match value.as_str() {
                    "pprof" => Format::Pprof,
                    "top" => Format::Top,
                    "folded" => Format::Folded,
                    "svg" => Format::Svg,
                    _ => {
                        return Response::error(
                            400,
                            &format!("format={value:?}: expected pprof, top, folded or svg"),
                        );
                    }
                }
            }
            "sample_index" => match value.parse::<SampleType>() {
                Ok(t) if !t.is_change() => sample_type = Some(t),
                _ => {
                    return Response::error(
                        400,
                        &format!(
                            "sample_index={value:?}: expected inuse_space, inuse_objects, \
                             alloc_space or alloc_objects"
                        ),
                    );
                }
            },
            "symbolization" => {
                symbolization = match value.as_str() {
                    "in-process" => Symbolization::InProcess,
                    "offline" => Symbolization::Offline,
                    _ => {
                        return Response::error(
                            400,
                            &format!("symbolization={value:?}: expected in-process or offline"),
                        );
                    }
                }
            }
            _ => return unknown_parameter(key),
        }
    }
    let sample_type = sample_type.unwrap_or(default_type);
    let heap = match window {
        _ if peak => profile::peak(),
        Some(window) => match fleet::delta(window, symbolization) {
            Ok(delta) => delta,
            Err(response) => return response,
        },
        None => profile::heap_with(symbolization),
    };
    match format {
        Format::Pprof => fleet::pprof_body(&heap, sample_type),
        Format::Top => Response::ok(TEXT, heap.top(sample_type, 50).to_string()),
        Format::Folded => Response::ok(TEXT, heap.folded(sample_type)),
        Format::Svg => svg(&heap, sample_type),
    }
}

#[cfg(feature = "flamegraph")]
fn svg(heap: &profile::Profile, sample_type: SampleType) -> Response {
    let mut body = Vec::new();
    match heap.flamegraph(sample_type, &mut body) {
        Ok(()) => Response::ok("image/svg+xml", body),
        Err(error) => Response::error(500, &format!("cannot render the flame graph: {error}")),
    }
}

#[cfg(not(feature = "flamegraph"))]
fn svg(_heap: &profile::Profile, _sample_type: SampleType) -> Response {
    Response::error(
        404,
        "format=svg needs memsentry's `flamegraph` feature, which this build left out",
    )
}

impl Routes {
    /// `/debug/memsentry/sample_rate`: reads the rate; POST sets it, if allowed.
    fn sample_rate(&self, request: &Request) -> Response {
        if request.method == "POST" && self.token.is_none() && !self.allow_changes {
            return Response::error(
                403,
                "changing the sampling rate needs a token (Server::token) or \
                 Server::allow_changes(true)",
            );
        }
        sample_rate(request, self.allow_changes)
    }
}

fn sample_rate(request: &Request, allow_low: bool) -> Response {
    let mut value = None;
    for (key, v) in &request.query {
        match key.as_str() {
            "rate" if request.method == "POST" => value = Some(v.clone()),
            _ => return unknown_parameter(key),
        }
    }
    if request.method == "GET" {
        return Response::ok(TEXT, format!("{}\n", profile::sample_rate()));
    }
    let value = match value {
        Some(value) => value,
        None => match std::str::from_utf8(&request.body) {
            Ok(body) => body.trim().to_owned(),
            Err(_) => return Response::error(400, "the body is not UTF-8"),
        },
    };
    match crate::config::parse_bytes(value.as_bytes()) {
        Some(rate) if (1..MIN_SAMPLE_RATE).contains(&rate) && !allow_low => Response::error(
            403,
            &format!(
                "a sampling rate of {rate} bytes (under {MIN_SAMPLE_RATE}) slows the service: \
                 it needs Server::allow_changes(true)"
            ),
        ),
        Some(rate) => {
            profile::set_sample_rate(rate);
            Response::ok(TEXT, format!("{rate}\n"))
        }
        None => Response::error(
            400,
            &format!(
                "{:?} is not a byte count (expected e.g. 524288, 512KiB, 1MiB, 0)",
                value.chars().take(64).collect::<String>()
            ),
        ),
    }
}

/// Where one dump file is served: `/debug/memsentry/dumps/NAME`.
const DUMPS_PREFIX: &str = "/debug/memsentry/dumps/";

/// `?debug=` alone: whether the text form is asked for.
fn text_flag(request: &Request) -> Result<bool, Response> {
    let mut text = false;
    for (key, value) in &request.query {
        match key.as_str() {
            "debug" => text = debug_flag(value)?,
            _ => return Err(unknown_parameter(key)),
        }
    }
    Ok(text)
}

/// The page at `/debug/memsentry/`.
const PAGE: &str = include_str!("http/page.html");

fn leaks(request: &Request) -> Response {
    let text = match text_flag(request) {
        Ok(text) => text,
        Err(response) => return response,
    };
    let suspects = profile::leak_suspects();
    if text {
        Response::ok(TEXT, suspects.to_string())
    } else {
        Response::ok("application/json", profile::leaks_json(&suspects))
    }
}

const NO_WATCHDOG: &str = "no watchdog is running: start one with memsentry::watch::Watchdog";

fn watchdog(request: &Request) -> Response {
    let text = match text_flag(request) {
        Ok(text) => text,
        Err(response) => return response,
    };
    match crate::watch::status() {
        Some(status) if text => Response::ok(TEXT, status.to_string()),
        Some(status) => Response::ok("application/json", status.to_json()),
        None => Response::error(404, NO_WATCHDOG),
    }
}

/// The running watchdog's dump directory, or the 404 that says why there is none.
fn dump_dir() -> Result<std::path::PathBuf, Response> {
    if crate::watch::status().is_none() {
        return Err(Response::error(404, NO_WATCHDOG));
    }
    crate::watch::dump_dir()
        .ok_or_else(|| Response::error(404, "the watchdog writes no dumps (no directory set)"))
}

fn dumps(request: &Request) -> Response {
    let text = match text_flag(request) {
        Ok(text) => text,
        Err(response) => return response,
    };
    let dir = match dump_dir() {
        Ok(dir) => dir,
        Err(response) => return response,
    };
    let files = match profile::dump::store::list(&dir) {
        Ok(files) => files,
        Err(error) => {
            return Response::error(500, &format!("cannot list {}: {error}", dir.display()));
        }
    };
    if text {
        let mut out = format!("{} dump files in {}\n", files.len(), dir.display());
        for file in files.iter().rev() {
            let _ = writeln!(out, "{:>12}  {}{}", file.bytes, DUMPS_PREFIX, file.name);
        }
        return Response::ok(TEXT, out);
    }
    let mut out = format!(
        "{{\"dir\":{},\"files\":[",
        json_string(&dir.display().to_string())
    );
    // Newest first.
    for (i, file) in files.iter().rev().enumerate() {
        if i > 0 {
            out.push(',');
        }
        let _ = write!(
            out,
            "{{\"name\":{},\"bytes\":{},\"path\":{}}}",
            json_string(&file.name),
            file.bytes,
            json_string(&format!("{DUMPS_PREFIX}{}", file.name))
        );
    }
    out.push_str("]}");
    Response::ok("application/json", out)
}

/// One file of the dump directory, by name: only names of dump files are served.
fn dump_file(name: &str) -> Response {
    let dir = match dump_dir() {
        Ok(dir) => dir,
        Err(response) => return response,
    };
    let Some((_, suffix)) = profile::dump::store::split_name(name) else {
        return Response::error(404, &format!("no such dump file: {name}"));
    };
    match std::fs::read(dir.join(name)) {
        Ok(body) => {
            let content_type = match suffix {
                ".svg" => "image/svg+xml",
                ".memory.stat" | ".memory.events" => TEXT,
                _ => "application/octet-stream",
            };
            Response::ok(content_type, body).header(
                "Content-Disposition",
                format!("attachment; filename=\"{name}\""),
            )
        }
        Err(error) if error.kind() == io::ErrorKind::NotFound => {
            Response::error(404, &format!("no such dump file: {name}"))
        }
        Err(error) => Response::error(500, &format!("cannot read {name}: {error}")),
    }
}

fn tasks(request: &Request) -> Response {
    let text = match text_flag(request) {
        Ok(text) => text,
        Err(response) => return response,
    };
    let report = crate::task::report();
    if text {
        return Response::ok(TEXT, report.to_string());
    }
    let mut out = String::from("{\"tasks\":[");
    for (i, row) in report.rows().iter().enumerate() {
        if i > 0 {
            out.push(',');
        }
        let _ = write!(
            out,
            "{{\"name\":{},\"live\":{},\"oldest_live_seconds\":{},\"started\":{},             \"finished\":{},\"cancelled\":{},\"polls\":{},\"allocations\":{},             \"allocated_bytes\":{},\"frees\":{},\"freed_bytes\":{},             \"inuse_objects_estimate\":{},\"inuse_bytes_estimate\":{}}}",
            json_string(row.name),
            row.live,
            row.oldest_live.map_or_else(
                || "null".to_owned(),
                |age| format!("{:.3}", age.as_secs_f64())
            ),
            row.started,
            row.finished,
            row.cancelled,
            row.polls,
            row.allocations,
            row.allocated_bytes,
            row.frees,
            row.freed_bytes,
            json_number(row.inuse_objects_estimate),
            json_number(row.inuse_bytes_estimate),
        );
    }
    out.push_str("]}\n");
    Response::ok("application/json", out)
}

/// `text` as a JSON string literal.
pub(crate) fn json_string(text: &str) -> String {
    let mut out = String::with_capacity(text.len() + 2);
    out.push('"');
    for c in text.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            c if u32::from(c) < 0x20 => {
                let _ = write!(out, "\\u{:04x}", u32::from(c));
            }
            c => out.push(c),
        }
    }
    out.push('"');
    out
}

/// A finite number as JSON (estimates are finite; anything else becomes 0).
fn json_number(value: f64) -> String {
    if value.is_finite() {
        format!("{value:.1}")
    } else {
        "0".to_owned()
    }
}

/// The snapshot as JSON: totals, jemalloc, process, sampler and the class table.
fn snapshot_json() -> String {
    let snapshot = crate::snapshot();
    let usage = profile::usage();
    let counts = |c: &crate::Counts| {
        format!(
            "\"allocations\":{},\"frees\":{},\"allocated_bytes\":{},\"freed_bytes\":{},\
             \"allocated_class_bytes\":{},\"freed_class_bytes\":{},\"live_bytes\":{},\
             \"live_objects\":{}",
            c.allocations,
            c.frees,
            c.allocated_bytes,
            c.freed_bytes,
            c.allocated_class_bytes,
            c.freed_class_bytes,
            c.live_bytes(),
            c.live_objects()
        )
    };
    let taken_at = snapshot
        .taken_at
        .duration_since(UNIX_EPOCH)
        .map_or(0.0, |d| d.as_secs_f64());
    let jemalloc = snapshot.jemalloc.as_ref().map_or_else(
        || "null".to_owned(),
        |j| {
            format!(
                "{{\"allocated\":{},\"active\":{},\"resident\":{},\"mapped\":{},\
                 \"retained\":{},\"metadata\":{},\"dirty\":{},\"muzzy\":{},\
                 \"dirty_decay_ms\":{},\"muzzy_decay_ms\":{}}}",
                j.allocated,
                j.active,
                j.resident,
                j.mapped,
                j.retained,
                j.metadata,
                j.dirty,
                j.muzzy,
                j.dirty_decay_ms,
                j.muzzy_decay_ms
            )
        },
    );
    let optional = |value: Option<u64>| value.map_or_else(|| "null".to_owned(), |v| v.to_string());
    let resident = optional(snapshot.resident_bytes);
    let limit = optional(snapshot.memory_limit_bytes);
    let mut out = format!(
        "{{\"taken_at_unix_seconds\":{taken_at:.6},\"totals\":{{{}}},\
         \"failed_allocations\":{},\"jemalloc\":{jemalloc},\"resident_bytes\":{resident},\
         \"memory_limit_bytes\":{limit},\
         \"sampler\":{{\"live_samples\":{},\"stacks\":{},\"memory_bytes\":{},\"rate_bytes\":{}}},\
         \"classes\":[",
        counts(&snapshot.totals),
        snapshot.failed_allocations,
        usage.live_samples,
        usage.stacks,
        usage.bytes,
        usage.sample_rate,
    );
    for (i, class) in snapshot.classes.iter().enumerate() {
        if i > 0 {
            out.push(',');
        }
        let _ = write!(out, "{{\"size\":{},{}}}", class.size, counts(&class.counts));
    }
    out.push_str("]}\n");
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(raw: &str) -> Result<Request, u16> {
        read_request(&mut raw.as_bytes()).map_err(|r| r.status)
    }

    #[test]
    fn requests_parse() {
        let request = parse(
            "POST /debug/memsentry/sample_rate?rate=1MiB&x=a%20b+c HTTP/1.1\r\n\
             Host: x\r\nauthorization: Bearer s3cret\r\nContent-Length: 3\r\n\r\nabcdef",
        )
        .unwrap();
        assert_eq!(request.method, "POST");
        assert_eq!(request.path, "/debug/memsentry/sample_rate");
        assert_eq!(
            request.query,
            [
                ("rate".to_owned(), "1MiB".to_owned()),
                ("x".to_owned(), "a b c".to_owned())
            ]
        );
        assert_eq!(request.authorization.as_deref(), Some("Bearer s3cret"));
        assert_eq!(request.body, b"abc");
    }

    #[test]
    fn bad_requests_are_refused() {
        assert_eq!(parse("GET /\r\n\r\n"), Err(400));
        assert_eq!(parse("GET x HTTP/1.1\r\n\r\n"), Err(400));
        assert_eq!(parse("GET / SPDY/3\r\n\r\n"), Err(400));
        assert_eq!(parse("GET /?a=%zz HTTP/1.1\r\n\r\n"), Err(400));
        assert_eq!(
            parse("GET / HTTP/1.1\r\nContent-Length: x\r\n\r\n"),
            Err(400)
        );
        assert_eq!(
            parse("GET / HTTP/1.1\r\nContent-Length: 5000\r\n\r\n"),
            Err(413)
        );
        assert_eq!(
            parse("GET / HTTP/1.1\r\nContent-Length: 9\r\n\r\nabc"),
            Err(400)
        );
        let long = format!("GET / HTTP/1.1\r\nX: {}\r\n\r\n", "y".repeat(9000));
        assert_eq!(parse(&long), Err(431));
        assert_eq!(parse("GET / HTTP/1.1\r\n"), Err(400), "incomplete");
    }

    #[test]
    fn json_strings_are_escaped() {
        assert_eq!(json_string("a\"b\\c\n"), "\"a\\\"b\\\\c\\u000a\"");
        assert_eq!(json_number(f64::NAN), "0");
        assert_eq!(json_number(2.0), "2.0");
    }

    #[test]
    fn tokens_compare_exactly() {
        let routes = Routes {
            token: Some("s3cret".to_owned()),
            metrics: None,
            allow_changes: false,
        };
        let with = |auth: Option<&str>| Request {
            method: "GET".to_owned(),
            path: "/debug/memsentry/snapshot".to_owned(),
            query: Vec::new(),
            authorization: auth.map(str::to_owned),
            body: Vec::new(),
        };
        assert!(routes.authorized(&with(Some("Bearer s3cret"))));
        assert!(!routes.authorized(&with(Some("Bearer s3cre"))));
        assert!(!routes.authorized(&with(Some("Bearer s3creT"))));
        assert!(!routes.authorized(&with(Some("s3cret"))));
        assert!(!routes.authorized(&with(None)));
    }
}
