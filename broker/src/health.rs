//! `/livez` and `/readyz`, what Kubernetes' probes ask (docs/observability.md, "Health").
//! `/livez` answers whenever the process does, through a long store recovery included, so a
//! startupProbe can wait for it; `/readyz` says whether clients can use the process, and if
//! not, why, in a short plain-text reason.

use std::fmt;
use std::sync::{Arc, OnceLock};

use axum::extract::State;
use axum::http::StatusCode;
use axum::routing::get;
use axum::Router;

use crate::broker::Broker;

/// Why a process is not ready; `/readyz` answers 503 with it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum NotReady {
    /// The broker is still opening its store (recovery reads the CommitLog's tail).
    Recovering,
    /// No name server has accepted the broker yet, so no client can find its routes.
    Unregistered { name_servers: usize },
    /// The broker is shutting down.
    Stopping,
}

impl fmt::Display for NotReady {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            NotReady::Recovering => f.write_str("recovering the store"),
            NotReady::Unregistered { name_servers: 0 } => {
                f.write_str("no name server to register with (namesrvAddr is empty)")
            }
            NotReady::Unregistered { name_servers } => write!(
                f,
                "not registered with any name server yet ({name_servers} in namesrvAddr)"
            ),
            NotReady::Stopping => f.write_str("stopping"),
        }
    }
}

/// What `/readyz` checks for the process it runs in.
#[derive(Clone)]
pub enum Readiness {
    /// A name server: ready once it listens, which it does before its endpoint starts.
    Listening,
    /// A broker: empty while its store recovers, then the open broker. A standalone process
    /// reports its broker's readiness, which its name server's listening precedes.
    Broker(Arc<OnceLock<Arc<Broker>>>),
}

impl Readiness {
    pub fn check(&self) -> Result<(), NotReady> {
        match self {
            Readiness::Listening => Ok(()),
            Readiness::Broker(opened) => opened.get().ok_or(NotReady::Recovering)?.readiness(),
        }
    }
}

/// `/livez` and `/readyz`.
pub fn router(readiness: Readiness) -> Router {
    Router::new()
        .route("/livez", get(|| async { "ok\n" }))
        .route("/readyz", get(readyz))
        .with_state(readiness)
}

async fn readyz(State(readiness): State<Readiness>) -> (StatusCode, String) {
    match readiness.check() {
        Ok(()) => (StatusCode::OK, "ok\n".to_string()),
        Err(reason) => (StatusCode::SERVICE_UNAVAILABLE, format!("{reason}\n")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn a_broker_whose_store_is_recovering_is_not_ready_and_says_so() {
        let recovering = Readiness::Broker(Arc::new(OnceLock::new()));
        assert_eq!(recovering.check(), Err(NotReady::Recovering));
        assert_eq!(
            readyz(State(recovering)).await,
            (
                StatusCode::SERVICE_UNAVAILABLE,
                "recovering the store\n".to_string()
            )
        );
    }

    #[tokio::test]
    async fn a_name_server_is_ready_once_it_listens() {
        assert_eq!(
            readyz(State(Readiness::Listening)).await,
            (StatusCode::OK, "ok\n".to_string())
        );
    }

    #[test]
    fn reasons_name_what_is_missing() {
        assert_eq!(
            NotReady::Unregistered { name_servers: 2 }.to_string(),
            "not registered with any name server yet (2 in namesrvAddr)"
        );
        assert_eq!(
            NotReady::Unregistered { name_servers: 0 }.to_string(),
            "no name server to register with (namesrvAddr is empty)"
        );
    }
}
