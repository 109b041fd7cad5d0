//! 32 tests in parallel (`--test-threads=8`), each allocating a known, different amount
//! while the others churn: every test's measured usage is exact, and so is its peak. The
//! one test of this file runs the 32 (ignored) cases in a child test process with eight
//! test threads, as `cargo test -- --test-threads=8` would.

#![allow(clippy::disallowed_types, clippy::disallowed_macros)]

use std::hint::black_box;
use std::process::Command;

use memsentry::MemSentry;

#[global_allocator]
static GLOBAL: MemSentry = MemSentry::new();

#[test]
fn thirty_two_tests_on_eight_threads_measure_exactly() {
    let output = Command::new(std::env::current_exe().unwrap())
        .args(["case_", "--ignored", "--test-threads=8"])
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&output.stdout);
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(output.status.success(), "{stdout}\n{stderr}");
    assert!(
        stdout.contains("test result: ok. 32 passed; 0 failed"),
        "{stdout}"
    );
}

/// Case `n`: allocates `n + 1` vectors of `64 × (n + 1)` bytes, each freed before the
/// next but the last two kept at once, churning between, 200 rounds.
fn case(n: u64) {
    let count = n + 1;
    let size = 64 * (n + 1);
    for _ in 0..200 {
        let ((), usage) = memsentry::measure(|| {
            let mut kept = None;
            for i in 0..count {
                let block = black_box(vec![0u8; usize::try_from(size).unwrap()]);
                if i + 1 == count {
                    // The last one overlaps the one before.
                    black_box(&block);
                    drop(kept.take());
                } else {
                    drop(kept.replace(block));
                    continue;
                }
                drop(block);
            }
        });
        assert_eq!(usage.allocations(), count, "case {n}: {usage}");
        assert_eq!(usage.frees(), count, "case {n}: {usage}");
        assert_eq!(usage.allocated_bytes(), count * size, "case {n}");
        assert_eq!(usage.live_bytes(), 0, "case {n}");
        let peak = if count == 1 { size } else { 2 * size };
        assert_eq!(usage.peak_bytes(), peak, "case {n}: {usage}");
        // Churn outside the scope, so the other cases' threads keep allocating.
        black_box(vec![1u8; 1000]);
    }
}

macro_rules! cases {
    ($($name:ident = $n:expr),* $(,)?) => {$(
        #[test]
        #[ignore = "run by thirty_two_tests_on_eight_threads_measure_exactly"]
        fn $name() {
            case($n);
        }
    )*};
}

cases!(
    case_00 = 0,
    case_01 = 1,
    case_02 = 2,
    case_03 = 3,
    case_04 = 4,
    case_05 = 5,
    case_06 = 6,
    case_07 = 7,
    case_08 = 8,
    case_09 = 9,
    case_10 = 10,
    case_11 = 11,
    case_12 = 12,
    case_13 = 13,
    case_14 = 14,
    case_15 = 15,
    case_16 = 16,
    case_17 = 17,
    case_18 = 18,
    case_19 = 19,
    case_20 = 20,
    case_21 = 21,
    case_22 = 22,
    case_23 = 23,
    case_24 = 24,
    case_25 = 25,
    case_26 = 26,
    case_27 = 27,
    case_28 = 28,
    case_29 = 29,
    case_30 = 30,
    case_31 = 31,
);
