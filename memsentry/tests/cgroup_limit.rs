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

use memsentry::MemSentry;

#[path = "support/cgroup.rs"]
mod cgroup;

#[global_allocator]
static GLOBAL: MemSentry = MemSentry::new();

const LIMIT: u64 = 256 << 20;

#[test]
fn snapshot_reports_the_cgroup_memory_limit() {
    let Some(cgroup) = cgroup::create_or_skip("limit", LIMIT) else {
        return;
    };
    let output = cgroup
        .spawn_test("child_prints_its_limit", &[])
        .wait_with_output()
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
