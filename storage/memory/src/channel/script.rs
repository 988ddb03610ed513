//! What a [`RecordingChannel`](super::RecordingChannel) is told to answer, and what it records.

use std::time::Duration;

use tidings::{EndpointId, Push, PushError, PushErrorKind, Retry};

/// An answer to script for a push, with [`RecordingChannel::script`] and friends.
///
/// [`RecordingChannel::script`]: super::RecordingChannel::script
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Scripted {
    /// The provider accepts the push (the default).
    Accept,
    /// The endpoint is gone ([`PushError::gone`], reason `Unregistered`): the dispatcher
    /// deactivates it.
    Gone,
    /// The provider throttles and says when to come back ([`PushError::throttled`] with
    /// `Some(duration)`).
    RetryAfter(Duration),
    /// The provider refuses this message for good ([`PushError::rejected`]).
    Reject,
    /// Our credentials are wrong ([`PushError::misconfigured`]); endpoints are left alone.
    Misconfigured,
    /// The provider is down ([`PushError::unavailable`]); retried with backoff.
    Unavailable,
    /// The provider takes this long (a `tokio::time::sleep`), then accepts. Lets a test abort a
    /// dispatcher in the middle of a push.
    Delay(Duration),
}

impl Scripted {
    /// The error this answer stands for, or `None` for an acceptance.
    pub(crate) fn error(self) -> Option<PushError> {
        match self {
            Scripted::Accept | Scripted::Delay(_) => None,
            Scripted::Gone => Some(
                PushError::gone("the device is no longer registered").with_reason("Unregistered"),
            ),
            Scripted::RetryAfter(after) => Some(
                PushError::throttled("too many requests", Some(after))
                    .with_reason("TooManyRequests"),
            ),
            Scripted::Reject => Some(PushError::rejected("the provider refused the message")),
            Scripted::Misconfigured => Some(PushError::misconfigured(
                "the provider refused our credentials",
            )),
            Scripted::Unavailable => Some(PushError::unavailable("the provider is unavailable")),
        }
    }
}

/// What a [`RecordingChannel`](super::RecordingChannel) answered to one push.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Answer {
    /// Accepted, with this provider message id.
    Accepted {
        /// The message id the channel made up (`recorded-<n>`).
        provider_message_id: String,
    },
    /// Failed.
    Failed {
        /// How ([`PushError::kind`]).
        kind: PushErrorKind,
        /// Whether and when the dispatcher may retry ([`PushError::retry`]).
        retry: Retry,
        /// The provider reason, if any ([`PushError::reason`]).
        reason: Option<String>,
    },
}

impl Answer {
    pub(crate) fn of(result: &Result<tidings::Accepted, PushError>) -> Answer {
        match result {
            Ok(accepted) => Answer::Accepted {
                provider_message_id: accepted.provider_message_id.clone().unwrap_or_default(),
            },
            Err(e) => Answer::Failed {
                kind: e.kind(),
                retry: e.retry(),
                reason: e.reason().map(str::to_owned),
            },
        }
    }
}

/// One push a [`RecordingChannel`](super::RecordingChannel) was given, and its answer.
#[derive(Clone, Debug)]
pub struct RecordedPush {
    /// The push, as the dispatcher rendered it.
    pub push: Push,
    /// What the channel answered.
    pub answer: Answer,
}

impl RecordedPush {
    /// Whether the channel accepted it.
    pub fn is_accepted(&self) -> bool {
        matches!(self.answer, Answer::Accepted { .. })
    }

    /// The endpoint it went to.
    pub fn endpoint_id(&self) -> EndpointId {
        self.push.endpoint.id
    }

    /// The kind of failure, when it failed.
    pub fn error_kind(&self) -> Option<PushErrorKind> {
        match &self.answer {
            Answer::Accepted { .. } => None,
            Answer::Failed { kind, .. } => Some(*kind),
        }
    }
}
