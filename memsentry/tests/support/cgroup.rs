//! A memory cgroup made for one test, and a child process run inside it. Shared by the
//! tests that need the kernel to enforce a limit (`#[path]`-included: each test file is
//! its own crate).
//!
//! Creating a cgroup needs root and a writable cgroup file system (the v1 memory
//! controller, or v2 with the memory controller available). Without them [`Cgroup::create`]
//! says why, and the test skips, unless `REQUIRE_CGROUP_TEST=1` (set by
//! `scripts/test.sh`, which CI runs as root) makes that a failure.

// Each test file uses what it needs of this module.
#![allow(dead_code)]

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};

/// A cgroup this test made, removed on drop (after the child that lived in it exited).
pub(crate) struct Cgroup {
    pub(crate) dir: PathBuf,
    v2: bool,
}

impl Cgroup {
    /// A new memory cgroup named after `test`, limited to `limit` bytes with no swap, or
    /// why one cannot be made here.
    pub(crate) fn create(test: &str, limit: u64) -> Result<Cgroup, String> {
        let name = format!("memsentry-{test}-{}", std::process::id());
        let v1 = Path::new("/sys/fs/cgroup/memory");
        let v2 = Path::new("/sys/fs/cgroup");
        let (dir, is_v2) = if v1.join("memory.limit_in_bytes").exists() {
            (v1.join(&name), false)
        } else if v2.join("cgroup.controllers").exists() {
            // The memory controller must be enabled for the root's children.
            let control = v2.join("cgroup.subtree_control");
            let enabled = std::fs::read_to_string(&control).unwrap_or_default();
            if !enabled.split_whitespace().any(|c| c == "memory") {
                std::fs::write(&control, "+memory")
                    .map_err(|e| format!("enabling the memory controller: {e}"))?;
            }
            (v2.join(&name), true)
        } else {
            return Err("no cgroup memory controller under /sys/fs/cgroup".into());
        };
        std::fs::create_dir(&dir).map_err(|e| format!("creating {}: {e}", dir.display()))?;
        let cgroup = Cgroup { dir, v2: is_v2 };
        let (limit_file, swap_file) = if is_v2 {
            ("memory.max", "memory.swap.max")
        } else {
            // v1 limits memory + swap together; it must not be below the memory limit.
            ("memory.limit_in_bytes", "memory.memsw.limit_in_bytes")
        };
        cgroup.write(limit_file, &limit.to_string())?;
        let swap = if is_v2 {
            "0".to_owned()
        } else {
            limit.to_string()
        };
        // Not every kernel accounts swap; without swap there is none to limit anyway.
        if cgroup.dir.join(swap_file).exists() {
            cgroup.write(swap_file, &swap)?;
        }
        Ok(cgroup)
    }

    fn write(&self, file: &str, value: &str) -> Result<(), String> {
        let path = self.dir.join(file);
        std::fs::write(&path, value).map_err(|e| format!("writing {}: {e}", path.display()))
    }

    /// Runs this test binary's test `child` inside the cgroup, its output piped.
    pub(crate) fn spawn_test(&self, child: &str, env: &[(&str, &str)]) -> Child {
        Command::new("sh")
            .args([
                "-c",
                "echo $$ > \"$1\" && shift && exec \"$@\"",
                "sh",
                self.dir.join("cgroup.procs").to_str().unwrap(),
                std::env::current_exe().unwrap().to_str().unwrap(),
                child,
                "--exact",
                "--ignored",
                "--nocapture",
            ])
            .envs(env.iter().copied())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap()
    }

    /// The processes the OOM killer killed in the cgroup.
    pub(crate) fn oom_kills(&self) -> u64 {
        let file = if self.v2 {
            "memory.events"
        } else {
            "memory.oom_control"
        };
        std::fs::read_to_string(self.dir.join(file))
            .unwrap_or_default()
            .lines()
            .find_map(|line| line.strip_prefix("oom_kill "))
            .and_then(|n| n.trim().parse().ok())
            .unwrap_or(0)
    }
}

impl Drop for Cgroup {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir(&self.dir);
    }
}

/// The cgroup, or `None` after saying why the test skips (a failure where
/// `REQUIRE_CGROUP_TEST` is set).
pub(crate) fn create_or_skip(test: &str, limit: u64) -> Option<Cgroup> {
    match Cgroup::create(test, limit) {
        Ok(cgroup) => Some(cgroup),
        Err(why) => {
            let required = std::env::var_os("REQUIRE_CGROUP_TEST").is_some();
            assert!(!required, "cannot set up the cgroup test: {why}");
            eprintln!("skipped: cannot set up a memory cgroup ({why}); run as root to test");
            None
        }
    }
}
