//! Sampled heap profiles with memsentry as the global allocator: estimates at known
//! sites, rate 1 and 0, `realloc`, the off switch, writing pprof files.

#![allow(clippy::disallowed_types, clippy::disallowed_macros)]

use std::alloc::{Layout, alloc, dealloc, realloc};
use std::hint::black_box;
use std::sync::{Mutex, MutexGuard, PoisonError};

use memsentry::MemSentry;
use memsentry::profile::{self, Estimate, Profile};

#[global_allocator]
static GLOBAL: MemSentry = MemSentry::new();

/// The rate is process-wide: tests that set it run one at a time. (The calling thread
/// adopts a new rate at once, so each test sees its own rate.)
fn exclusive(rate: u64) -> MutexGuard<'static, ()> {
    static LOCK: Mutex<()> = Mutex::new(());
    let guard = LOCK.lock().unwrap_or_else(PoisonError::into_inner);
    profile::set_sample_rate(rate);
    guard
}

/// In-use and cumulative estimates of the rows whose stack passes through `function`.
fn site(profile: &Profile, function: &str) -> (Estimate, Estimate) {
    let mut alloc = Estimate::default();
    let mut inuse = Estimate::default();
    for sample in profile.samples() {
        if profile
            .frames(sample)
            .any(|f| f.function.ends_with(function))
        {
            alloc.objects += sample.alloc.objects;
            alloc.bytes += sample.alloc.bytes;
            alloc.samples += sample.alloc.samples;
            inuse.objects += sample.inuse.objects;
            inuse.bytes += sample.inuse.bytes;
            inuse.samples += sample.inuse.samples;
        }
    }
    (alloc, inuse)
}

// The call sites below keep their frames in release builds too: `#[inline(never)]`, and
// a `black_box` around a result that would otherwise be returned by a tail call (a jump,
// which leaves no frame on the stack).

#[inline(never)]
fn kilobyte_blocks(count: usize) -> Vec<Box<[u8]>> {
    black_box(
        (0..count)
            .map(|_| black_box(vec![1u8; 1024]).into_boxed_slice())
            .collect(),
    )
}

#[test]
fn estimates_track_a_known_site() {
    let _rate = exclusive(64 * 1024);
    let blocks = kilobyte_blocks(32 * 1024);
    let profile = profile::heap();
    let (alloc, inuse) = site(&profile, "kilobyte_blocks");
    // The blocks, and the vector that holds them (32,768 boxed slices of 16 bytes), which
    // the site allocates too.
    let truth = 32.0 * 1024.0 * 1024.0 + (blocks.capacity() * size_of::<Box<[u8]>>()) as f64;
    // One standard deviation is sqrt(32 MiB × 64 KiB) ≈ 4.4%: ±20% is 4.5 of them.
    assert!(
        (inuse.bytes / truth - 1.0).abs() < 0.20,
        "in-use {} vs {truth}",
        inuse.bytes
    );
    assert!(inuse.samples > 300, "{inuse:?}");
    assert!(alloc.bytes >= inuse.bytes);
    let leaf = profile
        .samples()
        .iter()
        .find(|s| {
            profile
                .frames(s)
                .any(|f| f.function.ends_with("kilobyte_blocks"))
        })
        .map(|s| profile.frames(s).next().unwrap().function.to_owned())
        .unwrap();
    assert!(
        !leaf.starts_with("memsentry") && !leaf.starts_with("__rust"),
        "allocator frames are trimmed: {leaf}"
    );
    drop(blocks);
    let (after_alloc, after_inuse) = site(&profile::heap(), "kilobyte_blocks");
    assert_eq!(after_inuse.samples, 0, "freed blocks leave the table");
    assert!(
        after_alloc.samples >= alloc.samples,
        "cumulative figures stay"
    );
}

#[inline(never)]
fn forty_byte_blocks(count: usize) -> Vec<*mut u8> {
    black_box((0..count).map(|_| one_forty_byte_block()).collect())
}

/// The code that calls `alloc`: the leaf of its samples' stacks.
#[inline(never)]
fn one_forty_byte_block() -> *mut u8 {
    let layout = Layout::from_size_align(40, 8).unwrap();
    // SAFETY: non-zero size; freed by `free_forty` with the same layout.
    black_box(unsafe { alloc(layout) })
}

fn free_forty(blocks: Vec<*mut u8>) {
    let layout = Layout::from_size_align(40, 8).unwrap();
    for block in blocks {
        // SAFETY: allocated by `forty_byte_blocks` with this layout.
        unsafe { dealloc(block, layout) };
    }
}

#[test]
fn rate_one_samples_every_allocation_with_weight_one() {
    let _rate = exclusive(1);
    let blocks = forty_byte_blocks(100);
    // 100 blocks of 40 bytes, and the 800-byte vector that holds them.
    let (alloc, inuse) = site(&profile::heap(), "forty_byte_blocks");
    assert_eq!(inuse.samples, 101);
    assert_eq!((inuse.objects, inuse.bytes), (101.0, 4800.0));
    assert!(alloc.samples >= 101);
    // The allocator's frames (the `__rust_alloc` shim, `MemSentry`, the sampler) are
    // trimmed: the leaf is the code that called `alloc`.
    let profile = profile::heap();
    let row = profile
        .samples_through("forty_byte_blocks")
        .find(|s| s.size == 40)
        .unwrap();
    let leaf = profile.frames(row).next().unwrap();
    assert_eq!(leaf.function, "sampling::one_forty_byte_block");
    // Samples keep the rate they were taken at.
    profile::set_sample_rate(1 << 20);
    let (_, inuse) = site(&profile::heap(), "forty_byte_blocks");
    assert_eq!((inuse.objects, inuse.bytes), (101.0, 4800.0));
    free_forty(blocks);
    let (_, inuse) = site(&profile::heap(), "forty_byte_blocks");
    assert_eq!(inuse.samples, 0);
}

/// Allocates and frees `count` 40-byte blocks at one call site.
#[inline(never)]
fn forty_byte_blocks_on_a_thread(count: usize) {
    free_forty(black_box(forty_byte_blocks(count)));
}

#[test]
fn one_site_sampled_on_several_threads_adds_up() {
    // Samples of one site from threads alive at once add up in the profile, wherever
    // the cumulative totals are kept (a version that kept them per thread and forgot to
    // add them up when read made this fail).
    const THREADS: usize = 4;
    const COUNT: usize = 500;
    let _rate = exclusive(1);
    // All alive at once, so that each owns a counter slot of its own.
    let together = std::sync::Barrier::new(THREADS);
    std::thread::scope(|scope| {
        for _ in 0..THREADS {
            scope.spawn(|| {
                together.wait();
                forty_byte_blocks_on_a_thread(COUNT);
                together.wait();
            });
        }
    });
    let profile = profile::heap();
    let rows: Vec<_> = profile
        .samples_through("forty_byte_blocks_on_a_thread")
        .filter(|sample| sample.size == 40)
        .collect();
    let samples: u64 = rows.iter().map(|sample| sample.alloc.samples).sum();
    assert_eq!(samples, (THREADS * COUNT) as u64, "rows: {}", rows.len());
    assert_eq!(
        rows.iter().map(|sample| sample.inuse.samples).sum::<u64>(),
        0
    );
}

#[inline(never)]
fn allocated_before_realloc() -> *mut u8 {
    // SAFETY: non-zero size.
    black_box(unsafe { alloc(Layout::from_size_align(64, 8).unwrap()) })
}

#[inline(never)]
fn grown_by_realloc(block: *mut u8, new_size: usize) -> *mut u8 {
    // SAFETY: `block` was allocated with this layout and is live; `new_size` is non-zero.
    black_box(unsafe { realloc(block, Layout::from_size_align(64, 8).unwrap(), new_size) })
}

#[test]
fn realloc_moves_the_sample() {
    let _rate = exclusive(1);
    let block = allocated_before_realloc();
    assert_eq!(
        site(&profile::heap(), "allocated_before_realloc").1.samples,
        1
    );

    // A request no allocator can meet: realloc fails, the block and its sample stay.
    let failed = grown_by_realloc(block, isize::MAX as usize - 4096);
    assert!(failed.is_null());
    let profile = profile::heap();
    assert_eq!(site(&profile, "allocated_before_realloc").1.samples, 1);
    assert_eq!(site(&profile, "grown_by_realloc").1.samples, 0);

    // Growing far enough moves the block: the old record goes, the new block is sampled.
    let grown = grown_by_realloc(block, 1 << 20);
    assert!(!grown.is_null());
    let profile = profile::heap();
    assert_eq!(site(&profile, "allocated_before_realloc").1.samples, 0);
    let (_, inuse) = site(&profile, "grown_by_realloc");
    assert_eq!((inuse.samples, inuse.bytes), (1, f64::from(1u32 << 20)));
    // SAFETY: `grown` is live with this layout.
    unsafe { dealloc(grown, Layout::from_size_align(1 << 20, 8).unwrap()) };
    assert_eq!(site(&profile::heap(), "grown_by_realloc").1.samples, 0);
}

#[inline(never)]
fn allocated_while_sampling_is_off() -> Vec<Vec<u8>> {
    black_box((0..1000).map(|_| black_box(vec![0u8; 10_000])).collect())
}

#[test]
fn rate_zero_samples_nothing() {
    let _rate = exclusive(0);
    let blocks = allocated_while_sampling_is_off();
    let (alloc, inuse) = site(&profile::heap(), "allocated_while_sampling_is_off");
    assert_eq!((alloc.samples, inuse.samples), (0, 0));
    drop(blocks);
}

#[inline(never)]
fn small_kept_while_switching_off() -> Vec<Vec<u8>> {
    black_box((0..10).map(|_| black_box(vec![0u8; 100])).collect())
}

#[inline(never)]
fn large_kept_while_switching_off() -> Vec<Vec<u8>> {
    black_box((0..10).map(|_| black_box(vec![0u8; 10_000])).collect())
}

#[test]
fn turning_bookkeeping_off_keeps_only_placed_samples() {
    let _rate = exclusive(1);
    // Ten vectors and the one that holds them, at each site: at most 4 KiB (placed
    // samples) but for the ten large ones.
    let small = small_kept_while_switching_off();
    let large = large_kept_while_switching_off();
    let inuse = |name: &str| site(&profile::heap(), name).1.samples;
    assert_eq!(inuse("small_kept_while_switching_off"), 11);
    assert_eq!(inuse("large_kept_while_switching_off"), 11);
    memsentry::set_enabled(false);
    memsentry::set_enabled(true);
    // Frees of blocks not placed go unseen while off: their records are forgotten.
    assert_eq!(inuse("large_kept_while_switching_off"), 1);
    // Placed samples' frees are seen whatever the switch says, so they stay known...
    assert_eq!(inuse("small_kept_while_switching_off"), 11);
    memsentry::set_enabled(false);
    drop(small);
    memsentry::set_enabled(true);
    // ...and go when freed, off or on.
    let (alloc, inuse) = site(&profile::heap(), "small_kept_while_switching_off");
    assert_eq!((alloc.samples, inuse.samples), (11, 0));
    drop(large);
    assert_eq!(
        site(&profile::heap(), "large_kept_while_switching_off")
            .1
            .samples,
        0
    );
}

#[test]
fn writes_a_gzipped_pprof_file() {
    let _rate = exclusive(1);
    let blocks = forty_byte_blocks(3);
    let dir = std::env::temp_dir().join(format!("memsentry-test-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let path = dir.join("heap.pb.gz");
    let profile = profile::heap();
    profile.write_pprof(&path).unwrap();
    let bytes = std::fs::read(&path).unwrap();
    assert_eq!(&bytes[..2], &[0x1f, 0x8b], "gzip magic");
    assert_eq!(profile.sample_rate(), 1);

    let usage = profile::usage();
    assert!(usage.live_samples >= 3 && usage.stacks >= 1, "{usage:?}");
    assert!(
        usage.bytes >= 64 * 1024,
        "the filter alone is 64 KiB: {usage:?}"
    );
    assert_eq!(usage.sample_rate, 1);

    let error = profile
        .write_pprof(dir.join("no/such/dir/heap.pb.gz"))
        .unwrap_err();
    assert!(
        error.to_string().contains("no/such/dir/heap.pb.gz"),
        "{error}"
    );
    std::fs::remove_dir_all(&dir).unwrap();
    free_forty(blocks);
}
