//! The HTTP side: `GET /metrics` in Prometheus text exposition, on its own small axum
//! server so a slow scrape never shares a connection or a task with remoting traffic.

use std::future::Future;

use axum::extract::State;
use axum::http::{header, StatusCode};
use axum::response::IntoResponse;
use axum::routing::get;
use axum::Router;
use prometheus::{Encoder, Registry, TextEncoder};
use tokio::net::TcpListener;
use tracing::{info, warn};

/// Serves `registry` at `/metrics` on `listener` until `shutdown` resolves.
pub async fn serve(
    listener: TcpListener,
    registry: Registry,
    shutdown: impl Future<Output = ()> + Send + 'static,
) {
    if let Ok(addr) = listener.local_addr() {
        info!(%addr, "metrics endpoint ready: http://{addr}/metrics");
    }
    let app = Router::new()
        .route("/metrics", get(scrape))
        .with_state(registry);
    if let Err(error) = axum::serve(listener, app)
        .with_graceful_shutdown(shutdown)
        .await
    {
        warn!(%error, "metrics endpoint stopped");
    }
}

async fn scrape(State(registry): State<Registry>) -> impl IntoResponse {
    // Collectors read the store (lag walks consume queues), which may touch the disk: keep
    // that off the async workers that serve remoting requests.
    let text = tokio::task::spawn_blocking(move || {
        let mut text = Vec::new();
        TextEncoder::new()
            .encode(&registry.gather(), &mut text)
            .map(|()| text)
    })
    .await;
    match text {
        Ok(Ok(text)) => (
            StatusCode::OK,
            [(header::CONTENT_TYPE, prometheus::TEXT_FORMAT)],
            text,
        )
            .into_response(),
        Ok(Err(error)) => (StatusCode::INTERNAL_SERVER_ERROR, error.to_string()).into_response(),
        Err(error) => (StatusCode::INTERNAL_SERVER_ERROR, error.to_string()).into_response(),
    }
}
