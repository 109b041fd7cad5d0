//! What one sample costs in time: the benchmark mix at sampling rate `R` against the same
//! mix with sampling off, run back to back in a fresh random order each round, on one
//! thread. The time difference of a round divided by the samples it took (the bytes it
//! allocated over `R`: a Poisson process over bytes takes that many on average) is the
//! cost of a sample, its free included, cold caches and all; the report is the median
//! over rounds with its interquartile range.
//!
//! ```text
//! cargo run --release -p memsentry-benches --example sample_cost -- [ROUNDS] [RATE...]
//! ```
//!
//! Defaults: 31 rounds, rates 16 KiB, 64 KiB and 512 KiB (the default rate). Each run is
//! 1,000,000 operations of the mix (~666 MB allocated).

use std::process::ExitCode;
use std::time::Duration;

use memsentry::MemSentry;
use memsentry_benches::{OPS, quartiles, timed};

/// Criterion-style iterations per timed run: 1,000 × 1,000 operations.
const ITERS: u64 = 1_000;

/// Bytes the mix allocates (memsentry's own counters) and the time it takes at `rate`.
fn run(rate: u64) -> (u64, Duration) {
    memsentry::profile::set_sample_rate(rate);
    let before = memsentry::totals().allocated_bytes;
    let time = timed(&MemSentry::new(), 1, ITERS);
    (memsentry::totals().allocated_bytes - before, time)
}

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let parsed: Result<Vec<u64>, _> = args.iter().map(|a| a.parse::<u64>()).collect();
    let Ok(parsed) = parsed else {
        eprintln!("usage: sample_cost [ROUNDS>0] [RATE>1 ...]");
        return ExitCode::from(2);
    };
    let rounds = parsed.first().copied().unwrap_or(31);
    let mut rates: Vec<u64> = parsed.iter().skip(1).copied().collect();
    if rates.is_empty() {
        rates = vec![16 << 10, 64 << 10, memsentry::profile::DEFAULT_RATE];
    }
    if rounds == 0 || rates.iter().any(|&r| r < 2) {
        eprintln!("usage: sample_cost [ROUNDS>0] [RATE>1 ...]");
        return ExitCode::from(2);
    }
    let mut rng = 0x9e37_79b9_7f4a_7c15_u64;
    let mut coin = move || {
        rng ^= rng << 13;
        rng ^= rng >> 7;
        rng ^= rng << 17;
        rng & 1 == 0
    };
    for rate in rates {
        let mut per_sample_ns = Vec::new();
        let mut ratios = Vec::new();
        let mut ops_per_sample = 0.0;
        for _ in 0..rounds {
            let ((bytes, sampled), (_, off)) = if coin() {
                let s = run(rate);
                (s, run(0))
            } else {
                let o = run(0);
                (run(rate), o)
            };
            let samples = bytes as f64 / rate as f64;
            ops_per_sample = (ITERS as usize * OPS) as f64 / samples;
            let extra = sampled.as_secs_f64() - off.as_secs_f64();
            per_sample_ns.push(extra * 1e9 / samples);
            ratios.push(sampled.as_secs_f64() / off.as_secs_f64());
        }
        let (lo, med, hi) = quartiles(&mut per_sample_ns);
        let (_, ratio, _) = quartiles(&mut ratios);
        println!(
            "rate {rate:>7} B: {med:>5.0} ns per sample (IQR {lo:.0}–{hi:.0}), one per {ops_per_sample:.0} operations, time {ratio:.3}× sampling off"
        );
    }
    memsentry::profile::set_sample_rate(memsentry::profile::DEFAULT_RATE);
    ExitCode::SUCCESS
}
