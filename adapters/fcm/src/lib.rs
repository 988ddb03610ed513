#![doc = include_str!("../README.md")]

mod auth;
mod client;
mod config;
pub mod request;
pub mod response;

pub use auth::{MESSAGING_SCOPE, REFRESH_MARGIN};
pub use client::FcmChannel;
pub use config::{
    FcmAppConfig, FcmChannelBuilder, FcmConfig, ServiceAccountKey, DEFAULT_BASE_URL,
    DEFAULT_MAX_CONCURRENT_PER_PROJECT, DEFAULT_REQUEST_TIMEOUT, DEFAULT_TOKEN_URI,
};
