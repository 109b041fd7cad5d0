//! The watchdog on the debug endpoint and in `/metrics`, over real HTTP on 127.0.0.1: its
//! status as JSON and text, its dumps listed and downloaded (only dump files), the token
//! rules, and its gauges and counters published by the reporter.

#![allow(clippy::disallowed_types, clippy::disallowed_macros)]

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::time::{Duration, Instant};

use memsentry::MemSentry;
use memsentry::http::Server;
use memsentry::report::Reporter;
use memsentry::watch::{Trigger, Watchdog};

#[global_allocator]
static GLOBAL: MemSentry = MemSentry::new();

/// Status and body of a GET (with `extra` header lines).
fn get(addr: SocketAddr, target: &str, extra: &str) -> (u16, Vec<u8>) {
    let mut stream = TcpStream::connect(addr).unwrap();
    write!(stream, "GET {target} HTTP/1.1\r\nHost: test\r\n{extra}\r\n").unwrap();
    let mut bytes = Vec::new();
    stream.read_to_end(&mut bytes).unwrap();
    let split = bytes.windows(4).position(|w| w == b"\r\n\r\n").unwrap();
    let head = String::from_utf8_lossy(&bytes[..split]);
    let status = head.split(' ').nth(1).unwrap().parse().unwrap();
    (status, bytes[split + 4..].to_vec())
}

fn text(addr: SocketAddr, target: &str) -> (u16, String) {
    let (status, body) = get(addr, target, "");
    (status, String::from_utf8_lossy(&body).into_owned())
}

#[test]
fn the_watchdog_is_served_and_published() {
    let monitoring = memsentry::prometheus::install_with(
        Server::new().addr("127.0.0.1:0".parse().unwrap()),
        Reporter::new().interval(Duration::from_millis(20)),
    )
    .unwrap();
    let addr = monitoring.local_addr();
    // No watchdog yet: a 404 that says how to start one.
    let (status, body) = text(addr, "/debug/memsentry/watchdog");
    assert_eq!(status, 404);
    assert!(body.contains("memsentry::watch::Watchdog"), "{body}");
    assert_eq!(text(addr, "/debug/memsentry/dumps").0, 404);

    let dir = std::env::temp_dir().join(format!("memsentry-watch-http-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    let live = memsentry::totals().live_bytes();
    let watchdog = Watchdog::new()
        .interval(Duration::from_millis(10))
        .windows([Duration::from_millis(40)])
        .psi(false)
        .sustained_growth(false)
        .forecast(Duration::ZERO)
        .live_bytes(live + (64 << 20))
        .svg(false)
        .dir(&dir)
        .start()
        .unwrap();
    // black_box: an optimised build would elide an allocation nothing reads.
    let block: Vec<u8> = std::hint::black_box(Vec::with_capacity(128 << 20));
    let deadline = Instant::now() + Duration::from_secs(30);
    while watchdog.status().dumps_written == 0 {
        assert!(Instant::now() < deadline, "{}", watchdog.status());
        std::thread::sleep(Duration::from_millis(5));
    }
    drop(block);

    let (status, json) = text(addr, "/debug/memsentry/watchdog");
    assert_eq!(status, 200, "{json}");
    assert!(json.starts_with('{') && json.ends_with('}'), "{json}");
    assert!(json.contains("\"live-bytes\":{\"fired\":1,"), "{json}");
    assert!(json.contains("\"dumps_written\":1,"), "{json}");
    let (status, report) = text(addr, "/debug/memsentry/watchdog?debug=1");
    assert_eq!(status, 200);
    assert!(report.starts_with("watchdog: "), "{report}");
    assert!(report.contains("live-bytes ×1"), "{report}");
    assert_eq!(text(addr, "/debug/memsentry/watchdog?colour=1").0, 400);

    // The dumps: listed newest first, each downloadable byte for byte.
    let last = watchdog.status().last_dump.unwrap();
    let name = last.file_name().unwrap().to_str().unwrap().to_owned();
    assert!(name.ends_with("-live-bytes.pb.gz"), "{name}");
    let (status, listing) = text(addr, "/debug/memsentry/dumps");
    assert_eq!(status, 200);
    assert!(
        listing.contains(&format!("\"path\":\"/debug/memsentry/dumps/{name}\"")),
        "{listing}"
    );
    let (status, body) = get(addr, &format!("/debug/memsentry/dumps/{name}"), "");
    assert_eq!(status, 200);
    assert_eq!(body, std::fs::read(&last).unwrap());
    assert_eq!(&body[..2], &[0x1f, 0x8b], "gzipped pprof");
    let (_, listing) = text(addr, "/debug/memsentry/dumps?debug=1");
    assert!(listing.contains(&name), "{listing}");
    // Nothing but dump files is served from the directory, or outside it.
    std::fs::write(dir.join("notes.txt"), b"private").unwrap();
    for bad in [
        "notes.txt",
        "..%2F..%2Fetc%2Fpasswd",
        "../../etc/passwd",
        "heap-20991231T000000.000000Z.pb.gz",
    ] {
        let (status, _) = get(addr, &format!("/debug/memsentry/dumps/{bad}"), "");
        assert_eq!(status, 404, "{bad}");
    }

    // The reporter publishes the watchdog's figures.
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let metrics = monitoring.render();
        if metrics.contains("memsentry_watchdog_triggers_total{trigger=\"live-bytes\"} 1")
            && metrics.contains("memsentry_watchdog_dumps_total 1")
        {
            assert!(
                metrics.contains("\nmemsentry_forecast_seconds_to_limit "),
                "{metrics}"
            );
            assert!(
                metrics.contains(
                    "memsentry_growth_bytes_per_second{series=\"live\",window=\"0.04s\"}"
                ),
                "{metrics}"
            );
            assert!(metrics.contains("memsentry_watchdog_last_dump_timestamp_seconds "));
            break;
        }
        assert!(Instant::now() < deadline, "{metrics}");
        std::thread::sleep(Duration::from_millis(20));
    }
    let status = watchdog.status();
    let fired = status
        .triggers
        .iter()
        .find(|t| t.trigger == Trigger::LiveBytes)
        .unwrap();
    assert_eq!(fired.fired, 1);

    // With a token, the watchdog's routes need it like the others.
    let guarded = Server::new()
        .addr("127.0.0.1:0".parse().unwrap())
        .token("s3cret")
        .start()
        .unwrap();
    let target = format!("/debug/memsentry/dumps/{name}");
    for path in [
        "/debug/memsentry/watchdog",
        "/debug/memsentry/dumps",
        &target,
    ] {
        assert_eq!(get(guarded.local_addr(), path, "").0, 401, "{path}");
        let auth = "Authorization: Bearer s3cret\r\n";
        assert_eq!(get(guarded.local_addr(), path, auth).0, 200, "{path}");
    }
    guarded.stop();
    watchdog.stop();
    assert_eq!(text(addr, "/debug/memsentry/watchdog").0, 404, "stopped");
    monitoring.stop();
    std::fs::remove_dir_all(&dir).unwrap();
}
