#![doc = include_str!("../README.md")]

mod auth;
mod client;
mod config;
pub mod guard;
pub mod request;
pub mod response;

pub use auth::{LEGACY_SCOPE, LEGACY_TOKEN_URL, REFRESH_MARGIN, WNS_ENTRA_SCOPE};
pub use client::WnsChannel;
pub use config::{
    WnsAppConfig, WnsChannelBuilder, WnsConfig, WnsCredentials, DEFAULT_REQUEST_TIMEOUT,
    DEFAULT_WNS_HOST,
};
