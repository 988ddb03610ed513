//! [`WnsHarness`]: the WNS fake as a [`ChannelHarness`] for the channel conformance suite.

use std::time::Duration;

use async_trait::async_trait;
use tidings::{AddressPolicy, AppId, Endpoint, Platform, PushAddress};

use super::{WnsAppCredentials, WnsMock, WnsReply};
use crate::channel::{endpoint_for, ChannelHarness, SeenRequest};

/// A running [`WnsMock`] with one registered app, for the channel conformance suite.
///
/// Build the channel under test from [`credentials`](Self::credentials) (client id, secret and
/// token URL on the mock) for the app [`app`](Self::app), with
/// [`address_policy`](Self::address_policy) so it accepts loopback channel URIs.
#[derive(Debug)]
pub struct WnsHarness {
    mock: WnsMock,
    credentials: WnsAppCredentials,
    app: AppId,
}

impl WnsHarness {
    /// The fake.
    pub fn mock(&self) -> &WnsMock {
        &self.mock
    }

    /// The app's credentials, registered with the fake (legacy flow).
    pub fn credentials(&self) -> &WnsAppCredentials {
        &self.credentials
    }

    /// The app id every endpoint of the harness belongs to.
    pub fn app(&self) -> AppId {
        self.app.clone()
    }

    /// The address policy that lets a channel reach the loopback fake.
    pub fn address_policy() -> AddressPolicy {
        AddressPolicy::with_loopback_for_tests()
    }

    fn channel_uri(endpoint: &Endpoint) -> &str {
        match &endpoint.address {
            PushAddress::Wns { channel_uri } => channel_uri,
            other => panic!("not a WNS endpoint: {other:?}"),
        }
    }
}

#[async_trait]
impl ChannelHarness for WnsHarness {
    type Answer = WnsReply;

    async fn start() -> Self {
        let mock = WnsMock::start().await;
        let credentials = mock.register_app();
        WnsHarness {
            mock,
            credentials,
            app: AppId::new("conformance-app"),
        }
    }

    fn platform(&self) -> Platform {
        Platform::Wns
    }

    fn endpoint(&self) -> Endpoint {
        let channel_uri = self.mock.channel_uri(&self.credentials);
        endpoint_for(&self.app, PushAddress::Wns { channel_uri })
    }

    fn script_always(&self, endpoint: &Endpoint, answer: WnsReply) {
        self.mock.script_always(Self::channel_uri(endpoint), answer);
    }

    fn gone_answers(&self) -> Vec<WnsReply> {
        vec![WnsReply::NotFound, WnsReply::Gone]
    }

    fn misconfigured_answers(&self) -> Vec<WnsReply> {
        // A channel refreshes its token on 401 and resends once; the standing script answers
        // 401 again, which is then a configuration fault.
        vec![WnsReply::Unauthorized, WnsReply::Forbidden]
    }

    fn retry_after_answer(&self, after: Duration) -> WnsReply {
        WnsReply::Throttled {
            continue_after: Some(after),
        }
    }

    fn slow_answer(&self, delay: Duration) -> WnsReply {
        WnsReply::slow(delay, WnsReply::Accept)
    }

    fn requests(&self, endpoint: &Endpoint) -> Vec<SeenRequest> {
        self.mock
            .requests_to(Self::channel_uri(endpoint))
            .into_iter()
            .map(|r| SeenRequest {
                ttl_secs: r.ttl,
                message_id: r.message_id,
            })
            .collect()
    }

    fn secrets(&self) -> Vec<String> {
        let mut secrets = vec![self.credentials.client_secret.clone()];
        secrets.extend(self.mock.issued_tokens());
        secrets
    }
}
