//! The cost of task attribution: one poll of a `Tracked` future against the
//! bare future, and an allocation + free inside a task against outside one.
//!
//! ```text
//! cargo bench -p memsentry-benches --bench tasks
//! ```

use std::future::Future;
use std::hint::black_box;
use std::pin::Pin;
use std::task::{Context, Poll, Waker};

use criterion::{Criterion, criterion_group, criterion_main};
use memsentry::MemSentry;
use memsentry::task::TaskName;

#[global_allocator]
static GLOBAL: MemSentry = MemSentry::new();

/// Never finishes: every poll does the same small amount of work.
struct Spin(u64);

impl Future for Spin {
    type Output = ();

    fn poll(mut self: Pin<&mut Self>, _cx: &mut Context<'_>) -> Poll<()> {
        self.0 = black_box(self.0.wrapping_add(1));
        Poll::Pending
    }
}

static BENCH_TASK: TaskName = TaskName::new("bench::spin");

fn bench_tasks(c: &mut Criterion) {
    let mut cx = Context::from_waker(Waker::noop());
    let mut group = c.benchmark_group("poll");
    group.bench_function("bare", |b| {
        let mut future = Box::pin(Spin(0));
        b.iter(|| black_box(future.as_mut().poll(&mut cx)));
    });
    group.bench_function("tracked", |b| {
        let mut future = Box::pin(BENCH_TASK.track(Spin(0)));
        b.iter(|| black_box(future.as_mut().poll(&mut cx)));
    });
    group.finish();

    let mut group = c.benchmark_group("alloc_free_64");
    group.bench_function("no_task", |b| {
        b.iter(|| drop(black_box(vec![0u8; 64])));
    });
    group.bench_function("in_task", |b| {
        let _scope = BENCH_TASK.scope();
        b.iter(|| drop(black_box(vec![0u8; 64])));
    });
    group.finish();
}

criterion_group!(benches, bench_tasks);
criterion_main!(benches);
