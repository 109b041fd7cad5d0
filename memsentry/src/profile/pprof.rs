//! pprof encoding: the `profile.proto` messages (github.com/google/pprof,
//! `proto/profile.proto`), declared in Rust for `prost`, and the mapping from a
//! [`Profile`] to them. The sample types are a Go heap profile's, so `go tool pprof`
//! and the tools that read Go profiles show the same views.

use std::collections::HashMap;
use std::io::{self, Write};
use std::time::UNIX_EPOCH;

use flate2::Compression;
use flate2::write::GzEncoder;
use prost::Message;

use super::{Profile, SampleType, Symbolization};

#[derive(Clone, PartialEq, Message)]
pub(crate) struct PProfile {
    #[prost(message, repeated, tag = "1")]
    pub(crate) sample_type: Vec<ValueType>,
    #[prost(message, repeated, tag = "2")]
    pub(crate) sample: Vec<PSample>,
    #[prost(message, repeated, tag = "3")]
    pub(crate) mapping: Vec<PMapping>,
    #[prost(message, repeated, tag = "4")]
    pub(crate) location: Vec<PLocation>,
    #[prost(message, repeated, tag = "5")]
    pub(crate) function: Vec<PFunction>,
    #[prost(string, repeated, tag = "6")]
    pub(crate) string_table: Vec<String>,
    #[prost(int64, tag = "7")]
    pub(crate) drop_frames: i64,
    #[prost(int64, tag = "8")]
    pub(crate) keep_frames: i64,
    #[prost(int64, tag = "9")]
    pub(crate) time_nanos: i64,
    #[prost(int64, tag = "10")]
    pub(crate) duration_nanos: i64,
    #[prost(message, optional, tag = "11")]
    pub(crate) period_type: Option<ValueType>,
    #[prost(int64, tag = "12")]
    pub(crate) period: i64,
    #[prost(int64, repeated, tag = "13")]
    pub(crate) comment: Vec<i64>,
    #[prost(int64, tag = "14")]
    pub(crate) default_sample_type: i64,
}

#[derive(Clone, PartialEq, Message)]
pub(crate) struct ValueType {
    #[prost(int64, tag = "1")]
    pub(crate) r#type: i64,
    #[prost(int64, tag = "2")]
    pub(crate) unit: i64,
}

#[derive(Clone, PartialEq, Message)]
pub(crate) struct PSample {
    #[prost(uint64, repeated, tag = "1")]
    pub(crate) location_id: Vec<u64>,
    #[prost(int64, repeated, tag = "2")]
    pub(crate) value: Vec<i64>,
    #[prost(message, repeated, tag = "3")]
    pub(crate) label: Vec<Label>,
}

#[derive(Clone, PartialEq, Message)]
pub(crate) struct Label {
    #[prost(int64, tag = "1")]
    pub(crate) key: i64,
    #[prost(int64, tag = "2")]
    pub(crate) str: i64,
    #[prost(int64, tag = "3")]
    pub(crate) num: i64,
    #[prost(int64, tag = "4")]
    pub(crate) num_unit: i64,
}

#[derive(Clone, PartialEq, Message)]
pub(crate) struct PMapping {
    #[prost(uint64, tag = "1")]
    pub(crate) id: u64,
    #[prost(uint64, tag = "2")]
    pub(crate) memory_start: u64,
    #[prost(uint64, tag = "3")]
    pub(crate) memory_limit: u64,
    #[prost(uint64, tag = "4")]
    pub(crate) file_offset: u64,
    #[prost(int64, tag = "5")]
    pub(crate) filename: i64,
    #[prost(int64, tag = "6")]
    pub(crate) build_id: i64,
    #[prost(bool, tag = "7")]
    pub(crate) has_functions: bool,
    #[prost(bool, tag = "8")]
    pub(crate) has_filenames: bool,
    #[prost(bool, tag = "9")]
    pub(crate) has_line_numbers: bool,
    #[prost(bool, tag = "10")]
    pub(crate) has_inline_frames: bool,
}

#[derive(Clone, PartialEq, Message)]
pub(crate) struct PLocation {
    #[prost(uint64, tag = "1")]
    pub(crate) id: u64,
    #[prost(uint64, tag = "2")]
    pub(crate) mapping_id: u64,
    #[prost(uint64, tag = "3")]
    pub(crate) address: u64,
    #[prost(message, repeated, tag = "4")]
    pub(crate) line: Vec<PLine>,
    #[prost(bool, tag = "5")]
    pub(crate) is_folded: bool,
}

#[derive(Clone, PartialEq, Message)]
pub(crate) struct PLine {
    #[prost(uint64, tag = "1")]
    pub(crate) function_id: u64,
    #[prost(int64, tag = "2")]
    pub(crate) line: i64,
}

#[derive(Clone, PartialEq, Message)]
pub(crate) struct PFunction {
    #[prost(uint64, tag = "1")]
    pub(crate) id: u64,
    #[prost(int64, tag = "2")]
    pub(crate) name: i64,
    #[prost(int64, tag = "3")]
    pub(crate) system_name: i64,
    #[prost(int64, tag = "4")]
    pub(crate) filename: i64,
    #[prost(int64, tag = "5")]
    pub(crate) start_line: i64,
}

/// The string table: index 0 is the empty string, as the format requires.
struct Strings {
    table: Vec<String>,
    index: HashMap<String, i64>,
}

impl Strings {
    fn new() -> Self {
        let mut strings = Strings {
            table: Vec::new(),
            index: HashMap::new(),
        };
        strings.get("");
        strings
    }

    fn get(&mut self, s: &str) -> i64 {
        if let Some(&i) = self.index.get(s) {
            return i;
        }
        let i = self.table.len() as i64;
        self.table.push(s.to_owned());
        self.index.insert(s.to_owned(), i);
        i
    }
}

/// Rounds an estimate to the nearest integer for pprof's `int64` values.
fn round(value: f64) -> i64 {
    // Saturating cast of a finite estimate (negative in a diff).
    value.round() as i64
}

/// Builds the `profile.proto` message for `profile`.
pub(crate) fn to_message(profile: &Profile, default: Option<SampleType>) -> PProfile {
    let mut strings = Strings::new();
    // Values follow `SampleType::ALL`'s order, pprof's for heap profiles; a heap profile
    // has the first four, a diff also the changes of the in-use values.
    let types = if profile.base.is_some() {
        &SampleType::ALL[..]
    } else {
        &SampleType::ALL[..4]
    };
    let sample_type = types
        .iter()
        .map(|t| ValueType {
            r#type: strings.get(t.name()),
            unit: strings.get(t.unit()),
        })
        .collect();
    let period_type = Some(ValueType {
        r#type: strings.get("space"),
        unit: strings.get("bytes"),
    });
    let bytes_key = strings.get("bytes");
    let task_key = strings.get("task");
    let lifetime_key = strings.get("median_lifetime");
    let nanoseconds = strings.get("nanoseconds");
    let symbolized = profile.symbolization == Symbolization::InProcess;
    let drop_frames = if symbolized {
        0
    } else {
        strings.get(&super::symbolize::allocator_frames_regex())
    };
    let default = default
        .filter(|t| types.contains(t))
        .unwrap_or(if profile.base.is_some() {
            SampleType::InuseSpaceChange
        } else {
            SampleType::default()
        });
    let default_sample_type = strings.get(default.name());

    let mapping = profile
        .mappings
        .iter()
        .enumerate()
        .map(|(i, m)| PMapping {
            id: i as u64 + 1,
            memory_start: m.start,
            memory_limit: m.limit,
            file_offset: m.offset,
            filename: strings.get(&m.file),
            build_id: strings.get(&m.build_id),
            // Offline: nothing symbolized, so pprof symbolizes these mappings.
            has_functions: symbolized,
            has_filenames: symbolized,
            has_line_numbers: symbolized,
            has_inline_frames: symbolized,
        })
        .collect();
    let function = profile
        .functions
        .iter()
        .enumerate()
        .map(|(i, f)| PFunction {
            id: i as u64 + 1,
            name: strings.get(&f.name),
            system_name: strings.get(&f.system_name),
            filename: strings.get(&f.file),
            start_line: 0,
        })
        .collect();
    let location = profile
        .locations
        .iter()
        .enumerate()
        .map(|(i, l)| PLocation {
            id: i as u64 + 1,
            mapping_id: l.mapping.map_or(0, |m| m as u64 + 1),
            // Stacks hold return addresses; pprof symbolizes the address it is given,
            // so give it the call instruction's (its last byte, as `backtrace` does).
            address: l.address.saturating_sub(1),
            line: l
                .lines
                .iter()
                .map(|&(function, line)| PLine {
                    function_id: function as u64 + 1,
                    line: i64::from(line),
                })
                .collect(),
            is_folded: false,
        })
        .collect();
    let sample = profile
        .samples
        .iter()
        .map(|s| PSample {
            location_id: profile.stacks[s.stack]
                .iter()
                .map(|&l| l as u64 + 1)
                .collect(),
            value: types.iter().map(|t| round(t.value(s))).collect(),
            label: std::iter::once(Label {
                key: bytes_key,
                str: 0,
                num: s.size as i64,
                num_unit: bytes_key,
            })
            .chain(s.task.map(|task| Label {
                key: task_key,
                str: strings.get(task),
                num: 0,
                num_unit: 0,
            }))
            .chain(s.median_lifetime.map(|lifetime| Label {
                key: lifetime_key,
                str: 0,
                num: i64::try_from(lifetime.as_nanos()).unwrap_or(i64::MAX),
                num_unit: nanoseconds,
            }))
            .collect(),
        })
        .collect();
    let mut comment = vec![strings.get(&format!(
        "memsentry heap profile; stacks walked by {}",
        profile.unwinder
    ))];
    if let Some(window) = profile.window {
        comment.push(strings.get(&format!(
            "delta profile: alloc_* are the allocations of the last {:.1} s, inuse_* what is \
             in use at its end",
            window.as_secs_f64()
        )));
    }
    if let Some(base) = profile.base {
        let earlier = profile
            .taken_at
            .duration_since(base.taken_at)
            .unwrap_or_default();
        comment.push(strings.get(&format!(
            "diff against a base taken {:.1} s earlier: alloc_* are allocations since the \
             base, inuse_* what is in use now, inuse_*_change the change since the base",
            earlier.as_secs_f64()
        )));
    }
    for line in program_comments(&profile.mappings) {
        comment.push(strings.get(&line));
    }
    let time_nanos = profile
        .taken_at
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| i64::try_from(d.as_nanos()).unwrap_or(i64::MAX));
    PProfile {
        sample_type,
        sample,
        mapping,
        location,
        function,
        string_table: strings.table,
        drop_frames,
        keep_frames: 0,
        time_nanos,
        duration_nanos: profile
            .window
            .map_or(0, |w| i64::try_from(w.as_nanos()).unwrap_or(i64::MAX)),
        period_type,
        period: i64::try_from(profile.sample_rate).unwrap_or(i64::MAX),
        comment,
        default_sample_type,
    }
}

/// The program, its version and its build ID, for profiles collected from a fleet: which
/// binary to symbolize an offline profile against (`go tool pprof BINARY PROFILE`).
fn program_comments(mappings: &[super::Mapping]) -> Vec<String> {
    let mut lines = Vec::new();
    if let Ok(exe) = std::env::current_exe() {
        let name = exe
            .file_name()
            .map_or_else(String::new, |n| n.to_string_lossy().into_owned());
        lines.push(format!("program: {name}"));
        let path = exe.to_string_lossy();
        if let Some(mapping) = mappings
            .iter()
            .find(|m| m.file == path && !m.build_id.is_empty())
        {
            lines.push(format!("build id: {}", mapping.build_id));
        }
    }
    if let Some(version) = super::program_version() {
        lines.push(format!("version: {version}"));
    }
    lines
}

/// A goroutine profile (`goroutine/count`) of the tracked tasks: one sample per task name,
/// its live instances as the value, the name as its one frame. What continuous-profiling
/// scrapers read from Go's `/debug/pprof/goroutine`.
pub(crate) fn goroutine_message(rows: &[(&str, u64)], taken_at: std::time::SystemTime) -> PProfile {
    let mut strings = Strings::new();
    let count = ValueType {
        r#type: strings.get("goroutine"),
        unit: strings.get("count"),
    };
    let mut function = Vec::new();
    let mut location = Vec::new();
    let mut sample = Vec::new();
    for (i, &(name, live)) in rows.iter().enumerate() {
        let id = i as u64 + 1;
        function.push(PFunction {
            id,
            name: strings.get(name),
            system_name: strings.get(name),
            filename: 0,
            start_line: 0,
        });
        location.push(PLocation {
            id,
            mapping_id: 0,
            address: 0,
            line: vec![PLine {
                function_id: id,
                line: 0,
            }],
            is_folded: false,
        });
        sample.push(PSample {
            location_id: vec![id],
            value: vec![i64::try_from(live).unwrap_or(i64::MAX)],
            label: Vec::new(),
        });
    }
    let comment = vec![
        strings
            .get("memsentry task profile: live instances of each #[tracked] task, as goroutines"),
    ];
    let time_nanos = taken_at
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| i64::try_from(d.as_nanos()).unwrap_or(i64::MAX));
    PProfile {
        sample_type: vec![count.clone()],
        sample,
        mapping: Vec::new(),
        location,
        function,
        drop_frames: 0,
        keep_frames: 0,
        time_nanos,
        duration_nanos: 0,
        period_type: Some(count),
        period: 1,
        comment,
        default_sample_type: 0,
        string_table: strings.table,
    }
}

/// Writes a message as gzipped `profile.proto`.
pub(crate) fn encode_message<W: Write>(message: &PProfile, writer: W) -> io::Result<()> {
    let bytes = message.encode_to_vec();
    let mut gzip = GzEncoder::new(writer, Compression::default());
    gzip.write_all(&bytes)?;
    gzip.finish()?.flush()
}

/// Writes `profile` as gzipped `profile.proto` to `writer`.
pub(crate) fn encode<W: Write>(
    profile: &Profile,
    default: Option<SampleType>,
    writer: W,
) -> io::Result<()> {
    encode_message(&to_message(profile, default), writer)
}
