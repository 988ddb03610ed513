//! The delivery outbox: leasing, outcomes, expiry, erasure.

use std::collections::HashMap;
use std::sync::Arc;

use diesel::sql_types::BigInt;
use diesel::QueryableByName;
use diesel_async::{AsyncPgConnection, RunQueryDsl};
use tidings::{
    DeliveryOutcome, LeaseRequest, LeasedDelivery, Outcome, OutcomeReport, PurgeReport, StoreError,
    Timestamp,
};

use crate::error;
use crate::rows::{LeasedRow, NotificationRow, ENDPOINT_COLUMNS, NOTIFICATION_COLUMNS};
use crate::sql::{ts, Bind};
use crate::store::Names;

/// Leases due deliveries in one statement. `SKIP LOCKED` lets concurrent dispatchers (in any
/// process) take disjoint batches without waiting for each other.
///
/// A lease sets only columns no index covers (`attempt`, `lease_token`, `lease_until`), so the
/// row is rewritten in place on its page (a HOT update, see the migration that sets the
/// table's fillfactor) instead of into every index. Leased rows therefore keep their place in
/// `deliveries_due`, and the scan steps over those whose lease has not lapsed: at most the
/// deliveries in flight, a few batches.
///
/// The update finds the rows it just locked by `ctid` (a row this statement holds locked cannot
/// move; one that a concurrent transaction moved before the lock is not visible to it and is
/// simply left for the next lease).
///
/// Only active endpoints have pending deliveries: every statement that deactivates an endpoint
/// (a gone outcome, [`deactivate_stale`](crate::endpoints::deactivate_stale)) deletes its
/// pending deliveries in the same statement, and inserts and sync signals skip inactive
/// endpoints. So the lease does not look at endpoints before it locks (which cost a primary-key
/// lookup per due row); a delivery leased just before its endpoint was deactivated is pushed
/// once more, as it would have been a moment earlier.
///
/// The endpoints returned with the deliveries are read by primary key, in a `LATERAL`
/// subquery behind `OFFSET 0`, which the planner cannot turn into a join: a join's generic plan
/// is chosen once per connection, and one chosen while the tables were nearly empty (a new
/// install) hashed a sequential scan of every endpoint into each lease. See
/// `tests/plans.rs`.
const LEASE: &str = "
WITH due AS (
    SELECT d.ctid AS tid FROM {s}.deliveries d
    WHERE d.next_attempt_at <= $1 AND d.expires_at > $1
      AND (d.lease_until IS NULL OR d.lease_until <= $1)
    ORDER BY d.next_attempt_at
    LIMIT $2
    FOR UPDATE OF d SKIP LOCKED
), leased AS (
    UPDATE {s}.deliveries d
    SET attempt = d.attempt + 1, lease_token = gen_random_uuid(), lease_until = $3
    FROM due WHERE d.ctid = due.tid
    RETURNING d.id, d.app, d.user_id, d.endpoint_id, d.notification_id, d.kind, d.sequence,
        d.attempt, d.next_attempt_at AS due_at, d.expires_at, d.lease_token, d.lease_until
)
SELECT l.id AS d_id, l.app AS d_app, l.user_id AS d_user_id,
    l.notification_id AS d_notification_id, l.kind AS d_kind, l.sequence AS d_sequence,
    l.attempt AS d_attempt, l.due_at AS d_due, l.expires_at AS d_expires_at,
    l.lease_token AS d_lease_token, l.lease_until AS d_lease_until, e.*
FROM leased l
CROSS JOIN LATERAL (
    SELECT {cols} FROM {s}.endpoints e WHERE e.id = l.endpoint_id OFFSET 0
) e
ORDER BY l.due_at";

/// The notifications a leased batch needs, each by primary key (see [`LEASE`] on why not
/// `id = ANY($1)`, whose generic plan on a nearly empty table is a sequential scan).
const LEASED_NOTIFICATIONS: &str = "
SELECT n.* FROM unnest($1::uuid[]) AS k(id)
CROSS JOIN LATERAL (SELECT {cols} FROM {s}.notifications n WHERE n.id = k.id OFFSET 0) n";

/// [`Store::lease_due`](tidings::Store::lease_due): one statement to lease, one to read the
/// notifications the batch needs.
pub(crate) async fn lease(
    names: &Names,
    conn: &mut AsyncPgConnection,
    request: LeaseRequest,
) -> Result<Vec<LeasedDelivery>, StoreError> {
    if request.limit == 0 {
        return Ok(Vec::new());
    }
    let rows: Vec<LeasedRow> = names
        .sql(&LEASE.replace("{cols}", ENDPOINT_COLUMNS))
        .bind(request.now)
        .bind(i64::try_from(request.limit).unwrap_or(i64::MAX))
        .bind(request.lease_until)
        .load(conn)
        .await
        .map_err(error::query)?;
    let mut ids: Vec<uuid::Uuid> = rows.iter().filter_map(LeasedRow::notification_id).collect();
    ids.sort_unstable();
    ids.dedup();
    let mut notifications = HashMap::new();
    if !ids.is_empty() {
        let found: Vec<NotificationRow> = names
            .sql(&LEASED_NOTIFICATIONS.replace("{cols}", NOTIFICATION_COLUMNS))
            .bind_raw(Bind::UuidArr(ids))
            .load(conn)
            .await
            .map_err(error::query)?;
        for row in found {
            let n = row.into_notification()?;
            notifications.insert(n.id.as_uuid(), Arc::new(n));
        }
    }
    rows.into_iter()
        .map(|row| {
            let n = row
                .notification_id()
                .and_then(|id| notifications.get(&id).cloned());
            row.into_leased(n)
        })
        .collect()
}

#[derive(QueryableByName)]
struct OutcomeRow {
    #[diesel(sql_type = BigInt)]
    applied: i64,
    #[diesel(sql_type = BigInt)]
    deactivated: i64,
}

/// Applies a whole batch of outcomes in one statement. An outcome whose lease token no longer
/// matches (the lease was retaken) or whose delivery is gone matches no row and counts as
/// stale.
///
/// A retry goes back to the outbox with its new due time; every other outcome finishes the
/// delivery, which is deleted (the outbox holds pending work only; the outcome is reported by
/// the dispatcher's metrics and traces). A delete writes no index entries. An endpoint reported
/// gone is deactivated (if its address is still the one the push went to) and all its pending
/// deliveries are deleted, including ones this batch would have retried: pending work only
/// ever belongs to active endpoints (see [`LEASE`]).
///
/// Rows are reached through the primary key in id order (the outcomes are sorted first), so
/// two statements that touch the same rows lock them in the same order.
const OUTCOMES: &str = "
WITH o AS (
    SELECT * FROM unnest($1::uuid[], $2::uuid[], $3::text[], $4::timestamptz[], $5::text[],
        $6::text[]) AS o(id, lease, kind, retry_at, error, address_key)
    ORDER BY id
), finished AS (
    DELETE FROM {s}.deliveries d USING o
    WHERE d.id = o.id AND d.lease_token = o.lease AND o.kind <> 'retry'
    RETURNING d.id, d.endpoint_id, o.kind, o.address_key, o.error
), gone AS (
    UPDATE {s}.endpoints e SET active = false, deactivation_reason = g.error
    FROM (SELECT DISTINCT ON (endpoint_id) endpoint_id, address_key, error
          FROM finished WHERE kind = 'gone') g
    WHERE e.id = g.endpoint_id AND e.address_key = g.address_key AND e.active
    RETURNING e.id, e.user_id
), retried AS (
    UPDATE {s}.deliveries d SET next_attempt_at = o.retry_at, lease_token = NULL,
        lease_until = NULL, last_error = o.error
    FROM o
    WHERE d.id = o.id AND d.lease_token = o.lease AND o.kind = 'retry'
      AND NOT EXISTS (SELECT 1 FROM gone WHERE gone.id = d.endpoint_id)
    RETURNING d.id
), dropped AS (
    DELETE FROM {s}.deliveries d USING gone
    WHERE d.endpoint_id = gone.id AND d.user_id = gone.user_id
      AND NOT EXISTS (SELECT 1 FROM finished f WHERE f.id = d.id)
    RETURNING d.id, d.lease_token
)
SELECT (SELECT count(*) FROM retried) + (SELECT count(*) FROM finished)
        + (SELECT count(*) FROM dropped JOIN o ON o.id = dropped.id AND o.lease = dropped.lease_token)
        AS applied,
    (SELECT count(*) FROM gone) AS deactivated";

/// [`Store::record_outcomes`](tidings::Store::record_outcomes): the whole batch in one
/// statement (one round trip, one transaction).
pub(crate) async fn record_outcomes(
    names: &Names,
    conn: &mut AsyncPgConnection,
    outcomes: Vec<DeliveryOutcome>,
) -> Result<OutcomeReport, StoreError> {
    if outcomes.is_empty() {
        return Ok(OutcomeReport::default());
    }
    let total = outcomes.len();
    let mut ids = Vec::with_capacity(total);
    let mut leases = Vec::with_capacity(total);
    let mut kinds = Vec::with_capacity(total);
    let mut retry_at = Vec::with_capacity(total);
    let mut errors = Vec::with_capacity(total);
    let mut keys = Vec::with_capacity(total);
    for o in outcomes {
        ids.push(o.delivery.as_uuid());
        leases.push(o.lease.as_uuid());
        let (kind, retry, error, key) = match o.outcome {
            Outcome::Accepted { .. } => ("accepted", None, None, None),
            Outcome::Retry { at, error } => ("retry", Some(ts(at)), Some(error), None),
            Outcome::Failed { error } => ("failed", None, Some(error), None),
            Outcome::EndpointGone {
                reason,
                address_key,
            } => ("gone", None, Some(reason), Some(address_key)),
        };
        kinds.push(kind.to_owned());
        retry_at.push(retry);
        errors.push(error);
        keys.push(key);
    }
    let row: OutcomeRow = names
        .sql(OUTCOMES)
        .bind_raw(Bind::UuidArr(ids))
        .bind_raw(Bind::UuidArr(leases))
        .bind_raw(Bind::TextArr(kinds))
        .bind_raw(Bind::OptTsArr(retry_at))
        .bind_raw(Bind::OptTextArr(errors))
        .bind_raw(Bind::OptTextArr(keys))
        .get_result(conn)
        .await
        .map_err(error::query)?;
    let applied = usize::try_from(row.applied).map_err(error::corrupt)?;
    Ok(OutcomeReport {
        applied,
        stale: total.saturating_sub(applied),
        deactivated: usize::try_from(row.deactivated).map_err(error::corrupt)?,
    })
}

#[derive(QueryableByName)]
struct PurgeRow {
    #[diesel(sql_type = BigInt)]
    notifications: i64,
    #[diesel(sql_type = BigInt)]
    deliveries: i64,
}

/// O(expired): both deletes start from an index on the expiry time (`notifications_expiry`,
/// `deliveries_sync_expiry`) and reach rows by primary key through `= ANY (ARRAY(…))` (an
/// `IN (subquery)` is planned as a hash join over the whole table); the pending deliveries of
/// a purged notification are found among its user's (`deliveries_user_endpoint`), which the
/// outbox keeps few. `SKIP LOCKED` lets sweeps of several instances run at once.
const PURGE: &str = "
WITH n AS (
    DELETE FROM {s}.notifications WHERE id = ANY (ARRAY(
        SELECT id FROM {s}.notifications WHERE expires_at <= $1
        ORDER BY expires_at LIMIT $2 FOR UPDATE SKIP LOCKED))
    RETURNING id, user_id
), dn AS (
    DELETE FROM {s}.deliveries d USING n
    WHERE d.user_id = n.user_id AND d.notification_id = n.id
    RETURNING 1
), ds AS (
    DELETE FROM {s}.deliveries WHERE id = ANY (ARRAY(
        SELECT id FROM {s}.deliveries WHERE notification_id IS NULL AND expires_at <= $1
        ORDER BY expires_at LIMIT $2 FOR UPDATE SKIP LOCKED))
    RETURNING 1
)
SELECT (SELECT count(*) FROM n) AS notifications,
       (SELECT count(*) FROM dn) + (SELECT count(*) FROM ds) AS deliveries";

/// [`Store::purge_expired`](tidings::Store::purge_expired).
pub(crate) async fn purge(
    names: &Names,
    conn: &mut AsyncPgConnection,
    now: Timestamp,
    limit: usize,
) -> Result<PurgeReport, StoreError> {
    if limit == 0 {
        return Ok(PurgeReport::default());
    }
    let row: PurgeRow = names
        .sql(PURGE)
        .bind(now)
        .bind(i64::try_from(limit).unwrap_or(i64::MAX))
        .get_result(conn)
        .await
        .map_err(error::query)?;
    Ok(PurgeReport {
        notifications: usize::try_from(row.notifications).map_err(error::corrupt)?,
        deliveries: usize::try_from(row.deliveries).map_err(error::corrupt)?,
    })
}

/// [`Store::delete_user`](tidings::Store::delete_user): every table, one statement.
pub(crate) async fn delete_user(
    names: &Names,
    conn: &mut AsyncPgConnection,
    user: &str,
) -> Result<(), StoreError> {
    names
        .sql(
            "WITH d AS (DELETE FROM {s}.deliveries WHERE user_id = $1 RETURNING 1),
                  n AS (DELETE FROM {s}.notifications WHERE user_id = $1 RETURNING 1),
                  e AS (DELETE FROM {s}.endpoints WHERE user_id = $1 RETURNING 1),
                  q AS (DELETE FROM {s}.user_sequences WHERE user_id = $1 RETURNING 1)
             SELECT (SELECT count(*) FROM d) + (SELECT count(*) FROM n)
                  + (SELECT count(*) FROM e) + (SELECT count(*) FROM q) AS n",
        )
        .bind(user)
        .execute(conn)
        .await
        .map_err(error::query)?;
    Ok(())
}
