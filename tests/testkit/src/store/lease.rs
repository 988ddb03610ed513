//! Cases: leasing due deliveries and recording what happened to them.

use std::collections::BTreeSet;

use futures::future::join_all;
use tidings::{LeaseRequest, Outcome, Platform, Store};

use super::fixtures::{self, at, T0};
use super::support::{
    accept_all, accepted, delivery_ids, endpoint_ids, endpoints, insert_new, lease, lease_all,
    notification_ids, ok, outcome, record, register,
};

/// Concurrent `lease_due` calls never hand out the same delivery twice, every lease token is
/// distinct, and a held delivery is not leased again before its lease lapses.
pub async fn lease_is_exclusive_under_concurrent_leasing(store: &dyn Store) {
    let (app, alice) = (fixtures::app(), fixtures::user());
    for _ in 0..5 {
        register(store, fixtures::endpoint(&app, &alice, Platform::Fcm)).await;
    }
    for i in 0..6 {
        insert_new(store, fixtures::notification(&app, &alice, at(i)), 5).await;
    }
    let request = LeaseRequest {
        now: at(10),
        limit: 4,
        lease_until: at(70),
    };
    let batches = join_all((0..6).map(|_| store.lease_due(request))).await;
    let mut seen = BTreeSet::new();
    let mut tokens = BTreeSet::new();
    for batch in batches {
        let batch = ok(batch, "concurrent lease_due");
        assert!(batch.len() <= 4, "lease_due returned more than its limit");
        for l in batch {
            assert!(
                seen.insert(l.delivery.id),
                "delivery {} was leased twice at once",
                l.delivery.id
            );
            assert!(tokens.insert(l.lease), "two leases share a token");
        }
    }
    for _ in 0..30 {
        let batch = ok(store.lease_due(request).await, "lease_due");
        if batch.is_empty() {
            break;
        }
        for l in batch {
            assert!(
                seen.insert(l.delivery.id),
                "delivery {} was leased again while held",
                l.delivery.id
            );
        }
    }
    assert_eq!(
        seen.len(),
        30,
        "every one of the 30 deliveries is leased exactly once"
    );
    assert!(
        lease_all(store, at(69)).await.is_empty(),
        "a held delivery was leased before its lease lapsed"
    );
}

/// `lease_due` takes the deliveries due earliest first and at most `limit` of them.
pub async fn lease_takes_the_oldest_due_first_up_to_the_limit(store: &dyn Store) {
    let (app, alice) = (fixtures::app(), fixtures::user());
    register(store, fixtures::endpoint(&app, &alice, Platform::Fcm)).await;
    let late = insert_new(store, fixtures::notification(&app, &alice, at(30)), 1).await;
    let early = insert_new(store, fixtures::notification(&app, &alice, at(10)), 1).await;
    let middle = insert_new(store, fixtures::notification(&app, &alice, at(20)), 1).await;

    let first = lease(store, at(40), 2).await;
    assert_eq!(
        notification_ids(&first),
        BTreeSet::from([early.id, middle.id]),
        "the two oldest due deliveries come first"
    );
    let rest = lease(store, at(40), 2).await;
    assert_eq!(notification_ids(&rest), BTreeSet::from([late.id]));
}

/// A lease that lapsed is taken again with a new token and the next attempt number; an
/// outcome presented with the old token is then counted stale and changes nothing, while the
/// new holder's outcome applies.
pub async fn expired_lease_is_taken_again_and_the_old_token_goes_stale(store: &dyn Store) {
    let (app, alice) = (fixtures::app(), fixtures::user());
    register(store, fixtures::endpoint(&app, &alice, Platform::Fcm)).await;
    insert_new(store, fixtures::notification(&app, &alice, T0), 1).await;

    let first = lease(store, T0, 10).await;
    assert_eq!(first.len(), 1);
    assert_eq!(first[0].lease_until, at(60));
    assert!(
        lease_all(store, at(30)).await.is_empty(),
        "a held lease was taken again"
    );
    let second = lease(store, at(61), 10).await;
    assert_eq!(second.len(), 1, "a lapsed lease was not taken again");
    assert_eq!(second[0].delivery.id, first[0].delivery.id);
    assert_ne!(
        second[0].lease, first[0].lease,
        "a retaken lease must get a new token"
    );
    assert_eq!(second[0].delivery.attempt, 2);

    let stale = record(store, vec![outcome(&first[0], accepted(), at(62))]).await;
    assert_eq!(
        (stale.applied, stale.stale),
        (0, 1),
        "the old holder's outcome must be stale"
    );
    assert!(
        lease_all(store, at(100)).await.is_empty(),
        "the new lease was broken by a stale outcome"
    );
    let applied = record(store, vec![outcome(&second[0], accepted(), at(101))]).await;
    assert_eq!((applied.applied, applied.stale), (1, 0));
    assert!(
        lease_all(store, at(200)).await.is_empty(),
        "an accepted delivery was leased again"
    );
}

/// Each lease of a delivery counts one more attempt.
pub async fn attempt_count_increases_per_lease(store: &dyn Store) {
    let (app, alice) = (fixtures::app(), fixtures::user());
    register(store, fixtures::endpoint(&app, &alice, Platform::Apns)).await;
    insert_new(store, fixtures::notification(&app, &alice, T0), 1).await;
    let mut now = T0;
    for expected in 1..=3 {
        let leased = lease_all(store, now).await;
        assert_eq!(leased.len(), 1);
        assert_eq!(leased[0].delivery.attempt, expected);
        now = now.plus(std::time::Duration::from_secs(10));
        let retry = Outcome::Retry {
            at: now,
            error: "503 Service Unavailable".to_owned(),
        };
        assert_eq!(
            record(store, vec![outcome(&leased[0], retry, now)])
                .await
                .applied,
            1
        );
    }
    let leased = lease_all(store, now).await;
    assert_eq!(leased[0].delivery.attempt, 4);
    let lapsed = lease_all(
        store,
        now.plus(super::support::LEASE + std::time::Duration::from_secs(1)),
    )
    .await;
    assert_eq!(
        lapsed[0].delivery.attempt, 5,
        "retaking a lapsed lease is an attempt too"
    );
}

/// A delivery rescheduled by a retry outcome is not leased before the retry time and is leased
/// at it, due at that time.
pub async fn rescheduled_delivery_is_not_leased_before_its_time(store: &dyn Store) {
    let (app, alice) = (fixtures::app(), fixtures::user());
    register(store, fixtures::endpoint(&app, &alice, Platform::Wns)).await;
    insert_new(store, fixtures::notification(&app, &alice, T0), 1).await;
    let leased = lease_all(store, T0).await;
    let retry = Outcome::Retry {
        at: at(300),
        error: "429 Too Many Requests".to_owned(),
    };
    assert_eq!(
        record(store, vec![outcome(&leased[0], retry, at(1))])
            .await
            .applied,
        1
    );
    assert!(
        lease_all(store, at(299)).await.is_empty(),
        "a rescheduled delivery was leased before its time"
    );
    let again = lease_all(store, at(300)).await;
    assert_eq!(delivery_ids(&again), delivery_ids(&leased));
    assert_eq!(again[0].delivery.next_attempt_at, at(300));
}

/// A retry outcome releases the lease: the delivery is leasable at the retry time even though
/// the lease it was sent under would last longer.
pub async fn retry_outcome_releases_the_lease(store: &dyn Store) {
    let (app, alice) = (fixtures::app(), fixtures::user());
    register(store, fixtures::endpoint(&app, &alice, Platform::Fcm)).await;
    insert_new(store, fixtures::notification(&app, &alice, T0), 1).await;
    let request = LeaseRequest {
        now: T0,
        limit: 10,
        lease_until: at(3600),
    };
    let leased = ok(store.lease_due(request).await, "lease_due");
    assert_eq!(leased.len(), 1);
    let retry = Outcome::Retry {
        at: at(5),
        error: "Retry-After: 5".to_owned(),
    };
    assert_eq!(
        record(store, vec![outcome(&leased[0], retry, at(1))])
            .await
            .applied,
        1
    );
    let again = lease_all(store, at(5)).await;
    assert_eq!(
        delivery_ids(&again),
        delivery_ids(&leased),
        "the retried delivery is still held by its old lease"
    );
    assert_ne!(again[0].lease, leased[0].lease);
}

/// Accepted and failed deliveries are finished: never leased again, whatever the time.
pub async fn finished_deliveries_are_never_leased_again(store: &dyn Store) {
    let (app, alice) = (fixtures::app(), fixtures::user());
    register(store, fixtures::endpoint(&app, &alice, Platform::Apns)).await;
    register(store, fixtures::endpoint(&app, &alice, Platform::Fcm)).await;
    let n = insert_new(store, fixtures::notification(&app, &alice, T0), 2).await;
    let leased = lease_all(store, T0).await;
    assert_eq!(leased.len(), 2);
    let failed = Outcome::Failed {
        error: "400 BadDeviceToken".to_owned(),
    };
    let report = record(
        store,
        vec![
            outcome(&leased[0], accepted(), at(1)),
            outcome(&leased[1], failed, at(1)),
        ],
    )
    .await;
    assert_eq!(report.applied, 2);
    for t in [
        at(61),
        at(3600),
        n.expires_at.minus(std::time::Duration::from_secs(1)),
    ] {
        assert!(
            lease_all(store, t).await.is_empty(),
            "a finished delivery was leased again at {t}"
        );
    }
}

/// The outcome of a delivery that was purged while leased is counted stale.
pub async fn outcome_for_a_purged_delivery_is_stale(store: &dyn Store) {
    let (app, alice) = (fixtures::app(), fixtures::user());
    register(store, fixtures::endpoint(&app, &alice, Platform::Fcm)).await;
    let mut n = fixtures::notification(&app, &alice, T0);
    n.expires_at = at(100);
    insert_new(store, n, 1).await;
    let request = LeaseRequest {
        now: T0,
        limit: 10,
        lease_until: at(500),
    };
    let leased = ok(store.lease_due(request).await, "lease_due");
    assert_eq!(leased.len(), 1);
    let purged = ok(store.purge_expired(at(100), 100).await, "purge_expired");
    assert_eq!(purged.notifications, 1);
    let report = record(store, vec![outcome(&leased[0], accepted(), at(101))]).await;
    assert_eq!((report.applied, report.stale), (0, 1));
}

/// A retry recorded in the same batch as "endpoint gone" for its endpoint is dropped with the
/// endpoint's other pending deliveries: it is not leased again, not even after the device
/// registers again.
pub async fn a_retry_batched_with_its_endpoints_gone_is_dropped(store: &dyn Store) {
    let (app, alice) = (fixtures::app(), fixtures::user());
    let device = register(store, fixtures::endpoint(&app, &alice, Platform::Fcm)).await;
    for i in 0..2 {
        insert_new(store, fixtures::notification(&app, &alice, at(i)), 1).await;
    }
    let leased = lease_all(store, at(1)).await;
    assert_eq!(leased.len(), 2);
    let outcomes = vec![
        outcome(
            &leased[0],
            Outcome::EndpointGone {
                reason: "Unregistered".to_owned(),
                address_key: device.address.key(),
            },
            at(2),
        ),
        outcome(
            &leased[1],
            Outcome::Retry {
                at: at(5),
                error: "try later".to_owned(),
            },
            at(2),
        ),
    ];
    let report = record(store, outcomes).await;
    // Whether the dropped retry counts as applied or as stale is the store's to say.
    assert_eq!(report.deactivated, 1, "{report:?}");
    assert!(report.applied >= 1, "{report:?}");
    assert_eq!(report.applied + report.stale, 2, "{report:?}");
    assert!(
        lease_all(store, at(10)).await.is_empty(),
        "a delivery of a gone endpoint was leased"
    );
    let back = register(
        store,
        fixtures::endpoint_with(&app, &alice, device.address.clone(), at(20)),
    )
    .await;
    assert!(back.active);
    assert!(
        lease_all(store, at(21)).await.is_empty(),
        "a retry of a gone endpoint came back when the device registered again"
    );
}

/// "Endpoint gone" finishes the delivery, deactivates the endpoint (with a reason) and drops
/// its pending deliveries — they stay dropped when the device registers again — while the
/// user's other endpoints keep theirs and inactive endpoints get no new deliveries.
pub async fn endpoint_gone_deactivates_the_endpoint_and_drops_its_deliveries(store: &dyn Store) {
    let (app, alice) = (fixtures::app(), fixtures::user());
    let gone = register(store, fixtures::endpoint(&app, &alice, Platform::Apns)).await;
    let other = register(store, fixtures::endpoint(&app, &alice, Platform::Fcm)).await;
    for i in 0..3 {
        insert_new(store, fixtures::notification(&app, &alice, at(i)), 2).await;
    }
    let first = lease_all(store, T0).await;
    assert_eq!(endpoint_ids(&first), BTreeSet::from([gone.id, other.id]));
    let outcomes = first
        .iter()
        .map(|l| {
            let o = if l.endpoint.id == gone.id {
                Outcome::EndpointGone {
                    reason: "Unregistered".to_owned(),
                    address_key: gone.address.key(),
                }
            } else {
                accepted()
            };
            outcome(l, o, at(1))
        })
        .collect();
    let report = record(store, outcomes).await;
    assert_eq!((report.applied, report.deactivated), (2, 1));
    let listed = endpoints(store, &app, &alice).await;
    let gone_now = listed
        .iter()
        .find(|e| e.id == gone.id)
        .expect("a gone endpoint is kept, inactive");
    assert!(!gone_now.active, "a gone endpoint stayed active");
    assert!(
        gone_now.deactivation_reason.is_some(),
        "a gone endpoint has no deactivation reason"
    );
    assert!(listed.iter().any(|e| e.id == other.id && e.active));

    let rest = lease_all(store, at(10)).await;
    assert_eq!(
        endpoint_ids(&rest),
        BTreeSet::from([other.id]),
        "a gone endpoint's deliveries were leased"
    );
    assert_eq!(rest.len(), 2);
    accept_all(store, &rest, at(10)).await;
    insert_new(store, fixtures::notification(&app, &alice, at(20)), 1).await;
    accept_all(store, &lease_all(store, at(20)).await, at(20)).await;

    let back = register(
        store,
        fixtures::endpoint_with(&app, &alice, gone.address.clone(), at(30)),
    )
    .await;
    assert!(back.active);
    assert!(
        lease_all(store, at(31)).await.is_empty(),
        "a gone endpoint's dropped deliveries came back"
    );
}

/// "Endpoint gone" for an address the endpoint no longer has (it re-registered meanwhile) does
/// not deactivate it, and neither does a gone report naming another address.
pub async fn endpoint_gone_for_a_changed_address_keeps_the_endpoint(store: &dyn Store) {
    let (app, alice) = (fixtures::app(), fixtures::user());
    let old_address = fixtures::apns_address();
    let mut e = fixtures::endpoint_with(&app, &alice, old_address.clone(), T0);
    e.installation_id = Some("install-1".to_owned());
    let phone = register(store, e).await;
    insert_new(store, fixtures::notification(&app, &alice, at(1)), 1).await;
    let leased = lease_all(store, at(1)).await;
    assert_eq!(leased[0].endpoint.address, old_address);

    let new_address = fixtures::apns_address();
    let mut e = fixtures::endpoint_with(&app, &alice, new_address.clone(), at(10));
    e.installation_id = Some("install-1".to_owned());
    assert_eq!(register(store, e).await.id, phone.id);
    let gone = Outcome::EndpointGone {
        reason: "BadDeviceToken".to_owned(),
        address_key: old_address.key(),
    };
    let report = record(store, vec![outcome(&leased[0], gone, at(11))]).await;
    assert_eq!(
        report.deactivated, 0,
        "a gone report for the old address deactivated the re-registered endpoint"
    );
    let listed = endpoints(store, &app, &alice).await;
    assert!(listed[0].active);
    assert_eq!(listed[0].address, new_address);
    insert_new(store, fixtures::notification(&app, &alice, at(20)), 1).await;
    let next = lease_all(store, at(20)).await;
    assert_eq!(next.len(), 1);
    assert_eq!(next[0].endpoint.address, new_address);

    let gone = Outcome::EndpointGone {
        reason: "Unregistered".to_owned(),
        address_key: fixtures::apns_address().key(),
    };
    let report = record(store, vec![outcome(&next[0], gone, at(21))]).await;
    assert_eq!(
        (report.applied, report.deactivated),
        (1, 0),
        "a gone report naming another address deactivated the endpoint"
    );
    assert!(endpoints(store, &app, &alice).await[0].active);
    assert!(
        lease_all(store, at(100)).await.is_empty(),
        "the delivery reported gone was not finished"
    );
}
