//! Cases: registering, moving, refreshing, deleting and deactivating endpoints.

use std::collections::BTreeSet;
use std::time::Duration;

use tidings::{EndpointId, Platform, Store};

use super::fixtures::{self, at, T0};
use super::support::{
    accept_all, assert_not_found, deliver_all, endpoint_ids, endpoints, insert_new, lease_all,
    long_ago, ok, register,
};

/// A user's endpoints are listed oldest first, inactive ones included; other users' and other
/// apps' endpoints are not.
pub async fn endpoints_are_listed_oldest_first_active_or_not(store: &dyn Store) {
    let (app, alice, bob) = (fixtures::app(), fixtures::user(), fixtures::user());
    let newer = register(
        store,
        fixtures::endpoint_with(&app, &alice, fixtures::apns_address(), at(20)),
    )
    .await;
    let oldest = register(
        store,
        fixtures::endpoint_with(&app, &alice, fixtures::fcm_address(), long_ago()),
    )
    .await;
    let older = register(
        store,
        fixtures::endpoint_with(&app, &alice, fixtures::wns_address(), at(10)),
    )
    .await;
    register(store, fixtures::endpoint(&app, &bob, Platform::Fcm)).await;
    register(
        store,
        fixtures::endpoint(&fixtures::app(), &alice, Platform::Fcm),
    )
    .await;
    super::support::deactivate_stale(store, 1).await;

    let listed = endpoints(store, &app, &alice).await;
    let ids: Vec<EndpointId> = listed.iter().map(|e| e.id).collect();
    assert_eq!(
        ids,
        vec![oldest.id, older.id, newer.id],
        "endpoints must be listed oldest first"
    );
    assert!(!listed[0].active, "the stale endpoint is listed, inactive");
    assert!(listed[1].active && listed[2].active);
    assert_eq!(listed[2].address, newer.address);
}

/// A push address registered again under another user of the app moves there: the same
/// endpoint now belongs to the new user, the old user's list no longer has it, the old user's
/// pending deliveries to it are dropped and the old user's new notifications do not reach it.
pub async fn reregistered_address_moves_to_new_user(store: &dyn Store) {
    let (app, alice, bob) = (fixtures::app(), fixtures::user(), fixtures::user());
    let address = fixtures::apns_address();
    let original = register(
        store,
        fixtures::endpoint_with(&app, &alice, address.clone(), T0),
    )
    .await;
    insert_new(store, fixtures::notification(&app, &alice, at(1)), 1).await;

    let moved = register(
        store,
        fixtures::endpoint_with(&app, &bob, address.clone(), at(60)),
    )
    .await;
    assert_eq!(
        moved.id, original.id,
        "the endpoint with that address is updated, not duplicated"
    );
    assert_eq!(moved.user, bob);
    assert!(moved.active);
    assert_eq!(moved.last_seen_at, at(60));
    assert!(
        endpoints(store, &app, &alice).await.is_empty(),
        "the old user still lists the moved device"
    );
    let bobs: Vec<EndpointId> = endpoints(store, &app, &bob)
        .await
        .iter()
        .map(|e| e.id)
        .collect();
    assert_eq!(bobs, vec![original.id]);

    assert!(
        lease_all(store, at(61)).await.is_empty(),
        "the old user's pending delivery still reaches the moved device"
    );
    insert_new(store, fixtures::notification(&app, &alice, at(70)), 0).await;
    insert_new(store, fixtures::notification(&app, &bob, at(80)), 1).await;
    let leased = lease_all(store, at(81)).await;
    assert_eq!(leased.len(), 1);
    assert_eq!(leased[0].delivery.user, bob);
    assert_eq!(leased[0].endpoint.id, original.id);
}

/// The same user registering the same address again refreshes the one endpoint (same id and
/// creation time; `last_seen_at`, installation id and address expiry taken from the new
/// registration) and keeps its pending deliveries.
pub async fn reregistered_address_of_same_user_refreshes_the_endpoint(store: &dyn Store) {
    let (app, alice) = (fixtures::app(), fixtures::user());
    let address = fixtures::fcm_address();
    let first = register(
        store,
        fixtures::endpoint_with(&app, &alice, address.clone(), T0),
    )
    .await;
    let n = insert_new(store, fixtures::notification(&app, &alice, at(1)), 1).await;

    let mut refresh = fixtures::endpoint_with(&app, &alice, address.clone(), at(100));
    refresh.installation_id = Some("install-7".to_owned());
    refresh.address_expires_at = Some(at(30 * 86_400));
    let again = register(store, refresh).await;
    assert_eq!(
        again.id, first.id,
        "re-registering created a second endpoint"
    );
    assert_eq!(again.last_seen_at, at(100));
    assert_eq!(
        again.created_at, first.created_at,
        "a refresh is not a new registration"
    );
    assert_eq!(
        again.installation_id.as_deref(),
        Some("install-7"),
        "a refresh takes the new installation id"
    );
    assert_eq!(
        again.address_expires_at,
        Some(at(30 * 86_400)),
        "a refresh takes the new address expiry"
    );
    assert!(again.active);
    assert_eq!(
        endpoints(store, &app, &alice).await,
        vec![again.clone()],
        "endpoints() disagrees with what upsert_endpoint returned"
    );
    let leased = lease_all(store, at(101)).await;
    assert_eq!(
        leased.len(),
        1,
        "a refresh by the same user dropped the pending delivery"
    );
    assert_eq!(leased[0].delivery.notification_id, Some(n.id));
}

/// Registering a new address with an installation id the user already registered replaces the
/// address of that endpoint (no second endpoint) and drops the deliveries pending to the old
/// address; another user's installation with the same id is a different endpoint.
pub async fn installation_reregistration_replaces_the_address(store: &dyn Store) {
    let (app, alice, bob) = (fixtures::app(), fixtures::user(), fixtures::user());
    let mut e = fixtures::endpoint_with(&app, &alice, fixtures::apns_address(), T0);
    e.installation_id = Some("install-1".to_owned());
    let first = register(store, e).await;
    insert_new(store, fixtures::notification(&app, &alice, at(1)), 1).await;

    let new_address = fixtures::apns_address();
    let mut e = fixtures::endpoint_with(&app, &alice, new_address.clone(), at(50));
    e.installation_id = Some("install-1".to_owned());
    let replaced = register(store, e).await;
    assert_eq!(
        replaced.id, first.id,
        "the installation's endpoint was not reused"
    );
    assert_eq!(replaced.address, new_address);
    let listed = endpoints(store, &app, &alice).await;
    assert_eq!(listed.len(), 1, "the installation has two endpoints");
    assert_eq!(listed[0].address, new_address);
    assert!(
        lease_all(store, at(51)).await.is_empty(),
        "a delivery to the replaced address is still pending"
    );

    insert_new(store, fixtures::notification(&app, &alice, at(60)), 1).await;
    let leased = lease_all(store, at(61)).await;
    assert_eq!(leased.len(), 1);
    assert_eq!(
        leased[0].endpoint.address, new_address,
        "the push goes to the new address"
    );

    let mut e = fixtures::endpoint_with(&app, &bob, fixtures::fcm_address(), at(70));
    e.installation_id = Some("install-1".to_owned());
    let bobs = register(store, e).await;
    assert_ne!(
        bobs.id, first.id,
        "another user's installation took over alice's endpoint"
    );
    assert_eq!(endpoints(store, &app, &alice).await[0].address, new_address);
}

/// `delete_endpoint` removes the endpoint and its pending deliveries; the user's other
/// endpoints keep theirs; deleting it again is "not found".
pub async fn deleted_endpoint_gets_nothing_more(store: &dyn Store) {
    let (app, alice) = (fixtures::app(), fixtures::user());
    let phone = register(store, fixtures::endpoint(&app, &alice, Platform::Apns)).await;
    let laptop = register(store, fixtures::endpoint(&app, &alice, Platform::WebPush)).await;
    insert_new(store, fixtures::notification(&app, &alice, at(1)), 2).await;

    ok(
        store.delete_endpoint(&app, &alice, phone.id).await,
        "delete_endpoint",
    );
    let listed: Vec<EndpointId> = endpoints(store, &app, &alice)
        .await
        .iter()
        .map(|e| e.id)
        .collect();
    assert_eq!(listed, vec![laptop.id]);
    let leased = lease_all(store, at(2)).await;
    assert_eq!(
        endpoint_ids(&leased),
        BTreeSet::from([laptop.id]),
        "the deleted endpoint's delivery is still pending"
    );
    accept_all(store, &leased, at(2)).await;
    insert_new(store, fixtures::notification(&app, &alice, at(3)), 1).await;
    assert_not_found(
        store.delete_endpoint(&app, &alice, phone.id).await,
        "deleting a deleted endpoint",
    );
}

/// Deleting an endpoint through another user or another app is "not found" and leaves it in
/// place.
pub async fn deleting_another_users_endpoint_is_not_found(store: &dyn Store) {
    let (app, alice, bob) = (fixtures::app(), fixtures::user(), fixtures::user());
    let phone = register(store, fixtures::endpoint(&app, &alice, Platform::Fcm)).await;
    register(store, fixtures::endpoint(&app, &bob, Platform::Fcm)).await;
    assert_not_found(
        store.delete_endpoint(&app, &bob, phone.id).await,
        "deleting alice's endpoint as bob",
    );
    assert_not_found(
        store
            .delete_endpoint(&fixtures::app(), &alice, phone.id)
            .await,
        "deleting alice's endpoint in another app",
    );
    assert_not_found(
        store
            .delete_endpoint(&app, &alice, EndpointId::new_random())
            .await,
        "deleting an endpoint that never existed",
    );
    let listed: Vec<EndpointId> = endpoints(store, &app, &alice)
        .await
        .iter()
        .map(|e| e.id)
        .collect();
    assert_eq!(listed, vec![phone.id]);
    insert_new(store, fixtures::notification(&app, &alice, at(1)), 1).await;
}

/// `deactivate_stale_endpoints` deactivates active endpoints last seen before the cut-off or
/// whose address expired, counts them, drops their pending deliveries (they stay dropped when
/// the device registers again) and leaves fresh endpoints alone.
pub async fn stale_endpoints_are_deactivated_and_lose_pending_deliveries(store: &dyn Store) {
    let (app, alice) = (fixtures::app(), fixtures::user());
    let days_ago = |d: u64| T0.minus(Duration::from_secs(d * 86_400));
    let mut old = fixtures::endpoint_with(&app, &alice, fixtures::fcm_address(), days_ago(60));
    old.created_at = days_ago(60);
    let old = register(store, old).await;
    let mut expiring = fixtures::endpoint_with(&app, &alice, fixtures::wns_address(), T0);
    expiring.address_expires_at = Some(at(100));
    register(store, expiring).await;
    let fresh = register(store, fixtures::endpoint(&app, &alice, Platform::Apns)).await;
    insert_new(store, fixtures::notification(&app, &alice, at(1)), 3).await;

    let n = ok(
        store
            .deactivate_stale_endpoints(days_ago(30), at(200))
            .await,
        "deactivate_stale_endpoints",
    );
    assert_eq!(
        n, 2,
        "one endpoint not seen for 60 days and one with an expired address are stale"
    );
    for e in endpoints(store, &app, &alice).await {
        assert_eq!(
            e.active,
            e.id == fresh.id,
            "endpoint {} has the wrong active flag",
            e.id
        );
    }
    let again = ok(
        store
            .deactivate_stale_endpoints(days_ago(30), at(200))
            .await,
        "deactivate_stale_endpoints",
    );
    assert_eq!(again, 0, "already inactive endpoints were counted again");

    let leased = deliver_all(store, at(201)).await;
    assert_eq!(endpoint_ids(&leased), BTreeSet::from([fresh.id]));
    let back = register(
        store,
        fixtures::endpoint_with(&app, &alice, old.address.clone(), at(300)),
    )
    .await;
    assert_eq!(back.id, old.id);
    assert!(back.active, "registering again reactivates the endpoint");
    assert!(
        lease_all(store, at(301)).await.is_empty(),
        "a stale endpoint's delivery came back with the endpoint"
    );
}
