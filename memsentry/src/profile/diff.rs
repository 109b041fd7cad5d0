//! Differences between two profiles of the same process: "what grew between these dumps".

use std::collections::HashMap;
use std::fmt;
use std::time::SystemTime;

use super::{Estimate, Function, Location, Mapping, Profile, Sample};

/// What a diff was taken against: the base profile's time and rate.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct Base {
    pub(crate) taken_at: SystemTime,
    pub(crate) sample_rate: u64,
}

/// Why two profiles could not be diffed.
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum DiffError {
    /// The profiles were taken at different sampling rates; see [`Profile::diff_rescaled`].
    RateMismatch {
        /// The later profile's rate.
        rate: u64,
        /// The base profile's rate.
        base_rate: u64,
    },
    /// One of the two profiles is itself a diff; diff the original profiles instead.
    AlreadyDiff,
}

impl fmt::Display for DiffError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            DiffError::RateMismatch { rate, base_rate } => write!(
                f,
                "cannot diff a profile sampled every {rate} bytes against a base sampled every \
                 {base_rate} bytes (use diff_rescaled to accept the difference)"
            ),
            DiffError::AlreadyDiff => f.write_str("cannot diff a profile that is itself a diff"),
        }
    }
}

impl std::error::Error for DiffError {}

/// A row's identity across two profiles of one process: its locations (address, and how
/// many frames are left after trimming the allocator's), its block size and its task.
type RowKey = (Vec<(u64, usize)>, u64, Option<&'static str>);

impl Profile {
    /// What changed from `base` (an earlier profile of this process) to `self`.
    ///
    /// The result is a profile like any other, so every view works on it, with these
    /// values per row (call stack and block size):
    ///
    /// - **alloc** (objects and space): allocations *between* the two profiles, the later
    ///   cumulative value minus the base's;
    /// - **inuse**: what is in use in the later profile, unchanged: never a difference,
    ///   so never negative;
    /// - [`Sample::base_inuse`]: what was in use in the base, so that
    ///   [`SampleType::InuseSpaceChange`](super::SampleType::InuseSpaceChange) and
    ///   [`InuseObjectsChange`](super::SampleType::InuseObjectsChange) show the change
    ///   since the base, growth positive, shrinkage negative. The diff's default view.
    ///
    /// Rows are matched by their stack's addresses, which is why both profiles must come
    /// from the same process. A profile is a set of estimates, so a site that did not
    /// change can show a small change either way: compare it with the raw sample counts.
    ///
    /// ```rust,standalone_crate
    /// # #[global_allocator]
    /// # static GLOBAL: memsentry::MemSentry = memsentry::MemSentry::new();
    /// use memsentry::profile::{self, SampleType};
    ///
    /// #[inline(never)]
    /// fn grow(cache: &mut Vec<Vec<u8>>) {
    ///     cache.push(vec![1; 4 << 20]);
    /// }
    ///
    /// # fn main() -> Result<(), memsentry::profile::DiffError> {
    /// # // At the default rate a 4 MiB block goes unsampled once in e^8 ≈ 3,000 runs.
    /// # profile::set_sample_rate(64 * 1024);
    /// let mut cache = Vec::new();
    /// let before = profile::heap();
    /// grow(&mut cache);
    /// let diff = profile::heap().diff(&before)?;
    /// let grew: f64 = diff
    ///     .samples_through("grow")
    ///     .map(|s| SampleType::InuseSpaceChange.value(s))
    ///     .sum();
    /// assert!(grew >= 4.0 * 1024.0 * 1024.0); // a 4 MiB block is sampled all but surely
    /// println!("{}", diff.top(SampleType::InuseSpaceChange, 5));
    /// # Ok(())
    /// # }
    /// ```
    ///
    /// # Errors
    ///
    /// [`DiffError::RateMismatch`] if the profiles were taken at different sampling rates
    /// (see [`diff_rescaled`](Profile::diff_rescaled)), [`DiffError::AlreadyDiff`] if
    /// either is a diff already.
    pub fn diff(&self, base: &Profile) -> Result<Profile, DiffError> {
        if self.sample_rate != base.sample_rate {
            return Err(DiffError::RateMismatch {
                rate: self.sample_rate,
                base_rate: base.sample_rate,
            });
        }
        self.diff_rescaled(base)
    }

    /// [`diff`](Profile::diff), also for profiles taken at different sampling rates.
    ///
    /// memsentry's values are estimates in real bytes and objects, every sample weighted
    /// at the rate *it* was taken at, so nothing needs converting: values from different
    /// rates compare as they are. What differs is their precision (a lower rate gives
    /// wider error bars) and the meaning of the raw sample counts, which is why
    /// [`diff`](Profile::diff) asks for this method to be called explicitly. The result
    /// carries the later profile's rate.
    ///
    /// # Errors
    ///
    /// [`DiffError::AlreadyDiff`] if either profile is a diff already.
    pub fn diff_rescaled(&self, base: &Profile) -> Result<Profile, DiffError> {
        if self.base.is_some() || base.base.is_some() || self.window.is_some() {
            return Err(DiffError::AlreadyDiff);
        }
        let mut out = Profile {
            samples: Vec::new(),
            base: Some(Base {
                taken_at: base.taken_at,
                sample_rate: base.sample_rate,
            }),
            ..self.clone()
        };
        // (later, base) per row, summed where several rows share a key.
        let mut rows: HashMap<RowKey, (usize, Option<Sample>, Option<Sample>)> = HashMap::new();
        for sample in &self.samples {
            let entry = rows
                .entry(self.row_key(sample))
                .or_insert((sample.stack, None, None));
            merge(&mut entry.1, sample);
        }
        let mut import = Import::new(&mut out);
        for sample in &base.samples {
            let key = base.row_key(sample);
            let entry = match rows.get_mut(&key) {
                Some(entry) => entry,
                None => {
                    let stack = import.stack(base, sample.stack);
                    rows.entry(key).or_insert((stack, None, None))
                }
            };
            merge(&mut entry.2, sample);
        }
        out.samples = rows
            .into_iter()
            .map(|((_, size, task), (stack, later, earlier))| {
                let zero = Estimate::default();
                let (alloc, inuse, oldest) = later
                    .as_ref()
                    .map_or((zero, zero, None), |s| (s.alloc, s.inuse, s.oldest));
                let median_lifetime = later
                    .as_ref()
                    .or(earlier.as_ref())
                    .and_then(|s| s.median_lifetime);
                let (base_alloc, base_inuse) = earlier
                    .as_ref()
                    .map_or((zero, zero), |s| (s.alloc, s.inuse));
                Sample {
                    stack,
                    size,
                    alloc: Estimate {
                        objects: alloc.objects - base_alloc.objects,
                        bytes: alloc.bytes - base_alloc.bytes,
                        samples: alloc.samples.saturating_sub(base_alloc.samples),
                    },
                    inuse,
                    oldest,
                    base_inuse: Some(base_inuse),
                    task,
                    median_lifetime,
                }
            })
            .filter(|s| {
                s.alloc.bytes != 0.0
                    || s.inuse.bytes != 0.0
                    || s.base_inuse != Some(Estimate::default())
            })
            .collect();
        out.sort_samples();
        Ok(out)
    }

    /// A delta profile, as Go's `/debug/pprof/allocs?seconds=N` serves: `alloc_*` are the
    /// allocations since `base` (an earlier profile of this process; cumulative values,
    /// so never negative), `inuse_*` what is in use now. Unlike a [`diff`](Profile::diff)
    /// it is an ordinary heap profile, with the four sample types of one and its window as
    /// the pprof file's duration; rows with nothing allocated in the window and nothing in
    /// use are left out.
    ///
    /// # Errors
    ///
    /// [`DiffError::AlreadyDiff`] if either profile is a diff or a delta already.
    pub fn delta(&self, base: &Profile) -> Result<Profile, DiffError> {
        if self.window.is_some() || base.window.is_some() {
            return Err(DiffError::AlreadyDiff);
        }
        let mut delta = self.diff_rescaled(base)?;
        delta.base = None;
        delta.window = Some(
            self.taken_at
                .duration_since(base.taken_at)
                .unwrap_or_default(),
        );
        for sample in &mut delta.samples {
            sample.base_inuse = None;
            sample.alloc.objects = sample.alloc.objects.max(0.0);
            sample.alloc.bytes = sample.alloc.bytes.max(0.0);
        }
        delta
            .samples
            .retain(|s| s.alloc.bytes > 0.0 || s.inuse.bytes > 0.0);
        Ok(delta)
    }

    /// The window a delta profile's `alloc_*` values cover ([`delta`](Profile::delta)).
    #[must_use]
    pub fn window(&self) -> Option<std::time::Duration> {
        self.window
    }

    /// The identity of `sample`'s row across profiles of this process.
    fn row_key(&self, sample: &Sample) -> RowKey {
        let stack = self.stacks.get(sample.stack).map_or(&[][..], Vec::as_slice);
        let locations = stack
            .iter()
            .map(|&l| (self.locations[l].address, self.locations[l].lines.len()))
            .collect();
        (locations, sample.size, sample.task)
    }
}

/// Adds `sample`'s estimates to `into`.
fn merge(into: &mut Option<Sample>, sample: &Sample) {
    match into {
        None => *into = Some(sample.clone()),
        Some(sum) => {
            sum.alloc.add(&sample.alloc);
            sum.inuse.add(&sample.inuse);
            sum.oldest = match (sum.oldest, sample.oldest) {
                (Some(a), Some(b)) => Some(a.max(b)),
                (a, b) => a.or(b),
            };
        }
    }
}

/// Copies stacks of another profile into one, sharing its locations, functions and
/// mappings where they are the same.
struct Import<'a> {
    into: &'a mut Profile,
    functions: HashMap<Function, usize>,
    locations: HashMap<(u64, Vec<(usize, u32)>), usize>,
}

impl<'a> Import<'a> {
    fn new(into: &'a mut Profile) -> Self {
        let functions = into
            .functions
            .iter()
            .enumerate()
            .map(|(i, f)| (f.clone(), i))
            .collect();
        let locations = into
            .locations
            .iter()
            .enumerate()
            .map(|(i, l)| ((l.address, l.lines.clone()), i))
            .collect();
        Import {
            into,
            functions,
            locations,
        }
    }

    /// Copies `from`'s stack `stack`, returning its index in the target.
    fn stack(&mut self, from: &Profile, stack: usize) -> usize {
        let locations = from
            .stacks
            .get(stack)
            .map_or(&[][..], Vec::as_slice)
            .iter()
            .map(|&l| self.location(from, &from.locations[l]))
            .collect();
        self.into.stacks.push(locations);
        self.into.stacks.len() - 1
    }

    fn location(&mut self, from: &Profile, location: &Location) -> usize {
        let lines: Vec<(usize, u32)> = location
            .lines
            .iter()
            .map(|&(f, line)| (self.function(&from.functions[f]), line))
            .collect();
        let key = (location.address, lines);
        if let Some(&index) = self.locations.get(&key) {
            return index;
        }
        let mapping = location.mapping.map(|m| self.mapping(&from.mappings[m]));
        let index = self.into.locations.len();
        self.into.locations.push(Location {
            address: location.address,
            mapping,
            lines: key.1.clone(),
        });
        self.locations.insert(key, index);
        index
    }

    fn function(&mut self, function: &Function) -> usize {
        if let Some(&index) = self.functions.get(function) {
            return index;
        }
        let index = self.into.functions.len();
        self.into.functions.push(function.clone());
        self.functions.insert(function.clone(), index);
        index
    }

    fn mapping(&mut self, mapping: &Mapping) -> usize {
        let mappings = &mut self.into.mappings;
        mappings
            .iter()
            .position(|m| m.start == mapping.start && m.file == mapping.file)
            .unwrap_or_else(|| {
                mappings.push(mapping.clone());
                mappings.len() - 1
            })
    }
}
