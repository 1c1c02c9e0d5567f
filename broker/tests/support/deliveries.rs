//! The output files of the client harnesses (tests/java-harness/.../Features.java and
//! tests/go-harness): one line per delivery,
//! `index,queueId,queueOffset,reconsumeTimes,receiveMs,bornMs,tags,topic[,storeMs]`.

use std::collections::BTreeSet;
use std::path::Path;

/// One delivery as the consumer saw it.
#[derive(Debug, Clone)]
pub struct Delivery {
    pub index: u64,
    pub queue_id: i32,
    pub reconsume_times: i32,
    pub received_ms: i64,
    pub born_ms: i64,
    pub tags: String,
    pub topic: String,
    /// When the broker stored the delivered copy (the Go harness reports it).
    pub store_ms: Option<i64>,
}

/// Every delivery in a harness's output file (none when it has not written one).
pub fn deliveries(path: &Path) -> Vec<Delivery> {
    let text = std::fs::read_to_string(path).unwrap_or_default();
    text.lines()
        .filter(|line| !line.is_empty())
        .map(|line| {
            let f: Vec<&str> = line.split(',').collect();
            Delivery {
                index: f[0].parse().unwrap(),
                queue_id: f[1].parse().unwrap(),
                reconsume_times: f[3].parse().unwrap(),
                received_ms: f[4].parse().unwrap(),
                born_ms: f[5].parse().unwrap(),
                tags: f[6].to_string(),
                topic: f[7].to_string(),
                store_ms: f.get(8).map(|ms| ms.parse().unwrap()),
            }
        })
        .collect()
}

/// The distinct message indexes among `deliveries`.
pub fn indexes(deliveries: &[Delivery]) -> BTreeSet<u64> {
    deliveries.iter().map(|d| d.index).collect()
}
