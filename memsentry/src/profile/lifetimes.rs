//! **[C]** How long sampled blocks live, per call site: which sites make short-lived
//! garbage and which long-lived state.
//!
//! When a sampled block is freed, the sampler counts its lifetime (from its sample's
//! time, on the coarse monotonic clock: exact to a few milliseconds) in its stack's
//! histogram of fixed logarithmic buckets; an unsampled allocation pays nothing.

use std::collections::HashMap;
use std::fmt;
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use super::{Profile, Symbolization};
use crate::Bytes;
use crate::sampler::{Cumulative, LIFETIME_BOUNDS, LIFETIME_BUCKETS, Lifetimes, TableCopy};

/// The lifetimes of one call site's freed blocks (estimated from the samples).
#[derive(Clone, Debug, PartialEq)]
#[non_exhaustive]
pub struct LifetimeRow {
    /// The site: the function that allocated (the first frame outside Rust's `std`,
    /// `core` and `alloc`).
    pub function: String,
    /// Freed blocks, estimated, per bucket of [`LifetimeTable::bounds`] (the last bucket:
    /// longer than the last bound).
    pub objects: [f64; LIFETIME_BUCKETS],
    /// Their bytes, per bucket.
    pub bytes: [f64; LIFETIME_BUCKETS],
}

impl LifetimeRow {
    /// Freed blocks in all.
    #[must_use]
    pub fn freed_objects(&self) -> f64 {
        self.objects.iter().sum()
    }

    /// Freed bytes in all.
    #[must_use]
    pub fn freed_bytes(&self) -> f64 {
        self.bytes.iter().sum()
    }

    /// The upper bound of the bucket holding the `quantile` (0 to 1) of the freed
    /// blocks' lifetimes (`None` past the last bound, or with nothing freed).
    #[must_use]
    pub fn quantile(&self, quantile: f64) -> Option<Duration> {
        let total = self.freed_objects();
        if total <= 0.0 {
            return None;
        }
        let mut seen = 0.0;
        for (bucket, objects) in self.objects.iter().enumerate() {
            seen += objects;
            if seen >= total * quantile {
                return LIFETIME_BOUNDS
                    .get(bucket)
                    .map(|&n| Duration::from_nanos(n));
            }
        }
        None
    }

    /// The share (0 to 1) of its freed bytes that lived less than 1 ms.
    #[must_use]
    pub fn short_lived_share(&self) -> f64 {
        let total = self.freed_bytes();
        if total <= 0.0 {
            return 0.0;
        }
        let within = LIFETIME_BOUNDS.partition_point(|&b| b <= 1_000_000);
        self.bytes[..within].iter().sum::<f64>() / total
    }
}

/// The lifetime table of every sampled call site ([`lifetimes`]); `Display` prints it.
#[derive(Clone, Debug, Default, PartialEq)]
#[non_exhaustive]
pub struct LifetimeTable {
    /// One row per site, most bytes freed first.
    pub rows: Vec<LifetimeRow>,
}

impl LifetimeTable {
    /// The buckets' upper bounds: under 1 µs, 10 µs, 100 µs, 1 ms, 10 ms, 100 ms, 1 s,
    /// 10 s, 1 min, 10 min, 1 h; the last bucket holds the longer ones.
    #[must_use]
    pub fn bounds() -> [Duration; LIFETIME_BUCKETS - 1] {
        LIFETIME_BOUNDS.map(Duration::from_nanos)
    }

    /// The temporary allocations: sites whose freed bytes mostly (over half) lived less
    /// than a millisecond, most bytes first: candidates for reuse or an arena.
    #[must_use]
    pub fn temporary(&self) -> Vec<&LifetimeRow> {
        self.rows
            .iter()
            .filter(|r| r.short_lived_share() > 0.5)
            .collect()
    }
}

/// A duration as a bucket bound: `1µs`, `10ms`, `1min`.
fn bound(duration: Option<Duration>) -> String {
    match duration {
        None => "longer".to_owned(),
        Some(d) if d < Duration::from_millis(1) => format!("{}µs", d.as_micros()),
        Some(d) if d < Duration::from_secs(1) => format!("{}ms", d.as_millis()),
        Some(d) if d < Duration::from_secs(60) => format!("{}s", d.as_secs()),
        Some(d) if d < Duration::from_secs(3600) => format!("{}min", d.as_secs() / 60),
        Some(d) => format!("{}h", d.as_secs() / 3600),
    }
}

impl fmt::Display for LifetimeTable {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        writeln!(
            f,
            "{:>12}  {:>12}  {:>8}  {:>8}  {:>8}  function",
            "freed", "freed bytes", "median <", "p90 <", "< 1ms"
        )?;
        for row in &self.rows {
            writeln!(
                f,
                "{:>12.0}  {:>12}  {:>8}  {:>8}  {:>7.0}%  {}",
                row.freed_objects(),
                Bytes(row.freed_bytes().max(0.0) as u64).to_string(),
                bound(row.quantile(0.5)),
                bound(row.quantile(0.9)),
                row.short_lived_share() * 100.0,
                row.function
            )?;
        }
        Ok(())
    }
}

/// The lifetimes of sampled blocks freed since start, per call site.
#[must_use]
pub fn lifetimes() -> LifetimeTable {
    let Some(_guard) = crate::hot::sampler::Guard::enter() else {
        return LifetimeTable::default();
    };
    let by_stack = crate::sampler::lifetimes();
    let copy = crate::sampler::read();
    // A profile with one row per stack that freed something, the stack's id carried in
    // the row's size, names the stacks' functions the way every view names them.
    let names = TableCopy {
        stacks: copy
            .stacks
            .into_iter()
            .filter(|(id, _)| by_stack.contains_key(id))
            .collect::<Vec<(u32, Arc<[usize]>)>>(),
        cumulative: by_stack
            .keys()
            .map(|&id| {
                let totals = Cumulative {
                    samples: 1,
                    objects: 1.0,
                    bytes: 1.0,
                };
                ((id, id as usize, 0), totals)
            })
            .collect(),
        live: Vec::new(),
        lifetimes: HashMap::new(),
    };
    let profile = Profile::build(
        SystemTime::now(),
        crate::hot::sampler::now_nanos(),
        crate::hot::sampler::rate(),
        names,
        Symbolization::InProcess,
    );
    let mut rows: HashMap<String, LifetimeRow> = HashMap::new();
    for sample in profile.samples() {
        let Some(lifetimes) = u32::try_from(sample.size)
            .ok()
            .and_then(|id| by_stack.get(&id))
        else {
            continue;
        };
        // The site: the first frame outside Rust's own library, as budgets name them.
        let frames: Vec<_> = profile.frames(sample).collect();
        let function = frames
            .iter()
            .find(|f| !f.is_library())
            .or(frames.first())
            .map_or_else(String::new, |f| f.function.to_owned());
        let row = rows.entry(function.clone()).or_insert_with(|| LifetimeRow {
            function,
            objects: [0.0; LIFETIME_BUCKETS],
            bytes: [0.0; LIFETIME_BUCKETS],
        });
        add(row, lifetimes);
    }
    let mut rows: Vec<LifetimeRow> = rows
        .into_values()
        .filter(|r| r.freed_objects() > 0.0)
        .collect();
    rows.sort_by(|a, b| b.freed_bytes().total_cmp(&a.freed_bytes()));
    LifetimeTable { rows }
}

/// The median lifetime of one stack's freed samples (its bucket's upper bound).
pub(super) fn median(lifetimes: &Lifetimes) -> Option<Duration> {
    let row = LifetimeRow {
        function: String::new(),
        objects: lifetimes.objects,
        bytes: lifetimes.bytes,
    };
    row.quantile(0.5)
}

fn add(row: &mut LifetimeRow, lifetimes: &Lifetimes) {
    for bucket in 0..LIFETIME_BUCKETS {
        row.objects[bucket] += lifetimes.objects[bucket];
        row.bytes[bucket] += lifetimes.bytes[bucket];
    }
}
