//! The wall clock in milliseconds, and the round every 100 ms of the loops that deliver
//! due messages (delay levels, timers).

use std::future::Future;
use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use tracing::warn;

use super::Broker;
use crate::error::Result;

/// How often the loops look for due messages; RocketMQ re-checks a delay level every 100 ms
/// as well.
const TICK: Duration = Duration::from_millis(100);

/// Milliseconds since the epoch.
pub(crate) fn now_millis() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_millis() as i64)
        .unwrap_or(0)
}

/// Runs `round` every 100 ms until the broker stops and, every tenth round, `persist` with
/// the CommitLog's flushed offset (progress is written only once what it covers is durable).
/// A replica that does not lead its group skips its rounds: it writes nothing.
pub(super) fn spawn_rounds<F, Fut>(
    broker: Arc<Broker>,
    mut round: F,
    persist: fn(&Broker, u64) -> Result<()>,
    persist_failed: &'static str,
) where
    F: FnMut(Arc<Broker>) -> Fut + Send + 'static,
    Fut: Future<Output = ()> + Send,
{
    tokio::spawn(async move {
        let mut ticker = tokio::time::interval(TICK);
        let mut rounds = 0u64;
        loop {
            tokio::select! {
                _ = broker.stopping.cancelled() => return,
                _ = ticker.tick() => {}
            }
            if !broker.writes_here() {
                continue;
            }
            round(broker.clone()).await;
            rounds += 1;
            if rounds.is_multiple_of(10) {
                if let Err(error) = persist(&broker, broker.store.commit_log_flushed_offset()) {
                    warn!(%error, "{persist_failed}");
                }
            }
        }
    });
}
