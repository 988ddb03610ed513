//! Rendering, pure: a [`Push`] becomes one `POST /3/device/{token}` of APNs' provider API
//! (PROTOCOLS.md §1.2–§1.5, §7 item 6), without the `authorization` header (the client adds the
//! provider token when it uses token auth).

use std::borrow::Cow;
use std::fmt::Write as _;

use bytes::Bytes;
use http::header::{HeaderName, HeaderValue, CONTENT_TYPE};
use serde::Serialize;
use tidings::{
    ApnsEnvironment, DeliveryKind, Priority, Push, PushAddress, PushContent, PushError, Timestamp,
    ValidationError, VisualContent,
};

/// Largest payload APNs accepts for every push type but VoIP, in bytes.
pub const MAX_PAYLOAD_BYTES: usize = 4096;
/// Largest VoIP payload, in bytes.
pub const MAX_VOIP_PAYLOAD_BYTES: usize = 5120;
/// Longest `apns-collapse-id`, in bytes.
pub const MAX_COLLAPSE_ID_BYTES: usize = 64;

/// Custom key: what the push carries (`notification`, `sync` or `fallback_alert`).
pub const KEY_KIND: &str = "kind";
/// Custom key: the app id.
pub const KEY_APP: &str = "app";
/// Custom key: the notification id (absent for sync signals).
pub const KEY_NOTIFICATION_ID: &str = "notification_id";
/// Custom key: the user's change sequence the push announces (a number).
pub const KEY_SEQUENCE: &str = "sequence";
/// Custom key: the notification's raw app data (inline payload mode only).
pub const KEY_RAW: &str = "raw";

/// The `apns-push-type` values this channel sends, with their topic suffixes and limits
/// (PROTOCOLS.md §1.3).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum PushType {
    /// A visible alert.
    Alert,
    /// A silent background push (`content-available: 1`, priority 5).
    Background,
    /// A VoIP push (PushKit), topic `<bundle-id>.voip`, 5120 bytes.
    Voip,
}

impl PushType {
    /// The `apns-push-type` header value.
    pub const fn as_str(self) -> &'static str {
        match self {
            PushType::Alert => "alert",
            PushType::Background => "background",
            PushType::Voip => "voip",
        }
    }

    /// What `apns-topic` appends to the bundle id.
    pub const fn topic_suffix(self) -> &'static str {
        match self {
            PushType::Alert | PushType::Background => "",
            PushType::Voip => ".voip",
        }
    }

    /// The payload limit in bytes.
    pub const fn max_payload_bytes(self) -> usize {
        match self {
            PushType::Voip => MAX_VOIP_PAYLOAD_BYTES,
            _ => MAX_PAYLOAD_BYTES,
        }
    }
}

/// Per-app rendering settings.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RenderOptions {
    /// The app's bundle id (the `apns-topic` before the push type's suffix).
    pub topic: String,
    /// `aps.sound` of visible alerts (`"default"`, a sound file name), or none for silent ones.
    pub sound: Option<String>,
}

/// A rendered request: where it goes, its headers and body, and the `apns-id` it carries.
#[derive(Debug)]
pub struct Rendered {
    /// `{base}/3/device/{token}`.
    pub url: String,
    /// Every APNs header but `authorization`.
    pub headers: http::HeaderMap,
    /// The JSON payload.
    pub body: Bytes,
    /// The `apns-id` sent (lowercase UUID), which APNs echoes.
    pub apns_id: String,
}

impl Rendered {
    /// The `POST` as an [`http::Request`]; fails only if the URL is not a URI (a bad base URL).
    pub fn into_request(self) -> Result<http::Request<Bytes>, PushError> {
        let mut request = http::Request::builder()
            .method(http::Method::POST)
            .uri(self.url)
            .body(self.body)
            .map_err(|e| {
                PushError::misconfigured("the APNs base URL does not make a URI").with_source(e)
            })?;
        *request.headers_mut() = self.headers;
        Ok(request)
    }
}

/// Whether `push` is a visible alert or a background push: visible content (an inline visual,
/// or the app's placeholder of a visible shoulder tap) is an alert; raw content, silent
/// shoulder taps and sync signals are background pushes.
pub fn push_type(push: &Push) -> PushType {
    if push.kind != DeliveryKind::Sync && push.content.is_visible() {
        PushType::Alert
    } else {
        PushType::Background
    }
}

/// `apns-priority`: 5 for background pushes (10 is an error there) and for low-priority
/// alerts; 10 for other alerts (the fallback alert is high priority, so 10).
pub fn priority(push: &Push, push_type: PushType) -> u8 {
    match (push_type, push.priority) {
        (PushType::Background, _) | (_, Priority::Low) => 5,
        _ => 10,
    }
}

/// `apns-expiration`: absolute UNIX seconds, `now` plus the time the push has left at this
/// attempt (`expires_at - sent_at`). With the dispatcher's and the channel's clocks the same,
/// that is the notification's expiry; at least 1 (0 would mean "try once, do not store").
pub fn expiration(push: &Push, now: Timestamp) -> i64 {
    let left = i64::try_from(push.ttl().as_secs()).unwrap_or(i64::MAX);
    now.as_secs().saturating_add(left).max(1)
}

/// `apns-collapse-id` from the push's collapse id: as is up to 64 bytes; longer ids keep their
/// first 47 bytes (at a character boundary) plus `-` and a 16-digit FNV-1a hash of the whole id,
/// so the result is deterministic (retries collapse) and distinct ids stay distinct.
pub fn collapse_id(id: &str) -> Cow<'_, str> {
    if id.len() <= MAX_COLLAPSE_ID_BYTES {
        return Cow::Borrowed(id);
    }
    let mut cut = 47;
    while !id.is_char_boundary(cut) {
        cut -= 1;
    }
    let mut hash: u64 = 0xcbf2_9ce4_8422_2325;
    for b in id.bytes() {
        hash ^= u64::from(b);
        hash = hash.wrapping_mul(0x0000_0100_0000_01b3);
    }
    Cow::Owned(format!("{}-{hash:016x}", &id[..cut]))
}

/// The device token and environment of an APNs endpoint.
pub fn device_token(push: &Push) -> Result<(&str, ApnsEnvironment), PushError> {
    match &push.endpoint.address {
        PushAddress::Apns { token, environment } => Ok((token, *environment)),
        other => Err(PushError::rejected(format!(
            "the APNs channel cannot send to a {} endpoint",
            other.platform()
        ))),
    }
}

#[derive(Serialize)]
struct Payload<'a> {
    aps: Aps<'a>,
    kind: &'static str,
    app: &'a str,
    #[serde(skip_serializing_if = "Option::is_none")]
    notification_id: Option<String>,
    sequence: u64,
    #[serde(skip_serializing_if = "Option::is_none")]
    raw: Option<&'a str>,
}

#[derive(Serialize)]
struct Aps<'a> {
    #[serde(skip_serializing_if = "Option::is_none")]
    alert: Option<Alert<'a>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    sound: Option<&'a str>,
    #[serde(rename = "thread-id", skip_serializing_if = "Option::is_none")]
    thread_id: Option<&'a str>,
    #[serde(rename = "mutable-content", skip_serializing_if = "Option::is_none")]
    mutable_content: Option<u8>,
    #[serde(rename = "content-available", skip_serializing_if = "Option::is_none")]
    content_available: Option<u8>,
}

#[derive(Serialize)]
struct Alert<'a> {
    title: &'a str,
    #[serde(skip_serializing_if = "Option::is_none")]
    body: Option<&'a str>,
}

/// The JSON payload, checked against the push type's limit.
///
/// Alerts carry `aps.alert` (`title`, `body`), `aps.sound` (configured), `aps.thread-id` (the
/// notification's group) and, for a visible shoulder tap, `aps.mutable-content: 1` so the app's
/// service extension can replace the placeholder after fetching. Background pushes carry only
/// `aps.content-available: 1`. Next to `aps`: `kind`, `app`, `notification_id`, `sequence`,
/// and `raw` for inline raw content.
pub fn render_payload(
    push: &Push,
    push_type: PushType,
    options: &RenderOptions,
) -> Result<Vec<u8>, PushError> {
    let (visual, raw, tap): (Option<&VisualContent>, Option<&str>, bool) = match &push.content {
        PushContent::Tap { alert } => (alert.as_ref(), None, true),
        PushContent::Inline { visual, raw } => (visual.as_ref(), raw.as_deref(), false),
    };
    let aps = match (push_type, visual) {
        (PushType::Background, _) | (_, None) => Aps {
            alert: None,
            sound: None,
            thread_id: None,
            mutable_content: None,
            content_available: Some(1),
        },
        (_, Some(v)) => Aps {
            alert: Some(Alert {
                title: &v.title,
                body: v.body.as_deref(),
            }),
            sound: options.sound.as_deref(),
            thread_id: push.group.as_deref(),
            mutable_content: tap.then_some(1),
            content_available: None,
        },
    };
    let payload = Payload {
        aps,
        kind: push.kind.as_str(),
        app: push.app.as_str(),
        notification_id: push.notification_id.map(|id| id.to_string()),
        sequence: push.sequence,
        raw,
    };
    let mut bytes = Vec::with_capacity(512);
    serde_json::to_writer(&mut bytes, &payload)
        .map_err(|e| PushError::rejected("the payload does not serialize").with_source(e))?;
    let limit = push_type.max_payload_bytes();
    if bytes.len() > limit {
        return Err(PushError::payload_too_large(bytes.len(), limit));
    }
    Ok(bytes)
}

/// `{base_url}/3/device/{token}`.
pub fn device_url(base_url: &str, token: &str) -> String {
    let base = base_url.trim_end_matches('/');
    let mut url = String::with_capacity(base.len() + 10 + token.len());
    url.push_str(base);
    let _ = write!(url, "/3/device/{token}");
    url
}

/// Renders `push` as a `POST` to `base_url` (the host of the endpoint's environment) at `now`,
/// with `apns_id` as its `apns-id`.
///
/// Headers: `apns-push-type` (always), `apns-topic` (bundle id + the type's suffix),
/// `apns-priority`, `apns-expiration`, `apns-collapse-id`, `apns-id`, `content-type`. Fails
/// with [`PushError::payload_too_large`] over the limit, and with a rejection for a non-APNs
/// endpoint or a header value that cannot be sent; nothing is sent in either case.
pub fn render(
    push: &Push,
    base_url: &str,
    options: &RenderOptions,
    now: Timestamp,
    apns_id: uuid::Uuid,
) -> Result<Rendered, PushError> {
    let (token, _) = device_token(push)?;
    let message = render_message(push, options, None, now, apns_id)?;
    Ok(Rendered {
        url: device_url(base_url, token),
        headers: message.headers,
        body: message.body,
        apns_id: apns_id.hyphenated().to_string(),
    })
}

/// What [`render`] renders but the URL and the `apns-id` as text: the channel builds the
/// request path itself.
#[derive(Debug)]
pub(crate) struct Message {
    pub(crate) headers: http::HeaderMap,
    pub(crate) body: Bytes,
}

/// An app's `apns-topic` values, ready to send: the bundle id with each push type's suffix.
#[derive(Debug)]
pub(crate) struct TopicHeaders {
    plain: HeaderValue,
    voip: HeaderValue,
}

impl TopicHeaders {
    pub(crate) fn new(topic: &str) -> Result<TopicHeaders, ValidationError> {
        let value = |suffix: &str| {
            HeaderValue::try_from(format!("{topic}{suffix}"))
                .map_err(|_| ValidationError::new("topic", "is not a valid header value"))
        };
        Ok(TopicHeaders {
            plain: value(PushType::Alert.topic_suffix())?,
            voip: value(PushType::Voip.topic_suffix())?,
        })
    }

    fn get(&self, push_type: PushType) -> &HeaderValue {
        match push_type {
            PushType::Alert | PushType::Background => &self.plain,
            PushType::Voip => &self.voip,
        }
    }
}

const APNS_PUSH_TYPE: HeaderName = HeaderName::from_static("apns-push-type");
const APNS_TOPIC: HeaderName = HeaderName::from_static("apns-topic");
const APNS_PRIORITY: HeaderName = HeaderName::from_static("apns-priority");
const APNS_EXPIRATION: HeaderName = HeaderName::from_static("apns-expiration");
const APNS_COLLAPSE_ID: HeaderName = HeaderName::from_static("apns-collapse-id");
const APNS_ID: HeaderName = HeaderName::from_static("apns-id");

/// The headers and body of [`render`], without the URL; `topics` are the app's `apns-topic`
/// values if they are at hand.
///
/// `apns-id` and `apns-collapse-id` are marked sensitive: unique to each push, they go out as
/// HPACK literals that are never indexed, rather than filling the connection's header table
/// (where every later push would compare against them).
pub(crate) fn render_message(
    push: &Push,
    options: &RenderOptions,
    topics: Option<&TopicHeaders>,
    now: Timestamp,
    apns_id: uuid::Uuid,
) -> Result<Message, PushError> {
    let push_type = push_type(push);
    let body = render_payload(push, push_type, options)?;
    let text = |what: &str, v: &str| {
        HeaderValue::from_str(v)
            .map_err(|_| PushError::rejected(format!("the {what} is not a valid header value")))
    };
    let topic = match topics {
        Some(topics) => topics.get(push_type).clone(),
        None => {
            let mut topic = String::with_capacity(options.topic.len() + 8);
            topic.push_str(&options.topic);
            topic.push_str(push_type.topic_suffix());
            text("topic", &topic)?
        }
    };
    let priority = match priority(push, push_type) {
        5 => HeaderValue::from_static("5"),
        10 => HeaderValue::from_static("10"),
        other => HeaderValue::from(u16::from(other)),
    };
    let mut collapse = text("collapse id", &collapse_id(&push.collapse_id))?;
    collapse.set_sensitive(true);
    let mut id = uuid::Uuid::encode_buffer();
    let mut id = text("apns-id", apns_id.hyphenated().encode_lower(&mut id))?;
    id.set_sensitive(true);
    let mut headers = http::HeaderMap::with_capacity(10);
    headers.insert(APNS_PUSH_TYPE, HeaderValue::from_static(push_type.as_str()));
    headers.insert(APNS_TOPIC, topic);
    headers.insert(APNS_PRIORITY, priority);
    headers.insert(APNS_EXPIRATION, HeaderValue::from(expiration(push, now)));
    headers.insert(APNS_COLLAPSE_ID, collapse);
    headers.insert(APNS_ID, id);
    headers.insert(CONTENT_TYPE, HeaderValue::from_static("application/json"));
    Ok(Message {
        headers,
        body: Bytes::from(body),
    })
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use serde_json::{json, Value};
    use tidings::PushErrorKind;
    use tidings_testkit::channel::fixtures::{self, visual};

    use super::*;

    const BASE: &str = "https://api.push.apple.com";
    const T0: i64 = 1_767_225_600;

    fn options() -> RenderOptions {
        RenderOptions {
            topic: "com.example.chat".into(),
            sound: Some("default".into()),
        }
    }

    /// The fixture push of `content` to the production device token `ab12cd34`.
    fn push(content: PushContent) -> Push {
        let address = PushAddress::Apns {
            token: "ab12cd34".into(),
            environment: ApnsEnvironment::Production,
        };
        fixtures::push(address, content)
    }

    fn rendered(push: &Push) -> (http::Request<Bytes>, Value) {
        let r = render(
            push,
            BASE,
            &options(),
            Timestamp::from_secs(T0),
            uuid::Uuid::new_v4(),
        )
        .expect("renders")
        .into_request()
        .expect("a valid request");
        let body = serde_json::from_slice(r.body()).expect("JSON body");
        (r, body)
    }

    fn header<'a>(r: &'a http::Request<Bytes>, name: &str) -> &'a str {
        r.headers()[name].to_str().unwrap()
    }

    #[test]
    fn inline_alert_has_title_body_sound_thread_and_ids() {
        let mut p = push(PushContent::Inline {
            visual: Some(visual("Lunch?", "At noon")),
            raw: None,
        });
        p.sequence = 7;
        p.priority = Priority::Normal;
        p.collapse_id = "collapse-1".into();
        p.group = Some("room-42".into());
        let (r, body) = rendered(&p);
        assert_eq!(r.method(), http::Method::POST);
        assert_eq!(r.uri(), "https://api.push.apple.com/3/device/ab12cd34");
        assert_eq!(header(&r, "apns-push-type"), "alert");
        assert_eq!(header(&r, "apns-topic"), "com.example.chat");
        assert_eq!(header(&r, "apns-priority"), "10");
        assert_eq!(header(&r, "apns-collapse-id"), "collapse-1");
        assert_eq!(
            body,
            json!({
                "aps": {
                    "alert": {"title": "Lunch?", "body": "At noon"},
                    "sound": "default",
                    "thread-id": "room-42",
                },
                "kind": "notification",
                "app": "chat",
                "notification_id": p.notification_id.unwrap().to_string(),
                "sequence": 7,
            })
        );
    }

    #[test]
    fn visible_shoulder_tap_is_a_mutable_placeholder_alert_with_ids() {
        let p = push(PushContent::Tap {
            alert: Some(visual("New message", "Open the app")),
        });
        let (r, body) = rendered(&p);
        assert_eq!(header(&r, "apns-push-type"), "alert");
        assert_eq!(body["aps"]["mutable-content"], 1);
        assert_eq!(body["aps"]["alert"]["title"], "New message");
        assert_eq!(
            body["notification_id"],
            p.notification_id.unwrap().to_string()
        );
        assert!(body["aps"].get("content-available").is_none());
    }

    #[test]
    fn raw_content_and_silent_taps_are_background_pushes_at_priority_5() {
        for content in [
            PushContent::Inline {
                visual: None,
                raw: Some("{\"room\":42}".into()),
            },
            PushContent::Tap { alert: None },
        ] {
            let mut p = push(content);
            p.priority = Priority::High;
            p.group = Some("room-42".into()); // no thread-id for a background push
            let (r, body) = rendered(&p);
            assert_eq!(header(&r, "apns-push-type"), "background");
            assert_eq!(header(&r, "apns-priority"), "5", "never 10 for background");
            assert_eq!(header(&r, "apns-topic"), "com.example.chat");
            assert_eq!(body["aps"], json!({"content-available": 1}));
        }
        let (_, body) = rendered(&push(PushContent::Inline {
            visual: None,
            raw: Some("{\"room\":42}".into()),
        }));
        assert_eq!(body["raw"], "{\"room\":42}");
    }

    #[test]
    fn sync_signal_is_background_without_notification_id() {
        let mut p = push(PushContent::Tap { alert: None });
        p.kind = DeliveryKind::Sync;
        p.priority = Priority::Low;
        p.notification_id = None;
        p.collapse_id = "sync".into();
        p.group = Some("room-42".into()); // no thread-id for a background push
        let (r, body) = rendered(&p);
        assert_eq!(header(&r, "apns-push-type"), "background");
        assert_eq!(header(&r, "apns-priority"), "5");
        assert_eq!(body["aps"], json!({"content-available": 1}));
        assert_eq!(body["kind"], "sync");
        assert!(body.get("notification_id").is_none());
    }

    #[test]
    fn fallback_alert_goes_out_at_priority_10() {
        let mut p = push(PushContent::Inline {
            visual: Some(visual("You have a message", "")),
            raw: None,
        });
        p.kind = DeliveryKind::FallbackAlert;
        p.priority = Priority::High;
        let (r, body) = rendered(&p);
        assert_eq!(header(&r, "apns-push-type"), "alert");
        assert_eq!(header(&r, "apns-priority"), "10");
        assert_eq!(body["kind"], "fallback_alert");
    }

    #[test]
    fn low_priority_alerts_use_priority_5() {
        let mut p = push(PushContent::Inline {
            visual: Some(visual("FYI", "later")),
            raw: None,
        });
        p.priority = Priority::Low;
        assert_eq!(priority(&p, push_type(&p)), 5);
    }

    #[test]
    fn apns_id_is_a_fresh_lowercase_uuid_per_request() {
        let p = push(PushContent::Tap { alert: None });
        let (a, _) = rendered(&p);
        let (b, _) = rendered(&p);
        let id = header(&a, "apns-id");
        assert_eq!(id.len(), 36);
        assert_eq!(id, id.to_ascii_lowercase());
        assert_ne!(id, header(&b, "apns-id"));
    }

    #[test]
    fn expiration_is_absolute_and_shrinks_with_the_attempt() {
        let mut p = push(PushContent::Tap { alert: None });
        p.expires_at = p.sent_at.plus(Duration::from_secs(3600));
        let now = Timestamp::from_secs(T0);
        assert_eq!(expiration(&p, now), T0 + 3600);
        p.sent_at = p.sent_at.plus(Duration::from_secs(600));
        assert_eq!(expiration(&p, now), T0 + 3000);
        p.sent_at = p.expires_at.plus(Duration::from_secs(5));
        assert_eq!(expiration(&p, Timestamp::from_secs(0)), 1, "never 0");
    }

    #[test]
    fn long_collapse_ids_are_shortened_deterministically() {
        assert_eq!(collapse_id("short"), "short");
        let exact = "x".repeat(64);
        assert_eq!(collapse_id(&exact), exact.as_str());
        let long_a = format!("{}a", "é".repeat(40));
        let long_b = format!("{}b", "é".repeat(40));
        let a = collapse_id(&long_a);
        assert!(a.len() <= MAX_COLLAPSE_ID_BYTES, "{a}");
        assert_eq!(a, collapse_id(&long_a), "retries collapse");
        assert_ne!(a, collapse_id(&long_b));
    }

    #[test]
    fn oversized_payload_is_refused_before_any_request() {
        let p = push(PushContent::Inline {
            visual: Some(visual("Big", &"x".repeat(MAX_PAYLOAD_BYTES))),
            raw: None,
        });
        let err = render(
            &p,
            BASE,
            &options(),
            Timestamp::from_secs(T0),
            uuid::Uuid::nil(),
        )
        .unwrap_err();
        assert_eq!(err.kind(), PushErrorKind::PayloadTooLarge);
        assert!(!err.is_retryable());
    }

    #[test]
    fn payload_exactly_at_the_limit_is_rendered() {
        let mut p = push(PushContent::Inline {
            visual: None,
            raw: Some(String::new()),
        });
        let base = render_payload(&p, PushType::Background, &options())
            .unwrap()
            .len();
        p.content = PushContent::Inline {
            visual: None,
            raw: Some("y".repeat(MAX_PAYLOAD_BYTES - base)),
        };
        let bytes = render_payload(&p, PushType::Background, &options()).unwrap();
        assert_eq!(bytes.len(), MAX_PAYLOAD_BYTES);
        assert_eq!(PushType::Voip.max_payload_bytes(), 5120);
        assert_eq!(PushType::Voip.topic_suffix(), ".voip");
    }

    #[test]
    fn other_platforms_are_refused() {
        let mut p = push(PushContent::Tap { alert: None });
        p.endpoint = fixtures::endpoint(PushAddress::Fcm { token: "t".into() });
        let err = device_token(&p).unwrap_err();
        assert_eq!(err.kind(), PushErrorKind::Rejected);
    }
}
