//! **[S]** The buffer a stack walk fills.

use core::mem::MaybeUninit;

/// Deepest stack captured (frames past it are dropped; the leaf side is kept).
pub(crate) const MAX_FRAMES: usize = 64;

/// Up to [`MAX_FRAMES`] return addresses, leaf first: a buffer on the sampler's stack
/// that is never zeroed (a walk fills a dozen of its slots; zeroing all 512 bytes would
/// cost ~8% of a sample's time).
pub(crate) struct Frames {
    ips: [MaybeUninit<usize>; MAX_FRAMES],
    /// The first `len` entries of `ips` are written; `len <= MAX_FRAMES`.
    len: usize,
}

impl Frames {
    pub(crate) const fn new() -> Frames {
        Frames {
            ips: [const { MaybeUninit::uninit() }; MAX_FRAMES],
            len: 0,
        }
    }

    /// Appends `ip` if there is room; `false` once the buffer is full (with or without it).
    #[inline(always)]
    pub(crate) fn push(&mut self, ip: usize) -> bool {
        if let Some(slot) = self.ips.get_mut(self.len) {
            slot.write(ip);
            self.len += 1;
        }
        self.len < MAX_FRAMES
    }

    /// How many addresses it holds.
    pub(crate) fn len(&self) -> usize {
        self.len
    }

    /// Whether it holds none.
    pub(crate) fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// Keeps the first `len` addresses (all, if it holds fewer).
    pub(crate) fn truncate(&mut self, len: usize) {
        self.len = self.len.min(len);
    }

    /// Forgets every address.
    pub(crate) fn clear(&mut self) {
        self.len = 0;
    }

    /// The addresses captured.
    pub(crate) fn as_slice(&self) -> &[usize] {
        // SAFETY: `push` writes an entry before `len` counts it, and `len` only ever grows
        // that way, up to MAX_FRAMES (`truncate` and `clear` only lower it): the first
        // `len` entries are initialised `usize`s (`MaybeUninit<usize>` has `usize`'s
        // layout).
        unsafe { core::slice::from_raw_parts(self.ips.as_ptr().cast::<usize>(), self.len) }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn frames_keep_what_was_pushed_up_to_their_capacity() {
        let mut frames = Frames::new();
        assert!(frames.as_slice().is_empty());
        for ip in 1..MAX_FRAMES {
            assert!(frames.push(ip), "room left after {ip}");
        }
        assert!(!frames.push(MAX_FRAMES), "the last one fills it");
        assert!(!frames.push(usize::MAX), "full: dropped");
        let expected: Vec<usize> = (1..=MAX_FRAMES).collect();
        assert_eq!(frames.as_slice(), expected.as_slice());
    }
}
