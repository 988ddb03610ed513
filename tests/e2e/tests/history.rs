//! History, expiry sweeps and erasing a user.

// Helpers outside #[test] functions panic on failure too.
#![allow(clippy::unwrap_used)]

use std::time::Duration;

use tidings::{HistoryFilter, NewNotification, ReadState, StatePatch};
use tidings_e2e::{Harness, APP};

#[tokio::test]
async fn history_lists_newest_first_and_pages_through_everything() {
    let h = Harness::new();
    for i in 0..7 {
        h.tidings
            .send(NewNotification::new(APP, "alice", format!("n{i}")).title(format!("N{i}")))
            .await
            .unwrap();
        h.advance(Duration::from_secs(1));
    }
    let mut seen = Vec::new();
    let mut after = None;
    loop {
        let page = h
            .tidings
            .history(
                &APP.into(),
                &"alice".into(),
                HistoryFilter::default(),
                after,
                3,
            )
            .await
            .unwrap();
        seen.extend(page.items.iter().map(|n| n.app_notification_id.clone()));
        match page.next {
            Some(next) => after = Some(next),
            None => break,
        }
    }
    assert_eq!(seen, ["n6", "n5", "n4", "n3", "n2", "n1", "n0"]);
}

#[tokio::test]
async fn read_state_filters_history() {
    let h = Harness::new();
    let a = h
        .tidings
        .send(NewNotification::new(APP, "alice", "a").title("A"))
        .await
        .unwrap();
    h.tidings
        .send(NewNotification::new(APP, "alice", "b").title("B"))
        .await
        .unwrap();
    h.tidings
        .update_state(&APP.into(), &"alice".into(), a.id, StatePatch::read(), None)
        .await
        .unwrap();
    let filter = HistoryFilter {
        read: Some(ReadState::Unread),
        ..HistoryFilter::default()
    };
    let page = h
        .tidings
        .history(&APP.into(), &"alice".into(), filter, None, 50)
        .await
        .unwrap();
    let ids: Vec<_> = page
        .items
        .iter()
        .map(|n| n.app_notification_id.as_str())
        .collect();
    assert_eq!(ids, ["b"]);
}

#[tokio::test]
async fn the_sweep_removes_expired_notifications_and_their_pending_deliveries() {
    let h = Harness::new();
    h.register_devices("alice", 1).await;
    h.tidings
        .send(
            NewNotification::new(APP, "alice", "short")
                .title("Short")
                .expires_in(Duration::from_secs(60)),
        )
        .await
        .unwrap();
    h.tidings
        .send(
            NewNotification::new(APP, "alice", "long")
                .title("Long")
                .expires_in(Duration::from_secs(3600)),
        )
        .await
        .unwrap();

    h.advance(Duration::from_secs(61));
    let report = h.tidings.sweep().await.unwrap();

    assert_eq!(report.notifications, 1);
    assert_eq!(
        report.deliveries, 4,
        "the short one's four pending deliveries go with it"
    );
    let page = h
        .tidings
        .history(
            &APP.into(),
            &"alice".into(),
            HistoryFilter::default(),
            None,
            50,
        )
        .await
        .unwrap();
    let ids: Vec<_> = page
        .items
        .iter()
        .map(|n| n.app_notification_id.as_str())
        .collect();
    assert_eq!(ids, ["long"]);
    assert_eq!(h.dispatch().await.accepted, 4);
}

#[tokio::test]
async fn delete_user_erases_everything_of_that_user_only() {
    let h = Harness::new();
    h.register_devices("alice", 1).await;
    h.register_devices("bob", 2).await;
    let n = h
        .tidings
        .send(NewNotification::new(APP, "alice", "a").title("A"))
        .await
        .unwrap();
    h.tidings
        .send(NewNotification::new(APP, "bob", "b").title("B"))
        .await
        .unwrap();

    h.tidings.delete_user(&"alice".into()).await.unwrap();

    let alice = (APP.into(), "alice".into());
    assert!(h
        .tidings
        .endpoints(&alice.0, &alice.1)
        .await
        .unwrap()
        .is_empty());
    assert!(h
        .tidings
        .notification(&alice.0, &alice.1, n.id)
        .await
        .unwrap_err()
        .is_not_found());
    let changes = h.tidings.changes(&alice.0, &alice.1, 0, 50).await.unwrap();
    assert!(changes.changes.is_empty());
    let report = h.dispatch().await;
    assert_eq!(report.accepted, 4, "only bob's deliveries remain");
}

#[tokio::test]
async fn another_users_notification_is_not_found() {
    let h = Harness::new();
    let n = h
        .tidings
        .send(NewNotification::new(APP, "alice", "a").title("A"))
        .await
        .unwrap();
    let bob = "bob".into();
    let err = h
        .tidings
        .notification(&APP.into(), &bob, n.id)
        .await
        .unwrap_err();
    assert!(err.is_not_found());
    let err = h
        .tidings
        .update_state(&APP.into(), &bob, n.id, StatePatch::dismissed(), None)
        .await
        .unwrap_err();
    assert!(err.is_not_found());
}
