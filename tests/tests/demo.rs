//! The README's main command, `cargo run --release --example demo`, works and prints what
//! it promises.

use memsentry_integration::cargo;

fn run_demo(args: &[&str], envs: &[(&str, &str)]) -> (bool, String, String) {
    let mut full = vec!["run", "--release", "--quiet", "--example", "demo", "--"];
    full.extend_from_slice(args);
    let output = cargo(&full, envs);
    (
        output.status.success(),
        String::from_utf8_lossy(&output.stdout).into_owned(),
        String::from_utf8_lossy(&output.stderr).into_owned(),
    )
}

/// A profile path of this test's own (tests run in parallel).
fn profile_path(test: &str) -> String {
    std::env::temp_dir()
        .join(format!("memsentry-{test}-{}.pb.gz", std::process::id()))
        .display()
        .to_string()
}

#[test]
fn demo_reports_every_second_and_ends_with_the_class_table() {
    let profile = profile_path("demo-report");
    let (ok, stdout, stderr) = run_demo(&["--seconds", "3", "--profile", &profile], &[]);
    assert!(ok, "demo failed:\n{stdout}\n{stderr}");
    // It ends by writing a heap profile and saying how to open it.
    assert!(stdout.contains(&format!("wrote {profile}")), "{stdout}");
    assert!(
        stdout.contains(&format!("go tool pprof -top {profile}")),
        "{stdout}"
    );
    // And prints the profile's top in-use functions.
    assert!(stdout.contains("inuse_space: "), "{stdout}");
    assert!(
        stdout.contains("      flat  flat%   sum%        cum   cum%  function"),
        "{stdout}"
    );
    let bytes = std::fs::read(&profile).expect("the profile file");
    assert_eq!(&bytes[..2], &[0x1f, 0x8b], "gzipped");
    std::fs::remove_file(&profile).unwrap();
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
}

#[test]
fn demo_with_memsentry_off_says_so() {
    let profile = profile_path("demo-off");
    let (ok, stdout, stderr) = run_demo(
        &["--seconds", "1", "--profile", &profile],
        &[("MEMSENTRY", "off")],
    );
    std::fs::remove_file(&profile).ok();
    assert!(ok, "demo failed:\n{stdout}\n{stderr}");
    assert!(stdout.contains("(bookkeeping off)"), "{stdout}");
    assert!(
        !stderr.contains("memsentry:"),
        "no warning for a valid value: {stderr}"
    );
}

#[test]
fn demo_refuses_bad_arguments() {
    for args in [
        &["--seconds", "0"][..],
        &["--seconds"],
        &["--fast"],
        &["--profile"],
    ] {
        let (ok, _, stderr) = run_demo(args, &[]);
        assert!(!ok, "{args:?} should fail");
        assert!(stderr.contains("usage: demo"), "{args:?}: {stderr}");
    }
}

#[test]
fn demo_reports_an_unwritable_profile_path() {
    let (ok, _, stderr) = run_demo(
        &["--seconds", "1", "--profile", "/nonexistent-dir/heap.pb.gz"],
        &[],
    );
    assert!(!ok);
    assert!(
        stderr.contains("cannot write profile to /nonexistent-dir/heap.pb.gz"),
        "{stderr}"
    );
}
