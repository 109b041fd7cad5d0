//! The README's main command, `cargo run --release --example demo`, works and prints what
//! it promises.

use memsentry_integration::cargo;

fn run_demo(args: &[&str], envs: &[(&str, &str)]) -> (bool, String, String) {
    let mut full = vec!["run", "--release", "--quiet", "--example", "demo", "--"];
    full.extend_from_slice(args);
    // Tests run demos side by side: each serves its endpoint on a port of its own.
    let mut envs = envs.to_vec();
    if !envs.iter().any(|(name, _)| *name == "MEMSENTRY_HTTP_ADDR") {
        envs.push(("MEMSENTRY_HTTP_ADDR", "127.0.0.1:0"));
    }
    let output = cargo(&full, &envs);
    (
        output.status.success(),
        String::from_utf8_lossy(&output.stdout).into_owned(),
        String::from_utf8_lossy(&output.stderr).into_owned(),
    )
}

/// An output directory of this test's own (tests run in parallel).
fn out_dir(test: &str) -> String {
    std::env::temp_dir()
        .join(format!("memsentry-{test}-{}", std::process::id()))
        .display()
        .to_string()
}

#[test]
fn demo_reports_every_second_and_ends_with_the_class_table() {
    let out = out_dir("demo-report");
    // A rate at which the leak's 16-48 KiB buffers are sampled often enough that two
    // seconds of it always outgrow the noise of the other sites' estimates.
    let (ok, stdout, stderr) = run_demo(
        &["--seconds", "3", "--out", &out],
        &[("MEMSENTRY_SAMPLE_RATE", "64KiB")],
    );
    assert!(ok, "demo failed:\n{stdout}\n{stderr}");
    // It ends by writing the profiles and saying how to open them.
    for file in ["heap.pb.gz", "diff.pb.gz", "heap-offline.pb.gz"] {
        let path = format!("{out}/{file}");
        assert!(stdout.contains(&format!("wrote {path}")), "{stdout}");
        let bytes = std::fs::read(&path).expect("the profile file");
        assert_eq!(&bytes[..2], &[0x1f, 0x8b], "{file} is gzipped");
    }
    assert!(stdout.contains(&format!("go tool pprof -top {out}/heap.pb.gz")));
    assert!(stdout.contains(&format!("go tool pprof -top {out}/diff.pb.gz")));
    assert!(
        stdout.contains(&format!("examples/demo {out}/heap-offline.pb.gz")),
        "the offline profile is opened with the binary:\n{stdout}"
    );
    let svg = std::fs::read_to_string(format!("{out}/heap.svg")).expect("the flame graph");
    assert!(svg.contains("<svg") && svg.contains("leak_session_buffers"));
    // And prints the profile's top in-use functions.
    assert!(stdout.contains("inuse_space: "), "{stdout}");
    assert!(
        stdout.contains("      flat  flat%   sum%        cum   cum%  function"),
        "{stdout}"
    );
    // Then the top of the diff against the first second: the leak first.
    let diff = stdout
        .split("what grew since the first second (the leak first):\n")
        .nth(1)
        .expect("the diff's top report");
    let mut lines = diff.lines();
    // The net change may have either sign (the cache churns); the leak's is positive.
    assert!(
        lines.next().unwrap().starts_with("inuse_space_change: "),
        "{diff}"
    );
    lines.next(); // headings
    let first = lines.next().unwrap();
    assert!(
        first.trim_start().starts_with('+') && first.ends_with("demo::leak_session_buffers"),
        "{diff}"
    );
    let lines: Vec<&str> = stdout.lines().filter(|l| l.contains("s  live ")).collect();
    assert_eq!(lines.len(), 3, "one line per second:\n{stdout}");
    for (second, line) in lines.iter().enumerate() {
        assert!(
            line.trim_start().starts_with(&format!("{}s", second + 1)),
            "{line}"
        );
        for field in ["alloc", "resident", "frag"] {
            assert!(line.contains(field), "{field} missing in {line}");
        }
    }
    assert!(stdout.contains("(bookkeeping on)"));
    // The watchdog: a forecast within the run, an automatic dump into OUT/watchdog, and
    // its status at the end.
    assert!(
        stdout.contains("watchdog: forecasting against a demo limit of "),
        "{stdout}"
    );
    assert!(
        lines.iter().any(|l| l.contains("forecast limit in ")),
        "a forecast within 3 s:\n{stdout}"
    );
    let dumps: Vec<String> = std::fs::read_dir(format!("{out}/watchdog"))
        .map(|entries| {
            entries
                .map(|e| e.unwrap().file_name().into_string().unwrap())
                .filter(|n| n.ends_with("-forecast.pb.gz"))
                .collect()
        })
        .unwrap_or_default();
    assert!(
        !dumps.is_empty(),
        "no forecast dump in {out}/watchdog\n{stderr}"
    );
    assert!(
        stderr.contains("memsentry: watchdog: forecast: limit "),
        "{stderr}"
    );
    assert!(
        stdout.contains("\nwatchdog: "),
        "the final status:\n{stdout}"
    );
    // The task table: the leaking task's instances are alive, the handler's finished.
    let tasks = stdout
        .split("tasks (watch_session never finishes: a task leak):\n")
        .nth(1)
        .expect("the task table");
    let live = |name: &str| -> u64 {
        let line = tasks
            .lines()
            .find(|l| l.starts_with(name))
            .unwrap_or_else(|| panic!("{name} missing:\n{tasks}"));
        line.split_whitespace().nth(1).unwrap().parse().unwrap()
    };
    // One is spawned every tenth 10 ms tick (~30 in 3 s; fewer on a loaded machine, whose
    // sleeps overshoot), and none ends.
    assert!(live("demo::watch_session") >= 10, "{tasks}");
    assert!(live("demo::api_call") < 20, "{tasks}");
    assert!(stdout.contains("leaked on purpose by leak_session_buffers"));
    let table = stdout
        .lines()
        .position(|l| l.trim_start().starts_with("class "))
        .expect("the per-class table");
    let rows = stdout
        .lines()
        .skip(table + 1)
        .filter(|l| !l.is_empty())
        .count();
    assert!(rows >= 10, "the workload uses many size classes:\n{stdout}");
    for heading in [
        "live ",
        "cumulative ",
        "jemalloc    allocated",
        "process     resident",
    ] {
        assert!(stdout.contains(heading), "{heading:?} missing:\n{stdout}");
    }
    std::fs::remove_dir_all(&out).unwrap();
}

#[test]
fn demo_with_memsentry_off_says_so() {
    let out = out_dir("demo-off");
    let (ok, stdout, stderr) =
        run_demo(&["--seconds", "1", "--out", &out], &[("MEMSENTRY", "off")]);
    std::fs::remove_dir_all(&out).ok();
    assert!(ok, "demo failed:\n{stdout}\n{stderr}");
    assert!(stdout.contains("(bookkeeping off)"), "{stdout}");
    // (The watchdog's lines are its events, not warnings.)
    assert!(
        !stderr
            .lines()
            .any(|l| l.starts_with("memsentry:") && !l.starts_with("memsentry: watchdog:")),
        "no warning for a valid value: {stderr}"
    );
}

#[test]
fn demo_refuses_bad_arguments() {
    for args in [
        &["--seconds", "0"][..],
        &["--seconds"],
        &["--fast"],
        &["--out"],
    ] {
        let (ok, _, stderr) = run_demo(args, &[]);
        assert!(!ok, "{args:?} should fail");
        assert!(stderr.contains("usage: demo"), "{args:?}: {stderr}");
    }
}

#[test]
fn demo_reports_an_unwritable_output_directory() {
    // A directory under a regular file cannot be created.
    let (ok, _, stderr) = run_demo(&["--seconds", "1", "--out", "/dev/null/profiles"], &[]);
    assert!(!ok);
    assert!(
        stderr.contains("demo: cannot create /dev/null/profiles: "),
        "{stderr}"
    );
}

/// A GET over a plain TCP connection; the whole answer as text.
fn http_get(addr: &str, path: &str) -> String {
    use std::io::{Read, Write};
    let mut stream = std::net::TcpStream::connect(addr).expect("the demo's endpoint");
    write!(stream, "GET {path} HTTP/1.1\r\nHost: demo\r\n\r\n").unwrap();
    let mut answer = String::new();
    stream.read_to_string(&mut answer).unwrap();
    answer
}

#[test]
fn demo_serves_metrics_and_profiles_while_it_runs() {
    use std::io::{BufRead, BufReader};
    use std::process::{Command, Stdio};
    let out = out_dir("demo-http");
    let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".to_owned());
    let mut child = Command::new(cargo)
        .args(["run", "--release", "--quiet", "--example", "demo", "--"])
        .args(["--seconds", "3", "--out", &out])
        .env("MEMSENTRY_HTTP_ADDR", "127.0.0.1:0")
        .current_dir(memsentry_integration::workspace_root())
        .stdout(Stdio::piped())
        .spawn()
        .expect("cargo runs");
    let mut lines = BufReader::new(child.stdout.take().unwrap()).lines();
    // It says where it serves, before the workload's first line.
    let addr = lines
        .by_ref()
        .map(Result::unwrap)
        .find_map(|line| {
            line.strip_prefix("serving http://")
                .and_then(|rest| rest.split('/').next())
                .map(str::to_owned)
        })
        .expect("the demo prints its address");
    let metrics = http_get(&addr, "/metrics");
    assert!(metrics.starts_with("HTTP/1.1 200 "), "{metrics}");
    assert!(metrics.contains("\nmemsentry_live_bytes "), "{metrics}");
    let top = http_get(&addr, "/debug/pprof/heap?debug=1");
    assert!(top.contains("inuse_space: "), "{top}");
    // Drain the rest, then it ends well.
    lines.for_each(drop);
    assert!(child.wait().unwrap().success());
    std::fs::remove_dir_all(&out).ok();
}
