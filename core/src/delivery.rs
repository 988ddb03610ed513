//! Deliveries: the durable outbox rows the dispatcher works through.

use std::sync::Arc;

use serde::{Deserialize, Serialize};

use crate::endpoint::Endpoint;
use crate::id::{AppId, DeliveryId, EndpointId, LeaseToken, NotificationId, UserId};
use crate::notification::Notification;
use crate::time::Timestamp;

/// What a delivery carries.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum DeliveryKind {
    /// A notification to one of the user's endpoints.
    Notification,
    /// A silent signal telling a device to sync state ("dismissed elsewhere").
    Sync,
    /// The visible iOS alert sent when a raw notification was not fetched in time.
    FallbackAlert,
}

impl DeliveryKind {
    /// `notification`, `sync` or `fallback_alert`.
    pub const fn as_str(self) -> &'static str {
        match self {
            DeliveryKind::Notification => "notification",
            DeliveryKind::Sync => "sync",
            DeliveryKind::FallbackAlert => "fallback_alert",
        }
    }
}

/// One pending push to one endpoint.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Delivery {
    /// Its id.
    pub id: DeliveryId,
    /// The app.
    pub app: AppId,
    /// The user.
    pub user: UserId,
    /// The endpoint it goes to.
    pub endpoint_id: EndpointId,
    /// The notification, for [`DeliveryKind::Notification`] and [`DeliveryKind::FallbackAlert`].
    pub notification_id: Option<NotificationId>,
    /// What it carries.
    pub kind: DeliveryKind,
    /// The user's change sequence the push announces.
    pub sequence: u64,
    /// Attempts started so far, counting the current one once leased.
    pub attempt: u32,
    /// When it is due.
    pub next_attempt_at: Timestamp,
    /// After this it is never sent.
    pub expires_at: Timestamp,
}

/// A delivery leased to one dispatcher, with what it needs to render the push.
#[derive(Clone, Debug)]
pub struct LeasedDelivery {
    /// The delivery; `attempt` counts this attempt.
    pub delivery: Delivery,
    /// The lease; outcomes must present it.
    pub lease: LeaseToken,
    /// When the lease lapses and another dispatcher may take the delivery.
    pub lease_until: Timestamp,
    /// The endpoint, as stored at lease time.
    pub endpoint: Arc<Endpoint>,
    /// The notification (none for sync signals).
    pub notification: Option<Arc<Notification>>,
}

/// What happened to one leased delivery.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Outcome {
    /// The provider accepted the push. The delivery is finished.
    Accepted {
        /// The provider's message id.
        provider_message_id: Option<String>,
    },
    /// Try again at `at`; the lease is released.
    Retry {
        /// When.
        at: Timestamp,
        /// Why the attempt failed.
        error: String,
    },
    /// Give up on this delivery. It is finished.
    Failed {
        /// Why.
        error: String,
    },
    /// The endpoint is gone: finish this delivery, deactivate the endpoint (only if its address
    /// is still `address_key`, so a fresh re-registration is not undone) and drop its pending
    /// deliveries, including any that a [`Retry`](Outcome::Retry) in the same batch would have
    /// rescheduled: an inactive endpoint keeps no pending work, even if the device registers
    /// again.
    EndpointGone {
        /// The provider's reason.
        reason: String,
        /// [`PushAddress::key`](crate::PushAddress::key) of the address the push went to.
        address_key: String,
    },
}

/// The outcome of one leased delivery, reported to the store.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct DeliveryOutcome {
    /// The delivery.
    pub delivery: DeliveryId,
    /// The lease it was sent under; a store ignores the outcome when the lease was retaken.
    pub lease: LeaseToken,
    /// The endpoint it went to.
    pub endpoint: EndpointId,
    /// What happened.
    pub outcome: Outcome,
    /// When.
    pub at: Timestamp,
}
