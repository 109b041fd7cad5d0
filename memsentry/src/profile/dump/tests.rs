//! Unit tests of the pure parts of `dump`: names, pruning, reporting, validation.

use super::store::*;
use super::*;
use std::time::UNIX_EPOCH;

#[test]
fn stems_are_utc_times() {
    let at = |secs: u64, micros: u64| stem(secs * 1_000_000 + micros, None);
    assert_eq!(at(0, 0), "heap-19700101T000000.000000Z");
    assert_eq!(at(1_795_428_902, 123_456), "heap-20261123T101502.123456Z");
    assert_eq!(at(951_782_400, 1), "heap-20000229T000000.000001Z");
    assert_eq!(at(1_709_164_799, 999_999), "heap-20240228T235959.999999Z");
    assert_eq!(at(1_709_164_800, 0), "heap-20240229T000000.000000Z");
    assert_eq!(
        stem(
            micros_since_epoch(UNIX_EPOCH - std::time::Duration::from_secs(1)),
            None
        ),
        "heap-19700101T000000.000000Z"
    );
}

/// Day by day through two 400-year cycles, against a plain leap-year rule.
#[test]
fn civil_from_days_walks_the_calendar() {
    let leap = |y: u64| y.is_multiple_of(4) && (!y.is_multiple_of(100) || y.is_multiple_of(400));
    let length = |y: u64, m: u64| match m {
        2 if leap(y) => 29,
        2 => 28,
        4 | 6 | 9 | 11 => 30,
        _ => 31,
    };
    let mut date = (1970, 1, 1);
    for days in 0..2 * 146_097 {
        assert_eq!(civil_from_days(days), date, "day {days}");
        let (y, m, d) = date;
        date = if d < length(y, m) {
            (y, m, d + 1)
        } else if m < 12 {
            (y, m + 1, 1)
        } else {
            (y + 1, 1, 1)
        };
    }
}

#[test]
fn stems_sort_by_time_and_are_recognised() {
    let times = [0, 999_999, 1_000_000, 86_400_000_000, 1_795_428_902_123_456];
    let stems: Vec<String> = times.iter().map(|&t| stem(t, None)).collect();
    assert!(stems.windows(2).all(|w| w[0] < w[1]), "{stems:?}");
    assert!(stems.iter().all(|s| is_stem(s)));
    for other in [
        "heap-",
        "heap-notes",
        "heap-20261123T101502.123456",
        "heap-20261123T101502.12345xZ",
        "heap-20261123X101502.123456Z",
        "heap-20261123T101502.123456Z-1",
        "prof-20261123T101502.123456Z",
    ] {
        assert!(!is_stem(other), "{other}");
    }
}

fn scratch(test: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("memsentry-dump-{}-{test}", process::id()));
    let _ = fs::remove_dir_all(&dir);
    fs::create_dir_all(&dir).unwrap();
    dir
}

fn names(dir: &Path) -> Vec<String> {
    let mut names: Vec<String> = fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().file_name().into_string().unwrap())
        .collect();
    names.sort();
    names
}

#[test]
fn prune_removes_the_oldest_with_their_svg_and_nothing_else() {
    let dir = scratch("prune");
    let stems: Vec<String> = (0..5).map(|i| stem(i * 1_000_000, None)).collect();
    for stem in &stems {
        fs::write(dir.join(format!("{stem}{PPROF_SUFFIX}")), b"x").unwrap();
    }
    fs::write(dir.join(format!("{}{SVG_SUFFIX}", stems[0])), b"x").unwrap();
    fs::write(dir.join(format!("{}{SVG_SUFFIX}", stems[4])), b"x").unwrap();
    let foreign = ["heap-notes.pb.gz", "notes.txt", ".heap-x.pb.gz.tmp"];
    for name in foreign {
        fs::write(dir.join(name), b"x").unwrap();
    }
    prune(&dir, 2, u64::MAX).unwrap();
    let mut expected: Vec<String> = foreign.iter().map(|s| (*s).to_owned()).collect();
    expected.push(format!("{}{PPROF_SUFFIX}", stems[3]));
    expected.push(format!("{}{PPROF_SUFFIX}", stems[4]));
    expected.push(format!("{}{SVG_SUFFIX}", stems[4]));
    expected.sort();
    assert_eq!(names(&dir), expected);
    prune(&dir, 2, u64::MAX).unwrap();
    assert_eq!(names(&dir), expected);
    fs::remove_dir_all(&dir).unwrap();
}

fn worker(dir: &Path) -> Worker {
    Worker {
        store: Store::new(dir.to_path_buf(), 1, u64::MAX),
        symbolization: Symbolization::InProcess,
        #[cfg(feature = "flamegraph")]
        svg: false,
        failing: false,
        counts: Arc::default(),
    }
}

#[test]
fn stems_strictly_increase_and_skip_taken_names() {
    let dir = scratch("stems");
    let mut worker = worker(&dir);
    let at = UNIX_EPOCH + std::time::Duration::from_secs(1_795_428_902);
    assert_eq!(
        worker.store.next_stem(at, None),
        "heap-20261123T101502.000000Z"
    );
    assert_eq!(
        worker.store.next_stem(at, None),
        "heap-20261123T101502.000001Z"
    );
    fs::write(dir.join("heap-20261123T101502.000002Z.pb.gz"), b"x").unwrap();
    fs::write(dir.join("heap-20261123T101502.000003Z.svg"), b"x").unwrap();
    assert_eq!(
        worker.store.next_stem(at, None),
        "heap-20261123T101502.000004Z"
    );
    fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn a_run_of_failures_is_reported_once() {
    let mut worker = worker(Path::new("/nowhere"));
    let failure = || {
        Err(Failure::Write(ProfileError::Write {
            path: PathBuf::from("/nowhere/heap.pb.gz"),
            source: io::Error::other("disk full"),
        }))
    };
    let mut stderr = Vec::new();
    worker.record(failure(), &mut stderr);
    worker.record(failure(), &mut stderr);
    worker.record(Ok(()), &mut stderr);
    worker.record(failure(), &mut stderr);
    let stderr = String::from_utf8(stderr).unwrap();
    let line = "memsentry: heap dump to /nowhere failed: cannot write profile to \
                /nowhere/heap.pb.gz: disk full\n";
    assert_eq!(stderr, line.repeat(2));
    assert_eq!(worker.counts.written.load(Ordering::Relaxed), 1);
    assert_eq!(worker.counts.failed.load(Ordering::Relaxed), 3);
}

#[test]
fn bad_settings_fail_before_registering() {
    let dir = scratch("settings");
    let error = SignalDumps::new(&dir).keep(0).start().unwrap_err();
    assert!(matches!(error, DumpError::Keep), "{error}");
    let error = SignalDumps::new(&dir)
        .signal(libc::SIGKILL)
        .start()
        .unwrap_err();
    assert!(
        matches!(error, DumpError::ForbiddenSignal { .. }),
        "{error}"
    );
    let error = SignalDumps::new(&dir).signal(0).start().unwrap_err();
    assert!(matches!(error, DumpError::Signal { .. }), "{error}");
    fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn reasons_follow_the_stamp_and_keep_the_order() {
    let plain = stem(1_000_000, None);
    let forecast = stem(1_000_000, Some("forecast"));
    assert_eq!(forecast, "heap-19700101T000001.000000Z-forecast");
    assert!(is_stem(&forecast) && is_stem(&stem(2, Some("pre-oom"))));
    assert!(plain < forecast && forecast < stem(1_000_001, None));
    // A reason of another shape is left out of the name rather than written.
    for bad in ["Forecast", "1st", "a/b", "", "a.b", &"x".repeat(33)] {
        assert_eq!(stem(1_000_000, Some(bad)), plain, "{bad:?}");
    }
    assert_eq!(
        split_name("heap-19700101T000001.000000Z-forecast.diff.pb.gz"),
        Some(("heap-19700101T000001.000000Z-forecast", ".diff.pb.gz"))
    );
    assert_eq!(split_name("heap-19700101T000001.000000Z-.pb.gz"), None);
}

#[test]
fn prune_keeps_a_byte_budget_and_every_file_of_a_dump_goes_together() {
    let dir = scratch("budget");
    let stems: Vec<String> = (0..4)
        .map(|i| stem(i * 1_000_000, Some("forecast")))
        .collect();
    for stem in &stems {
        fs::write(dir.join(format!("{stem}.pb.gz")), [0u8; 100]).unwrap();
        fs::write(dir.join(format!("{stem}.diff.pb.gz")), [0u8; 50]).unwrap();
        fs::write(dir.join(format!("{stem}.memory.events")), [0u8; 10]).unwrap();
    }
    // 160 bytes a dump: 400 bytes leave two.
    prune(&dir, 10, 400).unwrap();
    let left: Vec<String> = list(&dir).unwrap().into_iter().map(|f| f.name).collect();
    assert_eq!(left.len(), 6, "{left:?}");
    assert!(
        left.iter()
            .all(|n| n.starts_with(&stems[2]) || n.starts_with(&stems[3]))
    );
    // The newest stays even when it alone is over the budget.
    prune(&dir, 10, 1).unwrap();
    let left: Vec<String> = list(&dir).unwrap().into_iter().map(|f| f.name).collect();
    assert_eq!(left.len(), 3, "{left:?}");
    assert!(left.iter().all(|n| n.starts_with(&stems[3])));
    fs::remove_dir_all(&dir).unwrap();
}
