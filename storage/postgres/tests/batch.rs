//! Concurrent sends are written many per statement: each is still answered with its own
//! result, sequences stay gapless and per user, repeats of one key are stored once, and a
//! notification the database refuses fails only its own send.
#![allow(clippy::unwrap_used)] // test helpers outside #[test] functions unwrap too

mod common;

use std::collections::{BTreeMap, HashSet};
use std::time::Duration;

use futures::future::join_all;
use tidings::{
    ApnsEnvironment, AppId, Endpoint, FallbackPolicy, Notification, Platform, PlatformSet,
    Priority, PushAddress, Store, StoreErrorKind, Timestamp, UserId, VisualContent,
};
use tidings_testkit::store::fixtures;

use common::{fresh_store_with, TestStore};

fn t0() -> Timestamp {
    fixtures::T0
}

/// One writer taking up to 64 sends per statement: concurrent sends queue behind it.
async fn batching_store() -> TestStore {
    fresh_store_with(|c| c.insert_writers(1).insert_batch(64)).await
}

fn endpoint(user: &str, address: PushAddress) -> Endpoint {
    fixtures::endpoint_with(&AppId::from("app"), &UserId::from(user), address, t0())
}

fn fcm(token: String) -> PushAddress {
    PushAddress::Fcm { token }
}

fn apns(i: usize) -> PushAddress {
    PushAddress::Apns {
        token: format!("{i:064x}"),
        environment: ApnsEnvironment::Production,
    }
}

/// The testkit's notification for `user` of `app`, created at [`t0`], with the given key, a
/// group, a display TTL and raw content too (every column the batch statement writes).
fn notification(user: &str, key: &str) -> Notification {
    let mut n = fixtures::notification(&AppId::from("app"), &UserId::from(user), t0());
    n.app_notification_id = key.to_owned();
    n.group = Some("g".into());
    n.priority = Priority::High;
    n.display_ttl = Some(Duration::from_secs(60));
    n.raw = Some("{\"k\":1}".into());
    n
}

/// How many transactions wrote the stored notifications (fewer than notifications when sends
/// shared statements).
async fn writing_transactions(store: &TestStore) -> i64 {
    store
        .admin()
        .await
        .query_one("SELECT count(DISTINCT xmin::text) FROM notifications", &[])
        .await
        .unwrap()
        .get(0)
}

#[tokio::test]
async fn concurrent_sends_share_statements_and_each_gets_its_own_answer() {
    let store = batching_store().await;
    // 20 users: FCM + APNs each; user-0 also has an inactive endpoint that gets nothing.
    for u in 0..20 {
        let user = format!("user-{u}");
        store
            .upsert_endpoint(endpoint(&user, fcm(format!("fcm-{u}"))))
            .await
            .unwrap();
        store
            .upsert_endpoint(endpoint(&user, apns(u)))
            .await
            .unwrap();
    }
    let mut inactive = endpoint("user-0", fcm("fcm-off".into()));
    inactive.active = false;
    store.upsert_endpoint(inactive).await.unwrap();

    // 400 sends, 20 per user, all at once. Every 7th targets FCM only; every 5th has an iOS
    // fallback (one more delivery on the APNs endpoint).
    let sends: Vec<Notification> = (0..400)
        .map(|i| {
            let mut n = notification(&format!("user-{}", i % 20), &format!("n-{i}"));
            if i % 7 == 0 {
                n.targets = PlatformSet::only(Platform::Fcm);
            } else if i % 5 == 0 {
                n.fallback = Some(FallbackPolicy {
                    delay: Duration::from_secs(120),
                    visual: VisualContent {
                        title: "fallback".into(),
                        body: None,
                    },
                });
            }
            n
        })
        .collect();
    let results = join_all(sends.iter().map(|n| store.insert_notification(n.clone()))).await;

    let mut sequences: BTreeMap<String, Vec<u64>> = BTreeMap::new();
    for (i, (sent, result)) in sends.iter().zip(results).enumerate() {
        let inserted = result.unwrap();
        assert!(inserted.created, "send {i}");
        let expected = if i % 7 == 0 {
            1
        } else if i % 5 == 0 {
            3
        } else {
            2
        };
        assert_eq!(inserted.deliveries, expected, "deliveries of send {i}");
        let mut want = sent.clone();
        want.sequence = inserted.notification.sequence;
        assert_eq!(
            inserted.notification, want,
            "send {i} answered with another"
        );
        let stored = store
            .notification(&want.app, &want.user, want.id, t0())
            .await
            .unwrap();
        assert_eq!(stored, want, "send {i} stored differently");
        sequences
            .entry(want.user.as_str().to_owned())
            .or_default()
            .push(want.sequence);
    }
    for (user, mut seqs) in sequences {
        seqs.sort_unstable();
        assert_eq!(seqs, (1..=20).collect::<Vec<u64>>(), "sequences of {user}");
        let current = store
            .current_sequence(&AppId::from("app"), &UserId::from(user.as_str()))
            .await
            .unwrap();
        assert_eq!(current, 20, "{user}");
    }
    let transactions = writing_transactions(&store).await;
    assert!(
        transactions < 400,
        "400 concurrent sends took {transactions} transactions: nothing was batched"
    );
    let deliveries: i64 = store
        .admin()
        .await
        .query_one("SELECT count(*) FROM deliveries", &[])
        .await
        .unwrap()
        .get(0);
    // 58 FCM-only sends (1 each), 68 with a fallback (3), 274 others (2).
    assert_eq!(deliveries, 58 + 68 * 3 + 274 * 2);
    // Each fallback alert is due 120 s after its notification was created, on APNs.
    let alerts: i64 = store
        .admin()
        .await
        .query_one(
            "SELECT count(*) FROM deliveries d JOIN endpoints e ON e.id = d.endpoint_id
             WHERE d.kind = 'fallback_alert' AND e.platform = 1
               AND d.next_attempt_at = to_timestamp($1::bigint + 120)",
            &[&(t0().as_micros() / 1_000_000)],
        )
        .await
        .unwrap()
        .get(0);
    assert_eq!(alerts, 68);
}

#[tokio::test]
async fn repeats_of_one_key_in_and_before_a_batch_are_stored_once() {
    let store = batching_store().await;
    store
        .upsert_endpoint(endpoint("alice", fcm("a".into())))
        .await
        .unwrap();
    let before = store
        .insert_notification(notification("alice", "stored-before"))
        .await
        .unwrap();
    assert!(before.created);

    // Per 8 sends: five of one new key, two of the stored key, one filler; 40 at once.
    let mut sends = Vec::new();
    for i in 0..40 {
        sends.push(match i % 8 {
            0 | 3 | 5 | 6 | 7 => notification("alice", "repeated"),
            1 | 4 => notification("alice", "stored-before"),
            _ => notification("alice", &format!("filler-{i}")),
        });
    }
    let results: Vec<_> = join_all(sends.iter().map(|n| store.insert_notification(n.clone())))
        .await
        .into_iter()
        .map(Result::unwrap)
        .collect();

    let repeated: Vec<_> = results
        .iter()
        .filter(|r| r.notification.app_notification_id == "repeated")
        .collect();
    assert_eq!(repeated.iter().filter(|r| r.created).count(), 1);
    let ids: HashSet<_> = repeated.iter().map(|r| r.notification.id).collect();
    assert_eq!(ids.len(), 1, "every repeat is answered with the stored one");
    for r in repeated.iter().filter(|r| !r.created) {
        assert_eq!(r.deliveries, 0);
    }
    for r in results
        .iter()
        .filter(|r| r.notification.app_notification_id == "stored-before")
    {
        assert!(!r.created);
        assert_eq!(r.notification, before.notification);
    }
    // 1 before + 1 repeated + 5 fillers, numbered without gaps.
    let current = store
        .current_sequence(&AppId::from("app"), &UserId::from("alice"))
        .await
        .unwrap();
    assert_eq!(current, 7);
    let mut seqs: Vec<u64> = results
        .iter()
        .filter(|r| r.created)
        .map(|r| r.notification.sequence)
        .collect();
    seqs.sort_unstable();
    assert_eq!(seqs, (2..=7).collect::<Vec<u64>>());
}

#[tokio::test]
async fn a_notification_the_database_refuses_fails_only_its_own_send() {
    let store = batching_store().await;
    store
        .upsert_endpoint(endpoint("alice", fcm("a".into())))
        .await
        .unwrap();
    // PostgreSQL text cannot hold NUL. (Tidings' own validation refuses it before a store
    // sees it; a store called directly must still fail just that one.)
    let sends: Vec<Notification> = (0..30)
        .map(|i| {
            let mut n = notification("alice", &format!("n-{i}"));
            if i == 17 {
                n.raw = Some("nul \0 inside".into());
            }
            n
        })
        .collect();
    let results = join_all(sends.iter().map(|n| store.insert_notification(n.clone()))).await;
    for (i, r) in results.into_iter().enumerate() {
        if i == 17 {
            let e = r.unwrap_err();
            assert_eq!(e.kind(), StoreErrorKind::Other, "{e}");
        } else {
            assert!(r.unwrap().created, "send {i}");
        }
    }
    let current = store
        .current_sequence(&AppId::from("app"), &UserId::from("alice"))
        .await
        .unwrap();
    assert_eq!(current, 29, "the refused send took no sequence number");
}
