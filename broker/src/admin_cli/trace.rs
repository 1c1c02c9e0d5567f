//! `rocketry admin message trace --id ID`: what traced clients recorded about one message
//! (its send, each consumer group's deliveries, a transaction's decision), found through the
//! key index of the trace topic as mqadmin's `queryMsgTraceById` finds it.

use anyhow::Result;
use protocol::body::trace::{self, TraceKind};
use protocol::Client;

use super::table::Table;
use super::{connect, millis, route_masters};

/// mqadmin's default for how many trace messages one query may return.
const MAX_TRACE_MESSAGES: i32 = 64;

pub async fn show(namesrv: &Client, msg_id: &str, trace_topic: &str) -> Result<Table> {
    let route = namesrv.get_route_info(trace_topic).await?;
    let mut table = Table::new(["type", "group", "client host", "time", "cost", "status"]);
    let mut rows = Vec::new();
    for (_, addr) in route_masters(&route) {
        let body = connect(&addr)
            .await?
            .query_message(trace_topic, msg_id, MAX_TRACE_MESSAGES, false)
            .await?;
        for message in protocol::body::decode_pulled_messages(&body)? {
            let client_host = message.born_host().ip().to_string();
            for record in trace::decode(message.body(), Some(msg_id)) {
                let (kind, status) = match record.kind {
                    // SubAfter holds the outcome; SubBefore only says a delivery began.
                    TraceKind::SubBefore => continue,
                    TraceKind::Pub => ("Pub", outcome(record.success)),
                    TraceKind::SubAfter => ("Sub", outcome(record.success)),
                    TraceKind::EndTransaction => ("EndTransaction", record.transaction_state),
                    TraceKind::Recall => ("Recall", outcome(record.success)),
                };
                rows.push((
                    record.timestamp.unwrap_or(0),
                    [
                        kind.to_string(),
                        record.group,
                        client_host.clone(),
                        millis(record.timestamp.unwrap_or(0)),
                        record
                            .cost_ms
                            .map_or_else(|| "-".into(), |ms| format!("{ms}ms")),
                        status,
                    ],
                ));
            }
        }
    }
    // Trace messages come back in index order, not in the order things happened.
    rows.sort_by_key(|(time, _)| *time);
    for (_, row) in rows {
        table.row(row);
    }
    Ok(table)
}

fn outcome(success: Option<bool>) -> String {
    match success {
        Some(true) => "success".into(),
        Some(false) => "failed".into(),
        None => "-".into(),
    }
}
