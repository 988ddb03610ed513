#![doc = include_str!("../README.md")]

mod config;
mod endpoints;
mod error;
mod listen;
mod migrate;
mod notifications;
mod outbox;
mod rows;
mod shared;
mod sql;
mod store;

pub use config::PgStoreConfig;
pub use migrate::MigrationReport;
pub use store::PgStore;

/// The diesel-async this crate is built with: use its `AsyncPgConnection` for
/// [`PgStore::insert_notification_in`].
pub use diesel_async;

/// An error of a host transaction that also writes a notification: either the host's own query
/// failed, or the store refused. Return it from the closure passed to diesel-async's
/// `transaction` so both roll back together.
#[derive(Debug, thiserror::Error)]
pub enum TransactionError {
    /// A query of the host failed.
    #[error(transparent)]
    Diesel(#[from] diesel::result::Error),
    /// The store failed.
    #[error(transparent)]
    Store(#[from] tidings::StoreError),
}
