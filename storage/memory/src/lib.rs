#![doc = include_str!("../README.md")]

mod channel;
mod identity;
mod store;

pub use channel::{Answer, RecordedPush, RecordingChannel, Scripted};
pub use identity::StaticIdentity;
pub use store::{MemoryStats, MemoryStore};
