//! Creates the next CommitLog segment on a background thread (RocketMQ's
//! `AllocateMappedFileService`), so a roll-over finds its file ready instead of stalling the
//! append lock on file creation, block reservation and (optionally) page warming. The same
//! thread faults in the pages a little ahead of the appends ([`Allocator::populate_ahead`]),
//! so they do not pay for fresh pages.

use std::path::PathBuf;
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::Duration;

use parking_lot::{Condvar, Mutex};

use crate::error::Result;
use crate::segment::Segment;
use crate::wait::WaitWith;

/// How often a roll still waiting for the background file says so.
const WAIT_LOG_EVERY: Duration = Duration::from_secs(5);

/// Pages are faulted in this many bytes at a time, one step ahead of the appends: when the
/// write position crosses into a step, the step after it is populated.
pub(crate) const POPULATE_STEP: usize = 4 << 20;

#[derive(Default)]
struct State {
    wanted: Option<u64>,
    working: Option<u64>,
    ready: Option<(u64, Result<Arc<Segment>>)>,
    /// A range of a segment to fault in: `(segment, from)`, one step long.
    populate: Option<(Arc<Segment>, usize)>,
    shutdown: bool,
}

struct Shared {
    dir: PathBuf,
    size: usize,
    warm: bool,
    state: Mutex<State>,
    changed: Condvar,
}

pub(crate) struct Allocator {
    shared: Arc<Shared>,
    thread: Mutex<Option<JoinHandle<()>>>,
}

impl Allocator {
    pub(crate) fn start(dir: PathBuf, size: usize, warm: bool) -> Allocator {
        let shared = Arc::new(Shared {
            dir,
            size,
            warm,
            state: Mutex::new(State::default()),
            changed: Condvar::new(),
        });
        let worker = Arc::clone(&shared);
        let thread = std::thread::Builder::new()
            .name("commitlog-allocate".into())
            .spawn(move || run(worker))
            .ok();
        Allocator {
            shared,
            thread: Mutex::new(thread),
        }
    }

    /// Asks for the segment starting at `start` to be prepared in the background.
    pub(crate) fn prepare(&self, start: u64) {
        let mut state = self.shared.state.lock();
        let already = state.working == Some(start)
            || state.ready.as_ref().is_some_and(|(at, _)| *at == start);
        if !already {
            state.wanted = Some(start);
            self.shared.changed.notify_all();
        }
    }

    /// Faults in `[from, from + POPULATE_STEP)` of `segment` in the background. A request
    /// still waiting is replaced: the appends have moved past it.
    pub(crate) fn populate_ahead(&self, segment: &Arc<Segment>, from: usize) {
        self.shared.state.lock().populate = Some((Arc::clone(segment), from));
        self.shared.changed.notify_all();
    }

    /// The segment starting at `start`: the prepared one if ready, else made here. Queues the
    /// one after it. Waiting for the background thread goes through `wait_with`.
    pub(crate) fn take(&self, start: u64, wait_with: WaitWith) -> Result<Arc<Segment>> {
        let taken = {
            let mut state = self.shared.state.lock();
            // The background thread is making this very file: wait for it, however long
            // the disk takes. Making it here as well would race it for the same name.
            while state.working == Some(start) {
                drop(state);
                wait_with(&mut || self.wait_until_made(start));
                state = self.shared.state.lock();
            }
            match state.ready.take() {
                Some((at, segment)) if at == start => Some(segment),
                other => {
                    if state.wanted == Some(start) {
                        state.wanted = None;
                    }
                    // A file prepared for another offset is stale (e.g. after a truncation).
                    if let Some((_, Ok(stale))) = other {
                        let _ = stale.delete();
                    }
                    None
                }
            }
        };
        let segment = match taken {
            Some(Ok(segment)) => segment,
            // A background failure (ENOSPC...) is retried here so the caller sees a fresh error.
            Some(Err(_)) | None => {
                let mut made = None;
                wait_with(&mut || made = Some(self.create(start)));
                Arc::new(made.expect("a WaitWith runs its closure")?)
            }
        };
        self.prepare(start + self.shared.size as u64);
        Ok(segment)
    }

    fn wait_until_made(&self, start: u64) {
        let mut state = self.shared.state.lock();
        while state.working == Some(start) {
            let waited = self.shared.changed.wait_for(&mut state, WAIT_LOG_EVERY);
            if waited.timed_out() && state.working == Some(start) {
                tracing::warn!(
                    start,
                    "still waiting for the next CommitLog segment: the disk is slow"
                );
            }
        }
    }

    fn create(&self, start: u64) -> Result<Segment> {
        self.shared.create(start)
    }

    pub(crate) fn shutdown(&self) {
        self.shared.state.lock().shutdown = true;
        self.shared.changed.notify_all();
        if let Some(thread) = self.thread.lock().take() {
            let _ = thread.join();
        }
        // A prepared but unused file would make the next start see a gap-free but empty tail
        // file; delete it so the directory holds only segments that were written to.
        if let Some((_, Ok(segment))) = self.shared.state.lock().ready.take() {
            let _ = segment.delete();
        }
    }
}

impl Drop for Allocator {
    fn drop(&mut self) {
        self.shutdown();
    }
}

impl Shared {
    fn create(&self, start: u64) -> Result<Segment> {
        fault!("store::commitlog::create", |_| Err(
            crate::error::Error::io(&self.dir, std::io::Error::from_raw_os_error(libc::ENOSPC))
        ));
        let segment = Segment::create(&self.dir, start, self.size)?;
        if self.warm {
            segment.warm();
        }
        Ok(segment)
    }
}

fn run(shared: Arc<Shared>) {
    loop {
        let start = {
            let mut state = shared.state.lock();
            loop {
                if state.shutdown {
                    return;
                }
                if let Some(start) = state.wanted.take() {
                    state.working = Some(start);
                    break start;
                }
                if let Some((segment, from)) = state.populate.take() {
                    drop(state);
                    segment.populate(from, from + POPULATE_STEP);
                    state = shared.state.lock();
                    continue;
                }
                shared.changed.wait(&mut state);
            }
        };
        let result = shared.create(start).map(Arc::new);
        if let Err(error) = &result {
            tracing::warn!(start, %error, "pre-allocating CommitLog segment failed");
        }
        let mut state = shared.state.lock();
        if let Some((_, Ok(stale))) = state.ready.replace((start, result)) {
            let _ = stale.delete();
        }
        state.working = None;
        shared.changed.notify_all();
    }
}
