//! Durability waiting for SYNC_FLUSH group commit.
//!
//! Appenders register "tell me when offset N is on disk"; the one flush thread flushes
//! whatever has been written by then, so every append that arrived during a flush shares the
//! next one. [`Durable`] is both a blocking handle and a `Future`, so the broker can await it
//! on a tokio task without the store depending on tokio or blocking a worker thread.

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll, Waker};
use std::time::{Duration, Instant};

use parking_lot::{Condvar, Mutex};

use crate::error::{Error, Result};

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Outcome {
    Durable,
    TimedOut,
    Failed,
    Closed,
}

#[derive(Default)]
struct Slot {
    state: Mutex<(Option<Outcome>, Option<Waker>)>,
    done: Condvar,
}

impl Slot {
    fn complete(&self, outcome: Outcome) {
        let waker = {
            let mut state = self.state.lock();
            if state.0.is_some() {
                return;
            }
            state.0 = Some(outcome);
            state.1.take()
        };
        self.done.notify_all();
        if let Some(waker) = waker {
            waker.wake();
        }
    }
}

/// Resolves when an append is durable: at once under ASYNC_FLUSH (RocketMQ acknowledges
/// before flushing there), after the group flush under SYNC_FLUSH, or with
/// [`Error::FlushTimeout`] once `syncFlushTimeout` passes (the message is still stored).
#[must_use = "an append is only durable once this resolves"]
pub struct Durable {
    offset: u64,
    timeout: Duration,
    slot: Option<Arc<Slot>>,
}

impl std::fmt::Debug for Durable {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Durable")
            .field("offset", &self.offset)
            .finish()
    }
}

impl Durable {
    pub(crate) fn ready(offset: u64) -> Durable {
        Durable {
            offset,
            timeout: Duration::ZERO,
            slot: None,
        }
    }

    /// End offset (exclusive) that has to reach the disk.
    pub fn offset(&self) -> u64 {
        self.offset
    }

    /// Blocks the calling thread until resolved; for threads that are not async tasks.
    pub fn wait(self) -> Result<()> {
        let Some(slot) = &self.slot else {
            return Ok(());
        };
        let mut state = slot.state.lock();
        while state.0.is_none() {
            slot.done.wait(&mut state);
        }
        self.result(state.0.unwrap_or(Outcome::Closed))
    }

    fn result(&self, outcome: Outcome) -> Result<()> {
        match outcome {
            Outcome::Durable => Ok(()),
            Outcome::TimedOut => Err(Error::FlushTimeout {
                offset: self.offset,
                timeout: self.timeout,
            }),
            Outcome::Failed => Err(Error::FlushFailed(std::io::Error::other(
                "flush of the CommitLog failed",
            ))),
            Outcome::Closed => Err(Error::NotAvailable("store shut down before the flush")),
        }
    }
}

impl Future for Durable {
    type Output = Result<()>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let Some(slot) = &self.slot else {
            return Poll::Ready(Ok(()));
        };
        let mut state = slot.state.lock();
        match state.0 {
            Some(outcome) => Poll::Ready(self.result(outcome)),
            None => {
                state.1 = Some(cx.waker().clone());
                Poll::Pending
            }
        }
    }
}

struct Pending {
    target: u64,
    deadline: Instant,
    slot: Arc<Slot>,
}

#[derive(Default)]
struct State {
    pending: Vec<Pending>,
    /// The store is stopping: the flush thread must not go back to sleep.
    stopping: bool,
    closed: bool,
}

/// The queue between appenders and the flush thread.
#[derive(Default)]
pub(crate) struct FlushRequests {
    state: Mutex<State>,
    wake: Condvar,
    /// Wakes the deadline thread when a request arrives or the queue closes.
    deadline_changed: Condvar,
}

impl FlushRequests {
    /// Registers interest in `target` being flushed and wakes the flusher.
    pub(crate) fn request(&self, target: u64, timeout: Duration) -> Durable {
        let slot = Arc::new(Slot::default());
        let mut state = self.state.lock();
        if state.closed {
            slot.complete(Outcome::Closed);
        } else {
            state.pending.push(Pending {
                target,
                deadline: Instant::now() + timeout,
                slot: Arc::clone(&slot),
            });
        }
        drop(state);
        self.wake.notify_one();
        self.deadline_changed.notify_one();
        Durable {
            offset: target,
            timeout,
            slot: Some(slot),
        }
    }

    /// Wakes the flusher without waiting (ASYNC_FLUSH with `flushCommitLogTimed=false`).
    pub(crate) fn nudge(&self) {
        self.wake.notify_one();
    }

    /// Wakes the flush thread for its last round and keeps it from sleeping again. The
    /// flag lives under the lock the thread sleeps with, so the wake-up cannot slip in
    /// between its check and its sleep (and leave it asleep for a whole flush interval).
    pub(crate) fn stop_waiting(&self) {
        self.state.lock().stopping = true;
        self.wake.notify_all();
    }

    /// Waits up to `timeout` for a request; true if one is pending.
    pub(crate) fn wait_for_work(&self, timeout: Duration) -> bool {
        let mut state = self.state.lock();
        if state.pending.is_empty() && !state.closed && !state.stopping {
            self.wake.wait_for(&mut state, timeout);
        }
        !state.pending.is_empty()
    }

    /// Completes every request up to `flushed`, and times out the overdue ones.
    pub(crate) fn flushed(&self, flushed: u64) {
        let now = Instant::now();
        let mut done = Vec::new();
        self.state.lock().pending.retain(|pending| {
            if pending.target <= flushed {
                done.push((Arc::clone(&pending.slot), Outcome::Durable));
                false
            } else if pending.deadline <= now {
                done.push((Arc::clone(&pending.slot), Outcome::TimedOut));
                false
            } else {
                true
            }
        });
        for (slot, outcome) in done {
            slot.complete(outcome);
        }
    }

    /// Times out overdue requests on their own clock until the queue closes. It runs on a
    /// thread of its own because the flush thread may be stuck in an msync on a hung disk,
    /// and a SYNC_FLUSH send must then fail after `syncFlushTimeout`, not hang with it.
    pub(crate) fn enforce_deadlines(&self) {
        let mut state = self.state.lock();
        while !state.closed {
            match state.pending.iter().map(|pending| pending.deadline).min() {
                None => self.deadline_changed.wait(&mut state),
                Some(deadline) => {
                    self.deadline_changed.wait_until(&mut state, deadline);
                }
            }
            let now = Instant::now();
            let mut overdue = Vec::new();
            state.pending.retain(|pending| {
                let late = pending.deadline <= now;
                if late {
                    overdue.push(Arc::clone(&pending.slot));
                }
                !late
            });
            if !overdue.is_empty() {
                drop(state);
                for slot in overdue {
                    slot.complete(Outcome::TimedOut);
                }
                state = self.state.lock();
            }
        }
    }

    /// Fails every pending request after a flush error.
    pub(crate) fn failed(&self) {
        let pending = std::mem::take(&mut self.state.lock().pending);
        for pending in pending {
            pending.slot.complete(Outcome::Failed);
        }
    }

    /// Refuses new requests and resolves the rest as closed.
    pub(crate) fn close(&self) {
        let pending = {
            let mut state = self.state.lock();
            state.closed = true;
            std::mem::take(&mut state.pending)
        };
        self.wake.notify_all();
        self.deadline_changed.notify_all();
        for pending in pending {
            pending.slot.complete(Outcome::Closed);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn block_on<F: Future>(future: F) -> F::Output {
        struct ThreadWaker(std::thread::Thread);
        impl std::task::Wake for ThreadWaker {
            fn wake(self: Arc<Self>) {
                self.0.unpark();
            }
        }
        let waker = Waker::from(Arc::new(ThreadWaker(std::thread::current())));
        let mut cx = Context::from_waker(&waker);
        let mut future = std::pin::pin!(future);
        loop {
            if let Poll::Ready(output) = future.as_mut().poll(&mut cx) {
                return output;
            }
            std::thread::park();
        }
    }

    #[test]
    fn completes_futures_and_blocking_waits() {
        let requests = Arc::new(FlushRequests::default());
        let first = requests.request(10, Duration::from_secs(5));
        let second = requests.request(20, Duration::from_secs(5));
        let flusher = Arc::clone(&requests);
        let thread = std::thread::spawn(move || {
            assert!(flusher.wait_for_work(Duration::from_secs(1)));
            flusher.flushed(15);
            std::thread::sleep(Duration::from_millis(20));
            flusher.flushed(20);
        });
        block_on(first).unwrap();
        second.wait().unwrap();
        thread.join().unwrap();
    }

    #[test]
    fn times_out_and_closes() {
        let requests = FlushRequests::default();
        let late = requests.request(10, Duration::ZERO);
        requests.flushed(5);
        assert!(matches!(
            late.wait(),
            Err(Error::FlushTimeout { offset: 10, .. })
        ));
        let open = requests.request(10, Duration::from_secs(5));
        requests.close();
        assert!(matches!(open.wait(), Err(Error::NotAvailable(_))));
        assert!(Durable::ready(3).wait().is_ok());
    }

    #[test]
    fn a_hung_flush_still_times_out_its_waiters() {
        let requests = Arc::new(FlushRequests::default());
        let timer = Arc::clone(&requests);
        let deadlines = std::thread::spawn(move || timer.enforce_deadlines());
        // Nobody ever calls `flushed`: the flush thread is stuck in the disk.
        let waiting = requests.request(10, Duration::from_millis(50));
        assert!(matches!(
            block_on(waiting),
            Err(Error::FlushTimeout { offset: 10, .. })
        ));
        requests.close();
        deadlines.join().unwrap();
    }
}
