//! The channel conformance suite of `tidings-testkit`, run on `FcmChannel` against the FCM mock.

mod common;

use std::time::Duration;

use async_trait::async_trait;
use tidings::{AppId, Endpoint, EndpointId, Platform, PushAddress};
use tidings_fcm::FcmChannel;
use tidings_testkit::channel::{endpoint_for, ChannelHarness, ChannelOptions, SeenRequest};
use tidings_testkit::fcm::{FcmErrorCode, FcmMock, FcmReply, ServiceAccount};

/// The FCM half of the suite: the mock and one service account.
struct FcmHarness {
    mock: FcmMock,
    account: ServiceAccount,
    app: AppId,
}

fn token_of(endpoint: &Endpoint) -> &str {
    match &endpoint.address {
        PushAddress::Fcm { token } => token,
        other => panic!("not an FCM endpoint: {other:?}"),
    }
}

#[async_trait]
impl ChannelHarness for FcmHarness {
    type Answer = FcmReply;

    async fn start() -> Self {
        let mock = FcmMock::start().await;
        let account = mock.service_account("conformance-project");
        FcmHarness {
            mock,
            account,
            app: AppId::new("conformance-app"),
        }
    }

    fn platform(&self) -> Platform {
        Platform::Fcm
    }

    fn endpoint(&self) -> Endpoint {
        let token = format!("fcm-token-{}", EndpointId::new_random());
        endpoint_for(&self.app, PushAddress::Fcm { token })
    }

    fn script_always(&self, endpoint: &Endpoint, answer: FcmReply) {
        self.mock.script(token_of(endpoint), answer);
    }

    fn gone_answers(&self) -> Vec<FcmReply> {
        vec![
            FcmReply::Error(FcmErrorCode::Unregistered),
            // The mock's INVALID_ARGUMENT is the "not a valid FCM registration token" case.
            FcmReply::Error(FcmErrorCode::InvalidArgument),
        ]
    }

    fn misconfigured_answers(&self) -> Vec<FcmReply> {
        vec![
            FcmReply::Error(FcmErrorCode::SenderIdMismatch),
            FcmReply::Error(FcmErrorCode::ThirdPartyAuthError),
        ]
    }

    fn retry_after_answer(&self, after: Duration) -> FcmReply {
        FcmReply::RetryAfter {
            code: FcmErrorCode::Unavailable,
            after,
        }
    }

    fn slow_answer(&self, delay: Duration) -> FcmReply {
        FcmReply::slow(delay)
    }

    fn requests(&self, endpoint: &Endpoint) -> Vec<SeenRequest> {
        self.mock
            .requests_for(token_of(endpoint))
            .iter()
            .map(|r| SeenRequest {
                ttl_secs: r
                    .android_ttl()
                    .and_then(|t| t.strip_suffix('s'))
                    .and_then(|t| t.parse().ok()),
                message_id: r.message_name.clone(),
            })
            .collect()
    }

    fn secrets(&self) -> Vec<String> {
        let mut secrets: Vec<String> = self
            .account
            .private_key_pem()
            .lines()
            .filter(|l| !l.starts_with("-----"))
            .map(str::to_owned)
            .collect();
        secrets.extend(self.mock.requests().iter().filter_map(|r| {
            r.header("authorization")
                .map(|h| h.trim_start_matches("Bearer ").to_owned())
        }));
        secrets
    }
}

fn channel(h: &FcmHarness, o: ChannelOptions) -> FcmChannel {
    common::builder(&h.mock, h.app.as_str(), &h.account)
        .request_timeout(o.timeout)
        .build()
        .expect("a valid FCM configuration")
}

tidings_testkit::channel_conformance!(FcmHarness, channel);

/// QUOTA_EXCEEDED honours a Retry-After above FCM's one-minute floor (the suite's throttling
/// case uses UNAVAILABLE, whose Retry-After is taken as is).
#[tokio::test]
async fn quota_exceeded_retry_after_above_a_minute_is_honoured() {
    let h = FcmHarness::start().await;
    let c = channel(&h, ChannelOptions::default());
    let ep = h.endpoint();
    h.script_always(
        &ep,
        FcmReply::RetryAfter {
            code: FcmErrorCode::QuotaExceeded,
            after: Duration::from_secs(137),
        },
    );
    let err = tidings::PushChannel::send(
        &c,
        &tidings_testkit::channel::push_to(&ep, tidings_testkit::channel::visible("a", "b")),
    )
    .await
    .unwrap_err();
    assert_eq!(err.retry(), tidings::Retry::After(Duration::from_secs(137)));
}
