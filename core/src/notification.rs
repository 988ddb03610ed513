//! Notifications and their per-user state.

use std::time::Duration;

use serde::{Deserialize, Serialize};

use crate::id::{AppId, NotificationId, UserId};
use crate::platform::PlatformSet;
use crate::time::Timestamp;

/// The longest a notification may live: 30 days.
pub const MAX_EXPIRY: Duration = Duration::from_secs(30 * 24 * 3600);
/// Shortest raw-to-visual fallback delay.
pub const MIN_FALLBACK_DELAY: Duration = Duration::from_secs(60);
/// Longest raw-to-visual fallback delay.
pub const MAX_FALLBACK_DELAY: Duration = Duration::from_secs(600);
/// Longest app notification id, title, group name: bytes.
pub const MAX_SHORT_TEXT: usize = 256;

/// How urgently a notification should reach the user.
#[derive(
    Clone, Copy, Debug, Default, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize,
)]
#[serde(rename_all = "lowercase")]
pub enum Priority {
    /// Deliver when convenient for the device's power.
    Low,
    /// The default.
    #[default]
    Normal,
    /// Deliver now, wake the device.
    High,
}

impl Priority {
    /// `low`, `normal` or `high`.
    pub const fn as_str(self) -> &'static str {
        match self {
            Priority::Low => "low",
            Priority::Normal => "normal",
            Priority::High => "high",
        }
    }
}

/// What the user sees.
#[derive(Clone, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct VisualContent {
    /// Required.
    pub title: String,
    /// Optional.
    #[serde(default)]
    pub body: Option<String>,
}

/// iOS raw-to-visual fallback: when an APNs endpoint has not fetched the notification within
/// `delay`, send it a visible alert with `visual`.
#[derive(Clone, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct FallbackPolicy {
    /// 60 to 600 seconds.
    #[serde(with = "crate::time::serde_secs")]
    pub delay: Duration,
    /// What the alert shows.
    pub visual: VisualContent,
}

/// Read state.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum ReadState {
    /// Not read yet.
    #[default]
    Unread,
    /// Read.
    Read,
}

/// What the user did with the notification.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum UserAction {
    /// Nothing yet.
    #[default]
    None,
    /// Opened it.
    Activated,
    /// Dismissed it (it stays in history until expiry).
    Dismissed,
    /// Snoozed it.
    Snoozed,
}

/// Whether the notification is live.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Status {
    /// Live.
    #[default]
    Active,
    /// Deleted by the user or host; kept (without being shown) until expiry so the change feed
    /// can tell other devices.
    Deleted,
}

/// The one copy of a notification's state, shared by all the user's devices.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct NotificationState {
    /// Read or unread.
    pub read: ReadState,
    /// The user's action.
    pub action: UserAction,
    /// Active or deleted.
    pub status: Status,
    /// When the state last changed (creation counts).
    pub changed_at: Timestamp,
}

/// A change to a notification's state; `None` leaves a part as it is.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct StatePatch {
    /// New read state.
    #[serde(default)]
    pub read: Option<ReadState>,
    /// New user action.
    #[serde(default)]
    pub action: Option<UserAction>,
    /// New status (`deleted` deletes).
    #[serde(default)]
    pub status: Option<Status>,
}

impl StatePatch {
    /// Mark read.
    pub fn read() -> Self {
        StatePatch {
            read: Some(ReadState::Read),
            ..StatePatch::default()
        }
    }

    /// Mark dismissed (and read).
    pub fn dismissed() -> Self {
        StatePatch {
            read: Some(ReadState::Read),
            action: Some(UserAction::Dismissed),
            status: None,
        }
    }

    /// Delete.
    pub fn deleted() -> Self {
        StatePatch {
            status: Some(Status::Deleted),
            ..StatePatch::default()
        }
    }

    /// Whether the patch changes nothing.
    pub fn is_empty(&self) -> bool {
        self.read.is_none() && self.action.is_none() && self.status.is_none()
    }

    /// `state` with this patch applied at `at`.
    pub fn apply(&self, state: NotificationState, at: Timestamp) -> NotificationState {
        NotificationState {
            read: self.read.unwrap_or(state.read),
            action: self.action.unwrap_or(state.action),
            status: self.status.unwrap_or(state.status),
            changed_at: at,
        }
    }
}

/// A stored notification, with its state.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Notification {
    /// Its id.
    pub id: NotificationId,
    /// The app.
    pub app: AppId,
    /// The user it is for.
    pub user: UserId,
    /// The host's id for it: the idempotency key within (app, user).
    pub app_notification_id: String,
    /// A group for bundling (thread id, tag).
    pub group: Option<String>,
    /// Priority.
    pub priority: Priority,
    /// When it was created.
    pub created_at: Timestamp,
    /// When it disappears from history; never sent after this.
    pub expires_at: Timestamp,
    /// How long the device's notification centre should keep showing it.
    #[serde(with = "crate::time::serde_opt_secs", default)]
    pub display_ttl: Option<Duration>,
    /// What the user sees, if anything.
    pub visual: Option<VisualContent>,
    /// App data, if any.
    pub raw: Option<String>,
    /// Platforms it is sent to.
    pub targets: PlatformSet,
    /// iOS raw-to-visual fallback, if any.
    pub fallback: Option<FallbackPolicy>,
    /// Its state.
    pub state: NotificationState,
    /// The user's change sequence number of the last change to it.
    pub sequence: u64,
}

impl Notification {
    /// Whether it has expired at `now`.
    pub fn is_expired(&self, now: Timestamp) -> bool {
        self.expires_at <= now
    }
}

/// What the host sends: build with [`NewNotification::new`] and its setters, then pass to
/// [`Tidings::send`](crate::Tidings::send), which validates it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct NewNotification {
    /// The app.
    pub app: AppId,
    /// The user.
    pub user: UserId,
    /// The host's id for it (idempotency key).
    pub app_notification_id: String,
    /// Group.
    #[serde(default)]
    pub group: Option<String>,
    /// Priority.
    #[serde(default)]
    pub priority: Priority,
    /// Absolute expiry; at most 30 days ahead. `expires_in` is the relative alternative.
    #[serde(default)]
    pub expires_at: Option<Timestamp>,
    /// Relative expiry; when both are unset, the app's default applies.
    #[serde(with = "crate::time::serde_opt_secs", default)]
    pub expires_in: Option<Duration>,
    /// Display TTL.
    #[serde(with = "crate::time::serde_opt_secs", default)]
    pub display_ttl: Option<Duration>,
    /// Visual content.
    #[serde(default)]
    pub visual: Option<VisualContent>,
    /// Raw content.
    #[serde(default)]
    pub raw: Option<String>,
    /// Target platforms; all when unset.
    #[serde(default)]
    pub targets: Option<PlatformSet>,
    /// iOS fallback.
    #[serde(default)]
    pub fallback: Option<FallbackPolicy>,
}

impl NewNotification {
    /// A notification for `user` of `app` with the host's idempotency key.
    pub fn new(
        app: impl Into<AppId>,
        user: impl Into<UserId>,
        app_notification_id: impl Into<String>,
    ) -> Self {
        NewNotification {
            app: app.into(),
            user: user.into(),
            app_notification_id: app_notification_id.into(),
            group: None,
            priority: Priority::Normal,
            expires_at: None,
            expires_in: None,
            display_ttl: None,
            visual: None,
            raw: None,
            targets: None,
            fallback: None,
        }
    }

    /// Sets the visible title.
    #[must_use]
    pub fn title(mut self, title: impl Into<String>) -> Self {
        let body = self.visual.take().and_then(|v| v.body);
        self.visual = Some(VisualContent {
            title: title.into(),
            body,
        });
        self
    }

    /// Sets the visible body (a title is still required).
    #[must_use]
    pub fn body(mut self, body: impl Into<String>) -> Self {
        let title = self.visual.take().map(|v| v.title).unwrap_or_default();
        self.visual = Some(VisualContent {
            title,
            body: Some(body.into()),
        });
        self
    }

    /// Sets raw app data.
    #[must_use]
    pub fn raw(mut self, raw: impl Into<String>) -> Self {
        self.raw = Some(raw.into());
        self
    }

    /// Sets the group.
    #[must_use]
    pub fn group(mut self, group: impl Into<String>) -> Self {
        self.group = Some(group.into());
        self
    }

    /// Sets the priority.
    #[must_use]
    pub fn priority(mut self, priority: Priority) -> Self {
        self.priority = priority;
        self
    }

    /// Expires this long after sending.
    #[must_use]
    pub fn expires_in(mut self, d: Duration) -> Self {
        self.expires_in = Some(d);
        self.expires_at = None;
        self
    }

    /// Expires at `t`.
    #[must_use]
    pub fn expires_at(mut self, t: Timestamp) -> Self {
        self.expires_at = Some(t);
        self.expires_in = None;
        self
    }

    /// Sets the display TTL.
    #[must_use]
    pub fn display_ttl(mut self, d: Duration) -> Self {
        self.display_ttl = Some(d);
        self
    }

    /// Restricts the target platforms.
    #[must_use]
    pub fn targets(mut self, targets: impl Into<PlatformSet>) -> Self {
        self.targets = Some(targets.into());
        self
    }

    /// Sets an iOS raw-to-visual fallback.
    #[must_use]
    pub fn fallback(
        mut self,
        delay: Duration,
        title: impl Into<String>,
        body: Option<String>,
    ) -> Self {
        self.fallback = Some(FallbackPolicy {
            delay,
            visual: VisualContent {
                title: title.into(),
                body,
            },
        });
        self
    }
}

impl From<crate::Platform> for PlatformSet {
    fn from(p: crate::Platform) -> Self {
        PlatformSet::only(p)
    }
}

impl<const N: usize> From<[crate::Platform; N]> for PlatformSet {
    fn from(ps: [crate::Platform; N]) -> Self {
        ps.into_iter().collect()
    }
}
