//! PostgreSQL-specific behaviour beyond the conformance suite: migrations, error mapping,
//! failure handling.
#![allow(clippy::unwrap_used)] // test helpers outside #[test] functions unwrap too

mod common;

use std::time::Duration;

use common::{database_url, fresh_store, schema_name};
use tidings::{AppId, Endpoint, EndpointId, PushAddress, Store, StoreErrorKind, Timestamp, UserId};
use tidings_postgres::{PgStore, PgStoreConfig};

fn t0() -> Timestamp {
    Timestamp::from_secs(1_767_225_600)
}

fn fcm_endpoint(app: &str, user: &str, token: &str, installation: Option<&str>) -> Endpoint {
    Endpoint {
        id: EndpointId::new_random(),
        app: AppId::from(app),
        user: UserId::from(user),
        installation_id: installation.map(str::to_owned),
        address: PushAddress::Fcm {
            token: token.to_owned(),
        },
        active: true,
        created_at: t0(),
        last_seen_at: t0(),
        address_expires_at: None,
        deactivation_reason: None,
    }
}

#[tokio::test]
async fn migrate_is_idempotent_and_safe_when_instances_start_together() {
    let url = database_url().await;
    let schema = schema_name();
    let config = PgStoreConfig::new(url.clone())
        .schema(schema.clone())
        .listen(false);
    let a = PgStore::connect(config.clone()).await.unwrap();
    let b = PgStore::connect(config).await.unwrap();
    let (ra, rb) = tokio::join!(a.migrate(), b.migrate());
    let (ra, rb) = (ra.unwrap(), rb.unwrap());
    // Exactly one of the two applied the migrations; the other found nothing to do.
    let (did, idle) = if ra.applied.is_empty() {
        (&rb, &ra)
    } else {
        (&ra, &rb)
    };
    assert!(idle.applied.is_empty(), "{ra:?} {rb:?}");
    assert_eq!(did.applied.last(), Some(&did.current), "{ra:?} {rb:?}");
    assert!(did.applied.len() >= 2, "every migration ran: {did:?}");
    assert_eq!(ra.current, rb.current);
    let again = a.migrate().await.unwrap();
    assert!(again.applied.is_empty());
    // The store works on the migrated schema.
    let ep = a
        .upsert_endpoint(fcm_endpoint("app", "alice", "token-1", None))
        .await
        .unwrap();
    assert_eq!(b.endpoints(&ep.app, &ep.user).await.unwrap(), vec![ep]);
    drop_schema(&url, &schema).await;
}

/// A schema at the first migration, with deliveries in every state that version knew, upgrades
/// to the outbox that holds pending work only: finished deliveries go, pending ones stay
/// (leased ones keep their lease), and the upgraded store leases and finishes them.
#[tokio::test]
async fn upgrade_from_the_first_schema_keeps_pending_work() {
    let url = database_url().await;
    let schema = schema_name();
    let admin = common::admin(&url).await;
    admin
        .batch_execute(&format!(
            "CREATE SCHEMA \"{schema}\"; SET search_path TO \"{schema}\";
             CREATE TABLE __diesel_schema_migrations (
                 version VARCHAR(50) PRIMARY KEY NOT NULL,
                 run_on TIMESTAMP NOT NULL DEFAULT CURRENT_TIMESTAMP);
             {first}
             INSERT INTO __diesel_schema_migrations (version) VALUES ('20261203000001');
             INSERT INTO endpoints (id, app, user_id, platform, address_key, address_hash,
                 address, active, created_at, last_seen_at)
             VALUES ('00000000-0000-0000-0000-0000000000e1', 'app', 'alice', 2, 'fcm:t',
                 '\\x00', '{{\"platform\":\"fcm\",\"token\":\"t\"}}', true,
                 now(), now());
             INSERT INTO deliveries (id, app, user_id, endpoint_id, kind, sequence, attempt,
                 next_attempt_at, expires_at, state, lease_token, lease_until, finished_at)
             VALUES
               ('00000000-0000-0000-0000-000000000001', 'app', 'alice',
                '00000000-0000-0000-0000-0000000000e1', 'sync', 1, 0, now() - interval '1 h',
                now() + interval '1 day', 'pending', NULL, NULL, NULL),
               ('00000000-0000-0000-0000-000000000002', 'app', 'alice',
                '00000000-0000-0000-0000-0000000000e1', 'sync', 2, 1, now() - interval '1 min',
                now() + interval '1 day', 'pending', gen_random_uuid(),
                now() - interval '1 min', NULL),
               ('00000000-0000-0000-0000-000000000003', 'app', 'alice',
                '00000000-0000-0000-0000-0000000000e1', 'sync', 3, 1, now() - interval '1 h',
                now() + interval '1 day', 'done', NULL, NULL, now()),
               ('00000000-0000-0000-0000-000000000004', 'app', 'alice',
                '00000000-0000-0000-0000-0000000000e1', 'sync', 4, 1, now() - interval '1 h',
                now() + interval '1 day', 'failed', NULL, NULL, now());",
            first = include_str!("../migrations/2026-12-03-000001_create_tidings/up.sql"),
        ))
        .await
        .unwrap();
    let store = PgStore::connect(PgStoreConfig::new(url.clone()).schema(schema.clone()))
        .await
        .unwrap();
    let report = store.migrate().await.unwrap();
    assert_eq!(
        report.applied,
        ["20261204000001", "20261205000001"],
        "{report:?}"
    );
    let left: Vec<String> = admin
        .query("SELECT id::text FROM deliveries ORDER BY id", &[])
        .await
        .unwrap()
        .iter()
        .map(|r| r.get(0))
        .collect();
    assert_eq!(
        left,
        [
            "00000000-0000-0000-0000-000000000001",
            "00000000-0000-0000-0000-000000000002"
        ],
        "finished deliveries are removed, pending ones kept"
    );
    // Both pending deliveries (one never leased, one whose lease lapsed) are leased and done.
    let now = Timestamp::now_utc();
    let leased = store
        .lease_due(tidings::LeaseRequest {
            now,
            limit: 10,
            lease_until: now.plus(Duration::from_secs(60)),
        })
        .await
        .unwrap();
    assert_eq!(leased.len(), 2, "{leased:?}");
    assert_eq!(
        leased[1].delivery.attempt, 2,
        "the lapsed lease was retaken"
    );
    let outcomes = leased
        .iter()
        .map(|l| tidings::DeliveryOutcome {
            delivery: l.delivery.id,
            lease: l.lease,
            endpoint: l.endpoint.id,
            at: now,
            outcome: tidings::Outcome::Accepted {
                provider_message_id: None,
            },
        })
        .collect();
    let report = store.record_outcomes(outcomes).await.unwrap();
    assert_eq!(report.applied, 2);
    let count: i64 = admin
        .query_one("SELECT count(*) FROM deliveries", &[])
        .await
        .unwrap()
        .get(0);
    assert_eq!(count, 0, "finished deliveries leave the outbox");
    drop(store);
    drop_schema(&url, &schema).await;
}

#[tokio::test]
async fn migrate_refuses_a_schema_migrated_by_a_newer_version() {
    let store = fresh_store().await;
    let admin = store.admin().await;
    admin
        .batch_execute("INSERT INTO __diesel_schema_migrations (version) VALUES ('29991231000000')")
        .await
        .unwrap();
    let e = store.migrate().await.unwrap_err();
    assert_eq!(e.kind(), StoreErrorKind::Corrupt);
    let text = e.to_string();
    assert!(
        text.contains("29991231000000") && text.contains("newer"),
        "{text}"
    );
}

#[tokio::test]
async fn installation_id_taken_by_another_endpoint_is_a_conflict() {
    let store = fresh_store().await;
    store
        .upsert_endpoint(fcm_endpoint("app", "alice", "token-a", Some("phone")))
        .await
        .unwrap();
    store
        .upsert_endpoint(fcm_endpoint("app", "alice", "token-b", Some("tablet")))
        .await
        .unwrap();
    // token-a re-registers claiming the tablet's installation id: two endpoints cannot share it.
    let e = store
        .upsert_endpoint(fcm_endpoint("app", "alice", "token-a", Some("tablet")))
        .await
        .unwrap_err();
    assert_eq!(e.kind(), StoreErrorKind::Conflict);
    assert!(!e.is_retryable());
}

#[tokio::test]
async fn unreachable_database_is_a_retryable_error_not_a_panic() {
    // A port where nothing listens.
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let store = PgStore::connect(
        PgStoreConfig::new(format!("postgres://postgres@127.0.0.1:{port}/test"))
            .listen(false)
            .connection_timeout(Duration::from_secs(2)),
    )
    .await
    .unwrap();
    let e = store
        .endpoints(&AppId::from("app"), &UserId::from("alice"))
        .await
        .unwrap_err();
    assert_eq!(e.kind(), StoreErrorKind::Unavailable, "{e}");
    assert!(e.is_retryable());
}

#[tokio::test]
async fn pool_timeout_is_a_retryable_error() {
    // A server that accepts connections and never answers: getting a connection times out.
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = listener.local_addr().unwrap().port();
    let silent = tokio::spawn(async move {
        let mut held = Vec::new();
        while let Ok((socket, _)) = listener.accept().await {
            held.push(socket);
        }
    });
    let store = PgStore::connect(
        PgStoreConfig::new(format!("postgres://postgres@127.0.0.1:{port}/test"))
            .listen(false)
            .connection_timeout(Duration::from_millis(300)),
    )
    .await
    .unwrap();
    let e = store
        .current_sequence(&AppId::from("app"), &UserId::from("alice"))
        .await
        .unwrap_err();
    assert_eq!(e.kind(), StoreErrorKind::Unavailable, "{e}");
    assert!(e.is_retryable());
    silent.abort();
}

#[tokio::test]
async fn lost_connections_give_retryable_errors_and_the_store_recovers() {
    let fresh = fresh_store().await;
    // A second instance on the same schema whose connections carry a name of their own, so
    // only they are killed (other tests run in parallel on the same server).
    let name = format!(
        "victim_{}",
        &uuid::Uuid::new_v4().simple().to_string()[..12]
    );
    let url = &fresh.guard.url;
    let sep = if url.contains('?') { '&' } else { '?' };
    let store = PgStore::connect(
        PgStoreConfig::new(format!("{url}{sep}application_name={name}"))
            .schema(fresh.guard.schema.clone())
            .pool_size(4),
    )
    .await
    .unwrap();
    let app = AppId::from("app");
    let user = UserId::from("alice");
    store.current_sequence(&app, &user).await.unwrap();

    // Hold the user's sequence row so the store's insert waits on it, in flight.
    let admin = fresh.admin().await;
    admin
        .batch_execute(
            "BEGIN; INSERT INTO user_sequences (user_id, app, sequence) VALUES ('alice', 'app', 7)",
        )
        .await
        .unwrap();
    let in_flight = {
        let store = store.clone();
        tokio::spawn(async move {
            store
                .insert_notification(notification("app", "alice", "n-1"))
                .await
        })
    };
    let probe = fresh.admin().await;
    let mut waiting = false;
    for _ in 0..500 {
        let rows = probe
            .query(
                "SELECT 1 FROM pg_stat_activity WHERE application_name = $1 AND wait_event_type = 'Lock'",
                &[&name],
            )
            .await
            .unwrap();
        if !rows.is_empty() {
            waiting = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert!(waiting, "the store's insert never waited on the held row");
    let killed = probe
        .query(
            "SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE application_name = $1",
            &[&name],
        )
        .await
        .unwrap();
    assert!(!killed.is_empty());
    let e = in_flight.await.unwrap().unwrap_err();
    assert_eq!(e.kind(), StoreErrorKind::Unavailable, "{e}");
    assert!(e.is_retryable());
    admin.batch_execute("ROLLBACK").await.unwrap();

    // The store recovers: calls may fail (retryably) while the pool notices, then succeed.
    let mut recovered = false;
    for _ in 0..20 {
        match store
            .insert_notification(notification("app", "alice", "n-1"))
            .await
        {
            Ok(inserted) => {
                assert!(inserted.created);
                recovered = true;
                break;
            }
            Err(e) => assert!(e.is_retryable(), "{e}"),
        }
    }
    assert!(recovered, "the store did not recover");
}

fn notification(app: &str, user: &str, key: &str) -> tidings::Notification {
    use tidings::{NotificationState, PlatformSet, Priority, ReadState, Status, UserAction};
    tidings::Notification {
        id: tidings::NotificationId::new_random(),
        app: AppId::from(app),
        user: UserId::from(user),
        app_notification_id: key.to_owned(),
        group: None,
        priority: Priority::Normal,
        created_at: t0(),
        expires_at: t0().plus(Duration::from_secs(3600)),
        display_ttl: None,
        visual: None,
        raw: Some("{}".into()),
        targets: PlatformSet::ALL,
        fallback: None,
        state: NotificationState {
            read: ReadState::Unread,
            action: UserAction::None,
            status: Status::Active,
            changed_at: t0(),
        },
        sequence: 0,
    }
}

async fn drop_schema(url: &str, schema: &str) {
    let (client, connection) = tokio_postgres::connect(url, tokio_postgres::NoTls)
        .await
        .unwrap();
    tokio::spawn(connection);
    client
        .batch_execute(&format!("DROP SCHEMA \"{schema}\" CASCADE"))
        .await
        .unwrap();
}
