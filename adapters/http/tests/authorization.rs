//! Who reaches what: every operation against every kind of caller, with JWT credentials.

// Helpers outside #[test] functions fail a test by panicking, as assertions do.
#![allow(clippy::unwrap_used)]

mod common;

use common::{delete, get, patch, post, put, Answer, Call, Harness, APP};
use jsonwebtoken::{encode, EncodingKey, Header};
use serde_json::{json, Value};
use tidings::{Clock, ManualClock, NotificationId, ReadState};
use tidings_http::{HttpConfig, JwtIdentity, JwtKey};

const SECRET: &[u8] = b"a-test-secret-of-at-least-32-bytes!!";
const WRONG_SECRET: &[u8] = b"another-secret-of-at-least-32-bytes!";
const ALICE_TOKEN: &str = "aa11bb22cc33dd44ee55ff66aa11bb22cc33dd44ee55ff66aa11bb22cc33dd44";

/// The callers of the matrix.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Caller {
    Owner,
    OtherUserSameApp,
    SameUserIdOtherApp,
    NoCredential,
    Expired,
    BadSignature,
}

struct World {
    h: Harness,
    now: i64,
    alice_notification: NotificationId,
}

impl World {
    async fn new() -> Self {
        let clock = ManualClock::starting_2026();
        let identity = JwtIdentity::builder()
            .key(JwtKey::hs256(SECRET).unwrap())
            .issuer("https://id.example.test")
            .audience("tidings")
            .clock(clock.clone())
            .build()
            .unwrap();
        let h = Harness::build(identity, HttpConfig::default(), clock.clone());
        let now = clock.now().as_secs();
        let world = World {
            alice_notification: h
                .send(APP, "alice", "secret-plans", "alice's secret")
                .await
                .id,
            h,
            now,
        };
        let answer = world
            .call(
                Caller::Owner,
                put("/endpoints/alice-phone").json(&common::apns_address(ALICE_TOKEN)),
            )
            .await;
        assert_eq!(answer.status, 200, "{:?}", answer.body);
        world
    }

    fn token(&self, caller: Caller) -> Option<String> {
        let claims = |user: &str, app: &str, exp: i64| json!({"sub": user, "app": app, "iss": "https://id.example.test", "aud": "tidings", "exp": exp, "nbf": self.now - 10});
        let sign = |claims: Value, secret: &[u8]| {
            encode(
                &Header::default(),
                &claims,
                &EncodingKey::from_secret(secret).unwrap(),
            )
            .unwrap()
        };
        let hour = self.now + 3600;
        match caller {
            Caller::Owner => Some(sign(claims("alice", APP, hour), SECRET)),
            Caller::OtherUserSameApp => Some(sign(claims("bob", APP, hour), SECRET)),
            Caller::SameUserIdOtherApp => Some(sign(claims("alice", "news", hour), SECRET)),
            Caller::NoCredential => None,
            Caller::Expired => Some(sign(claims("alice", APP, self.now - 120), SECRET)),
            Caller::BadSignature => Some(sign(claims("alice", APP, hour), WRONG_SECRET)),
        }
    }

    async fn call(&self, caller: Caller, call: Call) -> Answer {
        let call = match self.token(caller) {
            Some(token) => call.token(&token),
            None => call,
        };
        self.h.call(call).await
    }

    /// The operations, each as a fresh request.
    fn operations(&self) -> Vec<(&'static str, Call)> {
        let id = self.alice_notification;
        vec![
            ("delete endpoint", delete("/endpoints/alice-phone")),
            ("history", get("/notifications")),
            ("fetch", get(format!("/notifications/{id}"))),
            (
                "update",
                patch(format!("/notifications/{id}")).json(&json!({"read": "read"})),
            ),
            (
                "bulk update",
                post("/notifications/state").json(&json!({"ids": [id], "patch": {"read": "read"}})),
            ),
            ("changes", get("/changes")),
            // Last, so that a registration by someone else cannot precede the deletion above.
            (
                "register",
                put("/endpoints/alice-phone").json(&common::apns_address("0123456789abcdef")),
            ),
        ]
    }

    async fn alice_state(&self) -> ReadState {
        let n = self
            .h
            .tidings
            .notification(&APP.into(), &"alice".into(), self.alice_notification)
            .await
            .unwrap();
        n.state.read
    }

    async fn alice_endpoints(&self) -> usize {
        self.h
            .tidings
            .endpoints(&APP.into(), &"alice".into())
            .await
            .unwrap()
            .len()
    }
}

#[tokio::test]
async fn unauthenticated_callers_get_401_on_every_operation() {
    let world = World::new().await;
    for caller in [Caller::NoCredential, Caller::Expired, Caller::BadSignature] {
        for (name, call) in world.operations() {
            let answer = world.call(caller, call).await;
            answer.problem(401);
            let challenge = answer
                .header("www-authenticate")
                .unwrap_or_default()
                .to_owned();
            match caller {
                Caller::NoCredential => assert_eq!(challenge, "Bearer", "{name}"),
                Caller::Expired => {
                    assert!(
                        challenge.contains("error=\"invalid_token\""),
                        "{name}: {challenge}"
                    );
                    assert!(
                        answer.body["detail"].as_str().unwrap().contains("expired"),
                        "{name}"
                    );
                }
                _ => {
                    assert!(
                        challenge.contains("error=\"invalid_token\""),
                        "{name}: {challenge}"
                    );
                    assert!(
                        answer.body["detail"]
                            .as_str()
                            .unwrap()
                            .contains("signature"),
                        "{name}"
                    );
                }
            }
        }
    }
    assert_eq!(world.alice_state().await, ReadState::Unread);
    assert_eq!(world.alice_endpoints().await, 1);
}

#[tokio::test]
async fn other_principals_see_alices_data_as_missing_on_every_operation() {
    for caller in [Caller::OtherUserSameApp, Caller::SameUserIdOtherApp] {
        let world = World::new().await;
        let missing_id = NotificationId::new_random();
        for (name, call) in world.operations() {
            let answer = world.call(caller, call).await;
            match name {
                // Registering always concerns the caller's own endpoints.
                "register" => assert_eq!(answer.status, 200, "{caller:?} {name}"),
                "history" => {
                    assert_eq!(answer.status, 200);
                    assert_eq!(answer.body["items"], json!([]), "{caller:?}");
                }
                "changes" => {
                    assert_eq!(answer.status, 200);
                    assert_eq!(answer.body["changes"], json!([]), "{caller:?}");
                }
                "bulk update" => {
                    assert_eq!(answer.status, 200);
                    assert_eq!(answer.body["updated"], json!([]), "{caller:?}");
                    assert_eq!(answer.body["not_found"], json!([world.alice_notification]));
                }
                "delete endpoint" => {
                    answer.problem(404);
                    let other = world
                        .call(caller, delete("/endpoints/no-such-install"))
                        .await;
                    assert_eq!(answer.body, other.body, "{caller:?} {name}");
                }
                "fetch" => {
                    answer.problem(404);
                    let other = world
                        .call(caller, get(format!("/notifications/{missing_id}")))
                        .await;
                    assert_eq!(answer.body, other.body, "{caller:?} {name}");
                }
                "update" => {
                    answer.problem(404);
                    let other = world
                        .call(
                            caller,
                            patch(format!("/notifications/{missing_id}"))
                                .json(&json!({"read": "read"})),
                        )
                        .await;
                    assert_eq!(answer.body, other.body, "{caller:?} {name}");
                }
                other => panic!("unexpected operation {other}"),
            }
        }
        assert_eq!(world.alice_state().await, ReadState::Unread, "{caller:?}");
        assert_eq!(world.alice_endpoints().await, 1, "{caller:?}");
    }
}

#[tokio::test]
async fn the_owner_succeeds_on_every_operation() {
    let world = World::new().await;
    for (name, call) in world.operations() {
        let answer = world.call(Caller::Owner, call).await;
        assert!(answer.status.is_success(), "{name}: {:?}", answer.body);
        match name {
            "history" => assert_eq!(answer.body["items"][0]["visual"]["title"], "alice's secret"),
            "fetch" => assert_eq!(answer.body["visual"]["title"], "alice's secret"),
            "changes" => assert_eq!(answer.body["changes"].as_array().unwrap().len(), 1),
            "delete endpoint" => assert_eq!(answer.status, 204),
            _ => {}
        }
    }
    assert_eq!(world.alice_state().await, ReadState::Read);
}

#[tokio::test]
async fn a_token_for_an_app_the_server_does_not_serve_is_refused() {
    let world = World::new().await;
    let token = encode(
        &Header::default(),
        &json!({"sub": "alice", "app": "unknown-app", "iss": "https://id.example.test", "aud": "tidings", "exp": world.now + 60}),
        &EncodingKey::from_secret(SECRET).unwrap(),
    )
    .unwrap();
    let answer = world.h.call(get("/notifications").token(&token)).await;
    answer.problem(401);
}

#[tokio::test]
async fn malformed_authorization_headers_get_the_bare_challenge() {
    let world = World::new().await;
    for value in ["Basic YWxpY2U6cHc=", "Bearer", "Bearer    ", "alice"] {
        let answer = world
            .h
            .call(get("/notifications").header("authorization", value))
            .await;
        answer.problem(401);
        assert_eq!(answer.header("www-authenticate"), Some("Bearer"), "{value}");
    }
    let answer = world.h.call(get("/notifications").token("not.a.jwt")).await;
    answer.problem(401);
    assert!(answer
        .header("www-authenticate")
        .unwrap()
        .contains("invalid_token"));
}
