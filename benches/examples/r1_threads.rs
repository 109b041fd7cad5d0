//! The benchmark mix with every allocation sampled (R = 1), on N threads at once: time per
//! operation (one free and one allocation, each thread), median and interquartile range
//! over 15 runs of 20,000 operations per thread. Every operation then goes through the
//! sampler's tables, so what this shows beyond one thread is how much the threads contend
//! in them.
//!
//! ```text
//! cargo run --release -p memsentry-benches --example r1_threads -- [THREADS]
//! ```

use std::process::ExitCode;

use memsentry::MemSentry;
use memsentry_benches::{OPS, positive_arg, quartiles, timed};

/// Criterion-style iterations per timed run: 20 × 1,000 operations.
const ITERS: u64 = 20;
const RUNS: usize = 15;

fn main() -> ExitCode {
    let threads = match positive_arg(1, 2, "r1_threads [THREADS>0]") {
        Ok(threads) => threads,
        Err(code) => return code,
    };
    memsentry::profile::set_sample_rate(1);
    let ops = (ITERS as usize * OPS) as f64;
    let mut per_op: Vec<f64> = (0..RUNS)
        .map(|_| timed(&MemSentry::new(), threads, ITERS).as_secs_f64() * 1e9 / ops)
        .collect();
    memsentry::profile::set_sample_rate(memsentry::profile::DEFAULT_RATE);
    let (lo, median, hi) = quartiles(&mut per_op);
    println!("{threads} thread(s), R = 1: {median:.0} ns per operation (IQR {lo:.0}–{hi:.0})");
    ExitCode::SUCCESS
}
