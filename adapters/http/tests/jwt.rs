//! JwtIdentity: which tokens become which principals.

// Helpers outside #[test] functions fail a test by panicking, as assertions do.
#![allow(clippy::unwrap_used)]

use std::time::Duration;

use jsonwebtoken::{encode, Algorithm, EncodingKey, Header};
use serde_json::{json, Value};
use tidings::{Clock, Credential, Identity, IdentityErrorKind, ManualClock, Principal};
use tidings_http::{JwtIdentity, JwtKey};

const SECRET: &[u8] = b"0123456789abcdef0123456789abcdef";
const RSA_PRIVATE: &str = include_str!("fixtures/rsa_private.pem");
const RSA_PUBLIC: &str = include_str!("fixtures/rsa_public.pem");
const EC_PRIVATE: &str = include_str!("fixtures/ec_private.pem");
const EC_PUBLIC: &str = include_str!("fixtures/ec_public.pem");
const EC_OTHER_PRIVATE: &str = include_str!("fixtures/ec_other_private.pem");

fn clock() -> ManualClock {
    ManualClock::starting_2026()
}

fn now(clock: &ManualClock) -> i64 {
    clock.now().as_secs()
}

fn claims(clock: &ManualClock) -> Value {
    json!({"sub": "alice", "app": "chat", "exp": now(clock) + 600})
}

fn hs256(claims: &Value) -> String {
    encode(
        &Header::new(Algorithm::HS256),
        claims,
        &EncodingKey::from_secret(SECRET).unwrap(),
    )
    .unwrap()
}

async fn auth(
    identity: &JwtIdentity,
    token: &str,
) -> Result<Principal, (IdentityErrorKind, String)> {
    identity
        .authenticate(&Credential::bearer(token))
        .await
        .map_err(|e| (e.kind(), e.to_string()))
}

fn hs_identity(clock: &ManualClock) -> JwtIdentity {
    JwtIdentity::builder()
        .key(JwtKey::hs256(SECRET).unwrap())
        .clock(clock.clone())
        .build()
        .unwrap()
}

#[tokio::test]
async fn hs256_rs256_and_es256_tokens_are_accepted() {
    let clock = clock();
    let identity = JwtIdentity::builder()
        .key(JwtKey::hs256(SECRET).unwrap())
        .key(JwtKey::rs256_pem(RSA_PUBLIC).unwrap())
        .key(JwtKey::es256_pem(EC_PUBLIC).unwrap())
        .clock(clock.clone())
        .build()
        .unwrap();
    let c = claims(&clock);
    let tokens = [
        hs256(&c),
        encode(
            &Header::new(Algorithm::RS256),
            &c,
            &EncodingKey::from_rsa_pem(RSA_PRIVATE.as_bytes()).unwrap(),
        )
        .unwrap(),
        encode(
            &Header::new(Algorithm::ES256),
            &c,
            &EncodingKey::from_ec_pem(EC_PRIVATE.as_bytes()).unwrap(),
        )
        .unwrap(),
    ];
    for token in tokens {
        assert_eq!(
            auth(&identity, &token).await,
            Ok(Principal::new("chat", "alice"))
        );
    }
}

#[tokio::test]
async fn a_token_signed_with_another_key_is_a_bad_signature() {
    let clock = clock();
    let identity = JwtIdentity::builder()
        .key(JwtKey::es256_pem(EC_PUBLIC).unwrap())
        .clock(clock.clone())
        .build()
        .unwrap();
    let forged = encode(
        &Header::new(Algorithm::ES256),
        &claims(&clock),
        &EncodingKey::from_ec_pem(EC_OTHER_PRIVATE.as_bytes()).unwrap(),
    )
    .unwrap();
    let (kind, message) = auth(&identity, &forged).await.unwrap_err();
    assert_eq!(kind, IdentityErrorKind::Invalid);
    assert!(message.contains("bad signature"), "{message}");
}

#[tokio::test]
async fn an_algorithm_without_a_configured_key_is_refused() {
    let clock = clock();
    // An HS256 token "signed" with the RSA public key: the classic algorithm confusion.
    let identity = JwtIdentity::builder()
        .key(JwtKey::rs256_pem(RSA_PUBLIC).unwrap())
        .clock(clock.clone())
        .build()
        .unwrap();
    let confused = encode(
        &Header::new(Algorithm::HS256),
        &claims(&clock),
        &EncodingKey::from_secret(RSA_PUBLIC.as_bytes()).unwrap(),
    )
    .unwrap();
    assert_eq!(
        auth(&identity, &confused).await.unwrap_err().0,
        IdentityErrorKind::Invalid
    );
    let unsigned = format!(
        "{}.{}.",
        base64_url(br#"{"alg":"none","typ":"JWT"}"#),
        base64_url(claims(&clock).to_string().as_bytes())
    );
    assert_eq!(
        auth(&identity, &unsigned).await.unwrap_err().0,
        IdentityErrorKind::Invalid
    );
}

fn base64_url(bytes: &[u8]) -> String {
    const ALPHABET: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";
    let mut out = String::new();
    for chunk in bytes.chunks(3) {
        let n = chunk
            .iter()
            .enumerate()
            .fold(0u32, |acc, (i, b)| acc | (u32::from(*b) << (16 - 8 * i)));
        for i in 0..=chunk.len() {
            out.push(ALPHABET[((n >> (18 - 6 * i)) & 63) as usize] as char);
        }
    }
    out
}

#[tokio::test]
async fn the_key_is_chosen_by_kid() {
    let clock = clock();
    let identity = JwtIdentity::builder()
        .key(
            JwtKey::hs256(b"old-secret-old-secret-old-secret")
                .unwrap()
                .kid("2025"),
        )
        .key(JwtKey::hs256(SECRET).unwrap().kid("2026"))
        .clock(clock.clone())
        .build()
        .unwrap();
    let mut header = Header::new(Algorithm::HS256);
    header.kid = Some("2026".into());
    let token = encode(
        &header,
        &claims(&clock),
        &EncodingKey::from_secret(SECRET).unwrap(),
    )
    .unwrap();
    assert!(auth(&identity, &token).await.is_ok());
    header.kid = Some("2024".into());
    let unknown = encode(
        &header,
        &claims(&clock),
        &EncodingKey::from_secret(SECRET).unwrap(),
    )
    .unwrap();
    assert_eq!(
        auth(&identity, &unknown).await.unwrap_err().0,
        IdentityErrorKind::Invalid
    );
    // Without a kid, every key of the algorithm is tried.
    assert!(auth(&identity, &hs256(&claims(&clock))).await.is_ok());
}

#[tokio::test]
async fn expiry_and_not_before_are_checked_with_the_leeway() {
    let clock = clock();
    let identity = JwtIdentity::builder()
        .key(JwtKey::hs256(SECRET).unwrap())
        .leeway(Duration::from_secs(30))
        .clock(clock.clone())
        .build()
        .unwrap();
    let t = now(&clock);
    let token = |exp: i64, nbf: Option<i64>| {
        let mut c = json!({"sub": "alice", "app": "chat", "exp": exp});
        if let Some(nbf) = nbf {
            c["nbf"] = json!(nbf);
        }
        hs256(&c)
    };
    assert!(
        auth(&identity, &token(t - 20, None)).await.is_ok(),
        "expired within the leeway"
    );
    let (kind, message) = auth(&identity, &token(t - 31, None)).await.unwrap_err();
    assert_eq!(kind, IdentityErrorKind::Expired);
    assert!(message.contains("expired"), "{message}");
    assert!(
        auth(&identity, &token(t + 600, Some(t + 20))).await.is_ok(),
        "nbf within the leeway"
    );
    let (kind, message) = auth(&identity, &token(t + 600, Some(t + 120)))
        .await
        .unwrap_err();
    assert_eq!(kind, IdentityErrorKind::Expired);
    assert!(message.contains("not valid yet"), "{message}");

    let valid = token(t + 60, None);
    assert!(auth(&identity, &valid).await.is_ok());
    clock.advance(Duration::from_secs(120));
    assert_eq!(
        auth(&identity, &valid).await.unwrap_err().0,
        IdentityErrorKind::Expired
    );
}

#[tokio::test]
async fn a_token_without_exp_is_refused() {
    let clock = clock();
    let token = hs256(&json!({"sub": "alice", "app": "chat"}));
    let (kind, message) = auth(&hs_identity(&clock), &token).await.unwrap_err();
    assert_eq!(kind, IdentityErrorKind::Invalid);
    assert!(message.contains("exp"), "{message}");
}

#[tokio::test]
async fn issuer_and_audience_must_match_when_configured() {
    let clock = clock();
    let identity = JwtIdentity::builder()
        .key(JwtKey::hs256(SECRET).unwrap())
        .issuer("https://id.example.test")
        .audience("tidings")
        .clock(clock.clone())
        .build()
        .unwrap();
    let exp = now(&clock) + 600;
    let with = |iss: Value, aud: Value| {
        hs256(&json!({"sub": "alice", "app": "chat", "exp": exp, "iss": iss, "aud": aud}))
    };
    assert!(auth(
        &identity,
        &with(json!("https://id.example.test"), json!("tidings"))
    )
    .await
    .is_ok());
    assert!(auth(
        &identity,
        &with(
            json!("https://id.example.test"),
            json!(["other", "tidings"])
        )
    )
    .await
    .is_ok());
    let (_, m) = auth(
        &identity,
        &with(json!("https://evil.test"), json!("tidings")),
    )
    .await
    .unwrap_err();
    assert!(m.contains("issuer"), "{m}");
    let (_, m) = auth(
        &identity,
        &with(json!("https://id.example.test"), json!("billing")),
    )
    .await
    .unwrap_err();
    assert!(m.contains("audience"), "{m}");
    let no_aud = hs256(
        &json!({"sub": "alice", "app": "chat", "exp": exp, "iss": "https://id.example.test"}),
    );
    let (kind, m) = auth(&identity, &no_aud).await.unwrap_err();
    assert_eq!(kind, IdentityErrorKind::Invalid);
    assert!(m.contains("no audience"), "{m}");
    let no_iss = hs256(&json!({"sub": "alice", "app": "chat", "exp": exp, "aud": "tidings"}));
    let (_, m) = auth(&identity, &no_iss).await.unwrap_err();
    assert!(m.contains("no issuer"), "{m}");
}

#[tokio::test]
async fn the_user_and_app_claims_are_configurable() {
    let clock = clock();
    let identity = JwtIdentity::builder()
        .key(JwtKey::hs256(SECRET).unwrap())
        .user_claim("uid")
        .app_claim("tenant")
        .clock(clock.clone())
        .build()
        .unwrap();
    let exp = now(&clock) + 600;
    let token = hs256(&json!({"sub": "ignored", "uid": 4711, "tenant": "shop", "exp": exp}));
    assert_eq!(
        auth(&identity, &token).await,
        Ok(Principal::new("shop", "4711"))
    );
    let missing = hs256(&json!({"sub": "alice", "tenant": "shop", "exp": exp}));
    let (_, m) = auth(&identity, &missing).await.unwrap_err();
    assert!(m.contains("uid"), "{m}");

    let fixed = JwtIdentity::builder()
        .key(JwtKey::hs256(SECRET).unwrap())
        .fixed_app("chat")
        .clock(clock.clone())
        .build()
        .unwrap();
    let token = hs256(&json!({"sub": "bob", "app": "something-else", "exp": exp}));
    assert_eq!(
        auth(&fixed, &token).await,
        Ok(Principal::new("chat", "bob"))
    );
}

#[test]
fn configuration_is_checked() {
    assert_eq!(JwtKey::hs256(b"short").unwrap_err().field(), "key");
    assert_eq!(JwtKey::rs256_pem("not a pem").unwrap_err().field(), "key");
    assert_eq!(JwtIdentity::builder().build().unwrap_err().field(), "keys");
    let err = JwtIdentity::builder()
        .key(JwtKey::hs256(SECRET).unwrap())
        .leeway(Duration::from_secs(3600))
        .build()
        .unwrap_err();
    assert_eq!(err.field(), "leeway");
}

#[test]
fn debug_output_shows_no_key_material() {
    let identity = JwtIdentity::builder()
        .key(JwtKey::hs256(SECRET).unwrap().kid("k1"))
        .key(JwtKey::rs256_pem(RSA_PUBLIC).unwrap())
        .build()
        .unwrap();
    let shown = format!("{identity:?}");
    assert!(!shown.contains("0123456789abcdef"), "{shown}");
    assert!(!shown.contains("MII"), "{shown}");
    assert!(!shown.contains(&format!("{:?}", SECRET)), "{shown}");
    assert!(shown.contains("Hs256") && shown.contains("k1"), "{shown}");
}
