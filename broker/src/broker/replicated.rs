//! A broker that is one replica of a Raft-replicated group (DLedger mode, docs/replication.md):
//! its appends go through the leader's writes, it registers as master (brokerId 0) while it
//! leads and as a slave (its replica number plus one) otherwise, and it registers again as
//! soon as its role changes, so clients find a new leader through the name server.
//!
//! Messages are Raft's; the broker's own state is not. As Apache's slaves do, a follower
//! copies its leader's topics, subscription groups, consumer offsets and delay-level progress
//! every few seconds, so a replica that takes over serves the same topics and resumes each
//! group about where it was (a group may re-read what it consumed in the last few seconds).

use std::collections::HashMap;
use std::future::Future;
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use openraft::async_runtime::WatchReceiver;
use openraft::Instant as _;
use protocol::RemotingCommand;
use store::{AppendResult, AppendedMessage, Durable, PutMessage, WaitWith};
use tracing::{debug, info, warn};

use super::Broker;
use crate::error::{Error, Result};
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
    /// The brokers of the replicas that led, by replica number, as each told.
    broker_addrs: parking_lot::Mutex<HashMap<u64, String>>,
    /// The connection a follower passes sends on to the leader by, with its address.
    to_leader: parking_lot::Mutex<Option<(String, protocol::Client)>>,
    /// Set while this leader hands its role over: openraft takes no more writes from it,
    /// so its sends go on to the replica taking over, once it does.
    handing_over: AtomicBool,
    /// Sends passed on to the leader since start: an old leader's count stands still once
    /// its producers have found the new one (the operator restarts it only then).
    passed_on: AtomicU64,
}

/// A replica's part in its group, for the runtime info.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Standing {
    pub leads: bool,
    /// Raft's term: it moves on with every election, a transfer's included.
    pub term: u64,
    pub leader: Option<u64>,
    pub passed_on: u64,
}

impl Member {
    pub(crate) fn new(replica: Replica, self_id: u64) -> Member {
        Member {
            replica,
            self_id,
            broker_addrs: parking_lot::Mutex::new(HashMap::new()),
            to_leader: parking_lot::Mutex::new(None),
            handing_over: AtomicBool::new(false),
            passed_on: AtomicU64::new(0),
        }
    }

    pub(crate) fn standing(&self) -> Standing {
        let metrics = self.replica.raft().metrics().borrow_watched().clone();
        Standing {
            leads: self.leads(),
            term: metrics.current_term,
            leader: metrics.current_leader,
            passed_on: self.passed_on.load(Ordering::Relaxed),
        }
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
        if self.handing_over.load(Ordering::Acquire) {
            return false;
        }
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

    /// Hands leadership to replica `to`, or to the follower whose log is furthest along,
    /// and answers once it leads: openraft's leadership transfer, in which the target starts
    /// its election at once instead of after an election timeout, so writes pause only for
    /// that election. Refused on a replica that does not lead.
    pub(crate) async fn transfer_leader(&self, to: Option<u64>) -> Result<u64> {
        let raft = self.replica.raft();
        let metrics = raft.metrics().borrow_watched().clone();
        let me = self.self_id;
        if !self.leads() {
            return Err(Error::Replication(match metrics.current_leader {
                Some(leader) if leader != me => {
                    format!("n{me} does not lead its group; n{leader} does")
                }
                _ => format!("n{me} does not lead its group, and no replica does now"),
            }));
        }
        let followers: Vec<u64> = metrics
            .membership_config
            .voter_ids()
            .filter(|id| *id != me)
            .collect();
        let target = match to {
            Some(to) if followers.contains(&to) => to,
            Some(to) => {
                return Err(Error::Replication(format!(
                    "n{to} is not a follower in this group (they are {})",
                    names(&followers)
                )))
            }
            None => followers
                .iter()
                .copied()
                .max_by_key(|id| {
                    let matched = metrics.replication.as_ref().and_then(|r| r.get(id));
                    matched.cloned().flatten().map(|log| log.index)
                })
                .ok_or_else(|| Error::Replication(format!("n{me} has no follower")))?,
        };
        info!(to = target, "transferring leadership");
        self.handing_over.store(true, Ordering::Release);
        let handed = async {
            raft.trigger()
                .transfer_leader(target)
                .await
                .map_err(|fatal| Error::Replication(fatal.to_string()))?;
            raft.wait(Some(TRANSFER_WAIT))
                .current_leader(target, "leadership transfer")
                .await
                .map_err(|error| {
                    Error::Replication(format!("n{target} did not take over: {error}"))
                })
        }
        .await;
        self.handing_over.store(false, Ordering::Release);
        handed.map(|_| target)
    }

    /// The leader's broker, when another replica leads or, around an election or a
    /// transfer, within an election timeout; asked of the leader's Raft once per leader.
    async fn leader_broker_addr(&self) -> Option<String> {
        let metrics = self
            .replica
            .raft()
            .wait(Some(ELECTION_TIMEOUT_MAX))
            .metrics(
                |m| match m.current_leader {
                    Some(leader) if leader != self.self_id => true,
                    // Still this one while it hands over: wait for the one taking over.
                    Some(_) => !self.handing_over.load(Ordering::Acquire),
                    None => false,
                },
                "a leader",
            )
            .await
            .ok()?;
        let leader = metrics.current_leader.filter(|id| *id != self.self_id)?;
        if let Some(addr) = self.broker_addrs.lock().get(&leader) {
            return Some(addr.clone());
        }
        let node = metrics.membership_config.membership().get_node(&leader)?;
        let raft_addr = self.replica.peer_addrs().of(leader, node);
        match crate::replication::broker_addr_of(&raft_addr).await {
            Ok(addr) => {
                self.broker_addrs.lock().insert(leader, addr.clone());
                Some(addr)
            }
            Err(error) => {
                debug!(leader, %error, "cannot ask the leader where its broker is");
                None
            }
        }
    }

    /// A connection to the leader's broker.
    async fn leader_client(&self) -> Option<(String, protocol::Client)> {
        let addr = self.leader_broker_addr().await?;
        if let Some((open, client)) = &*self.to_leader.lock() {
            if *open == addr {
                return Some((addr, client.clone()));
            }
        }
        let client = match protocol::Client::connect(addr.as_str()).await {
            Ok(client) => client,
            Err(error) => {
                debug!(%addr, %error, "cannot reach the leader's broker");
                return None;
            }
        };
        *self.to_leader.lock() = Some((addr.clone(), client.clone()));
        Some((addr, client))
    }

    /// Passes a send that reached this replica while it follows on to the leader, and
    /// returns the leader's answer; `None` when this replica leads, the request was passed
    /// on already, or the leader cannot be reached (the send is then answered here, as any
    /// send to a follower: SERVICE_NOT_AVAILABLE). Clients find a new leader through the
    /// name server only when they next look their routes up (every 30 s by default);
    /// until then every send to the old leader would fail. A request is passed on once at
    /// most: two replicas that each take the other for the leader, as can happen for a
    /// moment around an election, would otherwise pass it back and forth.
    pub(crate) async fn forward(&self, request: &RemotingCommand) -> Option<RemotingCommand> {
        if request.is_forwarded() || self.leads() {
            return None;
        }
        let (addr, client) = self.leader_client().await?;
        let mut forwarded = request.clone();
        forwarded.mark_forwarded();
        match client.invoke(forwarded, FORWARD_TIMEOUT).await {
            Ok(mut answer) => {
                answer.opaque = request.opaque;
                self.passed_on.fetch_add(1, Ordering::Relaxed);
                Some(answer)
            }
            Err(error) => {
                debug!(leader = %addr, %error, "passing a send on to the leader failed");
                self.to_leader.lock().take();
                None
            }
        }
    }

    pub(crate) async fn stop(&self) -> Result<()> {
        self.replica.stop().await
    }

    pub(crate) async fn restart_requested(&self) {
        self.replica.restart_requested().await
    }
}

/// How long a send passed on to the leader may take: the Java client's own send timeout.
const FORWARD_TIMEOUT: Duration = Duration::from_secs(3);

/// How long a leadership transfer may take: the target's election, with room for a loaded
/// machine.
const TRANSFER_WAIT: Duration = Duration::from_secs(10);

fn names(ids: &[u64]) -> String {
    let names: Vec<String> = ids.iter().map(|id| format!("n{id}")).collect();
    names.join(", ")
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
