//! Leader election over a `coordination.k8s.io/v1` Lease, so that two operator replicas never
//! reconcile at once.
//!
//! A replica holds the lease while it renews it within `duration`; another takes it over only
//! once it has expired. Every write carries the resourceVersion it read, so two replicas racing
//! for an expired lease cannot both win: the apiserver answers the loser with a conflict.

use std::time::Duration;

use k8s_openapi::api::coordination::v1::{Lease, LeaseSpec};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{MicroTime, ObjectMeta};
use k8s_openapi::jiff::{SignedDuration, Timestamp};
use kube::api::{Api, PostParams};
use kube::Client;

use crate::{Error, Result};

pub struct LeaseLock {
    api: Api<Lease>,
    name: String,
    namespace: String,
    identity: String,
    duration: Duration,
}

/// Reads and writes a release tries before it leaves the lease to expire.
const RELEASE_ATTEMPTS: usize = 5;

impl LeaseLock {
    pub fn new(
        client: Client,
        namespace: &str,
        name: &str,
        identity: &str,
        duration: Duration,
    ) -> Self {
        LeaseLock {
            api: Api::namespaced(client, namespace),
            name: name.to_string(),
            namespace: namespace.to_string(),
            identity: identity.to_string(),
            duration,
        }
    }

    /// How often a holder should renew: a third of the lease, so two missed renewals still hold it.
    pub fn renew_interval(&self) -> Duration {
        self.duration / 3
    }

    fn error(&self, source: kube::Error) -> Error {
        Error::Lease {
            name: self.name.clone(),
            namespace: self.namespace.clone(),
            source,
        }
    }

    /// Takes or renews the lease; `Ok(true)` when this replica holds it afterwards.
    pub async fn try_acquire_or_renew(&self) -> Result<bool> {
        let now = Timestamp::now();
        let seconds = self.duration.as_secs().max(1) as i32;
        let current = self
            .api
            .get_opt(&self.name)
            .await
            .map_err(|source| self.error(source))?;
        let Some(mut lease) = current else {
            let lease = Lease {
                metadata: ObjectMeta {
                    name: Some(self.name.clone()),
                    ..ObjectMeta::default()
                },
                spec: Some(LeaseSpec {
                    holder_identity: Some(self.identity.clone()),
                    lease_duration_seconds: Some(seconds),
                    acquire_time: Some(MicroTime(now)),
                    renew_time: Some(MicroTime(now)),
                    lease_transitions: Some(0),
                    ..LeaseSpec::default()
                }),
            };
            return match self.api.create(&PostParams::default(), &lease).await {
                Ok(_) => Ok(true),
                Err(kube::Error::Api(status)) if status.code == 409 => Ok(false),
                Err(source) => Err(self.error(source)),
            };
        };
        let spec = lease.spec.get_or_insert_with(LeaseSpec::default);
        let mine = spec.holder_identity.as_deref() == Some(self.identity.as_str());
        // A holder that stopped cleanly gave the lease up (see `release`).
        let released = spec
            .holder_identity
            .as_deref()
            .unwrap_or_default()
            .is_empty();
        let expired = released
            || match (&spec.renew_time, spec.lease_duration_seconds) {
                (Some(renewed), Some(held_for)) => {
                    renewed.0 + SignedDuration::from_secs(held_for.into()) < now
                }
                _ => true,
            };
        if !mine && !expired {
            return Ok(false);
        }
        if !mine {
            spec.holder_identity = Some(self.identity.clone());
            spec.acquire_time = Some(MicroTime(now));
            spec.lease_transitions = Some(spec.lease_transitions.unwrap_or(0) + 1);
        }
        spec.lease_duration_seconds = Some(seconds);
        spec.renew_time = Some(MicroTime(now));
        // replace() sends the resourceVersion read above: a concurrent writer makes this a 409.
        match self
            .api
            .replace(&self.name, &PostParams::default(), &lease)
            .await
        {
            Ok(_) => Ok(true),
            Err(kube::Error::Api(status)) if status.code == 409 => Ok(false),
            Err(source) => Err(self.error(source)),
        }
    }

    /// Gives the lease up if this replica holds it, so a standby takes over at once instead of
    /// waiting out the lease: what a replica does when it stops on SIGTERM.
    pub async fn release(&self) -> Result<()> {
        // A conflict may be our own renewal, cut short by the shutdown but still applied by
        // the API server after the read below: read again rather than keep a lease that
        // would then block the standbys for its whole duration.
        for _ in 0..RELEASE_ATTEMPTS {
            let Some(mut lease) = self
                .api
                .get_opt(&self.name)
                .await
                .map_err(|source| self.error(source))?
            else {
                return Ok(());
            };
            let Some(spec) = lease.spec.as_mut() else {
                return Ok(());
            };
            if spec.holder_identity.as_deref() != Some(self.identity.as_str()) {
                return Ok(());
            }
            spec.holder_identity = None;
            match self
                .api
                .replace(&self.name, &PostParams::default(), &lease)
                .await
            {
                Ok(_) => return Ok(()),
                Err(kube::Error::Api(status)) if status.code == 409 => continue,
                Err(source) => return Err(self.error(source)),
            }
        }
        Ok(())
    }

    /// Waits until this replica holds the lease. A standby asks every 2 s (client-go's
    /// `RetryPeriod`), more often than the holder renews, so a lease released on SIGTERM is taken
    /// within about that.
    pub async fn acquire(&self) -> Result<()> {
        let retry = self.renew_interval().min(Duration::from_secs(2));
        loop {
            if self.try_acquire_or_renew().await? {
                return Ok(());
            }
            tokio::time::sleep(retry).await;
        }
    }

    /// Renews the lease until it is lost (or cannot be renewed within its duration); returns
    /// then, so the caller stops reconciling before another replica may start.
    pub async fn hold(&self) -> Result<()> {
        let mut last_renewal = tokio::time::Instant::now();
        loop {
            tokio::time::sleep(self.renew_interval()).await;
            match self.try_acquire_or_renew().await {
                Ok(true) => last_renewal = tokio::time::Instant::now(),
                Ok(false) => return Ok(()),
                Err(error) if last_renewal.elapsed() < self.duration - self.renew_interval() => {
                    tracing::warn!(error = %error, "lease renewal failed; retrying");
                }
                Err(error) => return Err(error),
            }
        }
    }
}
