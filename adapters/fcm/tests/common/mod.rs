//! Shared helpers: channels wired to the FCM mock of `tidings-testkit`.

#![allow(dead_code, unreachable_pub)]

use std::sync::Arc;
use std::time::Duration;

use tidings::{
    AppId, DeliveryId, DeliveryKind, Endpoint, EndpointId, NotificationId, Priority, Push,
    PushAddress, PushContent, Timestamp, UserId, VisualContent,
};
use tidings_fcm::{FcmAppConfig, FcmChannel, FcmChannelBuilder, ServiceAccountKey};
use tidings_testkit::fcm::{FcmMock, ServiceAccount};

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

/// An active FCM endpoint of `app` with registration token `token`.
pub fn endpoint(app: &str, token: &str) -> Endpoint {
    let now = Timestamp::now_utc();
    Endpoint {
        id: EndpointId::new_random(),
        app: AppId::new(app),
        user: UserId::new("alice"),
        installation_id: None,
        address: PushAddress::Fcm {
            token: token.to_owned(),
        },
        active: true,
        created_at: now,
        last_seen_at: now,
        address_expires_at: None,
        deactivation_reason: None,
    }
}

/// A first-attempt visible push to `endpoint`, expiring in an hour.
pub fn visible_push(endpoint: &Endpoint, title: &str, body: &str) -> Push {
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
        content: PushContent::Inline {
            visual: Some(VisualContent {
                title: title.to_owned(),
                body: Some(body.to_owned()),
            }),
            raw: None,
        },
    }
}
