//! Pure rendering: a [`Push`] becomes the JSON message the service worker reads, and an encrypted
//! body plus headers become an `http::Request`.

use aws_lc_rs::digest;
use http::{header, Method, Request};
use serde::Serialize;
use tidings::{DeliveryKind, Priority, Push, PushContent, PushError, VisualContent};

use crate::crypto::b64url;

/// Version of the JSON message format (the `v` field).
pub const MESSAGE_VERSION: u32 = 1;
/// Longest `Topic` (RFC 8030 §5.4).
pub const MAX_TOPIC: usize = 32;

/// The JSON message a service worker receives (`event.data.json()`).
#[derive(Serialize)]
struct Message<'a> {
    v: u32,
    /// `tap`: ids only, fetch the content; `inline`: the content is here.
    mode: &'static str,
    kind: &'static str,
    app: &'a str,
    #[serde(skip_serializing_if = "Option::is_none")]
    notification_id: Option<String>,
    sequence: u64,
    /// What to show; absent for a silent push.
    #[serde(skip_serializing_if = "Option::is_none")]
    alert: Option<&'a VisualContent>,
    #[serde(skip_serializing_if = "Option::is_none")]
    data: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    group: Option<&'a str>,
}

/// The plaintext for `push`: JSON, see the crate documentation for the fields.
///
/// In shoulder-tap mode ([`PushContent::Tap`]) it carries only ids (notification id, app, kind,
/// sequence) and the app's placeholder alert; inline, the content. A silent push (a sync signal;
/// the store does not enqueue those for Web Push, but one may arrive) is the same JSON without
/// `alert`.
pub fn render(push: &Push) -> Vec<u8> {
    let (mode, alert, data, group) = match &push.content {
        PushContent::Tap { alert } => ("tap", alert.as_ref(), None, None),
        PushContent::Inline { visual, raw } => (
            "inline",
            visual.as_ref(),
            raw.as_deref(),
            push.group.as_deref(),
        ),
    };
    let message = Message {
        v: MESSAGE_VERSION,
        mode,
        kind: kind_str(push.kind),
        app: push.app.as_str(),
        notification_id: push.notification_id.map(|id| id.to_string()),
        sequence: push.sequence,
        alert,
        data,
        group,
    };
    // Serializing plain strings and numbers cannot fail.
    serde_json::to_vec(&message).unwrap_or_default()
}

fn kind_str(kind: DeliveryKind) -> &'static str {
    match kind {
        DeliveryKind::Notification => "notification",
        DeliveryKind::Sync => "sync",
        DeliveryKind::FallbackAlert => "fallback_alert",
    }
}

/// Refuses a plaintext over `limit` bytes, before anything is encrypted or sent.
pub fn check_size(plaintext: &[u8], limit: usize) -> Result<(), PushError> {
    if plaintext.len() > limit {
        return Err(PushError::payload_too_large(plaintext.len(), limit));
    }
    Ok(())
}

/// `Urgency` for a priority (RFC 8030 §5.3).
pub fn urgency(priority: Priority) -> &'static str {
    match priority {
        Priority::Low => "low",
        Priority::Normal => "normal",
        Priority::High => "high",
    }
}

/// `Topic` for a collapse id: the id itself when it is at most 32 base64url characters,
/// otherwise the first 32 characters of its SHA-256 in base64url. The same collapse id always
/// gives the same topic, so a later push replaces an undelivered earlier one.
pub fn topic(collapse_id: &str) -> String {
    let fits = !collapse_id.is_empty()
        && collapse_id.len() <= MAX_TOPIC
        && collapse_id
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_');
    if fits {
        return collapse_id.to_owned();
    }
    let hash = digest::digest(&digest::SHA256, collapse_id.as_bytes());
    let mut t = b64url(hash.as_ref());
    t.truncate(MAX_TOPIC);
    t
}

/// The request for an encrypted `body`: `POST` to the endpoint with `TTL` (from the push's
/// expiry at `sent_at`), `Urgency`, `Topic`, `Content-Encoding: aes128gcm` and the VAPID
/// `Authorization`.
pub fn build(
    push: &Push,
    endpoint: &str,
    authorization: &str,
    body: Vec<u8>,
) -> Result<Request<Vec<u8>>, PushError> {
    Request::builder()
        .method(Method::POST)
        .uri(endpoint)
        .header("ttl", push.ttl().as_secs())
        .header("urgency", urgency(push.priority))
        .header("topic", topic(&push.collapse_id))
        .header(header::CONTENT_ENCODING, "aes128gcm")
        .header(header::CONTENT_TYPE, "application/octet-stream")
        .header(header::AUTHORIZATION, authorization)
        .body(body)
        .map_err(|e| PushError::rejected("the endpoint is not a valid request URI").with_source(e))
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;
    use tidings::PushAddress;
    use tidings_testkit::channel::fixtures::{self, visual};

    /// The fixture push of `content` to a subscription on FCM's push service (without keys:
    /// nothing here encrypts).
    fn push(content: PushContent) -> Push {
        let address = PushAddress::WebPush {
            endpoint: "https://fcm.googleapis.com/fcm/send/x".into(),
            p256dh: String::new(),
            auth: String::new(),
        };
        fixtures::push(address, content)
    }

    #[test]
    fn shoulder_tap_carries_only_ids_and_the_placeholder() {
        let mut p = push(PushContent::Tap {
            alert: Some(visual("New notification", "Open to read")),
        });
        p.sequence = 7;
        p.group = Some("team-secret-group".into()); // a tap must not carry it
        let json: serde_json::Value = serde_json::from_slice(&render(&p)).unwrap();
        assert_eq!(
            json,
            serde_json::json!({
                "v": 1, "mode": "tap", "kind": "notification", "app": "chat",
                "notification_id": p.notification_id.unwrap().to_string(), "sequence": 7,
                "alert": {"title": "New notification", "body": "Open to read"},
            })
        );
    }

    #[test]
    fn inline_carries_the_content() {
        let mut p = push(PushContent::Inline {
            visual: Some(visual("Lunch?", "At noon")),
            raw: Some(r#"{"room":42}"#.into()),
        });
        p.group = Some("team-secret-group".into());
        let json: serde_json::Value = serde_json::from_slice(&render(&p)).unwrap();
        assert_eq!(json["mode"], "inline");
        assert_eq!(json["alert"]["title"], "Lunch?");
        assert_eq!(json["alert"]["body"], "At noon");
        assert_eq!(json["data"], r#"{"room":42}"#);
        assert_eq!(json["group"], "team-secret-group");
    }

    #[test]
    fn a_silent_sync_signal_is_a_minimal_json_without_alert() {
        let mut p = push(PushContent::Tap { alert: None });
        p.kind = DeliveryKind::Sync;
        p.notification_id = None;
        p.sequence = 7;
        p.group = Some("team-secret-group".into()); // a silent push must not carry it
        let json: serde_json::Value = serde_json::from_slice(&render(&p)).unwrap();
        assert_eq!(
            json,
            serde_json::json!({"v": 1, "mode": "tap", "kind": "sync", "app": "chat", "sequence": 7})
        );
    }

    #[test]
    fn size_is_checked_against_the_limit() {
        assert!(check_size(&[0; 3993], 3993).is_ok());
        let e = check_size(&[0; 3994], 3993).unwrap_err();
        assert_eq!(e.kind(), tidings::PushErrorKind::PayloadTooLarge);
    }

    #[test]
    fn topic_is_at_most_32_base64url_chars_and_stable() {
        assert_eq!(topic("sync"), "sync");
        let uuid = "0b7a3e62-3f1c-4c55-9d3c-0e7c1b2a4f10";
        let t = topic(uuid);
        assert_eq!(t.len(), 32);
        assert!(t
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_'));
        assert_eq!(t, topic(uuid), "same collapse id, same topic");
        assert_ne!(t, topic("0b7a3e62-3f1c-4c55-9d3c-0e7c1b2a4f11"));
        assert_eq!(topic("has space").len(), 32);
        assert_eq!(topic("").len(), 32);
    }

    #[test]
    fn headers_carry_ttl_urgency_topic_encoding_and_vapid() {
        let mut p = push(PushContent::Tap { alert: None });
        p.priority = Priority::High;
        p.collapse_id = "c1".into();
        p.expires_at = p.sent_at.plus(Duration::from_secs(600));
        p.sent_at = p.sent_at.plus(Duration::from_secs(100)); // a retry: TTL shrinks
        let req = build(
            &p,
            "https://fcm.googleapis.com/fcm/send/x",
            "vapid t=a, k=b",
            vec![1, 2],
        )
        .unwrap();
        let h = req.headers();
        assert_eq!(req.method(), Method::POST);
        assert_eq!(h["ttl"], "500");
        assert_eq!(h["urgency"], "high");
        assert_eq!(h["topic"], "c1");
        assert_eq!(h["content-encoding"], "aes128gcm");
        assert_eq!(h["authorization"], "vapid t=a, k=b");
        assert_eq!(req.body(), &vec![1, 2]);
        assert_eq!(urgency(Priority::Low), "low");
        assert_eq!(urgency(Priority::Normal), "normal");
    }
}
