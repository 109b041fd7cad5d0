//! `release_memory` purges jemalloc's dirty pages and the process's resident set falls;
//! `JemallocStats` reports the dirty and muzzy pages and the decay settings. One test:
//! the figures are process-wide.

#![allow(clippy::disallowed_types, clippy::disallowed_macros)]

use std::hint::black_box;
use std::time::Instant;

use memsentry::{Bytes, JemallocStats};

#[global_allocator]
static GLOBAL: memsentry::MemSentry = memsentry::MemSentry::new();

const MIB: u64 = 1 << 20;

fn jemalloc() -> JemallocStats {
    memsentry::snapshot()
        .jemalloc
        .expect("jemalloc's statistics")
}

fn resident() -> u64 {
    memsentry::snapshot()
        .resident_bytes
        .expect("/proc/self/statm")
}

#[test]
fn release_memory_purges_dirty_pages() {
    let settings = jemalloc();
    // jemalloc reads its options from `_RJEM_MALLOC_CONF` (the prefixed build memsentry
    // links) and takes none from the unprefixed name; either set means no defaults.
    let configured = ["MALLOC_CONF", "_RJEM_MALLOC_CONF"]
        .iter()
        .any(|name| std::env::var_os(name).is_some());
    if !configured {
        // jemalloc's defaults (`DIRTY_DECAY_MS_DEFAULT`, `MUZZY_DECAY_MS_DEFAULT` in
        // arena_types.h).
        assert_eq!(settings.dirty_decay_ms, 10_000);
        assert_eq!(settings.muzzy_decay_ms, 0);
    }
    assert!(settings.dirty_decay_ms >= -1 && settings.muzzy_decay_ms >= -1);

    // 128 MiB, all written to (a non-zero fill: zeroed requests may get untouched pages):
    // 64 MiB in 2 KiB blocks (small: in slabs, whose pages turn dirty when emptied) and
    // 64 MiB in 1 MiB blocks (large). jemalloc coalesces freed large extents at once and
    // purges one that reaches `opt.oversize_threshold` (8 MiB) at once too
    // (`extent_record`), so most of the large ones are gone before `release_memory`.
    let small: Vec<Vec<u8>> = (0..32 * 1024).map(|_| vec![1u8; 2048]).collect();
    let large: Vec<Vec<u8>> = (0..64).map(|_| vec![1u8; 1 << 20]).collect();
    let small_bytes = 64 * MIB;
    let freed = 128 * MIB;
    let peak = resident();
    drop(black_box(small));
    drop(black_box(large));

    let before = jemalloc();
    if settings.dirty_decay_ms != 0 {
        // Decay purges over `dirty_decay_ms` as allocation goes on: most of the slab
        // pages freed a moment ago are still dirty.
        assert!(
            before.dirty >= small_bytes / 2,
            "{} dirty of {} freed in small blocks",
            Bytes(before.dirty),
            Bytes(small_bytes)
        );
    }

    let start = Instant::now();
    let released = memsentry::release_memory();
    let took = start.elapsed();

    let after = released.jemalloc_after.expect("jemalloc's statistics");
    assert_eq!((after.dirty, after.muzzy), (0, 0), "{after:?}");
    let before_purge = released.jemalloc_before.expect("jemalloc's statistics");
    // Nothing in between frees a page: still none dirty.
    let now = jemalloc();
    assert_eq!((now.dirty, now.muzzy), (0, 0), "{now:?}");
    // The pages held what the blocks were written with, so they were resident.
    let dirty = before_purge.dirty + before_purge.muzzy;
    if dirty > 0 {
        assert!(after.resident < before_purge.resident, "{released:?}");
    }
    assert!(
        released.released_bytes() >= dirty / 2,
        "released {} of {} dirty: {released:?}",
        Bytes(released.released_bytes()),
        Bytes(dirty)
    );
    let fall = peak.saturating_sub(resident());
    assert!(
        fall >= freed / 2,
        "resident set fell by {} from its peak, {} freed",
        Bytes(fall),
        Bytes(freed)
    );
    println!(
        "release_memory: {} released ({} dirty, {} muzzy before) in {took:?}",
        Bytes(released.released_bytes()),
        Bytes(before_purge.dirty),
        Bytes(before_purge.muzzy)
    );
}
