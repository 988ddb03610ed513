#![doc = include_str!("../README.md")]
// A test kit reports failures by panicking, as assertions do.
#![allow(clippy::unwrap_used)]

pub mod store;

#[cfg(feature = "mock-apns")]
pub mod apns;
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
