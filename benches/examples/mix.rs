//! Runs the benchmark mix once, for instruction counts under callgrind (which are exact and
//! repeatable, unlike times on a noisy machine):
//!
//! ```text
//! cargo build --release -p memsentry-benches --example mix
//! valgrind --tool=callgrind --callgrind-out-file=/dev/null target/release/examples/mix memsentry 1000000
//! ```
//!
//! With a third argument, every request has that many bytes instead of the mix's sizes:
//! the cost of one request size.
//!
//! Variants: `jemalloc`, `memsentry` (default sampling rate), `memsentry_r0` (sampling
//! off), `memsentry_r1` (every allocation sampled), `memsentry_task` (inside a tracked task),
//! `memsentry_off` (bookkeeping off).

use std::process::ExitCode;

use memsentry::MemSentry;
use memsentry_benches::Ring;
use tikv_jemallocator::Jemalloc;

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let (Some(variant), Some(ops)) = (args.first(), args.get(1).and_then(|n| n.parse().ok()))
    else {
        eprintln!(
            "usage: mix jemalloc|memsentry|memsentry_r0|memsentry_r1|memsentry_task|memsentry_off OPS [SIZE]"
        );
        return ExitCode::from(2);
    };
    let size = match args.get(2).map(|n| n.parse::<usize>()) {
        None => None,
        Some(Ok(size)) if size > 0 => Some(size),
        Some(_) => {
            eprintln!("mix: SIZE must be a positive byte count");
            return ExitCode::from(2);
        }
    };
    match variant.as_str() {
        "jemalloc" => run(&Jemalloc, ops, size),
        "memsentry" => run(&MemSentry::new(), ops, size),
        "memsentry_r1" => {
            memsentry::profile::set_sample_rate(1);
            run(&MemSentry::new(), ops, size);
        }
        "memsentry_r0" => {
            memsentry::profile::set_sample_rate(0);
            run(&MemSentry::new(), ops, size);
        }
        "memsentry_task" => {
            // Inside a task: the thread's fast path is off, the slow path charges it.
            let _scope = memsentry::task::scope("mix");
            run(&MemSentry::new(), ops, size);
        }
        "memsentry_off" => {
            memsentry::set_enabled(false);
            run(&MemSentry::new(), ops, size);
        }
        other => {
            eprintln!("mix: unknown variant {other:?}");
            return ExitCode::from(2);
        }
    }
    ExitCode::SUCCESS
}

fn run<A: std::alloc::GlobalAlloc>(allocator: &A, ops: usize, size: Option<usize>) {
    let mut ring = Ring::new_or_of_size(allocator, 0x1234_5678, size);
    ring.run(allocator, ops);
    ring.free_all(allocator);
}
