//! Keeps docs/compatibility.md true: every request code the broker or the name server
//! dispatches must appear in its table as Supported or Partial for that server, and every
//! code the table marks so must be dispatched. "Dispatched" is measured, not declared: each
//! known code is sent with no header and no body, and a code answered with anything but
//! REQUEST_CODE_NOT_SUPPORTED counts.

use std::collections::BTreeSet;

use protocol::{RemotingCommand, RequestCode, ResponseCode};

use crate::broker::Broker;
use crate::config::NamesrvConfig;
use crate::namesrv::Namesrv;
use crate::server::{Channel, Service};

const TABLE: &str = include_str!("../../../../../docs/compatibility.md");

/// (code, server, status) of each row `| code | NAME | server | status | notes |`.
fn table_rows() -> Vec<(i32, String, String)> {
    TABLE
        .lines()
        .filter_map(|line| {
            let cells: Vec<&str> = line.split('|').map(str::trim).collect();
            // ["", code, name, server, status, notes, ""]
            let code = cells.get(1)?.parse::<i32>().ok()?;
            Some((code, cells.get(3)?.to_string(), cells.get(4)?.to_string()))
        })
        .collect()
}

fn documented(server: &str) -> BTreeSet<i32> {
    table_rows()
        .into_iter()
        .filter(|(_, s, status)| s == server && (status == "Supported" || status == "Partial"))
        .map(|(code, _, _)| code)
        .collect()
}

async fn dispatched<S: Service>(service: &S) -> BTreeSet<i32> {
    let (channel, _outbound) = Channel::detached(1);
    let mut codes = BTreeSet::new();
    for code in RequestCode::ALL {
        let request = RemotingCommand::request(*code, &());
        let answer = service.handle(request, &channel).await;
        let refused = answer
            .as_ref()
            .is_some_and(|a| a.command.code == ResponseCode::RequestCodeNotSupported.as_i32());
        if !refused {
            codes.insert(code.as_i32());
        }
    }
    codes
}

fn assert_same(server: &str, dispatched: &BTreeSet<i32>, documented: &BTreeSet<i32>) {
    let undocumented: Vec<_> = dispatched.difference(documented).collect();
    let missing: Vec<_> = documented.difference(dispatched).collect();
    assert!(
        undocumented.is_empty() && missing.is_empty(),
        "docs/compatibility.md is out of date for the {server}: codes answered but not listed \
         as Supported/Partial: {undocumented:?}; listed but answered \
         REQUEST_CODE_NOT_SUPPORTED: {missing:?}"
    );
}

#[tokio::test]
async fn the_table_lists_exactly_the_codes_the_broker_answers() {
    let dir = tempfile::tempdir().unwrap();
    let broker = Broker::open_default(dir.path());
    let answered = dispatched(broker.as_ref()).await;
    assert_same("broker", &answered, &documented("broker"));
    broker.begin_shutdown();
}

#[tokio::test]
async fn the_table_lists_exactly_the_codes_the_name_server_answers() {
    let namesrv = Namesrv::new(NamesrvConfig::default());
    let answered = dispatched(namesrv.as_ref()).await;
    assert_same("name server", &answered, &documented("name server"));
}

#[test]
fn every_row_names_a_known_code_and_status() {
    let rows = table_rows();
    assert!(
        rows.len() > 40,
        "the table has too few rows: {}",
        rows.len()
    );
    for (code, server, status) in rows {
        assert!(
            RequestCode::from_i32(code).is_some(),
            "row {code} is not a RocketMQ request code"
        );
        assert!(
            ["broker", "name server", "client"].contains(&server.as_str()),
            "row {code}: unknown server {server:?}"
        );
        assert!(
            ["Supported", "Partial", "Not yet"].contains(&status.as_str()),
            "row {code}: unknown status {status:?}"
        );
    }
}
