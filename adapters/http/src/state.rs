//! What every handler shares.

use std::sync::Arc;

use axum::body::Bytes;
use tidings::Tidings;

use crate::config::HttpConfig;

/// The router's state: the Tidings handle, the configuration and the rendered OpenAPI document.
#[derive(Clone, Debug)]
pub(crate) struct ApiState {
    pub(crate) tidings: Tidings,
    pub(crate) config: Arc<HttpConfig>,
    pub(crate) openapi: Bytes,
}
