//! The foundation bench workload on `PgStore`, plus the history query at 1,000,000 rows.
//!
//! ```text
//! DATABASE_URL=postgres://postgres@127.0.0.1:5432/test \
//!     cargo run --release -p tidings-postgres --example pg_bench -- \
//!     [--users 10000] [--endpoints 3] [--notifications 10] [--senders 32] [--dispatchers 2] \
//!     [--history-rows 1000000] [--history-queries 2000] [--writers 4] [--batch 256] \
//!     [--state-users 1000]
//! ```
//!
//! 1. Registers `users × endpoints` FCM endpoints (not timed as part of the workload).
//! 2. Sends `users × notifications` notifications from `senders` concurrent tasks while
//!    `dispatchers` dispatchers push them through a channel that accepts at once; reports
//!    deliveries per second from the first send until every outcome is recorded.
//! 3. State changes by `state-users` users, `senders` at a time: one notification marked read
//!    per user (`update_state`); then "dismiss all" of each user's notifications in one
//!    `update_states` request; then the same the way the client API did it before
//!    `update_states` existed (each id its own `update_state`, eight at a time) for as many
//!    other users. Reports changes per second and the per-request latency (0 skips this part).
//! 4. Bulk-loads notifications until the table holds `history-rows`, then times 50-item history
//!    pages (first pages and continuation pages) of random users: p50, p99, max.
//!
//! Everything lives in the schema `tidings_bench`, dropped at the start and at the end (set
//! `TIDINGS_BENCH_KEEP=1` to keep it for `EXPLAIN`).
#![allow(clippy::unwrap_used, clippy::print_stdout)]

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use async_trait::async_trait;
use futures::stream::{self, StreamExt};
use tidings::{
    Accepted, App, ChannelCapabilities, DispatcherConfig, EndpointRegistration, HistoryCursor,
    NewNotification, NotificationId, Platform, Push, PushAddress, PushChannel, PushError,
    StatePatch, Tidings, UserId,
};
use tidings_postgres::{PgStore, PgStoreConfig};

const SCHEMA: &str = "tidings_bench";

#[derive(Debug)]
struct Args {
    users: usize,
    endpoints: usize,
    notifications: usize,
    senders: usize,
    dispatchers: usize,
    history_rows: usize,
    history_queries: usize,
    writers: usize,
    batch: usize,
    state_users: usize,
}

fn args() -> Args {
    let mut a = Args {
        users: 10_000,
        endpoints: 3,
        notifications: 10,
        senders: 32,
        dispatchers: 2,
        history_rows: 1_000_000,
        history_queries: 2_000,
        writers: 4,
        batch: 256,
        state_users: 1_000,
    };
    let argv: Vec<String> = std::env::args().skip(1).collect();
    for pair in argv.chunks(2) {
        let value = pair.get(1).and_then(|v| v.parse().ok()).unwrap_or_else(|| {
            panic!("usage: pg_bench [--users N] [--endpoints N] [--notifications N] [--senders N] [--dispatchers N] [--history-rows N] [--history-queries N] [--writers N] [--batch N] [--state-users N]")
        });
        match pair[0].as_str() {
            "--users" => a.users = value,
            "--endpoints" => a.endpoints = value,
            "--notifications" => a.notifications = value,
            "--senders" => a.senders = value,
            "--dispatchers" => a.dispatchers = value,
            "--history-rows" => a.history_rows = value,
            "--history-queries" => a.history_queries = value,
            "--writers" => a.writers = value,
            "--batch" => a.batch = value,
            "--state-users" => a.state_users = value,
            other => panic!("unknown option {other}"),
        }
    }
    a
}

/// Accepts every push at once and counts it.
#[derive(Debug, Default)]
struct InstantChannel {
    accepted: Arc<AtomicUsize>,
}

#[async_trait]
impl PushChannel for InstantChannel {
    fn platform(&self) -> Platform {
        Platform::Fcm
    }
    fn capabilities(&self) -> ChannelCapabilities {
        ChannelCapabilities {
            max_payload_bytes: 4096,
            silent_push: true,
            collapse: true,
        }
    }
    async fn send(&self, _push: &Push) -> Result<Accepted, PushError> {
        self.accepted.fetch_add(1, Ordering::Relaxed);
        Ok(Accepted::default())
    }
}

async fn admin(url: &str) -> tokio_postgres::Client {
    let (client, connection) = tokio_postgres::connect(url, tokio_postgres::NoTls)
        .await
        .expect("connect");
    tokio::spawn(connection);
    client
}

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() {
    let args = args();
    let url = std::env::var("DATABASE_URL")
        .unwrap_or_else(|_| "postgres://postgres@127.0.0.1:5432/test".to_owned());
    let db = admin(&url).await;
    db.batch_execute(&format!("DROP SCHEMA IF EXISTS {SCHEMA} CASCADE"))
        .await
        .unwrap();
    println!("{args:?}");

    let pool = (args.senders + args.dispatchers * 2).max(8) as u32;
    let store = PgStore::connect(
        PgStoreConfig::new(url.clone())
            .schema(SCHEMA)
            .pool_size(pool)
            .insert_writers(args.writers as u32)
            .insert_batch(args.batch),
    )
    .await
    .unwrap();
    store.migrate().await.unwrap();
    let channel = InstantChannel::default();
    let accepted = channel.accepted.clone();
    let tidings = Tidings::builder()
        .store(store.clone())
        .channel(channel)
        .app(App::new("bench"))
        .build()
        .unwrap();

    // 1. Endpoints.
    let started = Instant::now();
    let t = &tidings;
    let endpoints = args.users * args.endpoints;
    let per_user = args.endpoints;
    stream::iter(0..endpoints)
        .for_each_concurrent(args.senders, |i| async move {
            let address = PushAddress::Fcm {
                token: format!("token-{i}"),
            };
            t.register_endpoint(EndpointRegistration::new(
                "bench",
                format!("u{}", i / per_user),
                address,
            ))
            .await
            .unwrap();
        })
        .await;
    let took = started.elapsed();
    println!(
        "registered {endpoints} endpoints in {:.2} s ({:.0}/s)",
        took.as_secs_f64(),
        endpoints as f64 / took.as_secs_f64()
    );

    // 2. Send + dispatch + outcome, concurrently.
    let notifications = args.users * args.notifications;
    let deliveries = notifications * args.endpoints;
    let config = DispatcherConfig {
        idle_poll: Duration::from_millis(20),
        sweep_interval: None,
        ..DispatcherConfig::default()
    };
    let (stop, stopped) = tokio::sync::watch::channel(false);
    let mut runs = Vec::new();
    for _ in 0..args.dispatchers {
        let d = tidings.dispatcher_with(config.clone()).unwrap();
        let mut stopped = stopped.clone();
        runs.push(d.run(async move {
            let _ = stopped.wait_for(|s| *s).await;
        }));
    }
    let started = Instant::now();
    let users = args.users;
    let sends = async {
        stream::iter(0..notifications)
            .for_each_concurrent(args.senders, |i| async move {
                // Round-robin over users, like traffic from many users at once.
                let user = format!("u{}", i % users);
                t.send(NewNotification::new("bench", user, format!("n{i}")).raw("{\"k\":1}"))
                    .await
                    .unwrap();
            })
            .await;
        let sent = started.elapsed();
        while args.dispatchers > 0 && accepted.load(Ordering::Relaxed) < deliveries {
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
        stop.send_replace(true);
        sent
    };
    let (results, sent) = tokio::join!(futures::future::join_all(runs), sends);
    for r in results {
        r.unwrap();
    }
    let took = started.elapsed();
    let pending: i64 = db
        .query_one(&format!("SELECT count(*) FROM {SCHEMA}.deliveries"), &[])
        .await
        .unwrap()
        .get(0);
    if args.dispatchers > 0 {
        assert_eq!(pending, 0, "every outcome is recorded");
    }
    println!(
        "sent {notifications} notifications in {:.2} s ({:.0}/s); {deliveries} deliveries persisted end to end (enqueue + lease + outcome) in {:.2} s: {:.0} deliveries/s",
        sent.as_secs_f64(),
        notifications as f64 / sent.as_secs_f64(),
        took.as_secs_f64(),
        deliveries as f64 / took.as_secs_f64()
    );

    // 3. State changes.
    if args.state_users > 0 {
        state_changes(&tidings, &args).await;
    }

    // 4. History at scale.
    if args.history_rows > 0 {
        history(&db, &tidings, &args, notifications).await;
    }

    if std::env::var("TIDINGS_BENCH_KEEP").is_err() {
        db.batch_execute(&format!("DROP SCHEMA {SCHEMA} CASCADE"))
            .await
            .unwrap();
    }
}

async fn state_changes(tidings: &Tidings, args: &Args) {
    let app = tidings::AppId::from("bench");
    let users = args.state_users.min(args.users / 2);
    // Each user's notifications (not timed).
    let ids: Vec<Vec<NotificationId>> = stream::iter(0..users * 2)
        .map(|u| {
            let app = app.clone();
            async move {
                let user = UserId::from(format!("u{u}"));
                let page = tidings
                    .history(&app, &user, Default::default(), None, 50)
                    .await
                    .unwrap();
                page.items.iter().map(|n| n.id).collect()
            }
        })
        .buffered(args.senders)
        .collect()
        .await;
    let user = |u: usize| UserId::from(format!("u{u}"));
    let (app, ids) = (&app, &ids);

    let started = Instant::now();
    stream::iter(0..users)
        .for_each_concurrent(args.senders, |u| async move {
            tidings
                .update_state(app, &user(u), ids[u][0], StatePatch::read(), None)
                .await
                .unwrap();
        })
        .await;
    let took = started.elapsed();
    println!(
        "state changes, one per request (update_state): {users} in {:.2} s: {:.0} changes/s",
        took.as_secs_f64(),
        users as f64 / took.as_secs_f64()
    );

    let started = Instant::now();
    let mut latencies: Vec<Duration> = stream::iter(0..users)
        .map(|u| async move {
            let t0 = Instant::now();
            let results = tidings
                .update_states(app, &user(u), &ids[u], StatePatch::dismissed(), None)
                .await
                .unwrap();
            assert!(results.iter().all(Option::is_some));
            t0.elapsed()
        })
        .buffer_unordered(args.senders)
        .collect()
        .await;
    let took = started.elapsed();
    let changed: usize = ids[..users].iter().map(Vec::len).sum();
    println!(
        "dismiss all, one update_states per user: {users} requests, {changed} changes in {:.2} s: {:.0} changes/s",
        took.as_secs_f64(),
        changed as f64 / took.as_secs_f64()
    );
    report("  per request", &mut latencies);

    let started = Instant::now();
    let mut latencies: Vec<Duration> = stream::iter(users..users * 2)
        .map(|u| async move {
            let t0 = Instant::now();
            let user = user(u);
            stream::iter(&ids[u])
                .for_each_concurrent(8, |id| {
                    let user = &user;
                    async move {
                        tidings
                            .update_state(app, user, *id, StatePatch::dismissed(), None)
                            .await
                            .unwrap();
                    }
                })
                .await;
            t0.elapsed()
        })
        .buffer_unordered(args.senders)
        .collect()
        .await;
    let took = started.elapsed();
    let changed: usize = ids[users..].iter().map(Vec::len).sum();
    println!(
        "dismiss all, each id its own update_state (8 at a time): {users} requests, {changed} changes in {:.2} s: {:.0} changes/s",
        took.as_secs_f64(),
        changed as f64 / took.as_secs_f64()
    );
    report("  per request", &mut latencies);
}

async fn history(db: &tokio_postgres::Client, tidings: &Tidings, args: &Args, existing: usize) {
    let extra = args.history_rows.saturating_sub(existing);
    let started = Instant::now();
    // Bulk load: the same users, 100 notifications each per round, spread over 30 days.
    let users = args.users.max(1) as i64;
    db.batch_execute(&format!(
        "INSERT INTO {SCHEMA}.user_sequences (user_id, app, sequence)
         SELECT 'u' || u, 'bench', 0 FROM generate_series(0, {users} - 1) u
         ON CONFLICT DO NOTHING;
         INSERT INTO {SCHEMA}.notifications (id, app, user_id, app_notification_id, priority,
             created_at, expires_at, raw, targets, read, action, status, changed_at, sequence)
         SELECT gen_random_uuid(), 'bench', 'u' || (i % {users}), 'bulk' || i, 'normal',
             now() - (i || ' seconds')::interval, now() + interval '30 days', '{{}}', 15,
             CASE WHEN i % 3 = 0 THEN 'read' ELSE 'unread' END, 'none', 'active',
             now() - (i || ' seconds')::interval, 1000000 + i
         FROM generate_series(1, {extra}) i;
         ANALYZE {SCHEMA}.notifications;"
    ))
    .await
    .unwrap();
    let rows: i64 = db
        .query_one(&format!("SELECT count(*) FROM {SCHEMA}.notifications"), &[])
        .await
        .unwrap()
        .get(0);
    println!(
        "loaded {extra} more notifications in {:.2} s: {rows} in the table ({} per user)",
        started.elapsed().as_secs_f64(),
        rows / users
    );

    let app = tidings::AppId::from("bench");
    let mut first = Vec::with_capacity(args.history_queries);
    let mut next = Vec::with_capacity(args.history_queries);
    for q in 0..args.history_queries {
        let user = tidings::UserId::from(format!("u{}", fastrand::i64(0..users)));
        let t0 = Instant::now();
        let page = tidings
            .history(&app, &user, Default::default(), None, 50)
            .await
            .unwrap();
        first.push(t0.elapsed());
        assert_eq!(page.items.len(), 50, "query {q}");
        let cursor: Option<HistoryCursor> = page.next;
        let t1 = Instant::now();
        let page2 = tidings
            .history(&app, &user, Default::default(), cursor, 50)
            .await
            .unwrap();
        next.push(t1.elapsed());
        assert!(!page2.items.is_empty());
    }
    report("history first page (50 items)", &mut first);
    report("history next page (50 items, keyset cursor)", &mut next);
}

fn report(what: &str, samples: &mut [Duration]) {
    samples.sort();
    let at = |p: f64| samples[((samples.len() as f64 - 1.0) * p).round() as usize];
    println!(
        "{what}: n={} p50={:.2} ms p99={:.2} ms max={:.2} ms",
        samples.len(),
        at(0.50).as_secs_f64() * 1e3,
        at(0.99).as_secs_f64() * 1e3,
        at(1.0).as_secs_f64() * 1e3
    );
}
