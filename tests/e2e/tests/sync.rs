//! State sync: handled once, dismissed everywhere.

// Helpers outside #[test] functions panic on failure too.
#![allow(clippy::unwrap_used)]

use std::time::Duration;

use tidings::{DeliveryKind, NewNotification, NotificationId, Platform, StatePatch, UserAction};
use tidings_e2e::{Harness, APP};

#[tokio::test]
async fn dismiss_on_one_device_signals_the_others_but_not_itself_nor_web_push() {
    let h = Harness::new();
    let devices = h.register_devices("alice", 1).await;
    let n = h
        .tidings
        .send(NewNotification::new(APP, "alice", "m1").title("Hi"))
        .await
        .unwrap();
    h.dispatch().await;
    for p in Platform::ALL {
        h.channel(p).clear();
    }

    let updated = h
        .tidings
        .update_state(
            &APP.into(),
            &"alice".into(),
            n.id,
            StatePatch::dismissed(),
            Some(devices.android.id),
        )
        .await
        .unwrap();
    assert_eq!(updated.state.action, UserAction::Dismissed);
    assert!(updated.sequence > n.sequence);

    // Signals wait for the coalescing window.
    assert_eq!(h.dispatch().await.leased, 0);
    h.advance(Duration::from_secs(3));
    h.dispatch().await;

    for (endpoint, expected) in [
        (&devices.iphone, 1),
        (&devices.windows, 1),
        (&devices.android, 0),
        (&devices.browser, 0),
    ] {
        let pushes = h.channel(endpoint.platform()).pushes_to(endpoint.id);
        assert_eq!(pushes.len(), expected, "{:?}", endpoint.platform());
        for push in pushes {
            assert_eq!(push.push.kind, DeliveryKind::Sync);
            assert!(push.push.is_silent());
            assert_eq!(push.push.sequence, updated.sequence);
        }
    }
}

#[tokio::test]
async fn a_burst_of_ten_changes_coalesces_to_one_signal_per_endpoint() {
    let h = Harness::new();
    let devices = h.register_devices("alice", 1).await;
    let ids = delivered_notifications(&h, 10).await;

    let mut last = 0;
    for id in ids {
        last = mark_read(&h, id, &devices.iphone).await;
    }
    h.advance(Duration::from_secs(3));
    h.dispatch().await;

    for endpoint in [&devices.android, &devices.windows] {
        let pushes = h.channel(endpoint.platform()).pushes_to(endpoint.id);
        assert_eq!(pushes.len(), 1, "{:?}", endpoint.platform());
        assert_eq!(
            pushes[0].push.sequence, last,
            "the signal announces the latest change"
        );
    }
    assert!(h.apns.pushes_to(devices.iphone.id).is_empty());
    assert!(h.webpush.pushes_to(devices.browser.id).is_empty());
}

#[tokio::test]
async fn a_device_that_missed_changes_catches_up_through_the_change_feed() {
    let h = Harness::new();
    h.register_devices("alice", 1).await;
    let a = h
        .tidings
        .send(NewNotification::new(APP, "alice", "a").title("A"))
        .await
        .unwrap();
    let b = h
        .tidings
        .send(NewNotification::new(APP, "alice", "b").title("B"))
        .await
        .unwrap();
    let seen = b.sequence;
    h.tidings
        .update_state(
            &APP.into(),
            &"alice".into(),
            a.id,
            StatePatch::dismissed(),
            None,
        )
        .await
        .unwrap();
    h.tidings
        .delete_notification(&APP.into(), &"alice".into(), b.id, None)
        .await
        .unwrap();

    let page = h
        .tidings
        .changes(&APP.into(), &"alice".into(), seen, 50)
        .await
        .unwrap();

    let ids: Vec<_> = page.changes.iter().map(|n| n.id).collect();
    assert_eq!(ids, vec![a.id, b.id]);
    assert!(!page.more);
    assert_eq!(page.next_since, page.changes[1].sequence);
}

/// Alice reads notification `id` on `device`; returns the change's sequence.
async fn mark_read(h: &Harness, id: NotificationId, device: &tidings::Endpoint) -> u64 {
    h.tidings
        .update_state(
            &APP.into(),
            &"alice".into(),
            id,
            StatePatch::read(),
            Some(device.id),
        )
        .await
        .unwrap()
        .sequence
}

/// Sends alice `count` notifications and delivers them; the channels' records are cleared.
async fn delivered_notifications(h: &Harness, count: usize) -> Vec<NotificationId> {
    let mut ids = Vec::new();
    for i in 0..count {
        let n = h
            .tidings
            .send(NewNotification::new(APP, "alice", format!("m{i}")).title("Hi"))
            .await
            .unwrap();
        ids.push(n.id);
    }
    h.dispatch().await;
    for p in Platform::ALL {
        h.channel(p).clear();
    }
    ids
}

/// Sends `count` notifications, then changes them one by one from the Android device, each
/// after the previous change's signals went out. Returns the last change's sequence.
async fn spaced_changes(h: &Harness, devices: &tidings_e2e::Devices, count: usize) -> u64 {
    let ids = delivered_notifications(h, count).await;
    let mut last = 0;
    for id in ids {
        last = mark_read(h, id, &devices.android).await;
        h.advance(Duration::from_secs(3));
        h.dispatch().await;
    }
    last
}

#[tokio::test]
async fn an_iphone_gets_its_background_budget_and_the_rest_folded_into_a_later_signal() {
    let h = Harness::new();
    let devices = h.register_devices("alice", 1).await;
    let last = spaced_changes(&h, &devices, 5).await;

    // Windows has no budget: a signal per change. The iPhone: the default burst of three.
    assert_eq!(h.wns.pushes_to(devices.windows.id).len(), 5);
    let iphone = h.apns.pushes_to(devices.iphone.id);
    assert_eq!(iphone.len(), 3, "the default budget lets three go at once");

    // Changes four and five wait in one signal until the bucket refills (20 minutes after the
    // first signal), then go as one, announcing the latest change.
    h.advance(Duration::from_secs(19 * 60));
    h.dispatch().await;
    assert_eq!(h.apns.pushes_to(devices.iphone.id).len(), 3);
    h.advance(Duration::from_secs(60));
    h.dispatch().await;
    let iphone = h.apns.pushes_to(devices.iphone.id);
    assert_eq!(
        iphone.len(),
        4,
        "the held signal goes once the budget allows"
    );
    assert_eq!(iphone[3].push.kind, DeliveryKind::Sync);
    assert_eq!(iphone[3].push.sequence, last);
}

#[tokio::test]
async fn an_app_without_a_background_budget_signals_the_iphone_every_time() {
    let h = Harness::with_app(tidings::App::new(APP).apns_background_budget(None));
    let devices = h.register_devices("alice", 1).await;
    spaced_changes(&h, &devices, 5).await;
    assert_eq!(h.apns.pushes_to(devices.iphone.id).len(), 5);
    assert_eq!(h.wns.pushes_to(devices.windows.id).len(), 5);
}

#[tokio::test]
async fn a_bulk_change_answers_every_id_given_and_signals_each_other_device_once() {
    let h = Harness::new();
    let devices = h.register_devices("alice", 1).await;
    let ids = delivered_notifications(&h, 3).await;
    let unknown = NotificationId::new_random();
    let asked = [ids[0], unknown, ids[1], ids[0], ids[2]];
    let results = h
        .tidings
        .update_states(
            &APP.into(),
            &"alice".into(),
            &asked,
            StatePatch::dismissed(),
            Some(devices.android.id),
        )
        .await
        .unwrap();
    assert_eq!(results.len(), asked.len(), "one answer per id given");
    assert!(results[1].is_none(), "an unknown id is not found");
    assert_eq!(
        results[0], results[3],
        "a repeated id answers like the first"
    );
    let sequences: Vec<u64> = [0, 2, 4]
        .iter()
        .map(|&i| results[i].as_ref().unwrap().sequence)
        .collect();
    assert!(
        sequences.windows(2).all(|w| w[0] + 1 == w[1]),
        "{sequences:?}"
    );

    h.advance(Duration::from_secs(3));
    h.dispatch().await;
    for endpoint in [&devices.iphone, &devices.windows] {
        let pushes = h.channel(endpoint.platform()).pushes_to(endpoint.id);
        assert_eq!(pushes.len(), 1, "{:?}", endpoint.platform());
        assert_eq!(pushes[0].push.sequence, sequences[2]);
    }
    assert!(h.fcm.pushes_to(devices.android.id).is_empty());

    let e = h
        .tidings
        .update_states(&APP.into(), &"alice".into(), &[], StatePatch::read(), None)
        .await
        .unwrap_err();
    assert_eq!(e.field(), Some("ids"), "{e}");
    let many = vec![ids[0]; tidings::MAX_BULK_IDS + 1];
    let e = h
        .tidings
        .update_states(
            &APP.into(),
            &"alice".into(),
            &many,
            StatePatch::read(),
            None,
        )
        .await
        .unwrap_err();
    assert_eq!(e.field(), Some("ids"), "{e}");
}
