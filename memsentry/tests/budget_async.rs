//! A measured future's usage is exactly its own wherever it is polled: polled in turn on
//! three threads, and on a multi-threaded runtime, where other tasks churn beside it and
//! it may migrate between workers.

#![allow(clippy::disallowed_types, clippy::disallowed_macros)]

use std::collections::HashSet;
use std::hint::black_box;
use std::sync::Mutex;
use std::sync::atomic::{AtomicBool, Ordering};
use std::task::{Poll, Waker};

use memsentry::MemSentry;

#[global_allocator]
static GLOBAL: MemSentry = MemSentry::new();

/// Where the measured future leaves its waker for a churning task to wake it: woken from
/// a task on another worker, it is scheduled on that worker, so it migrates. Storing and
/// waking a waker allocates nothing, so the future's own allocations are all the test's.
static HANDOFF: Mutex<Option<Waker>> = Mutex::new(None);
static DONE: AtomicBool = AtomicBool::new(false);

/// Pending once (after handing its waker to `on_pending`), then ready.
async fn pending_once(on_pending: impl FnOnce(&Waker)) {
    let mut on_pending = Some(on_pending);
    std::future::poll_fn(|cx| match on_pending.take() {
        Some(on_pending) => {
            on_pending(cx.waker());
            Poll::Pending
        }
        None => Poll::Ready(()),
    })
    .await;
}

/// Waits until a churning task wakes it.
async fn hand_off() {
    pending_once(|waker| *HANDOFF.lock().unwrap() = Some(waker.clone())).await;
}

#[test]
fn a_future_polled_on_three_threads_counts_exactly_its_own() {
    let mut measured = Box::pin(memsentry::measure_future(async {
        let mut kept = Vec::with_capacity(30);
        for i in 0..30u32 {
            let block = black_box(vec![i as u8; 1000]);
            pending_once(|_| {}).await;
            if i % 2 == 0 {
                kept.push(block);
            }
        }
        kept
    }));
    // Each poll on a new thread, while another allocates beside it: the future migrates
    // at every poll.
    let mut threads = HashSet::new();
    let result = loop {
        let (poll, measured_back, thread) = std::thread::scope(|scope| {
            let churner = scope.spawn(|| {
                for _ in 0..100 {
                    black_box(vec![0u8; 300]);
                }
            });
            let polled = scope
                .spawn(move || {
                    let mut cx = std::task::Context::from_waker(Waker::noop());
                    let poll = measured.as_mut().poll(&mut cx);
                    (poll, measured, std::thread::current().id())
                })
                .join()
                .unwrap();
            churner.join().unwrap();
            polled
        });
        measured = measured_back;
        threads.insert(thread);
        if let Poll::Ready(result) = poll {
            break result;
        }
    };
    let (kept, usage) = result;
    assert_eq!(threads.len(), 31, "one thread per poll");
    // One Vec::with_capacity, 30 blocks; 15 freed inside.
    assert_eq!(usage.allocations(), 31, "{usage}");
    assert_eq!(usage.frees(), 15, "{usage}");
    assert_eq!(usage.allocated_bytes(), 30 * 24 + 30 * 1000);
    assert_eq!(usage.live_bytes(), 30 * 24 + 15 * 1000);
    assert_eq!(usage.peak_bytes(), 30 * 24 + 16 * 1000);
    assert_eq!(kept.len(), 15);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_future_on_a_busy_runtime_counts_exactly_its_own() {
    // Which worker wakes it is up to the scheduler (it migrates at once, almost always,
    // on an idle machine): the counts must be exact every time, wherever it ran.
    for _ in 0..10 {
        run_once().await;
    }
}

/// One run: the counts must be exact.
async fn run_once() {
    DONE.store(false, Ordering::Relaxed);
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
        measured.await
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
}
