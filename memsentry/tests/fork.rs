//! `fork` while other threads are inside the sampler: the child's allocator works, as
//! jemalloc's and glibc's do. Two threads allocate and free at rate 1 (every block
//! sampled, so they hold the sampler's table locks much of the time) while the main
//! thread forks again and again; each child allocates and frees sampled blocks, spawns a
//! thread that does the same, checks the counters and that the parent's other threads'
//! counter slots were given back, and exits. A child that hangs (a table
//! lock held forever by a thread that does not exist in the child) or crashes fails the
//! test, which kills it.
//!
//! Its own binary, without the test harness: a process that forks should have no threads
//! but its own.

#![allow(clippy::disallowed_types, clippy::disallowed_macros)]

use std::hint::black_box;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use memsentry::MemSentry;
use memsentry::profile;

#[global_allocator]
static GLOBAL: MemSentry = MemSentry::new();

const FORKS: usize = 100;
/// Rounds of [`churn`] in each of a child's three steps.
const CHILD_ROUNDS: usize = 10;
/// How long a child may take before it counts as hung.
const CHILD_LIMIT: Duration = Duration::from_secs(10);

/// Exit codes of a child.
const CHILD_OK: i32 = 0;
const CHILD_BAD_COUNTS: i32 = 3;
const CHILD_THREAD_FAILED: i32 = 4;
const CHILD_SLOTS_KEPT: i32 = 5;

/// Allocates and frees sampled blocks of several sizes (placed and not), with reallocs.
#[inline(never)]
fn churn(rounds: usize) {
    for round in 0..rounds {
        let mut blocks: Vec<Vec<u8>> = (0..16).map(|i| vec![1u8; 24 + i * 100]).collect();
        blocks.push(vec![2u8; 20_000 + round]);
        for block in &mut blocks {
            block.extend_from_slice(&[3u8; 50]);
        }
        black_box(&blocks);
    }
}

/// What a child runs; returns its exit code. Must not return into the parent's code.
fn child() -> i32 {
    // Only the forking thread exists here: the parent's other threads' counter slots
    // were given back.
    if memsentry::__owned_slots() != 1 {
        return CHILD_SLOTS_KEPT;
    }
    churn(CHILD_ROUNDS);
    let before = memsentry::totals();
    let Ok(handle) = std::thread::Builder::new().spawn(|| churn(CHILD_ROUNDS)) else {
        return CHILD_THREAD_FAILED;
    };
    if handle.join().is_err() {
        return CHILD_THREAD_FAILED;
    }
    churn(CHILD_ROUNDS);
    let counts = memsentry::totals().since(&before);
    // Two calls since `before`, 17 blocks a round, each allocated, grown and freed.
    let least = 2 * CHILD_ROUNDS as u64 * 17;
    if counts.allocations < least || counts.frees < least {
        return CHILD_BAD_COUNTS;
    }
    CHILD_OK
}

/// Waits for `pid` up to [`CHILD_LIMIT`]; kills it and says why if it hangs.
fn wait_for(pid: libc::pid_t) -> Result<(), String> {
    let start = Instant::now();
    loop {
        let mut status = 0;
        // SAFETY: `pid` is a child of this process; `status` is a valid out-pointer.
        let done = unsafe { libc::waitpid(pid, &mut status, libc::WNOHANG) };
        if done == pid {
            if libc::WIFEXITED(status) && libc::WEXITSTATUS(status) == CHILD_OK {
                return Ok(());
            }
            return Err(format!("child {pid} ended with status {status:#x}"));
        }
        if done < 0 {
            return Err(format!(
                "waitpid({pid}): {}",
                std::io::Error::last_os_error()
            ));
        }
        if start.elapsed() > CHILD_LIMIT {
            // SAFETY: plain syscalls on our own child.
            unsafe {
                libc::kill(pid, libc::SIGKILL);
                libc::waitpid(pid, &mut status, 0);
            }
            return Err(format!(
                "child {pid} hung for {CHILD_LIMIT:?} (a sampler lock held across fork?)"
            ));
        }
        std::thread::sleep(Duration::from_millis(2));
    }
}

fn main() {
    profile::set_sample_rate(1);
    let stop = AtomicBool::new(false);
    let failures = std::thread::scope(|scope| {
        for _ in 0..2 {
            scope.spawn(|| {
                while !stop.load(Ordering::Relaxed) {
                    churn(1);
                }
            });
        }
        let mut failures = Vec::new();
        for _ in 0..FORKS {
            // SAFETY: the child runs only `child` (allocation, a thread, the counters:
            // what this test is about) and leaves with `_exit`, never returning here.
            let pid = unsafe { libc::fork() };
            if pid == 0 {
                let code = child();
                // SAFETY: ends the child without running the parent's exit handlers.
                unsafe { libc::_exit(code) };
            }
            assert!(pid > 0, "fork: {}", std::io::Error::last_os_error());
            if let Err(why) = wait_for(pid) {
                failures.push(why);
                if failures.len() >= 3 {
                    break;
                }
            }
        }
        stop.store(true, Ordering::Relaxed);
        failures
    });
    assert!(
        failures.is_empty(),
        "{} of {FORKS} children failed:\n{}",
        failures.len(),
        failures.join("\n")
    );
    println!("fork: {FORKS} children allocated, sampled and exited");
}
