//! Shared helpers: channels wired to the APNs fake of `tidings-testkit`.

#![allow(dead_code, unreachable_pub)]

use std::time::Duration;

use tidings::{
    ApnsEnvironment, AppId, Endpoint, Push, PushAddress, PushContent, Timestamp, UserId,
};
use tidings_apns::{ApnsChannel, ApnsChannelBuilder};
use tidings_testkit::apns::{ApnsMock, ApnsSigningKey};
use tidings_testkit::channel::{push_to, visible};
use tidings_testkit::store::fixtures::endpoint_with;

/// The bundle id the tests push to.
pub const TOPIC: &str = "com.example.chat";

/// A fresh `.p8` key of team `TEAM123456`.
pub fn key(key_id: &str) -> ApnsSigningKey {
    ApnsSigningKey::generate("TEAM123456", key_id)
}

/// A token-auth fake that knows `key` and allows [`TOPIC`].
pub async fn token_mock(key: &ApnsSigningKey) -> ApnsMock {
    ApnsMock::builder().topic(TOPIC).key(key).start().await
}

/// A builder pointed at `mock` (trusting its CA), with `app` sending to [`TOPIC`] with `key`.
pub fn builder(mock: &ApnsMock, app: &str, key: &ApnsSigningKey) -> ApnsChannelBuilder {
    ApnsChannel::builder()
        .token_auth(app, TOPIC, key.team_id(), key.key_id(), key.p8_pem())
        .base_url(mock.base_url())
        .trusted_ca_pem(mock.ca_pem())
        .request_timeout(Duration::from_secs(10))
}

/// An active APNs endpoint of `app` for user `alice` with device token `token` (hex),
/// registered now.
pub fn endpoint_in(app: &str, token: &str, environment: ApnsEnvironment) -> Endpoint {
    let address = PushAddress::Apns {
        token: token.to_owned(),
        environment,
    };
    endpoint_with(
        &AppId::new(app),
        &UserId::new("alice"),
        address,
        Timestamp::now_utc(),
    )
}

/// A production endpoint.
pub fn endpoint(app: &str, token: &str) -> Endpoint {
    endpoint_in(app, token, ApnsEnvironment::Production)
}

/// A first-attempt notification push with `content` to `endpoint`, sent now and expiring in an
/// hour, with collapse id `c1`.
pub fn push(endpoint: &Endpoint, content: PushContent) -> Push {
    let mut push = push_to(endpoint, content);
    push.collapse_id = "c1".to_owned();
    push
}

/// Visible inline content.
pub fn visual(title: &str, body: &str) -> PushContent {
    visible(title, body)
}
