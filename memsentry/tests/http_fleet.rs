//! What continuous-profiling scrapers and fleets need of the endpoint, over real HTTP on
//! 127.0.0.1: Go's delta profiles (`?seconds=N`) with their bounds, godeltaprof's
//! `delta_heap`, the goroutine profile from the task table, clear 404s for Go's profile
//! types a Rust process has no equivalent of, cumulative values that never shrink, and
//! routes that change state refused unless a token or an explicit opt-in allows them.

#![allow(clippy::disallowed_types, clippy::disallowed_macros)]

use std::hint::black_box;
use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::time::{Duration, Instant};

use memsentry::MemSentry;
use memsentry::http::{Server, ServerHandle};
use memsentry::profile::{self, SampleType};

#[global_allocator]
static GLOBAL: MemSentry = MemSentry::new();

/// Status and body of a request.
fn request(
    addr: SocketAddr,
    method: &str,
    target: &str,
    extra: &str,
    body: &str,
) -> (u16, Vec<u8>) {
    let mut stream = TcpStream::connect(addr).unwrap();
    stream
        .set_read_timeout(Some(Duration::from_secs(120)))
        .unwrap();
    write!(
        stream,
        "{method} {target} HTTP/1.1\r\nHost: test\r\n{extra}Content-Length: {}\r\n\r\n{body}",
        body.len()
    )
    .unwrap();
    let mut bytes = Vec::new();
    stream.read_to_end(&mut bytes).unwrap();
    let split = bytes.windows(4).position(|w| w == b"\r\n\r\n").unwrap();
    let head = String::from_utf8_lossy(&bytes[..split]);
    let status = head.split(' ').nth(1).unwrap().parse().unwrap();
    (status, bytes[split + 4..].to_vec())
}

fn get(addr: SocketAddr, target: &str) -> (u16, String) {
    let (status, body) = request(addr, "GET", target, "", "");
    (status, String::from_utf8_lossy(&body).into_owned())
}

/// Tests that set the process-wide sampling rate, or depend on it, take turns.
fn rate_lock() -> std::sync::MutexGuard<'static, ()> {
    static LOCK: std::sync::Mutex<()> = std::sync::Mutex::new(());
    LOCK.lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner)
}

fn server() -> ServerHandle {
    Server::new()
        .addr("127.0.0.1:0".parse().unwrap())
        .start()
        .unwrap()
}

#[inline(never)]
fn allocate_in_the_window(stop: Instant) -> usize {
    let mut n = 0;
    while Instant::now() < stop {
        n += black_box(vec![0u8; 64 * 1024]).len();
    }
    n
}

#[test]
fn delta_profiles_cover_their_window_and_are_bounded() {
    let _rate = rate_lock();
    profile::set_sample_rate(16 * 1024);
    let server = server();
    let addr = server.local_addr();
    // Allocations before the window do not count in it.
    black_box(allocate_in_the_window(
        Instant::now() + Duration::from_millis(300),
    ));
    let worker = std::thread::spawn(|| {
        std::thread::sleep(Duration::from_millis(200));
        allocate_in_the_window(Instant::now() + Duration::from_millis(1000))
    });
    let (status, text) = get(addr, "/debug/pprof/allocs?seconds=2&debug=1&gc=1");
    let allocated = worker.join().unwrap() as f64;
    assert_eq!(status, 200, "{text}");
    // The top report's first line: "alloc_space: 62.5 MiB total".
    let total = text.lines().next().unwrap();
    assert!(total.starts_with("alloc_space: "), "{text}");
    assert!(text.contains("allocate_in_the_window"), "{text}");
    let cumulative = profile::heap();
    let (alloc, _) = cumulative.totals();
    assert!(
        alloc.bytes > allocated * 1.2,
        "the cumulative profile also holds the allocations before the window"
    );
    let delta_bytes: f64 = {
        let (_, body) = request(addr, "GET", "/debug/pprof/allocs?seconds=1", "", "");
        assert_eq!(&body[..2], &[0x1f, 0x8b], "gzipped pprof");
        body.len() as f64
    };
    assert!(delta_bytes > 0.0);
    // The window's allocations, estimated: within 25% of what the worker allocated.
    let window_profile_bytes = {
        let base = profile::heap();
        let stop = Instant::now() + Duration::from_millis(500);
        let made = allocate_in_the_window(stop) as f64;
        let delta = profile::heap().delta(&base).unwrap();
        assert!(delta.window().unwrap() >= Duration::from_millis(500));
        let (alloc, _) = delta.totals();
        (alloc.bytes, made)
    };
    let (estimated, made) = window_profile_bytes;
    assert!(
        (estimated - made).abs() < made * 0.25 + 1e6,
        "a delta's alloc_space estimates the window's allocations: {estimated} vs {made}"
    );

    let (status, text) = get(addr, "/debug/pprof/heap?seconds=61");
    assert_eq!(status, 400);
    assert!(text.contains("at most 60 seconds"), "{text}");
    assert_eq!(get(addr, "/debug/pprof/heap?seconds=0").0, 400);
    assert_eq!(get(addr, "/debug/pprof/heap?gc=2").0, 400);

    // At most 8 deltas at once; the other routes are answered meanwhile.
    let requests: Vec<_> = (0..9)
        .map(|_| std::thread::spawn(move || get(addr, "/debug/pprof/heap?seconds=3").0))
        .collect();
    std::thread::sleep(Duration::from_millis(500));
    let started = Instant::now();
    assert_eq!(get(addr, "/healthz").0, 200);
    assert!(
        started.elapsed() < Duration::from_secs(2),
        "not held up by the deltas"
    );
    let mut statuses: Vec<u16> = requests.into_iter().map(|t| t.join().unwrap()).collect();
    statuses.sort_unstable();
    assert_eq!(statuses, [200, 200, 200, 200, 200, 200, 200, 200, 503]);
    server.stop();
    profile::set_sample_rate(profile::DEFAULT_RATE);
}

#[test]
fn cumulative_alloc_values_never_shrink_and_stacks_stay() {
    let _rate = rate_lock();
    let first = profile::heap();
    black_box(allocate_in_the_window(
        Instant::now() + Duration::from_millis(200),
    ));
    let second = profile::heap();
    let rows = |p: &profile::Profile| -> Vec<(Vec<String>, u64, f64)> {
        p.samples()
            .iter()
            .map(|s| {
                let names = p.frames(s).map(|f| f.function.to_owned()).collect();
                (names, s.size, SampleType::AllocSpace.value(s))
            })
            .collect()
    };
    let later = rows(&second);
    for (stack, size, value) in rows(&first) {
        let after: f64 = later
            .iter()
            .filter(|(s, z, _)| *s == stack && *z == size)
            .map(|r| r.2)
            .sum();
        assert!(
            after >= value,
            "a cumulative value shrank: {stack:?} {size} {value} -> {after}"
        );
    }
}

#[test]
fn delta_heap_loses_no_first_scrape() {
    let server = server();
    let addr = server.local_addr();
    let (status, first) = request(addr, "GET", "/debug/pprof/delta_heap", "", "");
    assert_eq!(status, 200);
    assert_eq!(&first[..2], &[0x1f, 0x8b]);
    let (status, _) = request(addr, "GET", "/debug/pprof/delta_heap?gc=1", "", "");
    assert_eq!(status, 200);
    assert_eq!(get(addr, "/debug/pprof/delta_heap?x=1").0, 400);
    server.stop();
}

#[test]
fn goroutines_are_the_live_tasks_and_go_only_routes_say_so() {
    let server = server();
    let addr = server.local_addr();
    let task = memsentry::task::TaskName::new("fleet::session");
    let pending = std::pin::pin!(task.track(std::future::pending::<()>()));
    let mut pending = pending;
    let mut cx = std::task::Context::from_waker(std::task::Waker::noop());
    assert!(pending.as_mut().poll(&mut cx).is_pending());
    let (status, text) = get(addr, "/debug/pprof/goroutine?debug=1");
    assert_eq!(status, 200);
    assert!(text.contains("1 @ fleet::session"), "{text}");
    let (status, body) = request(addr, "GET", "/debug/pprof/goroutine", "", "");
    assert_eq!(status, 200);
    assert_eq!(&body[..2], &[0x1f, 0x8b]);
    for path in [
        "/debug/pprof/profile?seconds=14",
        "/debug/pprof/block",
        "/debug/pprof/mutex",
    ] {
        let (status, text) = get(addr, path);
        assert_eq!(status, 404, "{path}");
        assert!(text.contains("turn this profile type off"), "{text}");
    }
    let (status, index) = get(addr, "/debug/pprof/");
    assert_eq!(status, 200);
    assert!(index.contains("/debug/pprof/delta_heap"), "{index}");
    server.stop();
}

#[test]
fn changing_state_needs_a_token_or_an_opt_in() {
    let _rate = rate_lock();
    let before = profile::sample_rate();
    let open = server();
    let addr = open.local_addr();
    let (status, text) = request(addr, "POST", "/debug/memsentry/sample_rate", "", "1");
    assert_eq!(status, 403, "{}", String::from_utf8_lossy(&text));
    assert_eq!(
        get(addr, "/debug/memsentry/sample_rate").0,
        200,
        "reading stays open"
    );
    assert_eq!(profile::sample_rate(), before, "unchanged");
    open.stop();

    let guarded = Server::new()
        .addr("127.0.0.1:0".parse().unwrap())
        .token("t0ken")
        .start()
        .unwrap();
    let addr = guarded.local_addr();
    let auth = "Authorization: Bearer t0ken\r\n";
    let (status, text) = request(addr, "POST", "/debug/memsentry/sample_rate", auth, "1");
    assert_eq!(status, 403, "a rate under the floor needs the opt-in");
    assert!(String::from_utf8_lossy(&text).contains("under 4096"));
    let (status, _) = request(addr, "POST", "/debug/memsentry/sample_rate", auth, "1MiB");
    assert_eq!(status, 200, "with a token, a rate over the floor");
    assert_eq!(profile::sample_rate(), 1 << 20);
    guarded.stop();

    let opted_in = Server::new()
        .addr("127.0.0.1:0".parse().unwrap())
        .allow_changes(true)
        .start()
        .unwrap();
    let (status, _) = request(
        opted_in.local_addr(),
        "POST",
        "/debug/memsentry/sample_rate",
        "",
        "1",
    );
    assert_eq!(status, 200, "opted in: any rate");
    assert_eq!(profile::sample_rate(), 1);
    profile::set_sample_rate(before);
    opted_in.stop();
}
