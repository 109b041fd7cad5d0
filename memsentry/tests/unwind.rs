//! Stack walks for samples: the frame-pointer check, and frame-pointer, unwind-table and
//! DWARF walks giving the same frames for the same call site. This suite is built with frame pointers
//! (`.cargo/config.toml`), as memsentry recommends for production.

#![allow(clippy::disallowed_types, clippy::disallowed_macros)]

use std::collections::BTreeSet;
use std::hint::black_box;

use memsentry::MemSentry;
use memsentry::profile::{self, Unwinder};

#[global_allocator]
static GLOBAL: MemSentry = MemSentry::new();

const BLOCKS: usize = 64;

#[inline(never)]
fn walked_site(count: usize) -> Vec<Box<[u8]>> {
    (0..count)
        .map(|_| black_box(vec![2u8; 520]).into_boxed_slice())
        .collect()
}

#[inline(never)]
fn walked_caller(count: usize) -> Vec<Box<[u8]>> {
    black_box(walked_site(count))
}

/// Allocates at the same site under each unwinder, keeping the blocks in `kept`. Its own
/// frame is where the compared walks are cut (the test function's may be inlined into
/// the test harness in release builds).
#[inline(never)]
fn allocate_with_each_unwinder(kept: &mut Vec<Vec<Box<[u8]>>>) {
    for unwinder in [
        Unwinder::Checking,
        Unwinder::FramePointers,
        Unwinder::Dwarf,
        Unwinder::Table,
    ] {
        profile::set_unwinder(unwinder);
        // One call site for every round: the same return addresses on every stack.
        kept.push(walked_caller(BLOCKS));
        if unwinder == Unwinder::Checking && cfg!(target_arch = "x86_64") {
            assert_eq!(
                profile::unwinder(),
                Unwinder::FramePointers,
                "{BLOCKS} samples checked against DWARF; is the suite still built with \
                 `-C force-frame-pointers=yes` (.cargo/config.toml, or RUSTFLAGS overriding it)?"
            );
        }
    }
}

#[test]
fn frame_pointers_are_checked_then_walk_the_same_frames_as_dwarf() {
    profile::set_sample_rate(1);
    let mut kept = Vec::new();
    allocate_with_each_unwinder(&mut kept);
    profile::set_sample_rate(0);
    let heap = profile::heap();
    profile::set_sample_rate(profile::DEFAULT_RATE);
    profile::set_unwinder(Unwinder::Checking);

    // Frames from the allocating site up to the allocating loop, per row through the site.
    let mut walks = BTreeSet::new();
    let mut samples = 0;
    let mut rows = Vec::new();
    for sample in heap.samples() {
        let names: Vec<String> = heap.frames(sample).map(|f| f.function.to_owned()).collect();
        if !names.iter().any(|n| n.ends_with("walked_site")) || sample.size != 520 {
            continue;
        }
        samples += sample.inuse.samples;
        rows.push(sample.inuse.samples);
        let test = names
            .iter()
            .position(|n| n.ends_with("allocate_with_each_unwinder"))
            .unwrap_or_else(|| panic!("the walk reaches the allocating loop: {names:#?}"));
        walks.insert(names[..=test].to_vec());
    }
    assert_eq!(samples, 4 * BLOCKS as u64, "every block sampled (R = 1)");
    // Whole stacks, to the thread's entry: the checked samples record what the walk that
    // agreed found, so a round's samples are never split between two rows (a round may
    // share its row with another where their call sites have the same return address).
    assert!(
        rows.iter().all(|&row| row % BLOCKS as u64 == 0),
        "every round's samples in one row: {rows:?}"
    );
    assert_eq!(
        walks.len(),
        1,
        "frame pointers, the unwind table and DWARF walk the same frames: {walks:#?}"
    );
    let walk = walks.first().unwrap();
    let caller = walk.iter().position(|n| n.ends_with("walked_caller"));
    let site = walk.iter().position(|n| n.ends_with("walked_site"));
    assert!(site < caller, "leaf first: {walk:#?}");
    drop(kept);
}
