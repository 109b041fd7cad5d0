//! **[H]** Turning bookkeeping on and off: the switch (`switch`) written and mirrored in
//! the counters' gates, and `MEMSENTRY*` read from the environment once.
//!
//! The switch is mirrored in the *gate* of every counter slot (see `counters`): the fast
//! path never reads the switch itself, only the gate of the thread's own slot, in the
//! compare it makes anyway ("is the request small enough to count fast?"). Every write of
//! the switch closes or opens those gates (here). When a call does not pass the gate, the
//! allocator loads the switch (`Relaxed`): when bookkeeping is off, that load and a
//! compare, after the gate's, are all it adds to jemalloc.
//!
//! The environment is read lazily, on the first allocation, *inside* the allocator: it
//! scans the C `environ` array and writes any warning with `write(2)`, so it neither
//! allocates nor takes a lock (`std::env` does both).

use super::switch::{self, State};
use crate::config::{self, EnvVar};

/// Whether bookkeeping is on. The first call reads the environment.
#[inline(always)]
pub(crate) fn active() -> bool {
    match switch::state() {
        State::On => true,
        State::Off => false,
        State::Unread | State::Reading => init(),
    }
}

/// Turns bookkeeping on or off at run time (overrides `MEMSENTRY`).
pub(crate) fn set_active(on: bool) {
    // Make sure a later first allocation does not apply the environment over this call.
    let _ = active();
    settle(false, on);
}

/// Stores `on` in the switch, if it is being read from the environment (`from_reading`)
/// or in any case, and publishes the switch to the counters' gates.
///
/// No lock: concurrent writers may publish in any order, so each publishes what it reads
/// from the switch and reads it again after, publishing again until the two agree. All
/// `SeqCst`: a writer whose second read does not see the last switch write stored its
/// gates before that write, hence before the last writer stored its own (see
/// `counters::sync_gate` for the same argument with a claim). Called from the allocator
/// (the first allocation's [`init`]) and from user code; it neither allocates nor waits.
fn settle(from_reading: bool, on: bool) {
    if from_reading {
        if !switch::finish_reading(on) {
            // Someone set the switch meanwhile: their write stands, and they publish it.
            return;
        }
    } else {
        switch::set(on);
    }
    let mut published = switch::is_on_seq_cst();
    loop {
        super::counters::publish_gates(published);
        let now = switch::is_on_seq_cst();
        if now == published {
            return;
        }
        published = now;
    }
}

#[cold]
#[inline(never)]
fn init() -> bool {
    if !switch::start_reading() {
        // Another thread is reading the environment (or a nested allocation of ours):
        // count meanwhile. Counting an allocation that turns out to be in "off" mode is
        // harmless; not counting one in "on" mode would lose it.
        return !switch::is_off();
    }
    let on = environment_says_on();
    // Only if nobody called `set_active` meanwhile.
    settle(true, on);
    !switch::is_off()
}

/// Scans `environ` for `MEMSENTRY*` variables: the value of `MEMSENTRY` decides; anything
/// not understood is reported once on stderr and ignored.
fn environment_says_on() -> bool {
    let mut on = true;
    for_each_memsentry_var(|name, value| match config::classify(name, value) {
        EnvVar::Switch(value) => on = value,
        EnvVar::BadSwitch => warn(&[
            b"memsentry: MEMSENTRY=\"",
            config::clip(value),
            b"\" is not understood (expected on or off): bookkeeping stays on\n",
        ]),
        EnvVar::SampleRate(rate) => super::sampler::set_rate(rate),
        EnvVar::BadSampleRate => warn(&[
            b"memsentry: MEMSENTRY_SAMPLE_RATE=\"",
            config::clip(value),
            b"\" is not a byte count (expected e.g. 524288, 512KiB, 1MiB, 0 = off): \
              keeping the default, 512KiB\n",
        ]),
        EnvVar::ReadLater => {}
        EnvVar::Unknown => warn(&[
            b"memsentry: ignoring unknown environment variable ",
            config::clip(name),
            b" (known: ",
            config::KNOWN_VARS_TEXT,
            b")\n",
        ]),
    });
    on
}

unsafe extern "C" {
    /// The process environment (POSIX `environ`, `<unistd.h>`): a null-terminated array
    /// of `NAME=value` C strings.
    static environ: *const *const libc::c_char;
}

/// Calls `f(name, value)` for each environment entry whose name starts with `MEMSENTRY`.
fn for_each_memsentry_var(mut f: impl FnMut(&[u8], &[u8])) {
    // SAFETY: `environ` is initialised by the C runtime before any Rust code runs. It may
    // be replaced by `setenv`, which Rust exposes only as `unsafe fn set_var` whose
    // contract forbids concurrent readers; we read it once, at the first allocation.
    let mut entry = unsafe { environ };
    if entry.is_null() {
        return;
    }
    loop {
        // SAFETY: `entry` points into the null-terminated `environ` array: we stop at the
        // null pointer, so every `entry` read here is in bounds.
        let item = unsafe { *entry };
        if item.is_null() {
            return;
        }
        // SAFETY: each non-null entry is a NUL-terminated C string owned by the C runtime,
        // alive for the duration of this scan (see the contract above).
        let bytes = unsafe { core::ffi::CStr::from_ptr(item) }.to_bytes();
        if bytes.starts_with(config::PREFIX) {
            let split = bytes.iter().position(|&b| b == b'=').unwrap_or(bytes.len());
            let (name, rest) = bytes.split_at(split);
            f(name, rest.get(1..).unwrap_or_default());
        }
        // SAFETY: `item` was not the terminator, so the next element is still in the array.
        entry = unsafe { entry.add(1) };
    }
}

/// Writes `parts` to stderr with `write(2)`: no allocation, no lock, errors ignored.
fn warn(parts: &[&[u8]]) {
    for part in parts {
        let mut rest = *part;
        while !rest.is_empty() {
            // SAFETY: `rest` is a valid, initialised byte slice for the whole call.
            let written = unsafe { libc::write(2, rest.as_ptr().cast(), rest.len()) };
            let Ok(written) = usize::try_from(written) else {
                return;
            };
            if written == 0 {
                return;
            }
            rest = rest.get(written..).unwrap_or_default();
        }
    }
}
