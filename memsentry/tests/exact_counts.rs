//! A known allocation pattern on one thread is counted exactly, class by class.

// `memsentry/clippy.toml` bans allocating types for the allocator's hot path; tests are not.
#![allow(clippy::disallowed_types, clippy::disallowed_macros)]

use std::alloc::{GlobalAlloc, Layout};
use std::collections::BTreeMap;

use memsentry::{ClassStats, Counts, MemSentry};

#[global_allocator]
static GLOBAL: MemSentry = MemSentry::new();

/// Expected counts per class size.
#[derive(Default)]
struct Expected {
    classes: BTreeMap<u64, Counts>,
}

impl Expected {
    /// An `Expected` whose map already holds every class the pattern uses, so that
    /// recording the pattern allocates no map node while it is being measured.
    fn primed() -> Self {
        let mut expected = Expected::default();
        run_pattern(&mut expected);
        expected.alloc(Layout::array::<ClassStats>(256).unwrap());
        for counts in expected.classes.values_mut() {
            *counts = Counts::default();
        }
        expected
    }

    fn alloc(&mut self, layout: Layout) {
        let c = self
            .classes
            .entry(memsentry::class_bucket(layout))
            .or_default();
        c.allocations += 1;
        c.allocated_bytes += layout.size() as u64;
        c.allocated_class_bytes += memsentry::size_class(layout);
    }

    fn free(&mut self, layout: Layout) {
        let c = self
            .classes
            .entry(memsentry::class_bucket(layout))
            .or_default();
        c.frees += 1;
        c.freed_bytes += layout.size() as u64;
        c.freed_class_bytes += memsentry::size_class(layout);
    }

    fn total(&self) -> Counts {
        let mut t = Counts::default();
        for c in self.classes.values() {
            t.allocations += c.allocations;
            t.frees += c.frees;
            t.allocated_bytes += c.allocated_bytes;
            t.freed_bytes += c.freed_bytes;
            t.allocated_class_bytes += c.allocated_class_bytes;
            t.freed_class_bytes += c.freed_class_bytes;
        }
        t
    }
}

fn layout(size: usize, align: usize) -> Layout {
    Layout::from_size_align(size, align).unwrap()
}

/// The pattern, with every step mirrored into `expected`. Uses the allocator directly so
/// that no collection's growth policy is involved; allocates nothing else.
fn run_pattern(expected: &mut Expected) {
    let small = layout(24, 8);
    let aligned = layout(100, 64);
    let page = layout(3000, 8);
    let large = layout(100_000, 16);
    // 16-aligned: counted out of the fast path (its second tier), in its size's cell.
    let wide = layout(48, 16);
    let mut held: [(*mut u8, Layout); 16] = [(std::ptr::null_mut(), small); 16];
    // SAFETY: every layout is non-zero; every block is freed or reallocated with the
    // layout (size) it currently has.
    unsafe {
        for (i, l) in [small, small, small, aligned, aligned, page, large, small]
            .into_iter()
            .enumerate()
        {
            held[i] = (GLOBAL.alloc(l), l);
            expected.alloc(l);
        }
        // alloc_zeroed counts like alloc.
        held[8] = (GLOBAL.alloc_zeroed(page), page);
        expected.alloc(page);
        held[9] = (GLOBAL.alloc(wide), wide);
        held[10] = (GLOBAL.alloc_zeroed(wide), wide);
        expected.alloc(wide);
        expected.alloc(wide);
        // Free two.
        for i in [0, 3] {
            GLOBAL.dealloc(held[i].0, held[i].1);
            expected.free(held[i].1);
        }
        // realloc = free of the old block + allocation of the new one, same alignment.
        let (ptr, old) = held[1];
        let grown = GLOBAL.realloc(ptr, old, 5000);
        assert!(!grown.is_null());
        expected.free(old);
        let new = layout(5000, old.align());
        expected.alloc(new);
        held[1] = (grown, new);
        let (ptr, old) = held[6];
        let shrunk = GLOBAL.realloc(ptr, old, 40);
        assert!(!shrunk.is_null());
        expected.free(old);
        let new = layout(40, old.align());
        expected.alloc(new);
        held[6] = (shrunk, new);
        // Free the rest except two, which stay live.
        for i in [1, 2, 5, 6, 7, 9] {
            GLOBAL.dealloc(held[i].0, held[i].1);
            expected.free(held[i].1);
        }
        // Held live through the checks: indices 4 (aligned), 8 (zeroed page) and 10.
        std::hint::black_box(&held);
    }
}

/// Returns once the process's totals stay the same for 20 ms (this thread, asleep,
/// allocates nothing meanwhile).
fn wait_until_quiet() {
    for _ in 0..250 {
        let before = memsentry::totals();
        std::thread::sleep(std::time::Duration::from_millis(20));
        if memsentry::totals() == before {
            return;
        }
    }
    panic!("other threads kept allocating for 5 s");
}

#[test]
fn known_pattern_on_one_thread_is_counted_exactly() {
    // Exact counts: with sampling on, the sampler's own (counted) allocations would
    // show up too.
    memsentry::profile::set_sample_rate(0);
    // Also warms up: the thread claims its counter slot, jemalloc initialises.
    let mut expected = Expected::primed();
    // The counters are the process's: wait until no other thread allocates. (libtest's
    // main thread records the test it has just spawned, and on a loaded machine it may
    // still be doing so while the test runs.)
    wait_until_quiet();

    // `totals()` allocates nothing, so the totals' difference is the pattern alone.
    let before = memsentry::totals();
    run_pattern(&mut expected);
    let after = memsentry::totals();
    assert_eq!(after.since(&before), expected.total());
    assert_eq!(after.live_objects() - before.live_objects(), 3);

    // Class by class, through snapshots. `snapshot()` reads the counters before it
    // allocates its class table (one `Vec` of known capacity), which the second snapshot
    // therefore sees: account for it.
    let mut expected = Expected::primed();
    let first = memsentry::snapshot();
    run_pattern(&mut expected);
    let second = memsentry::snapshot();
    expected.alloc(Layout::array::<ClassStats>(first.classes.capacity()).unwrap());
    for (&class, want) in &expected.classes {
        let got = second.class(class).unwrap().counts;
        let was = first.class(class).map(|c| c.counts).unwrap_or_default();
        assert_eq!(got.since(&was), *want, "class {class}");
    }
    // And nothing else moved.
    let delta = second.delta(&first);
    assert_eq!(delta.counts, expected.total());
    assert_eq!(delta.failed_allocations, 0);
    // Every class row is consistent with the totals.
    let mut summed = Counts::default();
    for class in &second.classes {
        summed.allocations += class.counts.allocations;
        summed.allocated_class_bytes += class.counts.allocated_class_bytes;
        if class.size <= 14 * 1024 {
            assert_eq!(
                class.counts.allocated_class_bytes,
                class.counts.allocations * class.size
            );
        }
    }
    assert_eq!(summed.allocations, second.totals.allocations);
    assert_eq!(
        summed.allocated_class_bytes,
        second.totals.allocated_class_bytes
    );
}
