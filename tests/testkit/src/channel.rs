//! The channel conformance suite: what every [`PushChannel`] must do, checked against a fake
//! of its provider.
//!
//! Each case is a `pub async fn` generic over a [`ChannelHarness`] (the provider-specific part:
//! start the fake, make an endpoint on it, script its answers, read what it received) and a
//! factory that builds the channel under test from the harness:
//!
//! ```ignore
//! // In the adapter's tests (tidings-webpush, say):
//! use tidings_testkit::channel::ChannelOptions;
//! use tidings_testkit::webpush::WebPushHarness;
//!
//! fn channel(h: &WebPushHarness, o: ChannelOptions) -> WebPushChannel {
//!     WebPushChannel::builder()
//!         .vapid(h.app(), h.vapid_key().pkcs8_pem(), h.subject())
//!         .address_policy(WebPushHarness::address_policy())
//!         .timeout(o.timeout)
//!         .build()
//!         .unwrap()
//! }
//!
//! tidings_testkit::channel_conformance!(WebPushHarness, channel);
//! ```
//!
//! The macro expands to a module `channel_conformance` with one `#[test]` per case (each on its
//! own Tokio runtime). A case panics with a message naming the provider answer that was
//! misclassified. [`CASES`] lists the case names.
//!
//! Harnesses shipped here: [`WnsHarness`](crate::wns::WnsHarness) and
//! [`WebPushHarness`](crate::webpush::WebPushHarness). A third-party channel implements
//! [`ChannelHarness`] for its own fake.
//!
//! For a channel crate's own tests, [`fixtures`] has fixed test data (an endpoint, a push and
//! visual content with documented values) and [`fixtures::EndToEnd`], `Tidings` wired to one
//! channel on a manual clock with the scenarios end-to-end tests share.

use std::fmt;
use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use tidings::{
    AppId, Endpoint, Platform, Push, PushAddress, PushChannel, PushContent, PushError,
    PushErrorKind, Retry, Timestamp, UserId,
};

use crate::store::fixtures::endpoint_with;

pub mod fixtures;

/// What the suite asks of the channel it builds.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub struct ChannelOptions {
    /// The per-request timeout the channel must apply.
    pub timeout: Duration,
}

impl Default for ChannelOptions {
    fn default() -> Self {
        ChannelOptions {
            timeout: Duration::from_secs(10),
        }
    }
}

/// The name of every case, in the order the macro runs them.
pub const CASES: [&str; 8] = [
    "accepted_push_returns_provider_message_id",
    "gone_answers_classify_as_gone",
    "misconfigured_answers_leave_the_endpoint_alone",
    "retry_after_is_parsed_from_the_provider",
    "payload_limit_is_enforced_before_sending",
    "timeout_is_retryable",
    "debug_output_hides_credentials",
    "expiry_becomes_the_provider_ttl",
];

/// The timeout the timeout case gives the channel.
pub const SHORT_TIMEOUT: Duration = Duration::from_secs(1);
/// How long the fake stalls in the timeout case (the fake is stopped when the case ends).
pub const STALL: Duration = Duration::from_secs(60);

/// One request the provider's fake received, in provider-neutral terms.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct SeenRequest {
    /// The time to live the request carried, in seconds (`TTL`, `X-WNS-TTL`, …).
    pub ttl_secs: Option<u64>,
    /// The message id the fake answered with (`Location`, `X-WNS-Msg-ID`, …), if it accepted.
    pub message_id: Option<String>,
}

/// The provider-specific half of the suite: a running fake of one push provider.
#[async_trait]
pub trait ChannelHarness: Send + Sync + Sized + 'static {
    /// A scripted provider answer.
    type Answer: Clone + fmt::Debug + Send + Sync;

    /// Starts the fake and makes the credentials the channel will be built with.
    async fn start() -> Self;

    /// The platform.
    fn platform(&self) -> Platform;

    /// A fresh endpoint whose push address points at the fake.
    fn endpoint(&self) -> Endpoint;

    /// Makes every later request to `endpoint` get `answer`.
    fn script_always(&self, endpoint: &Endpoint, answer: Self::Answer);

    /// Each documented answer that means "this endpoint is gone".
    fn gone_answers(&self) -> Vec<Self::Answer>;

    /// Each documented answer that means "our credentials or configuration are wrong".
    fn misconfigured_answers(&self) -> Vec<Self::Answer>;

    /// A throttling answer that tells the client to come back after `after`.
    fn retry_after_answer(&self, after: Duration) -> Self::Answer;

    /// An answer that arrives only after `delay`.
    fn slow_answer(&self, delay: Duration) -> Self::Answer;

    /// The requests to `endpoint` the fake received, oldest first.
    fn requests(&self, endpoint: &Endpoint) -> Vec<SeenRequest>;

    /// Secrets the channel was given or obtained (keys, client secrets, access tokens), none of
    /// which may appear in its `Debug` output.
    fn secrets(&self) -> Vec<String>;
}

/// A visible notification with `title` and `body`.
pub fn visible(title: &str, body: &str) -> PushContent {
    PushContent::Inline {
        visual: Some(fixtures::visual(title, body)),
        raw: None,
    }
}

/// A first-attempt notification push to `endpoint`, sent now, expiring in an hour.
pub fn push_to(endpoint: &Endpoint, content: PushContent) -> Push {
    fixtures::first_attempt(
        Arc::new(endpoint.clone()),
        Timestamp::now_utc(),
        "conformance",
        content,
    )
}

/// An active endpoint of `app` for `address`, registered now (for harnesses).
pub fn endpoint_for(app: &AppId, address: PushAddress) -> Endpoint {
    endpoint_with(
        app,
        &UserId::new("conformance-user"),
        address,
        Timestamp::now_utc(),
    )
}

fn greeting(endpoint: &Endpoint) -> Push {
    push_to(
        endpoint,
        visible("Conformance", "Hello from the channel suite"),
    )
}

/// Starts the harness and builds the channel under test with `options`.
async fn started<H, C, F>(make: F, options: ChannelOptions) -> (H, C)
where
    H: ChannelHarness,
    F: Fn(&H, ChannelOptions) -> C,
{
    let h = H::start().await;
    let channel = make(&h, options);
    (h, channel)
}

/// Sends the greeting to a fresh endpoint the fake answers with `answer`, and returns the error
/// the channel made of it; panics if the channel took the answer as accepted.
async fn refusal<H: ChannelHarness, C: PushChannel>(
    h: &H,
    channel: &C,
    answer: &H::Answer,
) -> PushError {
    let ep = h.endpoint();
    h.script_always(&ep, answer.clone());
    match channel.send(&greeting(&ep)).await {
        Ok(a) => panic!("{answer:?} was taken as accepted ({a:?})"),
        Err(e) => e,
    }
}

/// Checks that the harness lists some `what` answers, then sends the greeting once per answer
/// (to a fresh endpoint each time) and returns each answer with the error the channel made of it.
async fn refusals<H: ChannelHarness, C: PushChannel>(
    h: &H,
    channel: &C,
    answers: Vec<H::Answer>,
    what: &str,
) -> Vec<(H::Answer, PushError)> {
    assert!(!answers.is_empty(), "the harness lists no {what} answers");
    let mut refused = Vec::with_capacity(answers.len());
    for answer in answers {
        let err = refusal(h, channel, &answer).await;
        refused.push((answer, err));
    }
    refused
}

/// An accepted push returns the provider's message id: the one the fake answered with.
pub async fn accepted_push_returns_provider_message_id<H, C, F>(make: F)
where
    H: ChannelHarness,
    C: PushChannel,
    F: Fn(&H, ChannelOptions) -> C,
{
    let (h, channel) = started(make, ChannelOptions::default()).await;
    assert_eq!(
        channel.platform(),
        h.platform(),
        "the channel serves another platform"
    );
    let ep = h.endpoint();
    let accepted = channel
        .send(&greeting(&ep))
        .await
        .unwrap_or_else(|e| panic!("a push the fake accepts failed: {e:?}"));
    let seen = h.requests(&ep);
    let last = seen.last().expect("the fake received no request");
    let expected = last
        .message_id
        .clone()
        .expect("the fake did not accept the request the channel sent");
    assert_eq!(
        accepted.provider_message_id.as_deref(),
        Some(expected.as_str()),
        "the channel must return the provider's message id"
    );
}

/// Every documented "endpoint gone" answer classifies as gone.
pub async fn gone_answers_classify_as_gone<H, C, F>(make: F)
where
    H: ChannelHarness,
    C: PushChannel,
    F: Fn(&H, ChannelOptions) -> C,
{
    let (h, channel) = started(make, ChannelOptions::default()).await;
    for (answer, err) in refusals(&h, &channel, h.gone_answers(), "gone").await {
        assert!(
            err.endpoint_gone(),
            "{answer:?} must classify as endpoint gone, got {err:?}"
        );
        assert!(
            !err.is_retryable(),
            "{answer:?}: a gone endpoint is not retried: {err:?}"
        );
    }
}

/// Every documented "misconfigured" answer classifies as misconfigured and leaves the endpoint
/// alone (not gone).
pub async fn misconfigured_answers_leave_the_endpoint_alone<H, C, F>(make: F)
where
    H: ChannelHarness,
    C: PushChannel,
    F: Fn(&H, ChannelOptions) -> C,
{
    let (h, channel) = started(make, ChannelOptions::default()).await;
    let answers = h.misconfigured_answers();
    for (answer, err) in refusals(&h, &channel, answers, "misconfigured").await {
        assert!(
            err.is_misconfigured(),
            "{answer:?} must classify as misconfigured, got {err:?}"
        );
        assert!(
            !err.endpoint_gone(),
            "{answer:?} must not deactivate the endpoint"
        );
    }
}

/// A throttling answer's retry-after is parsed into [`Retry::After`].
pub async fn retry_after_is_parsed_from_the_provider<H, C, F>(make: F)
where
    H: ChannelHarness,
    C: PushChannel,
    F: Fn(&H, ChannelOptions) -> C,
{
    let (h, channel) = started(make, ChannelOptions::default()).await;
    let after = Duration::from_secs(137);
    let answer = h.retry_after_answer(after);
    let err = refusal(&h, &channel, &answer).await;
    assert_eq!(
        err.retry(),
        Retry::After(after),
        "{answer:?} must retry after the provider's delay: {err:?}"
    );
    assert!(!err.endpoint_gone() && !err.is_misconfigured(), "{err:?}");
}

/// A push over `capabilities().max_payload_bytes` fails with payload-too-large before any
/// request reaches the provider.
pub async fn payload_limit_is_enforced_before_sending<H, C, F>(make: F)
where
    H: ChannelHarness,
    C: PushChannel,
    F: Fn(&H, ChannelOptions) -> C,
{
    let (h, channel) = started(make, ChannelOptions::default()).await;
    let limit = channel.capabilities().max_payload_bytes;
    assert!(limit > 0, "max_payload_bytes is 0");
    let ep = h.endpoint();
    let push = push_to(&ep, visible("Too large", &"x".repeat(limit + 1)));
    let err = match channel.send(&push).await {
        Ok(a) => panic!(
            "a {}-byte body went out although the limit is {limit} ({a:?})",
            limit + 1
        ),
        Err(e) => e,
    };
    assert_eq!(err.kind(), PushErrorKind::PayloadTooLarge, "{err:?}");
    assert!(!err.is_retryable(), "{err:?}");
    assert!(
        h.requests(&ep).is_empty(),
        "the provider received a request although the payload was over the limit"
    );
}

/// A request the provider does not answer within the channel's timeout fails as retryable
/// (and neither gone nor misconfigured).
pub async fn timeout_is_retryable<H, C, F>(make: F)
where
    H: ChannelHarness,
    C: PushChannel,
    F: Fn(&H, ChannelOptions) -> C,
{
    let (h, channel) = started(
        make,
        ChannelOptions {
            timeout: SHORT_TIMEOUT,
        },
    )
    .await;
    let ep = h.endpoint();
    h.script_always(&ep, h.slow_answer(STALL));
    let sent = tokio::time::timeout(STALL / 2, channel.send(&greeting(&ep))).await;
    let result = sent
        .unwrap_or_else(|_| panic!("the channel waited far beyond its {SHORT_TIMEOUT:?} timeout"));
    let err = match result {
        Ok(a) => panic!("a stalled request was taken as accepted ({a:?})"),
        Err(e) => e,
    };
    assert!(err.is_retryable(), "a timeout must be retryable: {err:?}");
    assert!(!err.endpoint_gone() && !err.is_misconfigured(), "{err:?}");
}

/// No secret appears in the channel's `Debug` output, before or after it has sent (when it
/// holds cached access tokens).
pub async fn debug_output_hides_credentials<H, C, F>(make: F)
where
    H: ChannelHarness,
    C: PushChannel,
    F: Fn(&H, ChannelOptions) -> C,
{
    let (h, channel) = started(make, ChannelOptions::default()).await;
    let before = format!("{channel:?}");
    let ep = h.endpoint();
    let _ = channel.send(&greeting(&ep)).await;
    let after = format!("{channel:?} {channel:#?}");
    let secrets = h.secrets();
    for secret in secrets.iter().filter(|s| s.len() >= 8) {
        assert!(
            !before.contains(secret.as_str()) && !after.contains(secret.as_str()),
            "the channel's Debug output shows a credential"
        );
    }
}

/// The push's expiry reaches the provider as its TTL, computed from the attempt's `sent_at`, so
/// a retry carries a shorter TTL.
pub async fn expiry_becomes_the_provider_ttl<H, C, F>(make: F)
where
    H: ChannelHarness,
    C: PushChannel,
    F: Fn(&H, ChannelOptions) -> C,
{
    let (h, channel) = started(make, ChannelOptions::default()).await;
    let ep = h.endpoint();
    let first = greeting(&ep);
    let mut retry = first.clone();
    retry.attempt = 2;
    retry.sent_at = first.sent_at.plus(Duration::from_secs(600));
    for push in [&first, &retry] {
        channel
            .send(push)
            .await
            .unwrap_or_else(|e| panic!("a push the fake accepts failed: {e:?}"));
    }
    let ttls: Vec<Option<u64>> = h.requests(&ep).iter().map(|r| r.ttl_secs).collect();
    assert_eq!(
        ttls,
        vec![Some(first.ttl().as_secs()), Some(retry.ttl().as_secs())],
        "TTL must be expires_at - sent_at of each attempt (3600 s, then 3000 s)"
    );
}

/// Expands to a module `channel_conformance` with one `#[test]` per conformance case, for a
/// harness type and a channel factory (`Fn(&Harness, ChannelOptions) -> impl PushChannel`: a
/// function name or a closure).
///
/// ```ignore
/// tidings_testkit::channel_conformance!(tidings_testkit::wns::WnsHarness, my_wns_channel);
/// // or, to run it twice in one file (say, for two configurations):
/// tidings_testkit::channel_conformance!(mod wns_entra, EntraHarness, my_wns_channel);
/// ```
///
/// The generated module imports `super::*`, so the factory may be a function of the invoking
/// module. Each test builds its own multi-threaded Tokio runtime (two workers, all drivers)
/// through `tidings_testkit::__private::tokio`, so the caller needs no Tokio dependency.
#[macro_export]
macro_rules! channel_conformance {
    (mod $module:ident, $harness:ty, $factory:expr $(,)?) => {
        mod $module {
            #[allow(unused_imports)]
            use super::*;

            $crate::channel_conformance!(@case $harness, $factory, accepted_push_returns_provider_message_id);
            $crate::channel_conformance!(@case $harness, $factory, gone_answers_classify_as_gone);
            $crate::channel_conformance!(@case $harness, $factory, misconfigured_answers_leave_the_endpoint_alone);
            $crate::channel_conformance!(@case $harness, $factory, retry_after_is_parsed_from_the_provider);
            $crate::channel_conformance!(@case $harness, $factory, payload_limit_is_enforced_before_sending);
            $crate::channel_conformance!(@case $harness, $factory, timeout_is_retryable);
            $crate::channel_conformance!(@case $harness, $factory, debug_output_hides_credentials);
            $crate::channel_conformance!(@case $harness, $factory, expiry_becomes_the_provider_ttl);
        }
    };
    (@case $harness:ty, $factory:expr, $case:ident) => {
        #[test]
        fn $case() {
            $crate::__private::tokio::runtime::Builder::new_multi_thread()
                .worker_threads(2)
                .enable_all()
                .build()
                .expect("a Tokio runtime for the conformance case")
                .block_on($crate::channel::$case::<$harness, _, _>($factory));
        }
    };
    ($harness:ty, $factory:expr $(,)?) => {
        $crate::channel_conformance!(mod channel_conformance, $harness, $factory);
    };
}
