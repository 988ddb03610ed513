//! OpenAPI schemas of the core types the API exchanges.
//!
//! The core does not depend on utoipa, so these mirror its serde shapes for the document only;
//! the tests in `tests/openapi.rs` check each mirror against the core type it describes (every
//! enum value the core writes is in the schema, every example parses into the core type).

#![allow(dead_code)]

use utoipa::ToSchema;

/// A push platform.
#[derive(ToSchema)]
#[serde(rename_all = "lowercase")]
pub(crate) enum Platform {
    Apns,
    Fcm,
    Wns,
    #[serde(rename = "webpush")]
    WebPush,
}

/// APNs environment of a device token: `sandbox` for development builds.
#[derive(ToSchema)]
#[serde(rename_all = "lowercase")]
pub(crate) enum ApnsEnvironment {
    Production,
    Sandbox,
}

/// Where pushes to an installation go, tagged by `platform`. Validated as the core does: APNs
/// tokens are hex, WNS channel URIs and Web Push endpoints must be https URLs of the known push
/// services, Web Push keys must be a P-256 point and a 16-byte secret (base64url).
#[derive(ToSchema)]
#[serde(tag = "platform", rename_all = "lowercase")]
#[schema(example = json!({
    "platform": "apns",
    "token": "5f0c1e3d9a7b4c2e8f6a0b1c2d3e4f5a6b7c8d9e0f1a2b3c4d5e6f7a8b9c0d1e",
    "environment": "production"
}))]
pub(crate) enum PushAddress {
    /// An APNs device token.
    Apns {
        /// The device token, hex.
        token: String,
        /// `production` or `sandbox`.
        environment: ApnsEnvironment,
    },
    /// An FCM registration token.
    Fcm {
        /// The registration token.
        token: String,
    },
    /// A WNS channel.
    Wns {
        /// `https://*.notify.windows.com/...`
        channel_uri: String,
    },
    /// A Web Push subscription (`PushSubscription.toJSON()`: `endpoint`, `keys.p256dh`,
    /// `keys.auth`, flattened).
    #[serde(rename = "webpush")]
    WebPush {
        /// The push service URL.
        endpoint: String,
        /// The browser's P-256 public key, uncompressed, base64url.
        p256dh: String,
        /// The 16-byte authentication secret, base64url.
        auth: String,
    },
}

/// Read state.
#[derive(ToSchema)]
#[serde(rename_all = "lowercase")]
pub(crate) enum ReadState {
    Unread,
    Read,
}

/// What the user did with a notification.
#[derive(ToSchema)]
#[serde(rename_all = "lowercase")]
pub(crate) enum UserAction {
    None,
    Activated,
    Dismissed,
    Snoozed,
}

/// Whether a notification is live (`deleted`: remove it from the device).
#[derive(ToSchema)]
#[serde(rename_all = "lowercase")]
pub(crate) enum Status {
    Active,
    Deleted,
}

/// Priority.
#[derive(ToSchema)]
#[serde(rename_all = "lowercase")]
pub(crate) enum Priority {
    Low,
    Normal,
    High,
}

/// A change of state; absent members stay as they are. At least one member is required and
/// unknown members are refused. `status: deleted` deletes the notification on every device.
#[derive(ToSchema)]
#[serde(deny_unknown_fields)]
#[schema(example = json!({"read": "read", "action": "dismissed"}))]
pub(crate) struct StatePatch {
    /// New read state.
    read: Option<ReadState>,
    /// New user action.
    action: Option<UserAction>,
    /// New status.
    status: Option<Status>,
}
