//! A/B timing of two versions of memsentry linked into one binary (built by
//! `scripts/ab.sh`): `memsentry_old` (a git revision) and `memsentry` (the working tree),
//! each on the benchmark mix (or on requests of one size) at R = 0, at the default rate
//! and switched off, against raw jemalloc.
//!
//! Two binaries place the same jemalloc code differently, and their raw jemalloc loops
//! have been seen to differ by up to 50% in the same minutes: a ratio to a slower
//! denominator flatters whatever it divides. Here every
//! variant runs in the same process, once per round in a fresh random order, and each is
//! divided by the same round's jemalloc.
//!
//! ```text
//! ab [ROUNDS] [THREADS] [SIZE]     (defaults: 61 rounds, 1 thread, the mix's sizes)
//! ```
//!
//! With `AB_SHAPE=shim` in the environment, every allocator (jemalloc too) is called out
//! of line, as a program calls its global allocator (`memsentry_benches::global_shim`);
//! by default they are called directly, inlined into the benchmark's loop.

use std::time::Duration;

use memsentry_benches::{
    OPS, interleaved, positive_arg, quartiles, ratios_to_first, timed_with,
};
use tikv_jemallocator::Jemalloc;

// All three shims declared in this binary, as programs declare their allocator: a shim
// taken from a library crate reads thread-locals by the general-dynamic TLS model, which
// alone costs ~23 instructions a pair (BENCHMARKS.md, "The call shape").
static JEMALLOC: Jemalloc = Jemalloc;
static OLD: memsentry_old::MemSentry = memsentry_old::MemSentry::new();
static NEW: memsentry::MemSentry = memsentry::MemSentry::new();
memsentry_benches::global_shim!(JemallocShim => JEMALLOC);
memsentry_benches::global_shim!(OldShim => OLD);
memsentry_benches::global_shim!(NewShim => NEW);

/// Iterations of 1,000 operations per timed run, as in `paired`.
const ITERS: u64 = 100;
const DEFAULT_RATE: u64 = 512 * 1024;

#[derive(Clone, Copy, Debug)]
enum Variant {
    Jemalloc,
    OldR0,
    NewR0,
    OldDefault,
    NewDefault,
    OldOff,
    NewOff,
}

const VARIANTS: [Variant; 7] = [
    Variant::Jemalloc,
    Variant::OldR0,
    Variant::NewR0,
    Variant::OldDefault,
    Variant::NewDefault,
    Variant::OldOff,
    Variant::NewOff,
];

impl Variant {
    fn run(self, threads: usize, size: Option<usize>, shim: bool) -> Duration {
        let rate = match self {
            Variant::OldR0 | Variant::NewR0 => 0,
            _ => DEFAULT_RATE,
        };
        let on = !matches!(self, Variant::OldOff | Variant::NewOff);
        match self {
            Variant::Jemalloc if shim => timed_with(&JemallocShim, threads, ITERS, size),
            Variant::Jemalloc => timed_with(&Jemalloc, threads, ITERS, size),
            Variant::OldR0 | Variant::OldDefault | Variant::OldOff => {
                memsentry_old::profile::set_sample_rate(rate);
                memsentry_old::set_enabled(on);
                if shim {
                    timed_with(&OldShim, threads, ITERS, size)
                } else {
                    timed_with(&memsentry_old::MemSentry::new(), threads, ITERS, size)
                }
            }
            Variant::NewR0 | Variant::NewDefault | Variant::NewOff => {
                memsentry::profile::set_sample_rate(rate);
                memsentry::set_enabled(on);
                if shim {
                    timed_with(&NewShim, threads, ITERS, size)
                } else {
                    timed_with(&memsentry::MemSentry::new(), threads, ITERS, size)
                }
            }
        }
    }
}

fn main() -> std::process::ExitCode {
    let usage = "ab [ROUNDS>0] [THREADS>0] [SIZE>0]";
    let rounds = match positive_arg(1, 61, usage) {
        Ok(rounds) => rounds,
        Err(code) => return code,
    };
    let threads = match positive_arg(2, 1, usage) {
        Ok(threads) => threads,
        Err(code) => return code,
    };
    // 0: the mix's sizes.
    let size = match positive_arg(3, 0, usage) {
        Ok(0) => None,
        Ok(size) => Some(size),
        Err(code) => return code,
    };
    let shim = match std::env::var("AB_SHAPE").as_deref() {
        Err(_) | Ok("direct") => false,
        Ok("shim") => true,
        Ok(other) => {
            eprintln!("ab: AB_SHAPE must be `direct` or `shim`, not {other:?}");
            return std::process::ExitCode::from(2);
        }
    };
    let times = interleaved(&VARIANTS, rounds, |variant| variant.run(threads, size, shim));
    let mut ratios = ratios_to_first(&times);
    let mut jemalloc_ns: Vec<f64> = times[0]
        .iter()
        .map(|time| time.as_secs_f64() * 1e9 / (ITERS as f64 * OPS as f64))
        .collect();
    let (_, median, _) = quartiles(&mut jemalloc_ns);
    let sizes = size.map_or("the mix".to_owned(), |size| format!("{size}-byte requests"));
    let shape = if shim { "called as a global allocator" } else { "called directly" };
    println!("{threads} thread(s), {rounds} rounds, {sizes}, {shape}: jemalloc {median:.1} ns/op");
    for (variant, ratios) in VARIANTS.iter().zip(&mut ratios).skip(1) {
        let (low, median, high) = quartiles(ratios);
        println!("  {variant:<12?} median ratio {median:.3}x (IQR {low:.3}-{high:.3})");
    }
    std::process::ExitCode::SUCCESS
}
