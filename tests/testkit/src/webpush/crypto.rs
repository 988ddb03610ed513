//! RFC 8291 message encryption over RFC 8188 `aes128gcm` (receiver side, and a sender side for
//! tests that post to the mock directly), browser-side subscription keys, and RFC 8292 VAPID
//! tokens (signing for tests, verification for the mock). Crypto is aws-lc-rs throughout.

use std::fmt;
use std::time::{SystemTime, UNIX_EPOCH};

use aws_lc_rs::aead::{Aad, LessSafeKey, Nonce, UnboundKey, AES_128_GCM};
use aws_lc_rs::agreement::{self, UnparsedPublicKey, ECDH_P256};
use aws_lc_rs::encoding::AsBigEndian;
use aws_lc_rs::hmac;
use aws_lc_rs::rand::{SecureRandom, SystemRandom};
use aws_lc_rs::signature::{
    EcdsaKeyPair, KeyPair, UnparsedPublicKey as SigPublicKey, ECDSA_P256_SHA256_FIXED,
    ECDSA_P256_SHA256_FIXED_SIGNING,
};
use base64::engine::general_purpose::{STANDARD, URL_SAFE, URL_SAFE_NO_PAD};
use base64::Engine as _;

/// Length of the `aes128gcm` header RFC 8291 produces: salt (16) + rs (4) + idlen (1) + keyid (65).
pub const HEADER_LEN: usize = 86;
/// Largest body a push service must accept (RFC 8030 §7.2).
pub const MAX_BODY: usize = 4096;
/// Largest plaintext that fits [`MAX_BODY`] in one record: 4096 − 86 − 16 − 1.
pub const MAX_PLAINTEXT: usize = MAX_BODY - HEADER_LEN - 16 - 1;

const TAG_LEN: usize = 16;
const KEY_INFO: &[u8] = b"WebPush: info\0";
const CEK_INFO: &[u8] = b"Content-Encoding: aes128gcm\0\x01";
const NONCE_INFO: &[u8] = b"Content-Encoding: nonce\0\x01";

/// Decodes base64url with or without padding (browsers and libraries emit both).
pub(crate) fn b64url_decode(text: &str) -> Option<Vec<u8>> {
    let text = text.trim();
    URL_SAFE_NO_PAD
        .decode(text)
        .or_else(|_| URL_SAFE.decode(text))
        .ok()
}

/// Encodes base64url without padding.
pub(crate) fn b64url(bytes: &[u8]) -> String {
    URL_SAFE_NO_PAD.encode(bytes)
}

fn hmac_sha256(key: &[u8], parts: &[&[u8]]) -> [u8; 32] {
    let key = hmac::Key::new(hmac::HMAC_SHA256, key);
    let mut ctx = hmac::Context::with_key(&key);
    for p in parts {
        ctx.update(p);
    }
    let tag = ctx.sign();
    let mut out = [0u8; 32];
    out.copy_from_slice(tag.as_ref());
    out
}

/// The content key and nonce of RFC 8291 §3.3–3.4 and RFC 8188 §2.2–2.3.
fn derive(
    ecdh_secret: &[u8],
    auth_secret: &[u8],
    ua_public: &[u8],
    as_public: &[u8],
    salt: &[u8],
) -> ([u8; 16], [u8; 12]) {
    let prk_key = hmac_sha256(auth_secret, &[ecdh_secret]);
    let ikm = hmac_sha256(&prk_key, &[KEY_INFO, ua_public, as_public, &[1]]);
    let prk = hmac_sha256(salt, &[&ikm]);
    let mut cek = [0u8; 16];
    cek.copy_from_slice(&hmac_sha256(&prk, &[CEK_INFO])[..16]);
    let mut nonce = [0u8; 12];
    nonce.copy_from_slice(&hmac_sha256(&prk, &[NONCE_INFO])[..12]);
    (cek, nonce)
}

fn ecdh(private: &agreement::PrivateKey, peer_public: &[u8]) -> Option<Vec<u8>> {
    if peer_public.len() != 65 || peer_public[0] != 0x04 {
        return None;
    }
    agreement::agree(
        private,
        UnparsedPublicKey::new(&ECDH_P256, peer_public),
        (),
        |secret| Ok(secret.to_vec()),
    )
    .ok()
}

/// Why a body did not decrypt.
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum DecryptError {
    /// The receiver's private key is not a P-256 scalar, or the auth secret is not 16 bytes.
    BadReceiverKeys,
    /// The body is shorter than its header says.
    Truncated,
    /// The `keyid` is not a 65-byte uncompressed P-256 point (RFC 8291 §4).
    BadSenderKey,
    /// The record size is below the RFC 8188 minimum of 18.
    BadRecordSize(u32),
    /// The body holds more than one record (RFC 8291 §4 allows exactly one).
    MultipleRecords,
    /// AES-GCM authentication failed: wrong keys, or the body was altered.
    Authentication,
    /// The last non-zero plaintext byte is not the final-record delimiter 0x02.
    BadDelimiter,
}

impl fmt::Display for DecryptError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            DecryptError::BadReceiverKeys => f.write_str("receiver key or auth secret is invalid"),
            DecryptError::Truncated => f.write_str("body is shorter than its aes128gcm header"),
            DecryptError::BadSenderKey => {
                f.write_str("keyid is not a 65-byte uncompressed P-256 public key")
            }
            DecryptError::BadRecordSize(rs) => write!(f, "record size {rs} is below 18"),
            DecryptError::MultipleRecords => f.write_str("body holds more than one record"),
            DecryptError::Authentication => {
                f.write_str("AES-GCM authentication failed (wrong keys or altered body)")
            }
            DecryptError::BadDelimiter => f.write_str("last record lacks the 0x02 delimiter"),
        }
    }
}

impl std::error::Error for DecryptError {}

/// A decrypted push message and what its header said.
#[derive(Clone, PartialEq, Eq)]
pub struct Decrypted {
    /// The message, padding and delimiter removed.
    pub plaintext: Vec<u8>,
    /// The 16-byte salt from the header.
    pub salt: [u8; 16],
    /// The record size from the header.
    pub record_size: u32,
    /// The sender's ephemeral public key (`keyid`, 65 bytes).
    pub sender_public_key: Vec<u8>,
    /// How many zero padding bytes followed the delimiter.
    pub padding: usize,
}

impl fmt::Debug for Decrypted {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Decrypted")
            .field("plaintext", &String::from_utf8_lossy(&self.plaintext))
            .field("record_size", &self.record_size)
            .field("padding", &self.padding)
            .finish_non_exhaustive()
    }
}

/// Decrypts a Web Push body (RFC 8291 receiver side over RFC 8188 `aes128gcm`).
///
/// `ua_private` is the subscription's P-256 private key (32-byte big-endian scalar) and
/// `auth_secret` its 16-byte authentication secret. The body must be one record: header
/// (`salt`, `rs`, `idlen`, `keyid` = the sender's ephemeral public key), then ciphertext and tag;
/// the plaintext must end with the 0x02 delimiter, optionally followed by zero padding.
pub fn decrypt(
    body: &[u8],
    ua_private: &[u8],
    auth_secret: &[u8],
) -> Result<Decrypted, DecryptError> {
    if auth_secret.len() != 16 {
        return Err(DecryptError::BadReceiverKeys);
    }
    let private = agreement::PrivateKey::from_private_key(&ECDH_P256, ua_private)
        .map_err(|_| DecryptError::BadReceiverKeys)?;
    let ua_public = private
        .compute_public_key()
        .map_err(|_| DecryptError::BadReceiverKeys)?;
    if body.len() < 21 {
        return Err(DecryptError::Truncated);
    }
    let mut salt = [0u8; 16];
    salt.copy_from_slice(&body[..16]);
    let record_size = u32::from_be_bytes([body[16], body[17], body[18], body[19]]);
    let idlen = usize::from(body[20]);
    if body.len() < 21 + idlen + TAG_LEN + 1 {
        return Err(DecryptError::Truncated);
    }
    let keyid = &body[21..21 + idlen];
    if idlen != 65 || keyid[0] != 0x04 {
        return Err(DecryptError::BadSenderKey);
    }
    if record_size < 18 {
        return Err(DecryptError::BadRecordSize(record_size));
    }
    let record = &body[21 + idlen..];
    if record.len() > record_size as usize {
        return Err(DecryptError::MultipleRecords);
    }
    let secret = ecdh(&private, keyid).ok_or(DecryptError::BadSenderKey)?;
    let (cek, nonce) = derive(&secret, auth_secret, ua_public.as_ref(), keyid, &salt);
    let key = LessSafeKey::new(
        UnboundKey::new(&AES_128_GCM, &cek).map_err(|_| DecryptError::Authentication)?,
    );
    let mut buf = record.to_vec();
    let plain = key
        .open_in_place(Nonce::assume_unique_for_key(nonce), Aad::empty(), &mut buf)
        .map_err(|_| DecryptError::Authentication)?;
    let last = plain
        .iter()
        .rposition(|b| *b != 0)
        .ok_or(DecryptError::BadDelimiter)?;
    if plain[last] != 0x02 {
        return Err(DecryptError::BadDelimiter);
    }
    let padding = plain.len() - last - 1;
    Ok(Decrypted {
        plaintext: plain[..last].to_vec(),
        salt,
        record_size,
        sender_public_key: keyid.to_vec(),
        padding,
    })
}

/// Why a message could not be encrypted.
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum EncryptError {
    /// `p256dh` is not a 65-byte uncompressed P-256 point, or `auth` is not 16 bytes.
    BadSubscriptionKeys,
    /// The sender key is not a P-256 scalar.
    BadSenderKey,
    /// The record would exceed the record size.
    TooLarge,
}

impl fmt::Display for EncryptError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            EncryptError::BadSubscriptionKeys => f.write_str("subscription keys are invalid"),
            EncryptError::BadSenderKey => f.write_str("sender key is invalid"),
            EncryptError::TooLarge => f.write_str("plaintext does not fit one record"),
        }
    }
}

impl std::error::Error for EncryptError {}

/// Encrypts `plaintext` for a subscription the way an application server does (RFC 8291): a
/// fresh ephemeral P-256 key and salt, one record of size 4096, no padding.
///
/// For tests that post to the mock without a channel; `ua_public` is the 65-byte `p256dh` key and
/// `auth_secret` the 16-byte `auth` secret.
pub fn encrypt(
    plaintext: &[u8],
    ua_public: &[u8],
    auth_secret: &[u8],
) -> Result<Vec<u8>, EncryptError> {
    let rng = SystemRandom::new();
    let mut scalar = [0u8; 32];
    loop {
        rng.fill(&mut scalar)
            .map_err(|_| EncryptError::BadSenderKey)?;
        if agreement::PrivateKey::from_private_key(&ECDH_P256, &scalar).is_ok() {
            break;
        }
    }
    let mut salt = [0u8; 16];
    rng.fill(&mut salt)
        .map_err(|_| EncryptError::BadSenderKey)?;
    encrypt_with(plaintext, ua_public, auth_secret, &scalar, salt, 4096, 0)
}

/// [`encrypt`] with every input fixed: the sender's ephemeral private key (32-byte scalar), the
/// salt, the record size and the number of zero padding bytes. With the RFC 8291 Appendix A
/// inputs it reproduces the appendix's 144-byte body.
pub fn encrypt_with(
    plaintext: &[u8],
    ua_public: &[u8],
    auth_secret: &[u8],
    as_private: &[u8],
    salt: [u8; 16],
    record_size: u32,
    padding: usize,
) -> Result<Vec<u8>, EncryptError> {
    if auth_secret.len() != 16 {
        return Err(EncryptError::BadSubscriptionKeys);
    }
    let private = agreement::PrivateKey::from_private_key(&ECDH_P256, as_private)
        .map_err(|_| EncryptError::BadSenderKey)?;
    let as_public = private
        .compute_public_key()
        .map_err(|_| EncryptError::BadSenderKey)?;
    let secret = ecdh(&private, ua_public).ok_or(EncryptError::BadSubscriptionKeys)?;
    let (cek, nonce) = derive(&secret, auth_secret, ua_public, as_public.as_ref(), &salt);
    let record_len = plaintext.len() + 1 + padding + TAG_LEN;
    if record_len > record_size as usize {
        return Err(EncryptError::TooLarge);
    }
    let mut body = Vec::with_capacity(HEADER_LEN + record_len);
    body.extend_from_slice(&salt);
    body.extend_from_slice(&record_size.to_be_bytes());
    body.push(65);
    body.extend_from_slice(as_public.as_ref());
    let mut record = Vec::with_capacity(record_len);
    record.extend_from_slice(plaintext);
    record.push(0x02);
    record.resize(plaintext.len() + 1 + padding, 0);
    let key =
        LessSafeKey::new(UnboundKey::new(&AES_128_GCM, &cek).map_err(|_| EncryptError::TooLarge)?);
    key.seal_in_place_append_tag(
        Nonce::assume_unique_for_key(nonce),
        Aad::empty(),
        &mut record,
    )
    .map_err(|_| EncryptError::TooLarge)?;
    body.extend_from_slice(&record);
    Ok(body)
}

/// A browser's side of a subscription: its P-256 key pair and 16-byte auth secret.
#[derive(Clone)]
pub struct ReceiverKeys {
    private: [u8; 32],
    public: [u8; 65],
    auth: [u8; 16],
}

impl ReceiverKeys {
    /// Fresh random keys, as a browser makes for a new subscription.
    pub fn generate() -> Self {
        let rng = SystemRandom::new();
        loop {
            let mut private = [0u8; 32];
            let mut auth = [0u8; 16];
            rng.fill(&mut private).expect("system randomness");
            rng.fill(&mut auth).expect("system randomness");
            if let Some(keys) = ReceiverKeys::from_private(&private, &auth) {
                return keys;
            }
        }
    }

    /// Keys from a fixed private scalar and auth secret (e.g. RFC 8291 Appendix A's
    /// `ua_private` and `auth_secret`); `None` if either is invalid.
    pub fn from_private(private: &[u8], auth: &[u8]) -> Option<Self> {
        let key = agreement::PrivateKey::from_private_key(&ECDH_P256, private).ok()?;
        let public = key.compute_public_key().ok()?;
        Some(ReceiverKeys {
            private: private.try_into().ok()?,
            public: public.as_ref().try_into().ok()?,
            auth: auth.try_into().ok()?,
        })
    }

    /// The `p256dh` public key: 65-byte uncompressed point.
    pub fn public_key(&self) -> &[u8; 65] {
        &self.public
    }

    /// The private scalar (32 bytes, big-endian).
    pub fn private_key(&self) -> &[u8; 32] {
        &self.private
    }

    /// The 16-byte `auth` secret.
    pub fn auth_secret(&self) -> &[u8; 16] {
        &self.auth
    }

    /// `p256dh` in unpadded base64url, as a browser's `PushSubscription.toJSON()` gives it.
    pub fn p256dh_base64url(&self) -> String {
        b64url(&self.public)
    }

    /// `auth` in unpadded base64url.
    pub fn auth_base64url(&self) -> String {
        b64url(&self.auth)
    }

    /// Decrypts a body sent to these keys.
    pub fn decrypt(&self, body: &[u8]) -> Result<Decrypted, DecryptError> {
        decrypt(body, &self.private, &self.auth)
    }

    /// Encrypts `plaintext` to these keys (see [`encrypt`]).
    pub fn encrypt(&self, plaintext: &[u8]) -> Result<Vec<u8>, EncryptError> {
        encrypt(plaintext, &self.public, &self.auth)
    }
}

impl fmt::Debug for ReceiverKeys {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ReceiverKeys")
            .field("keys", &"<redacted>")
            .finish()
    }
}

/// The claims of a VAPID token (RFC 8292 §2).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct VapidClaims {
    /// Origin of the push resource (`scheme://host[:port]`).
    pub aud: String,
    /// Expiry, seconds since the UNIX epoch.
    pub exp: i64,
    /// Contact URI (`mailto:` or `https:`), if present.
    pub sub: Option<String>,
}

/// Why a VAPID `Authorization` header was refused.
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum VapidError {
    /// Not `vapid t=<jwt>, k=<key>`.
    Malformed(String),
    /// The ES256 signature does not verify with `k`.
    BadSignature,
    /// A claim is missing or wrong.
    BadClaims(String),
}

impl fmt::Display for VapidError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            VapidError::Malformed(why) => write!(f, "malformed VAPID authorization: {why}"),
            VapidError::BadSignature => f.write_str("VAPID JWT signature does not verify with k"),
            VapidError::BadClaims(why) => write!(f, "VAPID JWT claims refused: {why}"),
        }
    }
}

impl std::error::Error for VapidError {}

/// A verified VAPID header: the claims and the application server's public key.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct VapidToken {
    /// The token's claims (signature verified, claims not yet checked against a request).
    pub claims: VapidClaims,
    /// `k`: the application server's public key, 65-byte uncompressed point.
    pub public_key: Vec<u8>,
}

/// Parses `vapid t=<jwt>, k=<key>` and verifies the JWT's ES256 signature with `k`. It checks
/// the header's `alg` and the presence and types of `aud` and `exp`, but not their values: see
/// [`check_vapid_claims`].
pub fn verify_vapid(authorization: &str) -> Result<VapidToken, VapidError> {
    let malformed = |why: &str| VapidError::Malformed(why.to_owned());
    let (scheme, params) = authorization
        .trim()
        .split_once(char::is_whitespace)
        .ok_or_else(|| malformed("expected `vapid t=..., k=...`"))?;
    if !scheme.eq_ignore_ascii_case("vapid") {
        return Err(malformed("scheme is not `vapid`"));
    }
    let (mut t, mut k) = (None, None);
    for param in params.split(',') {
        let Some((name, value)) = param.trim().split_once('=') else {
            return Err(malformed("parameter without `=`"));
        };
        match name.trim() {
            "t" => t = Some(value.trim()),
            "k" => k = Some(value.trim()),
            _ => {}
        }
    }
    let t = t.ok_or_else(|| malformed("missing t="))?;
    let k = k.ok_or_else(|| malformed("missing k="))?;
    let public_key = b64url_decode(k).ok_or_else(|| malformed("k is not base64url"))?;
    if public_key.len() != 65 || public_key[0] != 0x04 {
        return Err(malformed("k is not an uncompressed P-256 public key"));
    }
    let mut parts = t.split('.');
    let (Some(h), Some(c), Some(s), None) =
        (parts.next(), parts.next(), parts.next(), parts.next())
    else {
        return Err(malformed("t is not a JWS compact serialization"));
    };
    let header: serde_json::Value = b64url_decode(h)
        .and_then(|b| serde_json::from_slice(&b).ok())
        .ok_or_else(|| malformed("JWT header is not base64url JSON"))?;
    if header.get("alg").and_then(|a| a.as_str()) != Some("ES256") {
        return Err(malformed("JWT alg is not ES256"));
    }
    let signature = b64url_decode(s).ok_or_else(|| malformed("JWT signature is not base64url"))?;
    let signed = &t[..h.len() + 1 + c.len()];
    SigPublicKey::new(&ECDSA_P256_SHA256_FIXED, &public_key)
        .verify(signed.as_bytes(), &signature)
        .map_err(|_| VapidError::BadSignature)?;
    let claims: serde_json::Value = b64url_decode(c)
        .and_then(|b| serde_json::from_slice(&b).ok())
        .ok_or_else(|| malformed("JWT claims are not base64url JSON"))?;
    let aud = claims
        .get("aud")
        .and_then(|v| v.as_str())
        .ok_or_else(|| VapidError::BadClaims("aud is missing".into()))?
        .to_owned();
    let exp = claims
        .get("exp")
        .and_then(|v| v.as_i64())
        .ok_or_else(|| VapidError::BadClaims("exp is missing or not an integer".into()))?;
    let sub = claims
        .get("sub")
        .and_then(|v| v.as_str())
        .map(str::to_owned);
    Ok(VapidToken {
        claims: VapidClaims { aud, exp, sub },
        public_key,
    })
}

/// Checks claims the way the mock does: `aud` equals `origin` exactly, `exp` is after `now` and
/// at most 24 hours after it, `sub` is present and a `mailto:` or `https:` URI.
pub fn check_vapid_claims(claims: &VapidClaims, origin: &str, now: i64) -> Result<(), VapidError> {
    let bad = |why: String| Err(VapidError::BadClaims(why));
    if claims.aud != origin {
        return bad(format!(
            "aud {:?} is not this push service's origin {origin:?}",
            claims.aud
        ));
    }
    if claims.exp <= now {
        return bad(format!(
            "exp {} is not in the future (now {now})",
            claims.exp
        ));
    }
    if claims.exp > now + 24 * 3600 {
        return bad(format!(
            "exp {} is more than 24 h after now ({now})",
            claims.exp
        ));
    }
    match &claims.sub {
        None => bad("sub is missing".into()),
        Some(s) if s.starts_with("mailto:") || s.starts_with("https:") => Ok(()),
        Some(s) => bad(format!("sub {s:?} is not a mailto: or https: URI")),
    }
}

/// Seconds since the UNIX epoch, now.
pub(crate) fn unix_now() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| i64::try_from(d.as_secs()).unwrap_or(i64::MAX))
        .unwrap_or(0)
}

/// An application server's VAPID signing key (ECDSA P-256).
pub struct VapidKey {
    pair: EcdsaKeyPair,
}

impl VapidKey {
    /// A fresh random key.
    pub fn generate() -> Self {
        VapidKey {
            pair: EcdsaKeyPair::generate(&ECDSA_P256_SHA256_FIXED_SIGNING)
                .expect("generate a P-256 key"),
        }
    }

    /// A key from its PKCS#8 DER encoding.
    pub fn from_pkcs8(der: &[u8]) -> Option<Self> {
        EcdsaKeyPair::from_pkcs8(&ECDSA_P256_SHA256_FIXED_SIGNING, der)
            .ok()
            .map(|pair| VapidKey { pair })
    }

    /// The public key, 65-byte uncompressed point (the browser's `applicationServerKey`).
    pub fn public_key(&self) -> Vec<u8> {
        self.pair.public_key().as_ref().to_vec()
    }

    /// The public key in unpadded base64url (the `k=` of the header).
    pub fn public_key_base64url(&self) -> String {
        b64url(self.pair.public_key().as_ref())
    }

    /// The private scalar in unpadded base64url (the format of most VAPID tools).
    pub fn private_key_base64url(&self) -> String {
        let scalar = self
            .pair
            .private_key()
            .as_be_bytes()
            .expect("export the private scalar");
        b64url(scalar.as_ref())
    }

    /// The key as PKCS#8 DER.
    pub fn pkcs8_der(&self) -> Vec<u8> {
        self.pair
            .to_pkcs8v1()
            .expect("export PKCS#8")
            .as_ref()
            .to_vec()
    }

    /// The key as a PKCS#8 PEM (`-----BEGIN PRIVATE KEY-----`).
    pub fn pkcs8_pem(&self) -> String {
        let b64 = STANDARD.encode(self.pkcs8_der());
        let mut pem = String::from("-----BEGIN PRIVATE KEY-----\n");
        for line in b64.as_bytes().chunks(64) {
            pem.push_str(std::str::from_utf8(line).unwrap_or_default());
            pem.push('\n');
        }
        pem.push_str("-----END PRIVATE KEY-----\n");
        pem
    }

    /// A signed ES256 JWT with these claims (`sub` omitted when `None`).
    pub fn sign(&self, claims: &VapidClaims) -> String {
        let header = b64url(br#"{"typ":"JWT","alg":"ES256"}"#);
        let mut body = serde_json::json!({ "aud": claims.aud, "exp": claims.exp });
        if let Some(sub) = &claims.sub {
            body["sub"] = serde_json::Value::String(sub.clone());
        }
        let body = b64url(body.to_string().as_bytes());
        let signed = format!("{header}.{body}");
        let sig = self
            .pair
            .sign(&SystemRandom::new(), signed.as_bytes())
            .expect("ES256 signature");
        format!("{signed}.{}", b64url(sig.as_ref()))
    }

    /// A complete `Authorization` header value: `vapid t=<jwt>, k=<public key>`.
    pub fn authorization(&self, claims: &VapidClaims) -> String {
        format!(
            "vapid t={}, k={}",
            self.sign(claims),
            self.public_key_base64url()
        )
    }

    /// An `Authorization` value valid for `origin` right now: `exp` 12 h ahead,
    /// `sub` `mailto:push-tests@example.com`.
    pub fn authorization_for(&self, origin: &str) -> String {
        self.authorization(&VapidClaims {
            aud: origin.to_owned(),
            exp: unix_now() + 12 * 3600,
            sub: Some("mailto:push-tests@example.com".into()),
        })
    }
}

impl fmt::Debug for VapidKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("VapidKey")
            .field("public_key", &self.public_key_base64url())
            .field("private_key", &"<redacted>")
            .finish()
    }
}
