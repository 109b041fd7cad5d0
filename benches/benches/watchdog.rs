//! The watchdog's own cost: one tick (read the live heap, the resident set and the
//! cgroup's files, fit every window of both series, evaluate the triggers), with its
//! series full, at the default three windows and at eight.
//!
//! ```text
//! cargo bench -p memsentry-benches --bench watchdog
//! ```

use std::time::Duration;

use criterion::{Criterion, criterion_group, criterion_main};
use memsentry::MemSentry;
use memsentry::watch::{__Ticker, Watchdog};

#[global_allocator]
static GLOBAL: MemSentry = MemSentry::new();

fn ticker(settings: Watchdog) -> __Ticker {
    let mut ticker = __Ticker::new(settings);
    // Fill the series: 15 minutes at one tick a second.
    for _ in 0..1000 {
        ticker.tick();
    }
    ticker
}

fn bench_watchdog(c: &mut Criterion) {
    let mut group = c.benchmark_group("watchdog");
    let mut defaults = ticker(Watchdog::new());
    group.bench_function("tick_3_windows", |b| b.iter(|| defaults.tick()));
    let eight = (1..=8).map(|m| Duration::from_secs(m * 120));
    let mut many = ticker(Watchdog::new().windows(eight));
    group.bench_function("tick_8_windows", |b| b.iter(|| many.tick()));
    group.finish();
}

criterion_group!(benches, bench_watchdog);
criterion_main!(benches);
