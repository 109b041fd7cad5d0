//! How many series one instance exports, and how big `/metrics` is: at the defaults, and
//! with 1,000 task names (the default bound of `task::set_max_names`); and that the bound
//! holds whatever the program does (names past it count as `other`).

#![allow(clippy::disallowed_types, clippy::disallowed_macros)]

use std::time::Duration;

use memsentry::MemSentry;
use memsentry::http::Server;
use memsentry::report::Reporter;

#[global_allocator]
static GLOBAL: MemSentry = MemSentry::new();

/// Series in an exposition: its sample lines.
fn series(text: &str) -> usize {
    text.lines()
        .filter(|l| !l.is_empty() && !l.starts_with('#'))
        .count()
}

#[test]
fn series_per_instance_are_bounded() {
    let monitoring = memsentry::prometheus::install_with(
        Server::new().addr("127.0.0.1:0".parse().unwrap()),
        Reporter::new().interval(Duration::from_secs(3600)),
    )
    .unwrap();
    memsentry::report::publish(&memsentry::snapshot());
    let idle = monitoring.render();
    let base = series(&idle);
    // 4 counters × 10 size buckets, the failure counter, 22 gauges and the interval.
    assert!(
        (60..=80).contains(&base),
        "{base} series at the defaults:\n{idle}"
    );

    // 1,200 task names: 1,000 kept, the rest counted as "other".
    for i in 0..1200 {
        drop(memsentry::task::scope(&format!("fleet::task_{i}")));
    }
    memsentry::report::publish(&memsentry::snapshot());
    let busy = monitoring.render();
    let with_tasks = series(&busy);
    let per_task = 8;
    assert_eq!(
        with_tasks - base,
        per_task * 1001,
        "8 series per name, 1,000 names and `other`"
    );
    assert!(busy.contains("task=\"other\""));
    println!(
        "series: {base} at the defaults ({} bytes of /metrics); {with_tasks} with 1,000 task \
         names ({} bytes)",
        idle.len(),
        busy.len()
    );
    monitoring.stop();
}
