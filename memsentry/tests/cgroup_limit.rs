//! `Snapshot::memory_limit_bytes` reads the limit the kernel enforces: this test puts a
//! child process (this test binary again) in a fresh memory cgroup with a 256 MiB limit
//! and checks that the child's snapshot reports exactly that.
//!
//! Creating a cgroup needs root and a writable cgroup file system (v1 memory controller
//! or v2 with the memory controller available). Without them the test says so and
//! passes, unless `REQUIRE_CGROUP_TEST=1` (set by `scripts/test.sh`, which CI
//! runs as root) makes that a failure.

// `memsentry/clippy.toml` bans allocating types for the allocator's hot path; tests are not.
#![allow(clippy::disallowed_types, clippy::disallowed_macros)]

use std::path::{Path, PathBuf};
use std::process::Command;

use memsentry::MemSentry;

#[global_allocator]
static GLOBAL: MemSentry = MemSentry::new();

const LIMIT: u64 = 256 << 20;

/// A cgroup this test made, removed on drop (after the child that lived in it exited).
struct Cgroup {
    dir: PathBuf,
    procs: PathBuf,
}

impl Cgroup {
    /// A new memory cgroup limited to `limit` bytes, or why one cannot be made here.
    fn create(limit: u64) -> Result<Cgroup, String> {
        let name = format!("memsentry-test-{}", std::process::id());
        let v1 = Path::new("/sys/fs/cgroup/memory");
        let v2 = Path::new("/sys/fs/cgroup");
        let (dir, limit_file) = if v1.join("memory.limit_in_bytes").exists() {
            (v1.join(&name), "memory.limit_in_bytes")
        } else if v2.join("cgroup.controllers").exists() {
            // The memory controller must be enabled for the root's children.
            let control = v2.join("cgroup.subtree_control");
            let enabled = std::fs::read_to_string(&control).unwrap_or_default();
            if !enabled.split_whitespace().any(|c| c == "memory") {
                std::fs::write(&control, "+memory")
                    .map_err(|e| format!("enabling the memory controller: {e}"))?;
            }
            (v2.join(&name), "memory.max")
        } else {
            return Err("no cgroup memory controller under /sys/fs/cgroup".into());
        };
        std::fs::create_dir(&dir).map_err(|e| format!("creating {}: {e}", dir.display()))?;
        let cgroup = Cgroup {
            procs: dir.join("cgroup.procs"),
            dir,
        };
        let file = cgroup.dir.join(limit_file);
        std::fs::write(&file, limit.to_string())
            .map_err(|e| format!("writing {}: {e}", file.display()))?;
        Ok(cgroup)
    }
}

impl Drop for Cgroup {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir(&self.dir);
    }
}

#[test]
fn snapshot_reports_the_cgroup_memory_limit() {
    let cgroup = match Cgroup::create(LIMIT) {
        Ok(cgroup) => cgroup,
        Err(why) => {
            let required = std::env::var_os("REQUIRE_CGROUP_TEST").is_some();
            assert!(!required, "cannot set up the cgroup test: {why}");
            eprintln!("skipped: cannot set up a memory cgroup ({why}); run as root to test");
            return;
        }
    };
    // The shell joins the cgroup, then becomes the child test.
    let output = Command::new("sh")
        .args([
            "-c",
            "echo $$ > \"$1\" && shift && exec \"$@\"",
            "sh",
            cgroup.procs.to_str().unwrap(),
            std::env::current_exe().unwrap().to_str().unwrap(),
            "child_prints_its_limit",
            "--exact",
            "--ignored",
            "--nocapture",
        ])
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&output.stdout);
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(output.status.success(), "child failed:\n{stdout}\n{stderr}");
    assert!(
        stdout.contains(&format!("limit={LIMIT}\n")),
        "the child in a {LIMIT}-byte cgroup reported:\n{stdout}\n{stderr}"
    );
    assert!(
        stdout.contains("cgroup memory limit 256.0 MiB"),
        "Display shows the limit:\n{stdout}"
    );
}

/// Run by the test above inside the limited cgroup.
#[test]
#[ignore = "run as a child process by snapshot_reports_the_cgroup_memory_limit"]
fn child_prints_its_limit() {
    let snapshot = memsentry::snapshot();
    let limit = snapshot
        .memory_limit_bytes
        .map_or_else(|| "none".to_owned(), |l| l.to_string());
    println!("limit={limit}");
    println!("{snapshot}");
}
