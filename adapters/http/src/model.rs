//! The JSON the client API takes and returns.
//!
//! Requests reuse the core's types where the core defines the shape (the push address, the state
//! patch), so the API accepts exactly what the core validates. Responses are views made for
//! devices: they leave out what only the host needs (targets, fallback policy, app and user,
//! which the caller already knows).

use serde::{Deserialize, Serialize};
use tidings::{
    Endpoint, EndpointId, Notification, NotificationId, NotificationState, Platform, Priority,
    PushAddress, ReadState, StatePatch, Status, Timestamp, UserAction, VisualContent,
};
use utoipa::ToSchema;

use crate::schema;

/// Body of `PUT /endpoints/{installation_id}`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct RegisterEndpointRequest {
    /// Where pushes to this installation go.
    #[schema(value_type = schema::PushAddress)]
    pub address: PushAddress,
    /// When the push address itself expires (WNS channels last 30 days), if the platform says.
    #[serde(default)]
    #[schema(value_type = Option<String>, format = DateTime)]
    pub address_expires_at: Option<Timestamp>,
}

/// A registered endpoint, as its device sees it. The push address is not echoed back.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[schema(as = Endpoint)]
pub struct EndpointView {
    /// The server's id of the endpoint.
    #[schema(value_type = String, format = Uuid)]
    pub id: EndpointId,
    /// The installation id it was registered under.
    pub installation_id: String,
    /// Its platform.
    #[schema(value_type = schema::Platform)]
    pub platform: Platform,
    /// Whether pushes are sent to it.
    pub active: bool,
    /// First registration.
    #[schema(value_type = String, format = DateTime)]
    #[serde(serialize_with = "crate::json::timestamp")]
    pub created_at: Timestamp,
    /// Last registration or refresh.
    #[schema(value_type = String, format = DateTime)]
    #[serde(serialize_with = "crate::json::timestamp")]
    pub last_seen_at: Timestamp,
    /// When the push address expires, if known.
    #[schema(value_type = Option<String>, format = DateTime)]
    #[serde(serialize_with = "crate::json::opt_timestamp")]
    pub address_expires_at: Option<Timestamp>,
}

impl EndpointView {
    pub(crate) fn new(endpoint: Endpoint, installation_id: String) -> Self {
        EndpointView {
            id: endpoint.id,
            installation_id: endpoint.installation_id.unwrap_or(installation_id),
            platform: endpoint.address.platform(),
            active: endpoint.active,
            created_at: endpoint.created_at,
            last_seen_at: endpoint.last_seen_at,
            address_expires_at: endpoint.address_expires_at,
        }
    }
}

/// The shared state of a notification: one copy for all the user's devices.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[schema(as = NotificationState)]
pub struct StateView {
    /// Read or unread.
    #[schema(value_type = schema::ReadState)]
    pub read: ReadState,
    /// What the user did with it.
    #[schema(value_type = schema::UserAction)]
    pub action: UserAction,
    /// `active`, or `deleted` (remove it from the device).
    #[schema(value_type = schema::Status)]
    pub status: Status,
    /// When the state last changed.
    #[schema(value_type = String, format = DateTime)]
    #[serde(serialize_with = "crate::json::timestamp")]
    pub changed_at: Timestamp,
}

impl From<NotificationState> for StateView {
    fn from(s: NotificationState) -> Self {
        StateView {
            read: s.read,
            action: s.action,
            status: s.status,
            changed_at: s.changed_at,
        }
    }
}

/// What the user sees.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[schema(as = VisualContent)]
pub struct VisualView {
    /// Title.
    pub title: String,
    /// Body, if any.
    #[serde(default)]
    pub body: Option<String>,
}

impl From<VisualContent> for VisualView {
    fn from(v: VisualContent) -> Self {
        VisualView {
            title: v.title,
            body: v.body,
        }
    }
}

/// A notification, as its user's devices see it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[schema(as = Notification)]
pub struct NotificationView {
    /// Its id (what pushes carry).
    #[schema(value_type = String, format = Uuid)]
    pub id: NotificationId,
    /// The host's id for it.
    pub app_notification_id: String,
    /// Group for bundling (thread id, tag).
    pub group: Option<String>,
    /// Priority.
    #[schema(value_type = schema::Priority)]
    pub priority: Priority,
    /// When it was sent.
    #[schema(value_type = String, format = DateTime)]
    #[serde(serialize_with = "crate::json::timestamp")]
    pub created_at: Timestamp,
    /// When it disappears from history.
    #[schema(value_type = String, format = DateTime)]
    #[serde(serialize_with = "crate::json::timestamp")]
    pub expires_at: Timestamp,
    /// How long the notification centre should keep showing it, in seconds.
    pub display_ttl: Option<u64>,
    /// What the user sees, if anything.
    pub visual: Option<VisualView>,
    /// App data, if any.
    pub raw: Option<String>,
    /// The shared state.
    pub state: StateView,
    /// The user's change sequence at its last change.
    pub sequence: u64,
}

impl From<Notification> for NotificationView {
    fn from(n: Notification) -> Self {
        NotificationView {
            id: n.id,
            app_notification_id: n.app_notification_id,
            group: n.group,
            priority: n.priority,
            created_at: n.created_at,
            expires_at: n.expires_at,
            display_ttl: n.display_ttl.map(|d| d.as_secs()),
            visual: n.visual.map(VisualView::from),
            raw: n.raw,
            state: n.state.into(),
            sequence: n.sequence,
        }
    }
}

/// A page of history, newest first.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[schema(as = HistoryPage)]
pub struct HistoryPageView {
    /// The notifications.
    pub items: Vec<NotificationView>,
    /// Pass as `cursor` to get the next page; absent on the last page.
    pub next_cursor: Option<String>,
}

/// A page of the change feed, oldest change first.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[schema(as = ChangePage)]
pub struct ChangePageView {
    /// Each changed notification once, in its latest state (`state.status` = `deleted`: remove
    /// it).
    pub changes: Vec<NotificationView>,
    /// Pass as `since` to continue; store it once the page is applied.
    pub next_since: u64,
    /// Whether more changes follow right away.
    pub more: bool,
}

/// Body of `POST /notifications/state`: one patch for many notifications.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct BulkStateRequest {
    /// The notifications (1 to the configured maximum, 500 by default; duplicates count once).
    #[schema(value_type = Vec<String>)]
    pub ids: Vec<NotificationId>,
    /// What changes.
    #[schema(value_type = schema::StatePatch)]
    pub patch: StatePatch,
}

/// One notification's state after a bulk update.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct StateChange {
    /// The notification.
    #[schema(value_type = String, format = Uuid)]
    pub id: NotificationId,
    /// Its state now.
    pub state: StateView,
    /// The user's change sequence at its last change.
    pub sequence: u64,
}

/// Result of `POST /notifications/state`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct BulkStateResult {
    /// The notifications found, in request order, with their state now.
    pub updated: Vec<StateChange>,
    /// Ids that name no notification of the caller (never existed, expired, or someone
    /// else's: the three look alike).
    #[schema(value_type = Vec<String>)]
    pub not_found: Vec<NotificationId>,
}
