//! A watchdog that acts before memory runs out: growth trends, a time-to-limit forecast,
//! heap dumps taken automatically, and pressure callbacks for code that holds caches.
//!
//! Opt-in and self-contained: no Prometheus needed. [`Watchdog::start`] runs one thread,
//! `memsentry-watchdog`, that ticks every [`interval`](Watchdog::interval) (1 s) and reads
//! the live heap ([`totals`](crate::totals)), the process's resident set and, where the
//! process is in a memory cgroup, the cgroup's usage, limit and event counters (see
//! below). Nothing on the allocation path changes.
//!
//! # What it computes
//!
//! For each sliding [window](Watchdog::windows) (1, 5 and 15 minutes by default) the
//! growth of live bytes and of *usage* (the cgroup's `memory.current` when the limit is
//! the cgroup's, the resident set otherwise), as a Theil–Sen slope: the median of the
//! slopes between pairs of points, which one burst cannot move. A window is *rising* when
//! its slope, and the slopes of both its halves, are positive and the rise stands out of
//! the noise; only a rising window forecasts. The **time to limit** is the headroom
//! (limit − usage) over the steepest rising slope (of live bytes or usage) in any window:
//! live bytes are what a leak grows, usage is what the kernel compares with the limit. A
//! flat or falling series has no forecast.
//!
//! # Triggers
//!
//! | trigger | fires when | default |
//! |---|---|---|
//! | [`Trigger::Forecast`] | time to limit under [`forecast`](Watchdog::forecast) | 15 min |
//! | [`Trigger::PreOom`] | usage over [`pre_oom`](Watchdog::pre_oom) of the limit | 90% |
//! | [`Trigger::LiveBytes`] | live bytes over [`live_bytes`](Watchdog::live_bytes) | off |
//! | [`Trigger::Growth`] | the longest window full and rising | on |
//! | [`Trigger::Pressure`] | a PSI memory-pressure event (see [`psi_trigger`](Watchdog::psi_trigger)) | on where the kernel has PSI |
//! | [`Trigger::MemoryHigh`] | the cgroup's `memory.events` `high` counter rose | on (cgroup v2) |
//! | [`Trigger::MemoryMax`] | the cgroup hit its limit (`max`; v1 `memory.failcnt`) | on |
//! | [`Trigger::TaskLeak`] | a [tracked](crate::task) task's live instances rose without a fall for the longest window | off |
//!
//! Level triggers (forecast, pre-OOM, live bytes, growth, task leak) fire once when their
//! condition starts to hold, and again only after it has cleared by a margin (hysteresis:
//! the forecast back over 1.5 times its threshold or gone, usage 5 points under its share,
//! live bytes 5% under), stayed clear for the shortest window, and the
//! [cooldown](Watchdog::cooldown) (5 min) has passed: a value hovering at a threshold
//! does not fire every tick. Event triggers (pressure, high,
//! max) fire at most once per cooldown.
//!
//! # What a trigger does
//!
//! - With a [directory](Watchdog::dir), a **heap dump**: the [heap profile](crate::profile::heap)
//!   as `heap-<UTC time>-<reason>.pb.gz`, its in-use flame graph (`.svg`, with the
//!   `flamegraph` feature), a diff against the baseline profile (`.diff.pb.gz`: the
//!   profile taken at start, refreshed while no trigger is active) and the cgroup's
//!   `memory.stat` and `memory.events` (`.memory.stat`, `.memory.events`). Written on the
//!   watchdog's thread, each file through a temporary name then renamed. At most
//!   [`keep`](Watchdog::keep) dumps (10) and [`max_bytes`](Watchdog::max_bytes) (256 MiB)
//!   stay, oldest removed first. A failing dump (directory gone and not re-creatable,
//!   disk full) prints one line on stderr and counts in
//!   [`WatchStatus::dump_errors`]; the watchdog goes on.
//! - One line on **stderr**:
//!   `memsentry: watchdog: forecast: limit 256.0 MiB in 41 s (+4.9 MiB/s over 5s); usage 52.3 MiB (20%), live 49.1 MiB; heap dump /var/lib/svc/heap-20261204T101502.000000Z-forecast.pb.gz`
//! - The [`on_event`](Watchdog::on_event) callbacks, with a [`WatchEvent`].
//! - **Pressure subscribers** ([`on_pressure`]): a rising [`Pressure`] level calls the
//!   handlers registered for it, so caches can shed memory: the Rust answer to a garbage
//!   collector that works harder near its soft limit. With
//!   [`release_on_critical`](Watchdog::release_on_critical), critical pressure also calls
//!   [`release_memory`](crate::release_memory).
//!
//! Callbacks and handlers run on the watchdog thread, outside the allocator. One that
//! panics is reported on stderr and counted ([`WatchStatus::handler_panics`]); one that
//! blocks delays the next tick, which is then counted late
//! ([`WatchStatus::late_ticks`]) and the ticks after it keep their schedule.
//!
//! # The cgroup
//!
//! cgroup v2: `memory.current`, `memory.max`, `memory.events`, `memory.pressure`; v1:
//! `memory.usage_in_bytes`, `memory.limit_in_bytes`, `memory.failcnt`,
//! `memory.oom_control`, and the system's `/proc/pressure/memory`. Of the process's cgroup
//! and its ancestors, the one with the smallest limit is read. systemd's
//! `$MEMORY_PRESSURE_WATCH` and `$MEMORY_PRESSURE_WRITE` are honoured. At start, if the
//! cgroup's `oom_kill` count is higher than the one saved beside the newest dump, one line
//! on stderr says the OOM killer ran since, and names that dump. A dump directory on
//! `tmpfs` gets a warning at start: its pages are charged to memory, often to the very
//! cgroup that is running out.
//!
//! # Configuration from the environment
//!
//! [`Watchdog::env`] applies `MEMSENTRY_WATCH`, a comma-separated list of `key=value`:
//! `dir=/var/lib/svc/heap,limit=2GiB,interval=1s,windows=1m/5m/15m,forecast=15m,pre-oom=90,live=1GiB,cooldown=5m,keep=10,max-bytes=256MiB,growth=on,psi=on,task-leaks=off,release=off`.
//! Durations take `ms`, `s`, `m`, `h`; sizes `B`, `KiB`, `MiB`, `GiB`. A key or value it
//! does not understand gets one warning on stderr and the setting keeps its default.
//!
//! ```rust,standalone_crate
//! #[global_allocator]
//! static GLOBAL: memsentry::MemSentry = memsentry::MemSentry::new();
//!
//! use std::time::Duration;
//! use memsentry::watch::{Pressure, Watchdog};
//!
//! fn main() -> Result<(), memsentry::watch::WatchError> {
//!     # let dir = std::env::temp_dir().join(format!("memsentry-doc-watch-{}", std::process::id()));
//!     # /*
//!     let dir = "/var/lib/my-service/heap";
//!     # */
//!     // A cache that empties itself under pressure.
//!     let cache = std::sync::Arc::new(std::sync::Mutex::new(Vec::<Vec<u8>>::new()));
//!     let shed = std::sync::Arc::clone(&cache);
//!     let _subscription = memsentry::watch::on_pressure(Pressure::Moderate, move |_level| {
//!         shed.lock().unwrap().clear();
//!     });
//!
//!     let watchdog = Watchdog::new()
//!         .dir(&dir)
//!         .on_event(|event| eprintln!("memory alert: {event}"))
//!         .env() // MEMSENTRY_WATCH overrides the settings above
//!         .start()?;
//!     std::thread::sleep(Duration::from_millis(50));
//!     let status = watchdog.status();
//!     assert!(status.live_bytes > 0);
//!     println!("{status}");
//!     watchdog.stop();
//!     # std::fs::remove_dir_all(&dir).ok();
//!     Ok(())
//! }
//! ```

mod cgroup;
mod env;
pub(crate) mod metrics;
mod psi;
mod run;
mod status;
pub(crate) mod trend;

use std::fmt;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, SystemTime};

pub use cgroup::MemoryEvents;
pub use psi::DEFAULT_TRIGGER as DEFAULT_PSI_TRIGGER;
pub use status::{TriggerCount, WatchStatus, WindowStatus};

use crate::Bytes;

/// The default [`Watchdog::interval`].
pub const DEFAULT_INTERVAL: Duration = Duration::from_secs(1);
/// The default [`Watchdog::windows`]: 1, 5 and 15 minutes.
pub const DEFAULT_WINDOWS: [Duration; 3] = [
    Duration::from_secs(60),
    Duration::from_secs(300),
    Duration::from_secs(900),
];
/// The default [`Watchdog::forecast`]: warn 15 minutes ahead.
pub const DEFAULT_FORECAST: Duration = Duration::from_secs(900);
/// The default [`Watchdog::pre_oom`] share of the limit.
pub const DEFAULT_PRE_OOM: f64 = 0.9;
/// The default [`Watchdog::cooldown`].
pub const DEFAULT_COOLDOWN: Duration = Duration::from_secs(300);
/// The default [`Watchdog::keep`].
pub const DEFAULT_KEEP: usize = 10;
/// The default [`Watchdog::max_bytes`]: 256 MiB of dumps.
pub const DEFAULT_MAX_BYTES: u64 = 256 << 20;
/// The environment variable [`Watchdog::env`] reads.
pub const ENV_VAR: &str = "MEMSENTRY_WATCH";

/// Why a watchdog fired.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
#[non_exhaustive]
pub enum Trigger {
    /// The cgroup reached its limit (`memory.events` `max`, v1 `memory.failcnt`).
    MemoryMax,
    /// Usage is over the [`pre_oom`](Watchdog::pre_oom) share of the limit.
    PreOom,
    /// The kernel reported memory pressure (PSI).
    Pressure,
    /// The limit will be reached within [`forecast`](Watchdog::forecast) at the trend.
    Forecast,
    /// Usage went over the cgroup's soft limit (`memory.events` `high`).
    MemoryHigh,
    /// Live bytes are over [`live_bytes`](Watchdog::live_bytes).
    LiveBytes,
    /// Usage or live bytes grew over the whole longest window.
    Growth,
    /// A tracked task's live instances only rose over the longest window.
    TaskLeak,
}

impl Trigger {
    /// Every trigger, most urgent first.
    pub const ALL: [Trigger; 8] = [
        Trigger::MemoryMax,
        Trigger::PreOom,
        Trigger::Pressure,
        Trigger::Forecast,
        Trigger::MemoryHigh,
        Trigger::LiveBytes,
        Trigger::Growth,
        Trigger::TaskLeak,
    ];

    /// The short name used in dump file names, on stderr and as a metric label.
    #[must_use]
    pub fn name(self) -> &'static str {
        match self {
            Trigger::MemoryMax => "memory-max",
            Trigger::PreOom => "pre-oom",
            Trigger::Pressure => "pressure",
            Trigger::Forecast => "forecast",
            Trigger::MemoryHigh => "memory-high",
            Trigger::LiveBytes => "live-bytes",
            Trigger::Growth => "growth",
            Trigger::TaskLeak => "task-leak",
        }
    }

    fn index(self) -> usize {
        Trigger::ALL
            .iter()
            .position(|&t| t == self)
            .unwrap_or_default()
    }
}

impl fmt::Display for Trigger {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// How hard memory is pressed, as the watchdog tells [`on_pressure`] handlers.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
#[non_exhaustive]
pub enum Pressure {
    /// Trouble ahead: a forecast under its threshold, usage within 10 points of the
    /// pre-OOM share, the kernel's soft limit crossed, or PSI stalls.
    Moderate,
    /// Trouble now: usage over the pre-OOM share, or the cgroup hit its limit.
    Critical,
}

impl fmt::Display for Pressure {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Pressure::Moderate => "moderate",
            Pressure::Critical => "critical",
        })
    }
}

/// What the watchdog saw when a trigger fired; passed to [`Watchdog::on_event`]
/// callbacks. `Display` gives the stderr line's text.
#[derive(Clone, Debug)]
#[non_exhaustive]
pub struct WatchEvent {
    /// Why.
    pub trigger: Trigger,
    /// When.
    pub at: SystemTime,
    /// Usage: the cgroup's `memory.current` when the limit is the cgroup's, else the
    /// resident set.
    pub usage_bytes: Option<u64>,
    /// The limit (the user's, else the cgroup's).
    pub limit_bytes: Option<u64>,
    /// Live heap bytes.
    pub live_bytes: u64,
    /// Time until the limit at the current trend, if one is rising.
    pub forecast: Option<Duration>,
    /// The growth behind the forecast, bytes per second, and the window it was seen over.
    pub growth: Option<(f64, Duration)>,
    /// The heap dump written for it, if any.
    pub dump: Option<PathBuf>,
    /// For [`Trigger::TaskLeak`]: the task.
    pub task: Option<&'static str>,
}

impl fmt::Display for WatchEvent {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.trigger)?;
        if let Some(task) = self.task {
            write!(f, " ({task})")?;
        }
        match (self.limit_bytes, self.forecast) {
            (Some(limit), Some(forecast)) => {
                write!(f, ": limit {} in {}", Bytes(limit), Seconds(forecast))?;
            }
            (Some(limit), None) => write!(f, ": limit {}, no forecast", Bytes(limit))?,
            (None, _) => f.write_str(": no limit")?,
        }
        if let Some((rate, window)) = self.growth {
            write!(
                f,
                " (+{}/s over {})",
                Bytes(rate.max(0.0) as u64),
                Seconds(window)
            )?;
        }
        f.write_str(";")?;
        if let Some(usage) = self.usage_bytes {
            write!(f, " usage {}", Bytes(usage))?;
            if let Some(limit) = self.limit_bytes.filter(|&l| l > 0) {
                write!(f, " ({:.0}%)", usage as f64 / limit as f64 * 100.0)?;
            }
            f.write_str(",")?;
        }
        write!(f, " live {}", Bytes(self.live_bytes))?;
        if let Some(dump) = &self.dump {
            write!(f, "; heap dump {}", dump.display())?;
        }
        Ok(())
    }
}

/// A duration as a person reads it: `850ms`, `41s`, `12m30s`, `3h05m`.
struct Seconds(Duration);

impl fmt::Display for Seconds {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let secs = self.0.as_secs();
        if secs == 0 {
            write!(f, "{}ms", self.0.as_millis())
        } else if secs < 60 {
            write!(f, "{secs}s")
        } else if secs < 3600 {
            write!(f, "{}m{:02}s", secs / 60, secs % 60)
        } else {
            write!(f, "{}h{:02}m", secs / 3600, secs / 60 % 60)
        }
    }
}

type EventCallback = Arc<dyn Fn(&WatchEvent) + Send + Sync>;
type PressureHandler = Arc<dyn Fn(Pressure) + Send + Sync>;

/// A watchdog's settings; [`start`](Self::start) runs it. See the [module docs](self).
#[derive(Clone)]
#[must_use = "nothing is watched until `start()`"]
pub struct Watchdog {
    interval: Duration,
    windows: Vec<Duration>,
    limit: Option<u64>,
    forecast: Duration,
    pre_oom: f64,
    live_bytes: Option<u64>,
    growth: bool,
    psi: Option<String>,
    task_leaks: bool,
    cooldown: Duration,
    dir: Option<PathBuf>,
    keep: usize,
    max_bytes: u64,
    svg: bool,
    release_on_critical: bool,
    on_event: Vec<EventCallback>,
}

impl fmt::Debug for Watchdog {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Watchdog")
            .field("interval", &self.interval)
            .field("windows", &self.windows)
            .field("limit", &self.limit)
            .field("forecast", &self.forecast)
            .field("pre_oom", &self.pre_oom)
            .field("live_bytes", &self.live_bytes)
            .field("growth", &self.growth)
            .field("psi", &self.psi)
            .field("task_leaks", &self.task_leaks)
            .field("cooldown", &self.cooldown)
            .field("dir", &self.dir)
            .field("keep", &self.keep)
            .field("max_bytes", &self.max_bytes)
            .field("svg", &self.svg)
            .field("release_on_critical", &self.release_on_critical)
            .field("on_event", &self.on_event.len())
            .finish()
    }
}

impl Default for Watchdog {
    fn default() -> Self {
        Watchdog::new()
    }
}

impl Watchdog {
    /// The defaults: ticks every second, windows of 1, 5 and 15 minutes, the cgroup's
    /// limit, every default trigger, no dump directory (events and stderr lines only).
    pub fn new() -> Watchdog {
        Watchdog {
            interval: DEFAULT_INTERVAL,
            windows: DEFAULT_WINDOWS.to_vec(),
            limit: None,
            forecast: DEFAULT_FORECAST,
            pre_oom: DEFAULT_PRE_OOM,
            live_bytes: None,
            growth: true,
            psi: Some(psi::DEFAULT_TRIGGER.to_owned()),
            task_leaks: false,
            cooldown: DEFAULT_COOLDOWN,
            dir: None,
            keep: DEFAULT_KEEP,
            max_bytes: DEFAULT_MAX_BYTES,
            svg: cfg!(feature = "flamegraph"),
            release_on_critical: false,
            on_event: Vec::new(),
        }
    }

    /// How often to read (default 1 s; from 1 ms to 1 h, checked by `start`).
    pub fn interval(mut self, interval: Duration) -> Watchdog {
        self.interval = interval;
        self
    }

    /// The sliding windows growth is computed over (default 1, 5 and 15 minutes; 1 to 8
    /// windows, each at least 4 intervals, checked by `start`). The longest one is the
    /// [`Trigger::Growth`] and [`Trigger::TaskLeak`] window.
    pub fn windows(mut self, windows: impl IntoIterator<Item = Duration>) -> Watchdog {
        self.windows = windows.into_iter().collect();
        self
    }

    /// The limit to forecast against, in bytes, compared with the process's resident set
    /// (default: the cgroup's limit, compared with the cgroup's usage).
    pub fn limit(mut self, bytes: u64) -> Watchdog {
        self.limit = Some(bytes);
        self
    }

    /// Fire [`Trigger::Forecast`] when the limit is less than this far ahead (default 15
    /// minutes; zero turns the trigger off).
    pub fn forecast(mut self, ahead: Duration) -> Watchdog {
        self.forecast = ahead;
        self
    }

    /// Fire [`Trigger::PreOom`] when usage is over this share of the limit (default 0.9;
    /// in (0, 1], checked by `start`).
    pub fn pre_oom(mut self, share: f64) -> Watchdog {
        self.pre_oom = share;
        self
    }

    /// Fire [`Trigger::LiveBytes`] when live heap bytes go over this (default: off).
    pub fn live_bytes(mut self, bytes: u64) -> Watchdog {
        self.live_bytes = Some(bytes);
        self
    }

    /// Whether [`Trigger::Growth`] fires (default on).
    pub fn sustained_growth(mut self, enabled: bool) -> Watchdog {
        self.growth = enabled;
        self
    }

    /// Whether PSI memory pressure is watched (default on, where the kernel has it).
    pub fn psi(mut self, enabled: bool) -> Watchdog {
        self.psi = enabled.then(|| psi::DEFAULT_TRIGGER.to_owned());
        self
    }

    /// The PSI trigger to arm (default [`DEFAULT_PSI_TRIGGER`], `some 150000 1000000`:
    /// 150 ms of stall in 1 s; see `Documentation/accounting/psi.rst` in the kernel).
    /// systemd's `$MEMORY_PRESSURE_WRITE` takes precedence.
    pub fn psi_trigger(mut self, trigger: impl Into<String>) -> Watchdog {
        self.psi = Some(trigger.into());
        self
    }

    /// Whether [`Trigger::TaskLeak`] fires (default off).
    pub fn task_leaks(mut self, enabled: bool) -> Watchdog {
        self.task_leaks = enabled;
        self
    }

    /// The least time between two firings of one trigger (default 5 minutes).
    pub fn cooldown(mut self, cooldown: Duration) -> Watchdog {
        self.cooldown = cooldown;
        self
    }

    /// Writes a heap dump into `dir` for each firing (default: no dumps). Created if
    /// missing, by `start` and again before each dump.
    pub fn dir(mut self, dir: impl AsRef<Path>) -> Watchdog {
        self.dir = Some(dir.as_ref().to_path_buf());
        self
    }

    /// How many dumps stay in the directory (default 10; at least 1, checked by `start`).
    pub fn keep(mut self, dumps: usize) -> Watchdog {
        self.keep = dumps;
        self
    }

    /// How many bytes of dumps stay in the directory (default 256 MiB); the newest dump
    /// stays whatever its size.
    pub fn max_bytes(mut self, bytes: u64) -> Watchdog {
        self.max_bytes = bytes;
        self
    }

    /// Whether a dump includes the in-use flame graph (default on with the `flamegraph`
    /// feature, which it needs).
    pub fn svg(mut self, enabled: bool) -> Watchdog {
        self.svg = enabled && cfg!(feature = "flamegraph");
        self
    }

    /// Whether critical pressure calls [`release_memory`](crate::release_memory) (default
    /// off): jemalloc then returns its unused dirty pages at once instead of over its
    /// decay time.
    pub fn release_on_critical(mut self, enabled: bool) -> Watchdog {
        self.release_on_critical = enabled;
        self
    }

    /// Calls `callback` for every firing, on the watchdog thread, after the dump.
    pub fn on_event(mut self, callback: impl Fn(&WatchEvent) + Send + Sync + 'static) -> Watchdog {
        self.on_event.push(Arc::new(callback));
        self
    }

    /// Applies `MEMSENTRY_WATCH` (see the [module docs](self#configuration-from-the-environment));
    /// unchanged when it is not set.
    pub fn env(self) -> Watchdog {
        match std::env::var(ENV_VAR) {
            Ok(value) => env::apply(self, &value, &mut std::io::stderr()),
            Err(_) => self,
        }
    }

    /// Checks the settings, creates the directory, reads the cgroup, takes the baseline
    /// profile and starts the `memsentry-watchdog` thread.
    ///
    /// # Errors
    ///
    /// [`WatchError::Settings`] for an interval, window, share or keep out of range;
    /// [`WatchError::Running`] if a watchdog is already running in this process;
    /// [`WatchError::Directory`] if the directory cannot be created or written;
    /// [`WatchError::Thread`] if the thread cannot be spawned.
    pub fn start(self) -> Result<WatchdogHandle, WatchError> {
        self.check()?;
        run::start(self)
    }

    fn check(&self) -> Result<(), WatchError> {
        let bad = |what: String| Err(WatchError::Settings(what));
        if self.interval < Duration::from_millis(1) || self.interval > Duration::from_secs(3600) {
            return bad(format!(
                "interval {:?} is outside 1 ms to 1 h",
                self.interval
            ));
        }
        if self.windows.is_empty() || self.windows.len() > 8 {
            return bad(format!("{} windows: 1 to 8 are taken", self.windows.len()));
        }
        if let Some(short) = self.windows.iter().find(|w| **w < self.interval * 4) {
            return bad(format!(
                "window {short:?} is shorter than 4 intervals of {:?}",
                self.interval
            ));
        }
        if self.pre_oom.is_nan() || self.pre_oom <= 0.0 || self.pre_oom > 1.0 {
            return bad(format!("pre-OOM share {} is outside (0, 1]", self.pre_oom));
        }
        if self.keep == 0 {
            return bad("keep must be at least 1".to_owned());
        }
        Ok(())
    }

    fn shortest_window(&self) -> Duration {
        self.windows
            .iter()
            .copied()
            .min()
            .unwrap_or(DEFAULT_INTERVAL)
    }

    fn longest_window(&self) -> Duration {
        self.windows
            .iter()
            .copied()
            .max()
            .unwrap_or(DEFAULT_INTERVAL)
    }
}

/// A watchdog could not be started.
#[derive(Debug)]
#[non_exhaustive]
pub enum WatchError {
    /// A setting is out of range: which, and why.
    Settings(String),
    /// Another watchdog is running in this process (stop it first).
    Running,
    /// The dump directory could not be created, or a file could not be created in it.
    Directory {
        /// The directory.
        path: PathBuf,
        /// Why.
        source: std::io::Error,
    },
    /// The watchdog thread could not be spawned.
    Thread {
        /// Why.
        source: std::io::Error,
    },
}

impl fmt::Display for WatchError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            WatchError::Settings(what) => write!(f, "bad watchdog setting: {what}"),
            WatchError::Running => f.write_str("a memsentry watchdog is already running"),
            WatchError::Directory { path, source } => {
                write!(f, "cannot use {} for heap dumps: {source}", path.display())
            }
            WatchError::Thread { source } => {
                write!(f, "cannot spawn the watchdog thread: {source}")
            }
        }
    }
}

impl std::error::Error for WatchError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match self {
            WatchError::Settings(_) | WatchError::Running => None,
            WatchError::Directory { source, .. } | WatchError::Thread { source } => Some(source),
        }
    }
}

/// A running watchdog: see the [module docs](self). Dropping it (or
/// [`stop`](Self::stop)) ends the thread.
#[must_use = "dropping the WatchdogHandle stops the watchdog"]
pub struct WatchdogHandle {
    shared: Arc<run::Shared>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl WatchdogHandle {
    /// What the watchdog saw at its last tick.
    #[must_use]
    pub fn status(&self) -> WatchStatus {
        self.shared.status()
    }

    /// Stops the watchdog and waits for its thread (after the tick in progress).
    pub fn stop(self) {
        drop(self);
    }
}

impl Drop for WatchdogHandle {
    fn drop(&mut self) {
        self.shared.stop();
        if let Some(thread) = self.thread.take() {
            // The thread catches callbacks' panics; a panic of its own was printed.
            let _ = thread.join();
        }
        run::unregister(&self.shared);
    }
}

impl fmt::Debug for WatchdogHandle {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("WatchdogHandle").finish_non_exhaustive()
    }
}

/// A watchdog that ticks when told, on the caller's thread, with no dump directory and no
/// pressure watch: what one tick costs, for `benches/`. Not part of the API.
#[doc(hidden)]
#[derive(Debug)]
pub struct __Ticker(run::Monitor);

impl __Ticker {
    /// `settings` (their directory and PSI ignored), reading the process's cgroup.
    pub fn new(settings: Watchdog) -> __Ticker {
        let psi = psi::Psi::Off {
            why: "ticker".to_owned(),
        };
        __Ticker(run::Monitor::new(
            settings,
            None,
            cgroup::Cgroup::find(),
            psi,
        ))
    }

    /// One tick: read, fit every window, evaluate the triggers.
    pub fn tick(&mut self) {
        self.0.tick(std::time::Instant::now(), false);
    }
}

/// The running watchdog's status, if one runs in this process (for the HTTP endpoint
/// and the reporter).
#[must_use]
pub fn status() -> Option<WatchStatus> {
    run::current().map(|shared| shared.status())
}

/// The running watchdog's dump directory, if one runs and has one.
pub(crate) fn dump_dir() -> Option<PathBuf> {
    run::current().and_then(|shared| shared.dir.clone())
}

struct Subscriber {
    id: u64,
    level: Pressure,
    handler: PressureHandler,
}

static SUBSCRIBERS: Mutex<Vec<Subscriber>> = Mutex::new(Vec::new());

/// Calls `handler` on the watchdog thread when pressure rises to `level` or above (and
/// again after each [cooldown](Watchdog::cooldown) while it stays there), with the level
/// reached. Code that holds caches registers here and sheds memory when called. Dropping
/// the returned [`PressureSubscription`] unregisters the handler.
///
/// A handler that panics is reported on stderr and stays registered; one that blocks
/// delays the watchdog's next tick.
pub fn on_pressure(
    level: Pressure,
    handler: impl Fn(Pressure) + Send + Sync + 'static,
) -> PressureSubscription {
    static NEXT: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(1);
    let id = NEXT.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    SUBSCRIBERS
        .lock()
        .unwrap_or_else(PoisonError::into_inner)
        .push(Subscriber {
            id,
            level,
            handler: Arc::new(handler),
        });
    PressureSubscription { id }
}

/// The handlers for `level` (those registered at it or below), in registration order.
fn handlers_for(level: Pressure) -> Vec<PressureHandler> {
    SUBSCRIBERS
        .lock()
        .unwrap_or_else(PoisonError::into_inner)
        .iter()
        .filter(|s| s.level <= level)
        .map(|s| Arc::clone(&s.handler))
        .collect()
}

/// A registered pressure handler ([`on_pressure`]); dropping it unregisters the handler.
#[derive(Debug)]
#[must_use = "dropping the subscription unregisters the handler"]
pub struct PressureSubscription {
    id: u64,
}

impl Drop for PressureSubscription {
    fn drop(&mut self) {
        SUBSCRIBERS
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .retain(|s| s.id != self.id);
    }
}
