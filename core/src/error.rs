//! Errors: each has a kind and a retry classification.
//!
//! - [`ValidationError`]: bad input, naming the field.
//! - [`StoreError`]: what a [`Store`](crate::Store) reports.
//! - [`PushError`]: what a [`PushChannel`](crate::PushChannel) reports, which tells the dispatcher
//!   what to do with the delivery and the endpoint.
//! - [`IdentityError`]: what an [`Identity`](crate::Identity) reports.
//! - [`Error`]: what the [`Tidings`](crate::Tidings) handle returns; it wraps the others.

use std::borrow::Cow;
use std::error::Error as StdError;
use std::fmt;
use std::time::Duration;

/// A boxed error cause kept in `source()`.
pub type BoxError = Box<dyn StdError + Send + Sync + 'static>;

/// Whether and when an operation that failed may be tried again.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Retry {
    /// Never: trying again cannot succeed.
    Never,
    /// Yes, after an exponential backoff chosen by the caller.
    Backoff,
    /// Yes, but not before this long (a provider's `Retry-After` and the like).
    After(Duration),
}

impl Retry {
    /// Whether a retry can help.
    pub fn is_retryable(self) -> bool {
        !matches!(self, Retry::Never)
    }
}

/// Bad input: which field, and why.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("invalid {field}: {reason}")]
pub struct ValidationError {
    field: Cow<'static, str>,
    reason: String,
}

impl ValidationError {
    /// A validation error for `field`.
    pub fn new(field: impl Into<Cow<'static, str>>, reason: impl Into<String>) -> Self {
        ValidationError {
            field: field.into(),
            reason: reason.into(),
        }
    }

    /// The offending field, as a path such as `address.p256dh` or `expires_at`.
    pub fn field(&self) -> &str {
        &self.field
    }

    /// Why the value was refused.
    pub fn reason(&self) -> &str {
        &self.reason
    }

    /// The same error with its field nested under `parent` (`p256dh` → `address.p256dh`).
    #[must_use]
    pub fn within(self, parent: &str) -> Self {
        ValidationError {
            field: format!("{parent}.{}", self.field).into(),
            reason: self.reason,
        }
    }
}

/// What kind of failure a [`StoreError`] is.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum StoreErrorKind {
    /// The item does not exist, or belongs to another user or app (the two are indistinguishable
    /// on purpose).
    NotFound,
    /// A uniqueness or state conflict.
    Conflict,
    /// The store is unreachable or overloaded (connection lost, pool timeout, …).
    Unavailable,
    /// The store's data or schema is not what this code expects.
    Corrupt,
    /// Any other failure.
    Other,
}

/// A failure reported by a [`Store`](crate::Store).
#[derive(Debug, thiserror::Error)]
#[error("store error ({kind:?}): {message}")]
pub struct StoreError {
    kind: StoreErrorKind,
    retry: Retry,
    message: String,
    #[source]
    source: Option<BoxError>,
}

impl StoreError {
    /// An error of `kind`; unavailability is retryable with backoff, everything else is not.
    pub fn new(kind: StoreErrorKind, message: impl Into<String>) -> Self {
        let retry = match kind {
            StoreErrorKind::Unavailable => Retry::Backoff,
            _ => Retry::Never,
        };
        StoreError {
            kind,
            retry,
            message: message.into(),
            source: None,
        }
    }

    /// "Not found" for `what`.
    pub fn not_found(what: impl fmt::Display) -> Self {
        StoreError::new(StoreErrorKind::NotFound, format!("{what} not found"))
    }

    /// "Unavailable", retryable.
    pub fn unavailable(message: impl Into<String>) -> Self {
        StoreError::new(StoreErrorKind::Unavailable, message)
    }

    /// The same error with its cause attached.
    #[must_use]
    pub fn with_source(mut self, source: impl Into<BoxError>) -> Self {
        self.source = Some(source.into());
        self
    }

    /// The same error with another retry classification.
    #[must_use]
    pub fn with_retry(mut self, retry: Retry) -> Self {
        self.retry = retry;
        self
    }

    /// The kind.
    pub fn kind(&self) -> StoreErrorKind {
        self.kind
    }

    /// The retry classification.
    pub fn retry(&self) -> Retry {
        self.retry
    }

    /// What went wrong, without the kind.
    pub fn message(&self) -> &str {
        &self.message
    }

    /// Whether trying again may help.
    pub fn is_retryable(&self) -> bool {
        self.retry.is_retryable()
    }

    /// Whether this is "not found".
    pub fn is_not_found(&self) -> bool {
        self.kind == StoreErrorKind::NotFound
    }
}

/// What a failed push means for the delivery and the endpoint.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum PushErrorKind {
    /// The push address is dead (uninstalled app, expired token or channel): deactivate the
    /// endpoint and never send to it again.
    EndpointGone,
    /// This message can never succeed (malformed, refused by policy).
    Rejected,
    /// The rendered payload exceeds the platform's limit; nothing was sent.
    PayloadTooLarge,
    /// Our credentials or configuration are wrong: alert the operator, leave endpoints alone.
    Misconfigured,
    /// The provider asked us to slow down.
    Throttled,
    /// The provider is failing or unreachable.
    Unavailable,
    /// The attempt did not finish in time.
    Timeout,
}

/// A failed push, as classified by a [`PushChannel`](crate::PushChannel).
#[derive(Debug, thiserror::Error)]
#[error("push error ({kind:?}): {message}")]
pub struct PushError {
    kind: PushErrorKind,
    retry: Retry,
    message: String,
    reason: Option<String>,
    #[source]
    source: Option<BoxError>,
}

impl PushError {
    /// An error of `kind` with its default retry classification: throttled, unavailable,
    /// timeout and misconfigured retry with backoff (an operator may fix credentials before the
    /// notification expires); gone, rejected and too large never retry.
    pub fn new(kind: PushErrorKind, message: impl Into<String>) -> Self {
        let retry = match kind {
            PushErrorKind::Throttled
            | PushErrorKind::Unavailable
            | PushErrorKind::Timeout
            | PushErrorKind::Misconfigured => Retry::Backoff,
            _ => Retry::Never,
        };
        PushError {
            kind,
            retry,
            message: message.into(),
            reason: None,
            source: None,
        }
    }

    /// The endpoint is gone.
    pub fn gone(message: impl Into<String>) -> Self {
        PushError::new(PushErrorKind::EndpointGone, message)
    }

    /// The message is refused for good.
    pub fn rejected(message: impl Into<String>) -> Self {
        PushError::new(PushErrorKind::Rejected, message)
    }

    /// The payload is `size` bytes, over the platform's `limit`.
    pub fn payload_too_large(size: usize, limit: usize) -> Self {
        PushError::new(
            PushErrorKind::PayloadTooLarge,
            format!("payload is {size} bytes, the platform allows {limit}"),
        )
    }

    /// Our credentials or configuration are wrong; retried with backoff, endpoints untouched.
    pub fn misconfigured(message: impl Into<String>) -> Self {
        PushError::new(PushErrorKind::Misconfigured, message)
    }

    /// The provider is unavailable; retry with backoff.
    pub fn unavailable(message: impl Into<String>) -> Self {
        PushError::new(PushErrorKind::Unavailable, message)
    }

    /// The provider throttles us; retry after `after` when it said so.
    pub fn throttled(message: impl Into<String>, after: Option<Duration>) -> Self {
        let mut e = PushError::new(PushErrorKind::Throttled, message);
        if let Some(d) = after {
            e.retry = Retry::After(d);
        }
        e
    }

    /// The attempt timed out; retryable.
    pub fn timeout(message: impl Into<String>) -> Self {
        PushError::new(PushErrorKind::Timeout, message)
    }

    /// The same error with another retry classification.
    #[must_use]
    pub fn with_retry(mut self, retry: Retry) -> Self {
        self.retry = retry;
        self
    }

    /// The same error with the provider's reason string (e.g. `Unregistered`, `UNREGISTERED`).
    #[must_use]
    pub fn with_reason(mut self, reason: impl Into<String>) -> Self {
        self.reason = Some(reason.into());
        self
    }

    /// The same error with its cause attached.
    #[must_use]
    pub fn with_source(mut self, source: impl Into<BoxError>) -> Self {
        self.source = Some(source.into());
        self
    }

    /// The kind.
    pub fn kind(&self) -> PushErrorKind {
        self.kind
    }

    /// The retry classification.
    pub fn retry(&self) -> Retry {
        self.retry
    }

    /// The provider's reason string, when it gave one.
    pub fn reason(&self) -> Option<&str> {
        self.reason.as_deref()
    }

    /// The human-readable message.
    pub fn message(&self) -> &str {
        &self.message
    }

    /// Whether trying again may help.
    pub fn is_retryable(&self) -> bool {
        self.retry.is_retryable()
    }

    /// Whether the endpoint should be deactivated.
    pub fn endpoint_gone(&self) -> bool {
        self.kind == PushErrorKind::EndpointGone
    }

    /// Whether our own configuration is at fault.
    pub fn is_misconfigured(&self) -> bool {
        self.kind == PushErrorKind::Misconfigured
    }
}

/// What kind of failure an [`IdentityError`] is.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum IdentityErrorKind {
    /// No credential was presented.
    Missing,
    /// The credential is unknown, malformed or badly signed.
    Invalid,
    /// The credential has expired (or is not valid yet).
    Expired,
    /// The identity provider could not be reached; retryable.
    Unavailable,
}

/// A failed authentication.
#[derive(Debug, thiserror::Error)]
#[error("authentication failed ({kind:?}): {message}")]
pub struct IdentityError {
    kind: IdentityErrorKind,
    message: String,
    #[source]
    source: Option<BoxError>,
}

impl IdentityError {
    /// An error of `kind`.
    pub fn new(kind: IdentityErrorKind, message: impl Into<String>) -> Self {
        IdentityError {
            kind,
            message: message.into(),
            source: None,
        }
    }

    /// The same error with its cause attached.
    #[must_use]
    pub fn with_source(mut self, source: impl Into<BoxError>) -> Self {
        self.source = Some(source.into());
        self
    }

    /// Why authentication failed, without the kind prefix of `Display` (safe to show a client:
    /// identity adapters never put credentials in it).
    pub fn message(&self) -> &str {
        &self.message
    }

    /// The kind.
    pub fn kind(&self) -> IdentityErrorKind {
        self.kind
    }

    /// Whether trying again may help.
    pub fn is_retryable(&self) -> bool {
        self.kind == IdentityErrorKind::Unavailable
    }
}

/// What kind of failure an [`Error`] from the [`Tidings`](crate::Tidings) handle is.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum ErrorKind {
    /// Bad input; [`Error::field`] names the field.
    InvalidInput,
    /// No such item for this user and app.
    NotFound,
    /// A conflicting concurrent change.
    Conflict,
    /// Authentication failed.
    Unauthenticated,
    /// A dependency (store, identity provider) is unavailable; retryable.
    Unavailable,
    /// Anything else.
    Internal,
}

/// The error type of the [`Tidings`](crate::Tidings) handle.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// Bad input.
    #[error(transparent)]
    Invalid(#[from] ValidationError),
    /// The store failed.
    #[error(transparent)]
    Store(#[from] StoreError),
    /// Authentication failed.
    #[error(transparent)]
    Identity(#[from] IdentityError),
}

impl Error {
    /// The kind.
    pub fn kind(&self) -> ErrorKind {
        match self {
            Error::Invalid(_) => ErrorKind::InvalidInput,
            Error::Store(e) => match e.kind() {
                StoreErrorKind::NotFound => ErrorKind::NotFound,
                StoreErrorKind::Conflict => ErrorKind::Conflict,
                StoreErrorKind::Unavailable => ErrorKind::Unavailable,
                _ => ErrorKind::Internal,
            },
            Error::Identity(e) => match e.kind() {
                IdentityErrorKind::Unavailable => ErrorKind::Unavailable,
                _ => ErrorKind::Unauthenticated,
            },
        }
    }

    /// For [`ErrorKind::InvalidInput`], the offending field.
    pub fn field(&self) -> Option<&str> {
        match self {
            Error::Invalid(v) => Some(v.field()),
            _ => None,
        }
    }

    /// Whether trying again may help.
    pub fn is_retryable(&self) -> bool {
        match self {
            Error::Invalid(_) => false,
            Error::Store(e) => e.is_retryable(),
            Error::Identity(e) => e.is_retryable(),
        }
    }

    /// Whether this is "not found".
    pub fn is_not_found(&self) -> bool {
        self.kind() == ErrorKind::NotFound
    }
}
