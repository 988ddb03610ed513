//! `RecordingChannel` (tidings-memory) through the parts of the channel conformance suite that
//! apply to a channel without a network. It has no timeout, so that case is not run; it holds no
//! credentials, so the `Debug` case runs only with a harness that plants one (and must fail).
//! Harnesses with injected faults show that the cases can fail.

// Helpers outside #[test] fns report failures by panicking, as assertions do.
#![allow(clippy::unwrap_used)]

use std::time::Duration;

use async_trait::async_trait;
use tidings::{AppId, Endpoint, Platform, PushAddress, PushErrorKind};
use tidings_memory::{Answer, RecordingChannel, Scripted};
use tidings_testkit::channel::{self, endpoint_for, ChannelHarness, ChannelOptions, SeenRequest};

/// The harness runs honestly, or with one fault injected to show that the suite catches it.
const HONEST: u8 = 0;
/// Scripts never reach the channel: it accepts pushes to gone endpoints.
const DEAF: u8 = 1;
/// The channel's own type name is declared a secret, so its `Debug` output "leaks" it.
const LEAKY: u8 = 2;

/// The "fake provider" of a `RecordingChannel` is the channel itself.
struct RecordingHarness<const FAULT: u8 = HONEST> {
    channel: RecordingChannel,
    app: AppId,
}

#[async_trait]
impl<const FAULT: u8> ChannelHarness for RecordingHarness<FAULT> {
    type Answer = Scripted;

    async fn start() -> Self {
        RecordingHarness {
            channel: RecordingChannel::new(Platform::Fcm).with_payload_limit(4096),
            app: AppId::new("conformance-app"),
        }
    }

    fn platform(&self) -> Platform {
        Platform::Fcm
    }

    fn endpoint(&self) -> Endpoint {
        let token = format!("fcm-token-{}", uuid_like());
        endpoint_for(&self.app, PushAddress::Fcm { token })
    }

    fn script_always(&self, endpoint: &Endpoint, answer: Scripted) {
        if FAULT != DEAF {
            self.channel.script_always(endpoint.id, answer);
        }
    }

    fn gone_answers(&self) -> Vec<Scripted> {
        vec![Scripted::Gone]
    }

    fn misconfigured_answers(&self) -> Vec<Scripted> {
        vec![Scripted::Misconfigured]
    }

    fn retry_after_answer(&self, after: Duration) -> Scripted {
        Scripted::RetryAfter(after)
    }

    fn slow_answer(&self, delay: Duration) -> Scripted {
        Scripted::Delay(delay)
    }

    /// Pushes that got past the size check: what a real provider would have received.
    fn requests(&self, endpoint: &Endpoint) -> Vec<SeenRequest> {
        self.channel
            .pushes_to(endpoint.id)
            .into_iter()
            .filter(|p| p.error_kind() != Some(PushErrorKind::PayloadTooLarge))
            .map(|p| SeenRequest {
                ttl_secs: Some(p.push.ttl().as_secs()),
                message_id: match p.answer {
                    Answer::Accepted {
                        provider_message_id,
                    } => Some(provider_message_id),
                    Answer::Failed { .. } => None,
                },
            })
            .collect()
    }

    fn secrets(&self) -> Vec<String> {
        if FAULT == LEAKY {
            vec!["RecordingChannel".to_owned()]
        } else {
            Vec::new()
        }
    }
}

fn uuid_like() -> u128 {
    use std::sync::atomic::{AtomicU64, Ordering};
    static N: AtomicU64 = AtomicU64::new(1);
    u128::from(N.fetch_add(1, Ordering::Relaxed))
}

fn recording<const FAULT: u8>(h: &RecordingHarness<FAULT>, _: ChannelOptions) -> RecordingChannel {
    h.channel.clone()
}

#[tokio::test]
async fn accepted_push_returns_provider_message_id() {
    channel::accepted_push_returns_provider_message_id::<RecordingHarness, _, _>(recording).await;
}

#[tokio::test]
async fn gone_answers_classify_as_gone() {
    channel::gone_answers_classify_as_gone::<RecordingHarness, _, _>(recording).await;
}

#[tokio::test]
async fn misconfigured_answers_leave_the_endpoint_alone() {
    channel::misconfigured_answers_leave_the_endpoint_alone::<RecordingHarness, _, _>(recording)
        .await;
}

#[tokio::test]
async fn retry_after_is_parsed_from_the_provider() {
    channel::retry_after_is_parsed_from_the_provider::<RecordingHarness, _, _>(recording).await;
}

#[tokio::test]
async fn payload_limit_is_enforced_before_sending() {
    channel::payload_limit_is_enforced_before_sending::<RecordingHarness, _, _>(recording).await;
}

#[tokio::test]
async fn expiry_becomes_the_provider_ttl() {
    channel::expiry_becomes_the_provider_ttl::<RecordingHarness, _, _>(recording).await;
}

/// The suite must be able to fail: a channel that ignores its payload limit is caught.
#[tokio::test]
#[should_panic(expected = "went out although the limit")]
async fn a_channel_without_its_payload_check_fails_the_suite() {
    fn unlimited(h: &RecordingHarness, _: ChannelOptions) -> RecordingChannel {
        // Reports 4096 bytes in its capabilities (the platform default) but checks nothing.
        h.channel.set_payload_limit(None);
        h.channel.clone()
    }
    channel::payload_limit_is_enforced_before_sending::<RecordingHarness, _, _>(unlimited).await;
}

/// A channel that answers "accepted" to a gone endpoint is caught.
#[tokio::test]
#[should_panic(expected = "was taken as accepted")]
async fn a_channel_that_ignores_gone_answers_fails_the_suite() {
    channel::gone_answers_classify_as_gone::<RecordingHarness<DEAF>, _, _>(recording).await;
}

/// A channel whose `Debug` output shows a secret is caught.
#[tokio::test]
#[should_panic(expected = "shows a credential")]
async fn a_channel_whose_debug_shows_a_secret_fails_the_suite() {
    channel::debug_output_hides_credentials::<RecordingHarness<LEAKY>, _, _>(recording).await;
}
