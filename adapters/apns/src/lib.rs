#![doc = include_str!("../README.md")]

mod auth;
mod client;
mod config;
pub mod request;
pub mod response;
mod transport;

pub use client::ApnsChannel;
pub use config::{
    ApnsAppConfig, ApnsChannelBuilder, ApnsConfig, ApnsCredentials, DEFAULT_REQUEST_TIMEOUT,
    DEFAULT_TOKEN_REFRESH, MAX_TOKEN_REFRESH, MIN_TOKEN_REFRESH, PRODUCTION_URL, SANDBOX_URL,
};
