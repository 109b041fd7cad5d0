//! The allocator hot path: memsentry against raw jemalloc, in the same run, by calling
//! both `GlobalAlloc` implementations directly on the same workload.
//!
//! The workload is `memsentry_benches::Ring` (an alloc/free mix with about 1,000 live
//! blocks). Variants:
//!
//! - `jemalloc`: `tikv_jemallocator::Jemalloc` itself;
//! - `memsentry`: `MemSentry::new()` with bookkeeping on and sampling at the default
//!   rate (R = 512 KiB);
//! - `memsentry_r0`: counting only, sampling off (R = 0);
//! - `memsentry_off`: bookkeeping switched off (`set_enabled(false)`).
//!
//! Each runs on 1 thread (`mix_1t`) and on 2 threads at once (`mix_2t`, each thread with
//! its own ring; the time is the slower thread's, per operation of one thread). The
//! `shim_1t` and `shim_2t` groups run the same variants with every allocator called out
//! of line, as a program calls its global allocator
//! (`memsentry_benches::global_shim`), instead of inlined into the loop.
//! `scripts/bench-ratios.py` turns criterion's medians into the ratios in BENCHMARKS.md.

use std::alloc::GlobalAlloc;
use std::time::Duration;

use criterion::{Criterion, criterion_group, criterion_main};
use memsentry::MemSentry;
use memsentry_benches::{OPS, timed};
use tikv_jemallocator::Jemalloc;

memsentry_benches::jemalloc_and_memsentry_shims!(JemallocShim, MemSentryShim);

/// The group `name` on `threads` threads: `jemalloc` is raw jemalloc, the other variants
/// `memsentry`, each called as given.
fn bench_mix<J, M>(c: &mut Criterion, name: &str, threads: usize, jemalloc: &J, memsentry: &M)
where
    J: GlobalAlloc + Sync,
    M: GlobalAlloc + Sync,
{
    let mut group = c.benchmark_group(format!("{name}_{threads}t"));
    group.throughput(criterion::Throughput::Elements(OPS as u64));
    group.bench_function("jemalloc", |b| {
        b.iter_custom(|iters| timed(jemalloc, threads, iters))
    });
    group.bench_function("memsentry", |b| {
        memsentry::set_enabled(true);
        memsentry::profile::set_sample_rate(memsentry::profile::DEFAULT_RATE);
        b.iter_custom(|iters| timed(memsentry, threads, iters))
    });
    group.bench_function("memsentry_r0", |b| {
        memsentry::profile::set_sample_rate(0);
        b.iter_custom(|iters| timed(memsentry, threads, iters));
        memsentry::profile::set_sample_rate(memsentry::profile::DEFAULT_RATE);
    });
    group.bench_function("memsentry_off", |b| {
        memsentry::set_enabled(false);
        b.iter_custom(|iters| timed(memsentry, threads, iters));
        memsentry::set_enabled(true);
    });
    group.finish();
}

fn mix_1t(c: &mut Criterion) {
    bench_mix(c, "mix", 1, &Jemalloc, &MemSentry::new());
}

fn mix_2t(c: &mut Criterion) {
    bench_mix(c, "mix", 2, &Jemalloc, &MemSentry::new());
}

fn shim_1t(c: &mut Criterion) {
    bench_mix(c, "shim", 1, &JemallocShim, &MemSentryShim);
}

fn shim_2t(c: &mut Criterion) {
    bench_mix(c, "shim", 2, &JemallocShim, &MemSentryShim);
}

fn config() -> Criterion {
    Criterion::default()
        .sample_size(40)
        .warm_up_time(Duration::from_secs(1))
        .measurement_time(Duration::from_secs(4))
}

criterion_group! {
    name = benches;
    config = config();
    targets = mix_1t, mix_2t, shim_1t, shim_2t
}
criterion_main!(benches);
