//! `GET /metrics` in Prometheus text exposition, served by the process's HTTP endpoint
//! (`crate::http`) when `metricsExporterType` is PROM.

use axum::extract::State;
use axum::http::{header, StatusCode};
use axum::response::IntoResponse;
use axum::routing::get;
use axum::Router;
use prometheus::{Encoder, Registry, TextEncoder};

/// `/metrics`, serving `registry`.
pub fn router(registry: Registry) -> Router {
    Router::new()
        .route("/metrics", get(scrape))
        .with_state(registry)
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
