//! **[H]** The global on/off switch of bookkeeping: one byte, read by the paths that miss
//! the fast path's gate. Written only through `control`, which mirrors it in the
//! counters' gates and reads the environment before the first answer.

use core::sync::atomic::{AtomicU8, Ordering};

const UNREAD: u8 = 0;
const READING: u8 = 1;
const ON: u8 = 2;
const OFF: u8 = 3;

static SWITCH: AtomicU8 = AtomicU8::new(UNREAD);

/// What the switch holds.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum State {
    /// The environment not read yet (before the process's first allocation).
    Unread,
    /// The environment being read, by the first allocation.
    Reading,
    On,
    Off,
}

/// What the switch holds now (`Relaxed`).
#[inline(always)]
pub(crate) fn state() -> State {
    match SWITCH.load(Ordering::Relaxed) {
        UNREAD => State::Unread,
        READING => State::Reading,
        ON => State::On,
        _ => State::Off,
    }
}

/// Whether bookkeeping is known to be off (`Relaxed`; `false` before the environment is
/// read).
#[inline(always)]
pub(crate) fn is_off() -> bool {
    SWITCH.load(Ordering::Relaxed) == OFF
}

/// Whether bookkeeping is on (`false` also before the environment was read), `SeqCst`:
/// for the gate handshake (`counters::sync_gate`, `control::settle`).
pub(crate) fn is_on_seq_cst() -> bool {
    SWITCH.load(Ordering::SeqCst) == ON
}

/// Marks the environment as being read; `false` if it is read already or by another.
pub(crate) fn start_reading() -> bool {
    SWITCH
        .compare_exchange(UNREAD, READING, Ordering::Relaxed, Ordering::Relaxed)
        .is_ok()
}

/// Stores what the environment said, unless the switch was set meanwhile (`false`).
pub(crate) fn finish_reading(on: bool) -> bool {
    SWITCH
        .compare_exchange(READING, value(on), Ordering::SeqCst, Ordering::SeqCst)
        .is_ok()
}

/// Stores `on`.
pub(crate) fn set(on: bool) {
    SWITCH.store(value(on), Ordering::SeqCst);
}

const fn value(on: bool) -> u8 {
    if on { ON } else { OFF }
}
