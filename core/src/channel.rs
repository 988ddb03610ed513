//! The [`PushChannel`] trait: one vendor push protocol.

use std::fmt;
use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use serde::{Deserialize, Serialize};

use crate::delivery::DeliveryKind;
use crate::endpoint::Endpoint;
use crate::error::PushError;
use crate::id::{AppId, DeliveryId, NotificationId};
use crate::notification::{Priority, VisualContent};
use crate::platform::Platform;
use crate::time::Timestamp;

/// What a channel can do, reported by [`PushChannel::capabilities`].
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ChannelCapabilities {
    /// Largest payload the provider accepts, in bytes, as the channel measures it.
    pub max_payload_bytes: usize,
    /// Whether silent (background) pushes exist on this platform.
    pub silent_push: bool,
    /// Whether a later push can replace an earlier one on the device (collapse id, tag, topic).
    pub collapse: bool,
}

/// What a push shows or carries.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "mode", rename_all = "snake_case")]
pub enum PushContent {
    /// Only ids travel (push-to-pull): the device fetches the content over the client API.
    /// `alert` is the app's generic placeholder text for a visible alert (the app's extension
    /// replaces it after fetching), or `None` for a silent push.
    Tap {
        /// Placeholder alert, or none for silent.
        alert: Option<VisualContent>,
    },
    /// The content travels in the push.
    Inline {
        /// Visible content, if any.
        visual: Option<VisualContent>,
        /// App data, if any.
        raw: Option<String>,
    },
}

impl PushContent {
    /// Whether the push should show something to the user.
    pub fn is_visible(&self) -> bool {
        match self {
            PushContent::Tap { alert } => alert.is_some(),
            PushContent::Inline { visual, .. } => visual.is_some(),
        }
    }
}

/// A platform-neutral push to one endpoint: what the dispatcher hands a channel.
#[derive(Clone, Debug)]
pub struct Push {
    /// The delivery it comes from.
    pub delivery_id: DeliveryId,
    /// What it carries.
    pub kind: DeliveryKind,
    /// The app (channels pick credentials by it).
    pub app: AppId,
    /// The endpoint it goes to.
    pub endpoint: Arc<Endpoint>,
    /// The notification, except for sync signals.
    pub notification_id: Option<NotificationId>,
    /// The user's change sequence it announces.
    pub sequence: u64,
    /// Priority (sync signals are [`Priority::Low`]: APNs background pushes must use 5).
    pub priority: Priority,
    /// Pushes with the same collapse id replace each other on the device. At most 64 bytes.
    pub collapse_id: String,
    /// The notification's group.
    pub group: Option<String>,
    /// How long the device should show it.
    pub display_ttl: Option<Duration>,
    /// When the push stops mattering; channels turn it into the provider's TTL/expiration.
    pub expires_at: Timestamp,
    /// When this attempt is made: TTLs are `expires_at - sent_at`, so retries shrink them.
    pub sent_at: Timestamp,
    /// Which attempt this is (1-based).
    pub attempt: u32,
    /// Content.
    pub content: PushContent,
}

impl Push {
    /// Time to live at `sent_at`, in whole seconds (zero once expired).
    pub fn ttl(&self) -> Duration {
        Duration::from_secs(self.expires_at.since(self.sent_at).as_secs())
    }

    /// Whether the push is silent (a background/data/raw push).
    pub fn is_silent(&self) -> bool {
        !self.content.is_visible()
    }
}

/// A push the provider accepted (accepted is not delivered: providers store and forward).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Accepted {
    /// The provider's message id (`apns-id`, FCM `name`, `X-WNS-Msg-ID`, Web Push `Location`).
    pub provider_message_id: Option<String>,
}

/// One vendor push protocol.
///
/// Implementations render a [`Push`] into their protocol and send it to one endpoint; the
/// result says what to do next through [`PushError`]'s kind and retry classification: retry
/// (maybe after a given time), endpoint gone (deactivate it), rejected (never succeeds),
/// payload too large (checked before any request), or misconfigured (credentials; endpoints are
/// left alone). Credentials must never appear in `Debug` output or logs.
#[cfg_attr(feature = "mock", mockall::automock)]
#[async_trait]
pub trait PushChannel: Send + Sync + fmt::Debug + 'static {
    /// The platform this channel serves.
    fn platform(&self) -> Platform;

    /// What it can do.
    fn capabilities(&self) -> ChannelCapabilities;

    /// Sends one push.
    async fn send(&self, push: &Push) -> Result<Accepted, PushError>;
}
