//! Cases: state changes, the per-user change sequence, sync signals.

use std::collections::BTreeSet;
use std::time::Duration;

use futures::future::join_all;
use tidings::{
    BackgroundBudget, BulkStateUpdate, DeliveryKind, NotificationId, Platform, ReadState,
    StatePatch, StateUpdate, Status, Store, SyncSchedule, UserAction,
};

use super::fixtures::{self, at, T0};
use super::support::{
    accept_all, change, change_with, deliver_all, endpoint_ids, insert_new, lease_all, ok,
    register, register_inactive, sequence, sync_due,
};

/// The change sequence starts at 0 and every insert and state change takes a strictly greater
/// value, which `current_sequence` reports and the notification carries; users and apps do not
/// share it: one user's changes leave another's untouched, and each starts from the same value.
pub async fn change_sequence_increases_strictly_per_user(store: &dyn Store) {
    let (app, other_app, alice, bob) = (
        fixtures::app(),
        fixtures::app(),
        fixtures::user(),
        fixtures::user(),
    );
    assert_eq!(sequence(store, &app, &alice).await, 0);
    let n1 = insert_new(store, fixtures::notification(&app, &alice, at(1)), 0).await;
    assert!(n1.sequence > 0);
    assert_eq!(sequence(store, &app, &alice).await, n1.sequence);
    let n2 = insert_new(store, fixtures::notification(&app, &alice, at(2)), 0).await;
    assert!(n2.sequence > n1.sequence);
    let read = change(store, &n1, StatePatch::read(), at(10)).await;
    assert!(
        read.sequence > n2.sequence,
        "a state change must take the next sequence"
    );
    assert_eq!(read.state.read, ReadState::Read);
    assert_eq!(read.state.changed_at, at(10));
    let dismissed = change(store, &n2, StatePatch::dismissed(), at(11)).await;
    assert!(dismissed.sequence > read.sequence);
    assert_eq!(sequence(store, &app, &alice).await, dismissed.sequence);
    let stored = ok(
        store.notification(&app, &alice, n1.id, at(12)).await,
        "notification",
    );
    assert_eq!(stored.sequence, read.sequence);

    assert_eq!(
        sequence(store, &app, &bob).await,
        0,
        "bob's sequence moved with alice's changes"
    );
    assert_eq!(
        sequence(store, &other_app, &alice).await,
        0,
        "another app's sequence moved"
    );
    let b1 = insert_new(store, fixtures::notification(&app, &bob, at(20)), 0).await;
    assert_eq!(
        b1.sequence, n1.sequence,
        "bob's first change must take the first value of his own sequence"
    );
    let o1 = insert_new(store, fixtures::notification(&other_app, &alice, at(21)), 0).await;
    assert_eq!(
        o1.sequence, n1.sequence,
        "the first change in another app must take the first value of its own sequence"
    );
    change(store, &b1, StatePatch::read(), at(22)).await;
    assert_eq!(
        sequence(store, &app, &alice).await,
        dismissed.sequence,
        "bob's changes moved alice's sequence"
    );
}

/// Concurrent state changes of one user's notifications all get distinct sequences, and the
/// current sequence is the greatest of them.
pub async fn concurrent_changes_get_distinct_sequences(store: &dyn Store) {
    let (app, alice) = (fixtures::app(), fixtures::user());
    let mut notes = Vec::new();
    for i in 0..8 {
        notes.push(insert_new(store, fixtures::notification(&app, &alice, at(i)), 0).await);
    }
    let inserted_max = notes.iter().map(|n| n.sequence).max().unwrap_or(0);
    let changes = notes.iter().map(|n| {
        store.update_state(StateUpdate {
            app: app.clone(),
            user: alice.clone(),
            id: n.id,
            patch: StatePatch::read(),
            at: at(100),
            origin: None,
            sync: None,
        })
    });
    let sequences: Vec<u64> = join_all(changes)
        .await
        .into_iter()
        .map(|r| ok(r, "concurrent update_state").sequence)
        .collect();
    let distinct: BTreeSet<u64> = sequences.iter().copied().collect();
    assert_eq!(
        distinct.len(),
        8,
        "concurrent changes shared a sequence: {sequences:?}"
    );
    assert!(sequences.iter().all(|s| *s > inserted_max));
    assert_eq!(
        sequence(store, &app, &alice).await,
        *distinct.iter().max().unwrap_or(&0)
    );
}

/// A patch that changes nothing returns the notification as it is: no new sequence, no new
/// `changed_at`, no sync signal.
pub async fn state_update_that_changes_nothing_bumps_nothing(store: &dyn Store) {
    let (app, alice) = (fixtures::app(), fixtures::user());
    let phone = register(store, fixtures::endpoint(&app, &alice, Platform::Apns)).await;
    register(store, fixtures::endpoint(&app, &alice, Platform::Fcm)).await;
    let n = insert_new(store, fixtures::notification(&app, &alice, T0), 2).await;
    deliver_all(store, T0).await;

    let unchanged = change_with(
        store,
        &n,
        StatePatch {
            read: Some(ReadState::Unread),
            ..StatePatch::default()
        },
        at(5),
        Some(phone.id),
        sync_due(7),
    )
    .await;
    assert_eq!(
        unchanged, n,
        "a patch to the current state changed the notification"
    );
    let read = change_with(
        store,
        &n,
        StatePatch::read(),
        at(10),
        Some(phone.id),
        sync_due(12),
    )
    .await;
    assert!(read.sequence > n.sequence);
    assert_eq!(
        deliver_all(store, at(12)).await.len(),
        1,
        "the real change sends one sync signal"
    );

    let again = change_with(
        store,
        &read,
        StatePatch::read(),
        at(20),
        Some(phone.id),
        sync_due(22),
    )
    .await;
    assert_eq!(
        again.sequence, read.sequence,
        "a no-op change bumped the sequence"
    );
    assert_eq!(again.state, read.state, "a no-op change touched the state");
    let empty = change_with(
        store,
        &read,
        StatePatch::default(),
        at(21),
        Some(phone.id),
        sync_due(22),
    )
    .await;
    assert_eq!(empty, again);
    assert_eq!(sequence(store, &app, &alice).await, read.sequence);
    assert!(
        lease_all(store, at(30)).await.is_empty(),
        "a no-op change enqueued a sync signal"
    );
}

/// A state change with a sync schedule enqueues one sync signal, due and expiring as
/// scheduled and carrying the new sequence, for each other active endpoint of the user that
/// takes silent pushes: not the origin, not Web Push, not inactive endpoints, not other users,
/// not the user's endpoints in other apps.
/// Without an origin every such endpoint gets one; without a schedule none does.
pub async fn state_change_enqueues_sync_signals_to_other_silent_capable_endpoints(
    store: &dyn Store,
) {
    let (app, alice, bob) = (fixtures::app(), fixtures::user(), fixtures::user());
    let inactive = register_inactive(store, &app, &alice).await;
    let phone = register(store, fixtures::endpoint(&app, &alice, Platform::Apns)).await;
    let android = register(store, fixtures::endpoint(&app, &alice, Platform::Fcm)).await;
    let pc = register(store, fixtures::endpoint(&app, &alice, Platform::Wns)).await;
    register(store, fixtures::endpoint(&app, &alice, Platform::WebPush)).await;
    register(store, fixtures::endpoint(&app, &bob, Platform::Fcm)).await;
    register(
        store,
        fixtures::endpoint(&fixtures::app(), &alice, Platform::Fcm),
    )
    .await;
    let n1 = insert_new(store, fixtures::notification(&app, &alice, T0), 4).await;
    let n2 = insert_new(store, fixtures::notification(&app, &alice, at(1)), 4).await;
    deliver_all(store, at(1)).await;

    let dismissed = change_with(
        store,
        &n1,
        StatePatch::dismissed(),
        at(10),
        Some(phone.id),
        sync_due(12),
    )
    .await;
    assert!(
        lease_all(store, at(11)).await.is_empty(),
        "a sync signal was leased before its due time"
    );
    let signals = deliver_all(store, at(12)).await;
    assert_eq!(
        endpoint_ids(&signals),
        BTreeSet::from([android.id, pc.id]),
        "sync signals go to the other silent-capable endpoints only"
    );
    assert_eq!(signals.len(), 2);
    for l in &signals {
        assert_eq!(l.delivery.kind, DeliveryKind::Sync);
        assert_eq!(l.delivery.user, alice);
        assert_eq!(
            l.delivery.sequence, dismissed.sequence,
            "a sync signal announces the change's sequence"
        );
        assert_eq!(l.delivery.expires_at, at(72));
    }
    assert!(!endpoint_ids(&signals).contains(&inactive.id));

    change(store, &n2, StatePatch::read(), at(20)).await;
    assert!(
        lease_all(store, at(100)).await.is_empty(),
        "a change without a sync schedule enqueued signals"
    );
    change_with(
        store,
        &n2,
        StatePatch::dismissed(),
        at(200),
        None,
        sync_due(202),
    )
    .await;
    let signals = lease_all(store, at(202)).await;
    assert_eq!(
        endpoint_ids(&signals),
        BTreeSet::from([phone.id, android.id, pc.id]),
        "without an origin every silent-capable endpoint is signalled"
    );
}

/// While an endpoint has a pending, unleased sync signal, further changes add none for it and
/// raise its sequence instead; once the signal is leased, the next change enqueues a new one.
pub async fn sync_signals_coalesce_while_pending(store: &dyn Store) {
    let (app, alice) = (fixtures::app(), fixtures::user());
    let phone = register(store, fixtures::endpoint(&app, &alice, Platform::Apns)).await;
    let android = register(store, fixtures::endpoint(&app, &alice, Platform::Fcm)).await;
    let pc = register(store, fixtures::endpoint(&app, &alice, Platform::Wns)).await;
    let mut notes = Vec::new();
    for i in 0..3 {
        notes.push(insert_new(store, fixtures::notification(&app, &alice, at(i)), 3).await);
    }
    deliver_all(store, at(2)).await;

    change_with(
        store,
        &notes[0],
        StatePatch::read(),
        at(10),
        Some(phone.id),
        sync_due(12),
    )
    .await;
    let second = change_with(
        store,
        &notes[1],
        StatePatch::read(),
        at(11),
        Some(phone.id),
        sync_due(13),
    )
    .await;
    let signals = lease_all(store, at(13)).await;
    assert_eq!(
        signals.len(),
        2,
        "two quick changes must coalesce into one signal per endpoint"
    );
    assert_eq!(endpoint_ids(&signals), BTreeSet::from([android.id, pc.id]));
    for l in &signals {
        assert_eq!(
            l.delivery.sequence, second.sequence,
            "the coalesced signal must carry the latest sequence"
        );
    }

    let third = change_with(
        store,
        &notes[2],
        StatePatch::dismissed(),
        at(20),
        Some(phone.id),
        sync_due(22),
    )
    .await;
    let next = lease_all(store, at(22)).await;
    assert_eq!(
        next.len(),
        2,
        "a change after the signal was leased must enqueue a new one"
    );
    assert!(next
        .iter()
        .all(|l| l.delivery.sequence == third.sequence && l.delivery.kind == DeliveryKind::Sync));
    let first_ids: BTreeSet<_> = signals.iter().map(|l| l.delivery.id).collect();
    assert!(next.iter().all(|l| !first_ids.contains(&l.delivery.id)));
}

/// With an APNs budget, a new sync signal for an APNs endpoint waits until the endpoint's
/// budget allows it (here 2 at once, then one per 600 s), expires as much later, and absorbs
/// the changes made while it waits; other platforms' signals go when due. Folding a change into
/// a pending signal spends nothing.
pub async fn apns_sync_signals_respect_the_background_budget(store: &dyn Store) {
    let (app, alice) = (fixtures::app(), fixtures::user());
    let phone = register(store, fixtures::endpoint(&app, &alice, Platform::Apns)).await;
    let android = register(store, fixtures::endpoint(&app, &alice, Platform::Fcm)).await;
    let mut notes = Vec::new();
    for i in 0..5 {
        notes.push(insert_new(store, fixtures::notification(&app, &alice, at(i)), 2).await);
    }
    deliver_all(store, at(5)).await;
    let budget = BackgroundBudget::new(2, Duration::from_secs(600));
    let budgeted = |due: u64| {
        sync_due(due).map(|s| SyncSchedule {
            apns_budget: Some(budget),
            ..s
        })
    };

    // Two changes, each after the previous signal went: the burst covers both.
    for (i, t) in [(0, 10), (1, 20)] {
        change_with(
            store,
            &notes[i],
            StatePatch::read(),
            at(t),
            None,
            budgeted(t + 2),
        )
        .await;
        let signals = deliver_all(store, at(t + 2)).await;
        assert_eq!(
            endpoint_ids(&signals),
            BTreeSet::from([phone.id, android.id]),
            "signal {} is within the burst and goes when due",
            i + 1
        );
    }

    // The third within the hour: FCM's goes when due, APNs' waits for the bucket (the first
    // signal at 12 s refilled one slot by 612 s) and expires 60 s after that.
    change_with(
        store,
        &notes[2],
        StatePatch::read(),
        at(30),
        None,
        budgeted(32),
    )
    .await;
    let signals = deliver_all(store, at(32)).await;
    assert_eq!(
        endpoint_ids(&signals),
        BTreeSet::from([android.id]),
        "an APNs signal over the budget went when due"
    );
    // Changes made while it waits fold into it: no second signal, the latest sequence.
    let latest = change_with(
        store,
        &notes[3],
        StatePatch::read(),
        at(100),
        None,
        budgeted(102),
    )
    .await;
    let signals = deliver_all(store, at(102)).await;
    assert_eq!(endpoint_ids(&signals), BTreeSet::from([android.id]));
    assert!(
        lease_all(store, at(611)).await.is_empty(),
        "the held APNs signal went before its budget allowed"
    );
    let held = lease_all(store, at(612)).await;
    assert_eq!(
        endpoint_ids(&held),
        BTreeSet::from([phone.id]),
        "the held APNs signal must go once the budget allows"
    );
    assert_eq!(
        held.len(),
        1,
        "changes made while a signal waits fold into it"
    );
    assert_eq!(held[0].delivery.kind, DeliveryKind::Sync);
    assert_eq!(
        held[0].delivery.sequence, latest.sequence,
        "the held signal announces the latest change"
    );
    assert_eq!(
        held[0].delivery.expires_at,
        at(672),
        "a held signal expires as much later as it was held"
    );
    accept_all(store, &held, at(612)).await;

    // Without a budget in the schedule, APNs signals go when due.
    change_with(
        store,
        &notes[4],
        StatePatch::read(),
        at(620),
        None,
        sync_due(622),
    )
    .await;
    assert_eq!(
        endpoint_ids(&lease_all(store, at(622)).await),
        BTreeSet::from([phone.id, android.id]),
        "a schedule without a budget held a signal back"
    );
}

/// `update_states` answers one entry per id in order: the notification as it is now, or `None`
/// for an id of another user, an expired notification or one that never existed. Those the
/// patch changes take consecutive sequences in request order; one it leaves as it is keeps its
/// sequence; the other devices get one sync signal each, announcing the last change. A bulk
/// change that changes nothing bumps nothing and signals nobody.
pub async fn bulk_state_update_changes_many_and_signals_once(store: &dyn Store) {
    let (app, alice, bob) = (fixtures::app(), fixtures::user(), fixtures::user());
    let phone = register(store, fixtures::endpoint(&app, &alice, Platform::Apns)).await;
    let android = register(store, fixtures::endpoint(&app, &alice, Platform::Fcm)).await;
    register(store, fixtures::endpoint(&app, &bob, Platform::Fcm)).await;
    let first = insert_new(store, fixtures::notification(&app, &alice, T0), 2).await;
    let second = insert_new(store, fixtures::notification(&app, &alice, at(1)), 2).await;
    let already = insert_new(store, fixtures::notification(&app, &alice, at(2)), 2).await;
    let mut short = fixtures::notification(&app, &alice, at(3));
    short.expires_at = at(50);
    let expired = insert_new(store, short, 2).await;
    let bobs = insert_new(store, fixtures::notification(&app, &bob, at(4)), 1).await;
    deliver_all(store, at(5)).await;
    let already = change(store, &already, StatePatch::read(), at(6)).await;
    let before = sequence(store, &app, &alice).await;

    let bulk = |ids: Vec<NotificationId>, at, sync| BulkStateUpdate {
        app: app.clone(),
        user: alice.clone(),
        ids,
        patch: StatePatch::read(),
        at,
        origin: None,
        sync,
    };
    let missing = NotificationId::new_random();
    let results = ok(
        store
            .update_states(bulk(
                vec![
                    first.id, bobs.id, already.id, expired.id, second.id, missing,
                ],
                at(100),
                sync_due(102),
            ))
            .await,
        "update_states",
    );
    let summary: Vec<Option<(NotificationId, ReadState, u64)>> = results
        .iter()
        .map(|r| r.as_ref().map(|n| (n.id, n.state.read, n.sequence)))
        .collect();
    assert_eq!(
        summary,
        [
            Some((first.id, ReadState::Read, before + 1)),
            None,
            Some((already.id, ReadState::Read, already.sequence)),
            None,
            Some((second.id, ReadState::Read, before + 2)),
            None,
        ],
        "one entry per id in order: changed ones with consecutive sequences, the unchanged one \
         as it was, None for another user's, an expired and an unknown id"
    );
    assert_eq!(sequence(store, &app, &alice).await, before + 2);
    for n in results.iter().flatten() {
        let stored = ok(
            store.notification(&app, &alice, n.id, at(100)).await,
            "notification",
        );
        assert_eq!(
            &stored, n,
            "update_states answered something other than what it stored"
        );
    }
    let bobs_now = ok(
        store.notification(&app, &bob, bobs.id, at(100)).await,
        "notification",
    );
    assert_eq!(
        bobs_now.state.read,
        ReadState::Unread,
        "another user's notification changed"
    );

    let signals = lease_all(store, at(102)).await;
    assert_eq!(
        endpoint_ids(&signals),
        BTreeSet::from([phone.id, android.id]),
        "a bulk change signals each other device once"
    );
    assert_eq!(signals.len(), 2);
    assert!(signals
        .iter()
        .all(|l| l.delivery.kind == DeliveryKind::Sync && l.delivery.sequence == before + 2));
    accept_all(store, &signals, at(102)).await;

    let again = ok(
        store
            .update_states(bulk(vec![second.id, first.id], at(200), sync_due(202)))
            .await,
        "update_states",
    );
    assert_eq!(
        again
            .iter()
            .flatten()
            .map(|n| n.sequence)
            .collect::<Vec<_>>(),
        [before + 2, before + 1],
        "a bulk change that changes nothing keeps every sequence"
    );
    assert_eq!(sequence(store, &app, &alice).await, before + 2);
    assert!(
        lease_all(store, at(202)).await.is_empty(),
        "a bulk change that changes nothing sent sync signals"
    );
}

/// Any state change cancels the notification's pending fallback alerts: the user handled it.
pub async fn state_change_cancels_pending_fallback_alerts(store: &dyn Store) {
    let (app, alice) = (fixtures::app(), fixtures::user());
    register(store, fixtures::endpoint(&app, &alice, Platform::Apns)).await;
    let n = fixtures::notification_with_fallback(&app, &alice, T0, Duration::from_secs(60));
    let n = insert_new(store, n, 2).await;
    deliver_all(store, T0).await;
    change(store, &n, StatePatch::read(), at(10)).await;
    assert!(
        lease_all(store, at(60)).await.is_empty(),
        "a fallback alert fired after the user read the notification"
    );
}

/// Deleting a notification drops its pending notification deliveries (other notifications'
/// stay) and keeps it, with status deleted, until it expires.
pub async fn deleting_a_notification_drops_its_pending_deliveries(store: &dyn Store) {
    let (app, alice) = (fixtures::app(), fixtures::user());
    register(store, fixtures::endpoint(&app, &alice, Platform::Apns)).await;
    register(store, fixtures::endpoint(&app, &alice, Platform::Fcm)).await;
    let doomed = insert_new(store, fixtures::notification(&app, &alice, T0), 2).await;
    let kept = insert_new(store, fixtures::notification(&app, &alice, T0), 2).await;

    let deleted = change(store, &doomed, StatePatch::deleted(), at(1)).await;
    assert_eq!(deleted.state.status, Status::Deleted);
    let leased = lease_all(store, at(2)).await;
    assert_eq!(
        leased.len(),
        2,
        "a deleted notification's deliveries are still pending"
    );
    assert!(leased
        .iter()
        .all(|l| l.delivery.notification_id == Some(kept.id)));
    let stored = ok(
        store.notification(&app, &alice, doomed.id, at(2)).await,
        "notification",
    );
    assert_eq!(stored.state.status, Status::Deleted);
    assert_eq!(stored.state.action, UserAction::None);
}

/// A sync signal is never leased once expired, and `purge_expired` removes it (counted among
/// the removed deliveries) while its notification, still alive, stays.
pub async fn expired_sync_signals_are_never_leased_and_are_purged(store: &dyn Store) {
    let (app, alice) = (fixtures::app(), fixtures::user());
    let phone = register(store, fixtures::endpoint(&app, &alice, Platform::Apns)).await;
    register(store, fixtures::endpoint(&app, &alice, Platform::Fcm)).await;
    let n = insert_new(store, fixtures::notification(&app, &alice, T0), 2).await;
    deliver_all(store, T0).await;
    change_with(
        store,
        &n,
        StatePatch::read(),
        at(10),
        Some(phone.id),
        sync_due(12),
    )
    .await;
    // sync_due(12) expires at 72 s.
    assert!(
        lease_all(store, at(72)).await.is_empty(),
        "an expired sync signal was leased"
    );
    let report = ok(store.purge_expired(at(100), 100).await, "purge_expired");
    assert_eq!(report.notifications, 0, "a live notification was purged");
    assert_eq!(
        report.deliveries, 1,
        "the expired sync signal was not purged: {report:?}"
    );
    ok(
        store.notification(&app, &alice, n.id, at(100)).await,
        "notification after purging its sync signal",
    );
}
