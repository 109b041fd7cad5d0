//! **[C]** Budgets kept in a file: measure named scopes, write their figures beside the
//! code, and fail CI when one grows past a tolerance.

use std::collections::BTreeMap;
use std::fmt;
use std::path::{Path, PathBuf};

use super::Usage;
use crate::Bytes;

/// The variable that makes [`Baseline::check`] write the file instead of comparing.
pub const UPDATE_VAR: &str = "MEMSENTRY_BUDGETS";

/// The figures of named scopes, as measured now or as committed in a file.
///
/// The file is TOML, one table per scope:
///
/// ```toml
/// ["parse::small_file"]
/// allocations = 40
/// allocated_bytes = 18432
/// peak_bytes = 12288
/// ```
///
/// The workflow: a test measures its scopes, [`record`](Self::record)s each, and calls
/// [`check`](Self::check) with the committed file; run once with `MEMSENTRY_BUDGETS=update`
/// to write (or rewrite) the file, commit it, and from then on the check fails when a
/// scope's allocations, allocated bytes or peak grew by more than the tolerance, printing
/// the before/after table.
///
/// ```rust,standalone_crate
/// #[global_allocator]
/// static GLOBAL: memsentry::MemSentry = memsentry::MemSentry::new();
///
/// use memsentry::budget::Baseline;
///
/// fn main() {
///     let mut now = Baseline::new();
///     let (_, usage) = memsentry::measure(|| vec![0u8; 1000]);
///     now.record("one_vec", &usage);
///     let committed = Baseline::parse(&now.to_toml()).unwrap();
///     assert!(now.compare(&committed, 10.0).passed());
/// }
/// ```
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Baseline {
    scopes: BTreeMap<String, Figures>,
}

/// What a baseline keeps of a scope.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
struct Figures {
    allocations: u64,
    allocated_bytes: u64,
    peak_bytes: u64,
}

/// A figure: its name in the file, how to read it, and whether it is in bytes.
type Field = (&'static str, fn(&Figures) -> u64, bool);

const FIELDS: [Field; 3] = [
    ("allocations", |f| f.allocations, false),
    ("allocated_bytes", |f| f.allocated_bytes, true),
    ("peak_bytes", |f| f.peak_bytes, true),
];

impl Baseline {
    /// No scopes.
    #[must_use]
    pub fn new() -> Baseline {
        Baseline::default()
    }

    /// Records (or replaces) the figures of the scope `name`.
    pub fn record(&mut self, name: &str, usage: &Usage) {
        self.scopes.insert(
            name.to_owned(),
            Figures {
                allocations: usage.allocations(),
                allocated_bytes: usage.allocated_bytes(),
                peak_bytes: usage.peak_bytes(),
            },
        );
    }

    /// The scopes' names, sorted.
    pub fn names(&self) -> impl Iterator<Item = &str> {
        self.scopes.keys().map(String::as_str)
    }

    /// The baseline as the file holds it.
    #[must_use]
    pub fn to_toml(&self) -> String {
        let mut out = String::from(
            "# Memory budgets measured by memsentry::budget::Baseline. Rewrite with\n\
             # MEMSENTRY_BUDGETS=update; see the README, \"Memory budgets in tests and CI\".\n",
        );
        for (name, figures) in &self.scopes {
            out.push_str(&format!("\n[{}]\n", toml_string(name)));
            for (field, value, _) in FIELDS {
                out.push_str(&format!("{field} = {}\n", value(figures)));
            }
        }
        out
    }

    /// Reads a baseline from its file's text.
    ///
    /// # Errors
    ///
    /// [`BaselineError::Parse`] naming the line for anything but the tables and fields
    /// [`to_toml`](Self::to_toml) writes (comments and blank lines aside).
    pub fn parse(text: &str) -> Result<Baseline, BaselineError> {
        let mut baseline = Baseline::new();
        let mut current: Option<String> = None;
        for (number, line) in text.lines().enumerate() {
            let line = line.trim();
            let bad = |message: &str| BaselineError::Parse {
                line: number + 1,
                message: message.to_owned(),
            };
            if line.is_empty() || line.starts_with('#') {
                continue;
            }
            if let Some(header) = line.strip_prefix('[').and_then(|l| l.strip_suffix(']')) {
                let name = parse_toml_string(header.trim())
                    .ok_or_else(|| bad("expected a table name in double quotes"))?;
                if baseline.scopes.contains_key(&name) {
                    return Err(bad("the scope is listed twice"));
                }
                baseline.scopes.insert(name.clone(), Figures::default());
                current = Some(name);
                continue;
            }
            let (key, value) = line
                .split_once('=')
                .ok_or_else(|| bad("expected `key = value` or `[\"scope\"]`"))?;
            let scope = current
                .as_ref()
                .and_then(|name| baseline.scopes.get_mut(name))
                .ok_or_else(|| bad("a field before any [\"scope\"]"))?;
            let value: u64 = value
                .trim()
                .parse()
                .map_err(|_| bad("expected a whole number"))?;
            match key.trim() {
                "allocations" => scope.allocations = value,
                "allocated_bytes" => scope.allocated_bytes = value,
                "peak_bytes" => scope.peak_bytes = value,
                _ => {
                    return Err(bad(
                        "unknown field (allocations, allocated_bytes, peak_bytes)",
                    ));
                }
            }
        }
        Ok(baseline)
    }

    /// Reads the file at `path`.
    ///
    /// # Errors
    ///
    /// [`BaselineError::Io`] if it cannot be read, [`BaselineError::Parse`] as
    /// [`parse`](Self::parse).
    pub fn read(path: impl AsRef<Path>) -> Result<Baseline, BaselineError> {
        let path = path.as_ref();
        let text = std::fs::read_to_string(path).map_err(|source| BaselineError::Io {
            path: path.to_path_buf(),
            source,
        })?;
        Baseline::parse(&text)
    }

    /// Writes the file at `path`.
    ///
    /// # Errors
    ///
    /// [`BaselineError::Io`] if it cannot be written.
    pub fn write(&self, path: impl AsRef<Path>) -> Result<(), BaselineError> {
        let path = path.as_ref();
        std::fs::write(path, self.to_toml()).map_err(|source| BaselineError::Io {
            path: path.to_path_buf(),
            source,
        })
    }

    /// This baseline (measured now) against `committed`: every figure of every scope,
    /// before and after; a figure that grew by more than `tolerance_percent` fails.
    /// Scopes only one side has are listed, and do not fail.
    #[must_use]
    pub fn compare(&self, committed: &Baseline, tolerance_percent: f64) -> Comparison {
        let mut rows = Vec::new();
        let names: std::collections::BTreeSet<&String> =
            self.scopes.keys().chain(committed.scopes.keys()).collect();
        for name in names {
            let (before, after) = (committed.scopes.get(name), self.scopes.get(name));
            for (field, value, bytes) in FIELDS {
                let before = before.map(value);
                let after = after.map(value);
                let grown = match (before, after) {
                    (Some(before), Some(after)) => {
                        after as f64 > before as f64 * (1.0 + tolerance_percent / 100.0)
                    }
                    _ => false,
                };
                rows.push(Row {
                    scope: name.clone(),
                    field,
                    bytes,
                    before,
                    after,
                    grown,
                });
            }
        }
        Comparison {
            rows,
            tolerance_percent,
        }
    }

    /// The CI check: with `MEMSENTRY_BUDGETS=update` in the environment, writes this
    /// baseline to `path`; otherwise compares it with the file there.
    ///
    /// # Errors
    ///
    /// [`BaselineError::Grown`], with the table, when a figure grew past the tolerance;
    /// [`BaselineError::Io`] or [`BaselineError::Parse`] for the file (a missing file
    /// says to run with `MEMSENTRY_BUDGETS=update`).
    pub fn check(
        &self,
        path: impl AsRef<Path>,
        tolerance_percent: f64,
    ) -> Result<Comparison, BaselineError> {
        let path = path.as_ref();
        if std::env::var(UPDATE_VAR).is_ok_and(|v| v.trim() == "update") {
            self.write(path)?;
            return Ok(self.compare(self, tolerance_percent));
        }
        let committed = Baseline::read(path)?;
        let comparison = self.compare(&committed, tolerance_percent);
        if comparison.passed() {
            Ok(comparison)
        } else {
            Err(BaselineError::Grown(comparison))
        }
    }
}

/// One figure of one scope, before and after.
#[derive(Clone, Debug, PartialEq)]
struct Row {
    scope: String,
    field: &'static str,
    bytes: bool,
    before: Option<u64>,
    after: Option<u64>,
    grown: bool,
}

/// A baseline measured now against the committed one ([`Baseline::compare`]); `Display`
/// prints the before/after table.
#[derive(Clone, Debug, PartialEq)]
pub struct Comparison {
    rows: Vec<Row>,
    tolerance_percent: f64,
}

impl Comparison {
    /// Whether no figure grew past the tolerance.
    #[must_use]
    pub fn passed(&self) -> bool {
        !self.rows.iter().any(|row| row.grown)
    }

    /// The scopes with a figure that grew past the tolerance.
    pub fn grown(&self) -> impl Iterator<Item = &str> {
        let mut names: Vec<&str> = self
            .rows
            .iter()
            .filter(|r| r.grown)
            .map(|r| r.scope.as_str())
            .collect();
        names.dedup();
        names.into_iter()
    }
}

impl fmt::Display for Comparison {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        writeln!(
            f,
            "{:<32} {:<16} {:>12} {:>12} {:>9}",
            "scope", "figure", "before", "after", "change"
        )?;
        for row in &self.rows {
            let show = |value: Option<u64>| match value {
                None => "-".to_owned(),
                Some(v) if row.bytes => Bytes(v).to_string(),
                Some(v) => v.to_string(),
            };
            let change = match (row.before, row.after) {
                (Some(0), Some(0)) => "0%".to_owned(),
                (Some(0), Some(_)) => "new".to_owned(),
                (Some(before), Some(after)) => {
                    format!("{:+.1}%", (after as f64 / before as f64 - 1.0) * 100.0)
                }
                (None, _) => "new".to_owned(),
                (_, None) => "gone".to_owned(),
            };
            writeln!(
                f,
                "{:<32} {:<16} {:>12} {:>12} {:>9}{}",
                row.scope,
                row.field,
                show(row.before),
                show(row.after),
                change,
                if row.grown { "  GREW" } else { "" }
            )?;
        }
        if self.passed() {
            write!(f, "every figure within +{}%", self.tolerance_percent)
        } else {
            write!(
                f,
                "grew past +{}%: {}",
                self.tolerance_percent,
                self.grown().collect::<Vec<_>>().join(", ")
            )
        }
    }
}

/// A baseline could not be read or written, or the check failed.
#[derive(Debug)]
#[non_exhaustive]
pub enum BaselineError {
    /// Reading or writing the file.
    Io {
        /// The file.
        path: PathBuf,
        /// Why.
        source: std::io::Error,
    },
    /// A line of the file that is not what [`Baseline::to_toml`] writes.
    Parse {
        /// Its number, from 1.
        line: usize,
        /// What was expected.
        message: String,
    },
    /// A figure grew past the tolerance: the comparison, whose `Display` is the table.
    Grown(Comparison),
}

impl fmt::Display for BaselineError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            BaselineError::Io { path, source } if source.kind() == std::io::ErrorKind::NotFound => {
                write!(
                    f,
                    "no budget baseline at {}: run once with {UPDATE_VAR}=update to write it",
                    path.display()
                )
            }
            BaselineError::Io { path, source } => {
                write!(
                    f,
                    "cannot use the budget baseline {}: {source}",
                    path.display()
                )
            }
            BaselineError::Parse { line, message } => {
                write!(f, "budget baseline, line {line}: {message}")
            }
            BaselineError::Grown(comparison) => {
                write!(f, "memory budgets grew:\n{comparison}")
            }
        }
    }
}

impl std::error::Error for BaselineError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match self {
            BaselineError::Io { source, .. } => Some(source),
            _ => None,
        }
    }
}

/// `text` as a TOML basic string.
fn toml_string(text: &str) -> String {
    let mut out = String::from("\"");
    for c in text.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            c if c.is_control() => out.push_str(&format!("\\u{:04X}", u32::from(c))),
            c => out.push(c),
        }
    }
    out.push('"');
    out
}

/// A TOML basic string as [`toml_string`] writes it; `None` for anything else.
fn parse_toml_string(text: &str) -> Option<String> {
    let inner = text.strip_prefix('"')?.strip_suffix('"')?;
    let mut out = String::new();
    let mut chars = inner.chars();
    while let Some(c) = chars.next() {
        match c {
            '\\' => match chars.next()? {
                '"' => out.push('"'),
                '\\' => out.push('\\'),
                'u' => {
                    let hex: String = chars.by_ref().take(4).collect();
                    out.push(char::from_u32(u32::from_str_radix(&hex, 16).ok()?)?);
                }
                _ => return None,
            },
            '"' => return None,
            c => out.push(c),
        }
    }
    Some(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn baseline(entries: &[(&str, u64, u64, u64)]) -> Baseline {
        Baseline {
            scopes: entries
                .iter()
                .map(|&(name, allocations, allocated_bytes, peak_bytes)| {
                    (
                        name.to_owned(),
                        Figures {
                            allocations,
                            allocated_bytes,
                            peak_bytes,
                        },
                    )
                })
                .collect(),
        }
    }

    #[test]
    fn the_file_round_trips() {
        let original = baseline(&[("parse::small", 40, 1000, 800), ("odd \"name\"\\", 1, 2, 3)]);
        let text = original.to_toml();
        assert!(
            text.contains("[\"parse::small\"]\nallocations = 40\n"),
            "{text}"
        );
        assert_eq!(Baseline::parse(&text).unwrap(), original);
        for (bad, line) in [
            ("allocations = 1", 1),
            ("[\"a\"]\nallocations = x", 2),
            ("[\"a\"]\ncolour = 1", 2),
            ("[a]", 1),
            ("[\"a\"]\n[\"a\"]", 2),
        ] {
            match Baseline::parse(bad) {
                Err(BaselineError::Parse { line: at, .. }) => assert_eq!(at, line, "{bad}"),
                other => panic!("{bad:?}: {other:?}"),
            }
        }
    }

    #[test]
    fn growth_past_the_tolerance_fails() {
        let committed = baseline(&[("a", 100, 1000, 1000), ("b", 10, 10, 10), ("gone", 1, 1, 1)]);
        let same = baseline(&[("a", 105, 1000, 1000), ("b", 10, 10, 10), ("new", 5, 5, 5)]);
        let comparison = same.compare(&committed, 10.0);
        assert!(comparison.passed(), "{comparison}");
        let grown = baseline(&[("a", 100, 1000, 1200), ("b", 10, 10, 10)]);
        let comparison = grown.compare(&committed, 10.0);
        assert!(!comparison.passed());
        assert_eq!(comparison.grown().collect::<Vec<_>>(), ["a"]);
        let table = comparison.to_string();
        assert!(
            table.contains("a                                peak_bytes"),
            "{table}"
        );
        assert!(table.contains("+20.0%  GREW"), "{table}");
        assert!(table.ends_with("grew past +10%: a"), "{table}");
    }
}
