//! The Rocketry side of the mirror: which queue each Kafka partition goes to, where that
//! queue's copy ends, and the writes.

use std::time::Duration;

use message::{encode_batch, property, Message, Properties};
use protocol::body::MASTER_ID;
use protocol::client::{PullResult, PullStatus};
use protocol::header::{
    pull_sys_flag, CreateTopicRequestHeader, PullMessageRequestHeader, SendMessageRequestHeader,
};
use protocol::{Client, ResponseCode};

use crate::record::{source_position, SourcePosition};
use crate::{Error, Result};

/// The consumer group named in the migration's own pulls (it never commits under it).
const READER_GROUP: &str = "rocketry-mirror";

/// One queue of the target topic.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Queue {
    pub broker_name: String,
    pub broker_addr: String,
    pub queue_id: i32,
}

/// The target topic, with Kafka partition `p` mapped to the `p`-th of its write queues in
/// (broker name, queue id) order.
#[derive(Debug, Clone)]
pub struct Target {
    pub topic: String,
    pub queues: Vec<Queue>,
}

impl Target {
    /// Finds `topic` through the name server at `namesrv`, creating it with `partitions`
    /// queues on the first master broker when it does not exist yet.
    pub async fn open(namesrv: &str, topic: &str, partitions: usize) -> Result<Target> {
        Target::resolve(namesrv, topic, partitions, true).await
    }

    /// Finds `topic` through the name server at `namesrv`; an error when it does not exist.
    pub async fn find(namesrv: &str, topic: &str, partitions: usize) -> Result<Target> {
        Target::resolve(namesrv, topic, partitions, false).await
    }

    async fn resolve(
        namesrv: &str,
        topic: &str,
        partitions: usize,
        create_missing: bool,
    ) -> Result<Target> {
        let namesrv = Client::connect(namesrv).await?;
        let queues = match routed_queues(&namesrv, topic).await? {
            Some(queues) => queues,
            None if create_missing => {
                create(&namesrv, topic, partitions).await?;
                wait_routed(&namesrv, topic, partitions).await?
            }
            None => {
                return Err(Error::Topology(format!(
                    "the Rocketry topic {topic} does not exist"
                )))
            }
        };
        if queues.len() < partitions {
            return Err(Error::Topology(format!(
                "the Rocketry topic {topic} has {} write queues and the Kafka topic {partitions} \
                 partitions; give it at least {partitions} (partition p goes to queue p)",
                queues.len()
            )));
        }
        Ok(Target {
            topic: topic.to_owned(),
            queues: queues.into_iter().take(partitions).collect(),
        })
    }

    /// The queue partition `partition` is copied to.
    pub fn queue(&self, partition: i32) -> &Queue {
        &self.queues[partition as usize]
    }

    /// The source position of the last message in `queue`, or `None` when it is empty. A
    /// queue whose last message did not come from the mirror is an error: the mirror must
    /// own its queues to resume exactly.
    pub async fn last_position(
        &self,
        client: &Client,
        queue: &Queue,
    ) -> Result<Option<SourcePosition>> {
        let max = client.get_max_offset(&self.topic, queue.queue_id).await?;
        if max == 0 {
            return Ok(None);
        }
        self.position_at(client, queue, max - 1).await.map(Some)
    }

    /// The first queue offset of `queue` whose message was copied from `source_offset` or a
    /// later one; the queue's end when there is none. The mirror writes a partition in order,
    /// so source offsets grow along the queue and a binary search finds it.
    pub async fn first_at_or_after(
        &self,
        client: &Client,
        queue: &Queue,
        source_offset: i64,
    ) -> Result<i64> {
        let mut low = client.get_min_offset(&self.topic, queue.queue_id).await?;
        let mut high = client.get_max_offset(&self.topic, queue.queue_id).await?;
        while low < high {
            let middle = low + (high - low) / 2;
            if self.position_at(client, queue, middle).await?.offset < source_offset {
                low = middle + 1;
            } else {
                high = middle;
            }
        }
        Ok(low)
    }

    /// The source offsets among the last `count` messages of `queue`: what a writer whose
    /// last write there had an unknown outcome checks before writing it again.
    pub async fn recent_source_offsets(
        &self,
        client: &Client,
        queue: &Queue,
        count: i64,
    ) -> Result<std::collections::HashSet<i64>> {
        let max = client.get_max_offset(&self.topic, queue.queue_id).await?;
        let mut offset = client
            .get_min_offset(&self.topic, queue.queue_id)
            .await?
            .max(max - count);
        let mut found = std::collections::HashSet::new();
        while offset < max {
            let pulled = self.pull(client, queue, offset, 32).await?;
            if pulled.status != PullStatus::Found {
                break;
            }
            for message in pulled.messages()? {
                if let Some(position) = source_position(message.properties_text()?) {
                    found.insert(position.offset);
                }
            }
            offset = pulled.header.next_begin_offset;
        }
        Ok(found)
    }

    /// The source position of the message at `queue_offset`.
    pub(crate) async fn position_at(
        &self,
        client: &Client,
        queue: &Queue,
        queue_offset: i64,
    ) -> Result<SourcePosition> {
        let pulled = self.pull(client, queue, queue_offset, 1).await?;
        let unreadable = |why: &str| {
            Error::Topology(format!(
                "the message of {} queue {} at offset {queue_offset} {why}",
                self.topic, queue.queue_id,
            ))
        };
        if pulled.status != PullStatus::Found {
            return Err(unreadable(&format!("cannot be read ({:?})", pulled.status)));
        }
        let messages = pulled.messages()?;
        let first = messages
            .first()
            .ok_or_else(|| unreadable("came back empty"))?;
        source_position(first.properties_text()?)
            .ok_or_else(|| unreadable("was not written by the mirror"))
    }

    /// Up to `max` messages of `queue` from `queue_offset` on.
    pub async fn pull(
        &self,
        client: &Client,
        queue: &Queue,
        queue_offset: i64,
        max: i32,
    ) -> Result<PullResult> {
        Ok(client
            .pull_message(&PullMessageRequestHeader {
                consumer_group: READER_GROUP.into(),
                topic: self.topic.clone(),
                queue_id: queue.queue_id,
                queue_offset,
                max_msg_nums: max,
                // The subscription rides in the request: the group has no consumer registered.
                sys_flag: pull_sys_flag::SUBSCRIPTION,
                subscription: Some("*".into()),
                commit_offset: 0,
                suspend_timeout_millis: 0,
                sub_version: 0,
                broker_name: Some(queue.broker_name.clone()),
                ..Default::default()
            })
            .await?)
    }

    /// Appends `messages` to `queue` as one batch, waiting for the broker's store.
    pub async fn send(&self, client: &Client, queue: &Queue, messages: &[Message]) -> Result<()> {
        let mut properties = Properties::new();
        properties.insert(property::WAIT, "true");
        let header = SendMessageRequestHeader {
            producer_group: READER_GROUP.into(),
            topic: self.topic.as_str().into(),
            default_topic: "TBW102".into(),
            default_topic_queue_nums: 4,
            queue_id: queue.queue_id,
            born_timestamp: crate::now_ms(),
            properties: Some(properties.encode()),
            batch: Some(true),
            broker_name: Some(queue.broker_name.as_str().into()),
            ..Default::default()
        };
        client.send_batch(header, encode_batch(messages)?).await?;
        Ok(())
    }
}

/// The topic's write queues in (broker name, queue id) order, or `None` when it has no route.
async fn routed_queues(namesrv: &Client, topic: &str) -> Result<Option<Vec<Queue>>> {
    let route = match namesrv.get_route_info(topic).await {
        Ok(route) => route,
        Err(protocol::Error::Remote { code, .. })
            if code == ResponseCode::TopicNotExist.as_i32() =>
        {
            return Ok(None)
        }
        Err(e) => return Err(e.into()),
    };
    let mut datas = route.queue_datas.clone();
    datas.sort_by(|a, b| a.broker_name.cmp(&b.broker_name));
    let mut queues = Vec::new();
    for data in datas {
        let Some(addr) = route
            .broker_datas
            .iter()
            .find(|b| b.broker_name == data.broker_name)
            .and_then(|b| b.broker_addrs.get(&MASTER_ID))
        else {
            continue;
        };
        queues.extend((0..data.write_queue_nums).map(|queue_id| Queue {
            broker_name: data.broker_name.clone(),
            broker_addr: addr.clone(),
            queue_id,
        }));
    }
    Ok(Some(queues))
}

async fn create(namesrv: &Client, topic: &str, partitions: usize) -> Result<()> {
    let cluster = namesrv.get_cluster_info().await?;
    let addr = cluster
        .broker_addr_table
        .values()
        .find_map(|b| b.broker_addrs.get(&MASTER_ID))
        .ok_or_else(|| Error::Topology("the name server knows no master broker".into()))?;
    Client::connect(addr.as_str())
        .await?
        .create_topic(&CreateTopicRequestHeader::read_write(
            topic,
            partitions as i32,
        ))
        .await?;
    Ok(())
}

async fn wait_routed(namesrv: &Client, topic: &str, partitions: usize) -> Result<Vec<Queue>> {
    for _ in 0..300 {
        if let Some(queues) = routed_queues(namesrv, topic).await? {
            if queues.len() >= partitions {
                return Ok(queues);
            }
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    Err(Error::Topology(format!(
        "the name server does not route {topic} 30 s after it was created"
    )))
}
