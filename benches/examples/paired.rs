//! Paired, interleaved timing of the benchmark mix: the robust ratio on a noisy machine.
//!
//! Criterion times each variant for seconds, one after the other, so a machine whose speed
//! drifts by ±30% within a minute (shared vCPUs) moves whole variants against each other.
//! Here every round runs each variant once, back to back, in a fresh random order, and
//! the ratio is taken *within* the round; the report is the median of those per-round
//! ratios, with its interquartile range.
//!
//! ```text
//! cargo run --release -p memsentry-benches --example paired -- [ROUNDS] [THREADS] [SHAPE]
//! ```
//!
//! Defaults: 201 rounds of 100,000 operations per variant, on 1 and then 2 threads, in
//! both shapes: `direct` (each `GlobalAlloc` called directly, inlined into the loop) and
//! then `shim` (called out of line over a `static`, as a program calls its global
//! allocator; BENCHMARKS.md, "The call shape").

use std::process::ExitCode;
use std::time::Duration;

use memsentry::MemSentry;
use memsentry_benches::{OPS, interleaved, quartiles, ratios_to_first, timed};
use tikv_jemallocator::Jemalloc;

/// Criterion-style iterations per timed run: 100 × 1,000 operations.
const ITERS: u64 = 100;

#[derive(Clone, Copy, Debug)]
enum Variant {
    Jemalloc,
    Memsentry,
    R0,
    Off,
}

const VARIANTS: [Variant; 4] = [
    Variant::Jemalloc,
    Variant::Memsentry,
    Variant::R0,
    Variant::Off,
];

impl Variant {
    fn name(self) -> &'static str {
        match self {
            Variant::Jemalloc => "jemalloc",
            Variant::Memsentry => "memsentry",
            Variant::R0 => "memsentry_r0",
            Variant::Off => "memsentry_off",
        }
    }

    fn run(self, threads: usize, shape: Shape) -> Duration {
        let rate = match self {
            Variant::R0 => 0,
            _ => memsentry::profile::DEFAULT_RATE,
        };
        memsentry::profile::set_sample_rate(rate);
        memsentry::set_enabled(!matches!(self, Variant::Off));
        match (self, shape) {
            (Variant::Jemalloc, Shape::Direct) => timed(&Jemalloc, threads, ITERS),
            (Variant::Jemalloc, Shape::Shim) => timed(&JemallocShim, threads, ITERS),
            (_, Shape::Direct) => timed(&MemSentry::new(), threads, ITERS),
            (_, Shape::Shim) => timed(&MemSentryShim, threads, ITERS),
        }
    }
}

memsentry_benches::jemalloc_and_memsentry_shims!(JemallocShim, MemSentryShim);

/// How the allocators are called.
#[derive(Clone, Copy, Debug)]
enum Shape {
    /// Directly: inlined into the benchmark's loop.
    Direct,
    /// Out of line, through shims declared in this binary.
    Shim,
}

impl Shape {
    fn name(self) -> &'static str {
        match self {
            Shape::Direct => "called directly",
            Shape::Shim => "called as a global allocator",
        }
    }
}

const USAGE: &str = "usage: paired [ROUNDS>0] [THREADS>0] [direct|shim]";

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let rounds = match args.first().map(|s| s.parse::<usize>()) {
        None => 201,
        Some(Ok(n)) if n > 0 => n,
        Some(_) => {
            eprintln!("{USAGE}");
            return ExitCode::from(2);
        }
    };
    let thread_counts = match args.get(1).map(|s| s.parse::<usize>()) {
        None => vec![1, 2],
        Some(Ok(n)) if n > 0 => vec![n],
        Some(_) => {
            eprintln!("{USAGE}");
            return ExitCode::from(2);
        }
    };
    let shapes = match args.get(2).map(String::as_str) {
        None => vec![Shape::Direct, Shape::Shim],
        Some("direct") => vec![Shape::Direct],
        Some("shim") => vec![Shape::Shim],
        Some(_) => {
            eprintln!("{USAGE}");
            return ExitCode::from(2);
        }
    };
    for shape in shapes {
        for &threads in &thread_counts {
            report(rounds, threads, shape);
        }
    }
    ExitCode::SUCCESS
}

/// Runs `rounds` rounds of every variant on `threads` threads, called in `shape`, and
/// prints the median ratios.
fn report(rounds: usize, threads: usize, shape: Shape) {
    let times = interleaved(&VARIANTS, rounds, |variant| variant.run(threads, shape));
    // ratios[v][round] = time(v) / time(jemalloc) within one round.
    let mut ratios = ratios_to_first(&times);
    let mut base_ns: Vec<f64> = times[Variant::Jemalloc as usize]
        .iter()
        .map(|base| base.as_secs_f64() * 1e9 / (ITERS as f64 * OPS as f64))
        .collect();
    memsentry::set_enabled(true);
    memsentry::profile::set_sample_rate(memsentry::profile::DEFAULT_RATE);
    let (lo, med, hi) = quartiles(&mut base_ns);
    println!(
        "{threads} thread(s), {}, {rounds} rounds of {} ops: jemalloc {med:.1} ns/op (IQR {lo:.1}–{hi:.1})",
        shape.name(),
        ITERS as usize * OPS
    );
    for variant in &VARIANTS[1..] {
        let (lo, med, hi) = quartiles(&mut ratios[*variant as usize]);
        println!(
            "  {:<14} median ratio {med:.3}×  (IQR {lo:.3}–{hi:.3})",
            variant.name()
        );
    }
}
