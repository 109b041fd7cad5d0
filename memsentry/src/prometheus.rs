//! Prometheus in one call: the recorder, the reporter and the HTTP endpoint (the
//! `prometheus` feature, on by default).
//!
//! ```rust,standalone_crate
//! #[global_allocator]
//! static GLOBAL: memsentry::MemSentry = memsentry::MemSentry::new();
//!
//! fn main() -> Result<(), memsentry::prometheus::InstallError> {
//!     # // SAFETY: the doctest's only thread sets the variable before anything reads it.
//!     # unsafe { std::env::set_var("MEMSENTRY_HTTP_ADDR", "127.0.0.1:0") };
//!     // Serves http://127.0.0.1:6060/metrics (MEMSENTRY_HTTP_ADDR overrides the address),
//!     // /debug/pprof/heap and the rest; publishes every second.
//!     let monitoring = memsentry::prometheus::install()?;
//!     println!("metrics on http://{}/metrics", monitoring.local_addr());
//!     assert!(monitoring.render().contains("memsentry_live_bytes"));
//!     // ... serve; dropping `monitoring` stops the reporter and the endpoint.
//!     Ok(())
//! }
//! ```

use std::fmt;
use std::net::SocketAddr;

use metrics_exporter_prometheus::{PrometheusBuilder, PrometheusHandle};

use crate::http::{HttpError, Server, ServerHandle};
use crate::report::{Reporter, ReporterHandle};

/// Installs [`metrics-exporter-prometheus`](metrics_exporter_prometheus) as the global
/// `metrics` recorder, starts a [`Reporter`] (every second) and the [`Server`] on
/// `127.0.0.1:6060` or `MEMSENTRY_HTTP_ADDR`, serving `/metrics` from the recorder.
///
/// # Errors
///
/// See [`InstallError`].
pub fn install() -> Result<Monitoring, InstallError> {
    let server = Server::new()
        .addr_from_env()
        .map_err(InstallError::Http)?
        .token_from_env();
    install_with(server, Reporter::new())
}

/// [`install`] with the server and reporter set up by the caller (address, token,
/// interval); the server's `/metrics` is set to the recorder's output.
///
/// # Errors
///
/// See [`InstallError`].
pub fn install_with(server: Server, reporter: Reporter) -> Result<Monitoring, InstallError> {
    let handle = PrometheusBuilder::new()
        .install_recorder()
        .map_err(|error| InstallError::Recorder(error.to_string()))?;
    let reporter = reporter.start().map_err(InstallError::Reporter)?;
    let render = handle.clone();
    let server = server
        .metrics(move || render.render())
        .start()
        .map_err(InstallError::Http)?;
    Ok(Monitoring {
        handle,
        reporter,
        server,
    })
}

/// What [`install`] started; dropping it stops the reporter and the endpoint (the
/// recorder stays installed: `metrics` offers no way to remove it).
#[must_use = "dropping it stops the reporter and the endpoint"]
pub struct Monitoring {
    handle: PrometheusHandle,
    reporter: ReporterHandle,
    server: ServerHandle,
}

impl fmt::Debug for Monitoring {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Monitoring")
            .field("reporter", &self.reporter)
            .field("server", &self.server)
            .finish_non_exhaustive()
    }
}

impl Monitoring {
    /// The address the endpoint listens on.
    #[must_use]
    pub fn local_addr(&self) -> SocketAddr {
        self.server.local_addr()
    }

    /// The Prometheus text exposition, as `/metrics` serves it.
    #[must_use]
    pub fn render(&self) -> String {
        self.handle.render()
    }

    /// Stops the reporter and the endpoint.
    pub fn stop(self) {
        drop(self);
    }
}

/// Why [`install`] failed.
#[derive(Debug)]
#[non_exhaustive]
pub enum InstallError {
    /// A global `metrics` recorder is already installed (there can be one per process).
    Recorder(String),
    /// The reporter's thread could not be spawned.
    Reporter(std::io::Error),
    /// The endpoint could not start.
    Http(HttpError),
}

impl fmt::Display for InstallError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            InstallError::Recorder(why) => {
                write!(f, "cannot install the Prometheus recorder: {why}")
            }
            InstallError::Reporter(error) => write!(f, "cannot start the reporter: {error}"),
            InstallError::Http(error) => error.fmt(f),
        }
    }
}

impl std::error::Error for InstallError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match self {
            InstallError::Recorder(_) => None,
            InstallError::Reporter(error) => Some(error),
            InstallError::Http(error) => Some(error),
        }
    }
}
