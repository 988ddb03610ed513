//! Shared helpers: channels wired to the FCM mock of `tidings-testkit`.

#![allow(dead_code, unreachable_pub)]

use std::time::Duration;

use tidings::{AppId, Endpoint, Push, PushAddress, Timestamp, UserId};
use tidings_fcm::{FcmAppConfig, FcmChannel, FcmChannelBuilder, ServiceAccountKey};
use tidings_testkit::channel::{push_to, visible};
use tidings_testkit::fcm::{FcmMock, ServiceAccount};
use tidings_testkit::store::fixtures::endpoint_with;

/// The service account as the channel reads it (its JSON key file).
pub fn key_of(account: &ServiceAccount) -> ServiceAccountKey {
    ServiceAccountKey::from_json(&account.to_json()).expect("the mock's key file parses")
}

/// A builder pointed at `mock`, with `app` sending as `account`.
pub fn builder(mock: &FcmMock, app: &str, account: &ServiceAccount) -> FcmChannelBuilder {
    FcmChannel::builder()
        .app(FcmAppConfig::new(app, key_of(account)).android_channel_id("messages"))
        .base_url(mock.base_url())
        .http2_prior_knowledge(true)
        .request_timeout(Duration::from_secs(10))
}

/// An active FCM endpoint of `app` for user `alice` with registration token `token`,
/// registered now.
pub fn endpoint(app: &str, token: &str) -> Endpoint {
    let address = PushAddress::Fcm {
        token: token.to_owned(),
    };
    endpoint_with(
        &AppId::new(app),
        &UserId::new("alice"),
        address,
        Timestamp::now_utc(),
    )
}

/// A first-attempt visible push to `endpoint`, sent now and expiring in an hour, with collapse
/// id `c1`.
pub fn visible_push(endpoint: &Endpoint, title: &str, body: &str) -> Push {
    let mut push = push_to(endpoint, visible(title, body));
    push.collapse_id = "c1".to_owned();
    push
}
