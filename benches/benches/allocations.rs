//! Allocations per iteration, reported by `cargo bench` beside the time benches, as Go's
//! `b.ReportAllocs()` does: memsentry's criterion measurements (`memsentry::budget::criterion`,
//! the `criterion` feature). The counts are exact and the same every run.
//!
//! ```text
//! cargo bench -p memsentry-benches --bench allocations
//! ```

use std::collections::HashMap;
use std::hint::black_box;

use criterion::{Criterion, criterion_group, criterion_main};
use memsentry::MemSentry;
use memsentry::budget::criterion::{AllocatedBytes, Allocations};

#[global_allocator]
static GLOBAL: MemSentry = MemSentry::new();

fn work(c: &mut Criterion<impl criterion::measurement::Measurement + 'static>) {
    c.bench_function("format_u64", |b| {
        b.iter(|| black_box(format!("{}", black_box(42u64))))
    });
    c.bench_function("map_of_16", |b| {
        b.iter(|| {
            let map: HashMap<u32, String> = (0..16).map(|i| (i, i.to_string())).collect();
            black_box(map)
        });
    });
}

fn allocations(c: &mut Criterion<Allocations>) {
    work(c);
}

fn bytes(c: &mut Criterion<AllocatedBytes>) {
    work(c);
}

criterion_group! {
    name = per_iteration_allocations;
    config = Criterion::default().with_measurement(Allocations);
    targets = allocations
}
criterion_group! {
    name = per_iteration_bytes;
    config = Criterion::default().with_measurement(AllocatedBytes);
    targets = bytes
}
criterion_main!(per_iteration_allocations, per_iteration_bytes);
