#![doc = include_str!("../README.md")]
// A test kit reports failures by panicking, as assertions do.
#![allow(clippy::unwrap_used)]

pub mod store;

#[cfg(any(feature = "mock-apns", feature = "mock-fcm"))]
mod gateway;
#[cfg(any(feature = "mock-wns", feature = "mock-webpush"))]
mod loopback;

#[cfg(feature = "mock-apns")]
pub mod apns;
pub mod bench;
pub mod channel;
#[cfg(feature = "mock-fcm")]
pub mod fcm;
#[cfg(feature = "mock-webpush")]
pub mod webpush;
#[cfg(feature = "mock-wns")]
pub mod wns;

#[doc(hidden)]
pub mod __private {
    pub use tokio;
}
