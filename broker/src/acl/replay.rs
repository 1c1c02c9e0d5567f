//! Replay protection, Rocketry's own and opt-in (`aclReplayWindowSeconds`): RocketMQ's
//! signature covers no time and no nonce, so a captured request can be sent again. With
//! this on, a request must also carry `Timestamp` (ms since the epoch) and `Nonce` among
//! its signed extFields; one outside the window, or whose nonce its user has already used
//! within it, is refused.

use std::collections::HashMap;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use parking_lot::Mutex;
use protocol::acl::{NONCE, TIMESTAMP};
use protocol::RemotingCommand;

/// Nonces kept at most: a bound on memory whatever the request rate. Past it, requests are
/// refused until old nonces expire, rather than forgetting nonces that could be replayed.
const MAX_NONCES: usize = 1_000_000;
const MAX_NONCE_LEN: usize = 128;

pub struct ReplayGuard {
    window: Duration,
    /// (access key, nonce) → the request's timestamp, in ms.
    seen: Mutex<HashMap<(String, String), i64>>,
}

fn now_millis() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as i64)
}

impl ReplayGuard {
    pub fn new(window: Duration) -> ReplayGuard {
        ReplayGuard {
            window,
            seen: Mutex::new(HashMap::new()),
        }
    }

    /// Call only for a request whose signature is valid, so that nobody can fill the cache
    /// with nonces of requests they could not sign.
    pub fn check(&self, access_key: &str, request: &RemotingCommand) -> Result<(), String> {
        self.check_at(access_key, request, now_millis())
    }

    fn check_at(
        &self,
        access_key: &str,
        request: &RemotingCommand,
        now: i64,
    ) -> Result<(), String> {
        let field = |name: &str| request.ext_fields.get(name).filter(|v| !v.is_empty());
        let (Some(timestamp), Some(nonce)) = (field(TIMESTAMP), field(NONCE)) else {
            return Err(format!(
                "this broker refuses replays: sign {TIMESTAMP} and {NONCE} into the request (docs/security.md)"
            ));
        };
        let window = self.window.as_millis() as i64;
        let at: i64 = timestamp.parse().map_err(|_| {
            format!("{TIMESTAMP} {timestamp:?} is not milliseconds since the epoch")
        })?;
        if (now - at).abs() > window {
            return Err(format!(
                "{TIMESTAMP} is {} ms from the broker's clock, more than the replay window of {window} ms",
                now - at
            ));
        }
        if nonce.len() > MAX_NONCE_LEN {
            return Err(format!("{NONCE} is longer than {MAX_NONCE_LEN} bytes"));
        }
        let mut seen = self.seen.lock();
        if seen.len() >= MAX_NONCES {
            seen.retain(|_, at| now - *at <= window);
            if seen.len() >= MAX_NONCES {
                return Err("too many requests inside the replay window; try again".into());
            }
        }
        match seen.entry((access_key.to_string(), nonce.to_string())) {
            std::collections::hash_map::Entry::Occupied(_) => Err(format!(
                "replayed request: User:{access_key} already used this {NONCE}."
            )),
            std::collections::hash_map::Entry::Vacant(slot) => {
                slot.insert(at);
                Ok(())
            }
        }
    }

    /// Forgets nonces whose requests are outside the window: they would be refused for
    /// their time anyway.
    pub fn prune(&self) {
        let (now, window) = (now_millis(), self.window.as_millis() as i64);
        self.seen.lock().retain(|_, at| now - *at <= window);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use protocol::RequestCode;

    fn request(timestamp: i64, nonce: &str) -> RemotingCommand {
        RemotingCommand::request(RequestCode::SendMessage, &())
            .with_ext_field(TIMESTAMP, timestamp.to_string())
            .with_ext_field(NONCE, nonce)
    }

    #[test]
    fn a_nonce_is_taken_once_per_user_within_the_window() {
        let guard = ReplayGuard::new(Duration::from_secs(60));
        let now = 1_000_000_000;
        assert!(guard.check_at("alice", &request(now, "n1"), now).is_ok());
        let again = guard
            .check_at("alice", &request(now, "n1"), now + 5)
            .unwrap_err();
        assert!(again.contains("replayed"), "{again}");
        // Another user's nonce is another nonce.
        assert!(guard.check_at("bob", &request(now, "n1"), now).is_ok());
    }

    #[test]
    fn requests_outside_the_window_or_without_the_fields_are_refused() {
        let guard = ReplayGuard::new(Duration::from_secs(60));
        let now = 1_000_000_000;
        assert!(guard
            .check_at("a", &request(now - 61_000, "x"), now)
            .is_err());
        assert!(guard
            .check_at("a", &request(now + 61_000, "y"), now)
            .is_err());
        let bare = RemotingCommand::request(RequestCode::SendMessage, &());
        assert!(guard
            .check_at("a", &bare, now)
            .unwrap_err()
            .contains("Nonce"));
        let bad = request(now, "z").with_ext_field(TIMESTAMP, "yesterday");
        assert!(guard.check_at("a", &bad, now).is_err());
    }
}
