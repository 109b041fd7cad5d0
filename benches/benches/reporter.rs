//! The reporter's own cost: one tick is `snapshot()` plus `report::publish`, here into a
//! real Prometheus recorder (`metrics-exporter-prometheus`), with N size classes in the
//! snapshot (N = 10, 50, and every class this process used); and the render of `/metrics`
//! and a tick with 1,000 task names, what one scrape of a busy instance costs.
//!
//! ```text
//! cargo bench -p memsentry-benches --bench reporter
//! ```

use std::hint::black_box;

use criterion::{Criterion, criterion_group, criterion_main};
use memsentry::MemSentry;
use metrics_exporter_prometheus::PrometheusBuilder;

#[global_allocator]
static GLOBAL: MemSentry = MemSentry::new();

/// One live block in each of many size classes, from 8 bytes to 8 MiB.
fn blocks_in_many_classes() -> Vec<Vec<u8>> {
    let mut blocks = Vec::new();
    let mut size = 8usize;
    while size <= 8 << 20 {
        blocks.push(vec![0u8; size]);
        size += (size / 8).max(8);
    }
    blocks
}

fn bench_reporter(c: &mut Criterion) {
    let blocks = blocks_in_many_classes();
    let recorder = PrometheusBuilder::new().build_recorder();
    let full = memsentry::snapshot();
    let mut group = c.benchmark_group("reporter");
    for classes in [10, 50, full.classes.len()] {
        let mut snapshot = full.clone();
        snapshot.classes.truncate(classes);
        group.bench_function(format!("publish_{classes}_classes"), |b| {
            metrics::with_local_recorder(&recorder, || {
                b.iter(|| memsentry::report::publish(black_box(&snapshot)));
            });
        });
    }
    group.bench_function("snapshot", |b| b.iter(memsentry::snapshot));
    group.bench_function(format!("tick_{}_classes", full.classes.len()), |b| {
        metrics::with_local_recorder(&recorder, || {
            b.iter(|| memsentry::report::publish(&memsentry::snapshot()));
        });
    });
    group.bench_function("render", |b| {
        let handle = recorder.handle();
        b.iter(|| black_box(handle.render()));
    });
    // A scrape of an instance with 1,000 task names (the default bound): publish and
    // render, what one Prometheus scrape of /metrics costs the service.
    for i in 0..1000 {
        drop(memsentry::task::scope(&format!("bench::task_{i}")));
    }
    metrics::with_local_recorder(&recorder, || memsentry::report::publish(&full));
    group.bench_function("render_1000_tasks", |b| {
        let handle = recorder.handle();
        b.iter(|| black_box(handle.render()));
    });
    group.bench_function("tick_1000_tasks", |b| {
        metrics::with_local_recorder(&recorder, || {
            b.iter(|| memsentry::report::publish(&memsentry::snapshot()));
        });
    });
    group.finish();
    drop(blocks);
}

criterion_group!(benches, bench_reporter);
criterion_main!(benches);
