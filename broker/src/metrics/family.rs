//! Gauge and counter families written at scrape time by a collector, labelled as the
//! prometheus crate labels its own metrics (label names sorted), so they merge with
//! registered metrics.

use prometheus::proto::{Counter, Gauge, LabelPair, Metric, MetricFamily, MetricType};

use super::Node;

/// One family, filled series by series while a collector walks the broker's state.
pub struct Family {
    family: MetricFamily,
    series: Vec<Metric>,
}

impl Family {
    pub fn gauge(name: &str, help: &str) -> Family {
        Family::of(MetricType::GAUGE, name, help)
    }

    pub fn counter(name: &str, help: &str) -> Family {
        Family::of(MetricType::COUNTER, name, help)
    }

    fn of(kind: MetricType, name: &str, help: &str) -> Family {
        let mut family = MetricFamily::default();
        family.set_name(name.to_string());
        family.set_help(help.to_string());
        family.set_field_type(kind);
        Family {
            family,
            series: Vec::new(),
        }
    }

    /// Adds one series: the node's labels plus `labels`.
    pub fn add(&mut self, node: &Node, labels: &[(&str, &str)], value: f64) {
        let mut pairs: Vec<LabelPair> = node
            .labels()
            .iter()
            .chain(labels)
            .map(|(name, value)| {
                let mut pair = LabelPair::default();
                pair.set_name(name.to_string());
                pair.set_value(value.to_string());
                pair
            })
            .collect();
        pairs.sort_by(|a, b| a.name().cmp(b.name()));
        let mut metric = Metric::from_label(pairs);
        if self.family.get_field_type() == MetricType::COUNTER {
            let mut counter = Counter::default();
            counter.set_value(value);
            metric.set_counter(counter);
        } else {
            let mut gauge = Gauge::default();
            gauge.set_value(value);
            metric.set_gauge(gauge);
        }
        self.series.push(metric);
    }

    pub fn into_family(mut self) -> MetricFamily {
        self.family.set_metric(self.series);
        self.family
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn series_carry_the_node_labels_sorted_by_name() {
        let mut family = Family::gauge("rocketmq_consumer_lag_messages", "Lag.");
        family.add(
            &Node::broker("C", "broker-a"),
            &[("topic", "T"), ("consumer_group", "G")],
            600.0,
        );
        let family = family.into_family();
        let labels: Vec<(&str, &str)> = family.get_metric()[0]
            .get_label()
            .iter()
            .map(|pair| (pair.name(), pair.value()))
            .collect();
        assert_eq!(
            labels,
            [
                ("cluster", "C"),
                ("consumer_group", "G"),
                ("node_id", "broker-a"),
                ("node_type", "broker"),
                ("topic", "T"),
            ]
        );
        assert_eq!(family.get_metric()[0].get_gauge().get_value(), 600.0);
    }
}
