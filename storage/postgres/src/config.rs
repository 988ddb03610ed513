//! [`PgStoreConfig`]: where the database is and how the store uses it.

use std::fmt;
use std::time::Duration;

use tidings::{StoreError, StoreErrorKind};

/// How [`PgStore`](crate::PgStore) connects and where it keeps its tables.
///
/// ```
/// use std::time::Duration;
/// use tidings_postgres::PgStoreConfig;
///
/// let config = PgStoreConfig::new("postgres://app@127.0.0.1:5432/app")
///     .schema("tidings")
///     .pool_size(16)
///     .connection_timeout(Duration::from_secs(5));
/// assert_eq!(config.schema_name(), "tidings");
/// ```
#[derive(Clone)]
pub struct PgStoreConfig {
    url: String,
    schema: String,
    pool_size: u32,
    connection_timeout: Duration,
    listen: bool,
    insert_batch: usize,
    insert_writers: u32,
}

impl fmt::Debug for PgStoreConfig {
    /// The URL may hold a password: it is not shown.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("PgStoreConfig")
            .field("url", &"<redacted>")
            .field("schema", &self.schema)
            .field("pool_size", &self.pool_size)
            .field("connection_timeout", &self.connection_timeout)
            .field("listen", &self.listen)
            .field("insert_batch", &self.insert_batch)
            .field("insert_writers", &self.insert_writers)
            .finish()
    }
}

impl PgStoreConfig {
    /// A configuration for the database at `url` (`postgres://user:password@host:port/db`, or
    /// tokio-postgres' `key=value` form), with the defaults: schema `tidings`, 16 pooled
    /// connections, 5 s to get one, LISTEN/NOTIFY wake-ups on, concurrent sends written by 4
    /// writers in statements of up to 256 notifications.
    pub fn new(url: impl Into<String>) -> Self {
        PgStoreConfig {
            url: url.into(),
            schema: "tidings".into(),
            pool_size: 16,
            connection_timeout: Duration::from_secs(5),
            listen: true,
            insert_batch: 256,
            insert_writers: 4,
        }
    }

    /// The schema that holds Tidings' tables (default `tidings`). It must be Tidings' own:
    /// diesel's migration bookkeeping table lives in it too. Lowercase letters, digits and
    /// underscores, starting with a letter or underscore, at most 40 bytes.
    #[must_use]
    pub fn schema(mut self, schema: impl Into<String>) -> Self {
        self.schema = schema.into();
        self
    }

    /// Most connections the pool opens (default 16). The LISTEN connection comes on top.
    #[must_use]
    pub fn pool_size(mut self, size: u32) -> Self {
        self.pool_size = size;
        self
    }

    /// How long a store call waits for a pooled connection before failing with a retryable
    /// [`StoreErrorKind::Unavailable`] (default 5 s).
    #[must_use]
    pub fn connection_timeout(mut self, timeout: Duration) -> Self {
        self.connection_timeout = timeout;
        self
    }

    /// Whether to hold a LISTEN connection so that idle dispatchers wake as soon as work is
    /// enqueued anywhere (default on). Off, [`wait_for_work`](tidings::Store::wait_for_work)
    /// only waits for its timeout.
    #[must_use]
    pub fn listen(mut self, listen: bool) -> Self {
        self.listen = listen;
        self
    }

    /// How many notifications one insert statement may carry (default 256; 1 to 10,000).
    ///
    /// [`insert_notification`](tidings::Store::insert_notification) calls that arrive while
    /// the store's writers are busy are queued and then written together, many per statement
    /// and per commit, each still atomic with its own deliveries and answered with its own
    /// result. A send that arrives when a writer is idle is written at once, alone, so batching
    /// adds no wait. 1 writes every notification in its own statement.
    #[must_use]
    pub fn insert_batch(mut self, notifications: usize) -> Self {
        self.insert_batch = notifications;
        self
    }

    /// How many insert statements may run at once (default 4, at least 1; never more than
    /// `pool_size`). Each holds a pooled connection while it runs.
    #[must_use]
    pub fn insert_writers(mut self, writers: u32) -> Self {
        self.insert_writers = writers;
        self
    }

    /// The schema name.
    pub fn schema_name(&self) -> &str {
        &self.schema
    }

    pub(crate) fn url(&self) -> &str {
        &self.url
    }

    pub(crate) fn pool_size_value(&self) -> u32 {
        self.pool_size
    }

    pub(crate) fn connection_timeout_value(&self) -> Duration {
        self.connection_timeout
    }

    pub(crate) fn listen_enabled(&self) -> bool {
        self.listen
    }

    pub(crate) fn insert_batch_value(&self) -> usize {
        self.insert_batch
    }

    pub(crate) fn insert_writers_value(&self) -> u32 {
        self.insert_writers.min(self.pool_size)
    }

    pub(crate) fn validate(&self) -> Result<(), StoreError> {
        let s = self.schema.as_bytes();
        let ok = !s.is_empty()
            && s.len() <= 40
            && (s[0].is_ascii_lowercase() || s[0] == b'_')
            && s.iter()
                .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || *b == b'_');
        if !ok {
            return Err(StoreError::new(
                StoreErrorKind::Other,
                format!(
                    "invalid schema name {:?}: use 1 to 40 lowercase letters, digits and underscores",
                    self.schema
                ),
            ));
        }
        if self.pool_size == 0 {
            return Err(StoreError::new(
                StoreErrorKind::Other,
                "pool_size must be positive",
            ));
        }
        if !(1..=10_000).contains(&self.insert_batch) {
            return Err(StoreError::new(
                StoreErrorKind::Other,
                format!("insert_batch must be 1 to 10000, not {}", self.insert_batch),
            ));
        }
        if self.insert_writers == 0 {
            return Err(StoreError::new(
                StoreErrorKind::Other,
                "insert_writers must be positive",
            ));
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn debug_hides_the_url_and_bad_schema_names_are_refused() {
        let c = PgStoreConfig::new("postgres://u:hunter2@db/app");
        assert!(!format!("{c:?}").contains("hunter2"));
        assert!(c.validate().is_ok());
        assert!(c.clone().schema("Robert'); DROP").validate().is_err());
        assert!(c.clone().schema("").validate().is_err());
        assert!(c.clone().insert_batch(0).validate().is_err());
        assert!(c.clone().insert_batch(10_001).validate().is_err());
        assert!(c.clone().insert_writers(0).validate().is_err());
        let small = c.clone().pool_size(2).insert_writers(8);
        assert!(small.validate().is_ok());
        assert_eq!(
            small.insert_writers_value(),
            2,
            "never more writers than connections"
        );
        assert!(c.insert_batch(1).validate().is_ok());
    }
}
