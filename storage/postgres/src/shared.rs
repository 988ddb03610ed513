//! What the store's tasks share: the pool, the insert writers, and the NOTIFY budget.

use std::collections::HashSet;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use diesel_async::pooled_connection::bb8::{Pool, PooledConnection};
use diesel_async::{AsyncPgConnection, RunQueryDsl};
use tidings::{Inserted, Notification, StoreError, StoreErrorKind};
use tokio::sync::{mpsc, oneshot};

use crate::store::Names;
use crate::{error, notifications};

/// How many scheduler turns a writer waits for more sends when another writer is busy.
const LINGER_TURNS: usize = 4;

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
    /// Writers executing a statement now.
    writing: AtomicUsize,
}

impl Shared {
    pub(crate) fn new(pool: Pool<AsyncPgConnection>, names: Names) -> Self {
        Shared {
            pool,
            names,
            last_notify: Mutex::new(None),
            trailing_notify: AtomicBool::new(false),
            writing: AtomicUsize::new(0),
        }
    }

    pub(crate) async fn conn(&self) -> Result<PooledConnection<'_, AsyncPgConnection>, StoreError> {
        self.pool.get().await.map_err(error::pool)
    }

    /// Starts `writers` tasks that take queued sends off the returned queue and write them,
    /// up to `max_batch` per statement. They end on their own, after the batch in hand, when
    /// the returned queue is dropped.
    pub(crate) fn start_writers(self: &Arc<Self>, writers: u32, max_batch: usize) -> InsertQueue {
        let (tx, rx) = mpsc::unbounded_channel();
        let rx = Arc::new(tokio::sync::Mutex::new(rx));
        for _ in 0..writers {
            tokio::spawn(writer(Arc::clone(self), Arc::clone(&rx), max_batch));
        }
        InsertQueue(tx)
    }

    /// Stores a notification through the writers: written at once when a writer is idle,
    /// otherwise together with the other sends queued meanwhile.
    pub(crate) async fn insert(
        self: &Arc<Self>,
        queue: &InsertQueue,
        notification: Notification,
    ) -> Result<Inserted, StoreError> {
        let (reply, answer) = oneshot::channel();
        match queue.0.send(Job {
            notification,
            reply,
        }) {
            Ok(()) => answer.await.unwrap_or_else(|_| {
                Err(StoreError::unavailable(
                    "the store's insert writers stopped (was the tokio runtime that created \
                     the PgStore shut down?); the notification may or may not be stored",
                ))
            }),
            // The writers are gone (their runtime ended): write it from here.
            Err(mpsc::error::SendError(job)) => self.insert_one(job.notification).await,
        }
    }

    /// Writes what one writer took off the queue.
    async fn write(self: &Arc<Self>, jobs: Vec<Job>) {
        // A caller that went away before its write started does not get it written.
        let jobs: Vec<Job> = jobs.into_iter().filter(|j| !j.reply.is_closed()).collect();
        // A repeat of a key earlier in the batch is written after it, so it finds the first
        // one stored and is answered with it.
        let mut seen = HashSet::with_capacity(jobs.len());
        let repeat: Vec<bool> = jobs
            .iter()
            .map(|j| {
                let n = &j.notification;
                !seen.insert((
                    n.app.as_str(),
                    n.user.as_str(),
                    n.app_notification_id.as_str(),
                ))
            })
            .collect();
        drop(seen);
        let (mut first, mut repeats) = (Vec::with_capacity(jobs.len()), Vec::new());
        for (job, repeat) in jobs.into_iter().zip(repeat) {
            if repeat {
                repeats.push(job);
            } else {
                first.push(job);
            }
        }
        if first.len() == 1 {
            repeats.insert(0, first.remove(0));
        } else if !first.is_empty() {
            self.write_batch(first).await;
        }
        for job in repeats {
            let result = self.insert_one(job.notification).await;
            let _ = job.reply.send(result);
        }
    }

    /// Many notifications in one statement. If the statement fails for a reason other than
    /// the database being unreachable, each is written again on its own: a repeat of a stored
    /// notification is then answered with the stored one, and one bad notification (or a
    /// deadlock with a host's transaction) fails only its own send.
    async fn write_batch(self: &Arc<Self>, jobs: Vec<Job>) {
        let notify = self.claim_notify();
        let result = async {
            let mut conn = self.conn().await?;
            let batch: Vec<&Notification> = jobs.iter().map(|j| &j.notification).collect();
            notifications::insert_batch(&self.names, &mut conn, &batch, notify).await
        }
        .await;
        let created = match result {
            Ok(created) => created,
            Err(e) if e.kind() == StoreErrorKind::Unavailable => {
                tracing::debug!(error = %e, sends = jobs.len(), "batched insert failed");
                for job in jobs {
                    let copy = StoreError::new(e.kind(), e.message()).with_retry(e.retry());
                    let _ = job.reply.send(Err(copy));
                }
                return;
            }
            Err(e) => {
                tracing::debug!(error = %e, sends = jobs.len(), "batched insert failed; writing each alone");
                for job in jobs {
                    let result = self.insert_one(job.notification).await;
                    let _ = job.reply.send(result);
                }
                return;
            }
        };
        let mut stored = Vec::new();
        let mut enqueued = false;
        for (job, created) in jobs.into_iter().zip(created) {
            match created {
                Some(c) => {
                    enqueued |= c.deliveries > 0;
                    let mut notification = job.notification;
                    notification.sequence = c.sequence;
                    let _ = job.reply.send(Ok(Inserted {
                        notification,
                        created: true,
                        deliveries: c.deliveries,
                    }));
                }
                None => stored.push(job),
            }
        }
        if enqueued && !notify {
            self.schedule_trailing_notify();
        }
        // Already stored: the single-notification path answers with the stored one.
        for job in stored {
            let result = self.insert_one(job.notification).await;
            let _ = job.reply.send(result);
        }
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

/// The sending side of the insert writers' queue; dropping it stops them.
#[derive(Debug)]
pub(crate) struct InsertQueue(mpsc::UnboundedSender<Job>);

/// One queued send and where its answer goes.
#[derive(Debug)]
struct Job {
    notification: Notification,
    reply: oneshot::Sender<Result<Inserted, StoreError>>,
}

/// A writer: takes the first queued send (waiting for one), then whatever else is queued up to
/// `max_batch`, and writes them. While it writes, the next writer waits at the queue, so up to
/// as many statements as writers run at once, and sends arriving meanwhile gather into the
/// next batch.
async fn writer(
    shared: Arc<Shared>,
    queue: Arc<tokio::sync::Mutex<mpsc::UnboundedReceiver<Job>>>,
    max_batch: usize,
) {
    loop {
        let mut jobs = Vec::new();
        {
            let mut queue = queue.lock().await;
            let Some(first) = queue.recv().await else {
                return;
            };
            jobs.push(first);
            // Under load (another writer is busy) let the senders that are about to enqueue
            // do so: a few scheduler turns, no timer.
            if AtomicUsize::load(&shared.writing, Ordering::Acquire) > 0 {
                for _ in 0..LINGER_TURNS {
                    tokio::task::yield_now().await;
                }
            }
            while jobs.len() < max_batch {
                match queue.try_recv() {
                    Ok(job) => jobs.push(job),
                    Err(_) => break,
                }
            }
        }
        shared.writing.fetch_add(1, Ordering::AcqRel);
        shared.write(jobs).await;
        shared.writing.fetch_sub(1, Ordering::AcqRel);
    }
}
