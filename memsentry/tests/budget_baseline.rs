//! The baseline workflow for CI: scopes measured now against a committed file. An
//! unchanged scope passes, a grown one fails with the before/after table, and
//! `MEMSENTRY_BUDGETS=update` writes the file instead (run in a child process, whose
//! environment carries it).

#![allow(clippy::disallowed_types, clippy::disallowed_macros)]

use std::hint::black_box;
use std::path::PathBuf;
use std::process::Command;

use memsentry::MemSentry;
use memsentry::budget::{Baseline, BaselineError};

#[global_allocator]
static GLOBAL: MemSentry = MemSentry::new();

/// The scopes under budget: `extra` more allocations in `parse` make it grow.
fn measure_scopes(extra: usize) -> Baseline {
    let mut baseline = Baseline::new();
    let ((), usage) = memsentry::measure(|| {
        let words: Vec<String> = "a b c d".split(' ').map(str::to_owned).collect();
        for _ in 0..extra {
            black_box(vec![0u8; 64]);
        }
        black_box(words);
    });
    baseline.record("parse", &usage);
    let ((), usage) = memsentry::measure(|| {
        black_box(vec![0u64; 512]);
    });
    baseline.record("index", &usage);
    baseline
}

fn file(test: &str) -> PathBuf {
    std::env::temp_dir().join(format!(
        "memsentry-budgets-{}-{test}.toml",
        std::process::id()
    ))
}

#[test]
fn an_unchanged_scope_passes_and_a_grown_one_fails() {
    let path = file("check");
    measure_scopes(0).write(&path).unwrap();
    let comparison = measure_scopes(0).check(&path, 10.0).expect("unchanged");
    assert!(comparison.passed(), "{comparison}");
    match measure_scopes(2).check(&path, 10.0) {
        Err(BaselineError::Grown(comparison)) => {
            let table = comparison.to_string();
            assert_eq!(comparison.grown().collect::<Vec<_>>(), ["parse"], "{table}");
            assert!(table.contains("allocations"), "{table}");
            assert!(table.contains("GREW"), "{table}");
            assert!(table.ends_with("grew past +10%: parse"), "{table}");
        }
        other => panic!("a grown scope must fail: {other:?}"),
    }
    std::fs::remove_file(&path).unwrap();
    let missing = measure_scopes(0).check(&path, 10.0).unwrap_err();
    assert!(
        missing
            .to_string()
            .contains("run once with MEMSENTRY_BUDGETS=update"),
        "{missing}"
    );
}

#[test]
fn update_writes_the_file() {
    let path = file("update");
    let output = Command::new(std::env::current_exe().unwrap())
        .args([
            "child_checks_the_budgets",
            "--exact",
            "--ignored",
            "--nocapture",
        ])
        .env("MEMSENTRY_BUDGETS", "update")
        .env("BUDGETS_FILE", &path)
        .output()
        .unwrap();
    assert!(
        output.status.success(),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
    let written = Baseline::read(&path).unwrap();
    assert_eq!(written.names().collect::<Vec<_>>(), ["index", "parse"]);
    assert!(measure_scopes(0).check(&path, 0.0).is_ok());
    std::fs::remove_file(&path).unwrap();
}

#[test]
#[ignore = "run as a child process by update_writes_the_file"]
fn child_checks_the_budgets() {
    let path = std::env::var_os("BUDGETS_FILE").unwrap();
    measure_scopes(0).check(path, 10.0).unwrap();
}
