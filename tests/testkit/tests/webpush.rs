//! The Web Push fake: RFC 8291 decryption, VAPID checks, real error answers, scripts.
#![cfg(feature = "mock-webpush")]
// Helpers outside #[test] fns report failures by panicking, as assertions do.
#![allow(clippy::unwrap_used)]

use std::time::Duration;

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine as _;
use tidings::AddressPolicy;
use tidings_testkit::webpush::{
    check_vapid_claims, decrypt, encrypt_with, verify_vapid, DecryptError, ReceiverKeys,
    Subscription, VapidClaims, VapidError, VapidKey, WebPushMock, WebPushReply,
};

fn b64(text: &str) -> Vec<u8> {
    URL_SAFE_NO_PAD.decode(text).unwrap()
}

// RFC 8291 Appendix A (PROTOCOLS.md §4.3).
const BODY: &str = "DGv6ra1nlYgDCS1FRnbzlwAAEABBBP4z9KsN6nGRTbVYI_c7VJSPQTBtkgcy27mlmlMoZIIgDll6e3vCYLocInmYWAmS6TlzAC8wEqKK6PBru3jl7A_yl95bQpu6cVPTpK4Mqgkf1CXztLVBSt2Ks3oZwbuwXPXLWyouBWLVWGNWQexSgSxsj_Qulcy4a-fN";
const UA_PRIVATE: &str = "q1dXpw3UpT5VOmu_cf_v6ih07Aems3njxI-JWgLcM94";
const UA_PUBLIC: &str =
    "BCVxsr7N_eNgVRqvHtD0zTZsEc6-VV-JvLexhqUzORcxaOzi6-AYWXvTBHm4bjyPjs7Vd8pZGH6SRpkNtoIAiw4";
const AS_PRIVATE: &str = "yfWPiYE-n46HLnH0KqZOF1fJJU3MYrct3AELtAQ-oRw";
const AS_PUBLIC: &str =
    "BP4z9KsN6nGRTbVYI_c7VJSPQTBtkgcy27mlmlMoZIIgDll6e3vCYLocInmYWAmS6TlzAC8wEqKK6PBru3jl7A8";
const SALT: &str = "DGv6ra1nlYgDCS1FRnbzlw";
const AUTH: &str = "BTBZMqHH6r4Tts7J_aSIgg";
const WATERMELON: &str = "When I grow up, I want to be a watermelon";

#[test]
fn rfc8291_appendix_body_decrypts_to_the_watermelon_message() {
    let body = b64(BODY);
    assert_eq!(body.len(), 144);
    let d = decrypt(&body, &b64(UA_PRIVATE), &b64(AUTH)).unwrap();
    assert_eq!(d.plaintext, WATERMELON.as_bytes());
    assert_eq!(d.record_size, 4096);
    assert_eq!(d.sender_public_key, b64(AS_PUBLIC));
    assert_eq!(d.salt.to_vec(), b64(SALT));
    assert_eq!(d.padding, 0);
}

#[test]
fn sender_side_reproduces_the_rfc8291_appendix_body_byte_for_byte() {
    let salt: [u8; 16] = b64(SALT).try_into().unwrap();
    let body = encrypt_with(
        WATERMELON.as_bytes(),
        &b64(UA_PUBLIC),
        &b64(AUTH),
        &b64(AS_PRIVATE),
        salt,
        4096,
        0,
    )
    .unwrap();
    assert_eq!(URL_SAFE_NO_PAD.encode(&body), BODY);
}

#[test]
fn receiver_keys_from_the_appendix_derive_its_public_key() {
    let keys = ReceiverKeys::from_private(&b64(UA_PRIVATE), &b64(AUTH)).unwrap();
    assert_eq!(keys.p256dh_base64url(), UA_PUBLIC);
    assert_eq!(
        keys.decrypt(&b64(BODY)).unwrap().plaintext,
        WATERMELON.as_bytes()
    );
}

#[test]
fn tampered_bodies_are_rejected() {
    let body = b64(BODY);
    let (private, auth) = (b64(UA_PRIVATE), b64(AUTH));
    // A flipped bit anywhere in salt, ciphertext or tag fails authentication.
    for at in [0, 15, 86, 100, 143] {
        let mut bad = body.clone();
        bad[at] ^= 0x01;
        assert_eq!(
            decrypt(&bad, &private, &auth).unwrap_err(),
            DecryptError::Authentication,
            "byte {at}"
        );
    }
    // A cut-off tag, a wrong auth secret, a record size that makes two records.
    assert_eq!(
        decrypt(&body[..120], &private, &auth).unwrap_err(),
        DecryptError::Authentication
    );
    let mut wrong_auth = auth.clone();
    wrong_auth[0] ^= 0xff;
    assert_eq!(
        decrypt(&body, &private, &wrong_auth).unwrap_err(),
        DecryptError::Authentication
    );
    let mut small_rs = body.clone();
    small_rs[16..20].copy_from_slice(&20u32.to_be_bytes());
    assert_eq!(
        decrypt(&small_rs, &private, &auth).unwrap_err(),
        DecryptError::MultipleRecords
    );
    assert_eq!(
        decrypt(&body[..40], &private, &auth).unwrap_err(),
        DecryptError::Truncated
    );
    let mut bad_keyid = body.clone();
    bad_keyid[21] = 0x05;
    assert_eq!(
        decrypt(&bad_keyid, &private, &auth).unwrap_err(),
        DecryptError::BadSenderKey
    );
}

#[test]
fn padding_after_the_delimiter_is_stripped() {
    let keys = ReceiverKeys::generate();
    let sender = b64(AS_PRIVATE);
    let padded = encrypt_with(
        b"hi",
        keys.public_key(),
        keys.auth_secret(),
        &sender,
        [7; 16],
        4096,
        5,
    )
    .unwrap();
    let d = keys.decrypt(&padded).unwrap();
    assert_eq!((d.plaintext.as_slice(), d.padding), (&b"hi"[..], 5));
}

#[test]
fn arbitrary_payloads_round_trip_up_to_the_3993_byte_limit() {
    let keys = ReceiverKeys::generate();
    for len in [0usize, 1, 100, 1000, 3993] {
        let plaintext: Vec<u8> = (0..len).map(|i| (i % 251) as u8).collect();
        let body = keys.encrypt(&plaintext).unwrap();
        assert_eq!(body.len(), 86 + len + 1 + 16);
        assert_eq!(keys.decrypt(&body).unwrap().plaintext, plaintext);
    }
    assert_eq!(keys.encrypt(&[1u8; 3993]).unwrap().len(), 4096);
}

#[test]
fn rfc8292_example_token_verifies_with_its_key() {
    let t = "eyJ0eXAiOiJKV1QiLCJhbGciOiJFUzI1NiJ9.eyJhdWQiOiJodHRwczovL3B1c2guZXhhbXBsZS5uZXQiLCJleHAiOjE0NTM1MjM3NjgsInN1YiI6Im1haWx0bzpwdXNoQGV4YW1wbGUuY29tIn0.i3CYb7t4xfxCDquptFOepC9GAu_HLGkMlMuCGSK2rpiUfnK9ojFwDXb1JrErtmysazNjjvW2L9OkSSHzvoD1oA";
    let k =
        "BA1Hxzyi1RUM1b5wjxsn7nGxAszw2u61m164i3MrAIxHF6YK5h4SDYic-dRuU_RCPCfA5aq9ojSwk5Y2EmClBPs";
    let token = verify_vapid(&format!("vapid t={t}, k={k}")).unwrap();
    assert_eq!(
        token.claims,
        VapidClaims {
            aud: "https://push.example.net".into(),
            exp: 1_453_523_768,
            sub: Some("mailto:push@example.com".into()),
        }
    );
    // Its exp is long past.
    assert!(matches!(
        check_vapid_claims(&token.claims, "https://push.example.net", 1_800_000_000),
        Err(VapidError::BadClaims(_))
    ));
    // Another key does not verify it.
    let other = VapidKey::generate().public_key_base64url();
    assert_eq!(
        verify_vapid(&format!("vapid t={t}, k={other}")).unwrap_err(),
        VapidError::BadSignature
    );
}

#[test]
fn subscriptions_made_in_memory_pass_address_validation() {
    let sub = Subscription::generate("https://fcm.googleapis.com/fcm/send/abc123");
    assert!(sub.address().validate(&AddressPolicy::default()).is_ok());
    assert_eq!(sub.to_json()["keys"]["auth"], sub.auth());
    let shown = format!("{sub:?}");
    assert!(
        !shown.contains(&sub.auth()) && !shown.contains("abc123"),
        "{shown}"
    );
}

#[test]
fn vapid_key_debug_hides_the_private_key() {
    let key = VapidKey::generate();
    let shown = format!("{key:?}");
    assert!(!shown.contains(&key.private_key_base64url()), "{shown}");
    assert!(key.pkcs8_pem().starts_with("-----BEGIN PRIVATE KEY-----\n"));
    let again = VapidKey::from_pkcs8(&key.pkcs8_der()).unwrap();
    assert_eq!(again.public_key(), key.public_key());
}

// --- the server --------------------------------------------------------------------------------

struct Sender {
    http: reqwest::Client,
    vapid: VapidKey,
}

impl Sender {
    fn new() -> Self {
        Sender {
            http: reqwest::Client::new(),
            vapid: VapidKey::generate(),
        }
    }

    /// A well-formed push.
    fn push(
        &self,
        mock: &WebPushMock,
        sub: &Subscription,
        plaintext: &str,
    ) -> reqwest::RequestBuilder {
        self.spoiled(mock, sub, plaintext, |_| {})
    }

    /// A push whose headers `edit` changes first (reqwest's `header` appends, so spoiling a
    /// header means editing this list).
    fn spoiled(
        &self,
        mock: &WebPushMock,
        sub: &Subscription,
        plaintext: &str,
        edit: impl FnOnce(&mut Vec<(&'static str, String)>),
    ) -> reqwest::RequestBuilder {
        let mut headers = vec![
            ("authorization", self.vapid.authorization_for(mock.origin())),
            ("ttl", "3600".to_owned()),
            ("content-encoding", "aes128gcm".to_owned()),
            ("content-type", "application/octet-stream".to_owned()),
        ];
        edit(&mut headers);
        let mut req = self.http.post(sub.endpoint());
        for (name, value) in headers {
            req = req.header(name, value);
        }
        req.body(sub.keys().encrypt(plaintext.as_bytes()).unwrap())
    }

    fn claims(&self, mock: &WebPushMock) -> VapidClaims {
        VapidClaims {
            aud: mock.origin().to_owned(),
            exp: now() + 3600,
            sub: Some("mailto:ops@example.com".into()),
        }
    }
}

/// Sets (replaces or adds) a header in the list.
fn set(headers: &mut Vec<(&'static str, String)>, name: &'static str, value: &str) {
    headers.retain(|(n, _)| *n != name);
    headers.push((name, value.to_owned()));
}

fn now() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs() as i64
}

async fn json(resp: reqwest::Response) -> serde_json::Value {
    let status = resp.status();
    let bytes = resp.bytes().await.unwrap();
    serde_json::from_slice(&bytes)
        .unwrap_or_else(|e| panic!("{status}: {e}: {:?}", String::from_utf8_lossy(&bytes)))
}

#[tokio::test]
async fn an_accepted_push_is_recorded_with_its_plaintext_and_vapid_claims() {
    let mock = WebPushMock::start().await;
    let sub = mock.subscription();
    assert!(sub
        .address()
        .validate(&AddressPolicy::with_loopback_for_tests())
        .is_ok());
    let s = Sender::new();
    let resp = s
        .push(&mock, &sub, r#"{"title":"Hello"}"#)
        .header("urgency", "high")
        .header("topic", "order-42")
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 201);
    let location = resp.headers()["location"].to_str().unwrap().to_owned();
    assert!(location.starts_with(mock.origin()), "{location}");
    assert_eq!(resp.headers()["ttl"], "3600");

    let seen = mock.requests_to(sub.endpoint());
    assert_eq!(seen.len(), 1);
    let r = &seen[0];
    assert!(r.accepted());
    assert_eq!(r.plaintext_json().unwrap()["title"], "Hello");
    assert_eq!(r.ttl, Some(3600));
    assert_eq!(r.urgency.as_deref(), Some("high"));
    assert_eq!(r.topic.as_deref(), Some("order-42"));
    assert_eq!(r.message_url.as_deref(), Some(location.as_str()));
    let claims = r.vapid.as_ref().unwrap();
    assert_eq!(claims.aud, mock.origin());
    assert_eq!(
        r.vapid_public_key.as_deref(),
        Some(s.vapid.public_key_base64url().as_str())
    );
    assert!(
        !format!("{r:?}").contains("vapid t="),
        "Debug shows the token"
    );
}

/// Sends `req` and returns (status, JSON error message), asserting the mock recorded a refusal.
async fn refused(mock: &WebPushMock, req: reqwest::RequestBuilder) -> (u16, String) {
    let before = mock.requests().len();
    let resp = req.send().await.unwrap();
    let status = resp.status().as_u16();
    let body = json(resp).await;
    assert_eq!(body["code"], status);
    let seen = mock.requests();
    assert_eq!(seen.len(), before + 1);
    assert_eq!(seen[before].status, status);
    assert!(seen[before].problem.is_some());
    (status, body["message"].as_str().unwrap().to_owned())
}

#[tokio::test]
async fn malformed_requests_get_the_errors_push_services_give() {
    let mock = WebPushMock::start().await;
    let sub = mock.subscription();
    let s = Sender::new();
    let origin = mock.origin().to_owned();
    // Missing TTL: 400 (RFC 8030 §5.2); a TTL that is not a number: 400.
    let no_ttl = s.spoiled(&mock, &sub, "x", |h| h.retain(|(n, _)| *n != "ttl"));
    let (status, msg) = refused(&mock, no_ttl).await;
    assert_eq!((status, msg.as_str()), (400, "missing TTL header"));
    let soon = s.spoiled(&mock, &sub, "x", |h| set(h, "ttl", "soon"));
    assert_eq!(refused(&mock, soon).await.0, 400);

    // The pre-RFC `aesgcm` coding is refused, and so is a body without Content-Encoding.
    let aesgcm = s.spoiled(&mock, &sub, "x", |h| set(h, "content-encoding", "aesgcm"));
    let (status, msg) = refused(&mock, aesgcm).await;
    assert_eq!(status, 400);
    assert!(msg.contains("aes128gcm"), "{msg}");
    let plain = s.spoiled(&mock, &sub, "x", |h| {
        h.retain(|(n, _)| *n != "content-encoding")
    });
    assert_eq!(refused(&mock, plain).await.0, 400);

    // No Authorization at all, or the wrong scheme: 401.
    let unsigned = s.spoiled(&mock, &sub, "x", |h| {
        h.retain(|(n, _)| *n != "authorization")
    });
    assert_eq!(refused(&mock, unsigned).await.0, 401);
    let bearer = s.spoiled(&mock, &sub, "x", |h| set(h, "authorization", "Bearer abc"));
    assert_eq!(refused(&mock, bearer).await.0, 401);

    // A token signed by one key presented with another: 403.
    let other = VapidKey::generate();
    let forged = format!(
        "vapid t={}, k={}",
        s.vapid.sign(&s.claims(&mock)),
        other.public_key_base64url()
    );
    let (status, msg) = refused(
        &mock,
        s.spoiled(&mock, &sub, "x", |h| set(h, "authorization", &forged)),
    )
    .await;
    assert_eq!(status, 403);
    assert!(msg.contains("signature"), "{msg}");

    // Wrong audience, expiry too far ahead, expired, no subject, subject not a URI: 403.
    let bad_claims = [
        VapidClaims {
            aud: "https://push.example.net".into(),
            ..s.claims(&mock)
        },
        VapidClaims {
            aud: format!("{origin}/"),
            ..s.claims(&mock)
        },
        VapidClaims {
            exp: now() + 25 * 3600,
            ..s.claims(&mock)
        },
        VapidClaims {
            exp: now() - 10,
            ..s.claims(&mock)
        },
        VapidClaims {
            sub: None,
            ..s.claims(&mock)
        },
        VapidClaims {
            sub: Some("ops@example.com".into()),
            ..s.claims(&mock)
        },
    ];
    for claims in bad_claims {
        let auth = s.vapid.authorization(&claims);
        let req = s.spoiled(&mock, &sub, "x", |h| set(h, "authorization", &auth));
        let (status, msg) = refused(&mock, req).await;
        assert_eq!(status, 403, "{claims:?}: {msg}");
    }

    // A body altered in transit does not decrypt: 400.
    let mut body = sub.keys().encrypt(b"hello").unwrap();
    let last = body.len() - 1;
    body[last] ^= 0x40;
    let (status, msg) = refused(&mock, s.push(&mock, &sub, "x").body(body)).await;
    assert_eq!(status, 400);
    assert!(msg.contains("decrypt"), "{msg}");

    // Over 4096 bytes: 413.
    let big = s.push(&mock, &sub, "x").body(vec![0u8; 4097]);
    assert_eq!(refused(&mock, big).await.0, 413);

    // Bad Urgency and Topic: 400.
    let urgent = s.spoiled(&mock, &sub, "x", |h| set(h, "urgency", "urgent"));
    assert_eq!(refused(&mock, urgent).await.0, 400);
    let long_topic = "t".repeat(33);
    let topic = s.spoiled(&mock, &sub, "x", |h| set(h, "topic", &long_topic));
    assert_eq!(refused(&mock, topic).await.0, 400);

    // The VAPID key reused as the message's ECDH key: 400 (RFC 8292 §3.2).
    let scalar = b64(&s.vapid.private_key_base64url());
    let reused = encrypt_with(
        b"x",
        sub.keys().public_key(),
        sub.keys().auth_secret(),
        &scalar,
        [1; 16],
        4096,
        0,
    )
    .unwrap();
    let (status, msg) = refused(&mock, s.push(&mock, &sub, "x").body(reused)).await;
    assert_eq!(status, 400, "{msg}");

    // Unknown subscription 404, wrong method 405, unsubscribed 410.
    let unknown = Subscription::generate(format!("{origin}/push/nope"));
    assert_eq!(refused(&mock, s.push(&mock, &unknown, "x")).await.0, 404);
    assert_eq!(refused(&mock, s.http.get(sub.endpoint())).await.0, 405);
    mock.unsubscribe(sub.endpoint());
    assert_eq!(refused(&mock, s.push(&mock, &sub, "x")).await.0, 410);

    // Nothing above was accepted.
    assert!(mock.requests().iter().all(|r| !r.accepted()));
}

#[tokio::test]
async fn a_restricted_subscription_refuses_other_vapid_keys() {
    let mock = WebPushMock::start().await;
    let s = Sender::new();
    let mine = mock.subscription_restricted_to(&s.vapid.public_key());
    assert_eq!(
        s.push(&mock, &mine, "x").send().await.unwrap().status(),
        201
    );
    let theirs = mock.subscription_restricted_to(&VapidKey::generate().public_key());
    assert_eq!(refused(&mock, s.push(&mock, &theirs, "x")).await.0, 403);
}

#[tokio::test]
async fn scripted_errors_come_back_with_their_status_and_headers() {
    let mock = WebPushMock::start().await;
    let sub = mock.subscription();
    let s = Sender::new();
    mock.script(
        sub.endpoint(),
        [
            WebPushReply::Gone,
            WebPushReply::NotFound,
            WebPushReply::TooManyRequests {
                retry_after: Some(Duration::from_secs(120)),
            },
            WebPushReply::ServerError {
                status: 503,
                retry_after: Some(Duration::from_secs(30)),
            },
            WebPushReply::PayloadTooLarge,
            WebPushReply::Forbidden,
        ],
    );
    let mut answers = Vec::new();
    for _ in 0..7 {
        let resp = s.push(&mock, &sub, "x").send().await.unwrap();
        let retry_after = resp
            .headers()
            .get("retry-after")
            .map(|v| v.to_str().unwrap().to_owned());
        answers.push((resp.status().as_u16(), retry_after));
    }
    assert_eq!(
        answers,
        vec![
            (410, None),
            (404, None),
            (429, Some("120".to_owned())),
            (503, Some("30".to_owned())),
            (413, None),
            (403, None),
            (201, None), // the queue is used up: normal behaviour again
        ]
    );
    // Every scripted request was still decrypted for the test to inspect.
    assert!(mock.requests().iter().all(|r| r.plaintext() == Some(b"x")));
}

#[tokio::test]
async fn a_standing_script_applies_to_every_push_and_only_to_its_subscription() {
    let mock = WebPushMock::start().await;
    let (gone, fine) = (mock.subscription(), mock.subscription());
    let s = Sender::new();
    mock.script_always(gone.endpoint(), WebPushReply::Gone);
    for _ in 0..2 {
        assert_eq!(
            s.push(&mock, &gone, "x").send().await.unwrap().status(),
            410
        );
    }
    assert_eq!(
        s.push(&mock, &fine, "x").send().await.unwrap().status(),
        201
    );
    assert_eq!(mock.requests_to(gone.endpoint()).len(), 2);
}

#[tokio::test]
async fn a_slow_answer_is_recorded_before_it_is_sent() {
    let mock = WebPushMock::start().await;
    let sub = mock.subscription();
    let s = Sender::new();
    mock.script(
        sub.endpoint(),
        [WebPushReply::slow(
            Duration::from_millis(300),
            WebPushReply::Accept,
        )],
    );
    let pending = tokio::spawn(s.push(&mock, &sub, "slow one").send());
    let seen = mock.wait_for_requests(1).await;
    assert_eq!(seen[0].plaintext_text(), Some("slow one"));
    assert_eq!(pending.await.unwrap().unwrap().status(), 201);
}

#[tokio::test]
async fn a_dropped_connection_gives_the_client_no_answer() {
    let mock = WebPushMock::start().await;
    let sub = mock.subscription();
    let s = Sender::new();
    mock.script(sub.endpoint(), [WebPushReply::DropConnection]);
    let err = s.push(&mock, &sub, "x").send().await.unwrap_err();
    assert!(!err.is_status(), "{err:?}");
    assert_eq!(mock.requests()[0].status, 0);
    // The next request gets through.
    assert_eq!(s.push(&mock, &sub, "x").send().await.unwrap().status(), 201);
}

#[tokio::test]
async fn the_mock_stops_when_dropped() {
    let mock = WebPushMock::start().await;
    let sub = mock.subscription();
    let s = Sender::new();
    assert_eq!(s.push(&mock, &sub, "x").send().await.unwrap().status(), 201);
    let request = s.push(&mock, &sub, "x");
    drop(mock);
    assert!(request.send().await.is_err());
}

#[tokio::test]
async fn http2_prior_knowledge_clients_are_served() {
    let mock = WebPushMock::start().await;
    let sub = mock.subscription();
    let s = Sender {
        http: reqwest::Client::builder()
            .http2_prior_knowledge()
            .build()
            .unwrap(),
        vapid: VapidKey::generate(),
    };
    let resp = s.push(&mock, &sub, "over h2").send().await.unwrap();
    assert_eq!(resp.version(), reqwest::Version::HTTP_2);
    assert_eq!(resp.status(), 201);
    assert_eq!(mock.requests()[0].plaintext_text(), Some("over h2"));
}

/// The conformance suite run through [`WebPushHarness`] against a minimal channel written from
/// PROTOCOLS.md §4 (the production channel is `tidings-webpush`): proves the harness, the macro
/// and the fake work together.
mod conformance {
    use std::fmt;

    use async_trait::async_trait;
    use tidings::{
        Accepted, ChannelCapabilities, Platform, Push, PushAddress, PushChannel, PushError,
    };
    use tidings_testkit::channel::ChannelOptions;
    use tidings_testkit::webpush::{encrypt, VapidClaims, VapidKey, WebPushHarness, MAX_PLAINTEXT};

    use super::{b64, now};

    struct ReferenceWebPush {
        http: reqwest::Client,
        vapid: VapidKey,
        subject: String,
    }

    impl fmt::Debug for ReferenceWebPush {
        fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
            f.debug_struct("ReferenceWebPush")
                .field("vapid_public_key", &self.vapid.public_key_base64url())
                .finish_non_exhaustive()
        }
    }

    fn origin(endpoint: &str) -> String {
        let (scheme, rest) = endpoint.split_once("://").unwrap();
        format!("{scheme}://{}", rest.split('/').next().unwrap())
    }

    fn seconds(resp: &reqwest::Response, name: &str) -> Option<std::time::Duration> {
        let v = resp.headers().get(name)?.to_str().ok()?;
        v.trim().parse().ok().map(std::time::Duration::from_secs)
    }

    #[async_trait]
    impl PushChannel for ReferenceWebPush {
        fn platform(&self) -> Platform {
            Platform::WebPush
        }

        fn capabilities(&self) -> ChannelCapabilities {
            ChannelCapabilities {
                max_payload_bytes: MAX_PLAINTEXT,
                silent_push: false,
                collapse: true,
            }
        }

        async fn send(&self, push: &Push) -> Result<Accepted, PushError> {
            let PushAddress::WebPush {
                endpoint,
                p256dh,
                auth,
            } = &push.endpoint.address
            else {
                return Err(PushError::rejected("not a Web Push endpoint"));
            };
            let plaintext = serde_json::to_vec(&push.content).unwrap();
            if plaintext.len() > MAX_PLAINTEXT {
                return Err(PushError::payload_too_large(plaintext.len(), MAX_PLAINTEXT));
            }
            let body = encrypt(&plaintext, &b64(p256dh), &b64(auth)).unwrap();
            let authorization = self.vapid.authorization(&VapidClaims {
                aud: origin(endpoint),
                exp: now() + 12 * 3600,
                sub: Some(self.subject.clone()),
            });
            let resp = self
                .http
                .post(endpoint.as_str())
                .header("authorization", authorization)
                .header("ttl", push.ttl().as_secs().to_string())
                .header("content-encoding", "aes128gcm")
                .body(body)
                .send()
                .await
                .map_err(|e| {
                    if e.is_timeout() {
                        PushError::timeout("the push service did not answer in time")
                    } else {
                        PushError::unavailable(format!("request failed: {e}"))
                    }
                })?;
            let status = resp.status().as_u16();
            match status {
                201 | 202 => Ok(Accepted {
                    provider_message_id: resp
                        .headers()
                        .get("location")
                        .and_then(|v| v.to_str().ok())
                        .map(str::to_owned),
                }),
                404 | 410 => Err(PushError::gone(format!("push service answered {status}"))),
                400 | 401 | 403 => Err(PushError::misconfigured(format!(
                    "VAPID refused ({status})"
                ))),
                413 => Err(PushError::rejected(
                    "payload too large for the push service",
                )),
                429 => Err(PushError::throttled(
                    "rate limited",
                    seconds(&resp, "retry-after"),
                )),
                500..=599 => Err(PushError::unavailable(format!(
                    "push service error {status}"
                ))),
                _ => Err(PushError::rejected(format!("unexpected status {status}"))),
            }
        }
    }

    fn reference(h: &WebPushHarness, o: ChannelOptions) -> ReferenceWebPush {
        ReferenceWebPush {
            http: reqwest::Client::builder()
                .timeout(o.timeout)
                .build()
                .unwrap(),
            vapid: VapidKey::from_pkcs8(&h.vapid_key().pkcs8_der()).unwrap(),
            subject: h.subject().to_owned(),
        }
    }

    tidings_testkit::channel_conformance!(WebPushHarness, reference);
}

#[tokio::test]
async fn with_decryption_off_bodies_are_accepted_unread() {
    let mock = WebPushMock::start().await;
    let sub = mock.subscription();
    let s = Sender::new();
    mock.set_decrypting(false);
    let resp = s
        .spoiled(&mock, &sub, "x", |_| {})
        .body(vec![7u8; 200])
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 201);
    assert!(mock.requests()[0].decrypted.is_none());
    mock.set_decrypting(true);
    let resp = s
        .push(&mock, &sub, "x")
        .body(vec![7u8; 200])
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 400);
}
