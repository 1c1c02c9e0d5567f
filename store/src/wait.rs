//! How an append waits when it has to, so an async caller can keep its worker free.
//!
//! An append mostly copies bytes under the CommitLog's lock, in microseconds. It waits only
//! behind another append (which may itself be stalled by a slow disk), for the next segment
//! while the background allocator is still making it, or for the dispatch lock. A broker
//! appends on its async workers, and those waits are the ones that could take every worker
//! and leave heartbeats and pulls unanswered; so the caller says how to wait (tokio's
//! `block_in_place`, say), and the fast path costs it nothing.

use std::time::Duration;

use parking_lot::{Mutex, MutexGuard};

/// Runs the closure it is given exactly once, however the caller likes to block: on this
/// thread, or an async runtime's way of blocking off its worker.
pub type WaitWith<'a> = &'a (dyn Fn(&mut dyn FnMut()) + Sync);

/// Blocking on this thread, for callers that are not async workers.
pub(crate) fn here(wait: &mut dyn FnMut()) {
    wait()
}

/// How long a lock is waited for in place before the wait is handed to [`WaitWith`]:
/// long enough for another append to copy its bytes or dispatch its batch (handing off
/// sooner cost 128-byte batches of 32 a tenth of their throughput), short enough that no
/// worker sits out a stalled one.
const IN_PLACE: Duration = Duration::from_micros(250);

/// `mutex`, waited for in place briefly and then through `wait_with` (also for callers that
/// hold a lock of their own around an append, such as a replicated group's leader).
pub fn lock<'m, T>(mutex: &'m Mutex<T>, wait_with: WaitWith) -> MutexGuard<'m, T> {
    if let Some(guard) = mutex.try_lock_for(IN_PLACE) {
        return guard;
    }
    let mut guard = None;
    wait_with(&mut || guard = Some(mutex.lock()));
    guard.expect("a WaitWith runs its closure")
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::{AtomicUsize, Ordering};

    #[test]
    fn a_free_lock_is_taken_in_place_and_a_held_one_through_wait_with() {
        let mutex = Mutex::new(0);
        let handed = AtomicUsize::new(0);
        let counting = |wait: &mut dyn FnMut()| {
            handed.fetch_add(1, Ordering::Relaxed);
            wait()
        };
        *lock(&mutex, &counting) += 1;
        assert_eq!(handed.load(Ordering::Relaxed), 0);

        let held = mutex.lock();
        std::thread::scope(|scope| {
            let waiter = scope.spawn(|| *lock(&mutex, &counting) += 1);
            while handed.load(Ordering::Relaxed) == 0 {
                std::thread::yield_now();
            }
            drop(held);
            waiter.join().unwrap();
        });
        assert_eq!(handed.load(Ordering::Relaxed), 1);
        assert_eq!(*mutex.lock(), 2);
    }
}
