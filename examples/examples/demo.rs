//! The memsentry demo: a small service-like workload with memsentry as the global
//! allocator, reporting its heap every second.
//!
//! ```text
//! cargo run --release --example demo              # 15 seconds
//! cargo run --release --example demo -- --seconds 60 --out /tmp/profiles
//! ```
//!
//! Three kinds of work run on their own threads, as in a real service:
//! - request handlers: short-lived allocations (parsing, building responses), high churn;
//! - a cache: long-lived entries, replaced over time, bounded;
//! - a slow leak: session buffers that are kept forever (`leak_session_buffers`).
//!
//! And an async part on a tokio runtime, with `#[memsentry::tracked]` tasks: `api_call`
//! handlers that finish, and `watch_session` tasks that never do (a task leak: their live
//! count and oldest age only grow). The task table at the end shows them.
//!
//! Every second it prints live bytes, the allocation rate, the process's resident set and
//! internal fragmentation. It takes a heap profile after the first second, as a base; at
//! the end it prints the per-size-class table and the profile's top in-use functions,
//! then writes into the output directory:
//! - `heap.pb.gz`: the heap profile (pprof), symbolized in-process;
//! - `heap.svg`: its in-use flame graph, for a browser;
//! - `diff.pb.gz`: what changed since the base, whose top report it prints (the leak
//!   first);
//! - `heap-offline.pb.gz`: the same profile left unsymbolized, for `go tool pprof BINARY`;
//!
//! and prints the commands that open them.
//!
//! A watchdog (`memsentry::watch`) runs beside it on demo settings: windows of 2 and 5
//! seconds and a limit 64 MiB above the resident set at start. Each second's line shows
//! its forecast; the leak makes it fire within a few seconds, and its heap dumps go to
//! `OUT/watchdog/` (`heap-<time>-forecast.pb.gz`, with a flame graph and a diff).
//!
//! While it runs it serves Prometheus metrics and the debug endpoint on `127.0.0.1:6060`
//! (`MEMSENTRY_HTTP_ADDR` overrides the address): `curl localhost:6060/metrics`,
//! `go tool pprof -top http://localhost:6060/debug/pprof/heap`.

use std::collections::{BTreeMap, HashMap};
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use memsentry::profile::{self, Profile, SampleType, Symbolization};
use memsentry::{Bytes, MemSentry};

#[global_allocator]
static GLOBAL: MemSentry = MemSentry::new();

const USAGE: &str = "usage: demo [--seconds N] [--out DIR]\n\n  \
    --seconds N  how long to run (default 15)\n  \
    --out DIR    where to write the profiles (default: memsentry-demo in the temporary \
    directory; created if missing)";

/// What the command line asks for.
#[derive(Debug, PartialEq)]
struct Args {
    seconds: u64,
    out: PathBuf,
}

fn main() -> ExitCode {
    let Args { seconds, out } = match parse_args(std::env::args().skip(1)) {
        Ok(Some(args)) => args,
        Ok(None) => {
            println!("{USAGE}");
            return ExitCode::SUCCESS;
        }
        Err(message) => {
            eprintln!("demo: {message}\n{USAGE}");
            return ExitCode::from(2);
        }
    };
    println!(
        "memsentry demo: {seconds} s of a request/cache/leak workload (bookkeeping {})",
        if memsentry::is_enabled() { "on" } else { "off" }
    );
    // Prometheus metrics and the debug endpoint, on 127.0.0.1:6060 unless
    // MEMSENTRY_HTTP_ADDR says otherwise. The workload runs without them if they
    // cannot start (the port is taken, say).
    let monitoring = match memsentry::prometheus::install() {
        Ok(monitoring) => {
            let addr = monitoring.local_addr();
            println!(
                "serving http://{addr}/metrics and http://{addr}/debug/pprof/heap?debug=1; \
                 open http://{addr}/debug/memsentry/ in a browser"
            );
            Some(monitoring)
        }
        Err(error) => {
            eprintln!("demo: no debug endpoint: {error}");
            None
        }
    };

    // The watchdog, on demo settings so that it acts within the run: windows of 2 and 5
    // seconds (1, 5 and 15 minutes by default) and a limit 64 MiB above the resident set
    // at start (by default the cgroup's). The leak then brings a forecast within a couple
    // of seconds, and with it a heap dump into OUT/watchdog.
    let watchdog = start_watchdog(&out.join("watchdog"));
    // Leak suspects for the page and /debug/memsentry/leaks: a profile every second.
    let leaks = memsentry::profile::track_leaks(Duration::from_secs(1))
        .map_err(|error| eprintln!("demo: no leak tracking: {error}"))
        .ok();

    let stop = Arc::new(AtomicBool::new(false));
    let leaked = Arc::new(Mutex::new(Vec::new()));
    let mut workers = Vec::new();
    for handler in 0..2 {
        let stop = Arc::clone(&stop);
        workers.push(std::thread::spawn(move || handle_requests(handler, &stop)));
    }
    {
        let stop = Arc::clone(&stop);
        workers.push(std::thread::spawn(move || run_cache(&stop)));
    }
    {
        let (stop, leaked) = (Arc::clone(&stop), Arc::clone(&leaked));
        workers.push(std::thread::spawn(move || {
            leak_session_buffers(&stop, &leaked)
        }));
    }

    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_time()
        .build()
    {
        Ok(runtime) => runtime,
        Err(error) => {
            eprintln!("demo: cannot start the async runtime: {error}");
            return ExitCode::FAILURE;
        }
    };
    runtime.spawn(serve_async(Arc::clone(&stop)));

    let start = Instant::now();
    let mut previous = memsentry::snapshot();
    let mut base = None;
    for second in 1..=seconds {
        // Sleep until the next whole second since the start, so the lines stay on time.
        let next = start + Duration::from_secs(second);
        std::thread::sleep(next.saturating_duration_since(Instant::now()));
        let now = memsentry::snapshot();
        let delta = now.delta(&previous);
        let forecast = memsentry::watch::status()
            .and_then(|status| status.forecast)
            .map_or_else(
                || "none".to_owned(),
                |ahead| format!("limit in {}s", ahead.as_secs()),
            );
        println!(
            "{second:>4}s  live {:>10}  alloc {:>10}/s ({:>8.0} allocs/s)  resident {:>10}  frag {:>5.1}%  forecast {forecast}",
            Bytes(now.totals.live_bytes()),
            Bytes(delta.allocated_bytes_per_sec() as u64),
            delta.allocations_per_sec(),
            now.resident_bytes
                .map_or_else(|| "n/a".to_owned(), |rss| Bytes(rss).to_string()),
            now.totals.fragmentation_ratio() * 100.0,
        );
        previous = now;
        if second == 1 {
            // The base for the final diff: taken once the cache has filled up, so the
            // diff shows what keeps growing.
            base = Some(profile::heap());
        }
    }

    // The final tables, taken while the cache and the leaks are still alive.
    let last = memsentry::snapshot();
    let tasks = memsentry::task::report();
    stop.store(true, Ordering::Relaxed);
    for worker in workers {
        if worker.join().is_err() {
            eprintln!("demo: a worker thread panicked");
            return ExitCode::FAILURE;
        }
    }
    let leaked_bytes: usize = leaked
        .lock()
        .map(|buffers| buffers.iter().map(Vec::len).sum())
        .unwrap_or(0);
    println!(
        "\nleaked on purpose by leak_session_buffers: {}\n",
        Bytes(leaked_bytes as u64)
    );
    println!("{last}");
    println!("\ntasks (watch_session never finishes: a task leak):\n{tasks}");
    // Drops the tasks still pending: the leaked ones end as cancelled. Waits (a little) for
    // the workers to drop them, so that their buffers are gone from the profile below.
    runtime.shutdown_timeout(Duration::from_secs(1));

    // The sampled heap profile, taken at the end: the leak is the largest in-use site.
    let heap = profile::heap();
    let usage = profile::usage();
    println!(
        "\nheap profile: {} sampled blocks live, {} stacks, sampler tables {} (rate {})",
        usage.live_samples,
        usage.stacks,
        Bytes(usage.bytes as u64),
        Bytes(usage.sample_rate),
    );
    println!("\n{}", heap.top(SampleType::InuseSpace, 8));
    // `base` is set at the first second, which every run reaches.
    let diff = base.map(|base| heap.diff(&base));
    match &diff {
        Some(Ok(diff)) => println!(
            "what grew since the first second (the leak first):\n{}",
            diff.top(SampleType::InuseSpaceChange, 8)
        ),
        Some(Err(error)) => println!("no diff: {error}"),
        None => {}
    }
    let written = write_profiles(&out, &heap, diff.and_then(Result::ok).as_ref());
    if let Some(watchdog) = watchdog {
        let status = watchdog.status();
        watchdog.stop();
        println!("\n{status}");
        if let Some(last) = &status.last_dump {
            println!(
                "  open the newest dump with: go tool pprof -top {}",
                last.display()
            );
        }
    }
    drop(leaks);
    let suspects = memsentry::profile::leak_suspects();
    println!("\n{suspects}");
    drop(monitoring);
    match written {
        Ok(()) => ExitCode::SUCCESS,
        Err(error) => {
            eprintln!("demo: {error}");
            ExitCode::FAILURE
        }
    }
}

/// How far above the resident set at start the demo's watchdog puts its limit.
const DEMO_HEADROOM: u64 = 64 << 20;

/// Starts the watchdog with the demo's settings (`MEMSENTRY_WATCH` overrides them); the
/// workload runs without it if it cannot start.
fn start_watchdog(dir: &Path) -> Option<memsentry::watch::WatchdogHandle> {
    let resident = memsentry::snapshot().resident_bytes.unwrap_or(0);
    let started = memsentry::watch::Watchdog::new()
        .interval(Duration::from_millis(250))
        .windows([Duration::from_secs(2), Duration::from_secs(5)])
        .limit(resident + DEMO_HEADROOM)
        .forecast(Duration::from_secs(600))
        .cooldown(Duration::from_secs(60))
        .dir(dir)
        .keep(5)
        .env()
        .start();
    match started {
        Ok(watchdog) => {
            println!(
                "watchdog: forecasting against a demo limit of {} (resident set + {}), \
                 dumps into {}",
                Bytes(resident + DEMO_HEADROOM),
                Bytes(DEMO_HEADROOM),
                dir.display()
            );
            Some(watchdog)
        }
        Err(error) => {
            eprintln!("demo: no watchdog: {error}");
            None
        }
    }
}

/// Writes the profile files into `out`, each followed by how to open it.
fn write_profiles(out: &Path, heap: &Profile, diff: Option<&Profile>) -> Result<(), String> {
    std::fs::create_dir_all(out)
        .map_err(|error| format!("cannot create {}: {error}", out.display()))?;
    let path = out.join("heap.pb.gz");
    heap.write_pprof(&path).map_err(|e| e.to_string())?;
    println!("wrote {}", path.display());
    println!("  open it with: go tool pprof -top {}", path.display());

    let path = out.join("heap.svg");
    heap.write_flamegraph(&path, SampleType::InuseSpace)
        .map_err(|e| e.to_string())?;
    println!("wrote {}", path.display());
    println!("  open it in a browser (click to zoom, Ctrl-F to search)");

    if let Some(diff) = diff {
        let path = out.join("diff.pb.gz");
        diff.write_pprof(&path).map_err(|e| e.to_string())?;
        println!("wrote {}", path.display());
        println!("  open it with: go tool pprof -top {}", path.display());
    }

    let path = out.join("heap-offline.pb.gz");
    profile::heap_with(Symbolization::Offline)
        .write_pprof(&path)
        .map_err(|e| e.to_string())?;
    let binary =
        std::env::current_exe().map_or_else(|_| "BINARY".into(), |p| p.display().to_string());
    println!("wrote {}", path.display());
    println!(
        "  symbolize and open it with: go tool pprof -top {binary} {}",
        path.display()
    );
    Ok(())
}

/// `Ok(Some(args))`, `Ok(None)` for `--help`, or an error message.
fn parse_args(mut args: impl Iterator<Item = String>) -> Result<Option<Args>, String> {
    let mut seconds = 15;
    let mut out = std::env::temp_dir().join("memsentry-demo");
    while let Some(arg) = args.next() {
        match arg.as_str() {
            "--seconds" => {
                let value = args.next().ok_or("--seconds needs a value")?;
                seconds = value
                    .parse()
                    .ok()
                    .filter(|&s| s > 0)
                    .ok_or_else(|| format!("--seconds: {value:?} is not a positive integer"))?;
            }
            "--out" => {
                out = args.next().ok_or("--out needs a directory")?.into();
            }
            "-h" | "--help" => return Ok(None),
            other => return Err(format!("unknown argument {other:?}")),
        }
    }
    Ok(Some(Args { seconds, out }))
}

/// The async part: every 10 ms an `api_call` that finishes; every 100 ms a
/// `watch_session` that never does.
async fn serve_async(stop: Arc<AtomicBool>) {
    let mut tick = 0u64;
    while !stop.load(Ordering::Relaxed) {
        tokio::spawn(api_call(tick));
        if tick.is_multiple_of(10) {
            tokio::spawn(watch_session(tick));
        }
        tick += 1;
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

/// A request handler: builds a response over two polls, then finishes.
#[memsentry::tracked]
async fn api_call(id: u64) -> usize {
    let request = format!("GET /items/{id}");
    tokio::time::sleep(Duration::from_millis(1)).await;
    let response = request.repeat(16);
    response.len()
}

/// Watches a session that never ends: holds its buffer and waits forever.
#[memsentry::tracked]
async fn watch_session(id: u64) {
    let buffer = vec![id as u8; 8 * 1024];
    std::future::pending::<()>().await;
    drop(buffer);
}

/// A tiny deterministic generator, so the workload needs no dependency.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }

    fn below(&mut self, n: u64) -> usize {
        usize::try_from(self.next() % n).unwrap_or(0)
    }
}

/// Request handling: parse a request into a map, build a response, drop both.
fn handle_requests(handler: u64, stop: &AtomicBool) {
    let mut rng = Rng(0x9e37_79b9 + handler);
    while !stop.load(Ordering::Relaxed) {
        for _ in 0..50 {
            let fields = 4 + rng.below(12);
            let request: HashMap<String, String> = (0..fields)
                .map(|i| (format!("header-{i}"), "x".repeat(8 + rng.below(120))))
                .collect();
            let mut response = Vec::with_capacity(256);
            for (name, value) in &request {
                response.extend_from_slice(name.as_bytes());
                response.extend_from_slice(value.as_bytes());
            }
            if rng.below(20) == 0 {
                // Now and then a large body.
                response.resize(16 * 1024 + rng.below(48 * 1024), b'.');
            }
            std::hint::black_box(&response);
        }
        std::thread::sleep(Duration::from_millis(5));
    }
}

/// A bounded cache whose entries live for a while before being replaced.
fn run_cache(stop: &AtomicBool) {
    let mut rng = Rng(0x5eed);
    let mut cache: BTreeMap<usize, Vec<u8>> = BTreeMap::new();
    while !stop.load(Ordering::Relaxed) {
        for _ in 0..100 {
            let key = rng.below(1_000);
            cache.insert(key, vec![0u8; 64 + rng.below(2_000)]);
        }
        std::thread::sleep(Duration::from_millis(5));
    }
}

/// The leak: every 50 ms a session buffer is stored and never released.
fn leak_session_buffers(stop: &AtomicBool, leaked: &Mutex<Vec<Vec<u8>>>) {
    let mut rng = Rng(0x1ea4);
    while !stop.load(Ordering::Relaxed) {
        let buffer = vec![7u8; 16 * 1024 + rng.below(32 * 1024)];
        if let Ok(mut buffers) = leaked.lock() {
            buffers.push(buffer);
        }
        std::thread::sleep(Duration::from_millis(50));
    }
}

#[cfg(test)]
mod tests {
    use super::{Args, parse_args};

    fn parse(args: &[&str]) -> Result<Option<u64>, String> {
        parse_args(args.iter().map(|a| a.to_string())).map(|a| a.map(|a| a.seconds))
    }

    #[test]
    fn arguments() {
        assert_eq!(parse(&[]), Ok(Some(15)));
        assert_eq!(parse(&["--seconds", "3"]), Ok(Some(3)));
        let args = parse_args(
            ["--out", "/x/profiles", "--seconds", "2"]
                .map(String::from)
                .into_iter(),
        );
        assert_eq!(
            args,
            Ok(Some(Args {
                seconds: 2,
                out: "/x/profiles".into()
            }))
        );
        assert!(parse(&["--out"]).unwrap_err().contains("needs a directory"));
        assert_eq!(parse(&["--help"]), Ok(None));
        assert!(parse(&["--seconds"]).unwrap_err().contains("needs a value"));
        assert!(
            parse(&["--seconds", "0"])
                .unwrap_err()
                .contains("not a positive")
        );
        assert!(
            parse(&["--seconds", "x"])
                .unwrap_err()
                .contains("not a positive")
        );
        assert!(parse(&["--fast"]).unwrap_err().contains("unknown argument"));
    }
}
