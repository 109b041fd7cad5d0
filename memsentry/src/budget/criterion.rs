//! Allocation counts in `cargo bench`: [`criterion`] measurements that report what each
//! iteration allocates, as Go's `b.ReportAllocs()` does beside the time (the `criterion`
//! feature).
//!
//! Each measurement opens a scope on the benchmark's thread for the iterations
//! ([`measure`](crate::measure)): other threads' allocations do not count.
//!
//! ```rust,standalone_crate
//! # /*
//! use criterion::{criterion_group, criterion_main, Criterion};
//! use memsentry::budget::criterion::Allocations;
//!
//! #[global_allocator]
//! static GLOBAL: memsentry::MemSentry = memsentry::MemSentry::new();
//!
//! fn bench(c: &mut Criterion<Allocations>) {
//!     c.bench_function("format", |b| b.iter(|| format!("{}", 42)));
//! }
//!
//! criterion_group! {
//!     name = benches;
//!     config = Criterion::default().with_measurement(Allocations);
//!     targets = bench
//! }
//! criterion_main!(benches);
//! # */
//! # fn main() {}
//! ```

use criterion::Throughput;
use criterion::measurement::{Measurement, ValueFormatter};

use super::{Entered, ScopeCounts};

/// Allocations per iteration.
#[derive(Clone, Copy, Debug, Default)]
pub struct Allocations;

/// Requested bytes allocated per iteration.
#[derive(Clone, Copy, Debug, Default)]
pub struct AllocatedBytes;

/// A scope open over a batch of iterations.
#[derive(Debug)]
pub struct Batch(Entered);

impl std::fmt::Debug for Entered {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Entered").finish_non_exhaustive()
    }
}

fn start() -> Batch {
    Batch(Entered::enter(None, &ScopeCounts::default(), true))
}

/// Implements [`Measurement`] for `$measure`: the scope's `$field` per batch, in `$unit`.
macro_rules! per_iteration {
    ($measure:ty, $field:ident, $unit:literal) => {
        impl Measurement for $measure {
            type Intermediate = Batch;
            type Value = u64;

            fn start(&self) -> Batch {
                start()
            }

            fn end(&self, batch: Batch) -> u64 {
                batch.0.exit().$field
            }

            fn add(&self, a: &u64, b: &u64) -> u64 {
                a.saturating_add(*b)
            }

            fn zero(&self) -> u64 {
                0
            }

            fn to_f64(&self, value: &u64) -> f64 {
                *value as f64
            }

            fn formatter(&self) -> &dyn ValueFormatter {
                &Unit($unit)
            }
        }
    };
}

per_iteration!(Allocations, allocations, "allocs");
per_iteration!(AllocatedBytes, allocated_bytes, "B");

/// Values as they are, with a unit.
struct Unit(&'static str);

impl ValueFormatter for Unit {
    fn scale_values(&self, _typical: f64, _values: &mut [f64]) -> &'static str {
        self.0
    }

    fn scale_throughputs(
        &self,
        _typical: f64,
        throughput: &Throughput,
        values: &mut [f64],
    ) -> &'static str {
        let per = match throughput {
            Throughput::Bytes(n) | Throughput::BytesDecimal(n) | Throughput::Elements(n) => *n,
            Throughput::Bits(n) => *n,
            _ => 1,
        };
        for value in values.iter_mut() {
            *value /= per.max(1) as f64;
        }
        match self.0 {
            "allocs" => "allocs/elem",
            _ => "B/elem",
        }
    }

    fn scale_for_machines(&self, _values: &mut [f64]) -> &'static str {
        self.0
    }
}
