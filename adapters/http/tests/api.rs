//! Endpoint registration and history, through the API.

// Helpers outside #[test] functions fail a test by panicking, as assertions do.
#![allow(clippy::unwrap_used)]

mod common;

use common::{delete, get, patch, put, Harness, APP};
use serde_json::json;
use tidings::{NewNotification, Platform};

const TOKEN_X: &str = "0a0b0c0d0e0f0a0b0c0d0e0f0a0b0c0d0e0f0a0b0c0d0e0f0a0b0c0d0e0f0a0b";
const TOKEN_Y: &str = "1a1b1c1d1e1f1a1b1c1d1e1f1a1b1c1d1e1f1a1b1c1d1e1f1a1b1c1d1e1f1a1b";

#[tokio::test]
async fn registering_is_idempotent_and_answers_the_endpoint_without_its_address() {
    let h = Harness::new();
    let first = h.register_apns("alice", "phone", TOKEN_X).await;
    let again = h.register_apns("alice", "phone", TOKEN_X).await;
    assert_eq!(first["id"], again["id"]);
    assert_eq!(first["installation_id"], "phone");
    assert_eq!(first["platform"], "apns");
    assert_eq!(first["active"], true);
    assert!(
        !first.to_string().contains(TOKEN_X),
        "the push address is not echoed"
    );
    let endpoints = h
        .tidings
        .endpoints(&APP.into(), &"alice".into())
        .await
        .unwrap();
    assert_eq!(endpoints.len(), 1);
}

#[tokio::test]
async fn a_new_address_for_the_same_installation_replaces_the_old_one() {
    let h = Harness::new();
    h.register_apns("alice", "phone", TOKEN_X).await;
    h.register_apns("alice", "phone", TOKEN_Y).await;
    let endpoints = h
        .tidings
        .endpoints(&APP.into(), &"alice".into())
        .await
        .unwrap();
    assert_eq!(endpoints.len(), 1);
    assert_eq!(
        endpoints[0].address.key(),
        format!("apns:production:{TOKEN_Y}")
    );
}

#[tokio::test]
async fn an_address_another_installation_had_moves_and_the_stale_endpoint_goes() {
    let h = Harness::new();
    h.register_apns("alice", "old-install", TOKEN_X).await;
    h.register_apns("alice", "new-install", TOKEN_Y).await;
    // The platform handed the token of "old-install" to "new-install" (app reinstalled).
    h.register_apns("alice", "new-install", TOKEN_X).await;
    let endpoints = h
        .tidings
        .endpoints(&APP.into(), &"alice".into())
        .await
        .unwrap();
    assert_eq!(endpoints.len(), 1, "{endpoints:?}");
    assert_eq!(endpoints[0].installation_id.as_deref(), Some("new-install"));
    assert_eq!(
        endpoints[0].address.key(),
        format!("apns:production:{TOKEN_X}")
    );
}

#[tokio::test]
async fn reregistering_an_address_as_another_user_moves_it_to_that_user() {
    let h = Harness::new();
    h.register_apns("alice", "shared-ipad", TOKEN_X).await;
    h.register_apns("bob", "shared-ipad", TOKEN_X).await;
    assert!(h
        .tidings
        .endpoints(&APP.into(), &"alice".into())
        .await
        .unwrap()
        .is_empty());
    assert_eq!(
        h.tidings
            .endpoints(&APP.into(), &"bob".into())
            .await
            .unwrap()
            .len(),
        1
    );

    h.send(APP, "alice", "for-alice", "private to alice").await;
    h.tidings.dispatcher().run_until_idle().await.unwrap();
    assert!(h.apns.is_empty(), "alice can no longer reach bob's device");
}

#[tokio::test]
async fn invalid_addresses_are_refused_naming_the_field() {
    let h = Harness::new();
    let answer = h
        .call(
            put("/endpoints/phone")
                .token("alice")
                .json(&json!({"address": {"platform": "apns", "token": "not hex!", "environment": "production"}})),
        )
        .await;
    assert_eq!(answer.problem(400)["field"], "address.token");

    let answer = h
        .call(put("/endpoints/browser").token("alice").json(&json!({"address": {
            "platform": "webpush",
            "endpoint": "https://169.254.169.254/latest/meta-data",
            "p256dh": "BCVxsr7N_eNgVRqvHtD0zTZsEc6-VV-JvLexhqUzORcxaOzi6-AYWXvTBHm4bjyPjs7Vd8pZGH6SRpkNtoIAiw4",
            "auth": "BTBZMqHH6r4Tts7J_aSIgg"
        }})))
        .await;
    assert_eq!(answer.problem(400)["field"], "address.endpoint");

    let answer = h
        .call(
            put("/endpoints/phone")
                .token("alice")
                .json(&json!({"address": {"platform": "pager", "token": "x"}})),
        )
        .await;
    assert_eq!(answer.problem(400)["field"], "address.platform");

    let long = "x".repeat(300);
    let answer = h
        .call(
            put(format!("/endpoints/{long}"))
                .token("alice")
                .json(&common::apns_address(TOKEN_X)),
        )
        .await;
    assert_eq!(answer.problem(400)["field"], "installation_id");
}

#[tokio::test]
async fn deleting_an_installation_stops_its_pushes() {
    let h = Harness::new();
    h.register_apns("alice", "phone", TOKEN_X).await;
    let gone = h.call(delete("/endpoints/phone").token("alice")).await;
    assert_eq!(gone.status, 204);
    let again = h.call(delete("/endpoints/phone").token("alice")).await;
    again.problem(404);

    h.send(APP, "alice", "after-delete", "hello").await;
    h.tidings.dispatcher().run_until_idle().await.unwrap();
    assert!(h.apns.is_empty());
}

#[tokio::test]
async fn an_unregistered_installation_id_is_refused_on_fetch_and_update() {
    let h = Harness::new();
    h.register_apns("bob", "bobs-phone", TOKEN_X).await;
    let n = h.send(APP, "alice", "k", "t").await;
    for installation in ["never-registered", "bobs-phone"] {
        let fetch = h
            .call(
                get(format!("/notifications/{}", n.id))
                    .token("alice")
                    .installation(installation),
            )
            .await;
        assert_eq!(fetch.problem(400)["field"], "Tidings-Installation-Id");
        let update = h
            .call(
                patch(format!("/notifications/{}", n.id))
                    .token("alice")
                    .installation(installation)
                    .json(&json!({"read": "read"})),
            )
            .await;
        assert_eq!(update.problem(400)["field"], "Tidings-Installation-Id");
    }
}

#[tokio::test]
async fn history_pages_through_everything_newest_first() {
    let h = Harness::new();
    for i in 0..120 {
        h.send(APP, "alice", &format!("n{i}"), &format!("title {i}"))
            .await;
        h.clock.advance(std::time::Duration::from_millis(1));
    }
    h.send(APP, "bob", "b", "bob's").await;

    let mut seen = Vec::new();
    let mut uri = "/notifications?limit=50".to_owned();
    let mut sizes = Vec::new();
    loop {
        let page = h.call(get(&uri).token("alice")).await;
        assert_eq!(page.status, 200, "{:?}", page.body);
        let items = page.body["items"].as_array().unwrap();
        sizes.push(items.len());
        seen.extend(
            items
                .iter()
                .map(|n| n["app_notification_id"].as_str().unwrap().to_owned()),
        );
        match page.body["next_cursor"].as_str() {
            Some(cursor) => uri = format!("/notifications?limit=50&cursor={cursor}"),
            None => break,
        }
        assert!(sizes.len() < 10);
    }
    assert_eq!(seen.len(), 120);
    assert_eq!(seen.first().map(String::as_str), Some("n119"));
    assert_eq!(seen.last().map(String::as_str), Some("n0"));
    assert_eq!(&sizes[..2], [50, 50]);
}

#[tokio::test]
async fn history_filters_by_read_state_action_group_and_time() {
    let h = Harness::new();
    let first = h
        .tidings
        .send(
            NewNotification::new(APP, "alice", "a")
                .title("a")
                .group("orders"),
        )
        .await
        .unwrap();
    h.clock.advance(std::time::Duration::from_secs(60));
    let later = h.clock_now();
    let second = h
        .tidings
        .send(
            NewNotification::new(APP, "alice", "b")
                .title("b")
                .targets([Platform::Apns]),
        )
        .await
        .unwrap();
    h.call(
        patch(format!("/notifications/{}", first.id))
            .token("alice")
            .json(&json!({"read": "read", "action": "dismissed"})),
    )
    .await;

    let ids = |answer: &common::Answer| -> Vec<String> {
        answer.body["items"]
            .as_array()
            .unwrap()
            .iter()
            .map(|n| n["id"].as_str().unwrap().to_owned())
            .collect()
    };
    let unread = h
        .call(get("/notifications?read=unread").token("alice"))
        .await;
    assert_eq!(ids(&unread), [second.id.to_string()]);
    let dismissed = h
        .call(get("/notifications?action=dismissed").token("alice"))
        .await;
    assert_eq!(ids(&dismissed), [first.id.to_string()]);
    let orders = h
        .call(get("/notifications?group=orders").token("alice"))
        .await;
    assert_eq!(ids(&orders), [first.id.to_string()]);
    let since = h
        .call(
            get(format!(
                "/notifications?since={}",
                later.to_rfc3339().replace('+', "%2B")
            ))
            .token("alice"),
        )
        .await;
    assert_eq!(ids(&since), [second.id.to_string()]);

    h.call(
        patch(format!("/notifications/{}", second.id))
            .token("alice")
            .json(&json!({"status": "deleted"})),
    )
    .await;
    let visible = h.call(get("/notifications").token("alice")).await;
    assert_eq!(ids(&visible), [first.id.to_string()]);
    let all = h
        .call(get("/notifications?include_deleted=true").token("alice"))
        .await;
    assert_eq!(all.body["items"].as_array().unwrap().len(), 2);
}

#[tokio::test]
async fn router_nests_under_any_prefix() {
    let h = Harness::new();
    let app = axum::Router::new().nest("/api/tidings", h.router.clone());
    let answer = get("/api/tidings/notifications")
        .token("alice")
        .send(&app)
        .await;
    assert_eq!(answer.status, 200);
    let outside = get("/notifications").token("alice").send(&app).await;
    assert_eq!(outside.status, 404);
}

trait ClockNow {
    fn clock_now(&self) -> tidings::Timestamp;
}

impl ClockNow for Harness {
    fn clock_now(&self) -> tidings::Timestamp {
        use tidings::Clock;
        self.clock.now()
    }
}
