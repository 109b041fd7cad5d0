//! **[S]** [`SpinLock`]: the sampler's table locks.
//!
//! The sampled path holds a lock for a hash-table operation (well under a microsecond,
//! an allocation at most, made under the sampler's guard), so a spin lock fits: taking an
//! uncontended one is a single compare-and-swap, and releasing it a plain `Release` store,
//! where `std::sync::Mutex` pays a second atomic read-modify-write to release and a
//! sharded `DashMap` two per operation. Each one costs the sampled path a store-buffer
//! drain.
//!
//! A waiter spins, and yields its time slice every 64 tries so that a holder preempted
//! on the same core gets to run. Nothing is ever held across a wait for anything else.
//!
//! Each thread counts the spin locks it holds ([`held_by_this_thread`]): a free that
//! reaches the sampler's tables while its thread holds one of their locks (the tables
//! freeing their own memory) must not take a lock again, which could be that very one.

use core::cell::{Cell, UnsafeCell};
use core::ops::{Deref, DerefMut};
use core::sync::atomic::{AtomicBool, Ordering};

/// A value behind a spin lock.
#[derive(Debug, Default)]
pub(crate) struct SpinLock<T> {
    locked: AtomicBool,
    value: UnsafeCell<T>,
}

// SAFETY: the lock hands out access to `value` to one thread at a time (`lock` returns
// only after its compare-and-swap took the flag from false to true, and the guard clears
// it when dropped), so sharing a `SpinLock<T>` shares `T` only by moving access between
// threads: `T: Send` is what that needs, as for `std::sync::Mutex`.
unsafe impl<T: Send> Sync for SpinLock<T> {}

thread_local! {
    /// Spin locks this thread holds. `const`, no destructor: usable until the thread ends.
    static HELD: Cell<u32> = const { Cell::new(0) };
}

/// Whether this thread holds a [`SpinLock`].
pub(crate) fn held_by_this_thread() -> bool {
    HELD.try_with(Cell::get).is_ok_and(|held| held != 0)
}

impl<T> SpinLock<T> {
    pub(crate) const fn new(value: T) -> Self {
        Self {
            locked: AtomicBool::new(false),
            value: UnsafeCell::new(value),
        }
    }

    /// Takes the lock, spinning (and now and then yielding) while another thread holds it.
    pub(crate) fn lock(&self) -> SpinGuard<'_, T> {
        self.acquire();
        let _ = HELD.try_with(|held| held.set(held.get().wrapping_add(1)));
        SpinGuard { lock: self }
    }

    /// Takes the lock for a `fork` (`crate::fork`): as [`lock`](Self::lock), but without a
    /// guard and without counting it in [`held_by_this_thread`]: it stays taken until
    /// [`unlock_after_fork`](Self::unlock_after_fork), in the parent and in the child.
    pub(crate) fn lock_for_fork(&self) {
        self.acquire();
    }

    /// Releases a lock taken by [`lock_for_fork`](Self::lock_for_fork).
    ///
    /// # Safety
    ///
    /// This thread took the lock with `lock_for_fork` (in a forked child: the thread that
    /// called `fork` took it before the call), and has not released it since.
    pub(crate) unsafe fn unlock_after_fork(&self) {
        self.locked.store(false, Ordering::Release);
    }

    #[inline(always)]
    fn acquire(&self) {
        let mut tries = 0u32;
        while self
            .locked
            .compare_exchange_weak(false, true, Ordering::Acquire, Ordering::Relaxed)
            .is_err()
        {
            // Wait for a release before trying again: spinning on a plain load keeps
            // the line shared instead of bouncing it between the waiters.
            while self.locked.load(Ordering::Relaxed) {
                tries = tries.wrapping_add(1);
                if tries.is_multiple_of(64) {
                    std::thread::yield_now();
                } else {
                    core::hint::spin_loop();
                }
            }
        }
    }
}

/// Access to a [`SpinLock`]'s value; the lock is released when it is dropped.
pub(crate) struct SpinGuard<'a, T> {
    lock: &'a SpinLock<T>,
}

impl<T> Deref for SpinGuard<'_, T> {
    type Target = T;

    fn deref(&self) -> &T {
        // SAFETY: the guard exists only while its thread holds the lock, so no other
        // reference to the value exists (see the `Sync` impl).
        unsafe { &*self.lock.value.get() }
    }
}

impl<T> DerefMut for SpinGuard<'_, T> {
    fn deref_mut(&mut self) -> &mut T {
        // SAFETY: as in `deref`; `&mut self` makes this the guard's only live borrow.
        unsafe { &mut *self.lock.value.get() }
    }
}

impl<T> Drop for SpinGuard<'_, T> {
    fn drop(&mut self) {
        self.lock.locked.store(false, Ordering::Release);
        let _ = HELD.try_with(|held| held.set(held.get().wrapping_sub(1)));
    }
}

#[cfg(test)]
mod tests {
    use super::SpinLock;

    #[test]
    fn excludes_other_threads() {
        // Non-atomic read-modify-writes under the lock from four threads: any overlap of
        // two critical sections would lose increments.
        let lock = SpinLock::new(0u64);
        std::thread::scope(|scope| {
            for _ in 0..4 {
                scope.spawn(|| {
                    for _ in 0..50_000 {
                        let mut value = lock.lock();
                        let seen = *value;
                        std::hint::black_box(&mut *value);
                        *value = seen + 1;
                    }
                });
            }
        });
        assert_eq!(*lock.lock(), 200_000);
    }

    #[test]
    fn counts_the_locks_this_thread_holds() {
        let (a, b) = (SpinLock::new(()), SpinLock::new(()));
        assert!(!super::held_by_this_thread());
        let first = a.lock();
        let second = b.lock();
        std::thread::scope(|scope| {
            scope.spawn(|| assert!(!super::held_by_this_thread(), "another thread's"));
        });
        drop(first);
        assert!(super::held_by_this_thread());
        drop(second);
        assert!(!super::held_by_this_thread());
    }
}
