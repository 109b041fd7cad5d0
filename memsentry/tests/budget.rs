//! Budgets measured in a real process: exact counts and peaks of a scope whatever other
//! threads do, nested scopes, frees across threads, sites that name the culprit, leaks
//! judged by block, and the assertion macros' messages.

#![allow(clippy::disallowed_types, clippy::disallowed_macros)]

use std::hint::black_box;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use memsentry::MemSentry;
use memsentry::budget::{KiB, Limits, Measure};
use memsentry::profile::SampleType;

#[global_allocator]
static GLOBAL: MemSentry = MemSentry::new();

/// Another thread allocating and freeing all the while.
fn churn() -> (Arc<AtomicBool>, std::thread::JoinHandle<()>) {
    let stop = Arc::new(AtomicBool::new(false));
    let thread = {
        let stop = Arc::clone(&stop);
        std::thread::spawn(move || {
            while !stop.load(Ordering::Relaxed) {
                black_box(vec![0u8; 777]);
                black_box(Box::new([0u64; 100]));
            }
        })
    };
    (stop, thread)
}

#[test]
fn counts_and_peak_are_exact_while_another_thread_churns() {
    let (stop, thread) = churn();
    for _ in 0..20 {
        let ((), usage) = memsentry::measure(|| {
            let a = black_box(vec![1u8; 1000]);
            let b = black_box(vec![2u8; 3000]);
            drop(a);
            let c = black_box(vec![3u8; 500]);
            drop(b);
            drop(c);
            let kept = black_box(Box::new([0u8; 100]));
            std::mem::forget(kept);
        });
        assert_eq!(usage.allocations(), 4, "{usage}");
        assert_eq!(usage.frees(), 3, "{usage}");
        assert_eq!(usage.allocated_bytes(), 4600);
        assert_eq!(usage.freed_bytes(), 4500);
        assert_eq!(usage.live_bytes(), 100);
        // 1000 + 3000, then 3000 + 500 after the first free: 4000.
        assert_eq!(usage.peak_bytes(), 4000);
        assert_eq!(
            usage.allocated_class_bytes(),
            [1000, 3000, 500, 100]
                .iter()
                .map(|&n| memsentry::size_class(std::alloc::Layout::array::<u8>(n).unwrap()))
                .sum::<u64>()
        );
        assert_eq!(usage.leaked_blocks(), None, "no sites asked for");
    }
    stop.store(true, Ordering::Relaxed);
    thread.join().unwrap();
}

#[test]
fn nested_scopes_count_for_both_and_peaks_stack() {
    let ((inner, kept), outer) = memsentry::measure(|| {
        let kept = black_box(vec![0u8; 10_000]);
        let ((), inner) = memsentry::measure(|| {
            black_box(vec![0u8; 5_000]);
        });
        (inner, kept)
    });
    assert_eq!((inner.allocations(), inner.peak_bytes()), (1, 5_000));
    assert_eq!(outer.allocations(), 2);
    assert_eq!(
        outer.peak_bytes(),
        15_000,
        "the inner peak on top of the outer's net"
    );
    assert_eq!(outer.live_bytes(), 10_000);
    drop(kept);
}

#[test]
fn frees_cross_threads() {
    // Allocated in the scope, freed on another thread: the scope's counts stay what it
    // did (an allocation, no free); judged by block, the block is no leak.
    let (block, usage) = Measure::new()
        .sites(true)
        .run(|| black_box(vec![7u8; 2048]));
    assert_eq!((usage.allocations(), usage.frees()), (1, 0));
    assert_eq!(usage.leaked_blocks(), Some(1), "live when the scope ended");
    std::thread::spawn(move || drop(block)).join().unwrap();
    // Freed in the scope, allocated before: a free, negative live bytes.
    let before = black_box(vec![1u8; 4096]);
    let ((), usage) = memsentry::measure(|| drop(before));
    assert_eq!((usage.allocations(), usage.frees()), (0, 1));
    assert_eq!(usage.live_bytes(), -4096);
    assert_eq!(usage.peak_bytes(), 0);
    // A thread spawned inside is not counted; measured on its own, it adds.
    let ((), usage) = memsentry::measure(|| {
        let (_, spawned) = std::thread::scope(|s| {
            s.spawn(|| memsentry::measure(|| black_box(vec![0u8; 300])))
                .join()
                .unwrap()
        });
        assert_eq!(spawned.allocations(), 1);
    });
    assert!(
        usage.allocated_bytes() < 300 || usage.allocations() > 1,
        "the spawned thread's vector is not the scope's: {usage}"
    );
}

#[inline(never)]
fn parse_token(text: &str) -> String {
    black_box(text.to_uppercase())
}

#[inline(never)]
fn build_index(n: usize) -> Vec<Vec<u32>> {
    let index = (0..n).map(|i| black_box(vec![0u32; i % 7 + 1])).collect();
    // Not a tail call: this frame stays on the stacks, optimised or not.
    black_box(index)
}

#[test]
fn sites_name_the_culprit() {
    let ((), usage) = Measure::new().sites(true).run(|| {
        for _ in 0..30 {
            parse_token("abc");
        }
        black_box(build_index(11));
    });
    assert_eq!(usage.allocations(), 30 + 11 + 1);
    let top = usage.top_sites(SampleType::AllocObjects, 3);
    assert!(top[0].function.ends_with("parse_token"), "{top:?}");
    assert_eq!(top[0].value, 30.0);
    // The closure's frame may be its own site (debug) or inlined (release).
    assert!(top[1].function.contains("build_index"), "{top:?}");
    assert!(top[1].value >= 11.0, "{top:?}");
    // With line tables (debug builds), the file and line too.
    if let Some((file, line)) = top[0].location.clone() {
        assert_eq!(file, "budget.rs");
        assert!(line > 0);
    }
    // The process's rate is untouched.
    assert_eq!(memsentry::profile::sample_rate(), 512 * 1024);
}

#[test]
fn budgets_fail_with_the_top_site() {
    let ((), usage) = Measure::new().sites(true).run(|| {
        for _ in 0..41 {
            parse_token("x");
        }
    });
    let error = usage
        .check(&Limits::new().allocations(40))
        .expect_err("41 allocations");
    let message = error.to_string();
    assert!(
        message.starts_with("allocated 41 times (budget <= 40); top: 41 × "),
        "{message}"
    );
    assert!(message.contains("budget::parse_token"), "{message}");
    assert!(usage.check(&Limits::new().allocations(41).leaks(0)).is_ok());
}

#[test]
#[should_panic(expected = "allocated 3 times (budget <= 2); top: 3 × budget::parse_token")]
fn assert_allocations_panics_with_the_culprit() {
    memsentry::assert_allocations!(<= 2, {
        for _ in 0..3 {
            parse_token("y");
        }
    });
}

#[test]
#[should_panic(
    expected = "peaked at 64.0 KiB (budget < 32.0 KiB); top (bytes): 65536 × budget::allocate_64k"
)]
fn assert_peak_panics_with_the_culprit() {
    memsentry::assert_peak!(< 32 * KiB, {
        allocate_64k();
    });
}

#[inline(never)]
fn allocate_64k() {
    black_box(vec![0u8; 64 * 1024]);
}

#[inline(never)]
fn leak_a_little() {
    std::mem::forget(black_box(vec![9u8; 100]));
}

#[test]
#[should_panic(expected = "leaked 1 blocks (100 B) (budget == 0); top: 1 × budget::leak_a_little")]
fn assert_no_leaks_names_the_leak() {
    memsentry::assert_no_leaks!({
        black_box(vec![1u8; 50]);
        leak_a_little();
    });
}

#[test]
fn assertions_that_hold_return_the_value() {
    let n = memsentry::assert_allocations!(== 1, { black_box(vec![1u8; 10]).len() });
    assert_eq!(n, 10);
    let len = memsentry::assert_no_leaks!({ format!("{}", 5).len() });
    assert_eq!(len, 1);
    // What the block returns is still live at its end: by block, that is a leak.
    let leaked = std::panic::catch_unwind(|| memsentry::assert_no_leaks!({ format!("{}", 5) }));
    assert!(leaked.is_err());
}

#[test]
fn a_panicking_scope_closes() {
    let result = std::panic::catch_unwind(|| {
        memsentry::measure(|| {
            black_box(vec![0u8; 10]);
            panic!("inside");
        })
    });
    assert!(result.is_err());
    // The thread is back to normal: no scope open, the fast path in use.
    assert!(memsentry::__fast_path_open());
}

#[test]
#[memsentry::limit(allocations = 2, allocated_bytes = "2 KiB", peak = "1KiB", leaks = 0)]
fn a_test_within_its_limits() {
    let a = black_box(vec![0u8; 1000]);
    drop(a);
    let b = black_box(vec![0u8; 1000]);
    assert_eq!(b.len(), 1000);
}

#[test]
#[should_panic(expected = "allocated 3 times (budget <= 2); top: 3 × budget::parse_token")]
#[memsentry::limit(allocations = 2)]
fn a_test_over_its_limit_fails_naming_the_culprit() {
    for _ in 0..3 {
        parse_token("z");
    }
}

#[test]
#[should_panic(expected = "leaked 1 blocks (100 B) (budget <= 0); top: 1 × budget::leak_a_little")]
#[memsentry::limit(leaks = 0)]
fn a_leaking_test_fails() {
    leak_a_little();
}

// The yield allocates too: tokio's list of deferred wakers, made on first use.
#[memsentry::limit(allocations = 2, peak = "5KB")]
#[tokio::test]
async fn an_async_test_within_its_limits() {
    let block = black_box(vec![0u8; 4000]);
    tokio::task::yield_now().await;
    assert_eq!(block.len(), 4000);
}

#[memsentry::limit(peak = "1 KiB")]
#[tokio::test]
#[should_panic(expected = "peaked at 3.9 KiB (budget <= 1.0 KiB)")]
async fn an_async_test_over_its_peak_fails() {
    let block = black_box(vec![0u8; 4000]);
    assert_eq!(block.len(), 4000);
}
