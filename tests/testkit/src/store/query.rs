//! Cases: history, the change feed, and what another user or app may not see.

use std::collections::BTreeSet;

use tidings::{
    ChangePage, ChangesQuery, EndpointId, HistoryFilter, Notification, NotificationId, Platform,
    ReadState, StatePatch, StateUpdate, Status, Store, UserAction,
};

use super::fixtures::{self, at, T0};
use super::support::{
    assert_not_found, change, ids, insert_new, ok, read_history, register, sequence,
};

/// `ids` of `items` sorted newest first by (created_at, id).
fn newest_first(items: &[Notification]) -> Vec<NotificationId> {
    let mut sorted: Vec<&Notification> = items.iter().collect();
    sorted.sort_by_key(|n| std::cmp::Reverse((n.created_at, n.id)));
    sorted.iter().map(|n| n.id).collect()
}

/// Paging through history with a cursor returns every item exactly once, newest first by
/// (created_at, id) — items sharing a creation time included — while new notifications arrive
/// between pages.
pub async fn history_pages_return_every_item_once_while_new_items_arrive(store: &dyn Store) {
    let (app, alice) = (fixtures::app(), fixtures::user());
    let mut originals = Vec::new();
    for i in 0..21 {
        // Pairs share a creation time, so the id must break the tie.
        originals.push(insert_new(store, fixtures::notification(&app, &alice, at(i / 2)), 0).await);
    }
    let arriving: Vec<Notification> = (0..12)
        .map(|k| fixtures::notification(&app, &alice, at(1000 + k)))
        .collect();
    let arrived = arriving.clone();
    let seen = read_history(
        store,
        &app,
        &alice,
        &HistoryFilter::default(),
        4,
        at(2000),
        arriving,
    )
    .await;
    assert_eq!(
        ids(&seen),
        newest_first(&originals),
        "history pages must return each item once, newest first"
    );

    let everything = read_history(
        store,
        &app,
        &alice,
        &HistoryFilter::default(),
        7,
        at(2000),
        Vec::new(),
    )
    .await;
    let arrived_ids: BTreeSet<NotificationId> = arrived.iter().map(|n| n.id).collect();
    let inserted: Vec<NotificationId> = ids(&everything)
        .into_iter()
        .filter(|id| arrived_ids.contains(id))
        .collect();
    assert!(
        !inserted.is_empty(),
        "notifications inserted between pages are missing from history"
    );
    assert_eq!(everything.len(), originals.len() + inserted.len());
    let mut all = originals.clone();
    all.extend(
        everything
            .iter()
            .filter(|n| arrived_ids.contains(&n.id))
            .cloned(),
    );
    assert_eq!(ids(&everything), newest_first(&all));
}

/// The notifications every history filter case starts from.
struct Seeded {
    read: Notification,
    dismissed: Notification,
    chat: Notification,
    deleted: Notification,
    plain: Notification,
    late: Notification,
}

async fn seed(store: &dyn Store, app: &tidings::AppId, user: &tidings::UserId) -> Seeded {
    let n = |secs| fixtures::notification(app, user, at(secs));
    let read = insert_new(store, n(10), 0).await;
    let read = change(store, &read, StatePatch::read(), at(600)).await;
    let dismissed = insert_new(store, n(20), 0).await;
    let dismissed = change(store, &dismissed, StatePatch::dismissed(), at(601)).await;
    let mut chat = n(30);
    chat.group = Some("chat".to_owned());
    let chat = insert_new(store, chat, 0).await;
    let deleted = insert_new(store, n(40), 0).await;
    let deleted = change(store, &deleted, StatePatch::deleted(), at(602)).await;
    let plain = insert_new(store, n(50), 0).await;
    let late = insert_new(store, n(500), 0).await;
    Seeded {
        read,
        dismissed,
        chat,
        deleted,
        plain,
        late,
    }
}

/// Each history filter (read state, action, group, since, include deleted) returns exactly the
/// matching notifications, newest first, each once across pages of two while new
/// notifications arrive; deleted notifications are left out unless asked for.
pub async fn history_filters_select_matching_items_on_every_page(store: &dyn Store) {
    let app = fixtures::app();
    type Pick = fn(&Seeded) -> Vec<&Notification>;
    let cases: Vec<(&str, HistoryFilter, Pick)> = vec![
        ("no filter", HistoryFilter::default(), |s| {
            vec![&s.late, &s.plain, &s.chat, &s.dismissed, &s.read]
        }),
        (
            "read",
            HistoryFilter {
                read: Some(ReadState::Read),
                ..HistoryFilter::default()
            },
            |s| vec![&s.dismissed, &s.read],
        ),
        (
            "unread",
            HistoryFilter {
                read: Some(ReadState::Unread),
                ..HistoryFilter::default()
            },
            |s| vec![&s.late, &s.plain, &s.chat],
        ),
        (
            "dismissed",
            HistoryFilter {
                action: Some(UserAction::Dismissed),
                ..HistoryFilter::default()
            },
            |s| vec![&s.dismissed],
        ),
        (
            "no action",
            HistoryFilter {
                action: Some(UserAction::None),
                ..HistoryFilter::default()
            },
            |s| vec![&s.late, &s.plain, &s.chat, &s.read],
        ),
        (
            "group",
            HistoryFilter {
                group: Some("chat".to_owned()),
                ..HistoryFilter::default()
            },
            |s| vec![&s.chat],
        ),
        (
            "since",
            HistoryFilter {
                since: Some(at(30)),
                ..HistoryFilter::default()
            },
            |s| vec![&s.late, &s.plain, &s.chat],
        ),
        (
            "include deleted",
            HistoryFilter {
                include_deleted: true,
                ..HistoryFilter::default()
            },
            |s| {
                vec![
                    &s.late,
                    &s.plain,
                    &s.deleted,
                    &s.chat,
                    &s.dismissed,
                    &s.read,
                ]
            },
        ),
        (
            "unread since, with deleted",
            HistoryFilter {
                read: Some(ReadState::Unread),
                since: Some(at(40)),
                include_deleted: true,
                ..HistoryFilter::default()
            },
            |s| vec![&s.late, &s.plain, &s.deleted],
        ),
    ];
    for (name, filter, pick) in cases {
        // A fresh user per filter, so notifications arriving during one read do not show in the next.
        let user = fixtures::user();
        let seeded = seed(store, &app, &user).await;
        let arriving = (0..4)
            .map(|k| {
                let mut n = fixtures::notification(&app, &user, at(1000 + k));
                n.group = Some("chat".to_owned());
                n
            })
            .collect();
        let seen = read_history(store, &app, &user, &filter, 2, at(2000), arriving).await;
        let expected: Vec<NotificationId> = pick(&seeded).iter().map(|n| n.id).collect();
        assert_eq!(
            ids(&seen),
            expected,
            "history filter {name:?} returned the wrong items"
        );
        if name == "include deleted" {
            let deleted = seen
                .iter()
                .find(|n| n.id == seeded.deleted.id)
                .map(|n| n.state.status);
            assert_eq!(deleted, Some(Status::Deleted));
        }
    }
}

async fn read_changes(
    store: &dyn Store,
    app: &tidings::AppId,
    user: &tidings::UserId,
    since: u64,
    limit: usize,
    now: tidings::Timestamp,
) -> ChangePage {
    ok(
        store
            .changes(&ChangesQuery {
                app: app.clone(),
                user: user.clone(),
                since,
                limit,
                now,
            })
            .await,
        "changes",
    )
}

/// Notifications expired at `now` are left out of history and the change feed (before any
/// purge), and `notification` and `record_fetch` answer "not found" for them.
pub async fn history_and_changes_leave_out_expired_items(store: &dyn Store) {
    let (app, alice) = (fixtures::app(), fixtures::user());
    let phone = register(store, fixtures::endpoint(&app, &alice, Platform::Apns)).await;
    let mut short = fixtures::notification(&app, &alice, T0);
    short.expires_at = at(100);
    let short = insert_new(store, short, 1).await;
    change(store, &short, StatePatch::read(), at(50)).await;
    let long = insert_new(store, fixtures::notification(&app, &alice, at(1)), 1).await;

    let before = read_history(
        store,
        &app,
        &alice,
        &HistoryFilter::default(),
        10,
        at(99),
        Vec::new(),
    )
    .await;
    assert_eq!(ids(&before), vec![long.id, short.id]);
    let after = read_history(
        store,
        &app,
        &alice,
        &HistoryFilter::default(),
        10,
        at(100),
        Vec::new(),
    )
    .await;
    assert_eq!(
        ids(&after),
        vec![long.id],
        "an expired notification is still in history"
    );
    let changes = read_changes(store, &app, &alice, 0, 10, at(100)).await;
    assert_eq!(
        ids(&changes.changes),
        vec![long.id],
        "an expired notification is still in the change feed"
    );

    ok(
        store.notification(&app, &alice, short.id, at(99)).await,
        "notification before expiry",
    );
    assert_not_found(
        store.notification(&app, &alice, short.id, at(100)).await,
        "an expired notification",
    );
    assert_not_found(
        store
            .record_fetch(&app, &alice, short.id, phone.id, at(100))
            .await,
        "fetching an expired notification",
    );
}

/// The change feed returns each changed notification once, in its latest state, in ascending
/// sequence order, page by page through `next_since` and `more`; deleted notifications are in
/// it (so other devices learn of the deletion), and a later change shows up after the last
/// `next_since`.
pub async fn change_feed_pages_in_sequence_order(store: &dyn Store) {
    let (app, alice) = (fixtures::app(), fixtures::user());
    let mut notes = Vec::new();
    for i in 0..7 {
        notes.push(insert_new(store, fixtures::notification(&app, &alice, at(i)), 0).await);
    }
    change(store, &notes[2], StatePatch::read(), at(10)).await;
    change(store, &notes[0], StatePatch::dismissed(), at(11)).await;
    change(store, &notes[5], StatePatch::deleted(), at(12)).await;
    let expected: Vec<NotificationId> =
        [1, 3, 4, 6, 2, 0, 5].iter().map(|&i| notes[i].id).collect();

    let mut feed = Vec::new();
    let mut since = 0;
    let mut pages = 0;
    loop {
        let page = read_changes(store, &app, &alice, since, 3, at(20)).await;
        assert!(page.changes.len() <= 3, "a change page exceeds its limit");
        assert!(
            page.changes.iter().all(|n| n.sequence > since),
            "a change at or below `since` was returned"
        );
        assert!(page.next_since >= since);
        feed.extend(page.changes);
        since = page.next_since;
        pages += 1;
        assert!(pages <= 10, "the change feed did not end");
        if !page.more {
            break;
        }
    }
    assert_eq!(
        ids(&feed),
        expected,
        "the change feed must list each notification once, by sequence"
    );
    assert!(feed.windows(2).all(|w| w[0].sequence < w[1].sequence));
    assert_eq!(
        since,
        sequence(store, &app, &alice).await,
        "after the last page next_since is the current sequence"
    );
    let by_id = |id| feed.iter().find(|n| n.id == id).map(|n| n.state);
    assert_eq!(
        by_id(notes[0].id).map(|s| s.action),
        Some(UserAction::Dismissed)
    );
    assert_eq!(by_id(notes[5].id).map(|s| s.status), Some(Status::Deleted));

    let later = change(store, &notes[1], StatePatch::read(), at(30)).await;
    let page = read_changes(store, &app, &alice, since, 3, at(31)).await;
    assert_eq!(ids(&page.changes), vec![later.id]);
    assert!(!page.more);
    assert_eq!(page.next_since, later.sequence);
    let empty = read_changes(store, &app, &alice, page.next_since, 3, at(31)).await;
    assert!(empty.changes.is_empty() && !empty.more);
}

/// Another user's or another app's notification cannot be read, fetched or changed: each is
/// "not found", exactly like an id that does not exist, and the owner's notification and
/// sequence stay as they were; it shows in neither their history nor their change feed. An
/// endpoint of another user cannot record a fetch either.
pub async fn another_users_notification_is_not_found(store: &dyn Store) {
    let (app, other_app, alice, bob) = (
        fixtures::app(),
        fixtures::app(),
        fixtures::user(),
        fixtures::user(),
    );
    let alices_phone = register(store, fixtures::endpoint(&app, &alice, Platform::Apns)).await;
    let bobs_phone = register(store, fixtures::endpoint(&app, &bob, Platform::Apns)).await;
    let n = insert_new(store, fixtures::notification(&app, &alice, T0), 1).await;
    let update = |app: &tidings::AppId, user: &tidings::UserId, id| StateUpdate {
        app: app.clone(),
        user: user.clone(),
        id,
        patch: StatePatch::deleted(),
        at: at(10),
        origin: None,
        sync: None,
    };

    assert_not_found(
        store.notification(&app, &bob, n.id, at(1)).await,
        "reading another user's notification",
    );
    assert_not_found(
        store.notification(&other_app, &alice, n.id, at(1)).await,
        "reading another app's notification",
    );
    assert_not_found(
        store
            .notification(&app, &alice, NotificationId::new_random(), at(1))
            .await,
        "reading a missing notification",
    );
    assert_not_found(
        store.update_state(update(&app, &bob, n.id)).await,
        "changing another user's notification",
    );
    assert_not_found(
        store.update_state(update(&other_app, &alice, n.id)).await,
        "changing another app's notification",
    );
    assert_not_found(
        store
            .update_state(update(&app, &alice, NotificationId::new_random()))
            .await,
        "changing a missing notification",
    );
    assert_not_found(
        store
            .record_fetch(&app, &bob, n.id, bobs_phone.id, at(1))
            .await,
        "fetching another user's notification",
    );
    assert_not_found(
        store
            .record_fetch(&other_app, &alice, n.id, alices_phone.id, at(1))
            .await,
        "fetching another app's notification",
    );
    assert_not_found(
        store
            .record_fetch(&app, &alice, n.id, bobs_phone.id, at(1))
            .await,
        "recording a fetch by another user's endpoint",
    );
    assert_not_found(
        store
            .record_fetch(&app, &alice, n.id, EndpointId::new_random(), at(1))
            .await,
        "recording a fetch by a missing endpoint",
    );

    for (a, u) in [(&app, &bob), (&other_app, &alice)] {
        let history = read_history(
            store,
            a,
            u,
            &HistoryFilter::default(),
            10,
            at(1),
            Vec::new(),
        )
        .await;
        assert!(
            history.is_empty(),
            "history shows a notification of another user or app"
        );
        let feed = read_changes(store, a, u, 0, 10, at(1)).await;
        assert!(
            feed.changes.is_empty(),
            "the change feed shows a notification of another user or app"
        );
    }

    let stored = ok(
        store.notification(&app, &alice, n.id, at(20)).await,
        "notification",
    );
    assert_eq!(stored, n, "a refused change altered the notification");
    assert_eq!(sequence(store, &app, &alice).await, n.sequence);
    assert_eq!(sequence(store, &app, &bob).await, 0);
    ok(
        store
            .record_fetch(&app, &alice, n.id, alices_phone.id, at(21))
            .await,
        "record_fetch by the owner",
    );
}
