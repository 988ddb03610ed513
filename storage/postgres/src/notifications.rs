//! Notifications: insert with fanout, state changes with sync signals, fetches, history, feed.

use diesel::sql_types::{BigInt, Bool, Nullable};
use diesel::QueryableByName;
use diesel_async::scoped_futures::ScopedFutureExt;
use diesel_async::{AsyncConnection, AsyncPgConnection, RunQueryDsl};
use std::collections::HashMap;

use tidings::{
    BulkStateUpdate, ChangePage, ChangesQuery, HistoryCursor, HistoryPage, HistoryQuery, Inserted,
    Notification, Platform, StateUpdate, Status, StoreError,
};

use crate::error;
use crate::rows::{
    action_str, duration_ns, platform_bit, read_str, status_str, CountRow, NotificationRow,
    NOTIFICATION_COLUMNS,
};
use crate::sql::{ts, Bind, Sql};
use crate::store::{Names, TxError};

#[derive(QueryableByName)]
struct InsertedRow {
    #[diesel(sql_type = Nullable<BigInt>)]
    sequence: Option<i64>,
    #[diesel(sql_type = BigInt)]
    n: i64,
}

const INSERT: &str = "
WITH seq AS (
    INSERT INTO {s}.user_sequences AS us (user_id, app, sequence)
    SELECT $2, $1, 1
    WHERE NOT EXISTS (
        SELECT 1 FROM {s}.notifications
        WHERE user_id = $2 AND app = $1 AND app_notification_id = $3)
    ON CONFLICT (user_id, app) DO UPDATE SET sequence = us.sequence + 1
    RETURNING us.sequence
), ins AS (
    INSERT INTO {s}.notifications (id, app, user_id, app_notification_id, grp, priority,
        created_at, expires_at, display_ttl_ns, visual_title, visual_body, raw, targets,
        fallback_delay_ns, fallback_title, fallback_body, read, action, status, changed_at,
        sequence)
    SELECT $4, $1, $2, $3, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14, $15, $16, $17, $18, $19,
        $20, seq.sequence
    FROM seq
    ON CONFLICT (user_id, app, app_notification_id) DO NOTHING
    RETURNING id, sequence, created_at, expires_at
), eps AS (
    SELECT e.id, e.platform FROM {s}.endpoints e
    WHERE e.user_id = $2 AND e.app = $1 AND e.active AND (e.platform & $13) <> 0
), dn AS (
    INSERT INTO {s}.deliveries (id, app, user_id, endpoint_id, notification_id, kind, sequence,
        attempt, next_attempt_at, expires_at)
    SELECT gen_random_uuid(), $1, $2, eps.id, ins.id, 'notification', ins.sequence, 0,
        ins.created_at, ins.expires_at
    FROM ins CROSS JOIN eps
    UNION ALL
    SELECT gen_random_uuid(), $1, $2, eps.id, ins.id, 'fallback_alert', ins.sequence, 0,
        $21, ins.expires_at
    FROM ins CROSS JOIN eps
    WHERE eps.platform = 1 AND $21::timestamptz IS NOT NULL
    RETURNING 1
), wake AS (
    SELECT pg_notify($22, '') WHERE $23 AND EXISTS (SELECT 1 FROM dn)
)
SELECT (SELECT sequence FROM ins) AS sequence,
       (SELECT count(*) FROM dn) AS n,
       (SELECT count(*) FROM wake) AS woke";

/// [`Store::insert_notification`](tidings::Store::insert_notification) on any connection: a
/// pooled one, or a host's inside its own transaction. One statement does the whole insert, so
/// it is atomic even outside a transaction. With `notify`, the statement also wakes listening
/// dispatchers (on commit) when it enqueued deliveries.
pub(crate) async fn insert(
    names: &Names,
    conn: &mut AsyncPgConnection,
    n: Notification,
    notify: bool,
) -> Result<Inserted, StoreError> {
    let row: InsertedRow = insert_query(names, &n, notify)?
        .get_result(conn)
        .await
        .map_err(error::query)?;
    finish_insert(names, conn, n, row).await
}

fn insert_query(names: &Names, n: &Notification, notify: bool) -> Result<Sql, StoreError> {
    let fallback_due = n.fallback.as_ref().map(|f| n.created_at.plus(f.delay));
    Ok(names
        .sql(INSERT)
        .bind(n.app.as_str())
        .bind(n.user.as_str())
        .bind(n.app_notification_id.clone())
        .bind(n.id.as_uuid())
        .bind(n.group.clone())
        .bind(n.priority.as_str())
        .bind(n.created_at)
        .bind(n.expires_at)
        .bind(n.display_ttl.map(duration_ns).transpose()?)
        .bind(n.visual.as_ref().map(|v| v.title.clone()))
        .bind(n.visual.as_ref().and_then(|v| v.body.clone()))
        .bind(n.raw.clone())
        .bind(i16::from(n.targets.bits()))
        .bind(
            n.fallback
                .as_ref()
                .map(|f| duration_ns(f.delay))
                .transpose()?,
        )
        .bind(n.fallback.as_ref().map(|f| f.visual.title.clone()))
        .bind(n.fallback.as_ref().and_then(|f| f.visual.body.clone()))
        .bind(read_str(n.state.read))
        .bind(action_str(n.state.action))
        .bind(status_str(n.state.status))
        .bind(n.state.changed_at)
        .bind(fallback_due)
        .bind(names.channel.clone())
        .bind(notify))
}

/// Many notifications in one statement: what [`INSERT`] does for one, for each of them.
///
/// - The user's sequence row is bumped once per (user, app) by the number of notifications in
///   the batch, in (user, app) order, so two batches lock the rows they share in the same order
///   and never deadlock on each other; the notifications of a user then take the numbers in
///   between, in batch order.
/// - A plain `INSERT`: a notification whose (app, user, app notification id) is already stored
///   fails the whole statement with a unique violation, and the caller then writes each of the
///   batch on its own (`ON CONFLICT DO NOTHING`, answering repeats with the stored one). Repeats
///   are rare (a host retrying a send), and a speculative insertion per row (what `ON CONFLICT`
///   costs) is not. (Checking first with `NOT EXISTS` was worse: its generic plan, fixed while
///   the table was small, scanned every notification per batch.) The caller never puts two
///   with the same key in one batch.
/// - Endpoints are found per notification by a `LATERAL` subquery behind `OFFSET 0`, never a
///   join (see `outbox::LEASE` on why). The per-notification delivery counts are not computed
///   here (a join of two CTEs is planned for a handful of rows, as a nested loop): the
///   statement returns one row per delivery instead, and the caller counts.
const INSERT_BATCH: &str = "
WITH src AS (
    SELECT * FROM unnest($1::uuid[], $2::text[], $3::text[], $4::text[], $5::text[],
        $6::text[], $7::timestamptz[], $8::timestamptz[], $9::bigint[], $10::text[],
        $11::text[], $12::text[], $13::smallint[], $14::bigint[], $15::text[], $16::text[],
        $17::text[], $18::text[], $19::text[], $20::timestamptz[])
        WITH ORDINALITY AS s(id, app, user_id, app_notification_id, grp, priority, created_at,
            expires_at, display_ttl_ns, visual_title, visual_body, raw, targets,
            fallback_delay_ns, fallback_title, fallback_body, read, action, status, changed_at,
            ord)
), counts AS (
    SELECT user_id, app, count(*) AS c FROM src GROUP BY user_id, app
), seq AS (
    INSERT INTO {s}.user_sequences AS us (user_id, app, sequence)
    SELECT user_id, app, c FROM counts ORDER BY user_id, app
    ON CONFLICT (user_id, app) DO UPDATE SET sequence = us.sequence + excluded.sequence
    RETURNING us.user_id, us.app, us.sequence
), numbered AS (
    SELECT f.*, seq.sequence - counts.c
        + row_number() OVER (PARTITION BY f.user_id, f.app ORDER BY f.ord) AS sequence
    FROM src f JOIN counts USING (user_id, app) JOIN seq USING (user_id, app)
), ins AS (
    INSERT INTO {s}.notifications (id, app, user_id, app_notification_id, grp, priority,
        created_at, expires_at, display_ttl_ns, visual_title, visual_body, raw, targets,
        fallback_delay_ns, fallback_title, fallback_body, read, action, status, changed_at,
        sequence)
    SELECT id, app, user_id, app_notification_id, grp, priority, created_at, expires_at,
        display_ttl_ns, visual_title, visual_body, raw, targets, fallback_delay_ns,
        fallback_title, fallback_body, read, action, status, changed_at, sequence
    FROM numbered ORDER BY ord
    RETURNING id, app, user_id, sequence, created_at, expires_at, targets, fallback_delay_ns
), dn AS (
    INSERT INTO {s}.deliveries (id, app, user_id, endpoint_id, notification_id, kind, sequence,
        attempt, next_attempt_at, expires_at)
    SELECT gen_random_uuid(), ins.app, ins.user_id, e.id, ins.id, 'notification', ins.sequence,
        0, ins.created_at, ins.expires_at
    FROM ins
    CROSS JOIN LATERAL (
        SELECT e.id FROM {s}.endpoints e
        WHERE e.user_id = ins.user_id AND e.app = ins.app AND e.active
          AND (e.platform & ins.targets) <> 0
        OFFSET 0
    ) e
    UNION ALL
    -- The fallback alert is due at created_at + delay, in whole microseconds as in core.
    SELECT gen_random_uuid(), ins.app, ins.user_id, e.id, ins.id, 'fallback_alert',
        ins.sequence, 0,
        ins.created_at + (ins.fallback_delay_ns / 1000) * interval '1 microsecond',
        ins.expires_at
    FROM ins
    CROSS JOIN LATERAL (
        SELECT e.id FROM {s}.endpoints e
        WHERE e.user_id = ins.user_id AND e.app = ins.app AND e.active
          AND e.platform = 1 AND (e.platform & ins.targets) <> 0
        OFFSET 0
    ) e
    WHERE ins.fallback_delay_ns IS NOT NULL
    RETURNING notification_id
), wake AS (
    SELECT pg_notify($21, '') WHERE $22 AND EXISTS (SELECT 1 FROM dn)
)
SELECT ins.id, ins.sequence AS sequence, false AS delivery FROM ins
UNION ALL
SELECT dn.notification_id, 0, true FROM dn
UNION ALL
SELECT NULL, count(*), false FROM wake";

/// A row of the batch statement: a created notification, one of its deliveries, or the count
/// of NOTIFYs sent (the one row without an id).
#[derive(QueryableByName)]
struct BatchRow {
    #[diesel(sql_type = Nullable<diesel::sql_types::Uuid>)]
    id: Option<uuid::Uuid>,
    #[diesel(sql_type = BigInt)]
    sequence: i64,
    #[diesel(sql_type = Bool)]
    delivery: bool,
}

/// A notification the batch statement created: its sequence and how many deliveries it got.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Created {
    pub(crate) sequence: u64,
    pub(crate) deliveries: usize,
}

/// Inserts `batch` (no two with the same (app, user, app notification id)) in one statement on
/// a pooled connection. Answers, per notification in order, what was created (a `Conflict`
/// error when one of them was already stored). With `notify`, the statement also wakes
/// listening dispatchers (on commit) when it enqueued deliveries.
pub(crate) async fn insert_batch(
    names: &Names,
    conn: &mut AsyncPgConnection,
    batch: &[&Notification],
    notify: bool,
) -> Result<Vec<Option<Created>>, StoreError> {
    let len = batch.len();
    let mut ids = Vec::with_capacity(len);
    let mut apps = Vec::with_capacity(len);
    let mut users = Vec::with_capacity(len);
    let mut keys = Vec::with_capacity(len);
    let mut groups = Vec::with_capacity(len);
    let mut priorities = Vec::with_capacity(len);
    let mut created = Vec::with_capacity(len);
    let mut expires = Vec::with_capacity(len);
    let mut display_ttls = Vec::with_capacity(len);
    let mut titles = Vec::with_capacity(len);
    let mut bodies = Vec::with_capacity(len);
    let mut raws = Vec::with_capacity(len);
    let mut targets = Vec::with_capacity(len);
    let mut fallback_delays = Vec::with_capacity(len);
    let mut fallback_titles = Vec::with_capacity(len);
    let mut fallback_bodies = Vec::with_capacity(len);
    let mut reads = Vec::with_capacity(len);
    let mut actions = Vec::with_capacity(len);
    let mut statuses = Vec::with_capacity(len);
    let mut changed = Vec::with_capacity(len);
    for n in batch {
        ids.push(n.id.as_uuid());
        apps.push(n.app.as_str().to_owned());
        users.push(n.user.as_str().to_owned());
        keys.push(n.app_notification_id.clone());
        groups.push(n.group.clone());
        priorities.push(n.priority.as_str().to_owned());
        created.push(ts(n.created_at));
        expires.push(ts(n.expires_at));
        display_ttls.push(n.display_ttl.map(duration_ns).transpose()?);
        titles.push(n.visual.as_ref().map(|v| v.title.clone()));
        bodies.push(n.visual.as_ref().and_then(|v| v.body.clone()));
        raws.push(n.raw.clone());
        targets.push(i16::from(n.targets.bits()));
        fallback_delays.push(
            n.fallback
                .as_ref()
                .map(|f| duration_ns(f.delay))
                .transpose()?,
        );
        fallback_titles.push(n.fallback.as_ref().map(|f| f.visual.title.clone()));
        fallback_bodies.push(n.fallback.as_ref().and_then(|f| f.visual.body.clone()));
        reads.push(read_str(n.state.read).to_owned());
        actions.push(action_str(n.state.action).to_owned());
        statuses.push(status_str(n.state.status).to_owned());
        changed.push(ts(n.state.changed_at));
    }
    let rows: Vec<BatchRow> = names
        .sql(INSERT_BATCH)
        .bind_raw(Bind::UuidArr(ids))
        .bind_raw(Bind::TextArr(apps))
        .bind_raw(Bind::TextArr(users))
        .bind_raw(Bind::TextArr(keys))
        .bind_raw(Bind::OptTextArr(groups))
        .bind_raw(Bind::TextArr(priorities))
        .bind_raw(Bind::TsArr(created))
        .bind_raw(Bind::TsArr(expires))
        .bind_raw(Bind::OptBigIntArr(display_ttls))
        .bind_raw(Bind::OptTextArr(titles))
        .bind_raw(Bind::OptTextArr(bodies))
        .bind_raw(Bind::OptTextArr(raws))
        .bind_raw(Bind::SmallIntArr(targets))
        .bind_raw(Bind::OptBigIntArr(fallback_delays))
        .bind_raw(Bind::OptTextArr(fallback_titles))
        .bind_raw(Bind::OptTextArr(fallback_bodies))
        .bind_raw(Bind::TextArr(reads))
        .bind_raw(Bind::TextArr(actions))
        .bind_raw(Bind::TextArr(statuses))
        .bind_raw(Bind::TsArr(changed))
        .bind(names.channel.clone())
        .bind(notify)
        .load(conn)
        .await
        .map_err(error::query)?;
    let mut by_id = std::collections::HashMap::with_capacity(len);
    for row in &rows {
        if let (Some(id), false) = (row.id, row.delivery) {
            let sequence = u64::try_from(row.sequence).map_err(error::corrupt)?;
            by_id.insert(
                id,
                Created {
                    sequence,
                    deliveries: 0,
                },
            );
        }
    }
    for row in &rows {
        if let (Some(id), true) = (row.id, row.delivery) {
            let created = by_id
                .get_mut(&id)
                .ok_or_else(|| error::corrupt(format!("delivery of unknown notification {id}")))?;
            created.deliveries += 1;
        }
    }
    Ok(batch
        .iter()
        .map(|n| by_id.get(&n.id.as_uuid()).copied())
        .collect())
}

/// The result of an insert statement: the new notification, or the one stored before.
async fn finish_insert(
    names: &Names,
    conn: &mut AsyncPgConnection,
    n: Notification,
    row: InsertedRow,
) -> Result<Inserted, StoreError> {
    if let Some(sequence) = row.sequence {
        let mut notification = n;
        notification.sequence = u64::try_from(sequence).map_err(error::corrupt)?;
        return Ok(Inserted {
            notification,
            created: true,
            deliveries: usize::try_from(row.n).map_err(error::corrupt)?,
        });
    }
    let existing: NotificationRow = names
        .sql(&format!(
            "SELECT {NOTIFICATION_COLUMNS} FROM {{s}}.notifications n
             WHERE n.user_id = $1 AND n.app = $2 AND n.app_notification_id = $3"
        ))
        .bind(n.user.as_str())
        .bind(n.app.as_str())
        .bind(n.app_notification_id.clone())
        .get_result(conn)
        .await
        .map_err(error::query)?;
    Ok(Inserted {
        notification: existing.into_notification()?,
        created: false,
        deliveries: 0,
    })
}

/// One notification of (app, user), unless expired at `now`.
pub(crate) async fn get(
    names: &Names,
    conn: &mut AsyncPgConnection,
    app: &str,
    user: &str,
    id: uuid::Uuid,
    now: tidings::Timestamp,
) -> Result<Notification, StoreError> {
    let rows: Vec<NotificationRow> = names
        .sql(&format!(
            "SELECT {NOTIFICATION_COLUMNS} FROM {{s}}.notifications n
             WHERE n.id = $1 AND n.app = $2 AND n.user_id = $3 AND n.expires_at > $4"
        ))
        .bind(id)
        .bind(app)
        .bind(user)
        .bind(now)
        .load(conn)
        .await
        .map_err(error::query)?;
    match rows.into_iter().next() {
        Some(row) => row.into_notification(),
        None => Err(StoreError::not_found(format!("notification {id}"))),
    }
}

#[derive(QueryableByName)]
struct FetchRow {
    #[diesel(embed)]
    n: NotificationRow,
    #[diesel(sql_type = Bool)]
    endpoint_found: bool,
}

const FETCH: &str = "
WITH n AS (
    SELECT {cols} FROM {s}.notifications n
    WHERE n.id = $3 AND n.app = $1 AND n.user_id = $2 AND n.expires_at > $5
), e AS (
    SELECT e.id FROM {s}.endpoints e WHERE e.id = $4 AND e.app = $1 AND e.user_id = $2
), del AS (
    DELETE FROM {s}.deliveries d
    WHERE d.user_id = $2 AND d.endpoint_id = $4 AND d.notification_id = $3
      AND d.kind = 'fallback_alert' AND EXISTS (SELECT 1 FROM n) AND EXISTS (SELECT 1 FROM e)
    RETURNING 1
)
SELECT n.*, EXISTS (SELECT 1 FROM e) AS endpoint_found, (SELECT count(*) FROM del) AS cancelled
FROM n";

/// [`Store::record_fetch`](tidings::Store::record_fetch).
pub(crate) async fn record_fetch(
    names: &Names,
    conn: &mut AsyncPgConnection,
    app: &str,
    user: &str,
    id: uuid::Uuid,
    endpoint: uuid::Uuid,
    at: tidings::Timestamp,
) -> Result<Notification, StoreError> {
    let rows: Vec<FetchRow> = names
        .sql(&FETCH.replace("{cols}", NOTIFICATION_COLUMNS))
        .bind(app)
        .bind(user)
        .bind(id)
        .bind(endpoint)
        .bind(at)
        .load(conn)
        .await
        .map_err(error::query)?;
    match rows.into_iter().next() {
        None => Err(StoreError::not_found(format!("notification {id}"))),
        Some(row) if !row.endpoint_found => {
            Err(StoreError::not_found(format!("endpoint {endpoint}")))
        }
        Some(row) => row.n.into_notification(),
    }
}

/// The changed notifications (`chg`: id, new state, sequence) written, their pending fallback
/// alerts (and, for those that became deleted, their pending notification deliveries) dropped,
/// and the sync signals of the change carrying the last sequence ($18) enqueued or coalesced.
const UPDATE_STATES: &str = "
WITH chg AS (
    SELECT * FROM unnest($3::uuid[], $4::text[], $5::text[], $6::text[], $8::bigint[])
        AS c(id, read, action, status, sequence)
), upd AS (
    UPDATE {s}.notifications n
    SET read = chg.read, action = chg.action, status = chg.status, changed_at = $7,
        sequence = chg.sequence
    FROM chg
    WHERE n.id = chg.id
    RETURNING {cols}
), cancelled AS (
    DELETE FROM {s}.deliveries d
    WHERE d.user_id = $2 AND d.notification_id = ANY($3::uuid[])
      AND (d.kind = 'fallback_alert'
           OR (d.kind = 'notification' AND d.notification_id = ANY($9::uuid[])))
    RETURNING 1
), tgt AS (
    -- Each target's due time: the end of the window, or later when an APNs endpoint's
    -- background budget says so (BackgroundBudget::admit; $15 interval and $16 tolerance in
    -- microseconds, NULL without a budget).
    SELECT e.id, e.sync_budget_at, b.budgeted,
        CASE WHEN b.budgeted
             THEN GREATEST($10, e.sync_budget_at - $16 * interval '1 microsecond')
             ELSE $10 END AS due
    FROM {s}.endpoints e
    CROSS JOIN LATERAL (SELECT $15::bigint IS NOT NULL AND e.platform = $17 AS budgeted) b
    WHERE e.user_id = $2 AND e.app = $1 AND e.active AND e.platform <> $14
      AND e.id IS DISTINCT FROM $12 AND $10::timestamptz IS NOT NULL
), bumped AS (
    UPDATE {s}.deliveries d SET sequence = GREATEST(d.sequence, $18)
    FROM tgt
    WHERE d.user_id = $2 AND d.endpoint_id = tgt.id AND d.kind = 'sync'
      AND (d.lease_until IS NULL OR d.lease_until <= $7)
    RETURNING d.endpoint_id
), added AS (
    INSERT INTO {s}.deliveries (id, app, user_id, endpoint_id, notification_id, kind, sequence,
        attempt, next_attempt_at, expires_at)
    SELECT gen_random_uuid(), $1, $2, tgt.id, NULL, 'sync', $18, 0, tgt.due, $11 + (tgt.due - $10)
    FROM tgt WHERE tgt.id NOT IN (SELECT endpoint_id FROM bumped)
    RETURNING 1
), spent AS (
    UPDATE {s}.endpoints e
    SET sync_budget_at = GREATEST(tgt.sync_budget_at, tgt.due) + $15 * interval '1 microsecond'
    FROM tgt
    WHERE e.id = tgt.id AND tgt.budgeted AND tgt.id NOT IN (SELECT endpoint_id FROM bumped)
), wake AS (
    SELECT pg_notify($13, '') WHERE $10::timestamptz <= $7 AND EXISTS (SELECT 1 FROM added)
)
SELECT upd.*, (SELECT count(*) FROM cancelled) AS cancelled_n, (SELECT count(*) FROM wake) AS woke
FROM upd";

/// [`Store::update_state`](tidings::Store::update_state): [`update_states`] of one.
pub(crate) async fn update_state(
    names: &Names,
    conn: &mut AsyncPgConnection,
    update: StateUpdate,
) -> Result<Notification, StoreError> {
    let id = update.id;
    let mut results = update_states(
        names,
        conn,
        BulkStateUpdate {
            app: update.app,
            user: update.user,
            ids: vec![id],
            patch: update.patch,
            at: update.at,
            origin: update.origin,
            sync: update.sync,
        },
    )
    .await?;
    results
        .pop()
        .flatten()
        .ok_or_else(|| StoreError::not_found(format!("notification {id}")))
}

/// [`Store::update_states`](tidings::Store::update_states): one transaction that locks the
/// notifications (in id order, so two changes of overlapping sets never deadlock), bumps the
/// user's sequence once by the number that change (whose row lock orders concurrent changes of
/// one user, so sync coalescing sees the previous change's signals), then applies everything
/// else in one statement.
pub(crate) async fn update_states(
    names: &Names,
    conn: &mut AsyncPgConnection,
    update: BulkStateUpdate,
) -> Result<Vec<Option<Notification>>, StoreError> {
    let result = conn
        .transaction::<_, TxError, _>(|conn| {
            async move {
                let ids: Vec<uuid::Uuid> = update.ids.iter().map(|id| id.as_uuid()).collect();
                let rows: Vec<NotificationRow> = names
                    .sql(&format!(
                        "SELECT {NOTIFICATION_COLUMNS} FROM {{s}}.notifications n
                         WHERE n.id = ANY($1::uuid[]) AND n.app = $2 AND n.user_id = $3
                           AND n.expires_at > $4
                         ORDER BY n.id FOR UPDATE"
                    ))
                    .bind_raw(Bind::UuidArr(ids))
                    .bind(update.app.as_str())
                    .bind(update.user.as_str())
                    .bind(update.at)
                    .load(conn)
                    .await?;
                let mut found = HashMap::with_capacity(rows.len());
                for row in rows {
                    let n = row.into_notification()?;
                    found.insert(n.id, n);
                }
                // What changes, in request order.
                let mut changed = Vec::new();
                for id in &update.ids {
                    let Some(current) = found.get(id) else {
                        continue;
                    };
                    let next = update.patch.apply(current.state, update.at);
                    let same = (next.read, next.action, next.status)
                        == (
                            current.state.read,
                            current.state.action,
                            current.state.status,
                        );
                    if !same {
                        let deleted = current.state.status != Status::Deleted
                            && next.status == Status::Deleted;
                        changed.push((*id, next, deleted));
                    }
                }
                if changed.is_empty() {
                    return Ok(update.ids.iter().map(|id| found.get(id).cloned()).collect());
                }
                let count = i64::try_from(changed.len()).map_err(error::corrupt)?;
                let seq: Vec<CountRow> = names
                    .sql(
                        "INSERT INTO {s}.user_sequences AS us (user_id, app, sequence)
                         VALUES ($1, $2, $3)
                         ON CONFLICT (user_id, app) DO UPDATE SET sequence = us.sequence + $3
                         RETURNING us.sequence AS n",
                    )
                    .bind(update.user.as_str())
                    .bind(update.app.as_str())
                    .bind(count)
                    .load(conn)
                    .await?;
                let last = seq.into_iter().next().map_or(count, |r| r.n);
                let first = last - count + 1;
                let budget = update.sync.and_then(|s| s.apns_budget);
                let rows: Vec<NotificationRow> = names
                    .sql(&UPDATE_STATES.replace("{cols}", NOTIFICATION_COLUMNS))
                    .bind(update.app.as_str())
                    .bind(update.user.as_str())
                    .bind_raw(Bind::UuidArr(
                        changed.iter().map(|(id, _, _)| id.as_uuid()).collect(),
                    ))
                    .bind_raw(Bind::TextArr(
                        changed
                            .iter()
                            .map(|(_, s, _)| read_str(s.read).to_owned())
                            .collect(),
                    ))
                    .bind_raw(Bind::TextArr(
                        changed
                            .iter()
                            .map(|(_, s, _)| action_str(s.action).to_owned())
                            .collect(),
                    ))
                    .bind_raw(Bind::TextArr(
                        changed
                            .iter()
                            .map(|(_, s, _)| status_str(s.status).to_owned())
                            .collect(),
                    ))
                    .bind(update.at)
                    .bind_raw(Bind::OptBigIntArr((first..=last).map(Some).collect()))
                    .bind_raw(Bind::UuidArr(
                        changed
                            .iter()
                            .filter(|(_, _, deleted)| *deleted)
                            .map(|(id, _, _)| id.as_uuid())
                            .collect(),
                    ))
                    .bind(update.sync.map(|s| s.due_at))
                    .bind(update.sync.map(|s| s.expires_at))
                    .bind(update.origin.map(|o| o.as_uuid()))
                    .bind(names.channel.clone())
                    .bind(platform_bit(Platform::WebPush))
                    .bind(budget.map(|b| b.interval_micros()))
                    .bind(budget.map(|b| b.tolerance_micros()))
                    .bind(platform_bit(Platform::Apns))
                    .bind(last)
                    .load(conn)
                    .await?;
                if rows.len() != changed.len() {
                    return Err(TxError::Store(error::corrupt(format!(
                        "{} of {} locked notifications were updated",
                        rows.len(),
                        changed.len()
                    ))));
                }
                for row in rows {
                    let n = row.into_notification()?;
                    found.insert(n.id, n);
                }
                Ok(update.ids.iter().map(|id| found.get(id).cloned()).collect())
            }
            .scope_boxed()
        })
        .await;
    result.map_err(TxError::into_store)
}

/// [`Store::history`](tidings::Store::history): a keyset page on
/// `notifications_history (user_id, app, created_at DESC, id DESC)`.
pub(crate) async fn history(
    names: &Names,
    conn: &mut AsyncPgConnection,
    query: &HistoryQuery,
) -> Result<HistoryPage, StoreError> {
    let mut text = format!(
        "SELECT {NOTIFICATION_COLUMNS} FROM {{s}}.notifications n
         WHERE n.user_id = $1 AND n.app = $2 AND n.expires_at > $3"
    );
    let mut binds: Vec<Bind> = vec![
        query.user.as_str().into(),
        query.app.as_str().into(),
        query.now.into(),
    ];
    let mut add = |clause: &str, values: Vec<Bind>, text: &mut String| {
        let mut clause = clause.to_owned();
        for (i, v) in values.into_iter().enumerate() {
            binds.push(v);
            clause = clause.replace(&format!("?{i}"), &format!("${}", binds.len()));
        }
        text.push_str(&clause);
    };
    let f = &query.filter;
    if !f.include_deleted {
        add(" AND n.status = 'active'", vec![], &mut text);
    }
    if let Some(read) = f.read {
        add(" AND n.read = ?0", vec![read_str(read).into()], &mut text);
    }
    if let Some(action) = f.action {
        add(
            " AND n.action = ?0",
            vec![action_str(action).into()],
            &mut text,
        );
    }
    if let Some(group) = &f.group {
        add(" AND n.grp = ?0", vec![group.clone().into()], &mut text);
    }
    if let Some(since) = f.since {
        add(" AND n.created_at >= ?0", vec![since.into()], &mut text);
    }
    if let Some(after) = query.after {
        add(
            " AND (n.created_at, n.id) < (?0, ?1)",
            vec![after.created_at.into(), after.id.as_uuid().into()],
            &mut text,
        );
    }
    let limit = query.limit.max(1);
    add(
        " ORDER BY n.created_at DESC, n.id DESC LIMIT ?0",
        vec![i64::try_from(limit + 1).unwrap_or(i64::MAX).into()],
        &mut text,
    );
    let q = binds.into_iter().fold(names.sql(&text), Sql::bind_raw);
    let rows: Vec<NotificationRow> = q.load(conn).await.map_err(error::query)?;
    let more = rows.len() > limit;
    let items = rows
        .into_iter()
        .take(limit)
        .map(NotificationRow::into_notification)
        .collect::<Result<Vec<_>, _>>()?;
    let next = if more {
        items.last().map(HistoryCursor::of)
    } else {
        None
    };
    Ok(HistoryPage { items, next })
}

/// [`Store::changes`](tidings::Store::changes): on `notifications_changes (user_id, app,
/// sequence)`. Each notification holds the sequence of its latest change, so it appears once.
pub(crate) async fn changes(
    names: &Names,
    conn: &mut AsyncPgConnection,
    query: &ChangesQuery,
) -> Result<ChangePage, StoreError> {
    let limit = query.limit.max(1);
    let rows: Vec<NotificationRow> = names
        .sql(&format!(
            "SELECT {NOTIFICATION_COLUMNS} FROM {{s}}.notifications n
             WHERE n.user_id = $1 AND n.app = $2 AND n.sequence > $3 AND n.expires_at > $4
             ORDER BY n.sequence LIMIT $5"
        ))
        .bind(query.user.as_str())
        .bind(query.app.as_str())
        .bind(i64::try_from(query.since).unwrap_or(i64::MAX))
        .bind(query.now)
        .bind(i64::try_from(limit + 1).unwrap_or(i64::MAX))
        .load(conn)
        .await
        .map_err(error::query)?;
    let more = rows.len() > limit;
    let changes = rows
        .into_iter()
        .take(limit)
        .map(NotificationRow::into_notification)
        .collect::<Result<Vec<_>, _>>()?;
    let next_since = changes.last().map_or(query.since, |n| n.sequence);
    Ok(ChangePage {
        changes,
        next_since,
        more,
    })
}

/// [`Store::current_sequence`](tidings::Store::current_sequence).
pub(crate) async fn current_sequence(
    names: &Names,
    conn: &mut AsyncPgConnection,
    app: &str,
    user: &str,
) -> Result<u64, StoreError> {
    let rows: Vec<CountRow> = names
        .sql("SELECT sequence AS n FROM {s}.user_sequences WHERE user_id = $1 AND app = $2")
        .bind(user)
        .bind(app)
        .load(conn)
        .await
        .map_err(error::query)?;
    let n = rows.into_iter().next().map_or(0, |r| r.n);
    u64::try_from(n).map_err(error::corrupt)
}
