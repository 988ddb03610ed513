//! How PostgreSQL, diesel and pool failures become [`StoreError`]s.
//!
//! | failure | kind | retryable |
//! |---|---|---|
//! | connection refused / lost, pool timeout, server shutting down | `Unavailable` | yes |
//! | serialization failure, deadlock, lock timeout, statement cancelled | `Conflict` | yes |
//! | unique violation | `Conflict` | no |
//! | row data this code cannot read | `Corrupt` | no |
//! | anything else | `Other` | no |

use diesel::result::{ConnectionError, DatabaseErrorKind, Error as DieselError};
use diesel_async::pooled_connection::bb8::RunError;
use diesel_async::pooled_connection::PoolError;
use tidings::{Retry, StoreError, StoreErrorKind};

/// Messages of server errors that a retry can cure (diesel-async does not pass SQLSTATE codes
/// other than the few it maps to a [`DatabaseErrorKind`]).
const TRANSIENT: &[&str] = &[
    "deadlock detected",
    "could not obtain lock",
    "canceling statement due to",
    "could not serialize access",
];
const GOING_AWAY: &[&str] = &[
    "terminating connection",
    "the database system is",
    "too many connections",
    "server closed the connection",
    "connection closed",
];

/// Maps a query error.
pub(crate) fn query(e: DieselError) -> StoreError {
    match &e {
        DieselError::DatabaseError(kind, info) => {
            let message = info.message().to_owned();
            match kind {
                DatabaseErrorKind::UniqueViolation => StoreError::new(
                    StoreErrorKind::Conflict,
                    format!("unique violation: {message}"),
                ),
                DatabaseErrorKind::SerializationFailure => {
                    StoreError::new(StoreErrorKind::Conflict, message).with_retry(Retry::Backoff)
                }
                DatabaseErrorKind::ClosedConnection | DatabaseErrorKind::UnableToSendCommand => {
                    StoreError::unavailable(format!("PostgreSQL connection failed: {message}"))
                }
                _ if GOING_AWAY.iter().any(|m| message.contains(m)) => {
                    StoreError::unavailable(format!("PostgreSQL connection failed: {message}"))
                }
                _ if TRANSIENT.iter().any(|m| message.contains(m)) => {
                    StoreError::new(StoreErrorKind::Conflict, message).with_retry(Retry::Backoff)
                }
                _ => StoreError::new(
                    StoreErrorKind::Other,
                    format!("PostgreSQL error: {message}"),
                ),
            }
        }
        DieselError::BrokenTransactionManager => {
            StoreError::unavailable("the connection's transaction state is broken")
        }
        DieselError::DeserializationError(_) => {
            StoreError::new(StoreErrorKind::Corrupt, "a stored row could not be read")
        }
        DieselError::NotFound => StoreError::new(StoreErrorKind::NotFound, "row not found"),
        _ => StoreError::new(StoreErrorKind::Other, format!("query failed: {e}")),
    }
    .with_source(e)
}

/// Maps a connection error.
pub(crate) fn connection(e: ConnectionError) -> StoreError {
    match e {
        ConnectionError::InvalidConnectionUrl(ref m) => StoreError::new(
            StoreErrorKind::Other,
            format!("invalid PostgreSQL URL: {m}"),
        ),
        _ => StoreError::unavailable("cannot connect to PostgreSQL"),
    }
    .with_source(e)
}

/// Maps a failure to get a pooled connection.
pub(crate) fn pool(e: RunError) -> StoreError {
    match e {
        RunError::TimedOut => {
            StoreError::unavailable("timed out waiting for a PostgreSQL connection from the pool")
        }
        RunError::User(PoolError::ConnectionError(c)) => connection(c),
        RunError::User(PoolError::QueryError(q)) => {
            StoreError::unavailable("a pooled PostgreSQL connection failed its check")
                .with_source(q)
        }
    }
}

/// A row holding a value this code does not know.
pub(crate) fn corrupt(what: impl std::fmt::Display) -> StoreError {
    StoreError::new(
        StoreErrorKind::Corrupt,
        format!("unexpected stored value: {what}"),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn unique_violation_is_a_conflict_and_closed_connection_is_retryable() {
        let e = query(DieselError::DatabaseError(
            DatabaseErrorKind::UniqueViolation,
            Box::new("duplicate key value violates unique constraint".to_string()),
        ));
        assert_eq!(e.kind(), StoreErrorKind::Conflict);
        assert!(!e.is_retryable());
        let e = query(DieselError::DatabaseError(
            DatabaseErrorKind::UnableToSendCommand,
            Box::new("connection closed".to_string()),
        ));
        assert_eq!(e.kind(), StoreErrorKind::Unavailable);
        assert!(e.is_retryable());
        let e = query(DieselError::DatabaseError(
            DatabaseErrorKind::Unknown,
            Box::new("deadlock detected".to_string()),
        ));
        assert!(e.is_retryable());
        assert_eq!(pool(RunError::TimedOut).kind(), StoreErrorKind::Unavailable);
    }
}
