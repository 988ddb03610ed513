//! Writing a notification inside the host's own transaction, and LISTEN/NOTIFY wake-ups across
//! instances.
#![allow(clippy::unwrap_used)] // test helpers outside #[test] functions unwrap too

mod common;
mod support;

use std::sync::Arc;
use std::time::Duration;

use diesel_async::scoped_futures::ScopedFutureExt;
use diesel_async::{AsyncConnection, AsyncPgConnection, RunQueryDsl};
use tidings::{
    AppId, ChangesQuery, EndpointRegistration, LeaseRequest, ManualClock, NewNotification,
    PushAddress, Store, StoreErrorKind, Tidings, UserId,
};
use tidings_postgres::TransactionError;
use tokio::sync::Notify;

use common::{another_instance, fresh_store, TestStore};
use support::{dispatcher_config, tidings, CountingChannel, PushLog};

struct Host {
    store: TestStore,
    tidings: Tidings,
    log: PushLog,
    conn: AsyncPgConnection,
    schema: String,
}

async fn host() -> Host {
    let store = fresh_store().await;
    let schema = store.guard.schema.clone();
    let admin = store.admin().await;
    admin
        .batch_execute("CREATE TABLE orders (id bigint PRIMARY KEY, state text NOT NULL)")
        .await
        .unwrap();
    let log = PushLog::default();
    let t = tidings(
        Arc::new(store.clone()),
        CountingChannel::new(0, log.clone(), Arc::new(Notify::new())),
        ManualClock::starting_2026(),
    );
    t.register_endpoint(EndpointRegistration::new(
        "app",
        "alice",
        PushAddress::Fcm {
            token: "alice-phone".into(),
        },
    ))
    .await
    .unwrap();
    let conn = AsyncPgConnection::establish(&store.guard.url)
        .await
        .unwrap();
    Host {
        store,
        tidings: t,
        log,
        conn,
        schema,
    }
}

/// The host's business write and the notification in one transaction; `commit` decides.
async fn ship_order(host: &mut Host, commit: bool) -> Result<(), TransactionError> {
    let notification = host
        .tidings
        .prepare(NewNotification::new("app", "alice", "order-1-shipped").title("Order 1 shipped"))
        .unwrap();
    let store = host.store.store.clone();
    let insert = format!(
        "INSERT INTO \"{}\".orders (id, state) VALUES (1, 'shipped')",
        host.schema
    );
    host.conn
        .transaction::<_, TransactionError, _>(|conn| {
            async move {
                diesel::sql_query(insert).execute(conn).await?;
                let inserted = store.insert_notification_in(conn, notification).await?;
                assert!(inserted.created);
                assert_eq!(inserted.deliveries, 1);
                if commit {
                    Ok(())
                } else {
                    Err(diesel::result::Error::RollbackTransaction.into())
                }
            }
            .scope_boxed()
        })
        .await
}

async fn orders(host: &Host) -> i64 {
    let row = host
        .store
        .admin()
        .await
        .query_one("SELECT count(*) FROM orders", &[])
        .await
        .unwrap();
    row.get(0)
}

#[tokio::test]
async fn rolled_back_host_transaction_leaves_no_notification_delivery_or_change() {
    let mut host = host().await;
    let app = AppId::from("app");
    let user = UserId::from("alice");
    let before = host.store.current_sequence(&app, &user).await.unwrap();

    let result = ship_order(&mut host, false).await;
    assert!(matches!(
        result,
        Err(TransactionError::Diesel(
            diesel::result::Error::RollbackTransaction
        ))
    ));

    assert_eq!(orders(&host).await, 0);
    let now = host.tidings.clock().now();
    let history = host
        .tidings
        .history(&app, &user, Default::default(), None, 50)
        .await
        .unwrap();
    assert!(history.items.is_empty(), "{history:?}");
    let changes = host
        .store
        .changes(&ChangesQuery {
            app: app.clone(),
            user: user.clone(),
            since: before,
            limit: 50,
            now,
        })
        .await
        .unwrap();
    assert!(changes.changes.is_empty());
    assert_eq!(
        host.store.current_sequence(&app, &user).await.unwrap(),
        before
    );
    let due = host
        .store
        .lease_due(LeaseRequest {
            now: now.plus(Duration::from_secs(86_400)),
            limit: 100,
            lease_until: now.plus(Duration::from_secs(86_500)),
        })
        .await
        .unwrap();
    assert!(due.is_empty(), "a delivery survived the rollback");
    let report = host.tidings.dispatcher().run_until_idle().await.unwrap();
    assert_eq!(report.leased, 0);
    assert!(host.log.lock().unwrap().is_empty());
}

#[tokio::test]
async fn committed_host_transaction_is_delivered_by_a_dispatcher() {
    let mut host = host().await;
    ship_order(&mut host, true).await.unwrap();
    assert_eq!(orders(&host).await, 1);

    let report = host.tidings.dispatcher().run_until_idle().await.unwrap();
    assert_eq!(report.accepted, 1);
    assert_eq!(host.log.lock().unwrap().len(), 1);
    let page = host
        .tidings
        .history(&"app".into(), &"alice".into(), Default::default(), None, 50)
        .await
        .unwrap();
    assert_eq!(page.items.len(), 1);
    assert_eq!(page.items[0].app_notification_id, "order-1-shipped");
}

#[tokio::test]
async fn the_same_notification_twice_in_host_transactions_is_stored_once() {
    let mut host = host().await;
    ship_order(&mut host, true).await.unwrap();
    let again = host
        .tidings
        .prepare(NewNotification::new("app", "alice", "order-1-shipped").title("Order 1 shipped"))
        .unwrap();
    let inserted = host
        .store
        .insert_notification_in(&mut host.conn, again)
        .await
        .unwrap();
    assert!(!inserted.created);
    assert_eq!(inserted.deliveries, 0);
}

#[tokio::test]
async fn idle_instance_wakes_when_another_instance_enqueues_work() {
    let a = fresh_store().await;
    let b = another_instance(&a).await;
    b.listening().await;
    // Consume the wake-up the listener gives when it (re)connects.
    b.wait_for_work(Duration::ZERO).await;

    let log = PushLog::default();
    let t = tidings(
        Arc::new(a.clone()),
        CountingChannel::new(0, log, Arc::new(Notify::new())),
        ManualClock::starting_2026(),
    );
    t.register_endpoint(EndpointRegistration::new(
        "app",
        "bob",
        PushAddress::Fcm {
            token: "bob-phone".into(),
        },
    ))
    .await
    .unwrap();

    // B waits far longer than the test allows: only a NOTIFY can end the wait in time.
    let waiting = tokio::spawn({
        let b = b.clone();
        async move { b.wait_for_work(Duration::from_secs(3600)).await }
    });
    t.send(NewNotification::new("app", "bob", "hello").raw("{}"))
        .await
        .unwrap();
    tokio::time::timeout(Duration::from_secs(30), waiting)
        .await
        .expect("B was not woken by A's notification")
        .unwrap();
}

#[tokio::test]
async fn notification_sent_on_one_instance_is_pushed_by_an_idle_dispatcher_on_another() {
    let a = fresh_store().await;
    let b = another_instance(&a).await;
    b.listening().await;
    let clock = ManualClock::starting_2026();
    let sender = tidings(
        Arc::new(a.clone()),
        CountingChannel::new(0, PushLog::default(), Arc::new(Notify::new())),
        clock.clone(),
    );
    let log = PushLog::default();
    let pushed = Arc::new(Notify::new());
    let pusher = tidings(
        Arc::new(b.clone()),
        CountingChannel::new(1, log.clone(), pushed.clone()),
        clock,
    );
    sender
        .register_endpoint(EndpointRegistration::new(
            "app",
            "carol",
            PushAddress::Fcm {
                token: "carol-phone".into(),
            },
        ))
        .await
        .unwrap();
    let mut config = dispatcher_config();
    // Without LISTEN/NOTIFY the dispatcher would look again only after an hour.
    config.idle_poll = Duration::from_secs(3600);
    let dispatcher = pusher.dispatcher_with(config).unwrap();
    let (stop, mut stopped) = tokio::sync::watch::channel(false);
    let run = dispatcher.run(async move {
        let _ = stopped.wait_for(|s| *s).await;
    });
    let test = async {
        let got_push = pushed.notified();
        sender
            .send(NewNotification::new("app", "carol", "hi").raw("{}"))
            .await
            .unwrap();
        tokio::time::timeout(Duration::from_secs(30), got_push)
            .await
            .expect("the idle dispatcher on B never pushed A's notification");
        stop.send_replace(true);
    };
    let (result, ()) = tokio::join!(run, test);
    result.unwrap();
    assert_eq!(log.lock().unwrap().len(), 1);
}

#[tokio::test]
async fn insert_on_a_broken_host_connection_is_an_error_not_a_panic() {
    let mut host = host().await;
    let notification = host
        .tidings
        .prepare(NewNotification::new("app", "alice", "n").raw("{}"))
        .unwrap();
    // A host transaction already failed: PostgreSQL refuses every further statement.
    let result = host
        .conn
        .transaction::<_, TransactionError, _>(|conn| {
            let store = host.store.store.clone();
            async move {
                let _ = diesel::sql_query("SELECT * FROM no_such_table")
                    .execute(conn)
                    .await;
                store.insert_notification_in(conn, notification).await?;
                Ok(())
            }
            .scope_boxed()
        })
        .await;
    match result {
        Err(TransactionError::Store(e)) => assert_eq!(e.kind(), StoreErrorKind::Other, "{e}"),
        other => panic!("expected a store error, got {other:?}"),
    }
}
