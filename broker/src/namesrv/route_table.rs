//! What the name server knows: which brokers live in which cluster and group, at which
//! addresses, and which queues each topic has on each broker group. Brokers keep it true by
//! registering every 30 s; silent brokers expire.
//!
//! An operator may take write permission away from a broker group here (mqadmin
//! `wipeWritePerm`, to drain it before a restart) and give it back. The wipe lasts while the
//! broker keeps registering the same topic table: as in RocketMQ 5, a registration only
//! rewrites a topic's queues when the broker's DataVersion differs from its last one (or
//! the topic is new to the group), so the 30 s re-registration does not undo it, while a
//! changed topic table, or a broker that reconnects after a restart, does.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::time::{Duration, Instant};

use protocol::body::{perm, DataVersion};

/// `PermName` bits in the width [`QueueLayout`] keeps them.
const READ: u32 = perm::READ as u32;
const WRITE: u32 = perm::WRITE as u32;

/// Perm and queue counts of one topic on one broker group.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct QueueLayout {
    pub read_queue_nums: u32,
    pub write_queue_nums: u32,
    pub perm: u32,
    pub topic_sys_flag: u32,
}

/// One broker group (all brokers sharing a brokerName): its cluster and the address of
/// each member by broker id (0 is the master).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BrokerGroup {
    pub cluster: String,
    pub broker_name: String,
    pub addrs: BTreeMap<u64, String>,
}

/// One registration, as the broker sent it.
#[derive(Debug, Clone)]
pub struct Registration {
    pub cluster: String,
    pub broker_name: String,
    pub broker_addr: String,
    pub broker_id: u64,
    pub ha_server_addr: String,
    /// The broker's whole topic table; for a master it replaces what the name server had.
    pub topics: Vec<(String, QueueLayout)>,
    /// The version of that table; the same version as last time means nothing changed.
    pub data_version: DataVersion,
    /// Identifies the connection it came over, so a closed connection drops the broker.
    pub channel_id: u64,
}

#[derive(Debug)]
struct LiveBroker {
    broker_name: String,
    broker_id: u64,
    last_seen: Instant,
    channel_id: u64,
    ha_server_addr: String,
    data_version: DataVersion,
}

/// A topic's route: which groups serve it, with what queues.
#[derive(Debug, Clone, PartialEq)]
pub struct Route {
    pub queues: Vec<(String, QueueLayout)>,
    pub groups: Vec<BrokerGroup>,
}

#[derive(Debug, Default)]
pub struct RouteTable {
    clusters: BTreeMap<String, BTreeSet<String>>,
    groups: BTreeMap<String, BrokerGroup>,
    live: HashMap<String, LiveBroker>,
    topics: BTreeMap<String, BTreeMap<String, QueueLayout>>,
}

impl RouteTable {
    /// Records a registration; returns the master's address of the group (for slaves).
    pub fn register(&mut self, registration: Registration, now: Instant) -> Option<String> {
        let Registration {
            cluster,
            broker_name,
            broker_addr,
            broker_id,
            ha_server_addr,
            topics,
            data_version,
            channel_id,
        } = registration;
        // Same broker, same id, same table version: keep what the name server holds for
        // topics it already lists, which may carry a wiped write permission.
        let unchanged = self.live.get(&broker_addr).is_some_and(|live| {
            live.broker_name == broker_name
                && live.broker_id == broker_id
                && live.data_version == data_version
        });
        self.clusters
            .entry(cluster.clone())
            .or_default()
            .insert(broker_name.clone());
        let group = self
            .groups
            .entry(broker_name.clone())
            .or_insert_with(|| BrokerGroup {
                cluster: cluster.clone(),
                broker_name: broker_name.clone(),
                addrs: BTreeMap::new(),
            });
        group.cluster = cluster;
        // One address holds one id: a broker restarted with a new id replaces its old entry.
        group
            .addrs
            .retain(|id, addr| *addr != broker_addr || *id == broker_id);
        group.addrs.insert(broker_id, broker_addr.clone());

        if broker_id == 0 {
            let listed: BTreeSet<&str> = topics.iter().map(|(name, _)| name.as_str()).collect();
            for (topic, groups) in self.topics.iter_mut() {
                if !listed.contains(topic.as_str()) {
                    groups.remove(&broker_name);
                }
            }
            for (topic, layout) in topics {
                let groups = self.topics.entry(topic).or_default();
                if !(unchanged && groups.contains_key(&broker_name)) {
                    groups.insert(broker_name.clone(), layout);
                }
            }
            self.topics.retain(|_, groups| !groups.is_empty());
        }
        self.live.insert(
            broker_addr,
            LiveBroker {
                broker_name: broker_name.clone(),
                broker_id,
                last_seen: now,
                channel_id,
                ha_server_addr,
                data_version,
            },
        );
        let master = self.groups.get(&broker_name)?.addrs.get(&0)?;
        (broker_id != 0).then(|| master.clone())
    }

    /// The HA address a live broker registered with.
    pub fn ha_server_addr(&self, broker_addr: &str) -> Option<&str> {
        self.live
            .get(broker_addr)
            .map(|live| live.ha_server_addr.as_str())
    }

    pub fn unregister(&mut self, broker_name: &str, broker_addr: &str, broker_id: u64) {
        if let Some(live) = self.live.get(broker_addr) {
            if live.broker_name == broker_name && live.broker_id == broker_id {
                self.remove_broker(broker_addr);
            }
        }
    }

    /// Drops brokers silent for longer than `timeout`; returns their addresses.
    pub fn expire(&mut self, now: Instant, timeout: Duration) -> Vec<String> {
        let stale: Vec<String> = self
            .live
            .iter()
            .filter(|(_, live)| now.duration_since(live.last_seen) > timeout)
            .map(|(addr, _)| addr.clone())
            .collect();
        for addr in &stale {
            self.remove_broker(addr);
        }
        stale
    }

    /// Drops the brokers that registered over a connection that has closed.
    pub fn channel_closed(&mut self, channel_id: u64) -> Vec<String> {
        let gone: Vec<String> = self
            .live
            .iter()
            .filter(|(_, live)| live.channel_id == channel_id)
            .map(|(addr, _)| addr.clone())
            .collect();
        for addr in &gone {
            self.remove_broker(addr);
        }
        gone
    }

    fn remove_broker(&mut self, broker_addr: &str) {
        let Some(live) = self.live.remove(broker_addr) else {
            return;
        };
        let name = live.broker_name;
        let (mut group_empty, mut masterless) = (false, false);
        if let Some(group) = self.groups.get_mut(&name) {
            group.addrs.retain(|_, addr| addr != broker_addr);
            group_empty = group.addrs.is_empty();
            masterless = !group.addrs.contains_key(&0);
        }
        // Queues are published by the master; without one they cannot be written, and
        // without any member they cannot be read either. A replicated group's new leader may
        // have registered as master before the old one's connection closed or expired: its
        // queues stay.
        if (live.broker_id == 0 && masterless) || group_empty {
            for groups in self.topics.values_mut() {
                groups.remove(&name);
            }
            self.topics.retain(|_, groups| !groups.is_empty());
        }
        if group_empty {
            if let Some(group) = self.groups.remove(&name) {
                if let Some(names) = self.clusters.get_mut(&group.cluster) {
                    names.remove(&name);
                    if names.is_empty() {
                        self.clusters.remove(&group.cluster);
                    }
                }
            }
        }
    }

    /// The route of `topic`, if some live group serves it.
    pub fn route(&self, topic: &str) -> Option<Route> {
        let queues = self.topics.get(topic)?;
        let groups: Vec<BrokerGroup> = queues
            .keys()
            .filter_map(|name| self.groups.get(name))
            .filter(|group| !group.addrs.is_empty())
            .cloned()
            .collect();
        if groups.is_empty() {
            return None;
        }
        Some(Route {
            queues: queues
                .iter()
                .map(|(name, layout)| (name.clone(), *layout))
                .collect(),
            groups,
        })
    }

    pub fn clusters(&self) -> &BTreeMap<String, BTreeSet<String>> {
        &self.clusters
    }

    pub fn groups(&self) -> &BTreeMap<String, BrokerGroup> {
        &self.groups
    }

    pub fn topic_names(&self) -> impl Iterator<Item = &String> {
        self.topics.keys()
    }

    /// Topics served by any group of `cluster`.
    pub fn topics_of_cluster(&self, cluster: &str) -> Vec<String> {
        let Some(names) = self.clusters.get(cluster) else {
            return Vec::new();
        };
        self.topics
            .iter()
            .filter(|(_, groups)| groups.keys().any(|name| names.contains(name)))
            .map(|(topic, _)| topic.clone())
            .collect()
    }

    /// Takes write permission from every queue of the broker group `broker_name`
    /// (WIPE_WRITE_PERM_OF_BROKER); returns how many topics it touched.
    pub fn wipe_write_perm(&mut self, broker_name: &str) -> usize {
        self.change_perm(broker_name, |bits| bits & !WRITE)
    }

    /// Gives write permission back (ADD_WRITE_PERM_OF_BROKER). Like RocketMQ, this sets
    /// read+write rather than adding the write bit, so a wiped `TBW102` comes back as 6,
    /// not 7 (the route's inherit bit is not used by clients). Returns how many topics it
    /// touched.
    pub fn add_write_perm(&mut self, broker_name: &str) -> usize {
        self.change_perm(broker_name, |_| READ | WRITE)
    }

    /// Counts every topic the group serves, changed or not, as RocketMQ counts them.
    fn change_perm(&mut self, broker_name: &str, change: impl Fn(u32) -> u32) -> usize {
        let mut count = 0;
        for groups in self.topics.values_mut() {
            if let Some(layout) = groups.get_mut(broker_name) {
                layout.perm = change(layout.perm);
                count += 1;
            }
        }
        count
    }

    /// Removes a topic everywhere, or only from the groups of `cluster`.
    pub fn delete_topic(&mut self, topic: &str, cluster: Option<&str>) {
        match cluster.and_then(|cluster| self.clusters.get(cluster)) {
            Some(names) => {
                if let Some(groups) = self.topics.get_mut(topic) {
                    groups.retain(|name, _| !names.contains(name));
                    if groups.is_empty() {
                        self.topics.remove(topic);
                    }
                }
            }
            None if cluster.is_none() => {
                self.topics.remove(topic);
            }
            None => {}
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const LAYOUT: QueueLayout = QueueLayout {
        read_queue_nums: 4,
        write_queue_nums: 4,
        perm: 6,
        topic_sys_flag: 0,
    };

    fn version(counter: i64) -> DataVersion {
        DataVersion {
            counter,
            ..DataVersion::default()
        }
    }

    fn perm_of(table: &RouteTable, topic: &str, broker_name: &str) -> u32 {
        let route = table.route(topic).unwrap();
        let (_, layout) = route
            .queues
            .iter()
            .find(|(name, _)| name == broker_name)
            .unwrap();
        layout.perm
    }

    fn registration(name: &str, addr: &str, id: u64, topics: &[&str]) -> Registration {
        Registration {
            cluster: "C".into(),
            broker_name: name.into(),
            broker_addr: addr.into(),
            broker_id: id,
            ha_server_addr: String::new(),
            topics: topics.iter().map(|t| (t.to_string(), LAYOUT)).collect(),
            data_version: version(1),
            channel_id: 1,
        }
    }

    #[test]
    fn two_groups_serve_one_topic() {
        let mut table = RouteTable::default();
        let now = Instant::now();
        table.register(registration("a", "h1:10911", 0, &["T", "TBW102"]), now);
        table.register(registration("b", "h2:10911", 0, &["T"]), now);
        let route = table.route("T").unwrap();
        assert_eq!(route.groups.len(), 2);
        assert_eq!(route.queues.len(), 2);
        assert_eq!(table.route("TBW102").unwrap().groups.len(), 1);
        assert!(table.route("other").is_none());
        assert_eq!(table.topics_of_cluster("C"), vec!["T", "TBW102"]);
    }

    #[test]
    fn a_reregistration_drops_topics_the_broker_no_longer_has() {
        let mut table = RouteTable::default();
        let now = Instant::now();
        table.register(registration("a", "h1:10911", 0, &["T", "U"]), now);
        table.register(registration("a", "h1:10911", 0, &["T"]), now);
        assert!(table.route("U").is_none());
        assert!(table.route("T").is_some());
    }

    #[test]
    fn silent_brokers_expire_and_take_their_routes() {
        let mut table = RouteTable::default();
        let start = Instant::now();
        table.register(registration("a", "h1:10911", 0, &["T"]), start);
        table.register(
            registration("b", "h2:10911", 0, &["T"]),
            start + Duration::from_secs(100),
        );
        let gone = table.expire(start + Duration::from_secs(130), Duration::from_secs(120));
        assert_eq!(gone, vec!["h1:10911"]);
        let route = table.route("T").unwrap();
        assert_eq!(route.groups.len(), 1);
        assert_eq!(route.groups[0].broker_name, "b");
        assert!(!table.clusters()["C"].contains("a"));
    }

    #[test]
    fn a_closed_connection_drops_its_brokers() {
        let mut table = RouteTable::default();
        table.register(registration("a", "h1:10911", 0, &["T"]), Instant::now());
        assert_eq!(table.channel_closed(1), vec!["h1:10911"]);
        assert!(table.route("T").is_none());
        assert!(table.clusters().is_empty());
    }

    #[test]
    fn a_new_leader_keeps_its_queues_when_the_old_one_s_connection_closes() {
        // A replicated group: h1 led, h2 was elected and registered as master before the
        // name server saw h1's connection close (h1 was paused, then killed).
        let mut table = RouteTable::default();
        let now = Instant::now();
        table.register(registration("a", "h1:10911", 0, &["T"]), now);
        let follower = Registration {
            channel_id: 2,
            ..registration("a", "h2:10911", 2, &["T"])
        };
        table.register(follower, now);
        let leader = Registration {
            channel_id: 2,
            ..registration("a", "h2:10911", 0, &["T"])
        };
        assert_eq!(table.register(leader, now), None);
        assert_eq!(table.channel_closed(1), vec!["h1:10911"]);
        let route = table.route("T").unwrap();
        assert_eq!(
            route.groups[0].addrs.get(&0).map(String::as_str),
            Some("h2:10911")
        );
        assert_eq!(route.groups[0].addrs.len(), 1);
    }

    #[test]
    fn slaves_learn_their_master_and_do_not_publish_queues() {
        let mut table = RouteTable::default();
        let now = Instant::now();
        assert_eq!(
            table.register(registration("a", "h1:10911", 0, &["T"]), now),
            None
        );
        let master = table.register(registration("a", "h2:10911", 1, &["T", "X"]), now);
        assert_eq!(master.as_deref(), Some("h1:10911"));
        assert!(table.route("X").is_none());
        assert_eq!(table.route("T").unwrap().groups[0].addrs.len(), 2);
    }

    #[test]
    fn deleting_a_topic_in_one_cluster_keeps_it_elsewhere() {
        let mut table = RouteTable::default();
        let now = Instant::now();
        table.register(registration("a", "h1:10911", 0, &["T"]), now);
        let mut other = registration("b", "h2:10911", 0, &["T"]);
        other.cluster = "D".into();
        table.register(other, now);
        table.delete_topic("T", Some("C"));
        assert_eq!(table.route("T").unwrap().groups[0].broker_name, "b");
        table.delete_topic("T", None);
        assert!(table.route("T").is_none());
    }

    #[test]
    fn a_wipe_lasts_while_the_broker_registers_the_same_table() {
        let mut table = RouteTable::default();
        let now = Instant::now();
        table.register(registration("a", "h1:10911", 0, &["T", "U"]), now);
        table.register(registration("b", "h2:10911", 0, &["T"]), now);
        assert_eq!(table.wipe_write_perm("a"), 2);
        assert_eq!(perm_of(&table, "T", "a"), READ);
        assert_eq!(perm_of(&table, "T", "b"), READ | WRITE);
        // The periodic re-registration carries the same DataVersion.
        table.register(registration("a", "h1:10911", 0, &["T", "U"]), now);
        assert_eq!(perm_of(&table, "T", "a"), READ);
        assert_eq!(perm_of(&table, "U", "a"), READ);
        assert_eq!(table.add_write_perm("a"), 2);
        assert_eq!(perm_of(&table, "U", "a"), READ | WRITE);
        assert_eq!(table.wipe_write_perm("nobody"), 0);
    }

    #[test]
    fn a_changed_topic_table_or_a_reconnect_undoes_a_wipe_as_in_rocketmq() {
        let mut table = RouteTable::default();
        let now = Instant::now();
        table.register(registration("a", "h1:10911", 0, &["T"]), now);
        table.wipe_write_perm("a");
        let mut changed = registration("a", "h1:10911", 0, &["T", "V"]);
        changed.data_version = version(2);
        table.register(changed, now);
        assert_eq!(perm_of(&table, "T", "a"), READ | WRITE);

        table.wipe_write_perm("a");
        table.channel_closed(1);
        let mut restarted = registration("a", "h1:10911", 0, &["T", "V"]);
        restarted.data_version = version(2);
        table.register(restarted, now);
        assert_eq!(perm_of(&table, "T", "a"), READ | WRITE);
    }

    #[test]
    fn a_topic_new_to_the_group_is_listed_even_with_an_unchanged_version() {
        let mut table = RouteTable::default();
        let now = Instant::now();
        table.register(registration("a", "h1:10911", 0, &["T"]), now);
        table.delete_topic("T", None);
        table.register(registration("a", "h1:10911", 0, &["T"]), now);
        assert!(table.route("T").is_some());
    }

    #[test]
    fn add_write_perm_sets_read_write_as_rocketmq_does() {
        let mut table = RouteTable::default();
        let mut registration = registration("a", "h1:10911", 0, &["TBW102"]);
        registration.topics[0].1.perm = READ | WRITE | perm::INHERIT as u32;
        table.register(registration, Instant::now());
        table.wipe_write_perm("a");
        assert_eq!(perm_of(&table, "TBW102", "a"), READ | perm::INHERIT as u32);
        table.add_write_perm("a");
        assert_eq!(perm_of(&table, "TBW102", "a"), READ | WRITE);
    }
}
