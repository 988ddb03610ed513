//! The WNS fake: token endpoint, channel checks, real error answers, scripts.
#![cfg(feature = "mock-wns")]
// Helpers outside #[test] fns report failures by panicking, as assertions do.
#![allow(clippy::unwrap_used)]

use std::time::Duration;

use tidings::{AddressPolicy, PushAddress};
use tidings_testkit::wns::{
    DeviceConnectionStatus, WnsAppCredentials, WnsAuthFlow, WnsMock, WnsReply,
};

const TOAST: &str = r#"<toast><visual><binding template="ToastGeneric"><text>Order shipped</text><text>Arrives Friday</text></binding></visual></toast>"#;

async fn token(http: &reqwest::Client, app: &WnsAppCredentials) -> String {
    let resp = http
        .post(&app.token_url)
        .header("content-type", "application/x-www-form-urlencoded")
        .body(app.token_request_form())
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 200);
    let body: serde_json::Value = serde_json::from_slice(&resp.bytes().await.unwrap()).unwrap();
    assert_eq!(body["token_type"], "bearer");
    body["access_token"].as_str().unwrap().to_owned()
}

/// A toast push with a valid token, as a correct channel sends it.
fn toast(http: &reqwest::Client, channel: &str, token: &str) -> reqwest::RequestBuilder {
    http.post(channel)
        .header("authorization", format!("Bearer {token}"))
        .header("content-type", "text/xml")
        .header("x-wns-type", "wns/toast")
        .body(TOAST)
}

/// A push with the headers in `headers` (nothing else but the token).
fn push(
    http: &reqwest::Client,
    channel: &str,
    token: &str,
    headers: &[(&str, &str)],
    body: impl Into<reqwest::Body>,
) -> reqwest::RequestBuilder {
    let mut req = http
        .post(channel)
        .header("authorization", format!("Bearer {token}"));
    for (n, v) in headers {
        req = req.header(*n, *v);
    }
    req.body(body)
}

fn header(resp: &reqwest::Response, name: &str) -> Option<String> {
    resp.headers()
        .get(name)
        .map(|v| v.to_str().unwrap().to_owned())
}

#[tokio::test]
async fn an_accepted_toast_is_recorded_with_its_decoded_content() {
    let wns = WnsMock::start().await;
    let app = wns.register_app();
    let channel = wns.channel_uri(&app);
    assert!(PushAddress::Wns {
        channel_uri: channel.clone()
    }
    .validate(&AddressPolicy::with_loopback_for_tests())
    .is_ok());
    let http = reqwest::Client::new();
    let token = token(&http, &app).await;
    let resp = toast(&http, &channel, &token)
        .header("x-wns-ttl", "600")
        .header("x-wns-priority", "1")
        .header("x-wns-tag", "order42")
        .header("x-wns-requestforstatus", "true")
        .header("ms-cv", "abc.1")
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 200);
    assert_eq!(header(&resp, "x-wns-status").as_deref(), Some("received"));
    assert_eq!(
        header(&resp, "x-wns-deviceconnectionstatus").as_deref(),
        Some("connected")
    );
    assert_eq!(header(&resp, "ms-cv").as_deref(), Some("abc.1"));
    let msg_id = header(&resp, "x-wns-msg-id").unwrap();
    assert!(msg_id.len() <= 16);
    assert!(header(&resp, "x-wns-debug-trace").is_some());

    let seen = wns.requests_to(&channel);
    assert_eq!(seen.len(), 1);
    let r = &seen[0];
    assert!(r.accepted());
    assert_eq!(r.xml_root.as_deref(), Some("toast"));
    assert_eq!(r.texts, ["Order shipped", "Arrives Friday"]);
    assert_eq!((r.ttl, r.priority), (Some(600), Some(1)));
    assert_eq!(r.tag.as_deref(), Some("order42"));
    assert_eq!(r.message_id.as_deref(), Some(msg_id.as_str()));
    assert!(!format!("{r:?}").contains(&token), "Debug shows the token");
}

#[tokio::test]
async fn raw_badge_and_tile_pushes_are_accepted_with_their_content_types() {
    let wns = WnsMock::start().await;
    let app = wns.register_app();
    let channel = wns.channel_uri(&app);
    let http = reqwest::Client::new();
    let token = token(&http, &app).await;
    let cases: [(&str, &str, &[u8]); 3] = [
        ("wns/raw", "application/octet-stream", b"\x00\x01sync"),
        ("wns/badge", "text/xml", br#"<badge value="3"/>"#),
        (
            "wns/tile",
            "text/xml; charset=utf-8",
            br#"<tile><visual><binding template="TileMedium"><text>Hi</text></binding></visual></tile>"#,
        ),
    ];
    for (kind, ct, body) in cases {
        let resp = push(
            &http,
            &channel,
            &token,
            &[("x-wns-type", kind), ("content-type", ct)],
            body.to_vec(),
        )
        .send()
        .await
        .unwrap();
        assert_eq!(resp.status(), 200, "{kind}");
    }
    let seen = wns.requests();
    assert_eq!(seen[0].body, b"\x00\x01sync");
    assert_eq!(seen[1].xml_root.as_deref(), Some("badge"));
}

#[tokio::test]
async fn the_entra_token_flow_works_and_bad_token_requests_get_oauth_errors() {
    let wns = WnsMock::start().await;
    let app = wns.register_entra_app();
    assert_eq!(app.flow, WnsAuthFlow::Entra);
    assert!(app.token_url.ends_with("/oauth2/v2.0/token"));
    let http = reqwest::Client::new();
    let channel = wns.channel_uri(&app);
    let token = token(&http, &app).await;
    assert_eq!(
        toast(&http, &channel, &token)
            .send()
            .await
            .unwrap()
            .status(),
        200
    );

    let legacy = wns.register_app();
    let form = |creds: &WnsAppCredentials, scope: &str, secret: &str| {
        form_urlencoded::Serializer::new(String::new())
            .append_pair("grant_type", "client_credentials")
            .append_pair("client_id", &creds.client_id)
            .append_pair("client_secret", secret)
            .append_pair("scope", scope)
            .finish()
    };
    let cases = [
        // Entra with the legacy scope, legacy with the Entra scope.
        (
            &app.token_url,
            form(&app, "notify.windows.com", &app.client_secret),
            400,
            "invalid_scope",
        ),
        (
            &legacy.token_url,
            form(
                &legacy,
                "https://wns.windows.com/.default",
                &legacy.client_secret,
            ),
            400,
            "invalid_scope",
        ),
        // Wrong secrets.
        (
            &app.token_url,
            form(&app, app.scope(), "wrong"),
            401,
            "invalid_client",
        ),
        (
            &legacy.token_url,
            form(&legacy, legacy.scope(), "wrong"),
            400,
            "invalid_client",
        ),
        // Legacy credentials at the Entra endpoint.
        (
            &app.token_url,
            form(&legacy, app.scope(), &legacy.client_secret),
            401,
            "invalid_client",
        ),
        // Another grant type.
        (
            &legacy.token_url,
            legacy
                .token_request_form()
                .replace("client_credentials", "password"),
            400,
            "unsupported_grant_type",
        ),
    ];
    for (url, body, status, error) in cases {
        let resp = http
            .post(url.as_str())
            .header("content-type", "application/x-www-form-urlencoded")
            .body(body.clone())
            .send()
            .await
            .unwrap();
        assert_eq!(resp.status().as_u16(), status, "{body}");
        let json: serde_json::Value = serde_json::from_slice(&resp.bytes().await.unwrap()).unwrap();
        assert_eq!(json["error"], error, "{body}");
    }
    // The legacy s.notify.live.net scope is accepted too.
    let resp = http
        .post(&legacy.token_url)
        .header("content-type", "application/x-www-form-urlencoded")
        .body(form(&legacy, "s.notify.live.net", &legacy.client_secret))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 200);
    assert_eq!(wns.token_requests().len(), 8);
}

#[tokio::test]
async fn missing_expired_revoked_and_foreign_tokens_are_refused() {
    let wns = WnsMock::start().await;
    let app = wns.register_app();
    let channel = wns.channel_uri(&app);
    let http = reqwest::Client::new();

    let resp = http
        .post(&channel)
        .header("content-type", "text/xml")
        .header("x-wns-type", "wns/toast")
        .body(TOAST)
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 401);
    assert!(header(&resp, "www-authenticate")
        .unwrap()
        .starts_with("Bearer"));

    assert_eq!(
        toast(&http, &channel, "made-up")
            .send()
            .await
            .unwrap()
            .status(),
        401
    );

    let first = token(&http, &app).await;
    wns.expire_tokens();
    let resp = toast(&http, &channel, &first).send().await.unwrap();
    assert_eq!(resp.status(), 401);
    assert!(header(&resp, "x-wns-error-description")
        .unwrap()
        .contains("expired"));

    let second = token(&http, &app).await;
    assert_eq!(
        toast(&http, &channel, &second)
            .send()
            .await
            .unwrap()
            .status(),
        200
    );
    wns.revoke_token(&second);
    assert_eq!(
        toast(&http, &channel, &second)
            .send()
            .await
            .unwrap()
            .status(),
        401
    );

    // A zero lifetime makes tokens expire as they are issued.
    wns.set_token_lifetime(Duration::ZERO);
    let dead = token(&http, &app).await;
    assert_eq!(
        toast(&http, &channel, &dead).send().await.unwrap().status(),
        401
    );
    wns.set_token_lifetime(Duration::from_secs(3600));

    // Another app's valid token: 403.
    let other = wns.register_app();
    let theirs = token(&http, &other).await;
    assert_eq!(
        toast(&http, &channel, &theirs)
            .send()
            .await
            .unwrap()
            .status(),
        403
    );
}

type Case = (Vec<(&'static str, &'static str)>, String, u16, &'static str);

#[tokio::test]
async fn malformed_pushes_get_the_errors_wns_gives() {
    let wns = WnsMock::start().await;
    let app = wns.register_app();
    let channel = wns.channel_uri(&app);
    let http = reqwest::Client::new();
    let t = token(&http, &app).await;
    let toast_h = [("x-wns-type", "wns/toast"), ("content-type", "text/xml")];
    let with = |extra: (&'static str, &'static str)| {
        let mut h = toast_h.to_vec();
        h.push(extra);
        h
    };
    let big = format!("<toast><visual><binding template=\"ToastGeneric\"><text>{}</text></binding></visual></toast>", "x".repeat(5000));
    // (headers, body, expected status, word the error description contains)
    let cases: Vec<Case> = vec![
        // Type and content type disagree, both ways; unknown and missing type.
        (
            vec![
                ("x-wns-type", "wns/toast"),
                ("content-type", "application/octet-stream"),
            ],
            TOAST.into(),
            400,
            "Content-Type",
        ),
        (
            vec![("x-wns-type", "wns/raw"), ("content-type", "text/xml")],
            "data".into(),
            400,
            "Content-Type",
        ),
        (
            vec![("x-wns-type", "wns/popup"), ("content-type", "text/xml")],
            TOAST.into(),
            400,
            "X-WNS-Type",
        ),
        (
            vec![("content-type", "text/xml")],
            TOAST.into(),
            400,
            "X-WNS-Type",
        ),
        // Broken XML and the wrong root.
        (
            toast_h.to_vec(),
            "<toast><visual>".into(),
            400,
            "well-formed",
        ),
        (toast_h.to_vec(), "<badge value=\"1\"/>".into(), 400, "root"),
        // Over 5000 bytes.
        (toast_h.to_vec(), big, 413, "5000"),
        // Header rules.
        (
            with(("x-wns-tag", "seventeen-chars-x")),
            TOAST.into(),
            400,
            "x-wns-tag",
        ),
        (
            with(("x-wns-group", "seventeen-chars-x")),
            TOAST.into(),
            400,
            "x-wns-group",
        ),
        (with(("x-wns-priority", "5")), TOAST.into(), 400, "PRIORITY"),
        (with(("x-wns-priority", "0")), TOAST.into(), 400, "PRIORITY"),
        (with(("x-wns-ttl", "soon")), TOAST.into(), 400, "TTL"),
        (
            with(("x-wns-cache-policy", "maybe")),
            TOAST.into(),
            400,
            "Cache-Policy",
        ),
        (
            with(("x-wns-requestforstatus", "yes")),
            TOAST.into(),
            400,
            "RequestForStatus",
        ),
        (
            with(("x-wns-suppresspopup", "true")),
            TOAST.into(),
            400,
            "SuppressPopup",
        ),
    ];
    for (headers, body, status, needle) in cases {
        let resp = push(&http, &channel, &t, &headers, body)
            .send()
            .await
            .unwrap();
        let description = header(&resp, "x-wns-error-description").unwrap_or_default();
        assert_eq!(resp.status().as_u16(), status, "{headers:?}: {description}");
        assert!(description.contains(needle), "{headers:?}: {description}");
    }
    assert!(wns
        .requests()
        .iter()
        .all(|r| !r.accepted() && r.problem.is_some()));

    // Unknown channel 404, wrong method 405, expired channel 410.
    let unknown = format!("{}/w/?token=nope", wns.base_url());
    assert_eq!(
        toast(&http, &unknown, &t).send().await.unwrap().status(),
        404
    );
    let get = http
        .get(&channel)
        .header("authorization", format!("Bearer {t}"))
        .send()
        .await
        .unwrap();
    assert_eq!(get.status(), 405);
    wns.expire_channel(&channel);
    assert_eq!(
        toast(&http, &channel, &t).send().await.unwrap().status(),
        410
    );
}

#[tokio::test]
async fn scripted_answers_come_back_with_their_status_and_headers() {
    let wns = WnsMock::start().await;
    let app = wns.register_app();
    let channel = wns.channel_uri(&app);
    let http = reqwest::Client::new();
    let t = token(&http, &app).await;
    let script = [
        WnsReply::Gone,
        WnsReply::NotFound,
        WnsReply::Throttled {
            continue_after: Some(Duration::from_secs(90)),
        },
        WnsReply::Dropped,
        WnsReply::ChannelThrottled,
        WnsReply::Unauthorized,
        WnsReply::Forbidden,
        WnsReply::BadRequest,
        WnsReply::MethodNotAllowed,
        WnsReply::PayloadTooLarge,
        WnsReply::InternalServerError,
        WnsReply::ServiceUnavailable,
    ];
    wns.script(&channel, script);
    let mut answers = Vec::new();
    for _ in 0..13 {
        let resp = toast(&http, &channel, &t).send().await.unwrap();
        answers.push((
            resp.status().as_u16(),
            header(&resp, "x-wns-status"),
            header(&resp, "x-wns-continue-after"),
        ));
    }
    let s = |v: &str| Some(v.to_owned());
    assert_eq!(
        answers,
        vec![
            (410, None, None),
            (404, None, None),
            (406, s("channelthrottled"), s("90")),
            (200, s("dropped"), None),
            (200, s("channelthrottled"), None),
            (401, None, None),
            (403, None, None),
            (400, None, None),
            (405, None, None),
            (413, None, None),
            (500, None, None),
            (503, None, None),
            (200, s("received"), None),
        ]
    );
}

#[tokio::test]
async fn slow_and_dropped_connections_are_scriptable() {
    let wns = WnsMock::start().await;
    let app = wns.register_app();
    let channel = wns.channel_uri(&app);
    let http = reqwest::Client::new();
    let t = token(&http, &app).await;
    wns.script(
        &channel,
        [
            WnsReply::slow(Duration::from_millis(200), WnsReply::Accept),
            WnsReply::DropConnection,
        ],
    );
    let pending = tokio::spawn(toast(&http, &channel, &t).send());
    let seen = wns.wait_for_requests(1).await;
    assert_eq!(seen[0].texts[0], "Order shipped");
    assert_eq!(pending.await.unwrap().unwrap().status(), 200);
    assert!(toast(&http, &channel, &t).send().await.is_err());
    assert_eq!(
        toast(&http, &channel, &t).send().await.unwrap().status(),
        200
    );
}

#[tokio::test]
async fn a_standing_script_and_device_status_apply_per_channel() {
    let wns = WnsMock::start().await;
    let app = wns.register_app();
    let (gone, fine) = (wns.channel_uri(&app), wns.channel_uri(&app));
    let http = reqwest::Client::new();
    let t = token(&http, &app).await;
    wns.script_always(&gone, WnsReply::Gone);
    wns.set_device_status(&fine, DeviceConnectionStatus::TempDisconnected);
    for _ in 0..2 {
        assert_eq!(toast(&http, &gone, &t).send().await.unwrap().status(), 410);
    }
    let resp = toast(&http, &fine, &t)
        .header("x-wns-requestforstatus", "true")
        .send()
        .await
        .unwrap();
    assert_eq!(
        header(&resp, "x-wns-deviceconnectionstatus").as_deref(),
        Some("tempdisconnected")
    );
}

#[test]
fn generated_credentials_hide_their_secret_and_look_real() {
    let legacy = WnsAppCredentials::generate_legacy();
    assert!(legacy.client_id.starts_with("ms-app://S-1-15-2-"));
    assert_eq!(legacy.token_url, "https://login.live.com/accesstoken.srf");
    assert!(legacy
        .token_request_form()
        .contains("scope=notify.windows.com"));
    let entra = WnsAppCredentials::generate_entra();
    assert!(entra
        .token_url
        .starts_with("https://login.microsoftonline.com/"));
    assert!(entra
        .token_request_form()
        .contains("scope=https%3A%2F%2Fwns.windows.com%2F.default"));
    for c in [legacy, entra] {
        let shown = format!("{c:?}");
        assert!(!shown.contains(&c.client_secret), "{shown}");
    }
}

#[tokio::test]
async fn the_mock_stops_when_dropped() {
    let wns = WnsMock::start().await;
    let url = wns.legacy_token_url();
    drop(wns);
    assert!(reqwest::Client::new().post(url).send().await.is_err());
}

/// The conformance suite run through [`WnsHarness`] against a minimal channel written from
/// PROTOCOLS.md §3 (the production channel is `tidings-wns`): proves the harness, the macro and
/// the fake work together.
mod conformance {
    use std::fmt;
    use std::time::Duration;

    use async_trait::async_trait;
    use tidings::{
        Accepted, ChannelCapabilities, Platform, Push, PushAddress, PushChannel, PushContent,
        PushError,
    };
    use tidings_testkit::channel::ChannelOptions;
    use tidings_testkit::wns::{WnsAppCredentials, WnsHarness, MAX_PAYLOAD};

    struct ReferenceWns {
        http: reqwest::Client,
        credentials: WnsAppCredentials,
        token: tokio::sync::Mutex<Option<String>>,
    }

    impl fmt::Debug for ReferenceWns {
        fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
            f.debug_struct("ReferenceWns")
                .field("client_id", &self.credentials.client_id)
                .finish_non_exhaustive()
        }
    }

    fn escape(text: &str) -> String {
        text.replace('&', "&amp;")
            .replace('<', "&lt;")
            .replace('>', "&gt;")
            .replace('"', "&quot;")
    }

    fn toast(content: &PushContent) -> String {
        let visual = match content {
            PushContent::Tap { alert } => alert.clone(),
            PushContent::Inline { visual, .. } => visual.clone(),
        }
        .unwrap_or_else(|| tidings::VisualContent {
            title: "New notification".into(),
            body: None,
        });
        let mut texts = format!("<text>{}</text>", escape(&visual.title));
        if let Some(body) = &visual.body {
            texts.push_str(&format!("<text>{}</text>", escape(body)));
        }
        format!(
            "<toast><visual><binding template=\"ToastGeneric\">{texts}</binding></visual></toast>"
        )
    }

    fn transport(e: reqwest::Error) -> PushError {
        if e.is_timeout() {
            PushError::timeout("WNS did not answer in time")
        } else {
            PushError::unavailable(format!("request failed: {e}"))
        }
    }

    impl ReferenceWns {
        async fn token(&self, refresh: bool) -> Result<String, PushError> {
            let mut cached = self.token.lock().await;
            if let (Some(t), false) = (cached.as_ref(), refresh) {
                return Ok(t.clone());
            }
            let resp = self
                .http
                .post(&self.credentials.token_url)
                .header("content-type", "application/x-www-form-urlencoded")
                .body(self.credentials.token_request_form())
                .send()
                .await
                .map_err(transport)?;
            if !resp.status().is_success() {
                return Err(PushError::misconfigured(
                    "WNS refused our client credentials",
                ));
            }
            let json: serde_json::Value = resp.json().await.map_err(transport)?;
            let token = json["access_token"].as_str().unwrap_or_default().to_owned();
            *cached = Some(token.clone());
            Ok(token)
        }
    }

    #[async_trait]
    impl PushChannel for ReferenceWns {
        fn platform(&self) -> Platform {
            Platform::Wns
        }

        fn capabilities(&self) -> ChannelCapabilities {
            ChannelCapabilities {
                max_payload_bytes: MAX_PAYLOAD,
                silent_push: true,
                collapse: true,
            }
        }

        async fn send(&self, push: &Push) -> Result<Accepted, PushError> {
            let PushAddress::Wns { channel_uri } = &push.endpoint.address else {
                return Err(PushError::rejected("not a WNS endpoint"));
            };
            let xml = toast(&push.content);
            if xml.len() > MAX_PAYLOAD {
                return Err(PushError::payload_too_large(xml.len(), MAX_PAYLOAD));
            }
            let mut refreshed = false;
            loop {
                let token = self.token(refreshed).await?;
                let resp = self
                    .http
                    .post(channel_uri.as_str())
                    .header("authorization", format!("Bearer {token}"))
                    .header("content-type", "text/xml")
                    .header("x-wns-type", "wns/toast")
                    .header("x-wns-ttl", push.ttl().as_secs().to_string())
                    .header("x-wns-requestforstatus", "true")
                    .body(xml.clone())
                    .send()
                    .await
                    .map_err(transport)?;
                let status = resp.status().as_u16();
                let header = |n: &str| {
                    resp.headers()
                        .get(n)
                        .and_then(|v| v.to_str().ok())
                        .map(str::to_owned)
                };
                return match status {
                    200 => match header("x-wns-status").as_deref() {
                        Some("received") => Ok(Accepted {
                            provider_message_id: header("x-wns-msg-id"),
                        }),
                        Some("channelthrottled") => {
                            Err(PushError::throttled("channel throttled", None))
                        }
                        _ => Err(PushError::rejected("WNS dropped the notification")),
                    },
                    401 if !refreshed => {
                        refreshed = true;
                        continue;
                    }
                    401 | 403 => Err(PushError::misconfigured(format!(
                        "WNS refused our token ({status})"
                    ))),
                    404 | 410 => Err(PushError::gone(format!("WNS answered {status}"))),
                    406 => Err(PushError::throttled(
                        "WNS throttled us",
                        header("x-wns-continue-after")
                            .and_then(|v| v.parse().ok())
                            .map(Duration::from_secs),
                    )),
                    500 | 503 => Err(PushError::unavailable(format!("WNS error {status}"))),
                    _ => Err(PushError::rejected(format!("WNS answered {status}"))),
                };
            }
        }
    }

    fn reference(h: &WnsHarness, o: ChannelOptions) -> ReferenceWns {
        ReferenceWns {
            http: reqwest::Client::builder()
                .timeout(o.timeout)
                .build()
                .unwrap(),
            credentials: h.credentials().clone(),
            token: tokio::sync::Mutex::new(None),
        }
    }

    tidings_testkit::channel_conformance!(WnsHarness, reference);

    /// The reference channel refreshes an expired token and resends once.
    #[tokio::test]
    async fn an_expired_token_is_refreshed_once() {
        use tidings_testkit::channel::{push_to, visible, ChannelHarness};
        let h = WnsHarness::start().await;
        let channel = reference(&h, ChannelOptions::default());
        let ep = h.endpoint();
        channel
            .send(&push_to(&ep, visible("a", "b")))
            .await
            .unwrap();
        h.mock().expire_tokens();
        channel
            .send(&push_to(&ep, visible("a", "b")))
            .await
            .unwrap();
        let statuses: Vec<u16> = h.mock().requests().iter().map(|r| r.status).collect();
        assert_eq!(statuses, [200, 401, 200]);
        assert_eq!(h.mock().token_requests().len(), 2);
    }
}
