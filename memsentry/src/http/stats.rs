//! **[C]** The process's figures: `/metrics` (Prometheus text), the snapshot and the
//! per-task statistics (JSON, or the text table).

use std::fmt::Write as _;
use std::time::UNIX_EPOCH;

use super::request::Request;
use super::response::{Response, TEXT};
use super::routes::Routes;
use crate::profile;

/// `/metrics`: what the renderer set with [`Server::metrics`](super::Server::metrics)
/// returns.
pub(super) fn metrics(routes: &Routes, request: &Request) -> Result<Response, Response> {
    request.no_query()?;
    match &routes.metrics {
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

/// `/debug/memsentry/snapshot`.
pub(super) fn snapshot(request: &Request) -> Result<Response, Response> {
    request.no_query()?;
    Ok(Response::ok("application/json", snapshot_json()))
}

/// `/debug/memsentry/tasks`: the task report as JSON; `?debug=1`: the table.
pub(super) fn tasks(request: &Request) -> Result<Response, Response> {
    let text = request.text_flag()?;
    let report = crate::task::report();
    if text {
        return Ok(Response::ok(TEXT, report.to_string()));
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
    Ok(Response::ok("application/json", out))
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

    #[test]
    fn json_strings_are_escaped() {
        assert_eq!(json_string("a\"b\\c\n"), "\"a\\\"b\\\\c\\u000a\"");
        assert_eq!(json_number(f64::NAN), "0");
        assert_eq!(json_number(2.0), "2.0");
    }
}
