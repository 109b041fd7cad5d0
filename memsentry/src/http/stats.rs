//! **[C]** The process's figures: `/metrics` (Prometheus text), the snapshot and the
//! per-task statistics (JSON, or the text table).

use std::time::UNIX_EPOCH;

use serde::Serialize;

use super::request::Request;
use super::response::{Response, TEXT};
use super::settings::Settings;
use crate::json::{round, seconds};
use crate::{Counts, profile};

/// `/metrics`: what the renderer set with [`Server::metrics`](super::Server::metrics)
/// returns.
pub(super) fn metrics(settings: &Settings, request: &Request) -> Result<Response, Response> {
    request.no_query()?;
    match &settings.metrics {
        Some(render) => Ok(Response::ok(
            "text/plain; version=0.0.4; charset=utf-8",
            render(),
        )),
        None => Err(Response::error(
            404,
            "no metrics renderer: start the endpoint with memsentry::prometheus::install",
        )),
    }
}

/// `/debug/memsentry/snapshot`: [`crate::snapshot`] with the sampler's figures.
pub(super) fn snapshot(request: &Request) -> Result<Response, Response> {
    request.no_query()?;
    let snapshot = crate::snapshot();
    let usage = profile::usage();
    Ok(Response::json(&SnapshotJson {
        taken_at_unix_seconds: snapshot
            .taken_at
            .duration_since(UNIX_EPOCH)
            .map_or(0.0, |since| round(since.as_secs_f64(), 6)),
        totals: CountsJson::from(&snapshot.totals),
        failed_allocations: snapshot.failed_allocations,
        jemalloc: snapshot.jemalloc.as_ref().map(|j| JemallocJson {
            allocated: j.allocated,
            active: j.active,
            resident: j.resident,
            mapped: j.mapped,
            retained: j.retained,
            metadata: j.metadata,
            dirty: j.dirty,
            muzzy: j.muzzy,
            dirty_decay_ms: j.dirty_decay_ms,
            muzzy_decay_ms: j.muzzy_decay_ms,
        }),
        resident_bytes: snapshot.resident_bytes,
        memory_limit_bytes: snapshot.memory_limit_bytes,
        sampler: SamplerJson {
            live_samples: usage.live_samples,
            stacks: usage.stacks,
            memory_bytes: usage.bytes,
            rate_bytes: usage.sample_rate,
        },
        classes: snapshot
            .classes
            .iter()
            .map(|class| ClassJson {
                size: class.size,
                counts: CountsJson::from(&class.counts),
            })
            .collect(),
    }))
}

/// The snapshot's document.
#[derive(Serialize)]
struct SnapshotJson {
    taken_at_unix_seconds: f64,
    totals: CountsJson,
    failed_allocations: u64,
    jemalloc: Option<JemallocJson>,
    resident_bytes: Option<u64>,
    memory_limit_bytes: Option<u64>,
    sampler: SamplerJson,
    classes: Vec<ClassJson>,
}

/// [`Counts`], with the live figures they imply.
#[derive(Serialize)]
struct CountsJson {
    allocations: u64,
    frees: u64,
    allocated_bytes: u64,
    freed_bytes: u64,
    allocated_class_bytes: u64,
    freed_class_bytes: u64,
    live_bytes: u64,
    live_objects: u64,
}

impl From<&Counts> for CountsJson {
    fn from(counts: &Counts) -> CountsJson {
        CountsJson {
            allocations: counts.allocations,
            frees: counts.frees,
            allocated_bytes: counts.allocated_bytes,
            freed_bytes: counts.freed_bytes,
            allocated_class_bytes: counts.allocated_class_bytes,
            freed_class_bytes: counts.freed_class_bytes,
            live_bytes: counts.live_bytes(),
            live_objects: counts.live_objects(),
        }
    }
}

/// [`JemallocStats`](crate::JemallocStats).
#[derive(Serialize)]
struct JemallocJson {
    allocated: u64,
    active: u64,
    resident: u64,
    mapped: u64,
    retained: u64,
    metadata: u64,
    dirty: u64,
    muzzy: u64,
    dirty_decay_ms: i64,
    muzzy_decay_ms: i64,
}

/// The sampler's own figures ([`profile::usage`]).
#[derive(Serialize)]
struct SamplerJson {
    live_samples: usize,
    stacks: usize,
    memory_bytes: usize,
    rate_bytes: u64,
}

/// One size class's row: its size, then its counts in the same object.
#[derive(Serialize)]
struct ClassJson {
    size: u64,
    #[serde(flatten)]
    counts: CountsJson,
}

/// `/debug/memsentry/tasks`: the task report as JSON; `?debug=1`: the table.
pub(super) fn tasks(request: &Request) -> Result<Response, Response> {
    let text = request.text_flag()?;
    let report = crate::task::report();
    if text {
        return Ok(Response::ok(TEXT, report.to_string()));
    }
    // The estimates are finite; anything else is written as 0, so that readers can
    // always do arithmetic on them.
    let estimate = |value: f64| {
        if value.is_finite() {
            round(value, 1)
        } else {
            0.0
        }
    };
    Ok(Response::json(&TasksJson {
        tasks: report
            .rows()
            .iter()
            .map(|row| TaskJson {
                name: row.name,
                live: row.live,
                oldest_live_seconds: row.oldest_live.map(seconds),
                started: row.started,
                finished: row.finished,
                cancelled: row.cancelled,
                polls: row.polls,
                allocations: row.allocations,
                allocated_bytes: row.allocated_bytes,
                frees: row.frees,
                freed_bytes: row.freed_bytes,
                inuse_objects_estimate: estimate(row.inuse_objects_estimate),
                inuse_bytes_estimate: estimate(row.inuse_bytes_estimate),
            })
            .collect(),
    }))
}

/// The tasks' document.
#[derive(Serialize)]
struct TasksJson {
    tasks: Vec<TaskJson>,
}

/// One row of the [task report](crate::task::report).
#[derive(Serialize)]
struct TaskJson {
    name: &'static str,
    live: u64,
    oldest_live_seconds: Option<f64>,
    started: u64,
    finished: u64,
    cancelled: u64,
    polls: u64,
    allocations: u64,
    allocated_bytes: u64,
    frees: u64,
    freed_bytes: u64,
    inuse_objects_estimate: f64,
    inuse_bytes_estimate: f64,
}
