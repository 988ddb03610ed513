//! Rendering, pure: a [`Push`] becomes one `POST` to its WNS channel URI (PROTOCOLS.md §3.2–3.3),
//! without the `Authorization` header (the client adds the access token).
//!
//! - Visible pushes (an inline visual, or the app's placeholder for a visible shoulder tap) are
//!   `wns/toast` with a `ToastGeneric` toast whose `launch` attribute carries the ids.
//! - Raw content, silent shoulder taps and sync signals are `wns/raw`
//!   (`application/octet-stream`) with a small JSON object of ids (and the raw content).

use std::fmt::Write as _;

use bytes::Bytes;
use serde::Serialize;
use tidings::{Priority, Push, PushAddress, PushContent, PushError, VisualContent};

/// Largest payload WNS accepts, in bytes (it answers 413 above it).
pub const MAX_PAYLOAD_BYTES: usize = 5000;

/// Longest `X-WNS-Tag` / `X-WNS-Group` value WNS accepts.
pub const MAX_TAG_CHARS: usize = 16;

/// `X-WNS-Type` of visible pushes.
pub const TYPE_TOAST: &str = "wns/toast";
/// `X-WNS-Type` of silent pushes.
pub const TYPE_RAW: &str = "wns/raw";

/// The channel URI of a WNS endpoint.
pub fn channel_uri(push: &Push) -> Result<&str, PushError> {
    match &push.endpoint.address {
        PushAddress::Wns { channel_uri } => Ok(channel_uri),
        other => Err(PushError::rejected(format!(
            "the WNS channel cannot send to a {} endpoint",
            other.platform()
        ))),
    }
}

/// What a push renders to.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum WnsKind {
    /// `wns/toast`, `text/xml`.
    Toast,
    /// `wns/raw`, `application/octet-stream`.
    Raw,
}

impl WnsKind {
    /// The push's kind: a toast when it shows something, raw otherwise.
    pub fn of(push: &Push) -> WnsKind {
        if push.content.is_visible() {
            WnsKind::Toast
        } else {
            WnsKind::Raw
        }
    }

    /// The `X-WNS-Type` value.
    pub const fn wns_type(self) -> &'static str {
        match self {
            WnsKind::Toast => TYPE_TOAST,
            WnsKind::Raw => TYPE_RAW,
        }
    }

    /// The `Content-Type` WNS requires for it.
    pub const fn content_type(self) -> &'static str {
        match self {
            WnsKind::Toast => "text/xml",
            WnsKind::Raw => "application/octet-stream",
        }
    }

    /// `X-WNS-Cache-Policy`: WNS never caches toasts for offline devices, so toasts say
    /// `no-cache`; raw pushes say `cache`, so a device that was offline gets the latest one
    /// (WNS keeps one) and syncs from it.
    pub const fn cache_policy(self) -> &'static str {
        match self {
            WnsKind::Toast => "no-cache",
            WnsKind::Raw => "cache",
        }
    }
}

/// `X-WNS-PRIORITY` (PROTOCOLS.md §3.3): high → 1, normal → 2, low → 3. Very low (4) is never
/// used: WNS does not deliver it in battery saver.
pub const fn wns_priority(priority: Priority) -> u8 {
    match priority {
        Priority::High => 1,
        Priority::Normal => 2,
        Priority::Low => 3,
    }
}

/// An `X-WNS-Tag` / `X-WNS-Group` value from `id`: `id` itself when it is 1–16 ASCII letters and
/// digits, else a stable 16-hex-digit hash of it (64-bit FNV-1a), so the same collapse id always
/// gives the same tag and a later toast replaces the earlier one.
pub fn tag_for(id: &str) -> String {
    if !id.is_empty() && id.len() <= MAX_TAG_CHARS && id.bytes().all(|b| b.is_ascii_alphanumeric())
    {
        return id.to_owned();
    }
    let mut hash: u64 = 0xcbf2_9ce4_8422_2325;
    for b in id.bytes() {
        hash ^= u64::from(b);
        hash = hash.wrapping_mul(0x0100_0000_01b3);
    }
    format!("{hash:016x}")
}

/// Appends `text` to `out` with the five XML special characters escaped, and control
/// characters XML 1.0 cannot carry dropped.
pub fn escape_xml(out: &mut String, text: &str) {
    for c in text.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&apos;"),
            '\t' | '\n' | '\r' => out.push(c),
            c if (c as u32) < 0x20 || c == '\u{FFFE}' || c == '\u{FFFF}' => {}
            c => out.push(c),
        }
    }
}

/// The toast's `launch` arguments: a query string with `kind`, `app`, `notification_id` (when
/// there is one) and `sequence`; the app reads it when the user clicks the toast.
pub fn launch_args(push: &Push) -> String {
    let mut args = url::form_urlencoded::Serializer::new(String::new());
    args.append_pair("kind", push.kind.as_str());
    args.append_pair("app", push.app.as_str());
    if let Some(id) = push.notification_id {
        args.append_pair("notification_id", &id.to_string());
    }
    args.append_pair("sequence", &push.sequence.to_string());
    args.finish()
}

/// The toast XML of `visual`:
/// `<toast launch="…"><visual><binding template="ToastGeneric"><text>title</text><text>body</text></binding></visual></toast>`.
pub fn toast_xml(push: &Push, visual: &VisualContent) -> String {
    let mut xml = String::with_capacity(160 + visual.title.len());
    xml.push_str("<toast launch=\"");
    escape_xml(&mut xml, &launch_args(push));
    xml.push_str("\"><visual><binding template=\"ToastGeneric\"><text>");
    escape_xml(&mut xml, &visual.title);
    xml.push_str("</text>");
    if let Some(body) = visual.body.as_deref() {
        xml.push_str("<text>");
        escape_xml(&mut xml, body);
        xml.push_str("</text>");
    }
    xml.push_str("</binding></visual></toast>");
    xml
}

/// The body of a raw push: the ids the app needs to fetch and sync, and the inline raw content.
#[derive(Serialize)]
struct RawBody<'a> {
    kind: &'static str,
    app: &'a str,
    #[serde(skip_serializing_if = "Option::is_none")]
    notification_id: Option<String>,
    sequence: u64,
    #[serde(skip_serializing_if = "Option::is_none")]
    raw: Option<&'a str>,
}

/// The raw JSON body: `{"kind","app","notification_id"?,"sequence","raw"?}`.
pub fn raw_body(push: &Push) -> Result<Vec<u8>, PushError> {
    let raw = match &push.content {
        PushContent::Inline { raw, .. } => raw.as_deref(),
        PushContent::Tap { .. } => None,
    };
    serde_json::to_vec(&RawBody {
        kind: push.kind.as_str(),
        app: push.app.as_str(),
        notification_id: push.notification_id.map(|id| id.to_string()),
        sequence: push.sequence,
        raw,
    })
    .map_err(|e| PushError::rejected("the raw payload does not serialize").with_source(e))
}

/// The visible content of a push, if any.
fn visual_of(push: &Push) -> Option<&VisualContent> {
    match &push.content {
        PushContent::Tap { alert } => alert.as_ref(),
        PushContent::Inline { visual, .. } => visual.as_ref(),
    }
}

/// The payload of `push` and its kind, checked against [`MAX_PAYLOAD_BYTES`].
///
/// A visible push with inline raw content too is sent as a toast only: the raw content stays
/// in the store, and the app fetches it with the notification id from the `launch` arguments.
pub fn render_body(push: &Push) -> Result<(WnsKind, Vec<u8>), PushError> {
    let (kind, body) = match visual_of(push) {
        Some(visual) => (WnsKind::Toast, toast_xml(push, visual).into_bytes()),
        None => (WnsKind::Raw, raw_body(push)?),
    };
    if body.len() > MAX_PAYLOAD_BYTES {
        return Err(PushError::payload_too_large(body.len(), MAX_PAYLOAD_BYTES));
    }
    Ok((kind, body))
}

/// Renders `push` as a `POST` to its channel URI.
///
/// Headers: `Content-Type` and `X-WNS-Type` per kind, `X-WNS-TTL` = the seconds left at
/// `sent_at` (so retries carry shorter TTLs), `X-WNS-PRIORITY` ([`wns_priority`]),
/// `X-WNS-Cache-Policy` ([`WnsKind::cache_policy`]), `X-WNS-RequestForStatus: true`, and for
/// toasts `X-WNS-Tag` from the collapse id and `X-WNS-Group` from the group ([`tag_for`]).
/// `X-WNS-SuppressPopup` is never sent (Windows channels drop such pushes).
///
/// Fails with [`PushError::payload_too_large`] over [`MAX_PAYLOAD_BYTES`], and with a
/// rejection when the endpoint is not a WNS one or its URI is not a URI; nothing is sent then.
pub fn render(push: &Push) -> Result<http::Request<Bytes>, PushError> {
    let uri = channel_uri(push)?;
    let (kind, body) = render_body(push)?;
    let mut ttl = String::new();
    let _ = write!(ttl, "{}", push.ttl().as_secs());
    let mut builder = http::Request::builder()
        .method(http::Method::POST)
        .uri(uri)
        .header(http::header::CONTENT_TYPE, kind.content_type())
        .header("X-WNS-Type", kind.wns_type())
        .header("X-WNS-TTL", ttl)
        .header("X-WNS-PRIORITY", wns_priority(push.priority).to_string())
        .header("X-WNS-Cache-Policy", kind.cache_policy())
        .header("X-WNS-RequestForStatus", "true");
    if kind == WnsKind::Toast {
        builder = builder.header("X-WNS-Tag", tag_for(&push.collapse_id));
        if let Some(group) = push.group.as_deref().filter(|g| !g.is_empty()) {
            builder = builder.header("X-WNS-Group", tag_for(group));
        }
    }
    builder
        .body(Bytes::from(body))
        .map_err(|e| PushError::rejected("the channel URI is not a URI").with_source(e))
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use serde_json::{json, Value};
    use tidings::{DeliveryKind, PushErrorKind};
    use tidings_testkit::channel::fixtures::{self, title_only, visual};

    use super::*;

    const URI: &str = "https://db5p.notify.windows.com/w/?token=AwYAAAB";

    /// The fixture push of `content` to the channel URI [`URI`].
    fn push(content: PushContent) -> Push {
        let address = PushAddress::Wns {
            channel_uri: URI.into(),
        };
        fixtures::push(address, content)
    }

    fn header<'a>(r: &'a http::Request<Bytes>, name: &str) -> Option<&'a str> {
        r.headers().get(name).map(|v| v.to_str().unwrap())
    }

    #[test]
    fn visible_inline_push_is_a_toast_post_to_the_channel_uri() {
        let mut p = push(PushContent::Inline {
            visual: Some(visual("Lunch?", "At noon")),
            raw: None,
        });
        p.sequence = 7;
        p.priority = Priority::Normal;
        p.collapse_id = "c1".into();
        p.group = None;
        p.expires_at = p.sent_at.plus(Duration::from_secs(3600));
        let r = render(&p).unwrap();
        assert_eq!(r.method(), http::Method::POST);
        assert_eq!(r.uri(), URI);
        assert_eq!(header(&r, "content-type"), Some("text/xml"));
        assert_eq!(header(&r, "x-wns-type"), Some("wns/toast"));
        assert_eq!(header(&r, "x-wns-ttl"), Some("3600"));
        assert_eq!(header(&r, "x-wns-priority"), Some("2"));
        assert_eq!(header(&r, "x-wns-cache-policy"), Some("no-cache"));
        assert_eq!(header(&r, "x-wns-requestforstatus"), Some("true"));
        assert_eq!(header(&r, "x-wns-tag"), Some("c1"));
        assert_eq!(header(&r, "x-wns-group"), None);
        assert_eq!(header(&r, "x-wns-suppresspopup"), None);
        assert!(r.headers().get(http::header::AUTHORIZATION).is_none());
        let xml = std::str::from_utf8(r.body()).unwrap();
        let id = p.notification_id.unwrap();
        assert_eq!(
            xml,
            format!(
                "<toast launch=\"kind=notification&amp;app=chat&amp;notification_id={id}&amp;sequence=7\">\
                 <visual><binding template=\"ToastGeneric\"><text>Lunch?</text><text>At noon</text>\
                 </binding></visual></toast>"
            )
        );
    }

    #[test]
    fn toast_text_is_escaped() {
        let p = push(PushContent::Inline {
            visual: Some(visual("<b>Tom & \"Jerry\"</b>", "it's </text><x>\u{1}")),
            raw: None,
        });
        let (_, body) = render_body(&p).unwrap();
        let xml = String::from_utf8(body).unwrap();
        assert!(
            xml.contains("<text>&lt;b&gt;Tom &amp; &quot;Jerry&quot;&lt;/b&gt;</text>"),
            "{xml}"
        );
        assert!(
            xml.contains("<text>it&apos;s &lt;/text&gt;&lt;x&gt;</text>"),
            "control characters are dropped: {xml}"
        );
        assert_eq!(xml.matches("<text>").count(), 2);
    }

    #[test]
    fn toast_without_body_has_one_text() {
        let p = push(PushContent::Inline {
            visual: Some(title_only("Only a title")),
            raw: None,
        });
        let xml = String::from_utf8(render_body(&p).unwrap().1).unwrap();
        assert_eq!(xml.matches("<text>").count(), 1, "{xml}");
    }

    #[test]
    fn visible_shoulder_tap_shows_the_placeholder_and_launches_with_the_ids() {
        let p = push(PushContent::Tap {
            alert: Some(title_only("New message")),
        });
        let r = render(&p).unwrap();
        assert_eq!(header(&r, "x-wns-type"), Some("wns/toast"));
        let xml = std::str::from_utf8(r.body()).unwrap();
        assert!(xml.contains("<text>New message</text>"), "{xml}");
        assert!(
            xml.contains(&format!("notification_id={}", p.notification_id.unwrap())),
            "{xml}"
        );
    }

    #[test]
    fn silent_tap_is_raw_with_ids() {
        let mut p = push(PushContent::Tap { alert: None });
        p.sequence = 7;
        let r = render(&p).unwrap();
        assert_eq!(header(&r, "content-type"), Some("application/octet-stream"));
        assert_eq!(header(&r, "x-wns-type"), Some("wns/raw"));
        assert_eq!(header(&r, "x-wns-cache-policy"), Some("cache"));
        assert_eq!(header(&r, "x-wns-tag"), None, "tags are for toasts");
        let body: Value = serde_json::from_slice(r.body()).unwrap();
        assert_eq!(
            body,
            json!({
                "kind": "notification",
                "app": "chat",
                "notification_id": p.notification_id.unwrap().to_string(),
                "sequence": 7,
            })
        );
    }

    #[test]
    fn inline_raw_content_is_a_raw_push_carrying_it() {
        let p = push(PushContent::Inline {
            visual: None,
            raw: Some("{\"room\":42}".into()),
        });
        let r = render(&p).unwrap();
        assert_eq!(header(&r, "x-wns-type"), Some("wns/raw"));
        let body: Value = serde_json::from_slice(r.body()).unwrap();
        assert_eq!(body["raw"], "{\"room\":42}");
    }

    #[test]
    fn sync_signal_is_raw_without_notification_id() {
        let mut p = push(PushContent::Tap { alert: None });
        p.kind = DeliveryKind::Sync;
        p.priority = Priority::Low;
        p.notification_id = None;
        p.collapse_id = "sync".into();
        p.sequence = 7;
        let r = render(&p).unwrap();
        assert_eq!(header(&r, "x-wns-type"), Some("wns/raw"));
        assert_eq!(header(&r, "x-wns-priority"), Some("3"));
        let body: Value = serde_json::from_slice(r.body()).unwrap();
        assert_eq!(body, json!({"kind": "sync", "app": "chat", "sequence": 7}));
    }

    #[test]
    fn priority_maps_to_one_to_three() {
        for (priority, expected) in [
            (Priority::High, "1"),
            (Priority::Normal, "2"),
            (Priority::Low, "3"),
        ] {
            let mut p = push(PushContent::Tap { alert: None });
            p.priority = priority;
            let r = render(&p).unwrap();
            assert_eq!(header(&r, "x-wns-priority"), Some(expected), "{priority:?}");
        }
    }

    #[test]
    fn ttl_is_seconds_left_at_send_time() {
        let mut p = push(PushContent::Tap { alert: None });
        p.expires_at = p.sent_at.plus(Duration::from_secs(3600));
        p.sent_at = p.sent_at.plus(Duration::from_secs(600));
        assert_eq!(header(&render(&p).unwrap(), "x-wns-ttl"), Some("3000"));
        p.sent_at = p.expires_at.plus(Duration::from_secs(5));
        assert_eq!(header(&render(&p).unwrap(), "x-wns-ttl"), Some("0"));
    }

    #[test]
    fn tags_are_at_most_sixteen_alphanumerics_and_stable() {
        assert_eq!(tag_for("order42"), "order42");
        assert_eq!(tag_for("abcdefghijklmnop"), "abcdefghijklmnop");
        let uuid = "0195f3a2-7c1e-7d2b-9a4e-1f2e3d4c5b6a";
        let t = tag_for(uuid);
        assert_eq!(t.len(), 16);
        assert!(t.bytes().all(|b| b.is_ascii_hexdigit()), "{t}");
        assert_eq!(t, tag_for(uuid), "the same id gives the same tag");
        assert_ne!(t, tag_for("0195f3a2-7c1e-7d2b-9a4e-1f2e3d4c5b6b"));
        assert_eq!(tag_for("has space").len(), 16);
        assert_eq!(tag_for("").len(), 16);
    }

    #[test]
    fn toast_tag_and_group_come_from_collapse_id_and_group() {
        let mut p = push(PushContent::Inline {
            visual: Some(title_only("t")),
            raw: None,
        });
        p.collapse_id = "0195f3a2-7c1e-7d2b-9a4e-1f2e3d4c5b6a".into();
        p.group = Some("project:apollo/launch".into());
        let r = render(&p).unwrap();
        assert_eq!(
            header(&r, "x-wns-tag"),
            Some(tag_for(&p.collapse_id).as_str())
        );
        assert_eq!(
            header(&r, "x-wns-group"),
            Some(tag_for("project:apollo/launch").as_str())
        );
    }

    #[test]
    fn oversized_payload_is_refused_before_any_request() {
        let p = push(PushContent::Inline {
            visual: Some(visual("Big", &"x".repeat(MAX_PAYLOAD_BYTES))),
            raw: None,
        });
        let err = render(&p).unwrap_err();
        assert_eq!(err.kind(), PushErrorKind::PayloadTooLarge);
        assert!(!err.is_retryable());
        let raw = push(PushContent::Inline {
            visual: None,
            raw: Some("y".repeat(MAX_PAYLOAD_BYTES)),
        });
        assert_eq!(
            render(&raw).unwrap_err().kind(),
            PushErrorKind::PayloadTooLarge
        );
    }

    #[test]
    fn payload_of_exactly_the_limit_is_rendered() {
        let mut p = push(PushContent::Inline {
            visual: Some(title_only("")),
            raw: None,
        });
        let base = render_body(&p).unwrap().1.len();
        p.content = PushContent::Inline {
            visual: Some(title_only(&"z".repeat(MAX_PAYLOAD_BYTES - base))),
            raw: None,
        };
        assert_eq!(render_body(&p).unwrap().1.len(), MAX_PAYLOAD_BYTES);
        p.content = PushContent::Inline {
            visual: Some(title_only(&"z".repeat(MAX_PAYLOAD_BYTES - base + 1))),
            raw: None,
        };
        assert!(render_body(&p).is_err());
    }

    #[test]
    fn other_platforms_are_rejected() {
        let mut p = push(PushContent::Tap { alert: None });
        p.endpoint = fixtures::endpoint(PushAddress::Fcm { token: "t".into() });
        assert_eq!(render(&p).unwrap_err().kind(), PushErrorKind::Rejected);
    }
}
