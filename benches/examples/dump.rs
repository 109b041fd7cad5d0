//! Cost of taking and encoding a heap profile with many distinct stacks: wall time and the
//! extra heap it uses (symbolization included), for 1,000 and 10,000 stacks.
//!
//! ```text
//! cargo run --release -p memsentry-benches --example dump
//! ```
//!
//! Distinct stacks come from a binary tree of calls: 14 levels of `left`/`right` frames,
//! the path chosen by the bits of a counter, one sampled 64-byte block at each leaf
//! (R = 1, so every block is sampled). Each size is dumped three times: offline (no
//! symbolization: addresses, mappings and build IDs only), then in-process twice: the
//! first symbolizes every address (cold cache), the second finds them cached.

use std::hint::black_box;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use memsentry::profile::Symbolization;
use memsentry::{Bytes, MemSentry};

#[global_allocator]
static GLOBAL: MemSentry = MemSentry::new();

const DEPTH: u32 = 14;

#[inline(never)]
fn left(depth: u32, bits: u64, out: &mut Vec<Vec<u8>>) {
    step(depth, bits, out);
    black_box(0xA);
}

#[inline(never)]
fn right(depth: u32, bits: u64, out: &mut Vec<Vec<u8>>) {
    step(depth, bits, out);
    black_box(0xB);
}

#[inline(never)]
fn step(depth: u32, bits: u64, out: &mut Vec<Vec<u8>>) {
    if depth == 0 {
        out.push(vec![0u8; 64]);
    } else if bits & 1 == 0 {
        left(depth - 1, bits >> 1, out);
    } else {
        right(depth - 1, bits >> 1, out);
    }
}

/// Runs `f` while a thread polls the live bytes; returns its result, its wall time, and
/// the peak of live bytes above the level when it started.
fn measured<T>(f: impl FnOnce() -> T) -> (T, Duration, u64) {
    let base = memsentry::totals().live_bytes();
    let peak = AtomicU64::new(base);
    let done = AtomicBool::new(false);
    std::thread::scope(|scope| {
        scope.spawn(|| {
            while !done.load(Ordering::Relaxed) {
                peak.fetch_max(memsentry::totals().live_bytes(), Ordering::Relaxed);
                std::thread::sleep(Duration::from_micros(200));
            }
        });
        let began = Instant::now();
        let result = f();
        let elapsed = began.elapsed();
        peak.fetch_max(memsentry::totals().live_bytes(), Ordering::Relaxed);
        done.store(true, Ordering::Relaxed);
        (
            result,
            elapsed,
            peak.load(Ordering::Relaxed).saturating_sub(base),
        )
    })
}

fn main() {
    println!(
        "| stacks | dump | heap() + pprof encoding | peak extra heap | retained after (caches) | pprof size |"
    );
    println!("|---|---|---|---|---|---|");
    for stacks in [1_000u64, 10_000] {
        memsentry::profile::set_sample_rate(1);
        let mut blocks = Vec::with_capacity(stacks as usize);
        for bits in 0..stacks {
            step(DEPTH, bits, &mut blocks);
        }
        memsentry::profile::set_sample_rate(0);
        // Offline first: it must not warm the in-process round's cache (it symbolizes
        // nothing, so it cannot).
        for (round, symbolization) in [
            ("offline", Symbolization::Offline),
            ("in-process, cold cache", Symbolization::InProcess),
            ("in-process, warm cache", Symbolization::InProcess),
        ] {
            let before = memsentry::totals().live_bytes();
            let ((rows, size), elapsed, peak) = measured(|| {
                let profile = memsentry::profile::heap_with(symbolization);
                let mut encoded = Vec::new();
                profile.encode_pprof(&mut encoded).unwrap();
                let rows = match symbolization {
                    Symbolization::Offline => profile.samples().len(),
                    _ => profile.samples_through("step").count(),
                };
                (rows, encoded.len())
            });
            let retained = memsentry::totals().live_bytes().saturating_sub(before);
            assert!(rows as u64 >= stacks, "{rows} rows for {stacks} stacks");
            println!(
                "| {stacks} | {round} | {:.0} ms | {} | {} | {} |",
                elapsed.as_secs_f64() * 1000.0,
                Bytes(peak),
                Bytes(retained),
                Bytes(size as u64),
            );
        }
        drop(blocks);
    }
}
