//! Task attribution on a real multi-threaded tokio runtime: exact per-task
//! counts across polls on any worker, nesting, panics, cancellation, and `#[tracked]` on
//! every kind of function.

#![allow(clippy::disallowed_types, clippy::disallowed_macros)]

use std::future::Future;
use std::pin::Pin;
use std::sync::Mutex;
use std::task::{Context, Poll, Waker};
use std::thread::ThreadId;

use memsentry::MemSentry;
use memsentry::task::{self, TrackExt};

#[global_allocator]
static GLOBAL: MemSentry = MemSentry::new();

fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(4)
        .enable_all()
        .build()
        .unwrap()
}

/// Returns `Pending` once, waking itself: the task goes back to a run queue, from which
/// any worker may take it. Allocates nothing (unlike `tokio::task::yield_now`, which may
/// grow a deferred-wakers list inside the poll).
struct YieldOnce(bool);

impl Future for YieldOnce {
    type Output = ();

    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<()> {
        if self.0 {
            Poll::Ready(())
        } else {
            self.0 = true;
            cx.waker().wake_by_ref();
            Poll::Pending
        }
    }
}

/// Wakers parked by [`YieldElsewhere`], woken by a thread of their own: a task woken
/// from outside the runtime goes to its shared queue, which every worker takes from, so
/// its next poll may run on another worker. Preallocated: parking allocates nothing.
static PARKED: Mutex<Vec<Option<Waker>>> = Mutex::new(Vec::new());

fn start_waker_thread(slots: usize) {
    static STARTED: std::sync::Once = std::sync::Once::new();
    STARTED.call_once(|| {
        PARKED.lock().unwrap().resize(slots, None);
        std::thread::spawn(|| {
            loop {
                std::thread::sleep(std::time::Duration::from_micros(200));
                let mut parked = PARKED.lock().unwrap();
                for slot in parked.iter_mut() {
                    if let Some(waker) = slot.take() {
                        waker.wake();
                    }
                }
            }
        });
    });
}

/// Returns `Pending` once; the waker thread wakes it.
struct YieldElsewhere(bool);

impl Future for YieldElsewhere {
    type Output = ();

    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<()> {
        if self.0 {
            return Poll::Ready(());
        }
        let mut parked = PARKED.lock().unwrap();
        let Some(slot) = parked.iter_mut().find(|slot| slot.is_none()) else {
            // All slots taken: wake at once instead.
            cx.waker().wake_by_ref();
            return Poll::Pending;
        };
        // Cloning a tokio waker increments a reference count: no allocation.
        *slot = Some(cx.waker().clone());
        self.0 = true;
        Poll::Pending
    }
}

fn row(name: &str) -> task::TaskRow {
    task::report()
        .task(name)
        .cloned()
        .unwrap_or_else(|| panic!("no task {name}"))
}

const BLOCK: usize = 1000;
const POLLS: usize = 5;

/// Allocates one block per poll, on whichever worker runs it, and keeps them in its own
/// state (no heap) until it ends; reports the threads it ran on.
async fn five_blocks(threads: &Mutex<Vec<ThreadId>>) {
    let mut kept: [Option<Box<[u8]>>; POLLS] = Default::default();
    for slot in &mut kept {
        *slot = Some(vec![7u8; BLOCK].into_boxed_slice());
        if let Ok(mut threads) = threads.lock() {
            // Within capacity: pushing does not allocate.
            threads.push(std::thread::current().id());
        }
        YieldElsewhere(false).await;
    }
    drop(kept);
}

#[test]
fn a_task_is_charged_exactly_what_it_allocates_across_polls_and_workers() {
    const TASKS: usize = 40;
    // Which workers run the polls is the runtime's choice: now and then (on a loaded
    // machine with few cores) one worker takes them all. The counts must be exact every
    // time; the round is repeated, under a fresh name, until it has also run on several
    // workers (ten rounds that all stay on one worker would be a failure).
    const ROUNDS: usize = 10;
    let threads: &'static Mutex<Vec<ThreadId>> =
        Box::leak(Box::new(Mutex::new(Vec::with_capacity(TASKS * POLLS))));
    start_waker_thread(TASKS);
    for round in 0..ROUNDS {
        threads.lock().unwrap().clear();
        let name = format!("test::five_blocks#{round}");
        let runtime = runtime();
        runtime.block_on(async {
            let handles: Vec<_> = (0..TASKS)
                .map(|_| tokio::spawn(five_blocks(threads).tracked(&name)))
                .collect();
            for handle in handles {
                handle.await.unwrap();
            }
        });
        let row = row(&name);
        assert_eq!(
            (row.started, row.finished, row.cancelled, row.live),
            (40, 40, 0, 0)
        );
        assert_eq!(row.allocations, (TASKS * POLLS) as u64);
        assert_eq!(row.allocated_bytes, (TASKS * POLLS * BLOCK) as u64);
        assert_eq!(row.frees, (TASKS * POLLS) as u64);
        assert_eq!(row.freed_bytes, (TASKS * POLLS * BLOCK) as u64);
        assert!(row.polls >= (TASKS * (POLLS + 1)) as u64, "{row:?}");
        let mut seen = threads.lock().unwrap().clone();
        seen.sort_unstable_by_key(|id| format!("{id:?}"));
        seen.dedup();
        if seen.len() > 1 {
            return;
        }
    }
    panic!("in {ROUNDS} rounds the tasks never ran on more than one worker");
}

#[memsentry::tracked(name = "test::inner")]
async fn inner(bytes: usize) -> Box<[u8]> {
    YieldOnce(false).await;
    vec![1u8; bytes].into_boxed_slice()
}

#[memsentry::tracked(name = "test::outer")]
async fn outer() -> usize {
    let own = vec![2u8; 300].into_boxed_slice();
    let nested = inner(700).await;
    own.len() + nested.len()
}

#[test]
fn nested_tracked_scopes_charge_the_innermost() {
    let total = runtime()
        .block_on(async { tokio::spawn(outer()).await })
        .unwrap();
    assert_eq!(total, 1000);
    let inner = row("test::inner");
    let outer = row("test::outer");
    // The inner block is allocated in the inner scope, freed when the outer ends.
    assert_eq!((inner.allocations, inner.allocated_bytes), (1, 700));
    assert_eq!((outer.allocations, outer.allocated_bytes), (1, 300));
    assert_eq!((outer.frees, outer.freed_bytes), (2, 1000));
    assert_eq!((inner.started, inner.finished), (1, 1));
}

#[test]
fn a_panicking_poll_restores_the_previous_task_and_counts_as_cancelled() {
    let _outer = task::scope("test::around_panic");
    assert_eq!(task::current(), Some("test::around_panic"));
    let mut panicking = Box::pin(task::track("test::panics", async {
        let _block = std::hint::black_box(vec![0u8; 64]);
        panic!("inside the tracked poll");
    }));
    let result = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
        let mut cx = Context::from_waker(std::task::Waker::noop());
        let _ = panicking.as_mut().poll(&mut cx);
    }));
    assert!(result.is_err());
    assert_eq!(task::current(), Some("test::around_panic"), "restored");
    drop(panicking);
    let row = row("test::panics");
    assert_eq!(
        (row.started, row.finished, row.cancelled, row.live),
        (1, 0, 1, 0)
    );
    // The block was allocated and freed (while unwinding) inside the poll, and so was
    // whatever the panic hook allocated there (a backtrace, say).
    assert!(
        row.allocated_bytes >= 64 && row.freed_bytes >= 64,
        "{row:?}"
    );
}

#[test]
fn aborted_tasks_are_cancelled_and_live_ones_show_their_age() {
    let runtime = runtime();
    runtime.block_on(async {
        let (started, wait) = tokio::sync::oneshot::channel::<()>();
        let handle = tokio::spawn(
            async move {
                let _ = started.send(());
                std::future::pending::<()>().await;
            }
            .tracked("test::forever"),
        );
        wait.await.unwrap();
        let live = row("test::forever");
        assert_eq!((live.started, live.live), (1, 1));
        assert!(live.oldest_live.is_some());
        handle.abort();
        assert!(handle.await.unwrap_err().is_cancelled());
    });
    let row = row("test::forever");
    assert_eq!(
        (row.started, row.finished, row.cancelled, row.live),
        (1, 0, 1, 0)
    );
    assert_eq!(row.oldest_live, None);
}

struct Shop {
    stock: Vec<u32>,
}

trait Checkout {
    async fn checkout(&self, n: usize) -> usize;
}

impl Shop {
    #[memsentry::tracked]
    async fn restock(&mut self, n: u32) {
        self.stock.push(n);
    }

    #[memsentry::tracked(name = "test::consume")]
    async fn consume(self) -> usize {
        self.stock.len()
    }

    #[memsentry::tracked]
    fn count(&self) -> usize {
        self.stock.len()
    }
}

impl Checkout for Shop {
    #[memsentry::tracked(name = "test::checkout")]
    async fn checkout(&self, n: usize) -> usize {
        // `black_box`: release builds would otherwise elide the allocation.
        std::hint::black_box(vec![0u8; n]).len()
    }
}

#[memsentry::tracked]
async fn generic<T: Clone + Send>(value: T) -> Vec<T> {
    vec![value.clone(), value]
}

#[memsentry::tracked]
fn plain(n: usize) -> Result<usize, String> {
    // `black_box`: release builds would otherwise elide the allocations.
    let buffer = std::hint::black_box(vec![0u8; n]);
    if buffer.is_empty() {
        return Err(std::hint::black_box("empty".to_owned()));
    }
    Ok(buffer.len())
}

#[memsentry::tracked]
async fn fallible(fail: bool) -> Result<u8, std::num::ParseIntError> {
    let n: u8 = if fail { "x".parse()? } else { "7".parse()? };
    Ok(n)
}

#[test]
fn tracked_works_on_every_kind_of_function() {
    let runtime = runtime();
    runtime.block_on(async {
        let mut shop = Shop {
            stock: Vec::with_capacity(4),
        };
        shop.restock(3).await;
        assert_eq!(shop.count(), 1);
        assert_eq!(shop.checkout(50).await, 50);
        assert_eq!(generic("a").await, ["a", "a"]);
        assert_eq!(shop.consume().await, 1);
        assert_eq!(fallible(false).await, Ok(7));
        assert!(fallible(true).await.is_err());
    });
    assert_eq!(plain(10), Ok(10));
    assert!(plain(0).is_err());
    let report = task::report();
    // Default names are the function's path: module::function.
    for (name, calls) in [
        ("tasks::restock", 1),
        ("tasks::count", 1),
        ("test::checkout", 1),
        ("tasks::generic", 1),
        ("test::consume", 1),
        ("tasks::plain", 2),
        ("tasks::fallible", 2),
    ] {
        let row = report
            .task(name)
            .unwrap_or_else(|| panic!("{name} missing:\n{report}"));
        assert_eq!((row.started, row.finished), (calls, calls), "{name}");
    }
    // 10 bytes, then the error's 5 ("empty").
    assert_eq!(report.task("tasks::plain").unwrap().allocated_bytes, 15);
    assert_eq!(report.task("test::checkout").unwrap().allocated_bytes, 50);
    let table = report.to_string();
    assert!(table.starts_with("task "), "{table}");
    assert!(table.contains("tasks::plain"));
}
