//! Shared helpers: channels wired to the APNs fake of `tidings-testkit`.

#![allow(dead_code, unreachable_pub)]

use std::sync::Arc;
use std::time::Duration;

use tidings::{
    ApnsEnvironment, AppId, DeliveryId, DeliveryKind, Endpoint, EndpointId, NotificationId,
    Priority, Push, PushAddress, PushContent, Timestamp, UserId, VisualContent,
};
use tidings_apns::{ApnsChannel, ApnsChannelBuilder};
use tidings_testkit::apns::{ApnsMock, ApnsSigningKey};

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

/// An active APNs endpoint of `app` with device token `token` (hex).
pub fn endpoint_in(app: &str, token: &str, environment: ApnsEnvironment) -> Endpoint {
    let now = Timestamp::now_utc();
    Endpoint {
        id: EndpointId::new_random(),
        app: AppId::new(app),
        user: UserId::new("alice"),
        installation_id: None,
        address: PushAddress::Apns {
            token: token.to_owned(),
            environment,
        },
        active: true,
        created_at: now,
        last_seen_at: now,
        address_expires_at: None,
        deactivation_reason: None,
    }
}

/// A production endpoint.
pub fn endpoint(app: &str, token: &str) -> Endpoint {
    endpoint_in(app, token, ApnsEnvironment::Production)
}

/// A first-attempt notification push with `content` to `endpoint`, expiring in an hour.
pub fn push(endpoint: &Endpoint, content: PushContent) -> Push {
    let now = Timestamp::now_utc();
    Push {
        delivery_id: DeliveryId::new_random(),
        kind: DeliveryKind::Notification,
        app: endpoint.app.clone(),
        endpoint: Arc::new(endpoint.clone()),
        notification_id: Some(NotificationId::new_random()),
        sequence: 1,
        priority: Priority::Normal,
        collapse_id: "c1".to_owned(),
        group: None,
        display_ttl: None,
        expires_at: now.plus(Duration::from_secs(3600)),
        sent_at: now,
        attempt: 1,
        content,
    }
}

/// Visible inline content.
pub fn visual(title: &str, body: &str) -> PushContent {
    PushContent::Inline {
        visual: Some(VisualContent {
            title: title.to_owned(),
            body: Some(body.to_owned()),
        }),
        raw: None,
    }
}
