//! openraft's runtime for Rocketry's Raft: tokio's, with one change. openraft draws each
//! election timeout from its runtime's random generator, and tokio's is seeded by the
//! operating system, so no run replays another. Here the generator is seeded from the
//! system too, unless the thread was given a seed ([`seed_this_thread`]), which the
//! deterministic simulation (tests/raft_simulation.rs) does to replay a seed exactly.
//! openraft has a seeded wrapper of its own (`DeterministicRng`), but it takes its seed from
//! a task-local that every task spawned outside openraft (a broker's handlers call Raft)
//! would have to carry, and it panics in one that does not.

use std::cell::RefCell;
use std::future::Future;
use std::time::Duration;

use openraft::impls::TokioRuntime;
use openraft::{AsyncRuntime, OptionalSend};
use rand::rngs::SmallRng;
use rand::{Rng, SeedableRng};

thread_local! {
    static SEEDED: RefCell<Option<SmallRng>> = const { RefCell::new(None) };
}

/// From now on, every generator openraft asks for on this thread is drawn from `seed`.
pub fn seed_this_thread(seed: u64) {
    SEEDED.with(|seeded| *seeded.borrow_mut() = Some(SmallRng::seed_from_u64(seed)));
}

/// Tokio, with the generator above.
#[derive(Debug)]
pub struct Runtime(TokioRuntime);

impl AsyncRuntime for Runtime {
    type JoinError = <TokioRuntime as AsyncRuntime>::JoinError;
    type JoinHandle<T: OptionalSend + 'static> = <TokioRuntime as AsyncRuntime>::JoinHandle<T>;
    type Sleep = <TokioRuntime as AsyncRuntime>::Sleep;
    type Instant = <TokioRuntime as AsyncRuntime>::Instant;
    type TimeoutError = <TokioRuntime as AsyncRuntime>::TimeoutError;
    type Timeout<R, T: Future<Output = R> + OptionalSend> =
        <TokioRuntime as AsyncRuntime>::Timeout<R, T>;
    type ThreadLocalRng = SmallRng;
    type Mpsc = <TokioRuntime as AsyncRuntime>::Mpsc;
    type Watch = <TokioRuntime as AsyncRuntime>::Watch;
    type Oneshot = <TokioRuntime as AsyncRuntime>::Oneshot;
    type Mutex<T: OptionalSend + 'static> = <TokioRuntime as AsyncRuntime>::Mutex<T>;

    fn spawn<T>(future: T) -> Self::JoinHandle<T::Output>
    where
        T: Future + OptionalSend + 'static,
        T::Output: OptionalSend + 'static,
    {
        TokioRuntime::spawn(future)
    }

    fn sleep(duration: Duration) -> Self::Sleep {
        TokioRuntime::sleep(duration)
    }

    fn sleep_until(deadline: Self::Instant) -> Self::Sleep {
        TokioRuntime::sleep_until(deadline)
    }

    fn timeout<R, F: Future<Output = R> + OptionalSend>(
        duration: Duration,
        future: F,
    ) -> Self::Timeout<R, F> {
        TokioRuntime::timeout(duration, future)
    }

    fn timeout_at<R, F: Future<Output = R> + OptionalSend>(
        deadline: Self::Instant,
        future: F,
    ) -> Self::Timeout<R, F> {
        TokioRuntime::timeout_at(deadline, future)
    }

    fn is_panic(join_error: &Self::JoinError) -> bool {
        TokioRuntime::is_panic(join_error)
    }

    fn thread_rng() -> SmallRng {
        SEEDED.with(|seeded| match seeded.borrow_mut().as_mut() {
            Some(seeded) => SmallRng::seed_from_u64(seeded.next_u64()),
            None => SmallRng::seed_from_u64(rand::random()),
        })
    }

    fn new(threads: usize) -> Self {
        Runtime(TokioRuntime::new(threads))
    }

    fn block_on<F, T>(&mut self, future: F) -> T
    where
        F: Future<Output = T>,
    {
        self.0.block_on(future)
    }
}

#[cfg(test)]
mod tests {
    use openraft::AsyncRuntime;
    use rand::RngExt;

    use super::{seed_this_thread, Runtime};

    fn draws() -> Vec<u64> {
        (0..4)
            .map(|_| Runtime::thread_rng().random_range(1000..2000))
            .collect()
    }

    #[test]
    fn a_seeded_thread_draws_the_same_timeouts_again() {
        seed_this_thread(7);
        let first = draws();
        seed_this_thread(7);
        assert_eq!(draws(), first);
        seed_this_thread(8);
        assert_ne!(draws(), first);
    }
}
