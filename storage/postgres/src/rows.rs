//! Rows as PostgreSQL returns them, and their conversion to the core model.

use std::sync::Arc;
use std::time::Duration;

use diesel::pg::data_types::PgTimestamp;
use diesel::sql_types::{
    BigInt, Bool, Integer, Nullable, SmallInt, Text, Timestamptz, Uuid as SqlUuid,
};
use diesel::QueryableByName;
use tidings::{
    AppId, Delivery, DeliveryId, DeliveryKind, Endpoint, EndpointId, FallbackPolicy, LeaseToken,
    LeasedDelivery, Notification, NotificationId, NotificationState, Platform, PlatformSet,
    Priority, PushAddress, ReadState, Status, StoreError, UserAction, UserId, VisualContent,
};
use uuid::Uuid;

use crate::error::corrupt;
use crate::sql::from_ts;

/// Every endpoint column, in the order [`EndpointRow`] reads them.
pub(crate) const ENDPOINT_COLUMNS: &str = "e.id, e.app, e.user_id, e.installation_id, e.address, \
     e.active, e.created_at, e.last_seen_at, e.address_expires_at, e.deactivation_reason";

/// Every notification column.
pub(crate) const NOTIFICATION_COLUMNS: &str = "n.id, n.app, n.user_id, n.app_notification_id, \
     n.grp, n.priority, n.created_at, n.expires_at, n.display_ttl_ns, n.visual_title, \
     n.visual_body, n.raw, n.targets, n.fallback_delay_ns, n.fallback_title, n.fallback_body, \
     n.read, n.action, n.status, n.changed_at, n.sequence";

#[derive(Debug, QueryableByName)]
pub(crate) struct EndpointRow {
    #[diesel(sql_type = SqlUuid)]
    id: Uuid,
    #[diesel(sql_type = Text)]
    app: String,
    #[diesel(sql_type = Text)]
    user_id: String,
    #[diesel(sql_type = Nullable<Text>)]
    installation_id: Option<String>,
    #[diesel(sql_type = Text)]
    address: String,
    #[diesel(sql_type = Bool)]
    active: bool,
    #[diesel(sql_type = Timestamptz)]
    created_at: PgTimestamp,
    #[diesel(sql_type = Timestamptz)]
    last_seen_at: PgTimestamp,
    #[diesel(sql_type = Nullable<Timestamptz>)]
    address_expires_at: Option<PgTimestamp>,
    #[diesel(sql_type = Nullable<Text>)]
    deactivation_reason: Option<String>,
}

impl EndpointRow {
    pub(crate) fn into_endpoint(self) -> Result<Endpoint, StoreError> {
        let address: PushAddress = serde_json::from_str(&self.address)
            .map_err(|e| corrupt(format!("endpoint {} address: {e}", self.id)))?;
        Ok(Endpoint {
            id: EndpointId::from_uuid(self.id),
            app: AppId::from(self.app),
            user: UserId::from(self.user_id),
            installation_id: self.installation_id,
            address,
            active: self.active,
            created_at: from_ts(self.created_at),
            last_seen_at: from_ts(self.last_seen_at),
            address_expires_at: self.address_expires_at.map(from_ts),
            deactivation_reason: self.deactivation_reason,
        })
    }
}

#[derive(Debug, QueryableByName)]
pub(crate) struct NotificationRow {
    #[diesel(sql_type = SqlUuid)]
    id: Uuid,
    #[diesel(sql_type = Text)]
    app: String,
    #[diesel(sql_type = Text)]
    user_id: String,
    #[diesel(sql_type = Text)]
    app_notification_id: String,
    #[diesel(sql_type = Nullable<Text>)]
    grp: Option<String>,
    #[diesel(sql_type = Text)]
    priority: String,
    #[diesel(sql_type = Timestamptz)]
    created_at: PgTimestamp,
    #[diesel(sql_type = Timestamptz)]
    expires_at: PgTimestamp,
    #[diesel(sql_type = Nullable<BigInt>)]
    display_ttl_ns: Option<i64>,
    #[diesel(sql_type = Nullable<Text>)]
    visual_title: Option<String>,
    #[diesel(sql_type = Nullable<Text>)]
    visual_body: Option<String>,
    #[diesel(sql_type = Nullable<Text>)]
    raw: Option<String>,
    #[diesel(sql_type = SmallInt)]
    targets: i16,
    #[diesel(sql_type = Nullable<BigInt>)]
    fallback_delay_ns: Option<i64>,
    #[diesel(sql_type = Nullable<Text>)]
    fallback_title: Option<String>,
    #[diesel(sql_type = Nullable<Text>)]
    fallback_body: Option<String>,
    #[diesel(sql_type = Text)]
    read: String,
    #[diesel(sql_type = Text)]
    action: String,
    #[diesel(sql_type = Text)]
    status: String,
    #[diesel(sql_type = Timestamptz)]
    changed_at: PgTimestamp,
    #[diesel(sql_type = BigInt)]
    sequence: i64,
}

impl NotificationRow {
    pub(crate) fn into_notification(self) -> Result<Notification, StoreError> {
        let fallback = match (self.fallback_delay_ns, self.fallback_title) {
            (Some(ns), Some(title)) => Some(FallbackPolicy {
                delay: duration_from_ns(ns)?,
                visual: VisualContent {
                    title,
                    body: self.fallback_body,
                },
            }),
            _ => None,
        };
        Ok(Notification {
            id: NotificationId::from_uuid(self.id),
            app: AppId::from(self.app),
            user: UserId::from(self.user_id),
            app_notification_id: self.app_notification_id,
            group: self.grp,
            priority: priority_from(&self.priority)?,
            created_at: from_ts(self.created_at),
            expires_at: from_ts(self.expires_at),
            display_ttl: self.display_ttl_ns.map(duration_from_ns).transpose()?,
            visual: self.visual_title.map(|title| VisualContent {
                title,
                body: self.visual_body,
            }),
            raw: self.raw,
            targets: PlatformSet::from_bits(u8::try_from(self.targets).map_err(corrupt)?),
            fallback,
            state: NotificationState {
                read: read_from(&self.read)?,
                action: action_from(&self.action)?,
                status: status_from(&self.status)?,
                changed_at: from_ts(self.changed_at),
            },
            sequence: u64::try_from(self.sequence).map_err(corrupt)?,
        })
    }
}

/// The delivery columns of a lease, prefixed `d_` so they can sit next to an endpoint's.
#[derive(Debug, QueryableByName)]
pub(crate) struct LeasedRow {
    #[diesel(sql_type = SqlUuid)]
    d_id: Uuid,
    #[diesel(sql_type = Text)]
    d_app: String,
    #[diesel(sql_type = Text)]
    d_user_id: String,
    #[diesel(sql_type = Nullable<SqlUuid>)]
    d_notification_id: Option<Uuid>,
    #[diesel(sql_type = Text)]
    d_kind: String,
    #[diesel(sql_type = BigInt)]
    d_sequence: i64,
    #[diesel(sql_type = Integer)]
    d_attempt: i32,
    #[diesel(sql_type = Timestamptz)]
    d_due: PgTimestamp,
    #[diesel(sql_type = Timestamptz)]
    d_expires_at: PgTimestamp,
    #[diesel(sql_type = SqlUuid)]
    d_lease_token: Uuid,
    #[diesel(sql_type = Timestamptz)]
    d_lease_until: PgTimestamp,
    #[diesel(embed)]
    endpoint: EndpointRow,
}

impl LeasedRow {
    /// The notification the delivery needs, if any.
    pub(crate) fn notification_id(&self) -> Option<Uuid> {
        self.d_notification_id
    }

    pub(crate) fn into_leased(
        self,
        notification: Option<Arc<Notification>>,
    ) -> Result<LeasedDelivery, StoreError> {
        let endpoint = self.endpoint.into_endpoint()?;
        Ok(LeasedDelivery {
            delivery: Delivery {
                id: DeliveryId::from_uuid(self.d_id),
                app: AppId::from(self.d_app),
                user: UserId::from(self.d_user_id),
                endpoint_id: endpoint.id,
                notification_id: self.d_notification_id.map(NotificationId::from_uuid),
                kind: kind_from(&self.d_kind)?,
                sequence: u64::try_from(self.d_sequence).map_err(corrupt)?,
                attempt: u32::try_from(self.d_attempt).map_err(corrupt)?,
                next_attempt_at: from_ts(self.d_due),
                expires_at: from_ts(self.d_expires_at),
            },
            lease: LeaseToken::from_uuid(self.d_lease_token),
            lease_until: from_ts(self.d_lease_until),
            endpoint: Arc::new(endpoint),
            notification,
        })
    }
}

#[derive(Debug, QueryableByName)]
pub(crate) struct CountRow {
    #[diesel(sql_type = BigInt)]
    pub(crate) n: i64,
}

/// A duration as whole nanoseconds (exact for anything shorter than 292 years).
pub(crate) fn duration_ns(d: Duration) -> Result<i64, StoreError> {
    i64::try_from(d.as_nanos())
        .map_err(|_| StoreError::new(tidings::StoreErrorKind::Other, "duration too long to store"))
}

fn duration_from_ns(ns: i64) -> Result<Duration, StoreError> {
    u64::try_from(ns)
        .map(Duration::from_nanos)
        .map_err(|_| corrupt(format!("negative duration {ns}")))
}

pub(crate) fn platform_bit(p: Platform) -> i16 {
    i16::from(PlatformSet::only(p).bits())
}

pub(crate) fn read_str(r: ReadState) -> &'static str {
    match r {
        ReadState::Unread => "unread",
        ReadState::Read => "read",
    }
}

fn read_from(s: &str) -> Result<ReadState, StoreError> {
    match s {
        "unread" => Ok(ReadState::Unread),
        "read" => Ok(ReadState::Read),
        other => Err(corrupt(format!("read state {other:?}"))),
    }
}

pub(crate) fn action_str(a: UserAction) -> &'static str {
    match a {
        UserAction::None => "none",
        UserAction::Activated => "activated",
        UserAction::Dismissed => "dismissed",
        UserAction::Snoozed => "snoozed",
    }
}

fn action_from(s: &str) -> Result<UserAction, StoreError> {
    match s {
        "none" => Ok(UserAction::None),
        "activated" => Ok(UserAction::Activated),
        "dismissed" => Ok(UserAction::Dismissed),
        "snoozed" => Ok(UserAction::Snoozed),
        other => Err(corrupt(format!("user action {other:?}"))),
    }
}

pub(crate) fn status_str(s: Status) -> &'static str {
    match s {
        Status::Active => "active",
        Status::Deleted => "deleted",
    }
}

fn status_from(s: &str) -> Result<Status, StoreError> {
    match s {
        "active" => Ok(Status::Active),
        "deleted" => Ok(Status::Deleted),
        other => Err(corrupt(format!("status {other:?}"))),
    }
}

fn priority_from(s: &str) -> Result<Priority, StoreError> {
    match s {
        "low" => Ok(Priority::Low),
        "normal" => Ok(Priority::Normal),
        "high" => Ok(Priority::High),
        other => Err(corrupt(format!("priority {other:?}"))),
    }
}

fn kind_from(s: &str) -> Result<DeliveryKind, StoreError> {
    match s {
        "notification" => Ok(DeliveryKind::Notification),
        "sync" => Ok(DeliveryKind::Sync),
        "fallback_alert" => Ok(DeliveryKind::FallbackAlert),
        other => Err(corrupt(format!("delivery kind {other:?}"))),
    }
}
