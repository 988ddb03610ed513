//! Rendering, pure: a [`Push`] becomes one FCM HTTP v1 `messages:send` request (PROTOCOLS.md
//! §2.1, §2.3), without the `Authorization` header (the client adds the access token).

use std::collections::BTreeMap;
use std::fmt::Write as _;

use bytes::Bytes;
use serde::Serialize;
use tidings::{DeliveryKind, Priority, Push, PushAddress, PushContent, PushError, VisualContent};

/// Largest message FCM accepts, in bytes: the compact JSON of `message` without its target.
pub const MAX_PAYLOAD_BYTES: usize = 4096;

/// Longest Android TTL FCM accepts: 4 weeks, in seconds.
pub const MAX_ANDROID_TTL_SECS: u64 = 2_419_200;

/// `data` key: what the push carries (`notification`, `sync` or `fallback_alert`).
pub const KEY_KIND: &str = "kind";
/// `data` key: the app id.
pub const KEY_APP: &str = "app";
/// `data` key: the notification id (absent for sync signals).
pub const KEY_NOTIFICATION_ID: &str = "notification_id";
/// `data` key: the user's change sequence the push announces.
pub const KEY_SEQUENCE: &str = "sequence";
/// `data` key: the notification's raw app data (inline payload mode only).
pub const KEY_RAW: &str = "raw";

/// The `data` keys Tidings writes itself; configured extra data may not use them.
pub const OWN_KEYS: [&str; 5] = [
    KEY_KIND,
    KEY_APP,
    KEY_NOTIFICATION_ID,
    KEY_SEQUENCE,
    KEY_RAW,
];

/// Whether FCM reserves `key` in `data` (`from`, `message_type`, `google.*`, `gcm.*`;
/// PROTOCOLS.md §2.3). FCM refuses such messages with `INVALID_ARGUMENT`.
pub fn is_reserved_data_key(key: &str) -> bool {
    key == "from" || key == "message_type" || key.starts_with("google.") || key.starts_with("gcm.")
}

/// Per-app rendering settings.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct RenderOptions {
    /// The Android notification channel visible notifications are posted to.
    pub android_channel_id: Option<String>,
    /// Extra `data` entries sent with every push (checked: not reserved, not Tidings' own keys).
    pub extra_data: BTreeMap<String, String>,
}

#[derive(Serialize)]
struct Message<'a> {
    #[serde(skip_serializing_if = "Option::is_none")]
    notification: Option<Notification<'a>>,
    data: BTreeMap<&'a str, &'a str>,
    android: Android<'a>,
}

#[derive(Serialize)]
struct Notification<'a> {
    title: &'a str,
    #[serde(skip_serializing_if = "Option::is_none")]
    body: Option<&'a str>,
}

#[derive(Serialize)]
struct Android<'a> {
    collapse_key: &'a str,
    priority: &'static str,
    ttl: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    notification: Option<AndroidNotification<'a>>,
}

#[derive(Serialize)]
struct AndroidNotification<'a> {
    #[serde(skip_serializing_if = "Option::is_none")]
    channel_id: Option<&'a str>,
    tag: &'a str,
}

/// `android.priority`: `HIGH` for high-priority notifications and for sync signals (a data
/// message at normal priority may wait for the device's maintenance window), `NORMAL` otherwise.
pub fn android_priority(push: &Push) -> &'static str {
    if push.priority == Priority::High || push.kind == DeliveryKind::Sync {
        "HIGH"
    } else {
        "NORMAL"
    }
}

/// `android.ttl`: whole seconds from `sent_at` to `expires_at`, at most 4 weeks, as a protobuf
/// Duration string (`"3600s"`).
pub fn android_ttl(push: &Push) -> String {
    format!("{}s", push.ttl().as_secs().min(MAX_ANDROID_TTL_SECS))
}

/// The registration token of an FCM endpoint.
pub fn registration_token(push: &Push) -> Result<&str, PushError> {
    match &push.endpoint.address {
        PushAddress::Fcm { token } => Ok(token),
        other => Err(PushError::rejected(format!(
            "the FCM channel cannot send to a {} endpoint",
            other.platform()
        ))),
    }
}

/// Renders `push` as a `POST` to `send_url` (`…/v1/projects/{project}/messages:send`).
///
/// The body is `{"message": {...}}` with the registration token as target, `data` (ids, and
/// raw content when inline), a `notification` when the push is visible, and `android`
/// (`collapse_key`, `priority`, `ttl`, and for visible pushes `notification.channel_id` and
/// `notification.tag` = the collapse id, so a later notification replaces the earlier one).
///
/// Fails with [`PushError::payload_too_large`] when the message is over
/// [`MAX_PAYLOAD_BYTES`], and with a rejection when the endpoint is not an FCM one or the
/// send URL is not a URI; nothing is sent in either case.
pub fn render(
    push: &Push,
    send_url: &str,
    options: &RenderOptions,
) -> Result<http::Request<Bytes>, PushError> {
    let token = registration_token(push)?;
    let message = render_message(push, options)?;
    let mut body = Vec::with_capacity(message.len() + token.len() + 32);
    body.extend_from_slice(b"{\"message\":{\"token\":");
    serde_json::to_writer(&mut body, token)
        .map_err(|e| PushError::rejected("the registration token is not JSON").with_source(e))?;
    // `message` is a non-empty JSON object: splice its members after the token.
    body.push(b',');
    body.extend_from_slice(&message[1..]);
    body.push(b'}');
    http::Request::builder()
        .method(http::Method::POST)
        .uri(send_url)
        .header(http::header::CONTENT_TYPE, "application/json")
        .body(Bytes::from(body))
        .map_err(|e| PushError::misconfigured("the FCM send URL is not a URI").with_source(e))
}

/// The `message` object without its target, as FCM measures it, checked against the limit.
pub fn render_message(push: &Push, options: &RenderOptions) -> Result<Vec<u8>, PushError> {
    let notification_id = push.notification_id.map(|id| id.to_string());
    let sequence = push.sequence.to_string();
    let app = push.app.as_str();

    let mut data: BTreeMap<&str, &str> = options
        .extra_data
        .iter()
        .map(|(k, v)| (k.as_str(), v.as_str()))
        .collect();
    data.insert(KEY_KIND, push.kind.as_str());
    data.insert(KEY_APP, app);
    data.insert(KEY_SEQUENCE, &sequence);
    if let Some(id) = &notification_id {
        data.insert(KEY_NOTIFICATION_ID, id);
    }

    let visual: Option<&VisualContent> = match &push.content {
        PushContent::Tap { alert } => alert.as_ref(),
        PushContent::Inline { visual, raw } => {
            if let Some(raw) = raw {
                data.insert(KEY_RAW, raw);
            }
            visual.as_ref()
        }
    };
    if let Some(key) = data.keys().find(|k| is_reserved_data_key(k)) {
        return Err(PushError::rejected(format!(
            "data key {key:?} is reserved by FCM"
        )));
    }

    let message = Message {
        notification: visual.map(|v| Notification {
            title: &v.title,
            body: v.body.as_deref(),
        }),
        data,
        android: Android {
            collapse_key: &push.collapse_id,
            priority: android_priority(push),
            ttl: android_ttl(push),
            notification: visual.map(|_| AndroidNotification {
                channel_id: options.android_channel_id.as_deref(),
                tag: &push.collapse_id,
            }),
        },
    };
    let bytes = serde_json::to_vec(&message)
        .map_err(|e| PushError::rejected("the message does not serialize").with_source(e))?;
    if bytes.len() > MAX_PAYLOAD_BYTES {
        return Err(PushError::payload_too_large(bytes.len(), MAX_PAYLOAD_BYTES));
    }
    Ok(bytes)
}

/// `{base_url}/v1/projects/{project}/messages:send`.
pub fn send_url(base_url: &str, project: &str) -> String {
    let mut url = base_url.trim_end_matches('/').to_owned();
    let _ = write!(url, "/v1/projects/{project}/messages:send");
    url
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use serde_json::{json, Value};
    use tidings::PushErrorKind;
    use tidings_testkit::channel::fixtures::{self, visual};

    use super::*;

    const URL: &str = "https://fcm.googleapis.com/v1/projects/demo/messages:send";

    /// The fixture push of `content` to the registration token `reg-token-1`.
    fn push(content: PushContent) -> Push {
        let address = PushAddress::Fcm {
            token: "reg-token-1".into(),
        };
        fixtures::push(address, content)
    }

    fn message(push: &Push, options: &RenderOptions) -> Value {
        let request = render(push, URL, options).expect("renders");
        let body: Value = serde_json::from_slice(request.body()).expect("JSON body");
        body["message"].clone()
    }

    #[test]
    fn request_is_a_json_post_to_the_send_url_targeting_the_token() {
        let p = push(PushContent::Tap { alert: None });
        let request = render(&p, URL, &RenderOptions::default()).unwrap();
        assert_eq!(request.method(), http::Method::POST);
        assert_eq!(request.uri(), URL);
        assert_eq!(
            request.headers()[http::header::CONTENT_TYPE],
            "application/json"
        );
        let body: Value = serde_json::from_slice(request.body()).unwrap();
        assert_eq!(body["message"]["token"], "reg-token-1");
        assert!(body["message"].get("topic").is_none());
    }

    #[test]
    fn silent_tap_is_data_only_with_ids() {
        let mut p = push(PushContent::Tap { alert: None });
        p.sequence = 7;
        let m = message(&p, &RenderOptions::default());
        assert!(m.get("notification").is_none(), "{m}");
        assert!(m["android"].get("notification").is_none(), "{m}");
        assert_eq!(
            m["data"],
            json!({
                "kind": "notification",
                "app": "chat",
                "notification_id": p.notification_id.unwrap().to_string(),
                "sequence": "7",
            })
        );
    }

    #[test]
    fn visible_tap_shows_the_placeholder_and_carries_ids() {
        let mut p = push(PushContent::Tap {
            alert: Some(visual("New message", "Open the app to read it")),
        });
        p.collapse_id = "collapse-1".into();
        let options = RenderOptions {
            android_channel_id: Some("messages".into()),
            ..RenderOptions::default()
        };
        let m = message(&p, &options);
        assert_eq!(
            m["notification"],
            json!({"title": "New message", "body": "Open the app to read it"})
        );
        assert_eq!(
            m["android"]["notification"],
            json!({"channel_id": "messages", "tag": "collapse-1"})
        );
        assert_eq!(
            m["data"]["notification_id"],
            p.notification_id.unwrap().to_string()
        );
    }

    #[test]
    fn inline_visual_uses_notification_and_tag_from_the_collapse_id() {
        let mut p = push(PushContent::Inline {
            visual: Some(visual("Lunch?", "At noon")),
            raw: Some("{\"room\":42}".into()),
        });
        p.collapse_id = "collapse-1".into();
        let m = message(&p, &RenderOptions::default());
        assert_eq!(m["notification"]["title"], "Lunch?");
        assert_eq!(m["notification"]["body"], "At noon");
        assert_eq!(m["android"]["notification"]["tag"], "collapse-1");
        assert!(m["android"]["notification"].get("channel_id").is_none());
        assert_eq!(m["android"]["collapse_key"], "collapse-1");
        assert_eq!(m["data"]["raw"], "{\"room\":42}");
    }

    #[test]
    fn inline_raw_only_is_data_only() {
        let p = push(PushContent::Inline {
            visual: None,
            raw: Some("payload".into()),
        });
        let m = message(&p, &RenderOptions::default());
        assert!(m.get("notification").is_none());
        assert!(m["android"].get("notification").is_none());
        assert_eq!(m["data"]["raw"], "payload");
    }

    #[test]
    fn sync_signal_is_data_only_at_high_priority_without_notification_id() {
        let mut p = push(PushContent::Tap { alert: None });
        p.kind = DeliveryKind::Sync;
        p.priority = Priority::Low;
        p.notification_id = None;
        p.collapse_id = "sync".into();
        let m = message(&p, &RenderOptions::default());
        assert!(m.get("notification").is_none());
        assert_eq!(m["android"]["priority"], "HIGH");
        assert_eq!(m["data"]["kind"], "sync");
        assert!(m["data"].get("notification_id").is_none());
    }

    #[test]
    fn priority_is_high_only_for_high_priority_and_sync() {
        for (priority, expected) in [
            (Priority::Low, "NORMAL"),
            (Priority::Normal, "NORMAL"),
            (Priority::High, "HIGH"),
        ] {
            let mut p = push(PushContent::Tap { alert: None });
            p.priority = priority;
            assert_eq!(android_priority(&p), expected, "{priority:?}");
        }
    }

    #[test]
    fn ttl_is_seconds_left_at_send_time_and_capped_at_four_weeks() {
        let mut p = push(PushContent::Tap { alert: None });
        p.expires_at = p.sent_at.plus(Duration::from_secs(3600));
        assert_eq!(android_ttl(&p), "3600s");
        p.sent_at = p.sent_at.plus(Duration::from_secs(600));
        assert_eq!(android_ttl(&p), "3000s", "a retry carries a shorter TTL");
        p.sent_at = p.expires_at.plus(Duration::from_secs(5));
        assert_eq!(android_ttl(&p), "0s");
        p.sent_at = p.expires_at.minus(Duration::from_secs(30 * 24 * 3600));
        assert_eq!(android_ttl(&p), "2419200s");
    }

    #[test]
    fn oversized_message_is_refused_before_any_request() {
        let p = push(PushContent::Inline {
            visual: Some(visual("Big", &"x".repeat(MAX_PAYLOAD_BYTES))),
            raw: None,
        });
        let err = render(&p, URL, &RenderOptions::default()).unwrap_err();
        assert_eq!(err.kind(), PushErrorKind::PayloadTooLarge);
        assert!(!err.is_retryable());
    }

    #[test]
    fn message_just_under_the_limit_is_rendered() {
        let mut p = push(PushContent::Inline {
            visual: None,
            raw: Some(String::new()),
        });
        let base = render_message(&p, &RenderOptions::default()).unwrap().len();
        p.content = PushContent::Inline {
            visual: None,
            raw: Some("y".repeat(MAX_PAYLOAD_BYTES - base)),
        };
        let size = render_message(&p, &RenderOptions::default()).unwrap().len();
        assert_eq!(size, MAX_PAYLOAD_BYTES);
    }

    #[test]
    fn extra_data_travels_and_reserved_keys_are_refused() {
        let p = push(PushContent::Tap { alert: None });
        let mut options = RenderOptions::default();
        options.extra_data.insert("tenant".into(), "acme".into());
        assert_eq!(message(&p, &options)["data"]["tenant"], "acme");
        for reserved in [
            "from",
            "message_type",
            "google.c.a.e",
            "gcm.notification.body",
        ] {
            let mut options = RenderOptions::default();
            options.extra_data.insert(reserved.into(), "x".into());
            let err = render(&p, URL, &options).unwrap_err();
            assert_eq!(err.kind(), PushErrorKind::Rejected, "{reserved}");
        }
    }

    #[test]
    fn non_fcm_endpoint_is_rejected() {
        let mut p = push(PushContent::Tap { alert: None });
        p.endpoint = fixtures::endpoint(PushAddress::Apns {
            token: "abcd".into(),
            environment: tidings::ApnsEnvironment::Sandbox,
        });
        let err = render(&p, URL, &RenderOptions::default()).unwrap_err();
        assert_eq!(err.kind(), PushErrorKind::Rejected);
    }

    #[test]
    fn token_with_quotes_stays_valid_json() {
        let mut p = push(PushContent::Tap { alert: None });
        p.endpoint = fixtures::endpoint(PushAddress::Fcm {
            token: "a\"b\\c".into(),
        });
        let request = render(&p, URL, &RenderOptions::default()).unwrap();
        let body: Value = serde_json::from_slice(request.body()).unwrap();
        assert_eq!(body["message"]["token"], "a\"b\\c");
    }

    #[test]
    fn send_url_joins_base_and_project() {
        assert_eq!(send_url("https://fcm.googleapis.com/", "demo"), URL);
    }
}
