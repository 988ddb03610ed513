//! The LISTEN connection: wakes idle dispatchers when any instance enqueues due work.
//!
//! Statements that enqueue due work call `pg_notify(<channel>, '')` in the same statement;
//! PostgreSQL delivers the notification when the transaction commits (and never when it rolls
//! back). One task per store holds a dedicated connection that LISTENs on the channel and
//! reconnects after failures; while it is down, `wait_for_work` still returns at its timeout.

use std::sync::Arc;
use std::time::Duration;

use futures::StreamExt;
use tokio::sync::{watch, Notify};
use tokio_postgres::{AsyncMessage, NoTls};

/// The NOTIFY channel of a schema (schema names are validated identifiers, at most 40 bytes).
pub(crate) fn channel(schema: &str) -> String {
    format!("tidings_wake_{schema}")
}

/// Wakes every current waiter and leaves one permit for a waiter that is about to wait, so a
/// notification that arrives between a dispatcher's empty lease and its wait is not missed.
pub(crate) fn wake(notify: &Notify) {
    notify.notify_waiters();
    notify.notify_one();
}

/// Runs until aborted: connect, LISTEN, forward notifications to `notify`; on failure wait a
/// moment and start again. `ready` is true while LISTEN is in effect.
pub(crate) async fn run(
    url: String,
    channel: String,
    notify: Arc<Notify>,
    ready: watch::Sender<bool>,
) {
    const FIRST_WAIT: Duration = Duration::from_millis(100);
    let mut backoff = FIRST_WAIT;
    loop {
        match listen_once(&url, &channel, &notify, &ready).await {
            Ok(()) => tracing::debug!("tidings-postgres LISTEN connection closed; reconnecting"),
            Err(e) => {
                tracing::warn!(error = %e, "tidings-postgres LISTEN connection failed; reconnecting")
            }
        }
        // A connection that got as far as LISTEN worked: the next failure starts the backoff
        // afresh.
        if ready.send_replace(false) {
            backoff = FIRST_WAIT;
        }
        tokio::time::sleep(backoff).await;
        backoff = (backoff * 2).min(Duration::from_secs(5));
    }
}

async fn listen_once(
    url: &str,
    channel: &str,
    notify: &Notify,
    ready: &watch::Sender<bool>,
) -> Result<(), tokio_postgres::Error> {
    let (client, mut connection) = tokio_postgres::connect(url, NoTls).await?;
    let mut messages = futures::stream::poll_fn(move |cx| connection.poll_message(cx));
    let statement = format!("LISTEN \"{channel}\"");
    let listen = client.batch_execute(&statement);
    tokio::pin!(listen);
    let mut listening = false;
    loop {
        tokio::select! {
            result = &mut listen, if !listening => {
                result?;
                listening = true;
                ready.send_replace(true);
                // Work may have been enqueued while we were not listening.
                wake(notify);
            }
            message = messages.next() => match message {
                Some(Ok(AsyncMessage::Notification(_))) => wake(notify),
                Some(Ok(_)) => {}
                Some(Err(e)) => return Err(e),
                None => return Ok(()),
            },
        }
    }
}
