//! Broker state: GET_BROKER_RUNTIME_INFO 28 (what mqadmin's clusterList and brokerStatus
//! print) and GET_BROKER_CONFIG 26.

use std::collections::BTreeMap;

use protocol::body::{self, KvTable};
use protocol::RemotingCommand;

use super::now_millis;
use crate::broker::processor::success;
use crate::broker::Broker;

pub fn runtime_info(broker: &Broker, request: &RemotingCommand) -> RemotingCommand {
    success(request).with_body(body::to_json(&KvTable {
        table: runtime_table(broker),
    }))
}

pub fn config(broker: &Broker, request: &RemotingCommand) -> RemotingCommand {
    let mut text = String::new();
    for (key, value) in broker.config.entries() {
        text.push_str(&format!("{key}={value}\n"));
    }
    success(request).with_body(text.into_bytes())
}

/// Values are strings, as in Java. Only figures Rocketry measures are present; mqadmin
/// prints blanks or zeros for the keys that are absent.
fn runtime_table(broker: &Broker) -> BTreeMap<String, String> {
    let store = &broker.store;
    let stats = broker.stats.snapshot();
    let mut table = BTreeMap::new();
    let mut put = |key: &str, value: String| {
        table.insert(key.to_string(), value);
    };
    put(
        "brokerVersionDesc",
        format!("Rocketry_{}", env!("CARGO_PKG_VERSION")),
    );
    put("brokerVersion", protocol::version::CURRENT.to_string());
    put(
        "bootTimestamp",
        (now_millis() - broker.uptime().as_millis() as i64).to_string(),
    );
    // Active means it takes writes: not stopping, and not fenced after a failed flush.
    let fence = store.write_fence();
    put(
        "brokerActive",
        (fence.is_none() && !broker.is_stopping()).to_string(),
    );
    if let Some(reason) = fence {
        // Rocketry's own key: why writes are refused (docs/reliability.md).
        put("writeFenceReason", reason.to_string());
    }
    put(
        "commitLogMinOffset",
        store.commit_log_min_offset().to_string(),
    );
    put(
        "commitLogMaxOffset",
        store.commit_log_max_offset().to_string(),
    );
    // Totals since start; the day marks are taken at UTC midnight (RocketMQ uses the
    // broker's local midnight). Rates are over the last minute; Java prints three windows
    // (10 s, 1 min, 10 min) and mqadmin reads the first.
    put("msgPutTotalTodayNow", stats.put_total.to_string());
    put("msgGetTotalTodayNow", stats.get_total.to_string());
    put(
        "msgPutTotalTodayMorning",
        stats.put_total_today_morning.to_string(),
    );
    put(
        "msgGetTotalTodayMorning",
        stats.get_total_today_morning.to_string(),
    );
    put(
        "msgPutTotalYesterdayMorning",
        stats.put_total_yesterday_morning.to_string(),
    );
    put(
        "msgGetTotalYesterdayMorning",
        stats.get_total_yesterday_morning.to_string(),
    );
    put("putTps", format!("{:.2}", stats.put_tps));
    put("getTransferredTps", format!("{:.2}", stats.get_tps));
    if let Some(percent) =
        store::bench_support::disk_used_percent(&store.config().store_path_root_dir)
    {
        put(
            "commitLogDiskRatio",
            format!("{:.4}", percent as f64 / 100.0),
        );
    }
    table
}
