//! **[C]** The routes continuous-profiling scrapers (Grafana Alloy's `pyroscope.scrape`,
//! Parca) ask a Go service for, answered as Go's `net/http/pprof` answers them: delta
//! profiles (`?seconds=N`), godeltaprof's `/debug/pprof/delta_heap`, the goroutine profile
//! (here: tracked tasks), and a clear 404 for the profile types a Rust process has no
//! equivalent of.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Mutex, PoisonError};
use std::time::Duration;

use super::request::{Request, unknown_parameter};
use super::response::{Response, TEXT};
use crate::profile::{self, Profile, SampleType, Symbolization};

/// The longest window a delta profile may ask for (`?seconds=`): Go's scrapers ask for
/// 10–15 s, `go tool pprof -seconds` for what the user says.
pub(crate) const MAX_SECONDS: u64 = 60;
/// Delta profiles in flight at once: each holds a connection for its window, and the
/// endpoint serves 32 connections; beyond this many, a 503, so the other routes always
/// have at least 24 connections.
pub(crate) const MAX_IN_FLIGHT: usize = 8;

static IN_FLIGHT: AtomicUsize = AtomicUsize::new(0);

/// What `?seconds=` asks for.
pub(super) fn seconds(value: &str) -> Result<Duration, Response> {
    match value.parse::<u64>() {
        Ok(seconds @ 1..=MAX_SECONDS) => Ok(Duration::from_secs(seconds)),
        Ok(seconds) if seconds > MAX_SECONDS => Err(Response::error(
            400,
            &format!("seconds={seconds}: at most {MAX_SECONDS} seconds per delta profile"),
        )),
        _ => Err(Response::error(
            400,
            &format!("seconds={value:?}: expected a whole number of seconds, 1 to {MAX_SECONDS}"),
        )),
    }
}

/// Go's `gc=1` runs a collection before a heap profile: a Rust process has none to run,
/// so the parameter is accepted and changes nothing.
pub(super) fn gc(value: &str) -> Result<(), Response> {
    match value {
        "0" | "1" => Ok(()),
        _ => Err(Response::error(
            400,
            &format!("gc={value:?}: expected 0 or 1"),
        )),
    }
}

/// The delta profile over `window`: a profile now, another when the window has passed,
/// the second's allocations since the first.
pub(super) fn delta(window: Duration, symbolization: Symbolization) -> Result<Profile, Response> {
    struct Slot;
    impl Drop for Slot {
        fn drop(&mut self) {
            IN_FLIGHT.fetch_sub(1, Ordering::Relaxed);
        }
    }
    if IN_FLIGHT.fetch_add(1, Ordering::Relaxed) >= MAX_IN_FLIGHT {
        IN_FLIGHT.fetch_sub(1, Ordering::Relaxed);
        return Err(Response::error(
            503,
            &format!("{MAX_IN_FLIGHT} delta profiles are being taken already: try again"),
        ));
    }
    let _slot = Slot;
    let base = profile::heap_with(symbolization);
    std::thread::sleep(window);
    profile::heap_with(symbolization)
        .delta(&base)
        .map_err(|error| Response::error(500, &format!("cannot take the delta: {error}")))
}

/// The cumulative profile the last `/debug/pprof/delta_heap` scrape saw.
static LAST: Mutex<Option<Profile>> = Mutex::new(None);

/// `/debug/pprof/delta_heap` (godeltaprof): the allocations since the previous scrape of
/// this route (since start, for the first: no scrape is lost), in use as of now.
pub(super) fn delta_heap(request: &Request) -> Response {
    for (key, value) in &request.query {
        match key.as_str() {
            "gc" => {
                if let Err(response) = gc(value) {
                    return response;
                }
            }
            _ => return unknown_parameter(key),
        }
    }
    let now = profile::heap();
    let mut last = LAST.lock().unwrap_or_else(PoisonError::into_inner);
    let delta = match last.as_ref() {
        Some(previous) => now.delta(previous),
        None => Ok(now.clone()),
    };
    *last = Some(now);
    drop(last);
    match delta {
        Ok(delta) => pprof_body(&delta, SampleType::AllocSpace),
        Err(error) => Response::error(500, &format!("cannot take the delta: {error}")),
    }
}

/// A profile as a pprof response.
pub(super) fn pprof_body(profile: &Profile, sample_type: SampleType) -> Response {
    let mut body = Vec::new();
    match profile.encode_pprof_as(sample_type, &mut body) {
        Ok(()) => Response::ok("application/octet-stream", body)
            .header("Content-Disposition", "attachment; filename=\"heap.pb.gz\""),
        Err(error) => Response::error(500, &format!("cannot encode the profile: {error}")),
    }
}

/// `/debug/pprof/goroutine`: the live instances of each tracked task as a goroutine
/// profile (`goroutine/count`), the nearest Rust equivalent; `?debug=1`: text.
pub(super) fn goroutine(request: &Request) -> Result<Response, Response> {
    let text = request.text_flag()?;
    let report = crate::task::report();
    let rows: Vec<(&str, u64)> = report.rows().iter().map(|r| (r.name, r.live)).collect();
    if text {
        let total: u64 = rows.iter().map(|r| r.1).sum();
        let mut out =
            format!("goroutine profile: total {total} (live instances of tracked tasks)\n");
        for (name, live) in &rows {
            out.push_str(&format!("{live} @ {name}\n"));
        }
        return Ok(Response::ok(TEXT, out));
    }
    let mut body = Vec::new();
    match profile::encode_tasks(&rows, &mut body) {
        Ok(()) => Ok(Response::ok("application/octet-stream", body).header(
            "Content-Disposition",
            "attachment; filename=\"goroutine.pb.gz\"",
        )),
        Err(error) => Err(Response::error(
            500,
            &format!("cannot encode the profile: {error}"),
        )),
    }
}

/// The Go profile types a Rust process has nothing to answer with.
pub(super) const NOT_IN_RUST: [&str; 7] = [
    "/debug/pprof/profile",
    "/debug/pprof/block",
    "/debug/pprof/mutex",
    "/debug/pprof/threadcreate",
    "/debug/pprof/trace",
    "/debug/pprof/cmdline",
    "/debug/pprof/symbol",
];

/// The 404 for those: what to turn off in the scraper.
pub(super) fn not_in_rust(path: &str) -> Response {
    Response::error(
        404,
        &format!(
            "{path}: no such profile in a Rust process (memsentry serves heap, allocs, \
             goroutine and delta_heap); turn this profile type off in the scraper's \
             configuration (see deploy/ in memsentry's repository)"
        ),
    )
}

/// `/debug/pprof/`: what is served, as Go's index lists it.
pub(super) fn index() -> Response {
    Response::ok(
        TEXT,
        "memsentry profiles (Go's net/http/pprof routes):\n\
         /debug/pprof/heap        in-use and allocated memory (?seconds=N: a delta over N s)\n\
         /debug/pprof/allocs      the same, alloc_space first (?seconds=N: a delta)\n\
         /debug/pprof/delta_heap  allocations since the previous scrape of this route\n\
         /debug/pprof/goroutine   live instances of tracked tasks\n\
         Each takes ?debug=1 for text.\n",
    )
}
