//! The chart's monitoring (issue 14) with the real tools: its alert rules pass `promtool check
//! rules` and a promtool unit test of every alert; a real scrape of `rocketry standalone` passes
//! `promtool check metrics`; and a real Prometheus scraping that broker with a known backlog,
//! under the chart's rules, fires the backlog alerts and answers every dashboard panel with data.

mod support;

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use serde_json::Value;
use support::prometheus::*;
use support::*;

#[test]
fn chart_alert_rules_pass_promtool_check_and_a_unit_test_of_every_alert() {
    let Some(prometheus) = PrometheusPeer::installed() else {
        return;
    };
    let Some(rules) = chart_rules(&["tests/prometheus/alerts-values.yaml"]) else {
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("rules.yaml"), &rules).unwrap();
    let tests =
        std::fs::read_to_string(repo_root().join("tests/prometheus/alerts.test.yaml")).unwrap();
    std::fs::write(dir.path().join("alerts.test.yaml"), &tests).unwrap();

    let checked = prometheus.promtool(&["check", "rules", "rules.yaml"], "", dir.path());
    assert!(checked.status.success(), "promtool check rules failed");
    let tested = prometheus.promtool(&["test", "rules", "alerts.test.yaml"], "", dir.path());
    assert!(tested.status.success(), "promtool test rules failed");

    // Every alert has a test where it fires and one where it stays silent.
    let alerts = alert_names(&rules);
    assert_eq!(alerts.len(), 10, "{alerts:?}");
    for alert in alerts {
        let cases: Vec<&str> = tests
            .split("- eval_time:")
            .filter(|case| case.contains(&format!("alertname: {alert}\n")))
            .collect();
        assert!(
            cases.iter().any(|case| case.contains("exp_labels")),
            "no test where {alert} fires"
        );
        assert!(
            cases.iter().any(|case| case.contains("exp_alerts: []")),
            "no test where {alert} stays silent"
        );
    }
}

#[test]
fn prometheus_scraping_a_known_backlog_fires_the_backlog_alerts_and_answers_every_panel() {
    let Some(prometheus) = PrometheusPeer::installed() else {
        return;
    };
    let Some(rules) = chart_rules(&["tests/prometheus/scenario-values.yaml"]) else {
        return;
    };
    let rocketry = Rocketry::standalone("");
    let server = prometheus.start(&rules, &[&rocketry.http_addr]);
    let started = unix_seconds();
    let backlog = KnownBacklog::make(&rocketry.namesrv);
    // A second group refuses every message once with no retry allowed (maxReconsume=0), so
    // all of them go to its %DLQ% and the dead letter series exist.
    let dead_letter_group = unique("dlq_cg");
    let deliveries = tempfile::tempdir().unwrap();
    let refused = features(consume_args(
        &rocketry.namesrv,
        &backlog.topic,
        &dead_letter_group,
        &backlog.run,
        &deliveries.path().join("refused"),
        &[
            "fail=true",
            "maxReconsume=0",
            &format!("expect={}", KnownBacklog::PRODUCED),
            "timeoutMs=60000",
        ],
    ));
    assert_eq!(refused["unique"], KnownBacklog::PRODUCED, "{refused}");
    backlog.scrape_when_committed(&rocketry);
    let dead_letters = [
        ("topic", backlog.topic.as_str()),
        ("consumer_group", dead_letter_group.as_str()),
    ];
    let scrape = rocketry.scrape_until("every message dead-lettered", |scrape| {
        metric(scrape, "rocketmq_send_to_dlq_messages_total", &dead_letters)
            == Some(KnownBacklog::PRODUCED as f64)
    });

    let dir = tempfile::tempdir().unwrap();
    let linted = prometheus.promtool(&["check", "metrics"], &scrape, dir.path());
    assert!(
        linted.status.success() && linted.stdout.is_empty() && linted.stderr.is_empty(),
        "promtool check metrics found problems in the scrape:\n{scrape}"
    );

    // The litePull consumer has gone, its group's 600 messages wait, and the oldest of them is
    // past the scenario's 1 s SLO.
    for alert in [
        "RocketryBacklogWithoutConsumers",
        "RocketryConsumerLagOverSlo",
    ] {
        let firing = server.wait_until(
            &format!("{alert} firing for {}", backlog.group),
            Duration::from_secs(120),
            || {
                let alerts = server.api("/api/v1/alerts", &[]);
                alerts["data"]["alerts"]
                    .as_array()?
                    .iter()
                    .find(|a| {
                        a["labels"]["alertname"] == alert
                            && a["labels"]["consumer_group"] == backlog.group.as_str()
                            && a["labels"]["topic"] == backlog.topic.as_str()
                            && a["state"] == "firing"
                    })
                    .cloned()
            },
        );
        println!("{alert}: {firing}");
    }

    let dashboard: Value = serde_json::from_str(
        &std::fs::read_to_string(repo_root().join("charts/rocketry/dashboards/rocketry.json"))
            .unwrap(),
    )
    .unwrap();
    let start = started.to_string();
    let panels = dashboard["panels"].as_array().unwrap();
    assert!(!panels.is_empty());
    for panel in panels {
        let title = panel["title"].as_str().unwrap();
        for target in panel["targets"].as_array().unwrap() {
            let query = grafana_substituted(target["expr"].as_str().unwrap());
            // Over the scenario, as Grafana asks for a time series panel. The newest series
            // (the dead letters) may not have the two samples a rate needs when the alerts
            // fire, so each query is asked again, up to a bound, until it draws something.
            let drawn = server.wait_until(
                &format!("data for panel {title}: {query}"),
                Duration::from_secs(60),
                || {
                    let end = unix_seconds().to_string();
                    let answer = server.api(
                        "/api/v1/query_range",
                        &[
                            ("query", query.as_str()),
                            ("start", start.as_str()),
                            ("end", end.as_str()),
                            ("step", "1"),
                        ],
                    );
                    assert_eq!(answer["status"], "success", "{title}: {query}: {answer}");
                    // A quantile of no observations is NaN: a series of only NaN draws nothing.
                    let drawn = answer["data"]["result"]
                        .as_array()
                        .unwrap()
                        .iter()
                        .filter(|series| {
                            series["values"]
                                .as_array()
                                .unwrap()
                                .iter()
                                .any(|point| point[1] != "NaN")
                        })
                        .count();
                    (drawn > 0).then_some(drawn)
                },
            );
            println!("panel {title}: {query} -> {drawn} series");
        }
    }
    // Each variable offers the scenario's value: `label_values(SELECTOR, LABEL)` is Grafana's
    // call of the label values API.
    for (variable, expected) in [
        ("job", "rocketry"),
        ("cluster", "DefaultCluster"),
        ("consumer_group", backlog.group.as_str()),
    ] {
        let definition = dashboard["templating"]["list"]
            .as_array()
            .unwrap()
            .iter()
            .find(|v| v["name"] == variable)
            .unwrap()["definition"]
            .as_str()
            .unwrap();
        let (selector, label) = definition
            .strip_prefix("label_values(")
            .and_then(|rest| rest.strip_suffix(')'))
            .and_then(|rest| rest.rsplit_once(", "))
            .unwrap();
        let answer = server.api(
            &format!("/api/v1/label/{label}/values"),
            &[("match[]", &grafana_substituted(selector))],
        );
        println!("variable {variable}: {definition} -> {}", answer["data"]);
        assert!(
            answer["data"]
                .as_array()
                .unwrap()
                .iter()
                .any(|v| v == expected),
            "{variable}: {answer}"
        );
    }
    // The backlog panel says what the scrape says.
    let answer = server.api(
        "/api/v1/query",
        &[(
            "query",
            &format!(
                "sum by (consumer_group) (rocketmq_consumer_lag_messages{{consumer_group=\"{}\"}})",
                backlog.group
            ),
        )],
    );
    assert_eq!(
        answer["data"]["result"][0]["value"][1],
        (KnownBacklog::PRODUCED - KnownBacklog::COMMITTED).to_string(),
        "{answer}"
    );
}

/// A panel's query as Grafana sends it with every variable at "All" (whose value, `allValue`,
/// is `.*` in this dashboard) and a rate interval of a minute, four scrapes in the scenario.
fn grafana_substituted(expr: &str) -> String {
    expr.replace("$__rate_interval", "1m")
        .replace("$job", ".*")
        .replace("$cluster", ".*")
        .replace("$consumer_group", ".*")
}

fn unix_seconds() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_secs()
}
