//! Heap profiles on a signal: a real signal from another process (`kill`) makes
//! the dumper write a readable pprof file; `keep` bounds the directory; a directory that
//! disappears or cannot be written never stops the dumps or the process.
//!
//! Tests in this file are threads of one process, and every handler of a signal sees every
//! instance of it: the two `SIGUSR2` tests take turns, the third uses `SIGUSR1`. A signal
//! is only ever sent while a dumper handles it (the default action of both kills).

#![allow(clippy::disallowed_types, clippy::disallowed_macros)]

use std::hint::black_box;
use std::io::Read;
use std::path::{Path, PathBuf};
use std::process::{self, Command};
use std::sync::{Mutex, MutexGuard, PoisonError};
use std::time::{Duration, Instant};

use memsentry::MemSentry;
use memsentry::profile::{self, dump::SignalDumps};

#[global_allocator]
static GLOBAL: MemSentry = MemSentry::new();

/// Turns at `SIGUSR2`; also sets a rate small enough that the live blocks are sampled.
fn sigusr2() -> MutexGuard<'static, ()> {
    static LOCK: Mutex<()> = Mutex::new(());
    let guard = LOCK.lock().unwrap_or_else(PoisonError::into_inner);
    profile::set_sample_rate(4096);
    guard
}

/// A fresh directory for one test, removed when dropped (also when the test fails).
struct Scratch(PathBuf);

impl Scratch {
    fn new(test: &str) -> Scratch {
        let dir =
            std::env::temp_dir().join(format!("memsentry-signal-dump-{}-{test}", process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        Scratch(dir)
    }
}

impl Drop for Scratch {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// Blocks that stay allocated while the test runs, under a name the profile must show.
#[inline(never)]
fn live_blocks() -> Vec<Box<[u8]>> {
    // `black_box`: no tail call, so the frame stays on the stack in release builds too.
    black_box(
        (0..2048)
            .map(|i| black_box(vec![u8::try_from(i % 251).unwrap(); 4096]).into_boxed_slice())
            .collect(),
    )
}

/// Sends this process `signal` (a name `kill -s` takes) from another process.
fn kill(signal: &str) {
    let status = Command::new("kill")
        .args(["-s", signal, &process::id().to_string()])
        .status()
        .expect("run kill");
    assert!(status.success(), "kill -s {signal}: {status}");
}

/// Polls `done` until it holds, for at most 20 s.
fn wait_for(what: &str, mut done: impl FnMut() -> bool) {
    let deadline = Instant::now() + Duration::from_secs(20);
    while !done() {
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        std::thread::sleep(Duration::from_millis(5));
    }
}

/// The pprof files in `dir`, sorted by name.
fn pprof_files(dir: &Path) -> Vec<String> {
    let mut names: Vec<String> = std::fs::read_dir(dir)
        .unwrap()
        .map(|entry| entry.unwrap().file_name().into_string().unwrap())
        .filter(|name| name.ends_with(".pb.gz"))
        .collect();
    names.sort();
    names
}

fn gunzip(path: &Path) -> Vec<u8> {
    let gz = std::fs::read(path).unwrap();
    assert!(!gz.is_empty(), "{} is empty", path.display());
    let mut raw = Vec::new();
    flate2::read::GzDecoder::new(&gz[..])
        .read_to_end(&mut raw)
        .unwrap_or_else(|e| panic!("{} is not gzip: {e}", path.display()));
    raw
}

#[test]
fn sigusr2_writes_a_readable_profile() {
    let _turn = sigusr2();
    let scratch = Scratch::new("readable");
    let dir = scratch.0.join("heap"); // start() creates it
    let blocks = live_blocks();
    let dumper = SignalDumps::new(&dir).start().unwrap();
    assert_eq!(dumper.dir(), dir);
    assert!(pprof_files(&dir).is_empty());

    kill("USR2");
    wait_for("the dump", || dumper.dumps_written() == 1);
    let files = pprof_files(&dir);
    assert_eq!(files.len(), 1, "{files:?}");
    assert!(files[0].starts_with("heap-") && files[0].ends_with("Z.pb.gz"));
    let raw = gunzip(&dir.join(&files[0]));
    // profile.proto field 1 (sample_type, length-delimited) comes first: tag 0x0a.
    assert_eq!(raw.first(), Some(&0x0a));
    // Function names are plain strings in the string table: the live site is there.
    let site = b"live_blocks";
    assert!(raw.windows(site.len()).any(|w| w == site));
    assert_eq!(dumper.dumps_failed(), 0);
    dumper.stop();
    // Only the renamed file: no temporary left behind.
    assert_eq!(std::fs::read_dir(&dir).unwrap().count(), 1);
    drop(blocks);
}

#[test]
fn keep_3_leaves_the_3_newest_of_5() {
    let _turn = sigusr2();
    let scratch = Scratch::new("keep");
    let dir = &scratch.0;
    // Files that are not dumps are never pruned, even with a name that looks close.
    std::fs::write(dir.join("notes.txt"), "mine").unwrap();
    std::fs::write(dir.join("heap-notes.pb.gz"), "mine").unwrap();
    let blocks = live_blocks();
    let dumper = SignalDumps::new(dir).keep(3).start().unwrap();

    let mut written = Vec::new();
    for n in 1..=5 {
        // One at a time: signals sent back to back may merge into one dump.
        kill("USR2");
        wait_for("a dump", || dumper.dumps_written() == n);
        let newest = pprof_files(dir)
            .into_iter()
            .rfind(|name| name.as_str() != "heap-notes.pb.gz")
            .unwrap();
        written.push(newest);
    }
    drop(dumper);
    assert!(written.windows(2).all(|w| w[0] < w[1]), "{written:?}");
    let mut expected = written[2..].to_vec();
    expected.push("heap-notes.pb.gz".to_owned());
    expected.sort();
    assert_eq!(pprof_files(dir), expected);
    assert_eq!(
        std::fs::read_to_string(dir.join("notes.txt")).unwrap(),
        "mine"
    );
    for name in &written[2..] {
        assert!(!gunzip(&dir.join(name)).is_empty());
    }
    drop(blocks);
}

#[test]
fn directory_errors_never_stop_the_dumps() {
    profile::set_sample_rate(4096);
    let scratch = Scratch::new("errors");

    // A directory under a regular file cannot be created: start() says where.
    let file = scratch.0.join("file");
    std::fs::write(&file, "").unwrap();
    let error = SignalDumps::new(file.join("heap"))
        .signal(libc::SIGUSR1)
        .start()
        .unwrap_err();
    assert!(
        error
            .to_string()
            .contains(&*file.join("heap").to_string_lossy()),
        "{error}"
    );

    let dir = scratch.0.join("heap");
    let dumper = SignalDumps::new(&dir)
        .signal(libc::SIGUSR1)
        .start()
        .unwrap();
    // Removed after start: the next dump creates it again.
    std::fs::remove_dir_all(&dir).unwrap();
    kill("USR1");
    wait_for("a dump into the re-created directory", || {
        dumper.dumps_written() == 1
    });
    assert_eq!(pprof_files(&dir).len(), 1);

    // Replaced by a regular file: dumps fail (reported once on stderr), the process and
    // the dumper live on.
    std::fs::remove_dir_all(&dir).unwrap();
    std::fs::write(&dir, "in the way").unwrap();
    kill("USR1");
    wait_for("a failed dump", || dumper.dumps_failed() == 1);
    kill("USR1");
    wait_for("another failed dump", || dumper.dumps_failed() == 2);
    assert_eq!(dumper.dumps_written(), 1);

    // Out of the way again: the next signal succeeds.
    std::fs::remove_file(&dir).unwrap();
    kill("USR1");
    wait_for("a dump after the failures", || dumper.dumps_written() == 2);
    let files = pprof_files(&dir);
    assert_eq!(files.len(), 1, "{files:?}");
    assert!(!gunzip(&dir.join(&files[0])).is_empty());
    assert_eq!(dumper.dumps_failed(), 2);
}

/// Offline dumps with their flame graphs, on a signal of the caller's choice (`SIGWINCH`:
/// its default action is to do nothing, so no turn is needed).
#[cfg(feature = "flamegraph")]
#[test]
fn offline_dumps_with_flame_graphs_on_another_signal() {
    profile::set_sample_rate(4096);
    let scratch = Scratch::new("svg");
    let dir = &scratch.0;
    let blocks = live_blocks();
    let dumper = SignalDumps::new(dir)
        .signal(libc::SIGWINCH)
        .symbolization(profile::Symbolization::Offline)
        .svg(true)
        .keep(1)
        .start()
        .unwrap();
    for n in 1..=2 {
        kill("WINCH");
        wait_for("a dump", || dumper.dumps_written() == n);
    }
    drop(dumper);
    let files = pprof_files(dir);
    assert_eq!(files.len(), 1, "{files:?}");
    let svg_name = files[0].replace(".pb.gz", ".svg");
    let mut all: Vec<String> = std::fs::read_dir(dir)
        .unwrap()
        .map(|entry| entry.unwrap().file_name().into_string().unwrap())
        .collect();
    all.sort();
    assert_eq!(
        all,
        [files[0].clone(), svg_name.clone()],
        "the older pair is gone"
    );
    let svg = std::fs::read_to_string(dir.join(&svg_name)).unwrap();
    assert!(svg.starts_with("<?xml") && svg.trim_end().ends_with("</svg>"));
    // Offline: no function names in the pprof file, only addresses and the mapping.
    let raw = gunzip(&dir.join(&files[0]));
    let site = b"live_blocks";
    assert!(!raw.windows(site.len()).any(|w| w == site));
    drop(blocks);
}
