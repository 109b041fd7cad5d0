//! Text views of a profile: folded stacks (flamegraph input) and a `pprof -top` report.

use std::collections::{HashMap, HashSet};
use std::fmt;
use std::str::FromStr;

use super::{Frame, Profile, Sample};
use crate::Bytes;

/// Which of a profile's four values a view shows: the sample types of a Go heap profile.
///
/// ```
/// use memsentry::profile::SampleType;
/// assert_eq!(SampleType::default(), SampleType::InuseSpace);
/// assert_eq!("alloc_objects".parse(), Ok(SampleType::AllocObjects));
/// assert_eq!(SampleType::AllocSpace.to_string(), "alloc_space");
/// ```
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub enum SampleType {
    /// Bytes in use when the profile was taken (the default, as in Go).
    #[default]
    InuseSpace,
    /// Blocks in use when the profile was taken.
    InuseObjects,
    /// Bytes allocated since the program started.
    AllocSpace,
    /// Blocks allocated since the program started.
    AllocObjects,
}

impl SampleType {
    /// All four, in pprof's order.
    pub const ALL: [SampleType; 4] = [
        SampleType::AllocObjects,
        SampleType::AllocSpace,
        SampleType::InuseObjects,
        SampleType::InuseSpace,
    ];

    /// The pprof name: `inuse_space`, `inuse_objects`, `alloc_space`, `alloc_objects`.
    #[must_use]
    pub const fn name(self) -> &'static str {
        match self {
            SampleType::InuseSpace => "inuse_space",
            SampleType::InuseObjects => "inuse_objects",
            SampleType::AllocSpace => "alloc_space",
            SampleType::AllocObjects => "alloc_objects",
        }
    }

    /// Whether the values are bytes (else block counts).
    #[must_use]
    pub const fn is_space(self) -> bool {
        matches!(self, SampleType::InuseSpace | SampleType::AllocSpace)
    }

    /// The pprof unit: `bytes` or `count`.
    pub(crate) const fn unit(self) -> &'static str {
        if self.is_space() { "bytes" } else { "count" }
    }

    /// This type's estimate in `sample`.
    #[must_use]
    pub fn value(self, sample: &Sample) -> f64 {
        match self {
            SampleType::InuseSpace => sample.inuse.bytes,
            SampleType::InuseObjects => sample.inuse.objects,
            SampleType::AllocSpace => sample.alloc.bytes,
            SampleType::AllocObjects => sample.alloc.objects,
        }
    }

    /// `value` in the type's unit, for people: bytes as [`Bytes`], blocks as a count.
    fn show(self, value: f64) -> String {
        // Rounded to whole bytes or blocks; the cast saturates (estimates are finite and
        // non-negative in a profile).
        let rounded = value.round() as u64;
        if self.is_space() {
            Bytes(rounded).to_string()
        } else {
            rounded.to_string()
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
            "unknown sample type {:?} (expected inuse_space, inuse_objects, alloc_space or alloc_objects)",
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

impl Profile {
    /// Folded stacks: one line per distinct call stack, `root;…;leaf VALUE`, the value of
    /// `sample_type` rounded to a whole number, lines sorted; stacks whose value rounds
    /// to 0 are left out. The input of `flamegraph.pl`, `inferno-flamegraph` and
    /// speedscope. A `;` inside a name (array types such as `[u8; 4]`) is written `:`,
    /// since `;` separates frames.
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
        let mut stacks: HashMap<String, f64> = HashMap::new();
        for sample in &self.samples {
            let value = sample_type.value(sample);
            if value == 0.0 {
                continue;
            }
            let mut names: Vec<String> = self
                .frames(sample)
                .map(|frame| frame_name(&frame).replace(';', ":"))
                .collect();
            names.reverse();
            *stacks.entry(names.join(";")).or_default() += value;
        }
        let mut lines: Vec<(String, u64)> = stacks
            .into_iter()
            // Saturating cast of a finite, non-negative estimate.
            .map(|(stack, value)| (stack, value.round() as u64))
            .filter(|&(_, value)| value > 0)
            .collect();
        lines.sort();
        let mut out = String::new();
        for (stack, value) in lines {
            out.push_str(&stack);
            out.push(' ');
            out.push_str(&value.to_string());
            out.push('\n');
        }
        out
    }

    /// A report like `go tool pprof -top`: per function, *flat* (the value of the
    /// stacks where it is the leaf, i.e. allocated in its own code) and *cum* (of the
    /// stacks it is on at all, counted once per stack), sorted by flat then cum,
    /// at most `limit` rows. Inlined functions are functions of their own, as in pprof.
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
        for sample in &self.samples {
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
            rows,
        }
    }
}

/// A `pprof -top` style report (see [`Profile::top`]); `Display` prints the table.
#[derive(Clone, Debug, PartialEq)]
pub struct Top {
    sample_type: SampleType,
    total: f64,
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

    /// The profile's total for the sample type (all stacks, not just the rows shown).
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
            if self.total > 0.0 {
                100.0 * value / self.total
            } else {
                0.0
            }
        };
        writeln!(f, "{t}: {} total", t.show(self.total))?;
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
