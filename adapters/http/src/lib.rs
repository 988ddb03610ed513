#![doc = include_str!("../README.md")]

mod config;
mod extract;
mod json;
mod jwt;
mod model;
mod openapi;
mod problem;
mod routes;
mod schema;
mod state;

use std::sync::Arc;

use axum::body::Bytes;
use axum::extract::DefaultBodyLimit;
use axum::routing::{get, post, put};
use axum::Router;
use tidings::Tidings;
use tower_http::catch_panic::CatchPanicLayer;

pub use config::{HttpConfig, HttpConfigBuilder};
pub use extract::INSTALLATION_HEADER;
pub use jwt::{JwtAlgorithm, JwtIdentity, JwtIdentityBuilder, JwtKey};
pub use model::{
    BulkStateRequest, BulkStateResult, ChangePageView, EndpointView, HistoryPageView,
    NotificationView, RegisterEndpointRequest, StateChange, StateView, VisualView,
};
pub use openapi::document as openapi_document;
pub use problem::{ProblemDocument, PROBLEM_JSON};

use state::ApiState;

/// The client API as an axum [`Router`] (a tower `Service` once the host serves it), built from
/// a [`Tidings`] handle whose [`Identity`](tidings::Identity) authenticates every request.
///
/// The paths are relative: mount it at any prefix with [`Router::nest`]. See the crate
/// documentation for the routes.
pub fn router(tidings: Tidings, config: HttpConfig) -> Router {
    let openapi = match serde_json::to_vec(&openapi::document(&config)) {
        Ok(json) => Bytes::from(json),
        Err(e) => {
            tracing::error!(error = %e, "the OpenAPI document could not be rendered");
            Bytes::from_static(b"{}")
        }
    };
    let state = ApiState {
        tidings,
        openapi,
        config: Arc::new(config.clone()),
    };
    Router::new()
        .route(
            "/endpoints/{installation_id}",
            put(routes::register_endpoint).delete(routes::delete_endpoint),
        )
        .route("/notifications", get(routes::list_notifications))
        .route(
            "/notifications/state",
            post(routes::update_notification_states),
        )
        .route(
            "/notifications/{id}",
            get(routes::get_notification).patch(routes::update_notification_state),
        )
        .route("/changes", get(routes::list_changes))
        .route("/openapi.json", get(routes::openapi))
        .fallback(routes::fallback)
        .with_state(state)
        .layer(DefaultBodyLimit::max(config.body_limit))
        .layer(CatchPanicLayer::custom(problem::panic_response))
        .layer(axum::middleware::map_response(problem::problemize))
}
