//! The operator's Prometheus metrics: reconciles by result, their durations, failures by the
//! kind of error, and autoscaling decisions by reason.

use std::time::Instant;

use prometheus::{HistogramOpts, HistogramVec, IntCounterVec, Opts, Registry};

use crate::Error;

#[derive(Clone)]
pub struct Metrics {
    pub registry: Registry,
    reconciles: IntCounterVec,
    failures: IntCounterVec,
    duration: HistogramVec,
    scaling: IntCounterVec,
}

impl Default for Metrics {
    fn default() -> Self {
        let registry = Registry::new_custom(Some("rocketry_operator".to_string()), None)
            .expect("a static prefix is valid");
        let reconciles = IntCounterVec::new(
            Opts::new(
                "reconciles_total",
                "Reconciles of RocketClusters, by result.",
            ),
            &["result"],
        )
        .expect("valid metric");
        let failures = IntCounterVec::new(
            Opts::new(
                "reconcile_errors_total",
                "Failed reconciles, by the kind of error.",
            ),
            &["error"],
        )
        .expect("valid metric");
        let duration = HistogramVec::new(
            HistogramOpts::new("reconcile_duration_seconds", "How long a reconcile took.")
                .buckets(vec![0.01, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0]),
            &[],
        )
        .expect("valid metric");
        let scaling = IntCounterVec::new(
            Opts::new(
                "scaling_decisions_total",
                "Autoscaling decisions made or refused, by what they scale (consumers, queues) and reason.",
            ),
            &["kind", "reason"],
        )
        .expect("valid metric");
        for collector in [
            Box::new(reconciles.clone()) as Box<dyn prometheus::core::Collector>,
            Box::new(scaling.clone()),
            Box::new(failures.clone()),
            Box::new(duration.clone()),
        ] {
            registry
                .register(collector)
                .expect("each metric registers once");
        }
        Metrics {
            registry,
            reconciles,
            failures,
            duration,
            scaling,
        }
    }
}

impl Metrics {
    /// Counts a reconcile and times it until the guard drops, whichever way it ends.
    pub fn reconcile_started(&self) -> ReconcileTimer {
        ReconcileTimer {
            metrics: self.clone(),
            start: Instant::now(),
        }
    }

    pub fn reconcile_failed(&self, error: &Error) {
        self.failures
            .with_label_values(&[&error.metric_label()])
            .inc();
        self.reconciles.with_label_values(&["error"]).inc();
    }

    /// Counts one autoscaling decision: `kind` is what it scales, `reason` why.
    pub fn scaling_decision(&self, kind: &str, reason: &str) {
        self.scaling.with_label_values(&[kind, reason]).inc();
    }

    pub fn reconciles(&self) -> u64 {
        self.reconciles.with_label_values(&["ok"]).get()
            + self.reconciles.with_label_values(&["error"]).get()
    }

    pub fn failures(&self) -> u64 {
        self.reconciles.with_label_values(&["error"]).get()
    }

    /// The text exposition format, for `/metrics`.
    pub fn render(&self) -> String {
        prometheus::TextEncoder::new()
            .encode_to_string(&self.registry.gather())
            .unwrap_or_default()
    }
}

pub struct ReconcileTimer {
    metrics: Metrics,
    start: Instant,
}

impl ReconcileTimer {
    pub fn succeeded(&self) {
        self.metrics.reconciles.with_label_values(&["ok"]).inc();
    }
}

impl Drop for ReconcileTimer {
    fn drop(&mut self) {
        self.metrics
            .duration
            .with_label_values::<&str>(&[])
            .observe(self.start.elapsed().as_secs_f64());
    }
}
