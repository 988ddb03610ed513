//! Statements stay index lookups even when their plans were fixed while the tables were empty.
//!
//! Pooled connections use generic plans (`plan_cache_mode = force_generic_plan`), made once per
//! connection and statement and kept until PostgreSQL's statistics for the tables change. A
//! plan made on a new, empty install therefore outlives the emptiness until autovacuum first
//! analyzes the tables (a minute or more), and a join planned then can hash a sequential scan of
//! a whole table into every call. This test fixes every plan on empty tables (one connection),
//! loads thousands of rows behind the store's back, runs the same calls again on that
//! connection, and requires that none of them scanned a whole table.
#![allow(clippy::unwrap_used)] // test helpers outside #[test] functions unwrap too

mod common;
mod support;

use std::sync::Arc;
use std::time::Duration;

use futures::future::join_all;
use tidings::{
    EndpointRegistration, HistoryFilter, ManualClock, NewNotification, PushAddress, StatePatch,
    Timestamp,
};
use tokio::sync::Notify;

use common::{fresh_store_with, TestStore};
use support::{dispatcher_config, tidings, CountingChannel, PushLog};

/// The tables' whole-table scans so far, and their index scans (to know the counters moved).
async fn scans(store: &TestStore) -> (i64, i64) {
    let row = store
        .admin()
        .await
        .query_one(
            "SELECT coalesce(sum(seq_scan), 0)::bigint, coalesce(sum(idx_scan), 0)::bigint
             FROM pg_stat_user_tables
             WHERE schemaname = current_schema()
               AND relname IN ('endpoints', 'notifications', 'deliveries', 'user_sequences')",
            &[],
        )
        .await
        .unwrap();
    (row.get(0), row.get(1))
}

/// Sequential scans so far, per table.
async fn per_table(store: &TestStore) -> Vec<(String, i64)> {
    store
        .admin()
        .await
        .query(
            "SELECT relname::text, seq_scan FROM pg_stat_user_tables
             WHERE schemaname = current_schema() ORDER BY relname",
            &[],
        )
        .await
        .unwrap()
        .iter()
        .map(|r| (r.get(0), r.get(1)))
        .collect()
}

/// One round of everything a host and its devices do: register, send (alone and many at once),
/// dispatch (lease, notifications, outcomes), read history and the change feed, fetch, change
/// state with sync signals, dispatch those.
async fn round(t: &tidings::Tidings, round: usize) {
    let app = tidings::AppId::from("app");
    let user = tidings::UserId::from(format!("user-{round}"));
    let mut endpoints = Vec::new();
    for i in 0..3 {
        let address = PushAddress::Fcm {
            token: format!("round-{round}-token-{i}"),
        };
        endpoints.push(
            t.register_endpoint(EndpointRegistration::new("app", user.as_str(), address))
                .await
                .unwrap(),
        );
    }
    let first = t
        .send(NewNotification::new("app", user.as_str(), "first").raw("{}"))
        .await
        .unwrap();
    let many =
        join_all((0..40).map(|i| {
            t.send(NewNotification::new("app", user.as_str(), format!("n-{i}")).raw("{}"))
        }))
        .await;
    for sent in many {
        sent.unwrap();
    }
    t.dispatcher_with(dispatcher_config())
        .unwrap()
        .run_until_idle()
        .await
        .unwrap();
    let page = t
        .history(&app, &user, HistoryFilter::default(), None, 20)
        .await
        .unwrap();
    t.history(&app, &user, HistoryFilter::default(), page.next, 20)
        .await
        .unwrap();
    t.changes(&app, &user, 0, 20).await.unwrap();
    t.fetch(&app, &user, first.id, Some(endpoints[0].id))
        .await
        .unwrap();
    t.update_state(
        &app,
        &user,
        first.id,
        StatePatch::read(),
        Some(endpoints[0].id),
    )
    .await
    .unwrap();
    t.dispatcher_with(dispatcher_config())
        .unwrap()
        .run_until_idle()
        .await
        .unwrap();
}

#[tokio::test]
async fn plans_fixed_on_empty_tables_never_scan_whole_tables() {
    // One pooled connection, one writer: every statement is planned once, on empty tables.
    let store = fresh_store_with(|c| c.pool_size(1).insert_writers(1)).await;
    let clock = ManualClock::new(Timestamp::from_secs(1_767_225_600));
    let log: PushLog = Arc::default();
    let t = tidings(
        Arc::new(store.clone()),
        CountingChannel::new(1, log, Arc::new(Notify::new())),
        clock.clone(),
    );
    round(&t, 0).await;

    // Thousands of rows the plans above did not see (other users; deliveries due next year).
    store
        .admin()
        .await
        .batch_execute(
            "INSERT INTO endpoints (id, app, user_id, platform, address_key, address_hash,
                 address, active, created_at, last_seen_at)
             SELECT gen_random_uuid(), 'app', 'bulk-' || (i % 2000), 2, 'fcm:bulk-' || i,
                 sha256(('fcm:bulk-' || i)::bytea), '{\"platform\":\"fcm\",\"token\":\"x\"}',
                 true, now(), now()
             FROM generate_series(1, 6000) i;
             INSERT INTO user_sequences (user_id, app, sequence)
             SELECT 'bulk-' || u, 'app', 10 FROM generate_series(0, 1999) u;
             INSERT INTO notifications (id, app, user_id, app_notification_id, priority,
                 created_at, expires_at, raw, targets, read, action, status, changed_at, sequence)
             SELECT gen_random_uuid(), 'app', 'bulk-' || (i % 2000), 'bulk-' || i, 'normal',
                 now(), now() + interval '30 days', '{}', 15, 'unread', 'none', 'active',
                 now(), i
             FROM generate_series(1, 20000) i;
             INSERT INTO deliveries (id, app, user_id, endpoint_id, notification_id, kind,
                 sequence, attempt, next_attempt_at, expires_at)
             SELECT gen_random_uuid(), 'app', 'bulk', gen_random_uuid(), NULL, 'sync', i, 0,
                 now() + interval '300 days', now() + interval '301 days'
             FROM generate_series(1, 20000) i;",
        )
        .await
        .unwrap();

    // Let the store's connection report its counters, then take them.
    tokio::time::sleep(Duration::from_millis(1500)).await;
    let (seq_before, idx_before) = scans(&store).await;
    let tables_before = per_table(&store).await;
    round(&t, 1).await;
    let mut after = scans(&store).await;
    for _ in 0..50 {
        if after.1 > idx_before {
            // Counters arrive in one flush; give a late one a moment more.
            tokio::time::sleep(Duration::from_millis(1500)).await;
            after = scans(&store).await;
            break;
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
        after = scans(&store).await;
    }
    assert!(
        after.1 > idx_before,
        "the store's index scans were never reported: {idx_before} -> {}",
        after.1
    );
    let tables_after = per_table(&store).await;
    let grew: Vec<_> = tables_after
        .iter()
        .filter(|(table, n)| tables_before.iter().any(|(t, m)| t == table && m < n))
        .collect();
    assert_eq!(
        after.0 - seq_before,
        0,
        "a statement scanned a whole table after its plan was fixed on empty tables \
         (sequential scans since, per table: {grew:?})"
    );
}
