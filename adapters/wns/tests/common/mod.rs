//! Shared helpers: channels wired to the WNS mock of `tidings-testkit`.

#![allow(dead_code, unreachable_pub)]

use std::time::Duration;

use tidings::{AppId, Endpoint, Push, PushAddress, PushContent, Timestamp, UserId};
use tidings_testkit::channel::{push_to, visible};
use tidings_testkit::store::fixtures::endpoint_with;
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

/// An active WNS endpoint of `app` for user `alice` with `channel_uri`, registered now.
pub fn endpoint(app: &str, channel_uri: &str) -> Endpoint {
    let address = PushAddress::Wns {
        channel_uri: channel_uri.to_owned(),
    };
    endpoint_with(
        &AppId::new(app),
        &UserId::new("alice"),
        address,
        Timestamp::now_utc(),
    )
}

/// A first-attempt push to `endpoint` with `content`, sent now and expiring in an hour, with
/// collapse id `c1`.
pub fn push(endpoint: &Endpoint, content: PushContent) -> Push {
    let mut push = push_to(endpoint, content);
    push.collapse_id = "c1".to_owned();
    push
}

/// A first-attempt visible push to `endpoint`.
pub fn visible_push(endpoint: &Endpoint, title: &str, body: &str) -> Push {
    push(endpoint, visible(title, body))
}
