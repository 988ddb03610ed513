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

/// Leases due deliveries in one statement. A leased delivery's `next_attempt_at` moves to the
/// lease deadline, so it is not due again until the lease lapses, and the partial index
/// `deliveries_due` finds due work and lapsed leases alike. `SKIP LOCKED` lets concurrent
/// dispatchers (in any process) take disjoint batches without waiting for each other.
const LEASE: &str = "
WITH due AS (
    SELECT d.id, d.next_attempt_at FROM {s}.deliveries d
    JOIN {s}.endpoints e ON e.id = d.endpoint_id
    WHERE d.state = 'pending' AND d.next_attempt_at <= $1 AND d.expires_at > $1 AND e.active
    ORDER BY d.next_attempt_at
    LIMIT $2
    FOR UPDATE OF d SKIP LOCKED
), leased AS (
    UPDATE {s}.deliveries d
    SET attempt = d.attempt + 1, lease_token = gen_random_uuid(), lease_until = $3,
        next_attempt_at = $3
    FROM due WHERE d.id = due.id
    RETURNING d.id, d.app, d.user_id, d.endpoint_id, d.notification_id, d.kind, d.sequence,
        d.attempt, due.next_attempt_at AS due_at, d.expires_at, d.lease_token, d.lease_until
)
SELECT l.id AS d_id, l.app AS d_app, l.user_id AS d_user_id,
    l.notification_id AS d_notification_id, l.kind AS d_kind, l.sequence AS d_sequence,
    l.attempt AS d_attempt, l.due_at AS d_due, l.expires_at AS d_expires_at,
    l.lease_token AS d_lease_token, l.lease_until AS d_lease_until, e.*
FROM leased l
CROSS JOIN LATERAL (SELECT {cols} FROM {s}.endpoints e WHERE e.id = l.endpoint_id) e
ORDER BY l.due_at";

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
            .sql(&format!(
                "SELECT {NOTIFICATION_COLUMNS} FROM {{s}}.notifications n WHERE n.id = ANY($1)"
            ))
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

/// Applies a whole batch of outcomes in one statement. Rows are locked in id order, so two
/// batches never deadlock on each other; an outcome whose lease token no longer matches (the
/// lease was retaken) or whose delivery is gone matches no row and counts as stale.
const OUTCOMES: &str = "
WITH o AS (
    SELECT * FROM unnest($1::uuid[], $2::uuid[], $3::text[], $4::timestamptz[], $5::text[],
        $6::text[], $7::text[], $8::timestamptz[])
        AS o(id, lease, kind, retry_at, error, pmid, address_key, at)
), cur AS (
    SELECT d.id, o.kind, o.retry_at, o.error, o.pmid, o.address_key, o.at
    FROM {s}.deliveries d JOIN o ON d.id = o.id AND d.lease_token = o.lease
    WHERE d.state = 'pending'
    ORDER BY d.id
    FOR UPDATE OF d
), upd AS (
    UPDATE {s}.deliveries d SET
        state = CASE c.kind WHEN 'retry' THEN 'pending' WHEN 'accepted' THEN 'done'
            ELSE 'failed' END,
        next_attempt_at = CASE WHEN c.kind = 'retry' THEN c.retry_at ELSE d.next_attempt_at END,
        lease_token = NULL,
        lease_until = NULL,
        last_error = CASE WHEN c.kind = 'accepted' THEN NULL ELSE c.error END,
        provider_message_id = c.pmid,
        finished_at = CASE WHEN c.kind = 'retry' THEN NULL ELSE c.at END
    FROM cur c
    WHERE d.id = c.id
    RETURNING d.id, d.endpoint_id, c.kind, c.address_key, c.error
), gone AS (
    UPDATE {s}.endpoints e SET active = false, deactivation_reason = g.error
    FROM (SELECT DISTINCT ON (endpoint_id) endpoint_id, address_key, error
          FROM upd WHERE kind = 'gone') g
    WHERE e.id = g.endpoint_id AND e.address_key = g.address_key AND e.active
    RETURNING e.id, e.user_id
), dropped AS (
    DELETE FROM {s}.deliveries d USING gone
    WHERE d.endpoint_id = gone.id AND d.user_id = gone.user_id AND d.state = 'pending'
      AND NOT EXISTS (SELECT 1 FROM upd WHERE upd.id = d.id)
    RETURNING 1
)
SELECT (SELECT count(*) FROM upd) AS applied, (SELECT count(*) FROM gone) AS deactivated";

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
    let mut pmids = Vec::with_capacity(total);
    let mut keys = Vec::with_capacity(total);
    let mut at = Vec::with_capacity(total);
    for o in outcomes {
        ids.push(o.delivery.as_uuid());
        leases.push(o.lease.as_uuid());
        at.push(ts(o.at));
        let (kind, retry, error, pmid, key) = match o.outcome {
            Outcome::Accepted {
                provider_message_id,
            } => ("accepted", None, None, provider_message_id, None),
            Outcome::Retry { at, error } => ("retry", Some(ts(at)), Some(error), None, None),
            Outcome::Failed { error } => ("failed", None, Some(error), None, None),
            Outcome::EndpointGone {
                reason,
                address_key,
            } => ("gone", None, Some(reason), None, Some(address_key)),
        };
        kinds.push(kind.to_owned());
        retry_at.push(retry);
        errors.push(error);
        pmids.push(pmid);
        keys.push(key);
    }
    let row: OutcomeRow = names
        .sql(OUTCOMES)
        .bind_raw(Bind::UuidArr(ids))
        .bind_raw(Bind::UuidArr(leases))
        .bind_raw(Bind::TextArr(kinds))
        .bind_raw(Bind::OptTsArr(retry_at))
        .bind_raw(Bind::OptTextArr(errors))
        .bind_raw(Bind::OptTextArr(pmids))
        .bind_raw(Bind::OptTextArr(keys))
        .bind_raw(Bind::TsArr(at))
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
/// `deliveries_sync_expiry`) and reach rows by primary key or `deliveries_notification` through
/// `= ANY (ARRAY(…))` (an `IN (subquery)` is planned as a hash join over the whole table).
/// `SKIP LOCKED` lets sweeps of several instances run at once.
const PURGE: &str = "
WITH n AS (
    DELETE FROM {s}.notifications WHERE id = ANY (ARRAY(
        SELECT id FROM {s}.notifications WHERE expires_at <= $1
        ORDER BY expires_at LIMIT $2 FOR UPDATE SKIP LOCKED))
    RETURNING id
), dn AS (
    DELETE FROM {s}.deliveries d WHERE d.notification_id = ANY (ARRAY(SELECT id FROM n))
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
