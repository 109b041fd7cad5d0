//! A measured future on a multi-threaded runtime: it migrates between workers (each
//! `yield_now` may resume it on another), other tasks churn beside it, and its usage is
//! exactly its own.

#![allow(clippy::disallowed_types, clippy::disallowed_macros)]

use std::collections::HashSet;
use std::hint::black_box;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::task::{Poll, Waker};

use memsentry::MemSentry;

#[global_allocator]
static GLOBAL: MemSentry = MemSentry::new();

/// Where the measured future leaves its waker for a churning task to wake it: woken from
/// a task on another worker, it is scheduled on that worker, so it migrates. Storing and
/// waking a waker allocates nothing, so the future's own allocations are all the test's.
static HANDOFF: Mutex<Option<Waker>> = Mutex::new(None);
static DONE: AtomicBool = AtomicBool::new(false);

/// Waits until a churning task wakes it.
async fn hand_off() {
    let mut parked = false;
    std::future::poll_fn(|cx| {
        if parked {
            return Poll::Ready(());
        }
        parked = true;
        *HANDOFF.lock().unwrap() = Some(cx.waker().clone());
        Poll::Pending
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_migrating_future_counts_exactly_its_own() {
    // Which worker wakes it is up to the scheduler: run until it has migrated (at once,
    // almost always), checking the counts every time.
    for _ in 0..50 {
        if run_once().await >= 2 {
            return;
        }
    }
    panic!("the measured future never migrated between workers in 50 runs");
}

/// One run: the counts must be exact; returns on how many threads it was polled.
async fn run_once() -> usize {
    DONE.store(false, Ordering::Relaxed);
    let threads = Arc::new(Mutex::new(HashSet::new()));
    let churners: Vec<_> = (0..4)
        .map(|_| {
            tokio::spawn(async {
                while !DONE.load(Ordering::Relaxed) {
                    black_box(vec![0u8; 300]);
                    let waker = HANDOFF.lock().unwrap().take();
                    if let Some(waker) = waker {
                        waker.wake();
                    }
                    tokio::task::yield_now().await;
                }
            })
        })
        .collect();
    let seen = Arc::clone(&threads);
    // Recording the thread allocates: that happens outside the measured future.
    let (kept, usage) = tokio::spawn(async move {
        let measured = memsentry::measure_future(async {
            let mut kept = Vec::with_capacity(100);
            for i in 0..100u32 {
                let block = black_box(vec![i as u8; 1000]);
                hand_off().await;
                if i % 2 == 0 {
                    kept.push(block);
                }
            }
            kept
        });
        let mut measured = std::pin::pin!(measured);
        std::future::poll_fn(|cx| {
            let poll = measured.as_mut().poll(cx);
            seen.lock().unwrap().insert(std::thread::current().id());
            poll
        })
        .await
    })
    .await
    .unwrap();
    DONE.store(true, Ordering::Relaxed);
    for churner in churners {
        churner.await.unwrap();
    }
    // One Vec::with_capacity, 100 blocks; 50 freed inside.
    assert_eq!(usage.allocations(), 101, "{usage}");
    assert_eq!(usage.frees(), 50, "{usage}");
    assert_eq!(usage.allocated_bytes(), 100 * 24 + 100 * 1000);
    assert_eq!(usage.live_bytes(), 100 * 24 + 50 * 1000);
    assert_eq!(usage.peak_bytes(), 100 * 24 + 51 * 1000);
    assert_eq!(kept.len(), 50);
    threads.lock().unwrap().len()
}
