//! [`PgStore`]: the [`Store`] on PostgreSQL.

use std::fmt;
use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use diesel_async::pooled_connection::bb8::{Pool, PooledConnection};
use diesel_async::pooled_connection::{
    AsyncDieselConnectionManager, ManagerConfig, RecyclingMethod,
};
use diesel_async::AsyncPgConnection;
use tidings::{
    AppId, BulkStateUpdate, ChangePage, ChangesQuery, DeliveryOutcome, Endpoint, EndpointId,
    HistoryPage, HistoryQuery, Inserted, LeaseRequest, LeasedDelivery, Notification,
    NotificationId, OutcomeReport, PurgeReport, StateUpdate, Store, StoreError, Timestamp, UserId,
};
use tokio::sync::{watch, Notify};
use tokio::task::JoinHandle;

use crate::config::PgStoreConfig;
use crate::migrate::MigrationReport;
use crate::shared::{InsertQueue, Shared};
use crate::sql::Sql;
use crate::{endpoints, error, listen, migrate, notifications, outbox};

/// The schema-qualified names statements use.
#[derive(Debug, Clone)]
pub(crate) struct Names {
    /// `"schema"`, quoted.
    quoted: String,
    /// The NOTIFY channel.
    pub(crate) channel: String,
}

impl Names {
    fn new(schema: &str) -> Self {
        Names {
            quoted: format!("\"{schema}\""),
            channel: listen::channel(schema),
        }
    }

    /// A statement from a template whose table names are written `{s}.table`.
    pub(crate) fn sql(&self, template: &str) -> Sql {
        Sql::new(template.replace("{s}", &self.quoted))
    }
}

/// An error inside a diesel-async transaction (which needs `From<diesel::result::Error>`).
#[derive(Debug)]
pub(crate) enum TxError {
    Diesel(diesel::result::Error),
    Store(StoreError),
}

impl From<diesel::result::Error> for TxError {
    fn from(e: diesel::result::Error) -> Self {
        TxError::Diesel(e)
    }
}

impl From<StoreError> for TxError {
    fn from(e: StoreError) -> Self {
        TxError::Store(e)
    }
}

impl TxError {
    pub(crate) fn into_store(self) -> StoreError {
        match self {
            TxError::Diesel(e) => error::query(e),
            TxError::Store(e) => e,
        }
    }
}

/// A [`Store`] on PostgreSQL, shared safely by any number of host instances.
///
/// Cheap to clone; clones share the pool and the LISTEN connection. Build it with
/// [`PgStore::connect`], then call [`PgStore::migrate`] once at startup.
#[derive(Clone)]
pub struct PgStore {
    inner: Arc<Inner>,
}

struct Inner {
    shared: Arc<Shared>,
    /// Dropping it (with the last clone of the store) stops the writers once their batch in
    /// hand is written.
    inserts: InsertQueue,
    config: PgStoreConfig,
    wake: Arc<Notify>,
    listening: watch::Receiver<bool>,
    listener: Option<JoinHandle<()>>,
}

impl Drop for Inner {
    fn drop(&mut self) {
        if let Some(task) = self.listener.take() {
            task.abort();
        }
    }
}

impl fmt::Debug for PgStore {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("PgStore")
            .field("schema", &self.inner.config.schema_name())
            .field("pool", &self.inner.shared.pool.state())
            .field("listening", &*self.inner.listening.borrow())
            .finish()
    }
}

impl PgStore {
    /// Builds the pool and starts, on the current tokio runtime, the insert writers and (unless
    /// disabled) the LISTEN task; they stop when the last clone of the store is dropped. Connections are opened on
    /// demand, so this succeeds while the database is down; store calls then fail with a
    /// retryable [`StoreErrorKind::Unavailable`](tidings::StoreErrorKind::Unavailable).
    pub async fn connect(config: PgStoreConfig) -> Result<PgStore, StoreError> {
        config.validate()?;
        let mut manager_config = ManagerConfig::default();
        // Broken connections are still detected (and dropped); skipping the `SELECT 1` per
        // checkout saves a round trip on every store call.
        manager_config.recycling_method = RecyclingMethod::Fast;
        manager_config.custom_setup = Box::new(|url| Box::pin(setup_connection(url.to_owned())));
        let manager = AsyncDieselConnectionManager::<AsyncPgConnection>::new_with_config(
            config.url(),
            manager_config,
        );
        let pool = Pool::builder()
            .max_size(config.pool_size_value())
            .connection_timeout(config.connection_timeout_value())
            .retry_connection(false)
            .build_unchecked(manager);
        let names = Names::new(config.schema_name());
        let wake = Arc::new(Notify::new());
        let (ready_tx, listening) = watch::channel(false);
        let listener = config.listen_enabled().then(|| {
            tokio::spawn(listen::run(
                config.url().to_owned(),
                names.channel.clone(),
                Arc::clone(&wake),
                ready_tx,
            ))
        });
        let shared = Arc::new(Shared::new(pool, names));
        let inserts =
            shared.start_writers(config.insert_writers_value(), config.insert_batch_value());
        Ok(PgStore {
            inner: Arc::new(Inner {
                shared,
                inserts,
                config,
                wake,
                listening,
                listener,
            }),
        })
    }

    /// Creates or upgrades Tidings' tables in the configured schema, with the migrations
    /// embedded in this crate. Idempotent, and safe when several instances start at once (a
    /// PostgreSQL advisory lock serialises them). Refuses, with a
    /// [`Corrupt`](tidings::StoreErrorKind::Corrupt) error saying so, when the schema was
    /// migrated by a newer version of this crate.
    pub async fn migrate(&self) -> Result<MigrationReport, StoreError> {
        migrate::run(self.inner.config.url(), self.inner.config.schema_name()).await
    }

    /// The schema holding the tables.
    pub fn schema(&self) -> &str {
        self.inner.config.schema_name()
    }

    /// Waits until the LISTEN connection is established (returns at once when listening is
    /// disabled). Useful before measuring wake-ups; dispatchers do not need it.
    pub async fn listening(&self) {
        if self.inner.listener.is_none() {
            return;
        }
        let mut rx = self.inner.listening.clone();
        // The sender lives in the listener task, which only ends when the store is dropped.
        let _ = rx.wait_for(|ready| *ready).await;
    }

    /// Stores a notification and its deliveries on the host's own connection, so they commit or
    /// roll back with the host's transaction. Dispatchers are woken when (and only if) the
    /// transaction commits.
    ///
    /// `notification` comes from [`Tidings::prepare`](tidings::Tidings::prepare), which
    /// validates a [`NewNotification`](tidings::NewNotification) exactly as `send` does. The
    /// insert is one statement, so it is atomic even when `conn` is not in a transaction.
    ///
    /// ```no_run
    /// # async fn demo(
    /// #     tidings: tidings::Tidings,
    /// #     store: tidings_postgres::PgStore,
    /// #     conn: &mut tidings_postgres::diesel_async::AsyncPgConnection,
    /// # ) -> Result<(), Box<dyn std::error::Error>> {
    /// use tidings_postgres::diesel_async::scoped_futures::ScopedFutureExt;
    /// use tidings_postgres::diesel_async::{AsyncConnection, RunQueryDsl};
    ///
    /// let notification = tidings.prepare(
    ///     tidings::NewNotification::new("shop", "alice", "order-42").title("Order shipped"),
    /// )?;
    /// conn.transaction::<_, tidings_postgres::TransactionError, _>(|conn| {
    ///     async move {
    ///         diesel::sql_query("UPDATE orders SET state = 'shipped' WHERE id = 42")
    ///             .execute(conn)
    ///             .await?;
    ///         store.insert_notification_in(conn, notification).await?;
    ///         Ok(())
    ///     }
    ///     .scope_boxed()
    /// })
    /// .await?;
    /// # Ok(())
    /// # }
    /// ```
    pub async fn insert_notification_in(
        &self,
        conn: &mut AsyncPgConnection,
        notification: Notification,
    ) -> Result<Inserted, StoreError> {
        notifications::insert(&self.inner.shared.names, conn, notification, true).await
    }

    async fn conn(&self) -> Result<PooledConnection<'_, AsyncPgConnection>, StoreError> {
        self.inner.shared.conn().await
    }

    fn names(&self) -> &Names {
        &self.inner.shared.names
    }
}

/// Opens a pooled connection.
///
/// Statements are prepared once per connection, and their plans must not depend on the bind
/// values: the custom plan PostgreSQL picks for a lease when many deliveries are due (a bitmap
/// scan of every due row and a sort) is ten times slower than the generic one (an index scan in
/// due order that stops at the limit), and the generic plans of every other statement are the
/// index scans shown in `docs/postgres.md`.
///
/// A generic plan is made once per connection and kept until the tables' statistics change,
/// which on a new install is a minute or more after the tables start filling (autovacuum's
/// first ANALYZE). Planned while the tables are nearly empty, a sequential scan looks cheapest,
/// and was then repeated on every call as the tables grew. Every statement of this crate is
/// written to reach rows through an index, so pooled connections also run with
/// `enable_seqscan = off`, which leaves a sequential scan only where no index can serve
/// (`tests/plans.rs` fixes every plan on empty tables and checks that none scans a table once
/// it is full).
async fn setup_connection(url: String) -> diesel::ConnectionResult<AsyncPgConnection> {
    use diesel_async::{AsyncConnection, SimpleAsyncConnection};
    let mut conn = AsyncPgConnection::establish(&url).await?;
    conn.batch_execute("SET plan_cache_mode = force_generic_plan; SET enable_seqscan = off")
        .await
        .map_err(diesel::ConnectionError::CouldntSetupConfiguration)?;
    Ok(conn)
}

#[async_trait]
impl Store for PgStore {
    async fn upsert_endpoint(&self, endpoint: Endpoint) -> Result<Endpoint, StoreError> {
        let mut conn = self.conn().await?;
        endpoints::upsert(self.names(), &mut conn, endpoint).await
    }

    async fn endpoints(&self, app: &AppId, user: &UserId) -> Result<Vec<Endpoint>, StoreError> {
        let mut conn = self.conn().await?;
        endpoints::list(self.names(), &mut conn, app.as_str(), user.as_str()).await
    }

    async fn delete_endpoint(
        &self,
        app: &AppId,
        user: &UserId,
        id: EndpointId,
    ) -> Result<(), StoreError> {
        let mut conn = self.conn().await?;
        endpoints::delete(
            self.names(),
            &mut conn,
            app.as_str(),
            user.as_str(),
            id.as_uuid(),
        )
        .await
    }

    async fn insert_notification(
        &self,
        notification: Notification,
    ) -> Result<Inserted, StoreError> {
        self.inner
            .shared
            .insert(&self.inner.inserts, notification)
            .await
    }

    async fn notification(
        &self,
        app: &AppId,
        user: &UserId,
        id: NotificationId,
        now: Timestamp,
    ) -> Result<Notification, StoreError> {
        let mut conn = self.conn().await?;
        notifications::get(
            self.names(),
            &mut conn,
            app.as_str(),
            user.as_str(),
            id.as_uuid(),
            now,
        )
        .await
    }

    async fn record_fetch(
        &self,
        app: &AppId,
        user: &UserId,
        id: NotificationId,
        endpoint: EndpointId,
        at: Timestamp,
    ) -> Result<Notification, StoreError> {
        let mut conn = self.conn().await?;
        notifications::record_fetch(
            self.names(),
            &mut conn,
            app.as_str(),
            user.as_str(),
            id.as_uuid(),
            endpoint.as_uuid(),
            at,
        )
        .await
    }

    async fn update_state(&self, update: StateUpdate) -> Result<Notification, StoreError> {
        let mut conn = self.conn().await?;
        notifications::update_state(self.names(), &mut conn, update).await
    }

    async fn update_states(
        &self,
        update: BulkStateUpdate,
    ) -> Result<Vec<Option<Notification>>, StoreError> {
        let mut conn = self.conn().await?;
        notifications::update_states(self.names(), &mut conn, update).await
    }

    async fn history(&self, query: &HistoryQuery) -> Result<HistoryPage, StoreError> {
        let mut conn = self.conn().await?;
        notifications::history(self.names(), &mut conn, query).await
    }

    async fn changes(&self, query: &ChangesQuery) -> Result<ChangePage, StoreError> {
        let mut conn = self.conn().await?;
        notifications::changes(self.names(), &mut conn, query).await
    }

    async fn current_sequence(&self, app: &AppId, user: &UserId) -> Result<u64, StoreError> {
        let mut conn = self.conn().await?;
        notifications::current_sequence(self.names(), &mut conn, app.as_str(), user.as_str()).await
    }

    async fn lease_due(&self, request: LeaseRequest) -> Result<Vec<LeasedDelivery>, StoreError> {
        let mut conn = self.conn().await?;
        outbox::lease(self.names(), &mut conn, request).await
    }

    async fn record_outcomes(
        &self,
        outcomes: Vec<DeliveryOutcome>,
    ) -> Result<OutcomeReport, StoreError> {
        let mut conn = self.conn().await?;
        outbox::record_outcomes(self.names(), &mut conn, outcomes).await
    }

    async fn purge_expired(&self, now: Timestamp, limit: usize) -> Result<PurgeReport, StoreError> {
        let mut conn = self.conn().await?;
        outbox::purge(self.names(), &mut conn, now, limit).await
    }

    async fn deactivate_stale_endpoints(
        &self,
        seen_before: Timestamp,
        now: Timestamp,
    ) -> Result<usize, StoreError> {
        let mut conn = self.conn().await?;
        endpoints::deactivate_stale(self.names(), &mut conn, seen_before, now).await
    }

    async fn delete_user(&self, user: &UserId) -> Result<(), StoreError> {
        let mut conn = self.conn().await?;
        outbox::delete_user(self.names(), &mut conn, user.as_str()).await
    }

    async fn wait_for_work(&self, timeout: Duration) {
        let notified = self.inner.wake.notified();
        let _ = tokio::time::timeout(timeout, notified).await;
    }
}
