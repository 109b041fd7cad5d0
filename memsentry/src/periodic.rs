//! **[C]** [`Periodic`]: a named thread that does one piece of work every interval
//! until its handle is dropped (the reporter's publishing, the leak tracker's
//! observations).
//!
//! Stopping does not wait out the interval: the thread sleeps on a condition variable
//! that the handle's `Drop` signals, and the handle then joins the thread, so at most
//! the piece of work in progress finishes after a stop.

use std::sync::{Arc, Condvar, Mutex, PoisonError};
use std::thread::JoinHandle;
use std::time::Duration;

/// When the first piece of work runs.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum First {
    /// As soon as the thread starts.
    AtOnce,
    /// One interval after the thread starts.
    AfterInterval,
}

/// The stop flag and the condition variable that wakes the thread when it is set.
type Stop = (Mutex<bool>, Condvar);

/// A running periodic thread; stops it and joins it when dropped.
#[derive(Debug)]
pub(crate) struct Periodic {
    stop: Arc<Stop>,
    thread: Option<JoinHandle<()>>,
}

impl Periodic {
    /// Runs `work` on a thread called `name`, the first time as `first` says, then every
    /// `interval`, until the handle is dropped.
    ///
    /// # Errors
    ///
    /// If the thread cannot be spawned.
    pub(crate) fn start(
        name: &str,
        interval: Duration,
        first: First,
        mut work: impl FnMut() + Send + 'static,
    ) -> std::io::Result<Periodic> {
        let stop: Arc<Stop> = Arc::default();
        let thread = {
            let stop = Arc::clone(&stop);
            std::thread::Builder::new()
                .name(name.to_owned())
                .spawn(move || {
                    if first == First::AtOnce {
                        work();
                    }
                    while !stopped_within(&stop, interval) {
                        work();
                    }
                })?
        };
        Ok(Periodic {
            stop,
            thread: Some(thread),
        })
    }
}

/// Waits up to `interval` for the stop flag; whether it was set. The lock is not held
/// while the caller works, so a stop never waits for the lock behind a piece of work.
fn stopped_within(stop: &Stop, interval: Duration) -> bool {
    let (stopped, wake) = stop;
    let stopped = stopped.lock().unwrap_or_else(PoisonError::into_inner);
    let (stopped, _) = wake
        .wait_timeout_while(stopped, interval, |stopped| !*stopped)
        .unwrap_or_else(PoisonError::into_inner);
    *stopped
}

impl Drop for Periodic {
    fn drop(&mut self) {
        let (stopped, wake) = &*self.stop;
        *stopped.lock().unwrap_or_else(PoisonError::into_inner) = true;
        wake.notify_all();
        if let Some(thread) = self.thread.take() {
            // A panic in the thread has already been printed by the panic hook.
            let _ = thread.join();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::{AtomicUsize, Ordering};
    use std::time::Instant;

    fn counting(first: First, interval: Duration) -> (Periodic, Arc<AtomicUsize>) {
        let runs = Arc::new(AtomicUsize::new(0));
        let counted = Arc::clone(&runs);
        let periodic = Periodic::start("memsentry-test", interval, first, move || {
            counted.fetch_add(1, Ordering::SeqCst);
        })
        .unwrap();
        (periodic, runs)
    }

    #[test]
    fn a_long_interval_runs_only_the_first_piece_and_stops_at_once() {
        let hour = Duration::from_secs(3600);
        for (first, expected) in [(First::AtOnce, 1), (First::AfterInterval, 0)] {
            let (periodic, runs) = counting(first, hour);
            let deadline = Instant::now() + Duration::from_secs(10);
            while runs.load(Ordering::SeqCst) < expected && Instant::now() < deadline {
                std::thread::sleep(Duration::from_millis(1));
            }
            let stopping = Instant::now();
            drop(periodic);
            assert!(stopping.elapsed() < Duration::from_secs(60), "{first:?}");
            assert_eq!(runs.load(Ordering::SeqCst), expected, "{first:?}");
        }
    }

    #[test]
    fn works_every_interval_until_dropped() {
        let (periodic, runs) = counting(First::AfterInterval, Duration::from_millis(1));
        let deadline = Instant::now() + Duration::from_secs(10);
        while runs.load(Ordering::SeqCst) < 3 && Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(1));
        }
        drop(periodic);
        let after_stop = runs.load(Ordering::SeqCst);
        assert!(after_stop >= 3, "{after_stop} runs");
        std::thread::sleep(Duration::from_millis(20));
        assert_eq!(runs.load(Ordering::SeqCst), after_stop);
    }
}
