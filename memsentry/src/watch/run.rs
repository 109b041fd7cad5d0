//! **[C]** The watchdog thread: the tick, the triggers' gates, the actions.

use std::collections::HashMap;
use std::fs::File;
use std::io::{self, Write};
use std::os::fd::{AsRawFd, FromRawFd};
use std::panic::{self, AssertUnwindSafe};
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant, SystemTime};

use super::cgroup::{Cgroup, MemoryEvents};
use super::psi::Psi;
use super::status::{TriggerCount, WatchStatus, WindowStatus};
use super::trend::{Fitter, Point, Series, time_to_limit};
use super::{Pressure, Trigger, WatchError, WatchEvent, Watchdog, WatchdogHandle};
use crate::profile::dump::store::{self, DIFF_SUFFIX, PPROF_SUFFIX, SVG_SUFFIX, Store};
use crate::profile::{self, Profile};

/// Most points a series keeps: past that, the longest window is thinned (a point every
/// few ticks).
const MAX_SERIES: usize = 4096;
/// A tick later than this share of the interval counts as late.
const LATE_SHARE: f64 = 0.5;

/// What the watchdog thread and its handle (and the endpoint) share.
#[derive(Debug)]
pub(super) struct Shared {
    pub(super) dir: Option<PathBuf>,
    status: Mutex<WatchStatus>,
    stopping: AtomicBool,
    /// The write end of the pipe the thread waits on: a byte wakes it to stop.
    wake: File,
}

impl Shared {
    pub(super) fn status(&self) -> WatchStatus {
        self.status
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .clone()
    }

    pub(super) fn stop(&self) {
        self.stopping.store(true, Ordering::Release);
        // A full pipe already wakes the thread.
        let _ = (&self.wake).write(&[1]);
    }
}

static CURRENT: Mutex<Option<Arc<Shared>>> = Mutex::new(None);

pub(super) fn current() -> Option<Arc<Shared>> {
    CURRENT
        .lock()
        .unwrap_or_else(PoisonError::into_inner)
        .clone()
}

pub(super) fn unregister(shared: &Arc<Shared>) {
    let mut current = CURRENT.lock().unwrap_or_else(PoisonError::into_inner);
    if current.as_ref().is_some_and(|c| Arc::ptr_eq(c, shared)) {
        *current = None;
    }
}

/// A pipe (read end, write end), both non-blocking and close-on-exec.
fn pipe() -> io::Result<(File, File)> {
    let mut fds = [0 as libc::c_int; 2];
    // SAFETY: `fds` is a valid array of two ints for pipe2 to fill.
    let result = unsafe { libc::pipe2(fds.as_mut_ptr(), libc::O_CLOEXEC | libc::O_NONBLOCK) };
    if result != 0 {
        return Err(io::Error::last_os_error());
    }
    // SAFETY: pipe2 succeeded, so both descriptors are open and owned by nobody else;
    // each `File` becomes their only owner.
    Ok(unsafe { (File::from_raw_fd(fds[0]), File::from_raw_fd(fds[1])) })
}

pub(super) fn start(settings: Watchdog) -> Result<WatchdogHandle, WatchError> {
    let mut current = CURRENT.lock().unwrap_or_else(PoisonError::into_inner);
    if current.is_some() {
        return Err(WatchError::Running);
    }
    let store = match &settings.dir {
        Some(dir) => {
            crate::profile::dump::check_directory(dir).map_err(|source| WatchError::Directory {
                path: dir.clone(),
                source,
            })?;
            warn_if_tmpfs(dir);
            Some(Store::new(dir.clone(), settings.keep, settings.max_bytes))
        }
        None => None,
    };
    let cgroup = Cgroup::find();
    if let (Some(store), Some(cgroup)) = (&store, &cgroup) {
        report_oom_since_last_dump(store.dir(), cgroup, &mut io::stderr());
    }
    let psi = match &settings.psi {
        Some(trigger) => Psi::arm(
            &cgroup.as_ref().map_or_else(
                || PathBuf::from("/proc/pressure/memory"),
                Cgroup::pressure_file,
            ),
            trigger,
        ),
        None => Psi::Off {
            why: "turned off".to_owned(),
        },
    };
    let (wake_read, wake_write) = pipe().map_err(|source| WatchError::Thread { source })?;
    let mut monitor = Monitor::new(settings, store, cgroup, psi);
    let shared = Arc::new(Shared {
        dir: monitor.store.as_ref().map(|s| s.dir().to_path_buf()),
        status: Mutex::new(monitor.status.clone()),
        stopping: AtomicBool::new(false),
        wake: wake_write,
    });
    monitor.shared = Some(Arc::clone(&shared));
    let thread = std::thread::Builder::new()
        .name("memsentry-watchdog".to_owned())
        .spawn(move || monitor.run(&wake_read))
        .map_err(|source| WatchError::Thread { source })?;
    *current = Some(Arc::clone(&shared));
    Ok(WatchdogHandle {
        shared,
        thread: Some(thread),
    })
}

/// Warns once when `dir` is on tmpfs: its pages are memory, charged to the cgroup.
fn warn_if_tmpfs(dir: &std::path::Path) {
    use std::os::unix::ffi::OsStrExt;
    let Ok(path) = std::ffi::CString::new(dir.as_os_str().as_bytes()) else {
        return;
    };
    // SAFETY: an all-zero `statfs` is a valid value of that plain C struct.
    let mut fs: libc::statfs = unsafe { std::mem::zeroed() };
    // SAFETY: `path` is NUL-terminated and `fs` is a valid, writable `statfs`.
    let result = unsafe { libc::statfs(path.as_ptr(), &mut fs) };
    if result == 0 && fs.f_type == libc::TMPFS_MAGIC {
        eprintln!(
            "memsentry: watchdog: warning: heap dumps go to {}, on tmpfs: they take memory, \
             charged to the same cgroup that is running out",
            dir.display()
        );
    }
}

/// Says once, on `out`, if the cgroup's OOM kill count rose since the newest dump's saved
/// `memory.events`.
pub(super) fn report_oom_since_last_dump(
    dir: &std::path::Path,
    cgroup: &Cgroup,
    out: &mut dyn Write,
) {
    let Ok(files) = store::list(dir) else {
        return;
    };
    let Some(saved) = files
        .iter()
        .rev()
        .find(|f| f.name.ends_with(".memory.events"))
    else {
        return;
    };
    let Ok(text) = std::fs::read_to_string(dir.join(&saved.name)) else {
        return;
    };
    let before = super::cgroup::parse_events(&text).oom_kill;
    let now = cgroup.read().events.oom_kill;
    if now > before {
        let stem = saved.name.trim_end_matches(".memory.events");
        let _ = writeln!(
            out,
            "memsentry: watchdog: the OOM killer ran in {} since the last heap dump \
             (oom_kill {before} -> {now}); the last dump is {}",
            cgroup.describe(),
            dir.join(format!("{stem}{PPROF_SUFFIX}")).display()
        );
    }
}

/// A level trigger's hysteresis and cooldown.
#[derive(Clone, Copy, Debug, Default)]
pub(super) struct Gate {
    pub(super) active: bool,
    /// Active, but the cooldown held the firing back.
    pending: bool,
    last_fired: Option<Instant>,
    /// Since when the exit condition has held, while active.
    clear_since: Option<Instant>,
    pub(super) fired: u64,
}

impl Gate {
    /// A level trigger: `enter` starts an episode, `exit` held for `settle` ends it; fires
    /// once an episode, when the cooldown allows.
    pub(super) fn level(
        &mut self,
        enter: bool,
        exit: bool,
        now: Instant,
        cooldown: Duration,
        settle: Duration,
    ) -> bool {
        if self.active && exit {
            let since = *self.clear_since.get_or_insert(now);
            if now.saturating_duration_since(since) >= settle {
                self.active = false;
                self.pending = false;
                self.clear_since = None;
            }
            return false;
        }
        self.clear_since = None;
        if !self.active && enter {
            self.active = true;
            self.pending = true;
        }
        self.try_fire(now, cooldown)
    }

    /// An event trigger: fires if the cooldown allows, else the event is dropped.
    pub(super) fn event(&mut self, happened: bool, now: Instant, cooldown: Duration) -> bool {
        self.pending = happened;
        let fired = self.try_fire(now, cooldown);
        self.pending = false;
        fired
    }

    fn try_fire(&mut self, now: Instant, cooldown: Duration) -> bool {
        let cooled = self
            .last_fired
            .is_none_or(|last| now.saturating_duration_since(last) >= cooldown);
        if self.pending && cooled {
            self.pending = false;
            self.last_fired = Some(now);
            self.fired += 1;
            true
        } else {
            false
        }
    }
}

/// The gate of `trigger`.
fn gate(gates: &mut [Gate; Trigger::ALL.len()], trigger: Trigger) -> &mut Gate {
    &mut gates[trigger.index()]
}

/// How a task's live count has moved.
#[derive(Clone, Copy, Debug)]
struct Rise {
    since: Instant,
    from: u64,
    last: u64,
}

/// The watchdog's state, owned by its thread.
#[derive(Debug)]
pub(super) struct Monitor {
    settings: Watchdog,
    started: Instant,
    store: Option<Store>,
    cgroup: Option<Cgroup>,
    psi: Psi,
    fitter: Fitter,
    live: Series,
    usage: Series,
    /// Push a point every `stride` ticks (long windows at short intervals).
    stride: u64,
    gates: [Gate; Trigger::ALL.len()],
    last_events: Option<MemoryEvents>,
    pressure: Option<Pressure>,
    pressure_called: Option<Instant>,
    psi_seen: Option<Instant>,
    tasks: HashMap<&'static str, Rise>,
    baseline: Option<(Instant, Profile)>,
    dump_failing: bool,
    pub(super) status: WatchStatus,
    shared: Option<Arc<Shared>>,
}

impl Monitor {
    pub(super) fn new(
        settings: Watchdog,
        store: Option<Store>,
        cgroup: Option<Cgroup>,
        psi: Psi,
    ) -> Monitor {
        let ticks = settings.longest_window().as_secs_f64() / settings.interval.as_secs_f64();
        let needed = ticks.ceil() as u64 + 2;
        let stride = needed.div_ceil(MAX_SERIES as u64).max(1);
        let capacity = usize::try_from(needed / stride + 2).unwrap_or(MAX_SERIES);
        let status = WatchStatus::new(&settings, cgroup.as_ref(), &psi, store.as_ref());
        Monitor {
            started: Instant::now(),
            store,
            cgroup,
            psi,
            fitter: Fitter::default(),
            live: Series::with_capacity(capacity),
            usage: Series::with_capacity(capacity),
            stride,
            gates: [Gate::default(); Trigger::ALL.len()],
            last_events: None,
            pressure: None,
            pressure_called: None,
            psi_seen: None,
            tasks: HashMap::new(),
            baseline: None,
            dump_failing: false,
            status,
            shared: None,
            settings,
        }
    }

    /// Ticks at once (the first reading, and the baseline for diffs), then on schedule
    /// until told to stop; a PSI event ticks at once.
    fn run(mut self, wake: &File) {
        let interval = self.settings.interval;
        let mut due = Instant::now();
        loop {
            let timeout = due.saturating_duration_since(Instant::now());
            let mut fds = [
                libc::pollfd {
                    fd: wake.as_raw_fd(),
                    events: libc::POLLIN,
                    revents: 0,
                },
                self.psi.pollfd().unwrap_or(libc::pollfd {
                    fd: -1,
                    events: 0,
                    revents: 0,
                }),
            ];
            let millis = libc::c_int::try_from(timeout.as_nanos().div_ceil(1_000_000))
                .unwrap_or(libc::c_int::MAX);
            // SAFETY: `fds` is a valid array of two pollfds (a negative fd is ignored).
            let ready = unsafe { libc::poll(fds.as_mut_ptr(), 2, millis) };
            if self.stopping() {
                return;
            }
            if ready > 0 && fds[1].revents != 0 && self.psi.on_poll(fds[1].revents) {
                self.psi_seen = Some(Instant::now());
                self.tick(Instant::now(), true);
                continue;
            }
            if Instant::now() < due {
                continue;
            }
            self.tick(Instant::now(), false);
            due += interval;
            let now = Instant::now();
            let late = now.saturating_duration_since(due);
            if late > interval.mul_f64(LATE_SHARE) {
                // The tick overran (a callback or handler blocked): the ticks it missed
                // are skipped, the next runs at once and counts as late.
                self.status.late_ticks += 1;
                self.publish_status();
                eprintln!(
                    "memsentry: watchdog: tick {:.3} s late (the one before, with its dump, \
                     callbacks and pressure handlers, took that long)",
                    late.as_secs_f64()
                );
                due = now;
            }
        }
    }

    fn stopping(&self) -> bool {
        self.shared
            .as_ref()
            .is_some_and(|s| s.stopping.load(Ordering::Acquire))
    }

    /// One reading and everything that follows from it.
    pub(super) fn tick(&mut self, now: Instant, psi_event: bool) {
        let t = now.saturating_duration_since(self.started).as_secs_f64();
        let live = crate::totals().live_bytes();
        let resident = crate::stats::process_resident_bytes();
        let reading = self.cgroup.as_ref().map(Cgroup::read).unwrap_or_default();
        // The user's limit is compared with the resident set; the cgroup's with its usage.
        let (usage, limit) = match self.settings.limit {
            Some(limit) => (resident, Some(limit)),
            None if reading.limit.is_some() => (reading.usage, reading.limit),
            None => (resident, None),
        };
        let tick = self.status.ticks;
        self.status.ticks += 1;
        if tick.is_multiple_of(self.stride) || psi_event {
            self.live.push(Point {
                t,
                value: live as f64,
            });
            if let Some(usage) = usage {
                self.usage.push(Point {
                    t,
                    value: usage as f64,
                });
            }
        }

        // Trends and the forecast.
        let mut windows = Vec::with_capacity(self.settings.windows.len());
        let mut forecast: Option<(Duration, f64, Duration)> = None;
        let mut longest_rising = false;
        let longest = self.settings.longest_window();
        for &window in &self.settings.windows {
            let live_trend = self.fitter.trend(&self.live, window);
            let usage_trend = self.fitter.trend(&self.usage, window);
            let rising_slope = [live_trend, usage_trend]
                .iter()
                .filter(|t| t.rising)
                .filter_map(|t| t.slope)
                .fold(None, |max: Option<f64>, s| {
                    Some(max.map_or(s, |m| m.max(s)))
                });
            let window_forecast = match (usage, limit, rising_slope) {
                (Some(usage), Some(limit), Some(slope)) => {
                    time_to_limit(usage as f64, limit as f64, slope)
                }
                _ => None,
            };
            if let (Some(ahead), Some(slope)) = (window_forecast, rising_slope)
                && forecast.is_none_or(|(best, _, _)| ahead < best)
            {
                forecast = Some((ahead, slope, window));
            }
            if window == longest {
                longest_rising = (live_trend.rising || usage_trend.rising)
                    && live_trend.span.max(usage_trend.span) >= window.as_secs_f64() * 0.9;
            }
            windows.push(WindowStatus {
                window,
                live_growth: live_trend.slope,
                live_rising: live_trend.rising,
                usage_growth: usage_trend.slope,
                usage_rising: usage_trend.rising,
                forecast: window_forecast,
            });
        }

        // The triggers.
        let cooldown = self.settings.cooldown;
        // An episode ends once its condition has been clear for the shortest window.
        let settle = self.settings.shortest_window();
        let events = self.cgroup.as_ref().map(|_| reading.events);
        let rose = |pick: fn(&MemoryEvents) -> u64| match (self.last_events, events) {
            (Some(before), Some(after)) => pick(&after) > pick(&before),
            _ => false,
        };
        let (high_rose, max_rose) = (rose(|e| e.high), rose(|e| e.max));
        self.last_events = events.or(self.last_events);
        let share = match (usage, limit) {
            (Some(usage), Some(limit)) if limit > 0 => Some(usage as f64 / limit as f64),
            _ => None,
        };
        let threshold = self.settings.forecast;
        let ahead = forecast.map(|(ahead, _, _)| ahead);
        let pre_oom = self.settings.pre_oom;
        let mut fired: Vec<(Trigger, Option<&'static str>)> = Vec::new();
        if gate(&mut self.gates, Trigger::MemoryMax).event(max_rose, now, cooldown) {
            fired.push((Trigger::MemoryMax, None));
        }
        if gate(&mut self.gates, Trigger::PreOom).level(
            share.is_some_and(|s| s >= pre_oom),
            share.is_none_or(|s| s < pre_oom - 0.05),
            now,
            cooldown,
            settle,
        ) {
            fired.push((Trigger::PreOom, None));
        }
        if gate(&mut self.gates, Trigger::Pressure).event(
            psi_event || self.psi.poll_average(),
            now,
            cooldown,
        ) {
            fired.push((Trigger::Pressure, None));
        }
        if !threshold.is_zero()
            && gate(&mut self.gates, Trigger::Forecast).level(
                ahead.is_some_and(|a| a < threshold),
                ahead.is_none_or(|a| a > threshold.mul_f64(1.5)),
                now,
                cooldown,
                settle,
            )
        {
            fired.push((Trigger::Forecast, None));
        }
        if gate(&mut self.gates, Trigger::MemoryHigh).event(high_rose, now, cooldown) {
            fired.push((Trigger::MemoryHigh, None));
        }
        if let Some(bound) = self.settings.live_bytes
            && gate(&mut self.gates, Trigger::LiveBytes).level(
                live >= bound,
                (live as f64) < bound as f64 * 0.95,
                now,
                cooldown,
                settle,
            )
        {
            fired.push((Trigger::LiveBytes, None));
        }
        if self.settings.growth
            && gate(&mut self.gates, Trigger::Growth).level(
                longest_rising,
                !longest_rising,
                now,
                cooldown,
                settle,
            )
        {
            fired.push((Trigger::Growth, None));
        }
        if self.settings.task_leaks {
            let leaking = self.leaking_task(now, longest);
            if gate(&mut self.gates, Trigger::TaskLeak).level(
                leaking.is_some(),
                leaking.is_none(),
                now,
                cooldown,
                settle,
            ) {
                fired.push((Trigger::TaskLeak, leaking));
            }
        }

        // The pressure level, and its handlers when it rises.
        let recent_psi = self
            .psi_seen
            .is_some_and(|seen| now.saturating_duration_since(seen) <= self.settings.interval * 2);
        let level = if share.is_some_and(|s| s >= pre_oom) || max_rose {
            Some(Pressure::Critical)
        } else if ahead.is_some_and(|a| a < threshold)
            || share.is_some_and(|s| s >= pre_oom - 0.1)
            || high_rose
            || psi_event
            || recent_psi
        {
            Some(Pressure::Moderate)
        } else {
            None
        };
        let rising = level > self.pressure;
        let repeat = level.is_some()
            && self
                .pressure_called
                .is_some_and(|at| now.saturating_duration_since(at) >= cooldown);
        self.pressure = level;

        // Update the status before the actions, so callbacks can read it.
        self.status.at = Some(SystemTime::now());
        self.status.live_bytes = live;
        self.status.resident_bytes = resident;
        self.status.usage_bytes = usage;
        self.status.limit_bytes = limit;
        self.status.windows = windows;
        self.status.forecast = ahead;
        self.status.pressure = level;
        self.status.events = events;
        self.status.psi = self.psi.describe();
        for (count, gate) in self.status.triggers.iter_mut().zip(&self.gates) {
            *count = TriggerCount {
                trigger: count.trigger,
                fired: gate.fired,
                active: gate.active,
            };
        }
        self.publish_status();

        if let Some(level) = level
            && (rising || repeat)
        {
            self.pressure_called = Some(now);
            self.call_pressure_handlers(level);
            if level == Pressure::Critical && self.settings.release_on_critical {
                let released = crate::release_memory();
                self.status.released_bytes += released.released_bytes();
            }
        }

        if fired.is_empty() {
            // A healthy tick: the baseline for diffs is refreshed now and then.
            let refresh = self.settings.longest_window().min(Duration::from_secs(300));
            if !self.gates.iter().any(|g| g.active)
                && self
                    .baseline
                    .as_ref()
                    .is_none_or(|(at, _)| now.saturating_duration_since(*at) >= refresh)
                && self.store.is_some()
            {
                self.baseline = Some((now, profile::heap()));
            }
        } else {
            let dump = self.dump(fired[0].0);
            for &(trigger, task) in &fired {
                let event = WatchEvent {
                    trigger,
                    at: SystemTime::now(),
                    usage_bytes: usage,
                    limit_bytes: limit,
                    live_bytes: live,
                    forecast: ahead,
                    growth: forecast.map(|(_, slope, window)| (slope, window)),
                    dump: dump.clone(),
                    task,
                };
                eprintln!("memsentry: watchdog: {event}");
                for callback in &self.settings.on_event {
                    let callback = Arc::clone(callback);
                    if panic::catch_unwind(AssertUnwindSafe(|| callback(&event))).is_err() {
                        self.status.handler_panics += 1;
                        eprintln!("memsentry: watchdog: an on_event callback panicked");
                    }
                }
            }
        }
        self.publish_status();
    }

    fn publish_status(&self) {
        if let Some(shared) = &self.shared {
            *shared.status.lock().unwrap_or_else(PoisonError::into_inner) = self.status.clone();
        }
    }

    fn call_pressure_handlers(&mut self, level: Pressure) {
        for handler in super::handlers_for(level) {
            if panic::catch_unwind(AssertUnwindSafe(|| handler(level))).is_err() {
                self.status.handler_panics += 1;
                eprintln!("memsentry: watchdog: a pressure handler panicked (level {level})");
            }
        }
    }

    /// A tracked task whose live instances rose, without a fall, for the longest window.
    fn leaking_task(&mut self, now: Instant, window: Duration) -> Option<&'static str> {
        let report = crate::task::report();
        let mut leaking = None;
        for row in report.rows() {
            let rise = self.tasks.entry(row.name).or_insert(Rise {
                since: now,
                from: row.live,
                last: row.live,
            });
            if row.live < rise.last {
                *rise = Rise {
                    since: now,
                    from: row.live,
                    last: row.live,
                };
            }
            rise.last = row.live;
            if rise.last > rise.from && now.saturating_duration_since(rise.since) >= window {
                leaking = leaking.or(Some(row.name));
            }
        }
        leaking
    }

    /// Writes the dump for `trigger`; its path, or `None` without a directory or on
    /// failure (reported once a run of failures, and counted).
    fn dump(&mut self, trigger: Trigger) -> Option<PathBuf> {
        let store = self.store.as_mut()?;
        let result = panic::catch_unwind(AssertUnwindSafe(|| {
            write_dump(
                store,
                trigger,
                self.baseline.as_ref().map(|(_, p)| p),
                self.cgroup.as_ref(),
                self.settings.svg,
            )
        }))
        .unwrap_or_else(|_| Err("taking the profile panicked".to_owned()));
        match result {
            Ok(path) => {
                self.dump_failing = false;
                self.status.dumps_written += 1;
                self.status.last_dump = Some(path.clone());
                self.status.last_dump_at = Some(SystemTime::now());
                Some(path)
            }
            Err(why) => {
                self.status.dump_errors += 1;
                if !self.dump_failing {
                    self.dump_failing = true;
                    eprintln!(
                        "memsentry: watchdog: heap dump to {} failed: {why}",
                        store.dir().display()
                    );
                }
                None
            }
        }
    }
}

/// The files of one dump; the pprof file's path.
fn write_dump(
    store: &mut Store,
    trigger: Trigger,
    baseline: Option<&Profile>,
    cgroup: Option<&Cgroup>,
    svg: bool,
) -> Result<PathBuf, String> {
    let heap = profile::heap();
    std::fs::create_dir_all(store.dir())
        .map_err(|e| format!("cannot create the directory: {e}"))?;
    let stem = store.next_stem(heap.taken_at(), Some(trigger.name()));
    let path = store
        .write(&stem, PPROF_SUFFIX, |tmp| heap.write_pprof(tmp))
        .map_err(|e| e.to_string())?;
    let mut problems = Vec::new();
    #[cfg(feature = "flamegraph")]
    if svg
        && let Err(error) = store.write(&stem, SVG_SUFFIX, |tmp| {
            heap.write_flamegraph(tmp, profile::SampleType::InuseSpace)
        })
    {
        problems.push(error.to_string());
    }
    #[cfg(not(feature = "flamegraph"))]
    let _ = (svg, SVG_SUFFIX);
    if let Some(base) = baseline {
        match heap.diff_rescaled(base) {
            Ok(diff) => {
                if let Err(error) = store.write(&stem, DIFF_SUFFIX, |tmp| diff.write_pprof(tmp)) {
                    problems.push(error.to_string());
                }
            }
            Err(error) => problems.push(format!("no diff: {error}")),
        }
    }
    if let Some(cgroup) = cgroup {
        for (suffix, source) in cgroup.evidence() {
            if let Ok(bytes) = std::fs::read(&source) {
                let written = store.write(&stem, suffix, |tmp| {
                    std::fs::write(tmp, &bytes).map_err(|source| {
                        crate::profile::ProfileError::Write {
                            path: tmp.to_path_buf(),
                            source,
                        }
                    })
                });
                if let Err(error) = written {
                    problems.push(error.to_string());
                }
            }
        }
    }
    if let Err(error) = store.prune() {
        problems.push(error.to_string());
    }
    match problems.first() {
        // The profile is there: the rest is reported but the dump counts.
        Some(problem) => {
            eprintln!(
                "memsentry: watchdog: heap dump {} incomplete: {problem}",
                path.display()
            );
            Ok(path)
        }
        None => Ok(path),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_level_gate_fires_once_an_episode_after_the_cooldown() {
        let t0 = Instant::now();
        let at = |s: u64| t0 + Duration::from_secs(s);
        let cooldown = Duration::from_secs(10);
        let settle = Duration::ZERO;
        let mut gate = Gate::default();
        assert!(gate.level(true, false, at(0), cooldown, settle));
        // Hovering at the threshold: neither entering again nor clearing.
        for s in 1..30 {
            assert!(!gate.level(s % 2 == 0, false, at(s), cooldown, settle));
        }
        // Cleared, and back within the cooldown: held back until it has passed.
        assert!(!gate.level(false, true, at(30), cooldown, settle));
        let mut slow = gate;
        let minute = Duration::from_secs(60);
        assert!(!slow.level(true, false, at(31), minute, settle));
        assert!(!slow.level(true, false, at(59), minute, settle));
        assert!(
            slow.level(true, false, at(60), minute, settle),
            "pending until cooled"
        );
        assert!(gate.level(true, false, at(31), cooldown, settle));
        assert_eq!(gate.fired, 2);
    }

    #[test]
    fn an_episode_ends_only_once_clear_for_the_settling_time() {
        let t0 = Instant::now();
        let at = |s: u64| t0 + Duration::from_secs(s);
        let (cooldown, settle) = (Duration::ZERO, Duration::from_secs(5));
        let mut gate = Gate::default();
        assert!(gate.level(true, false, at(0), cooldown, settle));
        // Flickering clear: the episode goes on, nothing fires again.
        for s in 1..20 {
            let clear = s % 3 != 0;
            assert!(!gate.level(!clear, clear, at(s), cooldown, settle), "{s}");
        }
        // Clear for 5 s: over; the next rise fires.
        for s in 20..=25 {
            assert!(!gate.level(false, true, at(s), cooldown, settle));
        }
        assert!(!gate.active);
        assert!(gate.level(true, false, at(26), cooldown, settle));
    }

    #[test]
    fn an_event_gate_drops_events_within_the_cooldown() {
        let t0 = Instant::now();
        let cooldown = Duration::from_secs(5);
        let mut gate = Gate::default();
        assert!(gate.event(true, t0, cooldown));
        assert!(!gate.event(true, t0 + Duration::from_secs(1), cooldown));
        assert!(!gate.event(false, t0 + Duration::from_secs(6), cooldown));
        assert!(gate.event(true, t0 + Duration::from_secs(7), cooldown));
        assert_eq!(gate.fired, 2);
    }
}
