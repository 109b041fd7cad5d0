//! **[C]** The process's memory cgroup, as the watchdog reads it every tick: usage against
//! the limit, and the kernel's event counters.
//!
//! | | cgroup v2 | cgroup v1 |
//! |---|---|---|
//! | usage | `memory.current` | `memory.usage_in_bytes` |
//! | limit | `memory.max` | `memory.limit_in_bytes` |
//! | limit reached | `memory.events` `max` | `memory.failcnt` |
//! | above the soft limit | `memory.events` `high` | — |
//! | OOM kills | `memory.events` `oom_kill` | `memory.oom_control` `oom_kill` |
//! | pressure (PSI) | `memory.pressure` | `/proc/pressure/memory` (the whole system) |
//!
//! The cgroup read is the one whose limit binds: of the process's cgroup and its
//! ancestors, the one with the smallest limit (the kernel compares *that* cgroup's usage
//! with its limit); the process's own cgroup where none sets a limit. Its files are opened
//! once and read with `pread` into a stack buffer: a tick allocates nothing here.

use std::fs::File;
use std::path::{Path, PathBuf};

use crate::stats;

/// Which cgroup interface the files belong to.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Version {
    V1,
    V2,
}

/// The kernel's memory event counters for the cgroup (zero where a version has none).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct MemoryEvents {
    /// Times usage went over the soft limit `memory.high` (v2 only).
    pub high: u64,
    /// Times usage reached the limit (v2 `max`, v1 `memory.failcnt`).
    pub max: u64,
    /// Processes the OOM killer killed in the cgroup (`oom_kill`).
    pub oom_kill: u64,
}

/// One tick's reading.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub(crate) struct Reading {
    pub(crate) usage: Option<u64>,
    pub(crate) limit: Option<u64>,
    pub(crate) events: MemoryEvents,
}

/// The memory cgroup whose limit binds the process, with its files open.
#[derive(Debug)]
pub(crate) struct Cgroup {
    pub(crate) version: Version,
    /// The cgroup's directory.
    pub(crate) dir: PathBuf,
    usage: File,
    limit: Option<File>,
    /// v2 `memory.events`; v1 `memory.oom_control`.
    events: Option<File>,
    /// v1 `memory.failcnt`.
    failcnt: Option<File>,
}

impl Cgroup {
    /// The process's memory cgroup, if one with a usage file is mounted and readable.
    pub(crate) fn find() -> Option<Cgroup> {
        let membership = std::fs::read_to_string("/proc/self/cgroup").ok()?;
        let mut v1 = None;
        for (v2, mount, path) in stats::memory_cgroups(&membership) {
            if v2 {
                if let Some(cgroup) = Cgroup::open(Version::V2, &mount.mount_point, path) {
                    return Some(cgroup);
                }
            } else {
                v1 = v1.or_else(|| Cgroup::open(Version::V1, &mount.mount_point, path));
            }
        }
        v1
    }

    /// The binding cgroup at or above `path` under the mount `root`.
    fn open(version: Version, root: &str, path: &str) -> Option<Cgroup> {
        let (usage_file, limit_file) = match version {
            Version::V2 => ("memory.current", "memory.max"),
            Version::V1 => ("memory.usage_in_bytes", "memory.limit_in_bytes"),
        };
        let own = Path::new(root).join(path.trim_start_matches('/'));
        // The top of a v2 hierarchy has no memory.current: no cgroup to watch there.
        if !own.join(usage_file).exists() {
            return None;
        }
        let mut binding: Option<(u64, PathBuf)> = None;
        let mut dir = own.as_path();
        loop {
            let limit = std::fs::read_to_string(dir.join(limit_file))
                .ok()
                .and_then(|text| stats::parse_limit(&text));
            if let Some(limit) = limit
                && binding
                    .as_ref()
                    .is_none_or(|(smallest, _)| limit < *smallest)
            {
                binding = Some((limit, dir.to_path_buf()));
            }
            if dir == Path::new(root) {
                break;
            }
            match dir.parent() {
                Some(parent) if parent.starts_with(root) => dir = parent,
                _ => break,
            }
        }
        let dir = binding.map_or(own, |(_, dir)| dir);
        let open = |name: &str| File::open(dir.join(name)).ok();
        Some(Cgroup {
            version,
            usage: open(usage_file)?,
            limit: open(limit_file),
            events: open(match version {
                Version::V2 => "memory.events",
                Version::V1 => "memory.oom_control",
            }),
            failcnt: match version {
                Version::V2 => None,
                Version::V1 => open("memory.failcnt"),
            },
            dir,
        })
    }

    /// Usage, limit and events now. Allocates nothing.
    pub(crate) fn read(&self) -> Reading {
        let mut buffer = [0u8; 1024];
        let number = |file: &File, buffer: &mut [u8]| -> Option<u64> {
            stats::read_whole(file, buffer).and_then(|text| text.trim().parse().ok())
        };
        let usage = number(&self.usage, &mut buffer);
        let limit = self
            .limit
            .as_ref()
            .and_then(|file| stats::read_whole(file, &mut buffer).and_then(stats::parse_limit));
        let mut events = self
            .events
            .as_ref()
            .and_then(|file| stats::read_whole(file, &mut buffer))
            .map(parse_events)
            .unwrap_or_default();
        if let Some(failcnt) = self.failcnt.as_ref().and_then(|f| number(f, &mut buffer)) {
            events.max = failcnt;
        }
        Reading {
            usage,
            limit,
            events,
        }
    }

    /// The files to keep beside a dump: (suffix, path).
    pub(crate) fn evidence(&self) -> [(&'static str, PathBuf); 2] {
        [
            (".memory.stat", self.dir.join("memory.stat")),
            (
                ".memory.events",
                self.dir.join(match self.version {
                    Version::V2 => "memory.events",
                    Version::V1 => "memory.oom_control",
                }),
            ),
        ]
    }

    /// The cgroup's own PSI file (v2), or the system's (v1, where cgroups have none).
    pub(crate) fn pressure_file(&self) -> PathBuf {
        match self.version {
            Version::V2 => self.dir.join("memory.pressure"),
            Version::V1 => PathBuf::from("/proc/pressure/memory"),
        }
    }

    pub(crate) fn describe(&self) -> String {
        let version = match self.version {
            Version::V1 => "v1",
            Version::V2 => "v2",
        };
        format!("cgroup {version} {}", self.dir.display())
    }
}

/// `memory.events` (`high N`, `max N`, `oom_kill N`, …) or v1's `memory.oom_control`
/// (`oom_kill N`); unknown keys are ignored.
pub(crate) fn parse_events(text: &str) -> MemoryEvents {
    let mut events = MemoryEvents::default();
    for line in text.lines() {
        let mut words = line.split_ascii_whitespace();
        let (Some(key), Some(value)) = (words.next(), words.next()) else {
            continue;
        };
        let Ok(value) = value.parse() else {
            continue;
        };
        match key {
            "high" => events.high = value,
            "max" => events.max = value,
            "oom_kill" => events.oom_kill = value,
            _ => {}
        }
    }
    events
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn events_of_both_versions() {
        let v2 = "low 0\nhigh 12\nmax 3\noom 1\noom_kill 1\noom_group_kill 0\n";
        assert_eq!(
            parse_events(v2),
            MemoryEvents {
                high: 12,
                max: 3,
                oom_kill: 1
            }
        );
        let v1 = "oom_kill_disable 0\nunder_oom 0\noom_kill 2\n";
        assert_eq!(parse_events(v1).oom_kill, 2);
        assert_eq!(parse_events("garbage\nhigh x\n"), MemoryEvents::default());
    }
}
