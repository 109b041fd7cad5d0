//! **[C]** A directory of heap dumps: names that sort by time and say why, files written
//! whole (temporary name, then rename), and bounded retention. Shared by the signal dumps
//! and the [watchdog](crate::watch).
//!
//! A dump is a group of files with one *stem*, `heap-YYYYMMDDTHHMMSS.ffffffZ` (UTC,
//! microseconds), optionally followed by `-REASON` (lowercase letters, digits and `-`,
//! starting with a letter: `-forecast`, `-pre-oom`), then one of the [`SUFFIXES`]. The
//! pprof file (`.pb.gz`) is the dump's main file; the others (flame graph, diff, the
//! cgroup's files) go with it and are removed with it. Names of any other shape are
//! never touched, so the directory may hold other files.

use std::fs;
use std::io;
use std::path::{Path, PathBuf};
use std::time::{SystemTime, UNIX_EPOCH};

use crate::profile::ProfileError;

pub(crate) const PREFIX: &str = "heap-";
/// The main file of a dump.
pub(crate) const PPROF_SUFFIX: &str = ".pb.gz";
/// The in-use flame graph.
pub(crate) const SVG_SUFFIX: &str = ".svg";
/// What changed since the baseline profile (a pprof diff).
pub(crate) const DIFF_SUFFIX: &str = ".diff.pb.gz";
/// Every suffix a dump's files have; the first is the main file.
pub(crate) const SUFFIXES: [&str; 5] = [
    PPROF_SUFFIX,
    SVG_SUFFIX,
    DIFF_SUFFIX,
    ".memory.stat",
    ".memory.events",
];
/// The shape of a name's time stamp after [`PREFIX`]: `#` is a decimal digit.
const STAMP_SHAPE: &[u8] = b"########T######.######Z";
/// The longest reason a name carries.
const MAX_REASON: usize = 32;

/// Where dumps go and how many stay.
#[derive(Clone, Debug)]
pub(crate) struct Store {
    dir: PathBuf,
    /// At most this many dumps stay (at least 1).
    keep: usize,
    /// At most this many bytes of dumps stay, the newest dump excepted.
    max_bytes: u64,
    /// The stamp (microseconds since the epoch) of the last name used.
    last: Option<u64>,
}

/// One dump file in a directory, as [`list`] finds it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct DumpFile {
    /// The file's name (no directory).
    pub(crate) name: String,
    /// Its size in bytes.
    pub(crate) bytes: u64,
}

impl Store {
    pub(crate) fn new(dir: PathBuf, keep: usize, max_bytes: u64) -> Store {
        Store {
            dir,
            keep: keep.max(1),
            max_bytes,
            last: None,
        }
    }

    pub(crate) fn dir(&self) -> &Path {
        &self.dir
    }

    /// A name stem for a dump taken at `taken_at` for `reason`: later than the last one,
    /// and not taken by a file of any suffix already there.
    pub(crate) fn next_stem(&mut self, taken_at: SystemTime, reason: Option<&str>) -> String {
        let mut micros = micros_since_epoch(taken_at);
        if let Some(last) = self.last {
            micros = micros.max(last.saturating_add(1));
        }
        // Bounded: past that, `rename` replaces the file (only another writer's doing).
        for _ in 0..1000 {
            let candidate = stem(micros, reason);
            let taken = SUFFIXES.iter().any(|suffix| {
                matches!(
                    self.dir.join(format!("{candidate}{suffix}")).try_exists(),
                    Ok(true)
                )
            });
            if !taken {
                break;
            }
            micros = micros.saturating_add(1);
        }
        self.last = Some(micros);
        stem(micros, reason)
    }

    /// Writes `stem` + `suffix` whole: through a hidden temporary file, then renamed into
    /// place. Returns the file's path.
    pub(crate) fn write(
        &self,
        stem: &str,
        suffix: &str,
        write: impl FnOnce(&Path) -> Result<(), ProfileError>,
    ) -> Result<PathBuf, ProfileError> {
        let path = self.dir.join(format!("{stem}{suffix}"));
        let tmp = self.dir.join(format!(".{stem}{suffix}.tmp"));
        write_then_rename(&tmp, &path, write)?;
        Ok(path)
    }

    /// Removes the oldest dumps (every file of each) until at most `keep` remain and
    /// their files hold at most `max_bytes`; the newest dump always stays.
    pub(crate) fn prune(&self) -> Result<(), PruneError> {
        prune(&self.dir, self.keep, self.max_bytes)
    }
}

/// Listing the directory or removing an old dump failed.
#[derive(Debug)]
pub(crate) struct PruneError {
    pub(crate) path: PathBuf,
    pub(crate) source: io::Error,
}

impl std::fmt::Display for PruneError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "cannot remove old dumps at {}: {}",
            self.path.display(),
            self.source
        )
    }
}

/// Writes through `tmp`, then renames it to `path`; removes `tmp` if either step fails
/// (a partial file after a full disk must not stay).
pub(crate) fn write_then_rename(
    tmp: &Path,
    path: &Path,
    write: impl FnOnce(&Path) -> Result<(), ProfileError>,
) -> Result<(), ProfileError> {
    let result = write(tmp).and_then(|()| {
        fs::rename(tmp, path).map_err(|source| ProfileError::Write {
            path: path.to_path_buf(),
            source,
        })
    });
    if result.is_err() {
        let _ = fs::remove_file(tmp);
    }
    result
}

/// The dump files in `dir`, oldest first (by name, which sorts by time): every file whose
/// name [`split_name`] accepts.
pub(crate) fn list(dir: &Path) -> io::Result<Vec<DumpFile>> {
    let mut files = Vec::new();
    for entry in fs::read_dir(dir)? {
        let entry = entry?;
        let Ok(name) = entry.file_name().into_string() else {
            continue;
        };
        if split_name(&name).is_none() {
            continue;
        }
        let metadata = entry.metadata()?;
        if metadata.is_file() {
            files.push(DumpFile {
                name,
                bytes: metadata.len(),
            });
        }
    }
    files.sort_unstable_by(|a, b| a.name.cmp(&b.name));
    Ok(files)
}

/// Removes the oldest dumps in `dir` (all files of each) until at most `keep` remain and
/// they hold at most `max_bytes` (the newest excepted). Only names [`split_name`] accepts
/// are touched.
pub(crate) fn prune(dir: &Path, keep: usize, max_bytes: u64) -> Result<(), PruneError> {
    let files = list(dir).map_err(|source| PruneError {
        path: dir.to_path_buf(),
        source,
    })?;
    // Dumps by stem, oldest first, with the bytes of all their files. A stem without its
    // main file (a flame graph whose pprof file was removed by hand) counts all the same.
    let mut dumps: Vec<(&str, u64)> = Vec::new();
    for file in &files {
        let Some((stem, _)) = split_name(&file.name) else {
            continue;
        };
        match dumps.last_mut() {
            Some((last, bytes)) if *last == stem => *bytes += file.bytes,
            _ => dumps.push((stem, file.bytes)),
        }
    }
    // `list` sorts by whole name: files of one stem are adjacent unless a reason makes a
    // stem a prefix of another; merge those too.
    dumps.sort_by(|a, b| a.0.cmp(b.0));
    dumps.dedup_by(|later, earlier| {
        let same = later.0 == earlier.0;
        if same {
            earlier.1 += later.1;
        }
        same
    });
    let mut count = dumps.len();
    let mut total: u64 = dumps.iter().map(|d| d.1).sum();
    let mut result = Ok(());
    for (stem, bytes) in &dumps {
        if count <= 1 || (count <= keep && total <= max_bytes) {
            break;
        }
        for suffix in SUFFIXES {
            let path = dir.join(format!("{stem}{suffix}"));
            match fs::remove_file(&path) {
                Err(source) if source.kind() != io::ErrorKind::NotFound && result.is_ok() => {
                    result = Err(PruneError { path, source });
                }
                _ => {}
            }
        }
        count -= 1;
        total = total.saturating_sub(*bytes);
    }
    result
}

pub(crate) fn micros_since_epoch(time: SystemTime) -> u64 {
    time.duration_since(UNIX_EPOCH)
        .map_or(0, |d| u64::try_from(d.as_micros()).unwrap_or(u64::MAX))
}

/// `heap-YYYYMMDDTHHMMSS.ffffffZ[-REASON]` for a time in microseconds since the epoch,
/// UTC. A reason that is not of the accepted shape is left out.
pub(crate) fn stem(micros: u64, reason: Option<&str>) -> String {
    let secs = micros / 1_000_000;
    let (year, month, day) = civil_from_days(secs / 86_400);
    let second_of_day = secs % 86_400;
    let mut stem = format!(
        "{PREFIX}{year:04}{month:02}{day:02}T{:02}{:02}{:02}.{:06}Z",
        second_of_day / 3600,
        second_of_day / 60 % 60,
        second_of_day % 60,
        micros % 1_000_000,
    );
    if let Some(reason) = reason.filter(|r| is_reason(r)) {
        stem.push('-');
        stem.push_str(reason);
    }
    stem
}

/// Whether `reason` may follow a stamp: 1 to 32 lowercase letters, digits and `-`,
/// starting with a letter.
fn is_reason(reason: &str) -> bool {
    reason.len() <= MAX_REASON
        && reason
            .bytes()
            .next()
            .is_some_and(|b| b.is_ascii_lowercase())
        && reason
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
}

/// Whether `stem` is a name [`stem`] makes (for years 0000 to 9999).
pub(crate) fn is_stem(stem: &str) -> bool {
    let Some(rest) = stem.strip_prefix(PREFIX) else {
        return false;
    };
    let (stamp, reason) = rest
        .split_at_checked(STAMP_SHAPE.len())
        .unwrap_or((rest, ""));
    let stamp_ok = stamp.len() == STAMP_SHAPE.len()
        && stamp
            .bytes()
            .zip(STAMP_SHAPE)
            .all(|(byte, &shape)| match shape {
                b'#' => byte.is_ascii_digit(),
                _ => byte == shape,
            });
    stamp_ok && (reason.is_empty() || reason.strip_prefix('-').is_some_and(is_reason))
}

/// A dump file's name split into its stem and suffix; `None` for any other name.
pub(crate) fn split_name(name: &str) -> Option<(&str, &str)> {
    SUFFIXES.iter().find_map(|suffix| {
        let stem = name.strip_suffix(suffix)?;
        is_stem(stem).then_some((stem, *suffix))
    })
}

/// The (year, month, day) of a day count since 1970-01-01 in the proleptic Gregorian
/// calendar: Howard Hinnant's `civil_from_days`
/// (<https://howardhinnant.github.io/date_algorithms.html#civil_from_days>), restricted to
/// days on or after the epoch, so every step is unsigned.
pub(crate) fn civil_from_days(days: u64) -> (u64, u64, u64) {
    // Count from 0000-03-01, so a leap day ends its year; eras are 400-year cycles.
    let z = days + 719_468;
    let era = z / 146_097;
    let day_of_era = z % 146_097;
    let year_of_era =
        (day_of_era - day_of_era / 1460 + day_of_era / 36_524 - day_of_era / 146_096) / 365;
    let day_of_year = day_of_era - (365 * year_of_era + year_of_era / 4 - year_of_era / 100);
    let shifted_month = (5 * day_of_year + 2) / 153; // 0 = March ... 11 = February
    let day = day_of_year - (153 * shifted_month + 2) / 5 + 1;
    let month = if shifted_month < 10 {
        shifted_month + 3
    } else {
        shifted_month - 9
    };
    let year = era * 400 + year_of_era + u64::from(month <= 2);
    (year, month, day)
}
