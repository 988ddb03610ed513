#![doc = include_str!("../README.md")]
// A test kit reports failures by panicking, as assertions do.
#![allow(clippy::unwrap_used)]

pub mod store;

#[cfg(feature = "mock-apns")]
pub mod apns;
#[cfg(feature = "mock-fcm")]
pub mod fcm;
#[cfg(feature = "mock-wns")]
pub mod wns;
#[cfg(feature = "mock-webpush")]
pub mod webpush;
#[cfg(feature = "mocks")]
pub mod channel;

#[doc(hidden)]
pub mod __private {
    pub use tokio;
}
