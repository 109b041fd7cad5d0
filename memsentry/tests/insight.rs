//! What held memory at the peak, and which sites keep growing: known truth at R = 1
//! (every allocation sampled).

#![allow(clippy::disallowed_types, clippy::disallowed_macros)]

use std::hint::black_box;
use std::sync::{Mutex, MutexGuard, PoisonError};
use std::time::Duration;

use memsentry::MemSentry;
use memsentry::profile::{self, SampleType};

#[global_allocator]
static GLOBAL: MemSentry = MemSentry::new();

/// The sampling rate and the peak are process-wide: the tests take turns.
fn turn() -> MutexGuard<'static, ()> {
    static TURN: Mutex<()> = Mutex::new(());
    TURN.lock().unwrap_or_else(PoisonError::into_inner)
}

const MIB: usize = 1 << 20;

#[inline(never)]
fn transient_site() -> Vec<Vec<u8>> {
    let blocks = (0..64).map(|_| black_box(vec![1u8; MIB])).collect();
    black_box(blocks)
}

#[inline(never)]
fn held_site() -> Vec<Vec<u8>> {
    let blocks = (0..8).map(|_| black_box(vec![2u8; MIB])).collect();
    black_box(blocks)
}

fn inuse_through(profile: &profile::Profile, function: &str) -> f64 {
    profile
        .samples_through(function)
        .map(|s| SampleType::InuseSpace.value(s))
        .sum()
}

#[test]
fn the_peak_profile_names_the_transient_site() {
    let _turn = turn();
    profile::set_sample_rate(1);
    profile::reset_peak();
    drop(transient_site());
    let held = held_site();
    let peak = profile::peak();
    let now = profile::heap();
    profile::set_sample_rate(profile::DEFAULT_RATE);
    let at_peak = inuse_through(&peak, "insight::transient_site");
    // The peak is refreshed when the live estimate has grown by 5%: within 5% of it.
    assert!(
        at_peak >= (64 * MIB) as f64 * 0.95,
        "the peak holds the transient 64 MiB: {at_peak}"
    );
    assert_eq!(inuse_through(&now, "insight::transient_site"), 0.0);
    assert!(inuse_through(&now, "insight::held_site") >= (8 * MIB) as f64);
    assert!(peak.totals().1.bytes >= (64 * MIB) as f64 * 0.95);
    assert!(peak.taken_at() <= now.taken_at());
    drop(held);
}

#[inline(never)]
fn leak_steadily(kept: &mut Vec<Vec<u8>>) {
    kept.push(black_box(vec![3u8; 100 * 1024]));
}

#[inline(never)]
fn grow_then_free(held: &mut Vec<Vec<u8>>, step: usize) {
    if step < 6 {
        held.push(black_box(vec![4u8; 100 * 1024]));
    } else {
        held.clear();
    }
}

#[inline(never)]
fn bounded_cache(cache: &mut Vec<Vec<u8>>) {
    if cache.len() < 3 {
        cache.push(black_box(vec![5u8; 100 * 1024]));
    }
}

#[test]
fn one_steady_leak_is_the_one_suspect() {
    let _turn = turn();
    profile::set_sample_rate(1);
    // Room reserved up front: the vectors' own buffers do not grow along the way.
    let (mut kept, mut held, mut cache) = (
        Vec::with_capacity(64),
        Vec::with_capacity(64),
        Vec::with_capacity(64),
    );
    profile::reset_leaks();
    for step in 0..16 {
        leak_steadily(&mut kept);
        grow_then_free(&mut held, step);
        bounded_cache(&mut cache);
        profile::observe_leaks();
        std::thread::sleep(Duration::from_millis(20));
    }
    let suspects = profile::leak_suspects();
    profile::set_sample_rate(profile::DEFAULT_RATE);
    let functions: Vec<&str> = suspects.suspects.iter().map(|s| s.function()).collect();
    assert_eq!(
        functions.len(),
        1,
        "exactly one suspect: {functions:?}\n{suspects}"
    );
    let suspect = &suspects.suspects[0];
    assert!(
        suspect.stack.iter().any(|f| f.ends_with("leak_steadily")),
        "{suspects}"
    );
    assert_eq!(suspect.monotone, 1.0);
    assert!(
        suspect.inuse_bytes >= (16 * 100 * 1024) as f64,
        "{suspect:?}"
    );
    assert_eq!(suspect.series.len(), 16);
    assert!(suspects.to_string().contains("leak suspects: 1 of"));
    drop((kept, held, cache));
}

#[inline(never)]
fn short_lived_site() {
    for _ in 0..20 {
        drop(black_box(vec![6u8; 2048]));
    }
}

#[inline(never)]
fn lives_20ms_site() -> Vec<u8> {
    black_box(vec![7u8; 3000])
}

#[inline(never)]
fn lives_150ms_site() -> Vec<u8> {
    black_box(vec![8u8; 5000])
}

#[test]
fn lifetimes_land_in_their_buckets() {
    let _turn = turn();
    profile::set_sample_rate(1);
    short_lived_site();
    let twenty = lives_20ms_site();
    let one_fifty = lives_150ms_site();
    std::thread::sleep(Duration::from_millis(20));
    drop(twenty);
    std::thread::sleep(Duration::from_millis(130));
    drop(one_fifty);
    profile::set_sample_rate(profile::DEFAULT_RATE);
    let table = profile::lifetimes();
    let row = |name: &str| {
        table
            .rows
            .iter()
            .find(|r| r.function.ends_with(name))
            .unwrap_or_else(|| panic!("{name} missing:\n{table}"))
    };
    let bounds = profile::LifetimeTable::bounds();
    // The coarse clock is exact to a few milliseconds: 20 ms lands under 100 ms, 150 ms
    // under 1 s, and the immediate frees under 10 ms (within the clock's tick).
    let short = row("short_lived_site");
    assert_eq!(short.freed_objects(), 20.0, "{table}");
    assert!(
        short.quantile(1.0).unwrap() <= Duration::from_millis(10),
        "{table}"
    );
    let twenty = row("lives_20ms_site");
    assert_eq!(twenty.freed_objects(), 1.0);
    assert_eq!(twenty.quantile(0.5), Some(bounds[5]), "{table}");
    let long = row("lives_150ms_site");
    assert_eq!(long.quantile(0.5), Some(bounds[6]), "{table}");
    assert!(table.to_string().contains("lives_150ms_site"));
    // The profile's rows carry it too (the pprof label `median_lifetime`).
    let heap = profile::heap();
    let lifetime = heap
        .samples_through("insight::lives_20ms_site")
        .find_map(|s| s.median_lifetime);
    assert_eq!(lifetime, Some(bounds[5]));
}
