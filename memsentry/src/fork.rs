//! **[S]** `fork` safety: the child of a `fork` can allocate, sample and free, as it can
//! with jemalloc or glibc's malloc alone.
//!
//! `fork` copies the calling thread only. A sampler table lock that another thread held
//! at that moment would stay taken in the child for ever, and the child's first sample,
//! or free of a sampled block, of that shard would spin on it. So memsentry registers
//! `pthread_atfork` handlers, as jemalloc does for its own locks: before the fork, the
//! forking thread takes every table lock (waiting for the operations in flight to end, so
//! the child gets the tables in a consistent state); after it, the parent and the child
//! release them. The child also gives back the counter slots of the parent's other
//! threads, which it does not have.
//!
//! Order matters. The allocator is called with a table lock held (a table growing), so
//! our locks are taken before the inner allocator's: `fork` runs the prepare handlers in
//! the reverse order of registration, so ours are registered after the inner allocator's,
//! which jemalloc registers when it initialises, on its first allocation. Registration
//! happens once, on the allocator's general path before a thread claims its counter slot,
//! which follows the process's first allocation (`hot::count_general`). (glibc's malloc
//! takes its own locks after every handler.)
//!
//! `vfork` and `posix_spawn` (which `std::process::Command` uses) run no handlers: the
//! child shares or replaces the parent's memory, and nothing here is needed. A `fork`
//! from a signal handler that interrupted its own thread inside the sampler would wait
//! for a lock that thread holds, as glibc's malloc would for its arena locks: POSIX no
//! longer counts `fork` as async-signal-safe (`_Fork`, which runs no handlers, is).

use core::sync::atomic::{AtomicBool, Ordering};

static REGISTERED: AtomicBool = AtomicBool::new(false);

/// Registers the handlers, once per process (a relaxed load after the first call).
/// Called from the allocator's general path; `pthread_atfork` allocates with glibc's
/// `malloc`, not with ours, so it does not recurse. A failure (out of memory) leaves
/// `fork` as it was without memsentry's help: nothing to report from inside the
/// allocator.
pub(crate) fn register_handlers() {
    if REGISTERED.load(Ordering::Relaxed) || REGISTERED.swap(true, Ordering::AcqRel) {
        return;
    }
    // SAFETY: the handlers are `extern "C"` functions that neither unwind nor allocate;
    // `pthread_atfork` only stores the three pointers.
    let _ = unsafe { libc::pthread_atfork(Some(prepare), Some(parent), Some(child)) };
}

/// Before `fork`, in the forking thread: takes every sampler table lock.
extern "C" fn prepare() {
    crate::sampler::lock_all_for_fork();
}

/// After `fork`, in the parent.
extern "C" fn parent() {
    // SAFETY: `prepare` took every lock on this thread, just before the fork.
    unsafe { crate::sampler::unlock_all_after_fork() };
}

/// After `fork`, in the child (which runs the thread that called `fork`, alone).
extern "C" fn child() {
    // SAFETY: `prepare` took every lock on this thread before the fork; the child's copy
    // of them is this thread's.
    unsafe { crate::sampler::unlock_all_after_fork() };
    crate::hot::counters::release_slots_of_other_threads();
}
