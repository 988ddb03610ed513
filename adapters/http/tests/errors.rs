//! Every failure is an `application/problem+json` answer with a status a client can act on.

// Helpers outside #[test] functions fail a test by panicking, as assertions do.
#![allow(clippy::unwrap_used)]

mod common;

use common::{delete, get, patch, post, put, Call, Harness, APP};
use serde_json::json;
use tidings::{
    App, IdentityError, IdentityErrorKind, MockIdentity, MockStore, Principal, StoreError,
    StoreErrorKind, Tidings,
};
use tidings_http::{router, HttpConfig};
use tidings_memory::StaticIdentity;

fn with_store(store: MockStore) -> axum::Router {
    let tidings = Tidings::builder()
        .store(store)
        .identity(StaticIdentity::new().with_user("alice", APP, "alice"))
        .app(App::new(APP))
        .build()
        .unwrap();
    router(tidings, HttpConfig::default())
}

#[tokio::test]
async fn a_store_outage_is_503_with_retry_after_and_no_internals() {
    let mut store = MockStore::new();
    store.expect_history().returning(|_| {
        Err(StoreError::unavailable(
            "connection to 10.0.0.5:5432 refused (password=hunter2)",
        ))
    });
    let answer = get("/notifications")
        .token("alice")
        .send(&with_store(store))
        .await;
    answer.problem(503);
    assert_eq!(answer.header("retry-after"), Some("5"));
    let text = answer.body.to_string();
    assert!(
        !text.contains("10.0.0.5") && !text.contains("hunter2"),
        "{text}"
    );
}

#[tokio::test]
async fn a_store_that_knows_when_it_is_back_sets_retry_after() {
    let mut store = MockStore::new();
    store.expect_changes().returning(|_| {
        Err(StoreError::unavailable("failover")
            .with_retry(tidings::Retry::After(std::time::Duration::from_secs(30))))
    });
    let answer = get("/changes")
        .token("alice")
        .send(&with_store(store))
        .await;
    answer.problem(503);
    assert_eq!(answer.header("retry-after"), Some("30"));
}

#[tokio::test]
async fn a_broken_store_is_a_bare_500() {
    let mut store = MockStore::new();
    store.expect_changes().returning(|_| {
        Err(StoreError::new(
            StoreErrorKind::Corrupt,
            "column seq_no of table tidings_x missing",
        ))
    });
    let answer = get("/changes")
        .token("alice")
        .send(&with_store(store))
        .await;
    answer.problem(500);
    assert!(
        !answer.body.to_string().contains("seq_no"),
        "{}",
        answer.body
    );
}

#[tokio::test]
async fn a_panic_in_a_handler_is_a_500_problem_not_a_dropped_connection() {
    let mut store = MockStore::new();
    store.expect_history().returning(|_| panic!("store bug"));
    let answer = get("/notifications")
        .token("alice")
        .send(&with_store(store))
        .await;
    answer.problem(500);
    assert!(!answer.body.to_string().contains("store bug"));
}

#[tokio::test]
async fn an_identity_provider_outage_is_503() {
    let mut identity = MockIdentity::new();
    identity.expect_authenticate().returning(|_| {
        Err(IdentityError::new(
            IdentityErrorKind::Unavailable,
            "idp down",
        ))
    });
    let tidings = Tidings::builder()
        .store(MockStore::new())
        .identity(identity)
        .app(App::new(APP))
        .build()
        .unwrap();
    let r = router(
        tidings,
        HttpConfig::builder()
            .retry_after(std::time::Duration::from_secs(9))
            .build()
            .unwrap(),
    );
    let answer = get("/changes").token("anything").send(&r).await;
    answer.problem(503);
    assert_eq!(answer.header("retry-after"), Some("9"));
}

#[tokio::test]
async fn a_principal_reaches_only_its_app_even_through_a_custom_identity() {
    let mut identity = MockIdentity::new();
    identity
        .expect_authenticate()
        .returning(|_| Ok(Principal::new("news", "alice")));
    let mut store = MockStore::new();
    store.expect_history().never();
    let tidings = Tidings::builder()
        .store(store)
        .identity(identity)
        .app(App::new(APP))
        .build()
        .unwrap();
    let answer = get("/notifications")
        .token("t")
        .send(&router(tidings, HttpConfig::default()))
        .await;
    answer.problem(401);
}

#[tokio::test]
async fn unknown_fields_in_state_updates_are_400_naming_them() {
    let h = Harness::new();
    let n = h.send(APP, "alice", "k", "t").await;
    let one = h
        .call(
            patch(format!("/notifications/{}", n.id))
                .token("alice")
                .json(&json!({"read": "read", "colour": "red"})),
        )
        .await;
    assert_eq!(one.problem(400)["field"], "colour");
    let bulk = h
        .call(
            post("/notifications/state")
                .token("alice")
                .json(&json!({"ids": [n.id], "patch": {"red": "read"}})),
        )
        .await;
    assert_eq!(bulk.problem(400)["field"], "patch.red");
    let extra = h
        .call(
            post("/notifications/state")
                .token("alice")
                .json(&json!({"ids": [n.id], "patch": {"read": "read"}, "force": true})),
        )
        .await;
    assert_eq!(extra.problem(400)["field"], "force");
    let stored = h
        .tidings
        .notification(&APP.into(), &"alice".into(), n.id)
        .await
        .unwrap();
    assert_eq!(
        stored.state.read,
        tidings::ReadState::Unread,
        "nothing was applied"
    );
}

#[tokio::test]
async fn bad_bodies_are_400_naming_the_field() {
    let h = Harness::new();
    let n = h.send(APP, "alice", "k", "t").await;
    let uri = format!("/notifications/{}", n.id);
    let cases = [
        (json!({}), "patch"),
        (json!({"read": "maybe"}), "read"),
        (json!({"action": 3}), "action"),
        (json!([1, 2]), "body"),
    ];
    for (body, field) in cases {
        let answer = h.call(patch(&uri).token("alice").json(&body)).await;
        assert_eq!(answer.problem(400)["field"], field, "{body}");
    }
    let broken = h
        .call(
            patch(&uri)
                .token("alice")
                .header("content-type", "application/json")
                .raw_body(b"{\"read\": ".to_vec()),
        )
        .await;
    assert_eq!(broken.problem(400)["field"], "body");
    let bulk_cases = [
        (json!({"ids": [], "patch": {"read": "read"}}), "ids"),
        (
            json!({"ids": ["nope"], "patch": {"read": "read"}}),
            "ids[0]",
        ),
        (json!({"ids": [n.id], "patch": {}}), "patch"),
        (json!({"patch": {"read": "read"}}), "ids"),
    ];
    for (body, field) in bulk_cases {
        let answer = h
            .call(post("/notifications/state").token("alice").json(&body))
            .await;
        assert_eq!(answer.problem(400)["field"], field, "{body}");
    }
    let too_many: Vec<String> = (0..501)
        .map(|_| tidings::NotificationId::new_random().to_string())
        .collect();
    let answer = h
        .call(
            post("/notifications/state")
                .token("alice")
                .json(&json!({"ids": too_many, "patch": {"read": "read"}})),
        )
        .await;
    assert_eq!(answer.problem(400)["field"], "ids");
}

#[tokio::test]
async fn bad_query_and_path_parameters_are_400_naming_them() {
    let h = Harness::new();
    let cases = [
        ("/notifications?limit=0", "limit"),
        ("/notifications?limit=501", "limit"),
        ("/notifications?limit=ten", "limit"),
        ("/notifications?read=maybe", "read"),
        ("/notifications?action=liked", "action"),
        ("/notifications?cursor=garbage", "cursor"),
        ("/notifications?since=yesterday", "since"),
        ("/notifications?include_deleted=yes", "include_deleted"),
        ("/notifications?limt=5", "limt"),
        ("/notifications?limit=5&limit=6", "limit"),
        ("/changes?since=-1", "since"),
        ("/changes?limit=0", "limit"),
        ("/changes?cursor=x", "cursor"),
        ("/notifications/not-a-uuid", "id"),
    ];
    for (uri, field) in cases {
        let answer = h.call(get(uri).token("alice")).await;
        assert_eq!(answer.problem(400)["field"], field, "{uri}");
    }
}

#[tokio::test]
async fn bodies_over_the_limit_are_413() {
    let h = Harness::with_identity(
        StaticIdentity::new().with_user("alice", APP, "alice"),
        HttpConfig::builder().body_limit(1024).build().unwrap(),
    );
    let big = json!({"address": {"platform": "fcm", "token": "x".repeat(2000)}});
    let answer = h
        .call(put("/endpoints/phone").token("alice").json(&big))
        .await;
    answer.problem(413);
    let ids: Vec<String> = (0..100)
        .map(|_| tidings::NotificationId::new_random().to_string())
        .collect();
    let answer = h
        .call(
            post("/notifications/state")
                .token("alice")
                .json(&json!({"ids": ids, "patch": {"read": "read"}})),
        )
        .await;
    answer.problem(413);
}

#[tokio::test]
async fn bodies_that_are_not_json_are_415() {
    let h = Harness::new();
    let n = h.send(APP, "alice", "k", "t").await;
    let answer = h
        .call(
            patch(format!("/notifications/{}", n.id))
                .token("alice")
                .header("content-type", "text/plain")
                .raw_body(b"read".to_vec()),
        )
        .await;
    answer.problem(415);
    let merge_patch = h
        .call(
            patch(format!("/notifications/{}", n.id))
                .token("alice")
                .header("content-type", "application/merge-patch+json")
                .raw_body(br#"{"read": "read"}"#.to_vec()),
        )
        .await;
    assert_eq!(
        merge_patch.status, 200,
        "JSON media types with a +json suffix are JSON"
    );
}

#[tokio::test]
async fn unknown_paths_and_methods_are_problems_too() {
    let h = Harness::new();
    let answer = h.call(get("/no/such/thing").token("alice")).await;
    answer.problem(404);
    let answer = h.call(delete("/notifications").token("alice")).await;
    answer.problem(405);
    assert_eq!(answer.header("allow"), Some("GET,HEAD"));
    let answer = h
        .call(Call::new(axum::http::Method::GET, "/notifications/state").token("alice"))
        .await;
    answer.problem(405);
}

#[tokio::test]
async fn authentication_comes_before_input_validation() {
    let h = Harness::new();
    let answer = h
        .call(
            patch("/notifications/not-a-uuid")
                .header("content-type", "application/json")
                .raw_body(b"{".to_vec()),
        )
        .await;
    answer.problem(401);
}
