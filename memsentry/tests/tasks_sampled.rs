//! With every allocation sampled (R = 1), each task's in-use estimate equals the exact
//! live bytes of the blocks it allocated and still holds. A binary of its own:
//! the rate must be 1 before the runtime's threads start.

#![allow(clippy::disallowed_types, clippy::disallowed_macros)]

use std::sync::Mutex;

use memsentry::MemSentry;
use memsentry::task::TrackExt;

#[global_allocator]
static GLOBAL: MemSentry = MemSentry::new();

/// Blocks the tasks keep, out of their reach (capacity reserved first: pushing does not
/// allocate).
static KEPT: Mutex<Vec<Box<[u8]>>> = Mutex::new(Vec::new());

/// Allocates `count` blocks of `size` bytes, keeps `keep` of them, frees the rest.
async fn allocate(count: usize, keep: usize, size: usize) {
    let mut blocks: [Option<Box<[u8]>>; 8] = Default::default();
    for slot in blocks.iter_mut().take(count) {
        *slot = Some(vec![3u8; size].into_boxed_slice());
    }
    let mut kept = KEPT.lock().unwrap();
    for block in blocks.iter_mut().take(keep) {
        kept.push(block.take().unwrap());
    }
}

#[test]
fn with_every_allocation_sampled_in_use_estimates_are_exact() {
    memsentry::profile::set_sample_rate(1);
    KEPT.lock().unwrap().reserve(64);
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .build()
        .unwrap();
    runtime.block_on(async {
        let a = tokio::spawn(allocate(5, 3, 1000).tracked("held::a"));
        let b = tokio::spawn(allocate(4, 2, 2000).tracked("held::b"));
        let c = tokio::spawn(allocate(6, 0, 500).tracked("held::c"));
        a.await.unwrap();
        b.await.unwrap();
        c.await.unwrap();
    });
    let report = memsentry::task::report();
    for (name, objects, bytes) in [
        ("held::a", 3.0, 3000.0),
        ("held::b", 2.0, 4000.0),
        ("held::c", 0.0, 0.0),
    ] {
        let row = report.task(name).unwrap();
        assert_eq!(
            (row.inuse_objects_estimate, row.inuse_bytes_estimate),
            (objects, bytes),
            "{name}:\n{report}"
        );
    }
    // The profile agrees, and splits by task.
    let profile = memsentry::profile::heap();
    assert_eq!(profile.filter_task("held::a").totals().1.bytes, 3000.0);
    assert!(profile.tasks().contains(&"held::b"));
    drop(KEPT.lock().unwrap().drain(..));
}
