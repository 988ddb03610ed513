//! RFC 8291 message encryption over RFC 8188 `aes128gcm`, with aws-lc-rs.
//!
//! One message is one record: a fresh ephemeral P-256 key pair and a random 16-byte salt per
//! message, the plaintext followed by the `0x02` final-record delimiter, and the 86-byte header
//! `salt(16) || rs(4) || idlen(1) = 65 || as_public(65)`.

use std::fmt;

use aws_lc_rs::aead::{Aad, LessSafeKey, Nonce, UnboundKey, AES_128_GCM};
use aws_lc_rs::agreement::{self, PrivateKey, UnparsedPublicKey, ECDH_P256};
use aws_lc_rs::encoding::{AsBigEndian, EcPublicKeyUncompressedBin};
use aws_lc_rs::hmac;
use aws_lc_rs::rand::{SecureRandom, SystemRandom};
use base64::engine::general_purpose::{URL_SAFE, URL_SAFE_NO_PAD};
use base64::Engine as _;

/// Length of the header: salt (16) + record size (4) + key id length (1) + key id (65).
pub const HEADER_LEN: usize = 86;
/// Length of the AES-GCM tag.
pub const TAG_LEN: usize = 16;
/// Largest body a push service has to accept (RFC 8030 §7.2).
pub const MAX_BODY: usize = 4096;
/// Largest plaintext that fits [`MAX_BODY`]: 4096 − 86 − 16 − 1 = 3993 bytes.
pub const MAX_PLAINTEXT: usize = MAX_BODY - HEADER_LEN - TAG_LEN - 1;
/// The record size written in the header (RFC 8291 §4 uses 4096).
const RECORD_SIZE: u32 = 4096;

const KEY_INFO: &[u8] = b"WebPush: info\0";
const CEK_INFO: &[u8] = b"Content-Encoding: aes128gcm\0\x01";
const NONCE_INFO: &[u8] = b"Content-Encoding: nonce\0\x01";

/// Why a message could not be encrypted.
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum CryptoError {
    /// `p256dh` is not a base64url uncompressed P-256 point on the curve.
    BadPublicKey,
    /// `auth` is not 16 base64url-encoded bytes.
    BadAuthSecret,
    /// The plaintext is longer than [`MAX_PLAINTEXT`].
    TooLarge(usize),
    /// The crypto library failed (random source, key generation).
    Internal,
}

impl fmt::Display for CryptoError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            CryptoError::BadPublicKey => {
                f.write_str("p256dh is not an uncompressed P-256 public key")
            }
            CryptoError::BadAuthSecret => f.write_str("auth is not a 16-byte secret"),
            CryptoError::TooLarge(n) => {
                write!(
                    f,
                    "plaintext is {n} bytes; at most {MAX_PLAINTEXT} fit one record"
                )
            }
            CryptoError::Internal => f.write_str("the crypto library failed"),
        }
    }
}

impl std::error::Error for CryptoError {}

/// A browser subscription's keys: the user agent's public key and authentication secret.
///
/// `Debug` does not show them.
#[derive(Clone, PartialEq, Eq)]
pub struct SubscriptionKeys {
    ua_public: [u8; 65],
    auth: [u8; 16],
}

impl SubscriptionKeys {
    /// Keys from raw bytes: a 65-byte uncompressed point and a 16-byte secret.
    pub fn new(ua_public: &[u8], auth: &[u8]) -> Result<Self, CryptoError> {
        let ua_public: [u8; 65] = ua_public
            .try_into()
            .map_err(|_| CryptoError::BadPublicKey)?;
        if ua_public[0] != 0x04 {
            return Err(CryptoError::BadPublicKey);
        }
        let auth: [u8; 16] = auth.try_into().map_err(|_| CryptoError::BadAuthSecret)?;
        Ok(SubscriptionKeys { ua_public, auth })
    }

    /// Keys from a subscription's `p256dh` and `auth` (base64url, padded or not).
    pub fn from_base64url(p256dh: &str, auth: &str) -> Result<Self, CryptoError> {
        let key = b64url_decode(p256dh).ok_or(CryptoError::BadPublicKey)?;
        let secret = b64url_decode(auth).ok_or(CryptoError::BadAuthSecret)?;
        SubscriptionKeys::new(&key, &secret)
    }
}

impl fmt::Debug for SubscriptionKeys {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("SubscriptionKeys(<redacted>)")
    }
}

/// Decodes base64url with or without padding.
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

/// Encrypts `plaintext` for a subscription with a fresh ephemeral key and salt: the body of a
/// Web Push request (`Content-Encoding: aes128gcm`).
pub fn encrypt(keys: &SubscriptionKeys, plaintext: &[u8]) -> Result<Vec<u8>, CryptoError> {
    let rng = SystemRandom::new();
    let mut salt = [0u8; 16];
    rng.fill(&mut salt).map_err(|_| CryptoError::Internal)?;
    let ephemeral = PrivateKey::generate(&ECDH_P256).map_err(|_| CryptoError::Internal)?;
    encrypt_with(keys, plaintext, &ephemeral, &salt)
}

/// Encrypts with a given sender key and salt. Only for tests (the RFC 8291 Appendix A vector):
/// reusing a key or salt across messages breaks the scheme; [`encrypt`] draws fresh ones.
pub fn encrypt_with(
    keys: &SubscriptionKeys,
    plaintext: &[u8],
    as_private: &PrivateKey,
    salt: &[u8; 16],
) -> Result<Vec<u8>, CryptoError> {
    if plaintext.len() > MAX_PLAINTEXT {
        return Err(CryptoError::TooLarge(plaintext.len()));
    }
    let public = as_private
        .compute_public_key()
        .map_err(|_| CryptoError::Internal)?;
    let as_public: EcPublicKeyUncompressedBin<'_> =
        public.as_be_bytes().map_err(|_| CryptoError::Internal)?;
    let as_public = as_public.as_ref();
    if as_public.len() != 65 {
        return Err(CryptoError::Internal);
    }

    let (cek, nonce) = agreement::agree(
        as_private,
        UnparsedPublicKey::new(&ECDH_P256, &keys.ua_public[..]),
        CryptoError::BadPublicKey,
        |ecdh_secret| {
            Ok(derive(
                ecdh_secret,
                &keys.auth,
                &keys.ua_public,
                as_public,
                salt,
            ))
        },
    )?;

    let mut body = Vec::with_capacity(HEADER_LEN + plaintext.len() + 1 + TAG_LEN);
    body.extend_from_slice(salt);
    body.extend_from_slice(&RECORD_SIZE.to_be_bytes());
    body.push(65);
    body.extend_from_slice(as_public);
    body.extend_from_slice(plaintext);
    body.push(0x02);

    let key =
        LessSafeKey::new(UnboundKey::new(&AES_128_GCM, &cek).map_err(|_| CryptoError::Internal)?);
    let mut record = body.split_off(HEADER_LEN);
    key.seal_in_place_append_tag(
        Nonce::assume_unique_for_key(nonce),
        Aad::empty(),
        &mut record,
    )
    .map_err(|_| CryptoError::Internal)?;
    body.extend_from_slice(&record);
    Ok(body)
}

fn hmac_sha256(key: &[u8], parts: &[&[u8]]) -> [u8; 32] {
    let key = hmac::Key::new(hmac::HMAC_SHA256, key);
    let mut ctx = hmac::Context::with_key(&key);
    for p in parts {
        ctx.update(p);
    }
    let mut out = [0u8; 32];
    out.copy_from_slice(ctx.sign().as_ref());
    out
}

/// The content-encryption key and nonce (RFC 8291 §3.3–3.4, RFC 8188 §2.2–2.3).
fn derive(
    ecdh_secret: &[u8],
    auth: &[u8; 16],
    ua_public: &[u8],
    as_public: &[u8],
    salt: &[u8; 16],
) -> ([u8; 16], [u8; 12]) {
    let prk_key = hmac_sha256(auth, &[ecdh_secret]);
    let ikm = hmac_sha256(&prk_key, &[KEY_INFO, ua_public, as_public, &[0x01]]);
    let prk = hmac_sha256(salt, &[&ikm]);
    let cek_full = hmac_sha256(&prk, &[CEK_INFO]);
    let nonce_full = hmac_sha256(&prk, &[NONCE_INFO]);
    let mut cek = [0u8; 16];
    cek.copy_from_slice(&cek_full[..16]);
    let mut nonce = [0u8; 12];
    nonce.copy_from_slice(&nonce_full[..12]);
    (cek, nonce)
}

#[cfg(test)]
mod tests {
    use super::*;

    // RFC 8291 Appendix A, as recomputed in PROTOCOLS.md §4.3.
    const PLAINTEXT: &str = "When I grow up, I want to be a watermelon";
    const AS_PRIVATE: &str = "yfWPiYE-n46HLnH0KqZOF1fJJU3MYrct3AELtAQ-oRw";
    const AS_PUBLIC: &str =
        "BP4z9KsN6nGRTbVYI_c7VJSPQTBtkgcy27mlmlMoZIIgDll6e3vCYLocInmYWAmS6TlzAC8wEqKK6PBru3jl7A8";
    const UA_PUBLIC: &str =
        "BCVxsr7N_eNgVRqvHtD0zTZsEc6-VV-JvLexhqUzORcxaOzi6-AYWXvTBHm4bjyPjs7Vd8pZGH6SRpkNtoIAiw4";
    const UA_PRIVATE: &str = "q1dXpw3UpT5VOmu_cf_v6ih07Aems3njxI-JWgLcM94";
    const SALT: &str = "DGv6ra1nlYgDCS1FRnbzlw";
    const AUTH: &str = "BTBZMqHH6r4Tts7J_aSIgg";
    const BODY: &str = "DGv6ra1nlYgDCS1FRnbzlwAAEABBBP4z9KsN6nGRTbVYI_c7VJSPQTBtkgcy27mlmlMoZIIgDll6e3vCYLocInmYWAmS6TlzAC8wEqKK6PBru3jl7A_yl95bQpu6cVPTpK4Mqgkf1CXztLVBSt2Ks3oZwbuwXPXLWyouBWLVWGNWQexSgSxsj_Qulcy4a-fN";

    fn rfc_keys() -> SubscriptionKeys {
        SubscriptionKeys::from_base64url(UA_PUBLIC, AUTH).unwrap()
    }

    fn rfc_sender() -> PrivateKey {
        PrivateKey::from_private_key(&ECDH_P256, &b64url_decode(AS_PRIVATE).unwrap()).unwrap()
    }

    #[test]
    fn reproduces_the_rfc_8291_appendix_a_body_byte_for_byte() {
        let salt: [u8; 16] = b64url_decode(SALT).unwrap().try_into().unwrap();
        let body = encrypt_with(&rfc_keys(), PLAINTEXT.as_bytes(), &rfc_sender(), &salt).unwrap();
        assert_eq!(body.len(), 144, "86-byte header + 41 + 1 + 16");
        assert_eq!(b64url(&body), BODY);
        assert_eq!(
            b64url(&body[21..86]),
            AS_PUBLIC,
            "key id is the sender's public key"
        );
    }

    #[test]
    fn the_browser_decrypts_what_we_encrypt() {
        let receiver = tidings_testkit::webpush::ReceiverKeys::from_private(
            &b64url_decode(UA_PRIVATE).unwrap(),
            &b64url_decode(AUTH).unwrap(),
        )
        .unwrap();
        for len in [0usize, 1, 41, 1000, MAX_PLAINTEXT] {
            let message: Vec<u8> = (0..len).map(|i| (i % 251) as u8).collect();
            let body = encrypt(&rfc_keys(), &message).unwrap();
            assert_eq!(body.len(), HEADER_LEN + len + 1 + TAG_LEN);
            let opened = receiver.decrypt(&body).unwrap();
            assert_eq!(opened.plaintext, message, "length {len}");
        }
    }

    #[test]
    fn every_message_gets_a_fresh_key_and_salt() {
        let a = encrypt(&rfc_keys(), b"same").unwrap();
        let b = encrypt(&rfc_keys(), b"same").unwrap();
        assert_ne!(a[..16], b[..16], "salt reused");
        assert_ne!(a[21..86], b[21..86], "ephemeral key reused");
    }

    #[test]
    fn a_tampered_body_does_not_decrypt() {
        let receiver = tidings_testkit::webpush::ReceiverKeys::from_private(
            &b64url_decode(UA_PRIVATE).unwrap(),
            &b64url_decode(AUTH).unwrap(),
        )
        .unwrap();
        let mut body = encrypt(&rfc_keys(), b"hello").unwrap();
        let last = body.len() - 1;
        body[last] ^= 1;
        assert!(receiver.decrypt(&body).is_err());
    }

    #[test]
    fn oversized_plaintext_and_bad_keys_are_refused() {
        assert_eq!(
            encrypt(&rfc_keys(), &vec![b'x'; MAX_PLAINTEXT + 1]),
            Err(CryptoError::TooLarge(MAX_PLAINTEXT + 1))
        );
        let mut off_curve = [4u8; 65];
        off_curve[1] = 1;
        let keys = SubscriptionKeys::new(&off_curve, &[0u8; 16]).unwrap();
        assert_eq!(encrypt(&keys, b"x"), Err(CryptoError::BadPublicKey));
        assert_eq!(
            SubscriptionKeys::new(&[4u8; 64], &[0u8; 16]),
            Err(CryptoError::BadPublicKey)
        );
        assert_eq!(
            SubscriptionKeys::from_base64url(UA_PUBLIC, "AAAA"),
            Err(CryptoError::BadAuthSecret)
        );
        assert!(!format!("{:?}", rfc_keys()).contains(AUTH));
    }
}
