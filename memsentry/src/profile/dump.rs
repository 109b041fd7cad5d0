//! Heap profiles on a signal: `kill -USR2 <pid>` writes a pprof file into a directory.
//!
//! Opt-in: nothing happens until a [`SignalDumps`] is started. From then on, each time the
//! process receives the signal (`SIGUSR2` unless set otherwise), a background thread named
//! `memsentry-dumps` takes a [`heap`](super::heap) profile and writes it as
//! `heap-YYYYMMDDTHHMMSS.ffffffZ.pb.gz` (UTC, microseconds) into the directory, keeping the
//! newest [`keep`](SignalDumps::keep) files. The signal handler itself does no more than
//! write a byte to [`signal_hook`]'s self-pipe, which wakes that thread: it never
//! allocates, takes a lock or touches the profile.
//!
//! - **Names sort by time.** Within one dumper they strictly increase: a dump stamped in the
//!   same microsecond as the previous one, or whose name is taken, is stamped a microsecond
//!   later. Files are written under a hidden temporary name and renamed into place, so a
//!   reader never sees half a file.
//! - **Pruning** touches only names of exactly that shape (and the `.svg` beside each), so
//!   the directory may hold other files.
//! - **Errors never stop the program.** A dump that fails (directory unwritable or removed
//!   and not re-creatable, disk full) is reported by one line on stderr,
//!   `memsentry: heap dump to DIR failed: REASON`; further failures stay quiet until a dump
//!   succeeds again. A removed directory is created again at the next dump.
//! - **Signals merge.** Signals that arrive while a dump is being taken are answered by one
//!   more dump, not one each (signals are not queued); [`SignalDumper::dumps_written`] tells
//!   when a dump is complete.
//!
//! # Limitations
//!
//! - After the dumper stops, the process keeps a handler for the signal that does nothing:
//!   a later signal is ignored rather than killing the process (`SIGUSR2`'s default action),
//!   because `signal-hook` does not restore the previous disposition.
//! - Names follow the wall clock: if it steps back across a restart, the new process's
//!   files sort before the old ones and are pruned first.

use std::fmt;
use std::fs;
use std::io::{self, Write};
use std::panic::{self, AssertUnwindSafe};
use std::path::{Path, PathBuf};
use std::process;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::thread::{self, JoinHandle};

use signal_hook::iterator::{Handle, Signals};

use super::{Profile, ProfileError, Symbolization};

pub(crate) mod store;
use store::{PPROF_SUFFIX, Store};

/// How many pprof files a dumper keeps unless told otherwise ([`SignalDumps::keep`]).
pub const DEFAULT_KEEP: usize = 10;

/// The name of the dumping thread.
const THREAD_NAME: &str = "memsentry-dumps";

/// Settings for signal-triggered heap dumps; [`start`](Self::start) installs them.
///
/// ```rust,standalone_crate
/// #[global_allocator]
/// static GLOBAL: memsentry::MemSentry = memsentry::MemSentry::new();
///
/// use memsentry::profile::dump::{DumpError, SignalDumps};
///
/// fn main() -> Result<(), DumpError> {
///     # let dir = std::env::temp_dir().join(format!("memsentry-doc-dumps-{}", std::process::id()));
///     # /*
///     let dir = "/var/lib/my-service/heap";
///     # */
///     // From now on `kill -USR2 <pid>` writes heap-<UTC time>.pb.gz into `dir`.
///     let dumps = SignalDumps::new(&dir).keep(5).start()?;
///     println!("heap profiles on SIGUSR2 into {}", dumps.dir().display());
///
///     // ... run the service; dropping `dumps` (or `dumps.stop()`) ends the dumps.
///     # drop(dumps);
///     # std::fs::remove_dir_all(&dir).ok();
///     Ok(())
/// }
/// ```
#[derive(Clone, Debug)]
#[must_use = "nothing is dumped until `start()`"]
pub struct SignalDumps {
    dir: PathBuf,
    signal: i32,
    keep: usize,
    symbolization: Symbolization,
    #[cfg(feature = "flamegraph")]
    svg: bool,
}

impl SignalDumps {
    /// Dumps into `dir` on `SIGUSR2`, keeping the newest [`DEFAULT_KEEP`] files.
    pub fn new(dir: impl Into<PathBuf>) -> SignalDumps {
        SignalDumps {
            dir: dir.into(),
            signal: libc::SIGUSR2,
            keep: DEFAULT_KEEP,
            symbolization: Symbolization::InProcess,
            #[cfg(feature = "flamegraph")]
            svg: false,
        }
    }

    /// The signal that triggers a dump (default `libc::SIGUSR2`). Signals `signal-hook`
    /// refuses to handle (`SIGKILL`, `SIGSTOP`, `SIGILL`, `SIGFPE`, `SIGSEGV`) make
    /// [`start`](Self::start) fail.
    pub fn signal(mut self, signal: i32) -> SignalDumps {
        self.signal = signal;
        self
    }

    /// How many pprof files to keep (default [`DEFAULT_KEEP`]): after each dump the oldest
    /// are removed. 0 makes [`start`](Self::start) fail; `usize::MAX` keeps every file.
    pub fn keep(mut self, files: usize) -> SignalDumps {
        self.keep = files;
        self
    }

    /// How the dumps are symbolized (default [`Symbolization::InProcess`]):
    /// [`Symbolization::Offline`] makes each dump cheaper and leaves symbolization to
    /// `go tool pprof BINARY FILE` (see `BENCHMARKS.md` for both costs). A flame graph
    /// ([`svg`](Self::svg)) of an offline dump shows addresses.
    pub fn symbolization(mut self, symbolization: Symbolization) -> SignalDumps {
        self.symbolization = symbolization;
        self
    }

    /// Also writes an in-use-space flame graph, `heap-….svg`, beside each pprof file
    /// (default off); it is removed together with its pprof file.
    #[cfg(feature = "flamegraph")]
    #[cfg_attr(docsrs, doc(cfg(feature = "flamegraph")))]
    pub fn svg(mut self, enabled: bool) -> SignalDumps {
        self.svg = enabled;
        self
    }

    /// Creates the directory if it is missing, checks that a file can be created in it,
    /// registers the signal handler and starts the dumping thread.
    ///
    /// # Errors
    ///
    /// [`DumpError::Keep`] if [`keep`](Self::keep) is 0; [`DumpError::ForbiddenSignal`] or
    /// [`DumpError::Signal`] if the signal cannot be handled; [`DumpError::Directory`],
    /// naming the directory, if it cannot be created or written; [`DumpError::Thread`] if
    /// the thread cannot be spawned. Nothing stays registered after an error.
    pub fn start(self) -> Result<SignalDumper, DumpError> {
        if self.keep == 0 {
            return Err(DumpError::Keep);
        }
        if signal_hook::consts::FORBIDDEN.contains(&self.signal) {
            return Err(DumpError::ForbiddenSignal {
                signal: self.signal,
            });
        }
        check_directory(&self.dir).map_err(|source| DumpError::Directory {
            path: self.dir.clone(),
            source,
        })?;
        let signals = Signals::new([self.signal]).map_err(|source| DumpError::Signal {
            signal: self.signal,
            source,
        })?;
        let handle = signals.handle();
        let counts = Arc::new(Counts::default());
        let worker = Worker {
            store: Store::new(self.dir.clone(), self.keep, u64::MAX),
            symbolization: self.symbolization,
            #[cfg(feature = "flamegraph")]
            svg: self.svg,
            failing: false,
            counts: Arc::clone(&counts),
        };
        // On failure the closure, and with it `signals`, is dropped: that unregisters it.
        let thread = thread::Builder::new()
            .name(THREAD_NAME.to_owned())
            .spawn(move || worker.run(signals))
            .map_err(|source| DumpError::Thread { source })?;
        Ok(SignalDumper {
            dir: self.dir,
            signal: self.signal,
            keep: self.keep,
            counts,
            handle,
            thread: Some(thread),
        })
    }
}

/// Creates `dir` if it is missing and checks that a file can be created in it, so a wrong
/// path is found at start rather than when someone first asks for a profile.
pub(crate) fn check_directory(dir: &Path) -> io::Result<()> {
    fs::create_dir_all(dir)?;
    let probe = dir.join(format!(".memsentry-probe-{}", process::id()));
    fs::OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .open(&probe)?;
    match fs::remove_file(&probe) {
        // Another dumper of this process starting on the same directory removed it.
        Err(error) if error.kind() == io::ErrorKind::NotFound => Ok(()),
        result => result,
    }
}

/// Signal-triggered heap dumps at work: see the [module docs](self). Dropping it (or
/// [`stop`](Self::stop)) unregisters the handler and ends the thread.
#[must_use = "dropping the SignalDumper stops the dumps"]
pub struct SignalDumper {
    dir: PathBuf,
    signal: i32,
    keep: usize,
    counts: Arc<Counts>,
    handle: Handle,
    thread: Option<JoinHandle<()>>,
}

impl SignalDumper {
    /// The directory the dumps go to.
    #[must_use]
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// Dumps completed so far: written, renamed into place, older files pruned.
    #[must_use]
    pub fn dumps_written(&self) -> u64 {
        self.counts.written.load(Ordering::Acquire)
    }

    /// Dumps that failed so far (only the first of a run of failures is reported on
    /// stderr).
    #[must_use]
    pub fn dumps_failed(&self) -> u64 {
        self.counts.failed.load(Ordering::Acquire)
    }

    /// Unregisters the handler and ends the thread, after the dump in progress, if any.
    pub fn stop(self) {
        drop(self);
    }
}

impl Drop for SignalDumper {
    fn drop(&mut self) {
        self.handle.close();
        if let Some(thread) = self.thread.take() {
            // The worker catches its own panics; nothing to report if it did not.
            let _ = thread.join();
        }
    }
}

impl fmt::Debug for SignalDumper {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SignalDumper")
            .field("dir", &self.dir)
            .field("signal", &self.signal)
            .field("keep", &self.keep)
            .field("dumps_written", &self.dumps_written())
            .field("dumps_failed", &self.dumps_failed())
            .finish_non_exhaustive()
    }
}

/// Signal-triggered dumps could not be started.
#[derive(Debug)]
#[non_exhaustive]
pub enum DumpError {
    /// [`SignalDumps::keep`] was 0.
    Keep,
    /// `signal-hook` refuses to handle this signal (`SIGKILL`, `SIGSTOP`, `SIGILL`,
    /// `SIGFPE`, `SIGSEGV`).
    ForbiddenSignal {
        /// The signal.
        signal: i32,
    },
    /// Registering the handler failed (for instance, not a valid signal number).
    Signal {
        /// The signal.
        signal: i32,
        /// Why.
        source: io::Error,
    },
    /// The directory could not be created, or a file could not be created in it.
    Directory {
        /// The directory.
        path: PathBuf,
        /// Why.
        source: io::Error,
    },
    /// The dumping thread could not be spawned.
    Thread {
        /// Why.
        source: io::Error,
    },
}

impl fmt::Display for DumpError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            DumpError::Keep => f.write_str("heap dumps must keep at least one file"),
            DumpError::ForbiddenSignal { signal } => {
                write!(f, "signal {signal} cannot trigger heap dumps")
            }
            DumpError::Signal { signal, source } => {
                write!(f, "cannot handle signal {signal}: {source}")
            }
            DumpError::Directory { path, source } => {
                write!(f, "cannot use {} for heap dumps: {source}", path.display())
            }
            DumpError::Thread { source } => {
                write!(f, "cannot spawn the {THREAD_NAME} thread: {source}")
            }
        }
    }
}

impl std::error::Error for DumpError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match self {
            DumpError::Keep | DumpError::ForbiddenSignal { .. } => None,
            DumpError::Signal { source, .. }
            | DumpError::Directory { source, .. }
            | DumpError::Thread { source } => Some(source),
        }
    }
}

#[derive(Debug, Default)]
struct Counts {
    written: AtomicU64,
    failed: AtomicU64,
}

/// Why one dump failed: the text after "failed: " on stderr.
#[derive(Debug)]
enum Failure {
    /// Creating the directory (again) failed.
    Directory(io::Error),
    /// Writing or renaming a file.
    Write(ProfileError),
    /// Listing the directory or removing an old file.
    Prune(store::PruneError),
    /// Taking or writing the profile panicked (a bug; the panic hook has printed it).
    Panicked,
}

impl fmt::Display for Failure {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Failure::Directory(source) => write!(f, "cannot create the directory: {source}"),
            Failure::Write(error) => error.fmt(f),
            Failure::Prune(error) => error.fmt(f),
            Failure::Panicked => f.write_str("taking the profile panicked"),
        }
    }
}

impl From<ProfileError> for Failure {
    fn from(error: ProfileError) -> Failure {
        Failure::Write(error)
    }
}

/// The dumping thread's state.
struct Worker {
    store: Store,
    symbolization: Symbolization,
    #[cfg(feature = "flamegraph")]
    svg: bool,
    /// Whether the last dump failed: its failure was reported, later ones stay quiet.
    failing: bool,
    counts: Arc<Counts>,
}

impl Worker {
    /// One dump per wake-up until the handle is closed; dropping `signals` unregisters.
    fn run(mut self, mut signals: Signals) {
        for _signal in signals.forever() {
            let result = panic::catch_unwind(AssertUnwindSafe(|| self.dump()))
                .unwrap_or(Err(Failure::Panicked));
            self.record(result, &mut io::stderr().lock());
        }
    }

    /// Counts the result; reports a failure that follows a success (or comes first).
    fn record(&mut self, result: Result<(), Failure>, stderr: &mut dyn Write) {
        match result {
            Ok(()) => {
                self.failing = false;
                self.counts.written.fetch_add(1, Ordering::Release);
            }
            Err(failure) => {
                self.counts.failed.fetch_add(1, Ordering::Release);
                if !self.failing {
                    self.failing = true;
                    // Nowhere left to report a failing stderr to.
                    let _ = writeln!(
                        stderr,
                        "memsentry: heap dump to {} failed: {failure}",
                        self.store.dir().display()
                    );
                }
            }
        }
    }

    fn dump(&mut self) -> Result<(), Failure> {
        let profile = super::heap_with(self.symbolization);
        fs::create_dir_all(self.store.dir()).map_err(Failure::Directory)?;
        let stem = self.store.next_stem(profile.taken_at(), None);
        self.store
            .write(&stem, PPROF_SUFFIX, |tmp| profile.write_pprof(tmp))?;
        let svg = self.write_svg(&profile, &stem);
        // Prune even if the flame graph failed: the limit holds for the pprof files.
        let pruned = self.store.prune().map_err(Failure::Prune);
        svg?;
        pruned
    }

    #[cfg(feature = "flamegraph")]
    fn write_svg(&self, profile: &Profile, stem: &str) -> Result<(), Failure> {
        if !self.svg {
            return Ok(());
        }
        self.store.write(stem, store::SVG_SUFFIX, |tmp| {
            profile.write_flamegraph(tmp, super::SampleType::InuseSpace)
        })?;
        Ok(())
    }

    #[cfg(not(feature = "flamegraph"))]
    fn write_svg(&self, _profile: &Profile, _stem: &str) -> Result<(), Failure> {
        Ok(())
    }
}

#[cfg(test)]
mod tests;
