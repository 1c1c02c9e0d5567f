//! A broker that is one replica of a Raft-replicated group (DLedger mode, docs/replication.md):
//! its appends go through the leader's writes, it registers as master (brokerId 0) while it
//! leads and as a slave (its replica number plus one) otherwise, and it registers again as
//! soon as its role changes, so clients find a new leader through the name server.
//!
//! Messages are Raft's; the broker's own state is not. As Apache's slaves do, a follower
//! copies its leader's topics, subscription groups, consumer offsets and delay-level progress
//! every few seconds, so a replica that takes over serves the same topics and resumes each
//! group about where it was (a group may re-read what it consumed in the last few seconds).

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use openraft::async_runtime::WatchReceiver;
use openraft::Instant as _;
use store::{AppendResult, AppendedMessage, Durable, PutMessage, WaitWith};
use tracing::{debug, info, warn};

use super::Broker;
use crate::error::Result;
use crate::replication::{Committed, Refused, Replica, ELECTION_TIMEOUT_MAX};

/// Where an append went, and what resolves once it may be acknowledged.
#[derive(Debug)]
pub(crate) struct Appended {
    pub messages: Vec<AppendedMessage>,
    pub end_offset: u64,
    pub durable: Acknowledged,
}

/// The store's flush on a broker of its own; the quorum on a replicated group's leader.
#[derive(Debug)]
#[must_use = "an append may be acknowledged only once this resolves"]
pub(crate) enum Acknowledged {
    Flushed(Durable),
    Replicated(Committed),
}

impl From<AppendResult> for Appended {
    fn from(appended: AppendResult) -> Appended {
        Appended {
            messages: appended.messages,
            end_offset: appended.end_offset,
            durable: Acknowledged::Flushed(appended.durable),
        }
    }
}

impl Future for Acknowledged {
    type Output = store::Result<()>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        match self.get_mut() {
            Acknowledged::Flushed(durable) => Pin::new(durable).poll(cx),
            Acknowledged::Replicated(committed) => Pin::new(committed).poll(cx).map_err(refusal),
        }
    }
}

/// What a refused replicated append answers, as the store's errors: not leading is
/// SERVICE_NOT_AVAILABLE (the client looks for the new leader and sends again), a quorum
/// not reached is SYSTEM_ERROR (sent again too, never taken for success).
fn refusal(refused: Refused) -> store::Error {
    match refused {
        Refused::Store(error) => error,
        Refused::NotLeader(_) => {
            store::Error::NotAvailable("this broker does not lead its replicated group")
        }
        Refused::Replication(reason) => store::Error::NotReplicated(reason),
    }
}

pub(crate) struct Member {
    replica: Replica,
    /// The replica's number in `dLegerPeers` (`nX`).
    self_id: u64,
}

impl Member {
    pub(crate) fn new(replica: Replica, self_id: u64) -> Member {
        Member { replica, self_id }
    }

    pub(crate) fn append(
        &self,
        puts: &[PutMessage],
        wait_with: WaitWith,
    ) -> store::Result<Appended> {
        let replicated = self.replica.append(puts, wait_with).map_err(refusal)?;
        Ok(Appended {
            messages: replicated.messages,
            end_offset: replicated.end_offset,
            durable: Acknowledged::Replicated(replicated.committed),
        })
    }

    /// Whether this replica leads the group now: its leadership was granted by a quorum,
    /// and a quorum acknowledged it within an election timeout. A leader cut off from the
    /// others stops claiming to be master before they can have elected another.
    pub(crate) fn leads(&self) -> bool {
        self.replica.raft().as_leader().is_ok_and(|leader| {
            leader
                .last_quorum_acked()
                .is_some_and(|at| at.elapsed() < ELECTION_TIMEOUT_MAX)
        })
    }

    /// brokerId 0 while leading, as Apache's DLedger mode registers its leader; a follower's
    /// replica number plus one otherwise.
    pub(crate) fn broker_id(&self) -> u64 {
        if self.leads() {
            0
        } else {
            self.self_id + 1
        }
    }

    pub(crate) async fn stop(&self) -> Result<()> {
        self.replica.stop().await
    }
}

/// How often a follower copies its leader's state (Apache's slaves: every 10 s at most).
const COPY_EVERY: Duration = Duration::from_secs(3);
/// How often the role is looked at besides on every change of Raft's metrics: a leader cut
/// off from the others sees no change when its lease runs out.
const ROLE_CHECK_EVERY: Duration = Duration::from_millis(500);

/// Starts the replica's duties until the broker stops: registering again whenever its role
/// changes, and copying the leader's state while it follows.
pub(crate) fn spawn(broker: Arc<Broker>) {
    tokio::spawn(copy_leader_state(broker.clone()));
    let Some(member) = &broker.replica else {
        return;
    };
    let mut metrics = member.replica.raft().metrics();
    tokio::spawn(async move {
        let mut led = None;
        let mut ticker = tokio::time::interval(ROLE_CHECK_EVERY);
        loop {
            let Some(member) = &broker.replica else {
                return;
            };
            let leads = member.leads();
            if led != Some(leads) {
                if led.is_some() {
                    info!(
                        leads,
                        broker_id = member.broker_id(),
                        "role in the replicated group changed; registering again"
                    );
                }
                led = Some(leads);
                broker.registrar.request();
            }
            tokio::select! {
                _ = broker.stopping.cancelled() => return,
                _ = ticker.tick() => {}
                changed = metrics.changed() => {
                    if changed.is_err() {
                        return;
                    }
                }
            }
        }
    });
}

/// While this replica follows: every [`COPY_EVERY`], the topics, groups, consumer offsets
/// and delay progress of the broker the name servers list as the group's master.
async fn copy_leader_state(broker: Arc<Broker>) {
    let mut ticker = tokio::time::interval(COPY_EVERY);
    let mut failing = false;
    loop {
        tokio::select! {
            _ = broker.stopping.cancelled() => return,
            _ = ticker.tick() => {}
        }
        if broker.writes_here() {
            continue;
        }
        let Some(leader) = super::registration::master_addr(&broker).await else {
            continue;
        };
        if leader == broker.config.advertised_addr() {
            continue;
        }
        match copy_from(&broker, &leader).await {
            Ok(()) => {
                if std::mem::take(&mut failing) {
                    info!(%leader, "copying the leader's topics and offsets again");
                }
            }
            Err(error) if !failing => {
                failing = true;
                warn!(%leader, %error, "cannot copy the leader's topics and offsets; retrying");
            }
            Err(error) => debug!(%leader, %error, "still cannot copy the leader's state"),
        }
    }
}

async fn copy_from(broker: &Broker, leader: &str) -> std::result::Result<(), String> {
    let text = |error: protocol::Error| error.to_string();
    let copying = async {
        let client = protocol::Client::connect(leader).await.map_err(text)?;
        let topics = client.get_all_topic_config().await.map_err(text)?;
        let groups = client.get_all_subscription_groups().await.map_err(text)?;
        let offsets = client.get_all_consumer_offset().await.map_err(text)?;
        let delays = client.get_all_delay_offset().await.map_err(text)?;
        Ok::<_, String>((topics, groups, offsets, delays))
    };
    let (topics, groups, offsets, delays) = tokio::time::timeout(COPY_EVERY, copying)
        .await
        .map_err(|_| format!("no answer within {COPY_EVERY:?}"))??;
    let stored = |error: crate::error::Error| error.to_string();
    if broker.topics.adopt(topics).map_err(stored)? {
        broker.registrar.request();
    }
    let ours = broker.groups.all();
    let changed: Vec<_> = groups
        .subscription_group_table
        .into_iter()
        .filter(|(name, group)| ours.get(name) != Some(group))
        .map(|(_, group)| group)
        .collect();
    if !changed.is_empty() {
        broker.groups.upsert_all(changed).map_err(stored)?;
    }
    broker.offsets.adopt(offsets.offset_table);
    broker.schedule.adopt(delays.offset_table);
    Ok(())
}
