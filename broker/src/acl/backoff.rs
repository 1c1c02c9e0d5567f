//! Slowing down a peer that keeps failing authentication: its first few failures are
//! answered at once, then each later one waits twice as long as the one before, up to a
//! cap, so guessing secrets costs time while a misconfigured client's log still fills fast.
//! The wait holds one of the connection's request slots, so the peer slows itself down.

use std::collections::HashMap;
use std::net::IpAddr;
use std::time::{Duration, Instant};

use parking_lot::Mutex;

const FIRST_DELAY: Duration = Duration::from_millis(100);
const MAX_DELAY: Duration = Duration::from_secs(5);
/// A peer's failures are forgotten after this long without one.
const MEMORY: Duration = Duration::from_secs(60);
/// Peers remembered at most; past it a new peer is not slowed until old ones are forgotten.
const MAX_PEERS: usize = 100_000;

pub struct Backoff {
    /// Failures of a peer answered without delay (`aclFreeAuthenticationFailures`).
    free: u32,
    peers: Mutex<HashMap<IpAddr, (u32, Instant)>>,
}

impl Backoff {
    pub fn new(free: u32) -> Backoff {
        Backoff {
            free,
            peers: Mutex::new(HashMap::new()),
        }
    }

    /// Records a failed authentication from `peer`; returns how long to wait before
    /// answering it.
    pub fn failed(&self, peer: IpAddr, now: Instant) -> Duration {
        let mut peers = self.peers.lock();
        if peers.len() >= MAX_PEERS && !peers.contains_key(&peer) {
            return Duration::ZERO;
        }
        let (count, last) = peers.entry(peer).or_insert((0, now));
        if now.duration_since(*last) > MEMORY {
            *count = 0;
        }
        *count += 1;
        *last = now;
        match count.checked_sub(self.free.saturating_add(1)) {
            None => Duration::ZERO,
            Some(doublings) => FIRST_DELAY
                .saturating_mul(2u32.saturating_pow(doublings))
                .min(MAX_DELAY),
        }
    }

    /// Forgets peers that have not failed for a while.
    pub fn prune(&self, now: Instant) {
        self.peers
            .lock()
            .retain(|_, (_, last)| now.duration_since(*last) <= MEMORY);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn waits_double_after_the_free_failures_up_to_the_cap_and_are_forgotten() {
        let backoff = Backoff::new(3);
        let peer: IpAddr = "10.0.0.9".parse().unwrap();
        let other: IpAddr = "10.0.0.10".parse().unwrap();
        let start = Instant::now();
        let waits: Vec<Duration> = (0..10).map(|_| backoff.failed(peer, start)).collect();
        let ms: Vec<u128> = waits.iter().map(Duration::as_millis).collect();
        assert_eq!(ms, [0, 0, 0, 100, 200, 400, 800, 1600, 3200, 5000]);
        assert_eq!(backoff.failed(other, start), Duration::ZERO);
        let later = start + MEMORY + Duration::from_secs(1);
        assert_eq!(backoff.failed(peer, later), Duration::ZERO);
        backoff.prune(later + MEMORY + Duration::from_secs(1));
        assert!(backoff.peers.lock().is_empty());
    }
}
