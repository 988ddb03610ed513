//! What the store's tasks share, and the NOTIFY budget.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use diesel_async::pooled_connection::bb8::{Pool, PooledConnection};
use diesel_async::{AsyncPgConnection, RunQueryDsl};
use tidings::{Inserted, Notification, StoreError};

use crate::store::Names;
use crate::{error, notifications};

/// At most one NOTIFY per instance per this long from inserts.
const NOTIFY_WINDOW: Duration = Duration::from_millis(25);

/// What the store's tasks share (and not the store itself, so dropping the last `PgStore`
/// stops them).
#[derive(Debug)]
pub(crate) struct Shared {
    pub(crate) pool: Pool<AsyncPgConnection>,
    pub(crate) names: Names,
    last_notify: Mutex<Option<Instant>>,
    trailing_notify: AtomicBool,
}

impl Shared {
    pub(crate) fn new(pool: Pool<AsyncPgConnection>, names: Names) -> Self {
        Shared {
            pool,
            names,
            last_notify: Mutex::new(None),
            trailing_notify: AtomicBool::new(false),
        }
    }

    pub(crate) async fn conn(&self) -> Result<PooledConnection<'_, AsyncPgConnection>, StoreError> {
        self.pool.get().await.map_err(error::pool)
    }

    /// One notification in its own statement, which NOTIFYs itself when the budget allows.
    pub(crate) async fn insert_one(
        self: &Arc<Self>,
        n: Notification,
    ) -> Result<Inserted, StoreError> {
        let mut conn = self.conn().await?;
        let notify = self.claim_notify();
        let inserted = notifications::insert(&self.names, &mut conn, n, notify).await?;
        if !notify && inserted.deliveries > 0 {
            self.schedule_trailing_notify();
        }
        Ok(inserted)
    }

    /// Whether a statement starting now may NOTIFY: at most once per [`NOTIFY_WINDOW`] per
    /// instance. PostgreSQL serialises the commits of all transactions that NOTIFY (a
    /// database-wide lock held through the commit's WAL flush), so a NOTIFY per send would cap
    /// sends at one flush each; inserts inside the window are covered by one trailing NOTIFY.
    fn claim_notify(&self) -> bool {
        let now = Instant::now();
        let mut last = self.last_notify.lock().unwrap_or_else(|e| e.into_inner());
        match *last {
            Some(at) if now.duration_since(at) < NOTIFY_WINDOW => false,
            _ => {
                *last = Some(now);
                true
            }
        }
    }

    async fn send_notify(&self) -> Result<(), StoreError> {
        let mut conn = self.conn().await?;
        self.names
            .sql("SELECT pg_notify($1, '')")
            .bind(self.names.channel.clone())
            .execute(&mut conn)
            .await
            .map_err(error::query)?;
        Ok(())
    }

    /// Sends one NOTIFY at the end of the current window, unless one is already scheduled.
    fn schedule_trailing_notify(self: &Arc<Self>) {
        if self.trailing_notify.swap(true, Ordering::AcqRel) {
            return;
        }
        let shared = Arc::clone(self);
        tokio::spawn(async move {
            tokio::time::sleep(NOTIFY_WINDOW).await;
            shared.trailing_notify.store(false, Ordering::Release);
            *shared.last_notify.lock().unwrap_or_else(|e| e.into_inner()) = Some(Instant::now());
            if let Err(e) = shared.send_notify().await {
                tracing::debug!(error = %e, "trailing NOTIFY failed; dispatchers poll instead");
            }
        });
    }
}
