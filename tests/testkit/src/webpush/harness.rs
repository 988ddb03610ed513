//! [`WebPushHarness`]: the Web Push fake as a [`ChannelHarness`] for the channel conformance
//! suite.

use std::time::Duration;

use async_trait::async_trait;
use base64::engine::general_purpose::STANDARD;
use base64::Engine as _;
use tidings::{AddressPolicy, AppId, Endpoint, Platform, PushAddress};

use super::{VapidKey, WebPushMock, WebPushReply};
use crate::channel::{endpoint_for, ChannelHarness, SeenRequest};

/// A running [`WebPushMock`] and a VAPID key, for the channel conformance suite.
///
/// Build the channel under test with [`vapid_key`](Self::vapid_key) and
/// [`subject`](Self::subject) for the app [`app`](Self::app), with
/// [`address_policy`](Self::address_policy) so it accepts loopback endpoints.
#[derive(Debug)]
pub struct WebPushHarness {
    mock: WebPushMock,
    vapid: VapidKey,
    app: AppId,
}

impl WebPushHarness {
    /// The fake.
    pub fn mock(&self) -> &WebPushMock {
        &self.mock
    }

    /// The application server's VAPID key.
    pub fn vapid_key(&self) -> &VapidKey {
        &self.vapid
    }

    /// The VAPID `sub` to configure.
    pub fn subject(&self) -> &'static str {
        "mailto:push-conformance@example.com"
    }

    /// The app id every endpoint of the harness belongs to.
    pub fn app(&self) -> AppId {
        self.app.clone()
    }

    /// The address policy that lets a channel reach the loopback fake.
    pub fn address_policy() -> AddressPolicy {
        AddressPolicy::with_loopback_for_tests()
    }

    fn push_endpoint(endpoint: &Endpoint) -> &str {
        match &endpoint.address {
            PushAddress::WebPush { endpoint, .. } => endpoint,
            other => panic!("not a Web Push endpoint: {other:?}"),
        }
    }
}

#[async_trait]
impl ChannelHarness for WebPushHarness {
    type Answer = WebPushReply;

    async fn start() -> Self {
        WebPushHarness {
            mock: WebPushMock::start().await,
            vapid: VapidKey::generate(),
            app: AppId::new("conformance-app"),
        }
    }

    fn platform(&self) -> Platform {
        Platform::WebPush
    }

    fn endpoint(&self) -> Endpoint {
        endpoint_for(&self.app, self.mock.subscription().address())
    }

    fn script_always(&self, endpoint: &Endpoint, answer: WebPushReply) {
        self.mock
            .script_always(Self::push_endpoint(endpoint), answer);
    }

    fn gone_answers(&self) -> Vec<WebPushReply> {
        vec![WebPushReply::NotFound, WebPushReply::Gone]
    }

    fn misconfigured_answers(&self) -> Vec<WebPushReply> {
        // PROTOCOLS.md §4.1: 400 bad headers/VAPID, 401/403 VAPID problems.
        vec![
            WebPushReply::BadRequest,
            WebPushReply::Unauthorized,
            WebPushReply::Forbidden,
        ]
    }

    fn retry_after_answer(&self, after: Duration) -> WebPushReply {
        WebPushReply::TooManyRequests {
            retry_after: Some(after),
        }
    }

    fn slow_answer(&self, delay: Duration) -> WebPushReply {
        WebPushReply::slow(delay, WebPushReply::Accept)
    }

    fn requests(&self, endpoint: &Endpoint) -> Vec<SeenRequest> {
        self.mock
            .requests_to(Self::push_endpoint(endpoint))
            .into_iter()
            .map(|r| SeenRequest {
                ttl_secs: r.ttl,
                message_id: r.message_url,
            })
            .collect()
    }

    fn secrets(&self) -> Vec<String> {
        let der = self.vapid.pkcs8_der();
        vec![
            self.vapid.private_key_base64url(),
            STANDARD.encode(&der),
            self.vapid
                .pkcs8_pem()
                .lines()
                .nth(1)
                .unwrap_or_default()
                .to_owned(),
        ]
    }
}
