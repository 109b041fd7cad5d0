//! The watchdog at work in a real process: retention of its dumps, a dump directory that
//! goes bad, and pressure handlers that panic, allocate or block. One watchdog runs per
//! process, so the tests take turns.

// `memsentry/clippy.toml` bans allocating types for the allocator's hot path; tests are not.
#![allow(clippy::disallowed_types, clippy::disallowed_macros)]

use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use memsentry::MemSentry;
use memsentry::watch::{Pressure, Trigger, WatchStatus, Watchdog, WatchdogHandle};

#[global_allocator]
static GLOBAL: MemSentry = MemSentry::new();

static TURN: Mutex<()> = Mutex::new(());

fn turn() -> MutexGuard<'static, ()> {
    TURN.lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner)
}

fn scratch(test: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("memsentry-watch-{}-{test}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    dir
}

/// Waits (up to 30 s) until `ready` holds for the watchdog's status.
fn wait_for(watchdog: &WatchdogHandle, what: &str, ready: impl Fn(&WatchStatus) -> bool) {
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let status = watchdog.status();
        if ready(&status) {
            return;
        }
        assert!(
            Instant::now() < deadline,
            "waited 30 s for {what}:\n{status}"
        );
        std::thread::sleep(Duration::from_millis(2));
    }
}

fn fired(status: &WatchStatus, trigger: Trigger) -> (u64, bool) {
    let count = status
        .triggers
        .iter()
        .find(|t| t.trigger == trigger)
        .unwrap();
    (count.fired, count.active)
}

/// A watchdog that fires [`Trigger::LiveBytes`] when live bytes grow by 64 MiB, at once
/// each time (no cooldown), and no other trigger.
fn live_bytes_watchdog(dir: &Path) -> Watchdog {
    let live = memsentry::totals().live_bytes();
    Watchdog::new()
        .interval(Duration::from_millis(10))
        .windows([Duration::from_millis(40)])
        .forecast(Duration::ZERO)
        .sustained_growth(false)
        .psi(false)
        .pre_oom(1.0)
        .cooldown(Duration::ZERO)
        .live_bytes(live + (64 << 20))
        .svg(false)
        .dir(dir)
}

/// One episode of the live-bytes trigger: 128 MiB held (not touched: only counted) until
/// it has fired, then freed until it has cleared.
fn fire_once(watchdog: &WatchdogHandle) {
    let before = fired(&watchdog.status(), Trigger::LiveBytes).0;
    // black_box: an optimised build would elide an allocation nothing reads.
    let block: Vec<u8> = std::hint::black_box(Vec::with_capacity(128 << 20));
    wait_for(watchdog, "the trigger to fire", |s| {
        fired(s, Trigger::LiveBytes).0 > before
    });
    drop(block);
    wait_for(watchdog, "the trigger to clear", |s| {
        !fired(s, Trigger::LiveBytes).1
    });
}

fn pprof_files(dir: &Path) -> Vec<String> {
    let mut names: Vec<String> = std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().file_name().into_string().unwrap())
        .filter(|n| n.ends_with(".pb.gz") && !n.ends_with(".diff.pb.gz"))
        .collect();
    names.sort();
    names
}

#[test]
fn fifty_firings_with_keep_3_leave_3_dumps() {
    let _turn = turn();
    let dir = scratch("keep");
    let watchdog = live_bytes_watchdog(&dir).keep(3).start().unwrap();
    for _ in 0..50 {
        fire_once(&watchdog);
    }
    let status = watchdog.status();
    assert_eq!(fired(&status, Trigger::LiveBytes).0, 50, "{status}");
    assert_eq!(
        (status.dumps_written, status.dump_errors),
        (50, 0),
        "{status}"
    );
    let dumps = pprof_files(&dir);
    assert_eq!(dumps.len(), 3, "{dumps:?}");
    assert!(
        dumps.iter().all(|n| n.ends_with("-live-bytes.pb.gz")),
        "{dumps:?}"
    );
    let last = status.last_dump.unwrap();
    assert_eq!(
        last.file_name().unwrap().to_str().unwrap(),
        dumps[2],
        "the newest stays"
    );
    // Every other file in the directory belongs to one of the three.
    for entry in std::fs::read_dir(&dir).unwrap() {
        let name = entry.unwrap().file_name().into_string().unwrap();
        assert!(
            dumps
                .iter()
                .any(|d| name.starts_with(d.trim_end_matches(".pb.gz"))),
            "{name} outlived its dump"
        );
    }
    watchdog.stop();
    std::fs::remove_dir_all(&dir).unwrap();
}

/// The directory is replaced by a file while the watchdog runs: each dump fails, one
/// line on stderr says so, and the watchdog goes on. Run in a child process, whose stderr
/// is read.
#[test]
fn a_bad_directory_is_an_error_line_and_a_count() {
    let _turn = turn();
    let output = Command::new(std::env::current_exe().unwrap())
        .args([
            "child_with_a_bad_directory",
            "--exact",
            "--ignored",
            "--nocapture",
        ])
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&output.stdout);
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(output.status.success(), "child failed:\n{stdout}\n{stderr}");
    let errors: Vec<&str> = stderr
        .lines()
        .filter(|l| l.starts_with("memsentry: watchdog: heap dump to "))
        .collect();
    assert_eq!(errors.len(), 1, "one line for a run of failures:\n{stderr}");
    assert!(
        errors[0].contains("failed: cannot create the directory"),
        "{}",
        errors[0]
    );
    assert!(stdout.contains("dump_errors=3 dumps_written=1"), "{stdout}");
}

#[test]
#[ignore = "run as a child process by a_bad_directory_is_an_error_line_and_a_count"]
fn child_with_a_bad_directory() {
    let dir = scratch("bad-dir");
    let watchdog = live_bytes_watchdog(&dir).start().unwrap();
    fire_once(&watchdog);
    std::fs::remove_dir_all(&dir).unwrap();
    std::fs::write(&dir, b"not a directory").unwrap();
    for _ in 0..3 {
        fire_once(&watchdog);
    }
    let status = watchdog.status();
    let ticks = status.ticks;
    std::thread::sleep(Duration::from_millis(100));
    assert!(watchdog.status().ticks > ticks, "the watchdog goes on");
    println!(
        "dump_errors={} dumps_written={}",
        status.dump_errors, status.dumps_written
    );
    watchdog.stop();
    std::fs::remove_file(&dir).unwrap();
}

/// Handlers that panic, allocate heavily and block for a second: the watchdog keeps
/// ticking, counts the panic and the late tick, and does not make up missed ticks in a
/// burst.
#[test]
fn misbehaving_pressure_handlers_do_not_stop_the_watchdog() {
    let _turn = turn();
    let calls = Arc::new(AtomicU64::new(0));
    let _panics = memsentry::watch::on_pressure(Pressure::Moderate, |_| {
        panic!("a handler that panics");
    });
    let _allocates = memsentry::watch::on_pressure(Pressure::Moderate, |_| {
        let blocks: Vec<Vec<u8>> = (0..8192).map(|i| vec![1u8; 4096 + i]).collect();
        std::hint::black_box(blocks);
    });
    let blocked_at = Arc::new(Mutex::new(None));
    let _blocks = {
        let (calls, blocked_at) = (Arc::clone(&calls), Arc::clone(&blocked_at));
        memsentry::watch::on_pressure(Pressure::Critical, move |level| {
            assert_eq!(level, Pressure::Critical);
            if calls.fetch_add(1, Ordering::SeqCst) == 0 {
                *blocked_at.lock().unwrap() = Some(Instant::now());
                std::thread::sleep(Duration::from_secs(1));
            }
        })
    };
    // A limit just under the resident set: critical pressure from the first tick.
    let resident = memsentry::snapshot().resident_bytes.unwrap();
    let watchdog = Watchdog::new()
        .interval(Duration::from_millis(100))
        .windows([Duration::from_secs(1)])
        .limit(resident / 2)
        .cooldown(Duration::from_millis(300))
        .psi(false)
        .start()
        .unwrap();
    wait_for(&watchdog, "the blocking handler", |_| {
        calls.load(Ordering::SeqCst) >= 1
    });
    wait_for(&watchdog, "the tick after it", |s| s.late_ticks >= 1);
    let after_block = watchdog.status().ticks;
    std::thread::sleep(Duration::from_secs(1));
    let status = watchdog.status();
    let ticks = status.ticks - after_block;
    assert!(
        (5..=14).contains(&ticks),
        "{ticks} ticks in the second after the block: on schedule, no burst\n{status}"
    );
    assert!(status.late_ticks <= 2, "{status}");
    assert!(status.handler_panics >= 2, "{status}");
    assert!(
        calls.load(Ordering::SeqCst) >= 2,
        "handlers are called again after the cooldown"
    );
    assert_eq!(status.pressure, Some(Pressure::Critical), "{status}");
    assert!(fired(&status, Trigger::PreOom).0 >= 1, "{status}");
    watchdog.stop();
}

#[test]
fn only_one_watchdog_runs_and_bad_settings_are_refused() {
    let _turn = turn();
    let first = Watchdog::new().psi(false).start().unwrap();
    let error = Watchdog::new().start().unwrap_err();
    assert!(
        matches!(error, memsentry::watch::WatchError::Running),
        "{error}"
    );
    assert!(memsentry::watch::status().is_some());
    first.stop();
    assert!(memsentry::watch::status().is_none());
    for bad in [
        Watchdog::new().interval(Duration::ZERO),
        Watchdog::new().windows([]),
        Watchdog::new()
            .interval(Duration::from_secs(1))
            .windows([Duration::from_secs(2)]),
        Watchdog::new().pre_oom(1.5),
        Watchdog::new().keep(0),
    ] {
        let error = bad.start().unwrap_err();
        assert!(
            matches!(error, memsentry::watch::WatchError::Settings(_)),
            "{error}"
        );
    }
    let file = scratch("file");
    std::fs::write(&file, b"x").unwrap();
    let error = Watchdog::new().dir(&file).start().unwrap_err();
    assert!(
        error
            .to_string()
            .starts_with(&format!("cannot use {}", file.display())),
        "{error}"
    );
    std::fs::remove_file(&file).unwrap();
}

/// systemd's `$MEMORY_PRESSURE_WATCH` naming a FIFO: a write to it is a pressure event.
/// Run in a child process, whose environment carries the variable.
#[test]
fn systemd_pressure_fifo_fires_the_pressure_trigger() {
    let _turn = turn();
    let fifo = scratch("pressure.fifo");
    let path = std::ffi::CString::new(fifo.to_str().unwrap()).unwrap();
    // SAFETY: `path` is a NUL-terminated path.
    assert_eq!(unsafe { libc::mkfifo(path.as_ptr(), 0o600) }, 0);
    let output = Command::new(std::env::current_exe().unwrap())
        .args([
            "child_with_a_pressure_fifo",
            "--exact",
            "--ignored",
            "--nocapture",
        ])
        .env("MEMORY_PRESSURE_WATCH", &fifo)
        .output()
        .unwrap();
    std::fs::remove_file(&fifo).unwrap();
    let stdout = String::from_utf8_lossy(&output.stdout);
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(output.status.success(), "child failed:\n{stdout}\n{stderr}");
    assert!(
        stderr.contains("memsentry: watchdog: pressure: "),
        "{stderr}"
    );
    // /dev/null there turns pressure watching off.
    let output = Command::new(std::env::current_exe().unwrap())
        .args([
            "child_with_pressure_off",
            "--exact",
            "--ignored",
            "--nocapture",
        ])
        .env("MEMORY_PRESSURE_WATCH", "/dev/null")
        .output()
        .unwrap();
    assert!(
        output.status.success(),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
}

#[test]
#[ignore = "run as a child process by systemd_pressure_fifo_fires_the_pressure_trigger"]
fn child_with_a_pressure_fifo() {
    let fifo = PathBuf::from(std::env::var_os("MEMORY_PRESSURE_WATCH").unwrap());
    let watchdog = Watchdog::new()
        .interval(Duration::from_secs(3600))
        .windows([Duration::from_secs(4 * 3600)])
        .start()
        .unwrap();
    let status = watchdog.status();
    assert!(status.psi.starts_with("FIFO trigger on "), "{}", status.psi);
    // A tick every hour: only the FIFO can wake the watchdog before the test ends.
    wait_for(&watchdog, "the first tick", |s| s.ticks >= 1);
    std::fs::write(&fifo, b"pressure").unwrap();
    wait_for(&watchdog, "the pressure event", |s| {
        fired(s, Trigger::Pressure).0 == 1
    });
    assert_eq!(watchdog.status().pressure, Some(Pressure::Moderate));
    watchdog.stop();
}

#[test]
#[ignore = "run as a child process by systemd_pressure_fifo_fires_the_pressure_trigger"]
fn child_with_pressure_off() {
    let watchdog = Watchdog::new().start().unwrap();
    let psi = watchdog.status().psi;
    assert!(
        psi.starts_with("off (MEMORY_PRESSURE_WATCH=/dev/null"),
        "{psi}"
    );
    watchdog.stop();
}
