//! A real race against the OOM killer. A child process (this test binary again) runs in a
//! fresh memory cgroup limited to 256 MiB with no swap, starts the watchdog and leaks
//! 32 MiB a second in `leak_steadily`. The watchdog must warn with a forecast well before
//! the limit, write a heap dump that names the leaking function (read back with `go tool
//! pprof`), and then the kernel kills the child.
//!
//! Needs root and a cgroup file system (see `support/cgroup.rs`), and Go for the dump's
//! check: without them the test says so and passes, unless `REQUIRE_CGROUP_TEST=1` (set
//! by `scripts/test.sh`, which installs Go first) makes that a failure.

// `memsentry/clippy.toml` bans allocating types for the allocator's hot path; tests are not.
#![allow(clippy::disallowed_types, clippy::disallowed_macros)]

use std::io::Write;
use std::os::unix::process::ExitStatusExt;
use std::path::Path;
use std::process::Command;
use std::time::{Duration, Instant};

use memsentry::MemSentry;

#[path = "support/cgroup.rs"]
mod cgroup;

#[global_allocator]
static GLOBAL: MemSentry = MemSentry::new();

const LIMIT: u64 = 256 << 20;
/// The leak: 1 MiB blocks, 32 a second.
const BLOCK: usize = 1 << 20;
const BLOCKS_PER_SECOND: u64 = 32;
/// The warning must come at least this long before the kill (the leak takes ~7 s).
const MARGIN: Duration = Duration::from_secs(3);

#[test]
fn the_watchdog_warns_and_dumps_before_the_oom_killer() {
    let Some(cgroup) = cgroup::create_or_skip("oom", LIMIT) else {
        return;
    };
    let dir = std::env::temp_dir().join(format!("memsentry-oom-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    let started = Instant::now();
    let child = cgroup.spawn_test(
        "child_leaks_until_killed",
        &[
            ("OOM_TEST_DIR", dir.to_str().unwrap()),
            // Every leaked block is sampled: the dump's estimate is then exact.
            ("MEMSENTRY_SAMPLE_RATE", "64KiB"),
        ],
    );
    let output = child.wait_with_output().unwrap();
    let killed_after = started.elapsed();
    let stdout = String::from_utf8_lossy(&output.stdout);
    let stderr = String::from_utf8_lossy(&output.stderr);
    let context = format!("child stdout:\n{stdout}\nchild stderr:\n{stderr}");

    // The kernel killed it, for memory.
    assert_eq!(
        output.status.signal(),
        Some(libc::SIGKILL),
        "the child was not killed: {:?}\n{context}",
        output.status
    );
    assert!(cgroup.oom_kills() >= 1, "no oom_kill counted\n{context}");

    // The forecast came first, and early enough.
    let forecast = stdout
        .lines()
        .find(|line| line.starts_with("EVENT forecast "))
        .unwrap_or_else(|| panic!("no forecast event\n{context}"));
    let field = |name: &str| -> &str {
        forecast
            .split_whitespace()
            .find_map(|w| w.strip_prefix(name))
            .unwrap_or_else(|| panic!("no {name} in {forecast:?}"))
    };
    let at = Duration::from_millis(field("at_ms=").parse().unwrap());
    let ahead: f64 = field("forecast_s=").parse().unwrap();
    assert!(
        at + MARGIN <= killed_after,
        "forecast at {at:?}, killed at {killed_after:?}: less than {MARGIN:?} ahead\n{context}"
    );
    assert!(ahead > 0.0 && ahead < 30.0, "forecast {ahead} s\n{context}");
    assert!(
        stderr.contains("memsentry: watchdog: forecast: limit 256.0 MiB in"),
        "the stderr line\n{context}"
    );

    // The dump names the leak.
    let dump = field("dump=");
    assert!(
        Path::new(dump).starts_with(&dir) && dump.ends_with("-forecast.pb.gz"),
        "{dump}"
    );
    assert!(Path::new(dump).exists(), "{dump} is missing\n{context}");
    let stem = dump.trim_end_matches(".pb.gz");
    assert!(
        Path::new(&format!("{stem}.memory.events")).exists(),
        "the cgroup's events are saved beside the dump"
    );
    match share_through(dump, "leak_steadily") {
        Ok(share) => assert!(
            share >= 50.0,
            "leak_steadily holds {share}% of the dump's in-use space\n{context}"
        ),
        Err(why) => {
            let required = std::env::var_os("REQUIRE_CGROUP_TEST").is_some();
            assert!(!required, "cannot read the dump with go tool pprof: {why}");
            eprintln!("not checked with go tool pprof: {why}");
        }
    }

    // The next start in the same cgroup says the OOM killer ran since the last dump.
    let restart = cgroup
        .spawn_test(
            "child_starts_after_the_kill",
            &[("OOM_TEST_DIR", dir.to_str().unwrap())],
        )
        .wait_with_output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&restart.stderr);
    assert!(restart.status.success(), "{stderr}");
    let line = stderr
        .lines()
        .find(|l| l.contains("the OOM killer ran in cgroup"))
        .unwrap_or_else(|| panic!("no OOM notice at the next start:\n{stderr}"));
    assert_eq!(
        stderr.matches("the OOM killer ran").count(),
        1,
        "said once\n{stderr}"
    );
    let named = line.rsplit("the last dump is ").next().unwrap();
    assert!(
        Path::new(named).starts_with(&dir) && Path::new(named).exists(),
        "{line}"
    );
    std::fs::remove_dir_all(&dir).unwrap();
}

/// Run by the test above, in the same cgroup after the kill: starts and stops a
/// watchdog on the same directory.
#[test]
#[ignore = "run as a child process by the_watchdog_warns_and_dumps_before_the_oom_killer"]
fn child_starts_after_the_kill() {
    let dir = std::env::var("OOM_TEST_DIR").unwrap();
    memsentry::watch::Watchdog::new()
        .dir(&dir)
        .start()
        .unwrap()
        .stop();
}

/// The share (percent) of in-use space allocated through `function`, as `go tool pprof
/// -top -cum` reads it from the dump.
fn share_through(profile: &str, function: &str) -> Result<f64, String> {
    let gocache = std::env::temp_dir().join(format!("memsentry-oom-go-{}", std::process::id()));
    let output = Command::new("go")
        .args([
            "tool",
            "pprof",
            "-top",
            "-cum",
            "-sample_index=inuse_space",
            profile,
        ])
        .env("GOCACHE", &gocache)
        .env(
            "HOME",
            std::env::var_os("HOME").unwrap_or_else(|| gocache.clone().into()),
        )
        .output()
        .map_err(|e| format!("cannot run go: {e}"))?;
    let _ = std::fs::remove_dir_all(&gocache);
    let text = String::from_utf8_lossy(&output.stdout);
    if !output.status.success() {
        return Err(format!(
            "go tool pprof failed: {}",
            String::from_utf8_lossy(&output.stderr)
        ));
    }
    // Rows: flat flat% sum% cum cum% name.
    text.lines()
        .skip_while(|line| !line.contains("flat%"))
        .skip(1)
        .find(|row| {
            row.split_whitespace()
                .last()
                .is_some_and(|n| n.ends_with(function))
        })
        .and_then(|row| row.split_whitespace().nth(4))
        .and_then(|cum| cum.trim_end_matches('%').parse().ok())
        .ok_or_else(|| format!("no row for {function} in:\n{text}"))
}

/// Run by the test above inside the limited cgroup: leaks until the kernel kills it.
#[test]
#[ignore = "run as a child process by the_watchdog_warns_and_dumps_before_the_oom_killer"]
fn child_leaks_until_killed() {
    let dir = std::env::var("OOM_TEST_DIR").unwrap();
    let started = Instant::now();
    let watchdog = memsentry::watch::Watchdog::new()
        .interval(Duration::from_millis(100))
        .windows([Duration::from_secs(2), Duration::from_secs(5)])
        .forecast(Duration::from_secs(30))
        .cooldown(Duration::from_secs(60))
        .svg(false)
        .dir(&dir)
        .on_event(move |event| {
            let mut out = std::io::stdout().lock();
            let _ = writeln!(
                out,
                "EVENT {} at_ms={} forecast_s={} dump={}",
                event.trigger,
                started.elapsed().as_millis(),
                event.forecast.map_or(-1.0, |d| d.as_secs_f64()),
                event
                    .dump
                    .as_ref()
                    .map_or_else(|| "none".to_owned(), |p| p.display().to_string())
            );
            let _ = out.flush();
        })
        .start()
        .unwrap();
    let mut leaked = Vec::new();
    let tick = Duration::from_secs(1) / BLOCKS_PER_SECOND as u32;
    loop {
        leaked.push(leak_steadily());
        std::thread::sleep(tick);
        if leaked.len() % 32 == 0 {
            println!(
                "LEAKED {} MiB at_ms={}",
                leaked.len(),
                started.elapsed().as_millis()
            );
        }
        // Unreachable in the limited cgroup: the kernel kills the process first.
        if leaked.len() > 4096 {
            break;
        }
    }
    drop(watchdog);
    panic!("not killed after leaking {} MiB", leaked.len());
}

/// One leaked block, its pages touched so they are resident.
#[inline(never)]
fn leak_steadily() -> Vec<u8> {
    std::hint::black_box(vec![0x5a_u8; BLOCK])
}
