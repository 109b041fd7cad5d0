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
//! | `memsentry_reporter_interval_seconds` | gauge | seconds | how often the [`Reporter`] publishes; set when it starts |
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

use std::time::{Duration, SystemTime};

use metrics::{Unit, counter, describe_counter, describe_gauge, gauge};

use crate::JemallocStats;
use crate::periodic::{First, Periodic};
use crate::profile::SamplerUsage;
use crate::snapshot::{Counts, Snapshot};
use crate::task::TaskRow;

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

/// The label of the size-class bucket counters.
const SIZE_LABEL: &str = "max_size";

/// The label of the per-task metrics.
const TASK_LABEL: &str = "task";

/// The bucket of a size class.
fn bucket(class_size: u64) -> usize {
    SIZE_BUCKETS
        .iter()
        .position(|&bound| class_size <= bound)
        .unwrap_or(SIZE_BUCKETS.len())
}

/// One metric: its name, unit and help text, and how it is read from a `T`. Each table
/// below is the one place that names its metrics; [`describe`] and [`publish`] iterate it.
struct Metric<T> {
    name: &'static str,
    unit: Unit,
    help: &'static str,
    read: Read<T>,
}

/// A metric's type, and its value in a `T`.
enum Read<T> {
    /// A gauge, set to the value; `None`: not published this time.
    Gauge(fn(&T) -> Option<f64>),
    /// A counter, set to the absolute value.
    Counter(fn(&T) -> u64),
}

impl<T> Metric<T> {
    /// Gives the recorder the metric's type, unit and help text.
    fn describe(&self) {
        match self.read {
            Read::Gauge(_) => describe_gauge!(self.name, self.unit, self.help),
            Read::Counter(_) => describe_counter!(self.name, self.unit, self.help),
        }
    }

    /// Publishes the metric's value in `source` under `labels`.
    fn publish(&self, source: &T, labels: &[(&'static str, &'static str)]) {
        match self.read {
            Read::Gauge(value) => {
                if let Some(value) = value(source) {
                    gauge!(self.name, labels).set(value);
                }
            }
            Read::Counter(value) => counter!(self.name, labels).absolute(value(source)),
        }
    }
}

/// What one tick's unlabelled metrics are read from: a few fields of the snapshot, the
/// sampler's state and the peak heap.
struct Readings {
    totals: Counts,
    failed_allocations: u64,
    jemalloc: Option<JemallocStats>,
    resident_bytes: Option<u64>,
    memory_limit_bytes: Option<u64>,
    sampler: SamplerUsage,
    peak_at: Option<SystemTime>,
    peak_bytes: u64,
}

impl Readings {
    fn now(snapshot: &Snapshot) -> Readings {
        let (peak_at, peak_bytes) = crate::sampler::peak_summary();
        Readings {
            totals: snapshot.totals,
            failed_allocations: snapshot.failed_allocations,
            jemalloc: snapshot.jemalloc,
            resident_bytes: snapshot.resident_bytes,
            memory_limit_bytes: snapshot.memory_limit_bytes,
            sampler: crate::profile::usage(),
            peak_at,
            peak_bytes,
        }
    }

    /// A jemalloc figure, when jemalloc's statistics could be read.
    fn jemalloc(&self, field: fn(&JemallocStats) -> u64) -> Option<f64> {
        self.jemalloc.as_ref().map(|j| field(j) as f64)
    }

    /// A jemalloc decay setting in seconds, from milliseconds (-1, never purged, stays).
    fn decay_seconds(&self, field: fn(&JemallocStats) -> i64) -> Option<f64> {
        self.jemalloc.as_ref().map(|j| match field(j) {
            -1 => -1.0,
            ms => ms as f64 / 1000.0,
        })
    }
}

/// The unlabelled metrics published every tick.
const METRICS: [Metric<Readings>; 21] = [
    Metric {
        name: "memsentry_live_bytes",
        unit: Unit::Bytes,
        help: "Requested bytes allocated and not yet freed.",
        read: Read::Gauge(|r| Some(r.totals.live_bytes() as f64)),
    },
    Metric {
        name: "memsentry_live_objects",
        unit: Unit::Count,
        help: "Blocks allocated and not yet freed.",
        read: Read::Gauge(|r| Some(r.totals.live_objects() as f64)),
    },
    Metric {
        name: "memsentry_failed_allocations_total",
        unit: Unit::Count,
        help: "Allocations the inner allocator refused (returned null).",
        read: Read::Counter(|r| r.failed_allocations),
    },
    Metric {
        name: "memsentry_jemalloc_allocated_bytes",
        unit: Unit::Bytes,
        help: "jemalloc stats.allocated: bytes in blocks the application holds.",
        read: Read::Gauge(|r| r.jemalloc(|j| j.allocated)),
    },
    Metric {
        name: "memsentry_jemalloc_active_bytes",
        unit: Unit::Bytes,
        help: "jemalloc stats.active: bytes in active pages.",
        read: Read::Gauge(|r| r.jemalloc(|j| j.active)),
    },
    Metric {
        name: "memsentry_jemalloc_resident_bytes",
        unit: Unit::Bytes,
        help: "jemalloc stats.resident: bytes in physically resident data pages.",
        read: Read::Gauge(|r| r.jemalloc(|j| j.resident)),
    },
    Metric {
        name: "memsentry_jemalloc_mapped_bytes",
        unit: Unit::Bytes,
        help: "jemalloc stats.mapped: bytes in active extents mapped by the allocator.",
        read: Read::Gauge(|r| r.jemalloc(|j| j.mapped)),
    },
    Metric {
        name: "memsentry_jemalloc_retained_bytes",
        unit: Unit::Bytes,
        help: "jemalloc stats.retained: bytes in virtual memory retained, not returned to the OS.",
        read: Read::Gauge(|r| r.jemalloc(|j| j.retained)),
    },
    Metric {
        name: "memsentry_jemalloc_metadata_bytes",
        unit: Unit::Bytes,
        help: "jemalloc stats.metadata: bytes of jemalloc's own metadata.",
        read: Read::Gauge(|r| r.jemalloc(|j| j.metadata)),
    },
    Metric {
        name: "memsentry_jemalloc_dirty_bytes",
        unit: Unit::Bytes,
        help: "jemalloc stats.arenas.<all>.pdirty: bytes in freed pages kept resident for reuse, not yet purged.",
        read: Read::Gauge(|r| r.jemalloc(|j| j.dirty)),
    },
    Metric {
        name: "memsentry_jemalloc_muzzy_bytes",
        unit: Unit::Bytes,
        help: "jemalloc stats.arenas.<all>.pmuzzy: bytes in pages purged lazily (MADV_FREE), reclaimable by the kernel.",
        read: Read::Gauge(|r| r.jemalloc(|j| j.muzzy)),
    },
    Metric {
        name: "memsentry_jemalloc_dirty_decay_seconds",
        unit: Unit::Seconds,
        help: "jemalloc arenas.dirty_decay_ms in seconds: how long dirty pages wait before they are purged (-1: never).",
        read: Read::Gauge(|r| r.decay_seconds(|j| j.dirty_decay_ms)),
    },
    Metric {
        name: "memsentry_jemalloc_muzzy_decay_seconds",
        unit: Unit::Seconds,
        help: "jemalloc arenas.muzzy_decay_ms in seconds: how long muzzy pages wait before they are purged (-1: never).",
        read: Read::Gauge(|r| r.decay_seconds(|j| j.muzzy_decay_ms)),
    },
    Metric {
        name: "memsentry_process_resident_bytes",
        unit: Unit::Bytes,
        help: "The process's resident set size.",
        read: Read::Gauge(|r| r.resident_bytes.map(|b| b as f64)),
    },
    Metric {
        name: "memsentry_memory_limit_bytes",
        unit: Unit::Bytes,
        help: "The process's cgroup memory limit (the smallest on its cgroup path); 0: none set.",
        read: Read::Gauge(|r| Some(r.memory_limit_bytes.unwrap_or(0) as f64)),
    },
    Metric {
        name: "memsentry_sampler_live_samples",
        unit: Unit::Count,
        help: "Sampled blocks still allocated (records in the sampler's live table).",
        read: Read::Gauge(|r| Some(r.sampler.live_samples as f64)),
    },
    Metric {
        name: "memsentry_sampler_stacks",
        unit: Unit::Count,
        help: "Distinct call stacks the sampler has seen.",
        read: Read::Gauge(|r| Some(r.sampler.stacks as f64)),
    },
    Metric {
        name: "memsentry_sampler_memory_bytes",
        unit: Unit::Bytes,
        help: "Memory the sampler holds (its tables, and placed samples' room beyond their requests): the price of observation.",
        read: Read::Gauge(|r| Some(r.sampler.bytes as f64)),
    },
    Metric {
        name: "memsentry_sampler_rate_bytes",
        unit: Unit::Bytes,
        help: "The sampling rate: mean bytes allocated between samples (0 = off).",
        read: Read::Gauge(|r| Some(r.sampler.sample_rate as f64)),
    },
    Metric {
        name: "memsentry_peak_inuse_bytes_estimate",
        unit: Unit::Bytes,
        help: "The sampled estimate of live bytes at the process's high-water mark (profile::peak).",
        read: Read::Gauge(|r| Some(r.peak_bytes as f64)),
    },
    Metric {
        name: "memsentry_peak_timestamp_seconds",
        unit: Unit::Seconds,
        help: "Unix time of that high-water mark; 0: none yet.",
        read: Read::Gauge(|r| {
            Some(
                r.peak_at
                    .and_then(|t| t.duration_since(std::time::UNIX_EPOCH).ok())
                    .map_or(0.0, |d| d.as_secs_f64()),
            )
        }),
    },
];

/// The reporter's interval, published when a [`Reporter`] starts, not every tick.
const INTERVAL: Metric<Duration> = Metric {
    name: "memsentry_reporter_interval_seconds",
    unit: Unit::Seconds,
    help: "How often the reporter publishes.",
    read: Read::Gauge(|interval| Some(interval.as_secs_f64())),
};

/// The counters of each size-class bucket, labelled [`SIZE_LABEL`].
const BUCKET_COUNTERS: [Metric<Counts>; 4] = [
    Metric {
        name: "memsentry_allocations_total",
        unit: Unit::Count,
        help: "Allocations, by size-class bucket (realloc counts as a free and an allocation).",
        read: Read::Counter(|c| c.allocations),
    },
    Metric {
        name: "memsentry_frees_total",
        unit: Unit::Count,
        help: "Frees, by size-class bucket.",
        read: Read::Counter(|c| c.frees),
    },
    Metric {
        name: "memsentry_allocated_bytes_total",
        unit: Unit::Bytes,
        help: "Requested bytes allocated, by size-class bucket.",
        read: Read::Counter(|c| c.allocated_bytes),
    },
    Metric {
        name: "memsentry_freed_bytes_total",
        unit: Unit::Bytes,
        help: "Requested bytes freed, by size-class bucket.",
        read: Read::Counter(|c| c.freed_bytes),
    },
];

/// The metrics of each tracked task, labelled [`TASK_LABEL`].
const TASK_METRICS: [Metric<TaskRow>; 8] = [
    Metric {
        name: "memsentry_tasks_live",
        unit: Unit::Count,
        help: "Tracked task instances alive (started, neither finished nor cancelled).",
        read: Read::Gauge(|row| Some(row.live as f64)),
    },
    Metric {
        name: "memsentry_tasks_started_total",
        unit: Unit::Count,
        help: "Tracked task instances started (first polled).",
        read: Read::Counter(|row| row.started),
    },
    Metric {
        name: "memsentry_tasks_finished_total",
        unit: Unit::Count,
        help: "Tracked task instances that finished.",
        read: Read::Counter(|row| row.finished),
    },
    Metric {
        name: "memsentry_tasks_cancelled_total",
        unit: Unit::Count,
        help: "Tracked task instances dropped before finishing.",
        read: Read::Counter(|row| row.cancelled),
    },
    Metric {
        name: "memsentry_task_polls_total",
        unit: Unit::Count,
        help: "Polls of tracked task instances.",
        read: Read::Counter(|row| row.polls),
    },
    Metric {
        name: "memsentry_task_allocated_bytes_total",
        unit: Unit::Bytes,
        help: "Requested bytes allocated while the task was polled (exact).",
        read: Read::Counter(|row| row.allocated_bytes),
    },
    Metric {
        name: "memsentry_task_freed_bytes_total",
        unit: Unit::Bytes,
        help: "Requested bytes freed while the task was polled (exact).",
        read: Read::Counter(|row| row.freed_bytes),
    },
    Metric {
        name: "memsentry_task_inuse_bytes_estimate",
        unit: Unit::Bytes,
        help: "Bytes allocated by the task and still in use, estimated from the sampled profile.",
        read: Read::Gauge(|row| Some(row.inuse_bytes_estimate)),
    },
];

/// Describes every metric (unit and help text) to the installed recorder. The reporter
/// calls it once when it starts; call it yourself if you publish with [`publish`] only.
pub fn describe() {
    for metric in &METRICS {
        metric.describe();
    }
    INTERVAL.describe();
    for metric in &BUCKET_COUNTERS {
        metric.describe();
    }
    for metric in &TASK_METRICS {
        metric.describe();
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
        for metric in &BUCKET_COUNTERS {
            metric.publish(counts, &[(SIZE_LABEL, label)]);
        }
    }
    let readings = Readings::now(snapshot);
    for metric in &METRICS {
        metric.publish(&readings, &[]);
    }
    for row in crate::task::report().rows() {
        for metric in &TASK_METRICS {
            metric.publish(row, &[(TASK_LABEL, row.name)]);
        }
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
        INTERVAL.publish(&self.interval, &[]);
        publish(&crate::snapshot());
        let thread = Periodic::start(
            "memsentry-reporter",
            self.interval,
            First::AfterInterval,
            || publish(&crate::snapshot()),
        )?;
        Ok(ReporterHandle { _thread: thread })
    }
}

/// A running [`Reporter`]: stops it when dropped.
#[derive(Debug)]
#[must_use = "dropping the handle stops the reporter"]
pub struct ReporterHandle {
    _thread: Periodic,
}

impl ReporterHandle {
    /// Stops the reporter and waits for its thread (at most one publish).
    pub fn stop(self) {
        drop(self);
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
