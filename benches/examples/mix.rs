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
//! `MIX_UNWINDER=dwarf`, `table` or `frame-pointers` in the environment walks every sample's
//! stack that way (by default the process's start-up check chooses).
//!
//! Variants: `jemalloc`, `memsentry` (default sampling rate), `memsentry_r0` (sampling
//! off), `memsentry_r1` (every allocation sampled), `memsentry_task` (inside a tracked task),
//! `memsentry_scope` (inside a measured scope, `memsentry::measure`), `memsentry_off`
//! (bookkeeping off). Prefixed with `shim_` (`shim_jemalloc`,
//! `shim_memsentry_r0`, …), each allocator is called out of line, as a program calls its
//! global allocator ([`memsentry_benches::global_shim`], declared here in the binary),
//! instead of inlined into the benchmark's loop; prefixed with `libshim_`, the same with
//! the shims declared in a library crate (`memsentry_benches`), which needs
//! `--features libshim`: a library that instantiates `MemSentry`'s methods lends its
//! copies of the out-of-line ones (compiled for a library's TLS model) to every binary
//! that links it, so the other variants are measured without it.

use std::process::ExitCode;

use memsentry::MemSentry;
use memsentry_benches::Ring;
use tikv_jemallocator::Jemalloc;

memsentry_benches::jemalloc_and_memsentry_shims!(JemallocShim, MemSentryShim);

/// How the allocators are called.
#[derive(Clone, Copy)]
enum Shape {
    /// Directly: inlined into the loop.
    Direct,
    /// Out of line, through shims declared in this binary.
    Shim,
    /// Out of line, through shims declared in a library crate.
    LibShim,
}

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let (Some(variant), Some(ops)) = (args.first(), args.get(1).and_then(|n| n.parse().ok()))
    else {
        eprintln!(
            "usage: mix [shim_|libshim_]jemalloc|memsentry|memsentry_r0|memsentry_r1|memsentry_task|memsentry_scope|memsentry_off OPS [SIZE]"
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
    let (shape, name) = if let Some(name) = variant.strip_prefix("shim_") {
        (Shape::Shim, name)
    } else if let Some(name) = variant.strip_prefix("libshim_") {
        (Shape::LibShim, name)
    } else {
        (Shape::Direct, variant.as_str())
    };
    // `MIX_UNWINDER=dwarf|table|frame-pointers` walks every sample so (default: the
    // process's check decides), to compare the walks' costs in one build.
    match std::env::var("MIX_UNWINDER").as_deref() {
        Ok("dwarf") => memsentry::profile::set_unwinder(memsentry::profile::Unwinder::Dwarf),
        Ok("table") => memsentry::profile::set_unwinder(memsentry::profile::Unwinder::Table),
        Ok("frame-pointers") => {
            memsentry::profile::set_unwinder(memsentry::profile::Unwinder::FramePointers);
        }
        Ok(other) => {
            eprintln!("mix: MIX_UNWINDER={other:?}: expected dwarf, table or frame-pointers");
            return ExitCode::from(2);
        }
        Err(_) => {}
    }
    // Inside a task (`memsentry_task`): the thread's fast path is off, the task branch
    // counts and charges it.
    let mut _scope = None;
    match name {
        "jemalloc" | "memsentry" => {}
        "memsentry_r1" => memsentry::profile::set_sample_rate(1),
        "memsentry_r0" => memsentry::profile::set_sample_rate(0),
        "memsentry_task" => _scope = Some(memsentry::task::scope("mix")),
        "memsentry_off" => memsentry::set_enabled(false),
        "memsentry_scope" => {}
        _ => {
            eprintln!("mix: unknown variant {variant:?}");
            return ExitCode::from(2);
        }
    }
    if name == "memsentry_scope" {
        let ((), usage) = memsentry::measure(|| match shape {
            Shape::Shim => run(&MemSentryShim, ops, size),
            _ => run(&MemSentry::new(), ops, size),
        });
        // The ring's blocks are all freed: what the scope allocated, it freed.
        if usage.live_bytes() != 0 {
            eprintln!("mix: the scope left {} bytes", usage.live_bytes());
            return ExitCode::FAILURE;
        }
        return ExitCode::SUCCESS;
    }
    match (name == "jemalloc", shape) {
        (true, Shape::Direct) => run(&Jemalloc, ops, size),
        (true, Shape::Shim) => run(&JemallocShim, ops, size),
        (false, Shape::Direct) => run(&MemSentry::new(), ops, size),
        (false, Shape::Shim) => run(&MemSentryShim, ops, size),
        #[cfg(feature = "libshim")]
        (true, Shape::LibShim) => run(&memsentry_benches::LibJemallocShim, ops, size),
        #[cfg(feature = "libshim")]
        (false, Shape::LibShim) => run(&memsentry_benches::LibMemSentryShim, ops, size),
        #[cfg(not(feature = "libshim"))]
        (_, Shape::LibShim) => {
            eprintln!("mix: the libshim_ variants need `--features libshim`");
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
