//! Shared helpers: channels wired to the WNS mock of `tidings-testkit`.

#![allow(dead_code, unreachable_pub)]

use std::sync::Arc;
use std::time::Duration;

use tidings::{
    AppId, DeliveryId, DeliveryKind, Endpoint, EndpointId, NotificationId, Priority, Push,
    PushAddress, PushContent, Timestamp, UserId, VisualContent,
};
use tidings_testkit::wns::{WnsAppCredentials, WnsAuthFlow};
use tidings_wns::{WnsAppConfig, WnsChannel, WnsChannelBuilder, WnsCredentials};

/// The mock's credentials as the channel's configuration for `app` (token URL on the mock).
pub fn app_config(app: &str, creds: &WnsAppCredentials) -> WnsAppConfig {
    let credentials = match creds.flow {
        WnsAuthFlow::Legacy => {
            WnsCredentials::legacy(creds.client_id.clone(), creds.client_secret.clone())
        }
        WnsAuthFlow::Entra => WnsCredentials::entra(
            creds
                .tenant
                .clone()
                .expect("Entra credentials have a tenant"),
            creds.client_id.clone(),
            creds.client_secret.clone(),
        ),
    };
    WnsAppConfig::new(app, credentials).token_url(creds.token_url.clone())
}

/// A builder for `app` sending with `creds`, allowed to reach the loopback mock.
pub fn builder(app: &str, creds: &WnsAppCredentials) -> WnsChannelBuilder {
    WnsChannel::builder()
        .app(app_config(app, creds))
        .allow_loopback_for_tests()
        .request_timeout(Duration::from_secs(10))
}

/// An active WNS endpoint of `app` with `channel_uri`.
pub fn endpoint(app: &str, channel_uri: &str) -> Endpoint {
    let now = Timestamp::now_utc();
    Endpoint {
        id: EndpointId::new_random(),
        app: AppId::new(app),
        user: UserId::new("alice"),
        installation_id: None,
        address: PushAddress::Wns {
            channel_uri: channel_uri.to_owned(),
        },
        active: true,
        created_at: now,
        last_seen_at: now,
        address_expires_at: None,
        deactivation_reason: None,
    }
}

/// A first-attempt push to `endpoint` with `content`, expiring in an hour.
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

/// A first-attempt visible push to `endpoint`.
pub fn visible_push(endpoint: &Endpoint, title: &str, body: &str) -> Push {
    push(
        endpoint,
        PushContent::Inline {
            visual: Some(VisualContent {
                title: title.to_owned(),
                body: Some(body.to_owned()),
            }),
            raw: None,
        },
    )
}
