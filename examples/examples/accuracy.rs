//! Accuracy harness for memsentry's sampled heap profiles: allocates at four call sites
//! with known ground truth and compares the profile's estimates with it.
//!
//! ```text
//! cargo run --release --example accuracy            # full run, exits 1 if a target is missed
//! ```
//!
//! Sites (requested bytes):
//! - A keeps 64 MiB live in 1 KiB blocks;
//! - B keeps 16 MiB live in 48-byte blocks;
//! - C churns 1 GiB (16 KiB blocks, allocated and freed in batches of 64);
//! - D keeps four 8 MiB blocks.
//!
//! For blocks much smaller than the rate R, an in-use estimate of B bytes has a standard
//! deviation of about sqrt(B × R); the targets sit at about 3.5 of those:
//! - R = 64 KiB, one run: A within ±12%, B within ±25%, D within ±1%;
//! - R = 512 KiB, mean of 20 seeded runs: A within ±6%, D within ±1%;
//! - every run: C's in-use estimate at most 1% of its cumulative (allocated) estimate.

use std::alloc::{Layout, alloc, dealloc};
use std::process::ExitCode;

use memsentry::MemSentry;
use memsentry::profile::{self, Profile};

#[global_allocator]
static GLOBAL: MemSentry = MemSentry::new();

const MIB: usize = 1 << 20;

/// Blocks kept by one site: pointers and the layout they were allocated with.
struct Kept {
    blocks: Vec<*mut u8>,
    layout: Layout,
}

impl Kept {
    /// Room for `count` blocks, reserved before the site runs so that the site itself
    /// allocates nothing but its blocks.
    fn with_room(count: usize, size: usize) -> Kept {
        Kept {
            blocks: Vec::with_capacity(count),
            layout: Layout::from_size_align(size, 8).unwrap(),
        }
    }

    fn free(self) {
        for block in self.blocks {
            // SAFETY: allocated by a site below with `self.layout`, freed once.
            unsafe { dealloc(block, self.layout) };
        }
    }
}

/// Fills `kept` to its capacity with blocks of its layout, each marked with `tag` (the
/// tags keep the sites' machine code distinct: identical functions would be merged into
/// one symbol by the optimiser, and the sites would become indistinguishable).
#[inline(always)]
fn fill(kept: &mut Kept, tag: u8) {
    while kept.blocks.len() < kept.blocks.capacity() {
        // SAFETY: non-zero size.
        let block = unsafe { alloc(kept.layout) };
        assert!(!block.is_null(), "out of memory");
        // SAFETY: the block is at least one byte long.
        unsafe { block.write(tag) };
        kept.blocks.push(block);
    }
}

#[inline(never)]
fn site_a(kept: &mut Kept) {
    fill(kept, 0xA);
}

#[inline(never)]
fn site_b(kept: &mut Kept) {
    fill(kept, 0xB);
}

#[inline(never)]
fn site_d(kept: &mut Kept) {
    fill(kept, 0xD);
}

#[inline(never)]
fn site_c(total: usize) {
    let layout = Layout::from_size_align(16 * 1024, 8).unwrap();
    let mut batch = [std::ptr::null_mut::<u8>(); 64];
    for _ in 0..total / (layout.size() * batch.len()) {
        for slot in &mut batch {
            // SAFETY: non-zero size.
            *slot = unsafe { alloc(layout) };
            assert!(!slot.is_null(), "out of memory");
        }
        for &block in &batch {
            // SAFETY: allocated just above with `layout`, freed once.
            unsafe { dealloc(block, layout) };
        }
    }
}

/// (in-use estimate, cumulative estimate) in bytes of the rows through `site`.
fn estimate(profile: &Profile, site: &str) -> (f64, f64) {
    profile
        .samples_through(site)
        .fold((0.0, 0.0), |(inuse, alloc), s| {
            (inuse + s.inuse.bytes, alloc + s.alloc.bytes)
        })
}

/// One run's in-use estimates divided by the truth, and C's in-use / cumulative.
#[derive(Clone, Copy, Debug)]
struct Run {
    a: f64,
    b: f64,
    d: f64,
    c_share: f64,
}

const TRUTH_A: f64 = (64 * MIB) as f64;
const B_BLOCKS: usize = 16 * MIB / 48;
const TRUTH_B: f64 = (B_BLOCKS * 48) as f64;
const TRUTH_D: f64 = (32 * MIB) as f64;

fn run(rate: u64, seed: u64) -> Run {
    profile::set_seed(seed);
    // A fresh thread: it draws its sample points from the seeded stream.
    std::thread::spawn(move || {
        profile::set_sample_rate(rate);
        let before = profile::heap();
        let mut a = Kept::with_room(64 * 1024, 1024);
        let mut b = Kept::with_room(B_BLOCKS, 48);
        let mut d = Kept::with_room(4, 8 * MIB);
        site_a(&mut a);
        site_b(&mut b);
        site_c(1 << 30);
        site_d(&mut d);
        let profile = profile::heap();
        let (c_inuse, c_alloc) = estimate(&profile, "site_c");
        let (_, c_alloc_before) = estimate(&before, "site_c");
        let result = Run {
            a: estimate(&profile, "site_a").0 / TRUTH_A,
            b: estimate(&profile, "site_b").0 / TRUTH_B,
            d: estimate(&profile, "site_d").0 / TRUTH_D,
            c_share: c_inuse / (c_alloc - c_alloc_before),
        };
        for kept in [a, b, d] {
            kept.free();
        }
        result
    })
    .join()
    .unwrap()
}

fn percent(ratio: f64) -> String {
    format!("{:+.2}%", (ratio - 1.0) * 100.0)
}

fn main() -> ExitCode {
    let mut failures = Vec::new();
    let mut check = |ok: bool, what: String| {
        if !ok {
            failures.push(what);
        }
    };

    println!(
        "| rate | runs | site A (64 MiB, 1 KiB) | site B (16 MiB, 48 B) | site D (4 × 8 MiB) | C in-use / allocated |"
    );
    println!("|---|---|---|---|---|---|");

    let one = run(64 * 1024, 1);
    println!(
        "| 64 KiB | 1 | {} (±12%) | {} (±25%) | {} (±1%) | {:.4}% (≤ 1%) |",
        percent(one.a),
        percent(one.b),
        percent(one.d),
        one.c_share * 100.0
    );
    check(
        (one.a - 1.0).abs() <= 0.12,
        format!("64 KiB: A {}", percent(one.a)),
    );
    check(
        (one.b - 1.0).abs() <= 0.25,
        format!("64 KiB: B {}", percent(one.b)),
    );
    check(
        (one.d - 1.0).abs() <= 0.01,
        format!("64 KiB: D {}", percent(one.d)),
    );
    check(
        one.c_share <= 0.01,
        format!("64 KiB: C share {}", one.c_share),
    );

    let runs: Vec<Run> = (1..=20).map(|seed| run(512 * 1024, seed)).collect();
    let mean = |f: fn(&Run) -> f64| runs.iter().map(f).sum::<f64>() / runs.len() as f64;
    let spread = |f: fn(&Run) -> f64| {
        let (lo, hi) = runs
            .iter()
            .map(f)
            .fold((f64::MAX, f64::MIN), |(lo, hi), x| (lo.min(x), hi.max(x)));
        format!("{} .. {}", percent(lo), percent(hi))
    };
    let (a, b, d) = (mean(|r| r.a), mean(|r| r.b), mean(|r| r.d));
    let worst_c = runs.iter().map(|r| r.c_share).fold(0.0, f64::max);
    println!(
        "| 512 KiB | 20, mean | {} (±6%) | {} | {} (±1%) | ≤ {:.4}% (≤ 1%) |",
        percent(a),
        percent(b),
        percent(d),
        worst_c * 100.0
    );
    println!(
        "| 512 KiB | 20, range | {} | {} | {} | |",
        spread(|r| r.a),
        spread(|r| r.b),
        spread(|r| r.d)
    );
    check(
        (a - 1.0).abs() <= 0.06,
        format!("512 KiB: mean A {}", percent(a)),
    );
    check(
        (d - 1.0).abs() <= 0.01,
        format!("512 KiB: mean D {}", percent(d)),
    );
    check(worst_c <= 0.01, format!("512 KiB: C share {worst_c}"));

    println!("\nstacks walked by {}", profile::unwinder());
    if failures.is_empty() {
        println!("accuracy: every target met");
        ExitCode::SUCCESS
    } else {
        eprintln!("\naccuracy: targets missed: {}", failures.join("; "));
        ExitCode::FAILURE
    }
}
