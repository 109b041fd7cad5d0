//! Publishing memsentry's figures through the [`metrics`] facade, on a ticker.
//!
//! memsentry starts nothing by itself. A [`Reporter`] reads a [`snapshot`](crate::snapshot)
//! every interval (1 s by default) and publishes it through `metrics`, so whatever
//! recorder the application installed (Prometheus, StatsD, OpenTelemetry, …) receives it.
//! [`crate::prometheus::install`] does both for Prometheus in one call.
//!
//! # Metrics
//!
//! Names follow Prometheus conventions: `memsentry_` prefix, base units, `_total` for
//! counters, `_bytes` for byte values. Counters are published as absolute values read
//! from memsentry's cumulative counts (`Counter::absolute`), so no increment is lost or
//! counted twice, whatever the interval.
//!
//! | name | type | unit | meaning |
//! |---|---|---|---|
//! | `memsentry_allocations_total{max_size}` | counter | | allocations (realloc counts as a free and an allocation) |
//! | `memsentry_frees_total{max_size}` | counter | | frees |
//! | `memsentry_allocated_bytes_total{max_size}` | counter | bytes | requested bytes allocated |
//! | `memsentry_freed_bytes_total{max_size}` | counter | bytes | requested bytes freed |
//! | `memsentry_live_bytes` | gauge | bytes | requested bytes allocated and not freed |
//! | `memsentry_live_objects` | gauge | | blocks allocated and not freed |
//! | `memsentry_failed_allocations_total` | counter | | allocations the inner allocator refused |
//! | `memsentry_jemalloc_{allocated,active,resident,mapped,retained,metadata}_bytes` | gauge | bytes | jemalloc's `stats.*` |
//! | `memsentry_jemalloc_{dirty,muzzy}_bytes` | gauge | bytes | jemalloc's dirty and muzzy pages, all arenas ([`JemallocStats::dirty`](crate::JemallocStats::dirty)) |
//! | `memsentry_jemalloc_{dirty,muzzy}_decay_seconds` | gauge | seconds | jemalloc's `arenas.*_decay_ms`, in seconds; -1: never purged |
//! | `memsentry_process_resident_bytes` | gauge | bytes | the process's resident set |
//! | `memsentry_memory_limit_bytes` | gauge | bytes | the cgroup memory limit ([`Snapshot::memory_limit_bytes`]); 0: none set |
//! | `memsentry_sampler_live_samples` | gauge | | sampled blocks still allocated |
//! | `memsentry_sampler_stacks` | gauge | | distinct call stacks sampled |
//! | `memsentry_sampler_memory_bytes` | gauge | bytes | memory the sampler holds (tables, placed samples' room) |
//! | `memsentry_sampler_rate_bytes` | gauge | bytes | the sampling rate (mean bytes between samples) |
//! | `memsentry_peak_inuse_bytes_estimate` | gauge | bytes | sampled live bytes at the high-water mark ([`crate::profile::peak`]) |
//! | `memsentry_peak_timestamp_seconds` | gauge | seconds | when that was; 0: none yet |
//! | `memsentry_tasks_live{task}` | gauge | | [tracked](crate::task) instances alive |
//! | `memsentry_tasks_started_total{task}` | counter | | instances started |
//! | `memsentry_tasks_finished_total{task}` | counter | | instances finished |
//! | `memsentry_tasks_cancelled_total{task}` | counter | | instances dropped before finishing |
//! | `memsentry_task_polls_total{task}` | counter | | polls |
//! | `memsentry_task_allocated_bytes_total{task}` | counter | bytes | bytes allocated while polled (exact) |
//! | `memsentry_task_freed_bytes_total{task}` | counter | bytes | bytes freed while polled (exact) |
//! | `memsentry_task_inuse_bytes_estimate{task}` | gauge | bytes | bytes the task allocated still in use (sampled estimate) |
//! | `memsentry_forecast_seconds_to_limit` | gauge | seconds | [watchdog](crate::watch): time until the memory limit at the current growth; NaN: no forecast |
//! | `memsentry_growth_bytes_per_second{series,window}` | gauge | bytes | watchdog: growth of `live` bytes or `usage` per window (`window="60s"`, …) |
//! | `memsentry_watchdog_triggers_total{trigger}` | counter | | watchdog trigger firings (`forecast`, `pre-oom`, …) |
//! | `memsentry_watchdog_dumps_total` | counter | | heap dumps the watchdog wrote |
//! | `memsentry_watchdog_dump_errors_total` | counter | | heap dumps that failed |
//! | `memsentry_watchdog_last_dump_timestamp_seconds` | gauge | seconds | Unix time of the last dump; 0: none |
//! | `memsentry_watchdog_late_ticks_total` | counter | | watchdog ticks that ran late |
//!
//! The watchdog's metrics are published only while a watchdog runs.
//!
//! `task` is bounded by [`crate::task::set_max_names`] (names past it are `other`).
//!
//! `max_size` is a bounded bucket of the block's size class, by upper bound in bytes:
//! `16`, `64`, `256`, `1024`, `4096`, `16384`, `65536`, `262144`, `1048576` and `+Inf`
//! (see [`SIZE_BUCKETS`]); ten series per counter, whatever the program allocates.
//! Sum over `max_size` for the totals. jemalloc's gauges are left out when its statistics
//! cannot be read, the resident set where `/proc` is missing.

use std::sync::{Arc, Condvar, Mutex, PoisonError};
use std::thread::JoinHandle;
use std::time::Duration;

use metrics::{Unit, counter, describe_counter, describe_gauge, gauge};

use crate::snapshot::{Counts, Snapshot};

/// Upper bounds of the `max_size` buckets, in bytes; the last bucket, `+Inf`, takes the
/// rest.
pub const SIZE_BUCKETS: [u64; 9] = [
    16,
    64,
    256,
    1 << 10,
    4 << 10,
    16 << 10,
    64 << 10,
    256 << 10,
    1 << 20,
];

/// The `max_size` label values, [`SIZE_BUCKETS`] then `+Inf`.
const BUCKET_LABELS: [&str; 10] = [
    "16", "64", "256", "1024", "4096", "16384", "65536", "262144", "1048576", "+Inf",
];

/// The bucket of a size class.
fn bucket(class_size: u64) -> usize {
    SIZE_BUCKETS
        .iter()
        .position(|&bound| class_size <= bound)
        .unwrap_or(SIZE_BUCKETS.len())
}

/// What one tick's gauges are read from.
struct Tick<'a> {
    snapshot: &'a Snapshot,
    sampler: crate::profile::SamplerUsage,
}

impl Tick<'_> {
    fn jemalloc(&self, field: fn(&crate::JemallocStats) -> u64) -> Option<f64> {
        self.snapshot.jemalloc.as_ref().map(|j| field(j) as f64)
    }
}

/// A gauge published every tick: its name, unit and help, and how to read it (`None`:
/// not published this tick).
struct GaugeSpec {
    name: &'static str,
    unit: Unit,
    help: &'static str,
    value: fn(&Tick<'_>) -> Option<f64>,
}

/// The gauges published every tick: the one place that names them.
const GAUGES: [GaugeSpec; 18] = [
    GaugeSpec {
        name: "memsentry_live_bytes",
        unit: Unit::Bytes,
        help: "Requested bytes allocated and not yet freed.",
        value: |t| Some(t.snapshot.totals.live_bytes() as f64),
    },
    GaugeSpec {
        name: "memsentry_live_objects",
        unit: Unit::Count,
        help: "Blocks allocated and not yet freed.",
        value: |t| Some(t.snapshot.totals.live_objects() as f64),
    },
    GaugeSpec {
        name: "memsentry_jemalloc_allocated_bytes",
        unit: Unit::Bytes,
        help: "jemalloc stats.allocated: bytes in blocks the application holds.",
        value: |t| t.jemalloc(|j| j.allocated),
    },
    GaugeSpec {
        name: "memsentry_jemalloc_active_bytes",
        unit: Unit::Bytes,
        help: "jemalloc stats.active: bytes in active pages.",
        value: |t| t.jemalloc(|j| j.active),
    },
    GaugeSpec {
        name: "memsentry_jemalloc_resident_bytes",
        unit: Unit::Bytes,
        help: "jemalloc stats.resident: bytes in physically resident data pages.",
        value: |t| t.jemalloc(|j| j.resident),
    },
    GaugeSpec {
        name: "memsentry_jemalloc_mapped_bytes",
        unit: Unit::Bytes,
        help: "jemalloc stats.mapped: bytes in active extents mapped by the allocator.",
        value: |t| t.jemalloc(|j| j.mapped),
    },
    GaugeSpec {
        name: "memsentry_jemalloc_retained_bytes",
        unit: Unit::Bytes,
        help: "jemalloc stats.retained: bytes in virtual memory retained, not returned to the OS.",
        value: |t| t.jemalloc(|j| j.retained),
    },
    GaugeSpec {
        name: "memsentry_jemalloc_metadata_bytes",
        unit: Unit::Bytes,
        help: "jemalloc stats.metadata: bytes of jemalloc's own metadata.",
        value: |t| t.jemalloc(|j| j.metadata),
    },
    GaugeSpec {
        name: "memsentry_jemalloc_dirty_bytes",
        unit: Unit::Bytes,
        help: "jemalloc stats.arenas.<all>.pdirty: bytes in freed pages kept resident for reuse, not yet purged.",
        value: |t| t.jemalloc(|j| j.dirty),
    },
    GaugeSpec {
        name: "memsentry_jemalloc_muzzy_bytes",
        unit: Unit::Bytes,
        help: "jemalloc stats.arenas.<all>.pmuzzy: bytes in pages purged lazily (MADV_FREE), reclaimable by the kernel.",
        value: |t| t.jemalloc(|j| j.muzzy),
    },
    GaugeSpec {
        name: "memsentry_jemalloc_dirty_decay_seconds",
        unit: Unit::Seconds,
        help: "jemalloc arenas.dirty_decay_ms in seconds: how long dirty pages wait before they are purged (-1: never).",
        value: |t| {
            t.snapshot
                .jemalloc
                .as_ref()
                .map(|j| match j.dirty_decay_ms {
                    -1 => -1.0,
                    ms => ms as f64 / 1000.0,
                })
        },
    },
    GaugeSpec {
        name: "memsentry_jemalloc_muzzy_decay_seconds",
        unit: Unit::Seconds,
        help: "jemalloc arenas.muzzy_decay_ms in seconds: how long muzzy pages wait before they are purged (-1: never).",
        value: |t| {
            t.snapshot
                .jemalloc
                .as_ref()
                .map(|j| match j.muzzy_decay_ms {
                    -1 => -1.0,
                    ms => ms as f64 / 1000.0,
                })
        },
    },
    GaugeSpec {
        name: "memsentry_process_resident_bytes",
        unit: Unit::Bytes,
        help: "The process's resident set size.",
        value: |t| t.snapshot.resident_bytes.map(|b| b as f64),
    },
    GaugeSpec {
        name: "memsentry_memory_limit_bytes",
        unit: Unit::Bytes,
        help: "The process's cgroup memory limit (the smallest on its cgroup path); 0: none set.",
        value: |t| Some(t.snapshot.memory_limit_bytes.unwrap_or(0) as f64),
    },
    GaugeSpec {
        name: "memsentry_sampler_live_samples",
        unit: Unit::Count,
        help: "Sampled blocks still allocated (records in the sampler's live table).",
        value: |t| Some(t.sampler.live_samples as f64),
    },
    GaugeSpec {
        name: "memsentry_sampler_stacks",
        unit: Unit::Count,
        help: "Distinct call stacks the sampler has seen.",
        value: |t| Some(t.sampler.stacks as f64),
    },
    GaugeSpec {
        name: "memsentry_sampler_memory_bytes",
        unit: Unit::Bytes,
        help: "Memory the sampler holds (its tables, and placed samples' room beyond their requests): the price of observation.",
        value: |t| Some(t.sampler.bytes as f64),
    },
    GaugeSpec {
        name: "memsentry_sampler_rate_bytes",
        unit: Unit::Bytes,
        help: "The sampling rate: mean bytes allocated between samples (0 = off).",
        value: |t| Some(t.sampler.sample_rate as f64),
    },
];

/// The peak-heap gauges: (name, unit, help), published with the others each tick.
const PEAK_GAUGES: [(&str, Unit, &str); 2] = [
    (
        "memsentry_peak_inuse_bytes_estimate",
        Unit::Bytes,
        "The sampled estimate of live bytes at the process's high-water mark (profile::peak).",
    ),
    (
        "memsentry_peak_timestamp_seconds",
        Unit::Seconds,
        "Unix time of that high-water mark; 0: none yet.",
    ),
];

/// Set by a [`Reporter`] when it starts, not every tick.
const INTERVAL_GAUGE: (&str, Unit, &str) = (
    "memsentry_reporter_interval_seconds",
    Unit::Seconds,
    "How often the reporter publishes.",
);

/// The per-bucket counters: (name, unit, help, value).
type CounterSpec = (&'static str, Unit, &'static str, fn(&Counts) -> u64);

const COUNTERS: [CounterSpec; 4] = [
    (
        "memsentry_allocations_total",
        Unit::Count,
        "Allocations, by size-class bucket (realloc counts as a free and an allocation).",
        |c| c.allocations,
    ),
    (
        "memsentry_frees_total",
        Unit::Count,
        "Frees, by size-class bucket.",
        |c| c.frees,
    ),
    (
        "memsentry_allocated_bytes_total",
        Unit::Bytes,
        "Requested bytes allocated, by size-class bucket.",
        |c| c.allocated_bytes,
    ),
    (
        "memsentry_freed_bytes_total",
        Unit::Bytes,
        "Requested bytes freed, by size-class bucket.",
        |c| c.freed_bytes,
    ),
];

const FAILED: &str = "memsentry_failed_allocations_total";

/// The per-task metrics: (name, unit, help, is a counter).
const TASK_METRICS: [(&str, Unit, &str, bool); 8] = [
    (
        "memsentry_tasks_live",
        Unit::Count,
        "Tracked task instances alive (started, neither finished nor cancelled).",
        false,
    ),
    (
        "memsentry_tasks_started_total",
        Unit::Count,
        "Tracked task instances started (first polled).",
        true,
    ),
    (
        "memsentry_tasks_finished_total",
        Unit::Count,
        "Tracked task instances that finished.",
        true,
    ),
    (
        "memsentry_tasks_cancelled_total",
        Unit::Count,
        "Tracked task instances dropped before finishing.",
        true,
    ),
    (
        "memsentry_task_polls_total",
        Unit::Count,
        "Polls of tracked task instances.",
        true,
    ),
    (
        "memsentry_task_allocated_bytes_total",
        Unit::Bytes,
        "Requested bytes allocated while the task was polled (exact).",
        true,
    ),
    (
        "memsentry_task_freed_bytes_total",
        Unit::Bytes,
        "Requested bytes freed while the task was polled (exact).",
        true,
    ),
    (
        "memsentry_task_inuse_bytes_estimate",
        Unit::Bytes,
        "Bytes allocated by the task and still in use, estimated from the sampled profile.",
        false,
    ),
];

/// Describes every metric (unit and help text) to the installed recorder. The reporter
/// calls it once when it starts; call it yourself if you publish with [`publish`] only.
pub fn describe() {
    for spec in &GAUGES {
        describe_gauge!(spec.name, spec.unit, spec.help);
    }
    let (name, unit, help) = INTERVAL_GAUGE;
    describe_gauge!(name, unit, help);
    for (name, unit, help) in PEAK_GAUGES {
        describe_gauge!(name, unit, help);
    }
    for (name, unit, help, _) in COUNTERS {
        describe_counter!(name, unit, help);
    }
    describe_counter!(
        FAILED,
        Unit::Count,
        "Allocations the inner allocator refused (returned null)."
    );
    for (name, unit, help, is_counter) in TASK_METRICS {
        if is_counter {
            describe_counter!(name, unit, help);
        } else {
            describe_gauge!(name, unit, help);
        }
    }
    crate::watch::metrics::describe();
}

/// Publishes `snapshot` (and the sampler's state) through the `metrics` facade: one
/// reporter tick. Counters are set to absolute values.
///
/// ```
/// # #[global_allocator]
/// # static GLOBAL: memsentry::MemSentry = memsentry::MemSentry::new();
/// // With no recorder installed, publishing goes nowhere, cheaply.
/// memsentry::report::publish(&memsentry::snapshot());
/// ```
pub fn publish(snapshot: &Snapshot) {
    let mut buckets = [Counts::default(); BUCKET_LABELS.len()];
    for class in &snapshot.classes {
        let sum = &mut buckets[bucket(class.size)];
        *sum = sum.plus(&class.counts);
    }
    for (counts, label) in buckets.iter().zip(BUCKET_LABELS) {
        for (name, _, _, value) in COUNTERS {
            counter!(name, "max_size" => label).absolute(value(counts));
        }
    }
    counter!(FAILED).absolute(snapshot.failed_allocations);
    let tick = Tick {
        snapshot,
        sampler: crate::profile::usage(),
    };
    for spec in &GAUGES {
        if let Some(value) = (spec.value)(&tick) {
            gauge!(spec.name).set(value);
        }
    }
    let (peak_at, peak_bytes) = crate::sampler::peak_summary();
    gauge!(PEAK_GAUGES[0].0).set(peak_bytes as f64);
    gauge!(PEAK_GAUGES[1].0).set(
        peak_at
            .and_then(|t| t.duration_since(std::time::UNIX_EPOCH).ok())
            .map_or(0.0, |d| d.as_secs_f64()),
    );
    for row in crate::task::report().rows() {
        let task = row.name;
        gauge!("memsentry_tasks_live", "task" => task).set(row.live as f64);
        counter!("memsentry_tasks_started_total", "task" => task).absolute(row.started);
        counter!("memsentry_tasks_finished_total", "task" => task).absolute(row.finished);
        counter!("memsentry_tasks_cancelled_total", "task" => task).absolute(row.cancelled);
        counter!("memsentry_task_polls_total", "task" => task).absolute(row.polls);
        counter!("memsentry_task_allocated_bytes_total", "task" => task)
            .absolute(row.allocated_bytes);
        counter!("memsentry_task_freed_bytes_total", "task" => task).absolute(row.freed_bytes);
        gauge!("memsentry_task_inuse_bytes_estimate", "task" => task).set(row.inuse_bytes_estimate);
    }
    if let Some(status) = crate::watch::status() {
        crate::watch::metrics::publish(&status);
    }
}

/// A reporter's settings; [`start`](Reporter::start) runs it.
///
/// ```rust,standalone_crate
/// #[global_allocator]
/// static GLOBAL: memsentry::MemSentry = memsentry::MemSentry::new();
///
/// fn main() -> std::io::Result<()> {
///     // Install the application's `metrics` recorder first, then:
///     let reporter = memsentry::report::Reporter::new()
///         .interval(std::time::Duration::from_secs(5))
///         .start()?;
///     // ... the reporter publishes every 5 s until it is stopped or dropped.
///     reporter.stop();
///     Ok(())
/// }
/// ```
#[derive(Clone, Debug)]
#[must_use = "nothing is published until `start()`"]
pub struct Reporter {
    interval: Duration,
}

impl Default for Reporter {
    fn default() -> Self {
        Reporter::new()
    }
}

impl Reporter {
    /// A reporter that publishes every second.
    pub fn new() -> Reporter {
        Reporter {
            interval: Duration::from_secs(1),
        }
    }

    /// How often to publish (default 1 s; at least 1 ms).
    pub fn interval(mut self, interval: Duration) -> Reporter {
        self.interval = interval.max(Duration::from_millis(1));
        self
    }

    /// Describes the metrics and publishes once before returning (so the recorder has
    /// every metric at once), then every interval on a thread named
    /// `memsentry-reporter`, until the returned handle is stopped or dropped.
    ///
    /// # Errors
    ///
    /// If the thread cannot be spawned.
    pub fn start(self) -> std::io::Result<ReporterHandle> {
        describe();
        gauge!(INTERVAL_GAUGE.0).set(self.interval.as_secs_f64());
        publish(&crate::snapshot());
        let stop = Arc::new((Mutex::new(false), Condvar::new()));
        let thread = {
            let stop = Arc::clone(&stop);
            std::thread::Builder::new()
                .name("memsentry-reporter".to_owned())
                .spawn(move || run(self.interval, &stop))?
        };
        Ok(ReporterHandle {
            stop,
            thread: Some(thread),
        })
    }
}

/// Publishes every `interval` until told to stop.
fn run(interval: Duration, stop: &(Mutex<bool>, Condvar)) {
    let (stopped, wake) = stop;
    let mut stopped = stopped.lock().unwrap_or_else(PoisonError::into_inner);
    loop {
        let (guard, _) = wake
            .wait_timeout_while(stopped, interval, |stopped| !*stopped)
            .unwrap_or_else(PoisonError::into_inner);
        stopped = guard;
        if *stopped {
            return;
        }
        publish(&crate::snapshot());
    }
}

/// A running [`Reporter`]: stops it when dropped.
#[derive(Debug)]
#[must_use = "dropping the handle stops the reporter"]
pub struct ReporterHandle {
    stop: Arc<(Mutex<bool>, Condvar)>,
    thread: Option<JoinHandle<()>>,
}

impl ReporterHandle {
    /// Stops the reporter and waits for its thread (at most one publish).
    pub fn stop(self) {
        drop(self);
    }
}

impl Drop for ReporterHandle {
    fn drop(&mut self) {
        let (stopped, wake) = &*self.stop;
        *stopped.lock().unwrap_or_else(PoisonError::into_inner) = true;
        wake.notify_all();
        if let Some(thread) = self.thread.take() {
            // A panic in the reporter thread has already been printed by the hook.
            let _ = thread.join();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn buckets_are_bounded_and_ordered() {
        assert_eq!(bucket(8), 0);
        assert_eq!(bucket(16), 0);
        assert_eq!(bucket(32), 1);
        assert_eq!(bucket(4096), 4);
        assert_eq!(bucket(4097), 5);
        assert_eq!(bucket(1 << 20), 8);
        assert_eq!(bucket(u64::MAX), 9);
        for (bound, label) in SIZE_BUCKETS.iter().zip(BUCKET_LABELS) {
            assert_eq!(bound.to_string(), label);
        }
        assert_eq!(BUCKET_LABELS[9], "+Inf");
    }
}
