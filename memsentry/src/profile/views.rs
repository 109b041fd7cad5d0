//! Text views of a profile: folded stacks (flamegraph input) and a `pprof -top` report.

use std::collections::{HashMap, HashSet};
use std::fmt;
use std::str::FromStr;
use std::time::Duration;

use super::{Frame, Profile, Sample};
use crate::Bytes;

/// Which of a profile's values a view shows: the four sample types of a Go heap profile,
/// and the change of the in-use ones since a [diff](Profile::diff)'s base.
///
/// ```
/// use memsentry::profile::SampleType;
/// assert_eq!(SampleType::default(), SampleType::InuseSpace);
/// assert_eq!("alloc_objects".parse(), Ok(SampleType::AllocObjects));
/// assert_eq!(SampleType::InuseSpaceChange.to_string(), "inuse_space_change");
/// ```
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum SampleType {
    /// Bytes in use when the profile was taken (the default, as in Go).
    #[default]
    InuseSpace,
    /// Blocks in use when the profile was taken.
    InuseObjects,
    /// Bytes allocated since the program started (in a diff: since the base).
    AllocSpace,
    /// Blocks allocated since the program started (in a diff: since the base).
    AllocObjects,
    /// The change in bytes in use since a diff's base: positive for growth, negative
    /// for shrinkage. In a profile that is not a diff, the change since the program
    /// started, which is the in-use value itself.
    InuseSpaceChange,
    /// The change in blocks in use since a diff's base (see
    /// [`InuseSpaceChange`](SampleType::InuseSpaceChange)).
    InuseObjectsChange,
}

impl SampleType {
    /// All of them, in the order of a pprof file's values: a heap profile has the first
    /// four, a diff all six.
    pub const ALL: [SampleType; 6] = [
        SampleType::AllocObjects,
        SampleType::AllocSpace,
        SampleType::InuseObjects,
        SampleType::InuseSpace,
        SampleType::InuseObjectsChange,
        SampleType::InuseSpaceChange,
    ];

    /// The pprof name: `inuse_space`, `inuse_objects`, `alloc_space`, `alloc_objects`,
    /// `inuse_space_change`, `inuse_objects_change`.
    #[must_use]
    pub const fn name(self) -> &'static str {
        match self {
            SampleType::InuseSpace => "inuse_space",
            SampleType::InuseObjects => "inuse_objects",
            SampleType::AllocSpace => "alloc_space",
            SampleType::AllocObjects => "alloc_objects",
            SampleType::InuseSpaceChange => "inuse_space_change",
            SampleType::InuseObjectsChange => "inuse_objects_change",
        }
    }

    /// Whether the values are bytes (else block counts).
    #[must_use]
    pub const fn is_space(self) -> bool {
        matches!(
            self,
            SampleType::InuseSpace | SampleType::AllocSpace | SampleType::InuseSpaceChange
        )
    }

    /// Whether the values are changes since a diff's base, which can be negative.
    #[must_use]
    pub const fn is_change(self) -> bool {
        matches!(
            self,
            SampleType::InuseSpaceChange | SampleType::InuseObjectsChange
        )
    }

    /// The pprof unit: `bytes` or `count`.
    pub(crate) const fn unit(self) -> &'static str {
        if self.is_space() { "bytes" } else { "count" }
    }

    /// This type's estimate in `sample`.
    #[must_use]
    pub fn value(self, sample: &Sample) -> f64 {
        let (before, after) = self.before_after(sample);
        after - before
    }

    /// For a change type, the row's in-use value in the base and now; for the others,
    /// zero and the value.
    fn before_after(self, sample: &Sample) -> (f64, f64) {
        let base = sample.base_inuse.unwrap_or_default();
        match self {
            SampleType::InuseSpace => (0.0, sample.inuse.bytes),
            SampleType::InuseObjects => (0.0, sample.inuse.objects),
            SampleType::AllocSpace => (0.0, sample.alloc.bytes),
            SampleType::AllocObjects => (0.0, sample.alloc.objects),
            SampleType::InuseSpaceChange => (base.bytes, sample.inuse.bytes),
            SampleType::InuseObjectsChange => (base.objects, sample.inuse.objects),
        }
    }

    /// The in-use type a change type is the change of; others are their own.
    fn current(self) -> SampleType {
        match self {
            SampleType::InuseSpaceChange => SampleType::InuseSpace,
            SampleType::InuseObjectsChange => SampleType::InuseObjects,
            other => other,
        }
    }

    /// `value` in the type's unit, for people: bytes as [`Bytes`], blocks as a count;
    /// negative values with `-`, changes with an explicit `+` too.
    fn show(self, value: f64) -> String {
        let rounded = value.round();
        // Saturating cast of a finite estimate's magnitude.
        let magnitude = rounded.abs() as u64;
        let body = if self.is_space() {
            Bytes(magnitude).to_string()
        } else {
            magnitude.to_string()
        };
        if rounded < 0.0 {
            format!("-{body}")
        } else if self.is_change() && magnitude > 0 {
            format!("+{body}")
        } else {
            body
        }
    }
}

impl fmt::Display for SampleType {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.pad(self.name())
    }
}

/// A sample type name that is none of the four.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct UnknownSampleType(pub String);

impl fmt::Display for UnknownSampleType {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "unknown sample type {:?} (expected inuse_space, inuse_objects, alloc_space, \
             alloc_objects, inuse_space_change or inuse_objects_change)",
            self.0
        )
    }
}

impl std::error::Error for UnknownSampleType {}

impl FromStr for SampleType {
    type Err = UnknownSampleType;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        SampleType::ALL
            .into_iter()
            .find(|t| t.name() == s)
            .ok_or_else(|| UnknownSampleType(s.to_owned()))
    }
}

/// A frame's name in the text views: the function, or its address if unsymbolized.
fn frame_name(frame: &Frame<'_>) -> String {
    if frame.function.is_empty() {
        format!("{:#x}", frame.address)
    } else {
        frame.function.to_owned()
    }
}

/// One line of folded output: the stack, root first and `;`-joined, and its values
/// (before and after for a change type, else zero and the value).
pub(super) struct FoldedRow {
    pub(super) stack: String,
    pub(super) before: f64,
    pub(super) after: f64,
}

impl Profile {
    /// The distinct stacks with their summed values, sorted by stack.
    pub(super) fn folded_rows(&self, sample_type: SampleType) -> Vec<FoldedRow> {
        let mut stacks: HashMap<String, (f64, f64)> = HashMap::new();
        for sample in &self.samples {
            let (before, after) = sample_type.before_after(sample);
            if before == 0.0 && after == 0.0 {
                continue;
            }
            let mut names: Vec<String> = self
                .frames(sample)
                .map(|frame| frame_name(&frame).replace(';', ":"))
                .collect();
            names.reverse();
            let sum = stacks.entry(names.join(";")).or_default();
            sum.0 += before;
            sum.1 += after;
        }
        let mut rows: Vec<FoldedRow> = stacks
            .into_iter()
            .map(|(stack, (before, after))| FoldedRow {
                stack,
                before: before.round(),
                after: after.round(),
            })
            .filter(|row| row.before != 0.0 || row.after != 0.0)
            .collect();
        rows.sort_by(|a, b| a.stack.cmp(&b.stack));
        rows
    }

    /// Folded stacks: one line per distinct call stack, `root;…;leaf VALUE`, the value of
    /// `sample_type` rounded to a whole number, lines sorted; stacks whose value rounds
    /// to 0 are left out. The input of `flamegraph.pl`, `inferno-flamegraph` and
    /// speedscope. A `;` inside a name (array types such as `[u8; 4]`) is written `:`,
    /// since `;` separates frames.
    ///
    /// For the change types ([`SampleType::is_change`]) each line has two values,
    /// `root;…;leaf BEFORE AFTER`: the stack's in-use value in the diff's base and now.
    /// That is the differential format of `difffolded.pl` and `inferno-diff-folded`,
    /// which `flamegraph.pl` and `inferno-flamegraph` draw as a differential flame
    /// graph (red where the stack grew, blue where it shrank). In a diff the alloc
    /// values are differences, negative where a site allocated less than before.
    ///
    /// ```
    /// # #[global_allocator]
    /// # static GLOBAL: memsentry::MemSentry = memsentry::MemSentry::new();
    /// use memsentry::profile::{self, SampleType};
    /// let folded = profile::heap().folded(SampleType::AllocSpace);
    /// for line in folded.lines() {
    ///     let (stack, value) = line.rsplit_once(' ').unwrap();
    ///     assert!(!stack.is_empty() && value.parse::<u64>().unwrap() > 0);
    /// }
    /// ```
    #[must_use]
    pub fn folded(&self, sample_type: SampleType) -> String {
        use fmt::Write as _;
        let mut out = String::new();
        for row in self.folded_rows(sample_type) {
            // `write!` to a String cannot fail.
            let _ = if sample_type.is_change() {
                writeln!(out, "{} {} {}", row.stack, row.before, row.after)
            } else {
                writeln!(out, "{} {}", row.stack, row.after)
            };
        }
        out
    }

    /// A report like `go tool pprof -top`: per function, *flat* (the value of the
    /// stacks where it is the leaf, i.e. allocated in its own code) and *cum* (of the
    /// stacks it is on at all, counted once per stack), sorted by flat then cum,
    /// at most `limit` rows. Inlined functions are functions of their own, as in pprof.
    ///
    /// For a change type, flat and cum are changes (largest growth first) and the
    /// percentages are of what is in use now, so a row reads "this site grew by 3% of the
    /// current heap".
    ///
    /// ```
    /// # #[global_allocator]
    /// # static GLOBAL: memsentry::MemSentry = memsentry::MemSentry::new();
    /// use memsentry::profile::{self, SampleType};
    /// let top = profile::heap().top(SampleType::InuseSpace, 10);
    /// assert!(top.rows().len() <= 10);
    /// println!("{top}");
    /// ```
    #[must_use]
    pub fn top(&self, sample_type: SampleType, limit: usize) -> Top {
        let mut flat: HashMap<String, f64> = HashMap::new();
        let mut cum: HashMap<String, f64> = HashMap::new();
        let mut total = 0.0;
        let mut percent_of = 0.0;
        for sample in &self.samples {
            percent_of += sample_type.current().value(sample);
            let value = sample_type.value(sample);
            if value == 0.0 {
                continue;
            }
            total += value;
            let names: Vec<String> = self.frames(sample).map(|f| frame_name(&f)).collect();
            if let Some(leaf) = names.first() {
                *flat.entry(leaf.clone()).or_default() += value;
            }
            let mut seen = HashSet::new();
            for name in names {
                if seen.insert(name.clone()) {
                    *cum.entry(name).or_default() += value;
                }
            }
        }
        let mut rows: Vec<TopRow> = cum
            .into_iter()
            .map(|(function, cum)| TopRow {
                flat: flat.get(&function).copied().unwrap_or(0.0),
                cum,
                function,
            })
            .collect();
        rows.sort_by(|a, b| {
            b.flat
                .total_cmp(&a.flat)
                .then(b.cum.total_cmp(&a.cum))
                .then_with(|| a.function.cmp(&b.function))
        });
        rows.truncate(limit);
        Top {
            sample_type,
            total,
            percent_of,
            since_base: self.base.map(|base| {
                self.taken_at
                    .duration_since(base.taken_at)
                    .unwrap_or_default()
            }),
            rows,
        }
    }
}

/// A `pprof -top` style report (see [`Profile::top`]); `Display` prints the table.
#[derive(Clone, Debug, PartialEq)]
pub struct Top {
    sample_type: SampleType,
    total: f64,
    /// What percentages are of: the total, or for a change type what is in use now.
    percent_of: f64,
    /// In a diff: the time from the base to the later profile.
    since_base: Option<Duration>,
    rows: Vec<TopRow>,
}

/// One function of a [`Top`] report.
#[derive(Clone, Debug, PartialEq)]
#[non_exhaustive]
pub struct TopRow {
    /// The function (its address, `0x…`, if it could not be symbolized).
    pub function: String,
    /// Value of the stacks where it is the leaf.
    pub flat: f64,
    /// Value of the stacks it is on.
    pub cum: f64,
}

impl Top {
    /// The rows, largest flat first.
    #[must_use]
    pub fn rows(&self) -> &[TopRow] {
        &self.rows
    }

    /// The profile's total for the sample type (all stacks, not just the rows shown); for
    /// a change type, the net change.
    #[must_use]
    pub fn total(&self) -> f64 {
        self.total
    }

    /// The sample type the values are of.
    #[must_use]
    pub fn sample_type(&self) -> SampleType {
        self.sample_type
    }
}

impl fmt::Display for Top {
    /// `flat flat% sum% cum cum% function`, one row per function, after a line with the
    /// sample type and the total.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let t = self.sample_type;
        let percent = |value: f64| {
            if self.percent_of > 0.0 {
                100.0 * value / self.percent_of
            } else {
                0.0
            }
        };
        let total = t.show(self.total);
        let since = |earlier: Option<Duration>| match earlier {
            Some(age) => format!("the base (taken {:.1} s earlier)", age.as_secs_f64()),
            None => "the program started".to_owned(),
        };
        match (t, self.since_base) {
            _ if t.is_change() => writeln!(
                f,
                "{t}: {total} total change since {}; percentages of the {} in use now",
                since(self.since_base),
                t.current().show(self.percent_of)
            )?,
            (SampleType::AllocSpace | SampleType::AllocObjects, Some(_)) => writeln!(
                f,
                "{t}: {total} total allocated since {}",
                since(self.since_base)
            )?,
            (_, Some(_)) => writeln!(
                f,
                "{t}: {total} total in use now (this is a diff: {} shows the change)",
                match t {
                    SampleType::InuseObjects => SampleType::InuseObjectsChange,
                    _ => SampleType::InuseSpaceChange,
                }
            )?,
            (_, None) => writeln!(f, "{t}: {total} total")?,
        }
        writeln!(
            f,
            "{:>10} {:>6} {:>6} {:>10} {:>6}  function",
            "flat", "flat%", "sum%", "cum", "cum%"
        )?;
        let mut sum = 0.0;
        for row in &self.rows {
            sum += percent(row.flat);
            writeln!(
                f,
                "{:>10} {:>5.1}% {:>5.1}% {:>10} {:>5.1}%  {}",
                t.show(row.flat),
                percent(row.flat),
                sum,
                t.show(row.cum),
                percent(row.cum),
                row.function
            )?;
        }
        Ok(())
    }
}
