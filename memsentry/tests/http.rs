//! The debug endpoint over real HTTP on 127.0.0.1: every path answers, the pprof
//! body decodes, bad input gets the right 4xx, the token is enforced, 50 concurrent
//! clients are all answered and a silent client holds up no one.

#![allow(clippy::disallowed_types, clippy::disallowed_macros)]

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::sync::{Mutex, MutexGuard, OnceLock, PoisonError};
use std::time::Duration;

use memsentry::MemSentry;
use memsentry::http::Server;
use memsentry::prometheus::Monitoring;
use memsentry::report::Reporter;

#[global_allocator]
static GLOBAL: MemSentry = MemSentry::new();

/// One recorder per process: the tests share one installation.
fn monitoring() -> &'static Monitoring {
    static MONITORING: OnceLock<Monitoring> = OnceLock::new();
    MONITORING.get_or_init(|| {
        memsentry::profile::set_sample_rate(4096);
        memsentry::prometheus::install_with(
            // The tests set the sampling rate through the endpoint: changes allowed.
            Server::new()
                .addr("127.0.0.1:0".parse().unwrap())
                .allow_changes(true),
            Reporter::new().interval(Duration::from_millis(100)),
        )
        .unwrap()
    })
}

/// Tests that set the sampling rate, or expect the one `monitoring` set, take this
/// first: the rate is process-wide, and the tests of this binary run at once.
fn rate_lock() -> MutexGuard<'static, ()> {
    static LOCK: Mutex<()> = Mutex::new(());
    LOCK.lock().unwrap_or_else(PoisonError::into_inner)
}

/// An answer: status, headers (lower-case names), body.
#[derive(Debug)]
struct Answer {
    status: u16,
    headers: Vec<(String, String)>,
    body: Vec<u8>,
}

impl Answer {
    fn text(&self) -> String {
        String::from_utf8_lossy(&self.body).into_owned()
    }

    fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(n, _)| n == name)
            .map(|(_, v)| v.as_str())
    }
}

/// Sends `raw` as is and reads the whole answer.
fn send(addr: SocketAddr, raw: &[u8]) -> Answer {
    let mut stream = TcpStream::connect(addr).unwrap();
    stream
        .set_read_timeout(Some(Duration::from_secs(30)))
        .unwrap();
    stream.write_all(raw).unwrap();
    let mut bytes = Vec::new();
    stream.read_to_end(&mut bytes).unwrap();
    let split = bytes
        .windows(4)
        .position(|w| w == b"\r\n\r\n")
        .expect("a complete head");
    let head = String::from_utf8(bytes[..split].to_vec()).unwrap();
    let mut lines = head.split("\r\n");
    let status = lines
        .next()
        .unwrap()
        .split(' ')
        .nth(1)
        .unwrap()
        .parse()
        .unwrap();
    let headers: Vec<(String, String)> = lines
        .map(|line| {
            let (name, value) = line.split_once(':').unwrap();
            (name.to_ascii_lowercase(), value.trim().to_owned())
        })
        .collect();
    let body = bytes[split + 4..].to_vec();
    let answer = Answer {
        status,
        headers,
        body,
    };
    let length: usize = answer.header("content-length").unwrap().parse().unwrap();
    if !raw.starts_with(b"HEAD ") {
        assert_eq!(length, answer.body.len(), "Content-Length matches the body");
    }
    answer
}

/// Sends a request; retries while the server answers 503 (it serves at most 32
/// connections at once, and the concurrency test fills them).
fn request(addr: SocketAddr, method: &str, target: &str, extra: &str, body: &str) -> Answer {
    let raw = format!(
        "{method} {target} HTTP/1.1\r\nHost: test\r\n{extra}Content-Length: {}\r\n\r\n{body}",
        body.len()
    );
    loop {
        let answer = send(addr, raw.as_bytes());
        if answer.status != 503 {
            return answer;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}

fn get(target: &str) -> Answer {
    request(monitoring().local_addr(), "GET", target, "", "")
}

fn gunzip(bytes: &[u8]) -> Vec<u8> {
    let mut raw = Vec::new();
    flate2::read::GzDecoder::new(bytes)
        .read_to_end(&mut raw)
        .expect("gzip");
    raw
}

fn contains(haystack: &[u8], needle: &str) -> bool {
    haystack
        .windows(needle.len())
        .any(|w| w == needle.as_bytes())
}

#[inline(never)]
fn held_by_the_http_test() -> Vec<Vec<u8>> {
    let blocks = (0..256).map(|i| vec![i as u8; 8192]).collect();
    // Not a tail call: this frame stays on the stacks, optimised or not.
    std::hint::black_box(blocks)
}

#[test]
fn every_path_answers() {
    let _rate = rate_lock();
    // Installed (and the sampling rate set) before the blocks are allocated, so that
    // they are sampled.
    let _ = monitoring();
    let held = held_by_the_http_test();

    let health = get("/healthz");
    assert_eq!((health.status, health.text().as_str()), (200, "ok\n"));

    // The reporter publishes every 100 ms: wait for a tick that saw the held blocks.
    let live_bytes = |text: &str| -> f64 {
        text.lines()
            .find_map(|l| l.strip_prefix("memsentry_live_bytes "))
            .unwrap()
            .parse()
            .unwrap()
    };
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    let metrics = loop {
        let metrics = get("/metrics");
        if live_bytes(&metrics.text()) >= 256.0 * 8192.0 || std::time::Instant::now() > deadline {
            break metrics;
        }
        std::thread::sleep(Duration::from_millis(20));
    };
    assert_eq!(metrics.status, 200);
    assert!(
        metrics
            .header("content-type")
            .unwrap()
            .starts_with("text/plain")
    );
    let text = metrics.text();
    for line in [
        "# TYPE memsentry_live_bytes gauge",
        "# TYPE memsentry_allocations_total counter",
        "memsentry_allocations_total{max_size=\"16384\"}",
        "memsentry_freed_bytes_total{max_size=\"+Inf\"}",
        "memsentry_jemalloc_resident_bytes",
        "memsentry_process_resident_bytes",
        "# TYPE memsentry_memory_limit_bytes gauge",
        "memsentry_sampler_rate_bytes 4096",
    ] {
        assert!(
            text.contains(line),
            "{line:?} missing from /metrics:\n{text}"
        );
    }
    let live = live_bytes(&text);
    assert!(live >= 256.0 * 8192.0, "live bytes {live}");

    let heap = get("/debug/pprof/heap");
    assert_eq!(heap.status, 200);
    let raw = gunzip(&heap.body);
    assert!(
        contains(&raw, "inuse_space") && contains(&raw, "held_by_the_http_test"),
        "{}",
        get("/debug/pprof/heap?format=folded").text()
    );
    let allocs = gunzip(&get("/debug/pprof/allocs").body);
    assert!(contains(&allocs, "alloc_space"));
    let offline = gunzip(&get("/debug/pprof/heap?symbolization=offline").body);
    assert!(!contains(&offline, "held_by_the_http_test"));

    let top = get("/debug/pprof/heap?debug=1").text();
    assert!(
        top.starts_with("inuse_space: ") && top.contains("flat%"),
        "{top}"
    );
    let top = get("/debug/pprof/allocs?debug=1&sample_index=alloc_objects").text();
    assert!(top.starts_with("alloc_objects: "), "{top}");
    let folded = get("/debug/pprof/heap?format=folded").text();
    assert!(
        folded.lines().any(|l| l.contains("held_by_the_http_test")),
        "{folded}"
    );
    let svg = get("/debug/pprof/heap?format=svg");
    assert_eq!(svg.header("content-type"), Some("image/svg+xml"));
    assert!(svg.text().starts_with("<?xml"));

    let snapshot = get("/debug/memsentry/snapshot");
    assert_eq!(snapshot.header("content-type"), Some("application/json"));
    let json = snapshot.text();
    for key in [
        "\"totals\":{\"allocations\":",
        "\"jemalloc\":{",
        "\"memory_limit_bytes\":",
        "\"classes\":[{\"size\":8",
    ] {
        assert!(json.contains(key), "{key} missing: {json}");
    }
    assert_eq!(json.matches('{').count(), json.matches('}').count());

    {
        let _scope = memsentry::task::scope("http \"quoted\" task");
        drop(std::hint::black_box(vec![0u8; 100]));
    }
    let tasks = get("/debug/memsentry/tasks");
    assert_eq!(tasks.header("content-type"), Some("application/json"));
    let json = tasks.text();
    assert!(json.starts_with("{\"tasks\":[{\"name\":"), "{json}");
    assert!(
        json.contains("\"name\":\"http \\\"quoted\\\" task\",\"live\":0,"),
        "{json}"
    );
    let table = get("/debug/memsentry/tasks?debug=1").text();
    assert!(
        table.starts_with("task ") && table.contains("quoted"),
        "{table}"
    );
    assert_eq!(get("/debug/memsentry/tasks?debug=x").status, 400);
    // Published at the reporter's next tick (a render may fall between two metrics of
    // one tick: wait for the line itself).
    let line = "memsentry_tasks_started_total{task=\"http \\\"quoted\\\" task\"} 1";
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    let metrics = loop {
        let metrics = get("/metrics").text();
        if metrics.contains(line) || std::time::Instant::now() > deadline {
            break metrics;
        }
        std::thread::sleep(Duration::from_millis(20));
    };
    assert!(metrics.contains(line), "{metrics}");

    drop(held);
}

#[test]
fn the_sample_rate_is_read_and_set() {
    let _rate = rate_lock();
    let addr = monitoring().local_addr();
    let set = request(addr, "POST", "/debug/memsentry/sample_rate", "", "8KiB");
    assert_eq!((set.status, set.text().as_str()), (200, "8192\n"));
    assert_eq!(get("/debug/memsentry/sample_rate").text(), "8192\n");
    let set = request(
        addr,
        "POST",
        "/debug/memsentry/sample_rate?rate=4096",
        "",
        "",
    );
    assert_eq!(set.status, 200);
    assert_eq!(memsentry::profile::sample_rate(), 4096);
    let bad = request(addr, "POST", "/debug/memsentry/sample_rate", "", "lots");
    assert_eq!(bad.status, 400);
    assert!(bad.text().contains("not a byte count"), "{}", bad.text());
    assert_eq!(memsentry::profile::sample_rate(), 4096, "unchanged");
}

#[test]
fn bad_input_gets_a_4xx_with_a_reason() {
    let addr = monitoring().local_addr();
    let cases: [(&str, &str, &str, u16); 10] = [
        ("GET", "/nope", "", 404),
        ("POST", "/metrics", "", 405),
        ("DELETE", "/debug/memsentry/sample_rate", "", 405),
        ("GET", "/debug/pprof/heap?format=xml", "", 400),
        ("GET", "/debug/pprof/heap?debug=7", "", 400),
        ("GET", "/debug/pprof/heap?sample_index=bogus", "", 400),
        ("GET", "/debug/pprof/heap?minutes=30", "", 400),
        ("GET", "/healthz?x=1", "", 400),
        ("GET", "/debug/pprof/heap?a=%zz", "", 400),
        (
            "POST",
            "/debug/memsentry/sample_rate",
            &"9".repeat(2000),
            413,
        ),
    ];
    for (method, target, body, status) in cases {
        let answer = request(addr, method, target, "", body);
        assert_eq!(
            answer.status,
            status,
            "{method} {target}: {}",
            answer.text()
        );
        let reason = answer.text();
        assert!(
            reason.ends_with('\n') && reason.lines().count() == 1,
            "{reason:?}"
        );
    }
    let wrong = request(addr, "PUT", "/metrics", "", "");
    assert_eq!(wrong.header("allow"), Some("GET, HEAD"));
    let huge = format!(
        "GET /healthz HTTP/1.1\r\nX-Big: {}\r\n\r\n",
        "x".repeat(10_000)
    );
    assert_eq!(send(addr, huge.as_bytes()).status, 431);
    assert_eq!(send(addr, b"garbage\r\n\r\n").status, 400);
}

#[test]
fn head_answers_the_get_head_without_a_body() {
    let addr = monitoring().local_addr();
    for target in [
        "/healthz",
        "/debug/memsentry/snapshot",
        "/nope",
        "/healthz?x=1",
    ] {
        let get = request(addr, "GET", target, "", "");
        let head = request(addr, "HEAD", target, "", "");
        assert_eq!(head.status, get.status, "{target}");
        assert!(head.body.is_empty(), "{target}: {:?}", head.text());
        assert_eq!(head.header("content-type"), get.header("content-type"));
        let length: usize = head.header("content-length").unwrap().parse().unwrap();
        // The snapshot's JSON changes between the two requests; its length may too.
        if target != "/debug/memsentry/snapshot" {
            assert_eq!(length, get.body.len(), "{target}");
        } else {
            assert!(length > 100, "{length}");
        }
    }
}

#[test]
fn the_token_is_enforced() {
    let server = Server::new()
        .addr("127.0.0.1:0".parse().unwrap())
        .token("s3cret")
        .start()
        .unwrap();
    let addr = server.local_addr();
    let snapshot = |extra: &str| request(addr, "GET", "/debug/memsentry/snapshot", extra, "");
    let denied = snapshot("");
    assert_eq!(denied.status, 401);
    assert_eq!(denied.header("www-authenticate"), Some("Bearer"));
    assert_eq!(snapshot("Authorization: Bearer wrong\r\n").status, 401);
    assert_eq!(snapshot("Authorization: s3cret\r\n").status, 401);
    assert_eq!(snapshot("Authorization: Bearer s3cret\r\n").status, 200);
    let set = request(addr, "POST", "/debug/memsentry/sample_rate", "", "1");
    assert_eq!(set.status, 401, "no change without the token");
    // Health checks need no token; /metrics without a renderer says how to get one.
    assert_eq!(request(addr, "GET", "/healthz", "", "").status, 200);
    let metrics = request(
        addr,
        "GET",
        "/metrics",
        "Authorization: Bearer s3cret\r\n",
        "",
    );
    assert_eq!(metrics.status, 404);
    assert!(metrics.text().contains("prometheus::install"));
    server.stop();
    assert!(
        TcpStream::connect(addr).is_err(),
        "stopped: nothing listens"
    );
}

#[test]
fn fifty_concurrent_clients_are_all_answered_and_a_silent_one_blocks_no_one() {
    let addr = monitoring().local_addr();
    // A client that connects and never sends its request.
    let silent = TcpStream::connect(addr).unwrap();
    let answers: Vec<u16> = std::thread::scope(|scope| {
        let clients: Vec<_> = (0..50)
            .map(|i| {
                scope.spawn(move || {
                    let target = match i % 3 {
                        0 => "/metrics",
                        1 => "/debug/pprof/heap?debug=1",
                        _ => "/debug/memsentry/snapshot",
                    };
                    // Up to 32 at once are served; `request` retries a 503.
                    request(addr, "GET", target, "", "").status
                })
            })
            .collect();
        clients.into_iter().map(|c| c.join().unwrap()).collect()
    });
    assert_eq!(answers, [200; 50]);
    // The silent client is answered too, once its time is up: 408, not a hang.
    let mut silent = silent;
    silent
        .set_read_timeout(Some(Duration::from_secs(30)))
        .unwrap();
    let mut answer = String::new();
    silent.read_to_string(&mut answer).unwrap();
    assert!(answer.starts_with("HTTP/1.1 408 "), "{answer}");
}
