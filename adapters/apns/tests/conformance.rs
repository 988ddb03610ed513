//! The channel conformance suite of `tidings-testkit`, run on `ApnsChannel` against the APNs
//! fake, in token mode and in certificate mode.

mod common;

use std::time::Duration;

use async_trait::async_trait;
use tidings::{
    ApnsEnvironment, AppId, Clock, Endpoint, ManualClock, Platform, PushAddress, Timestamp,
};
use tidings_apns::ApnsChannel;
use tidings_testkit::apns::{
    ApnsClientIdentity, ApnsMock, ApnsReason, ApnsReply, ApnsRequest, ApnsSigningKey,
};
use tidings_testkit::channel::{endpoint_for, ChannelHarness, ChannelOptions, SeenRequest};

use common::TOPIC;

/// The credential the channel under test authenticates with.
enum Credential {
    Token(ApnsSigningKey),
    Certificate(ApnsClientIdentity),
}

/// The APNs half of the suite: the fake, one credential, and the channel's clock (fixed at the
/// fake's start, so `apns-expiration` minus it is the TTL the channel meant).
struct ApnsHarness {
    mock: ApnsMock,
    credential: Credential,
    clock: ManualClock,
    app: AppId,
}

fn token_of(endpoint: &Endpoint) -> &str {
    match &endpoint.address {
        PushAddress::Apns { token, .. } => token,
        other => panic!("not an APNs endpoint: {other:?}"),
    }
}

fn seen(request: &ApnsRequest, start: i64) -> SeenRequest {
    SeenRequest {
        ttl_secs: request
            .expiration()
            .and_then(|e| u64::try_from(e - start).ok()),
        message_id: request.accepted().then(|| request.apns_id.clone()),
    }
}

impl ApnsHarness {
    async fn with(certificate: bool) -> Self {
        let (mock, credential) = if certificate {
            let mock = ApnsMock::builder()
                .topic(TOPIC)
                .certificate_auth()
                .start()
                .await;
            let identity = mock.issue_client_identity(TOPIC);
            (mock, Credential::Certificate(identity))
        } else {
            let key = common::key("CONFKEY001");
            (common::token_mock(&key).await, Credential::Token(key))
        };
        let clock = ManualClock::new(Timestamp::from_secs(mock.now()));
        ApnsHarness {
            mock,
            credential,
            clock,
            app: AppId::new("conformance-app"),
        }
    }

    fn answers(&self, reasons: &[ApnsReason]) -> Vec<ApnsReply> {
        reasons.iter().map(|r| ApnsReply::Reject(*r)).collect()
    }
}

macro_rules! harness {
    ($name:ident, $certificate:expr) => {
        struct $name(ApnsHarness);

        #[async_trait]
        impl ChannelHarness for $name {
            type Answer = ApnsReply;

            async fn start() -> Self {
                $name(ApnsHarness::with($certificate).await)
            }

            fn platform(&self) -> Platform {
                Platform::Apns
            }

            fn endpoint(&self) -> Endpoint {
                let token = tidings::EndpointId::new_random()
                    .to_string()
                    .replace('-', "");
                endpoint_for(
                    &self.0.app,
                    PushAddress::Apns {
                        token,
                        environment: ApnsEnvironment::Production,
                    },
                )
            }

            fn script_always(&self, endpoint: &Endpoint, answer: ApnsReply) {
                self.0.mock.script(token_of(endpoint), answer);
            }

            fn gone_answers(&self) -> Vec<ApnsReply> {
                let mut answers = self.0.answers(&[
                    ApnsReason::Unregistered,
                    ApnsReason::ExpiredToken,
                    ApnsReason::BadDeviceToken,
                    ApnsReason::DeviceTokenNotForTopic,
                ]);
                answers.push(ApnsReply::Unregistered {
                    since_ms: 1_767_225_600_000,
                });
                answers
            }

            fn misconfigured_answers(&self) -> Vec<ApnsReply> {
                self.0.answers(&[
                    ApnsReason::BadCertificate,
                    ApnsReason::BadCertificateEnvironment,
                    ApnsReason::InvalidProviderToken,
                    ApnsReason::MissingProviderToken,
                    ApnsReason::BadEnvironmentKeyIdInToken,
                    ApnsReason::TopicDisallowed,
                    ApnsReason::BadTopic,
                ])
            }

            fn retry_after_answer(&self, after: Duration) -> ApnsReply {
                ApnsReply::RetryAfter {
                    reason: ApnsReason::TooManyRequests,
                    after,
                }
            }

            fn slow_answer(&self, delay: Duration) -> ApnsReply {
                ApnsReply::slow(delay)
            }

            fn requests(&self, endpoint: &Endpoint) -> Vec<SeenRequest> {
                let start = self.0.clock.now().as_secs();
                self.0
                    .mock
                    .requests_for(token_of(endpoint))
                    .iter()
                    .map(|r| seen(r, start))
                    .collect()
            }

            fn secrets(&self) -> Vec<String> {
                let pem = match &self.0.credential {
                    Credential::Token(key) => key.p8_pem(),
                    Credential::Certificate(identity) => identity.key_pem().to_owned(),
                };
                let mut secrets: Vec<String> = pem
                    .lines()
                    .filter(|l| !l.starts_with("-----"))
                    .map(str::to_owned)
                    .collect();
                secrets.extend(self.0.mock.requests().iter().filter_map(|r| {
                    r.header("authorization")
                        .map(|h| h.trim_start_matches("bearer ").to_owned())
                }));
                // Device tokens are push addresses: never in Debug output either.
                secrets.extend(
                    self.0
                        .mock
                        .requests()
                        .iter()
                        .map(|r| r.device_token.clone()),
                );
                secrets
            }
        }
    };
}

harness!(TokenHarness, false);
harness!(CertificateHarness, true);

fn channel(h: &ApnsHarness, o: ChannelOptions) -> ApnsChannel {
    let b = ApnsChannel::builder();
    let b = match &h.credential {
        Credential::Token(key) => b.token_auth(
            h.app.as_str(),
            TOPIC,
            key.team_id(),
            key.key_id(),
            key.p8_pem(),
        ),
        Credential::Certificate(identity) => {
            b.certificate_auth(h.app.as_str(), TOPIC, identity.pem())
        }
    };
    b.base_url(h.mock.base_url())
        .trusted_ca_pem(h.mock.ca_pem())
        .request_timeout(o.timeout)
        .clock(h.clock.clone())
        .build()
        .expect("a valid APNs configuration")
}

fn token_channel(h: &TokenHarness, o: ChannelOptions) -> ApnsChannel {
    channel(&h.0, o)
}

fn certificate_channel(h: &CertificateHarness, o: ChannelOptions) -> ApnsChannel {
    channel(&h.0, o)
}

tidings_testkit::channel_conformance!(mod token_mode, TokenHarness, token_channel);
tidings_testkit::channel_conformance!(mod certificate_mode, CertificateHarness, certificate_channel);
