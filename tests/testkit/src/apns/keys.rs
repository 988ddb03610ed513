//! APNs credentials for tests: a `.p8` signing key with its team id and key id.

use std::fmt;

use aws_lc_rs::rand::SystemRandom;
use aws_lc_rs::signature::{
    EcdsaKeyPair, KeyPair as _, ECDSA_P256_SHA256_FIXED, ECDSA_P256_SHA256_FIXED_SIGNING,
};
use serde_json::json;

use crate::gateway::{pem_decode, pem_encode, sign_jwt};

/// An APNs token-auth signing key, as the Apple developer account hands it out: a `.p8` file
/// (PKCS#8 PEM of a P-256 key), its 10-character key id and the team id.
///
/// Generated in memory; register it with [`ApnsMock::register_key`](super::ApnsMock::register_key)
/// (or [`ApnsMockBuilder::key`](super::ApnsMockBuilder::key)) and give
/// [`p8_pem`](Self::p8_pem), [`key_id`](Self::key_id) and [`team_id`](Self::team_id) to the
/// channel under test. `Debug` never shows the private key.
#[derive(Clone)]
pub struct ApnsSigningKey {
    team_id: String,
    key_id: String,
    pkcs8: Vec<u8>,
    public: Vec<u8>,
}

impl fmt::Debug for ApnsSigningKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ApnsSigningKey")
            .field("team_id", &self.team_id)
            .field("key_id", &self.key_id)
            .field("private_key", &"<redacted>")
            .finish()
    }
}

/// A random id of `len` upper-case letters and digits, like Apple's team and key ids.
pub(crate) fn apple_style_id(len: usize) -> String {
    const ALPHABET: &[u8] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789";
    let bytes = uuid::Uuid::new_v4().into_bytes();
    bytes
        .iter()
        .cycle()
        .take(len)
        .map(|b| ALPHABET[*b as usize % ALPHABET.len()] as char)
        .collect()
}

impl ApnsSigningKey {
    /// A new P-256 key for `team_id` and `key_id` (Apple uses 10-character ids).
    pub fn generate(team_id: &str, key_id: &str) -> ApnsSigningKey {
        let rng = SystemRandom::new();
        let pkcs8 = EcdsaKeyPair::generate_pkcs8(&ECDSA_P256_SHA256_FIXED_SIGNING, &rng)
            .expect("P-256 key generation")
            .as_ref()
            .to_vec();
        Self::from_pkcs8_der(team_id, key_id, pkcs8)
    }

    /// A new key with random 10-character team and key ids.
    pub fn generate_random() -> ApnsSigningKey {
        Self::generate(&apple_style_id(10), &apple_style_id(10))
    }

    /// Loads a `.p8` PEM (PKCS#8 P-256 key); `None` if it is not one.
    pub fn from_p8_pem(team_id: &str, key_id: &str, pem: &str) -> Option<ApnsSigningKey> {
        let der = pem_decode("PRIVATE KEY", pem)?;
        EcdsaKeyPair::from_pkcs8(&ECDSA_P256_SHA256_FIXED_SIGNING, &der).ok()?;
        Some(Self::from_pkcs8_der(team_id, key_id, der))
    }

    fn from_pkcs8_der(team_id: &str, key_id: &str, pkcs8: Vec<u8>) -> ApnsSigningKey {
        let pair = EcdsaKeyPair::from_pkcs8(&ECDSA_P256_SHA256_FIXED_SIGNING, &pkcs8)
            .expect("a PKCS#8 P-256 key");
        ApnsSigningKey {
            team_id: team_id.to_owned(),
            key_id: key_id.to_owned(),
            public: pair.public_key().as_ref().to_vec(),
            pkcs8,
        }
    }

    /// The team id (the JWT `iss`).
    pub fn team_id(&self) -> &str {
        &self.team_id
    }

    /// The key id (the JWT header `kid`).
    pub fn key_id(&self) -> &str {
        &self.key_id
    }

    /// The `.p8` file contents: `-----BEGIN PRIVATE KEY-----` PKCS#8 PEM.
    pub fn p8_pem(&self) -> String {
        pem_encode("PRIVATE KEY", &self.pkcs8)
    }

    /// The PKCS#8 DER bytes of the private key.
    pub fn pkcs8_der(&self) -> &[u8] {
        &self.pkcs8
    }

    /// The public half as an uncompressed SEC1 point (65 bytes), what the mock verifies with.
    pub fn public_key(&self) -> &[u8] {
        &self.public
    }

    /// A provider token (ES256 JWT, header `kid`, claims `iss` and `iat`) issued at `iat`
    /// (seconds since the UNIX epoch; use [`ApnsMock::now`](super::ApnsMock::now)).
    pub fn provider_token(&self, iat: i64) -> String {
        let header = json!({"alg": "ES256", "kid": self.key_id});
        let claims = json!({"iss": self.team_id, "iat": iat});
        self.sign_token(&header, &claims)
    }

    /// Signs arbitrary JOSE header and claims with this key (for malformed-token tests).
    pub fn sign_token(&self, header: &serde_json::Value, claims: &serde_json::Value) -> String {
        let pair = EcdsaKeyPair::from_pkcs8(&ECDSA_P256_SHA256_FIXED_SIGNING, &self.pkcs8)
            .expect("a PKCS#8 P-256 key");
        let rng = SystemRandom::new();
        sign_jwt(header, claims, |input| {
            pair.sign(&rng, input)
                .expect("ECDSA signing")
                .as_ref()
                .to_vec()
        })
    }
}

/// Whether `signature` (JOSE fixed-width r||s) over `input` verifies with the SEC1 `public` key.
pub(crate) fn verify_es256(public: &[u8], input: &[u8], signature: &[u8]) -> bool {
    aws_lc_rs::signature::UnparsedPublicKey::new(&ECDSA_P256_SHA256_FIXED, public)
        .verify(input, signature)
        .is_ok()
}
