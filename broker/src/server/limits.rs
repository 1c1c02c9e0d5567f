//! What one server allows each connection and all of its connections together, so that no
//! client, however it behaves, makes the process hold unbounded memory. docs/reliability.md ("Limits")
//! lists each limit with its key and what happens when it is reached.

use std::time::Duration;

#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Limits {
    /// Connections served at once; one more is accepted and closed at once.
    pub max_connections: usize,
    /// Requests of one connection being handled or answered and not yet written. The next
    /// frame is not read until one finishes.
    pub max_requests_in_flight: u32,
    /// Bytes of one connection's answers waiting to be written. When they are reached the
    /// connection's requests wait to queue their answers and its next frame is not read.
    pub max_queued_response_bytes: u32,
    /// A connection that sends nothing for this long is closed; `None` never closes one.
    pub idle_timeout: Option<Duration>,
    /// A frame whose first bytes arrived must be whole within this; `None` waits forever.
    pub frame_timeout: Option<Duration>,
    /// Largest frame read before the connection has sent one request, unless its header
    /// has arrived and is a request's.
    pub first_frame_max_bytes: usize,
}

impl Limits {
    /// Turns the config's numbers into limits: a zero timeout means none, and the
    /// per-connection budgets are at least 1 so that a connection can make progress.
    pub fn new(
        max_connections: usize,
        max_requests_in_flight: u32,
        max_queued_response_bytes: u32,
        idle_timeout_seconds: u64,
        frame_timeout_seconds: u64,
        first_frame_max_bytes: usize,
    ) -> Limits {
        let timeout = |seconds| (seconds > 0).then(|| Duration::from_secs(seconds));
        Limits {
            max_connections,
            max_requests_in_flight: max_requests_in_flight.max(1),
            max_queued_response_bytes: max_queued_response_bytes.max(1),
            idle_timeout: timeout(idle_timeout_seconds),
            frame_timeout: timeout(frame_timeout_seconds),
            first_frame_max_bytes,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn zero_timeouts_mean_none_and_zero_budgets_still_admit_one() {
        let limits = Limits::new(10, 0, 0, 0, 0, 65536);
        assert_eq!(limits.idle_timeout, None);
        assert_eq!(limits.frame_timeout, None);
        assert_eq!(limits.max_requests_in_flight, 1);
        assert_eq!(limits.max_queued_response_bytes, 1);
        let limits = Limits::new(10, 4, 4, 120, 30, 65536);
        assert_eq!(limits.idle_timeout, Some(Duration::from_secs(120)));
        assert_eq!(limits.frame_timeout, Some(Duration::from_secs(30)));
    }
}
