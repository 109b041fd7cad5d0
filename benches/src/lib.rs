//! Shared workloads for memsentry's benchmarks: an alloc/free mix driven through any
//! `GlobalAlloc` by direct calls, so memsentry and raw jemalloc run the same operations
//! in the same process.
//!
//! The mix keeps about 1,000 live blocks per thread: each operation frees the oldest block
//! of a ring and allocates a new one, sizes drawn from a fixed table (90% 16–256 B, 9% up
//! to 4 KiB, 1% up to 64 KiB).

use std::alloc::{GlobalAlloc, Layout};
use std::hint::black_box;
use std::sync::Barrier;
use std::time::{Duration, Instant};

/// Live blocks per thread.
pub const LIVE: usize = 1_000;
/// Operations (one free + one allocation) per criterion iteration.
pub const OPS: usize = 1_000;
/// Length of the size table (a power of two).
pub const SIZES: usize = 4_096;

fn size_table(seed: u64) -> Vec<usize> {
    let mut x = seed;
    let mut next = move || {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        x
    };
    (0..SIZES)
        .map(|_| {
            let r = next();
            let mut pick = |lo: u64, hi: u64| usize::try_from(lo + next() % (hi - lo)).unwrap();
            match r % 100 {
                0 => pick(4_096, 65_536),
                1..=9 => pick(256, 4_096),
                _ => pick(16, 256),
            }
        })
        .collect()
}

/// One thread's ring of live blocks.
#[derive(Debug)]
pub struct Ring {
    blocks: Vec<(*mut u8, Layout)>,
    sizes: Vec<usize>,
    next: usize,
}

impl Ring {
    /// A ring of [`LIVE`] blocks allocated by `allocator`, sizes from a table seeded by `seed`.
    pub fn new<A: GlobalAlloc>(allocator: &A, seed: u64) -> Self {
        Self::with_sizes(allocator, size_table(seed))
    }

    /// A ring whose blocks all have `size` bytes: the cost of one request size.
    pub fn of_size<A: GlobalAlloc>(allocator: &A, size: usize) -> Self {
        Self::with_sizes(allocator, vec![size; SIZES])
    }

    /// [`of_size`](Self::of_size) if `size` is given, else the mix seeded by `seed`
    /// ([`new`](Self::new)).
    pub fn new_or_of_size<A: GlobalAlloc>(allocator: &A, seed: u64, size: Option<usize>) -> Self {
        match size {
            Some(size) => Self::of_size(allocator, size),
            None => Self::new(allocator, seed),
        }
    }

    fn with_sizes<A: GlobalAlloc>(allocator: &A, sizes: Vec<usize>) -> Self {
        let mut ring = Ring {
            blocks: Vec::with_capacity(LIVE),
            sizes,
            next: 0,
        };
        for i in 0..LIVE {
            let layout = Layout::from_size_align(ring.sizes[i % SIZES], 8).unwrap();
            // SAFETY: non-zero layout; freed in `run` or `free_all` with this layout.
            let ptr = unsafe { allocator.alloc(layout) };
            assert!(!ptr.is_null());
            ring.blocks.push((ptr, layout));
        }
        ring
    }

    /// `ops` operations: free the oldest block, allocate a new one in its place.
    #[inline(never)]
    pub fn run<A: GlobalAlloc>(&mut self, allocator: &A, ops: usize) {
        for _ in 0..ops {
            let slot = self.next % LIVE;
            let (old, old_layout) = self.blocks[slot];
            let layout = Layout::from_size_align(self.sizes[self.next % SIZES], 8).unwrap();
            // SAFETY: `old` is live and was allocated by `allocator` with `old_layout`;
            // the new layout is non-zero.
            let ptr = unsafe {
                allocator.dealloc(old, old_layout);
                allocator.alloc(layout)
            };
            assert!(!ptr.is_null());
            self.blocks[slot] = (black_box(ptr), layout);
            self.next = self.next.wrapping_add(1);
        }
    }

    /// Frees every block of the ring.
    pub fn free_all<A: GlobalAlloc>(self, allocator: &A) {
        for (ptr, layout) in self.blocks {
            // SAFETY: live blocks allocated by `allocator` with `layout`.
            unsafe { allocator.dealloc(ptr, layout) };
        }
    }
}

/// Defines a unit struct whose `GlobalAlloc` methods are out-of-line calls to the same
/// methods of a `static` allocator: the shape in which a program calls its global
/// allocator. `#[global_allocator]` makes `__rust_alloc` and its siblings functions of
/// their own over a `static`, and every `Box` or `Vec` calls them; a benchmark that calls
/// a `GlobalAlloc` directly, as [`Ring::run`] does, lets the compiler inline its fast
/// path into the loop, where the registers it must keep across the inner allocator's
/// call are the loop's anyway. Both shapes are measured (BENCHMARKS.md, "The call
/// shape").
///
/// ```
/// static INNER: tikv_jemallocator::Jemalloc = tikv_jemallocator::Jemalloc;
/// memsentry_benches::global_shim!(
///     /// Jemalloc, called as a global allocator is.
///     pub MyShim => INNER
/// );
/// use std::alloc::{GlobalAlloc, Layout};
///
/// let layout = Layout::new::<u64>();
/// // SAFETY: a non-zero layout.
/// let ptr = unsafe { MyShim.alloc(layout) };
/// assert!(!ptr.is_null());
/// // SAFETY: allocated just above, with this layout.
/// unsafe { MyShim.dealloc(ptr, layout) };
/// ```
#[macro_export]
macro_rules! global_shim {
    ($(#[$meta:meta])* $vis:vis $name:ident => $global:path) => {
        $(#[$meta])*
        #[derive(Clone, Copy, Debug, Default)]
        $vis struct $name;

        // SAFETY: every method forwards to the same method of `$global`, a `GlobalAlloc`,
        // with the caller's arguments, and returns its result: its guarantees are ours.
        unsafe impl ::std::alloc::GlobalAlloc for $name {
            #[inline(never)]
            unsafe fn alloc(&self, layout: ::std::alloc::Layout) -> *mut u8 {
                // SAFETY: forwarded from our caller.
                unsafe { ::std::alloc::GlobalAlloc::alloc(&$global, layout) }
            }

            #[inline(never)]
            unsafe fn alloc_zeroed(&self, layout: ::std::alloc::Layout) -> *mut u8 {
                // SAFETY: forwarded from our caller.
                unsafe { ::std::alloc::GlobalAlloc::alloc_zeroed(&$global, layout) }
            }

            #[inline(never)]
            unsafe fn dealloc(&self, ptr: *mut u8, layout: ::std::alloc::Layout) {
                // SAFETY: forwarded from our caller.
                unsafe { ::std::alloc::GlobalAlloc::dealloc(&$global, ptr, layout) }
            }

            #[inline(never)]
            unsafe fn realloc(
                &self,
                ptr: *mut u8,
                layout: ::std::alloc::Layout,
                new_size: usize,
            ) -> *mut u8 {
                // SAFETY: forwarded from our caller.
                unsafe { ::std::alloc::GlobalAlloc::realloc(&$global, ptr, layout, new_size) }
            }
        }
    };
}

/// Declares, in the calling crate, the pair of shims the benchmarks compare: one over raw
/// jemalloc and one over `MemSentry::new()` (each over a `static` of its own, named
/// `JEMALLOC` and `MEMSENTRY`), with the given names, visibility and attributes. Where
/// they are declared matters: declared in a binary crate, as most programs declare their
/// global allocator, the thread-locals are reached by `%fs`-relative loads; declared in a
/// library, by the general-dynamic model (BENCHMARKS.md, "The call shape").
///
/// ```
/// memsentry_benches::jemalloc_and_memsentry_shims!(JemallocShim, MemSentryShim);
/// use std::alloc::{GlobalAlloc, Layout};
///
/// let layout = Layout::new::<[u8; 48]>();
/// // SAFETY: a non-zero layout, freed with it by the same allocator.
/// unsafe {
///     let ptr = MemSentryShim.alloc(layout);
///     assert!(!ptr.is_null());
///     MemSentryShim.dealloc(ptr, layout);
///     JemallocShim.dealloc(JemallocShim.alloc(layout), layout);
/// }
/// ```
#[macro_export]
macro_rules! jemalloc_and_memsentry_shims {
    (
        $(#[$jemalloc_meta:meta])* $jemalloc_vis:vis $jemalloc:ident,
        $(#[$memsentry_meta:meta])* $memsentry_vis:vis $memsentry:ident $(,)?
    ) => {
        static JEMALLOC: ::tikv_jemallocator::Jemalloc = ::tikv_jemallocator::Jemalloc;
        static MEMSENTRY: ::memsentry::MemSentry = ::memsentry::MemSentry::new();
        $crate::global_shim!($(#[$jemalloc_meta])* $jemalloc_vis $jemalloc => JEMALLOC);
        $crate::global_shim!($(#[$memsentry_meta])* $memsentry_vis $memsentry => MEMSENTRY);
    };
}

// Only with the `libshim` feature: a library that instantiates `MemSentry`'s methods lends
// its copies of the out-of-line ones, compiled for a library's TLS model, to every binary
// that links it (rustc shares generic instances with downstream crates), so that every
// benchmark would measure them instead of the copies a program compiles for itself.
#[cfg(feature = "libshim")]
jemalloc_and_memsentry_shims!(
    /// Raw jemalloc, called as a global allocator declared in a *library* crate is.
    /// Benchmarks declare their usual shims in their own (binary) crate, as most programs
    /// declare their global allocator: code compiled into a library is position-
    /// independent, and reaches thread-locals by the general-dynamic model (BENCHMARKS.md,
    /// "The call shape").
    pub LibJemallocShim,
    /// `MemSentry::new()`, called as a global allocator declared in a library crate is
    /// (see [`LibJemallocShim`]).
    pub LibMemSentryShim,
);

/// Time for `iters` × [`OPS`] operations on each of `threads` threads run at once: the
/// slowest thread's time.
pub fn timed<A: GlobalAlloc + Sync>(allocator: &A, threads: usize, iters: u64) -> Duration {
    timed_with(allocator, threads, iters, None)
}

/// [`timed`], with every request of `size` bytes instead of the mix's sizes if given.
pub fn timed_with<A: GlobalAlloc + Sync>(
    allocator: &A,
    threads: usize,
    iters: u64,
    size: Option<usize>,
) -> Duration {
    let ops = usize::try_from(iters).unwrap() * OPS;
    let start = Barrier::new(threads);
    std::thread::scope(|scope| {
        let handles: Vec<_> = (0..threads)
            .map(|t| {
                let start = &start;
                scope.spawn(move || {
                    let mut ring = Ring::new_or_of_size(allocator, 0x1234_5678 + t as u64, size);
                    ring.run(allocator, OPS); // warm the thread's caches and slot
                    start.wait();
                    let began = Instant::now();
                    ring.run(allocator, ops);
                    let elapsed = began.elapsed();
                    ring.free_all(allocator);
                    elapsed
                })
            })
            .collect();
        handles
            .into_iter()
            .map(|h| h.join().unwrap())
            .max()
            .unwrap()
    })
}

/// The command-line argument at `position` (1 = the first after the program's name) as a
/// positive integer, `default` when it is absent; `Err` after printing `usage` to stderr
/// when it is anything else.
pub fn positive_arg(
    position: usize,
    default: usize,
    usage: &str,
) -> Result<usize, std::process::ExitCode> {
    match std::env::args().nth(position).map(|s| s.parse::<usize>()) {
        None => Ok(default),
        Some(Ok(n)) if n > 0 => Ok(n),
        Some(_) => {
            eprintln!("usage: {usage}");
            Err(std::process::ExitCode::from(2))
        }
    }
}

/// (first quartile, median, third quartile) of `values`, which it sorts; the examples'
/// robust summary of repeated timings.
///
/// # Panics
///
/// If `values` is empty.
pub fn quartiles(values: &mut [f64]) -> (f64, f64, f64) {
    values.sort_by(f64::total_cmp);
    let at = |q: usize| values[(values.len() - 1) * q / 4];
    (at(1), at(2), at(3))
}

/// Times each of `variants` once per round, `rounds` times, in a fresh random order every
/// round (Fisher–Yates with xorshift): `times[v][round]`. On a machine whose speed drifts
/// within a minute, ratios taken *within* a round (see [`ratios_to_first`]) cancel the
/// drift that timing one variant after another would put between them.
pub fn interleaved<V: Copy>(
    variants: &[V],
    rounds: usize,
    mut run: impl FnMut(V) -> Duration,
) -> Vec<Vec<Duration>> {
    let mut times = vec![Vec::with_capacity(rounds); variants.len()];
    let mut rng = 0x9e37_79b9_7f4a_7c15_u64;
    let mut order: Vec<usize> = (0..variants.len()).collect();
    for _ in 0..rounds {
        for i in (1..order.len()).rev() {
            rng ^= rng << 13;
            rng ^= rng >> 7;
            rng ^= rng << 17;
            order.swap(i, usize::try_from(rng % (i as u64 + 1)).unwrap());
        }
        for &v in &order {
            times[v].push(run(variants[v]));
        }
    }
    times
}

/// Each round's time of every variant divided by the same round's time of the first
/// (the baseline), from [`interleaved`]'s `times[v][round]`.
pub fn ratios_to_first(times: &[Vec<Duration>]) -> Vec<Vec<f64>> {
    times
        .iter()
        .map(|variant| {
            variant
                .iter()
                .zip(&times[0])
                .map(|(t, base)| t.as_secs_f64() / base.as_secs_f64())
                .collect()
        })
        .collect()
}
