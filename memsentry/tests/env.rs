//! `MEMSENTRY` and `MEMSENTRY_SAMPLE_RATE` in the environment at start: `off` turns
//! bookkeeping off, a byte count sets the sampling rate; anything not understood gets
//! exactly one warning on stderr and the default. Each case runs this
//! test binary again as a child process with its own environment.

// `memsentry/clippy.toml` bans allocating types for the allocator's hot path; tests are not.
#![allow(clippy::disallowed_types, clippy::disallowed_macros)]

use std::process::Command;

use memsentry::MemSentry;

#[global_allocator]
static GLOBAL: MemSentry = MemSentry::new();

/// Runs `child_checks_mode` in a child process with `vars` set; returns its stderr.
fn run_child(vars: &[(&str, &str)], expect_on: bool) -> String {
    run_child_with_rate(vars, expect_on, memsentry::profile::DEFAULT_RATE)
}

fn run_child_with_rate(vars: &[(&str, &str)], expect_on: bool, expect_rate: u64) -> String {
    let mut command = Command::new(std::env::current_exe().unwrap());
    command
        .args(["child_checks_mode", "--exact", "--ignored", "--nocapture"])
        .env("CHILD_EXPECT_ON", if expect_on { "1" } else { "0" })
        .env("CHILD_EXPECT_RATE", expect_rate.to_string());
    for (name, value) in vars {
        command.env(name, value);
    }
    let output = command.output().unwrap();
    let stderr = String::from_utf8(output.stderr).unwrap();
    let stdout = String::from_utf8(output.stdout).unwrap();
    assert!(
        output.status.success(),
        "child with {vars:?} failed:\n{stdout}\n{stderr}"
    );
    assert!(stdout.contains("1 passed"), "the child test ran: {stdout}");
    stderr
}

fn warnings(stderr: &str) -> Vec<&str> {
    stderr
        .lines()
        .filter(|l| l.starts_with("memsentry:"))
        .collect()
}

#[test]
fn environment_switch() {
    let stderr = run_child(&[("MEMSENTRY", "off")], false);
    assert_eq!(warnings(&stderr), Vec::<&str>::new());

    let stderr = run_child(&[("MEMSENTRY", "ON")], true);
    assert_eq!(warnings(&stderr), Vec::<&str>::new());

    let stderr = run_child(&[("MEMSENTRY", "sometimes")], true);
    assert_eq!(
        warnings(&stderr),
        [
            "memsentry: MEMSENTRY=\"sometimes\" is not understood (expected on or off): \
             bookkeeping stays on"
        ]
    );

    let stderr = run_child(&[("MEMSENTRY_OOPS", "1"), ("MEMSENTRY", "0")], false);
    assert_eq!(
        warnings(&stderr),
        [
            "memsentry: ignoring unknown environment variable MEMSENTRY_OOPS (known: MEMSENTRY, MEMSENTRY_SAMPLE_RATE, MEMSENTRY_HTTP_ADDR, MEMSENTRY_HTTP_TOKEN, MEMSENTRY_WATCH, MEMSENTRY_BUDGETS)"
        ]
    );
}

#[test]
fn environment_sample_rate() {
    for (value, rate) in [("1MiB", 1 << 20), ("65536", 65536), ("0", 0), ("1", 1)] {
        let stderr = run_child_with_rate(&[("MEMSENTRY_SAMPLE_RATE", value)], true, rate);
        assert_eq!(warnings(&stderr), Vec::<&str>::new(), "{value}");
    }
    let stderr = run_child_with_rate(
        &[("MEMSENTRY_SAMPLE_RATE", "512KB")],
        true,
        memsentry::profile::DEFAULT_RATE,
    );
    assert_eq!(
        warnings(&stderr),
        [
            "memsentry: MEMSENTRY_SAMPLE_RATE=\"512KB\" is not a byte count \
             (expected e.g. 524288, 512KiB, 1MiB, 0 = off): keeping the default, 512KiB"
        ]
    );
}

/// The child side of `environment_switch` (ignored unless run by it).
#[test]
#[ignore = "run by `environment_switch` in a child process"]
fn child_checks_mode() {
    let expect_on = std::env::var("CHILD_EXPECT_ON").unwrap() == "1";
    let expect_rate: u64 = std::env::var("CHILD_EXPECT_RATE").unwrap().parse().unwrap();
    assert_eq!(memsentry::profile::sample_rate(), expect_rate);
    // Sampled allocations make the sampler allocate too (counted, like every allocation):
    // count exactly with sampling off.
    memsentry::profile::set_sample_rate(0);
    assert_eq!(memsentry::is_enabled(), expect_on);
    // Counted in a size class nothing else here uses: the test harness's own threads may
    // allocate meanwhile (they do on a loaded machine), and a snapshot's table of classes
    // can take a few KiB itself.
    const SIZE: usize = 300_001;
    let class = memsentry::class_bucket(std::alloc::Layout::array::<u8>(SIZE).unwrap());
    let in_class = || {
        memsentry::snapshot()
            .class(class)
            .map_or(0, |c| c.counts.allocations)
    };
    let before = in_class();
    let block = std::hint::black_box(vec![1u8; SIZE]);
    let allocated = in_class() - before;
    assert_eq!(allocated, u64::from(expect_on));
    drop(block);
    // The run-time switch overrides the environment.
    memsentry::set_enabled(!expect_on);
    assert_eq!(memsentry::is_enabled(), !expect_on);
}
