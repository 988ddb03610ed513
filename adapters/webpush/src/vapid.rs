//! RFC 8292 VAPID: ES256 JWTs identifying the application server, one per push-service origin,
//! cached and reused until about an hour before they expire.

use std::collections::HashMap;
use std::fmt;
use std::sync::{Arc, RwLock};
use std::time::Duration;

use aws_lc_rs::agreement::{PrivateKey as EcdhKey, ECDH_P256};
use aws_lc_rs::encoding::{AsBigEndian, EcPublicKeyUncompressedBin};
use aws_lc_rs::rand::SystemRandom;
use aws_lc_rs::signature::{EcdsaKeyPair, KeyPair, ECDSA_P256_SHA256_FIXED_SIGNING};
use base64::engine::general_purpose::STANDARD;
use base64::Engine as _;
use tidings::ValidationError;

use crate::crypto::{b64url, b64url_decode};

/// Longest token lifetime RFC 8292 §2 allows.
pub const MAX_TOKEN_LIFETIME: Duration = Duration::from_secs(24 * 3600);
/// A cached token is replaced once less than this remains before its expiry.
pub const RENEW_BEFORE_EXPIRY: Duration = Duration::from_secs(3600);

/// An application server's VAPID identity: the ECDSA P-256 signing key and the contact `sub`.
///
/// `Debug` shows the public key only.
pub struct VapidSigner {
    pair: EcdsaKeyPair,
    public_b64: String,
    subject: String,
    rng: SystemRandom,
}

impl VapidSigner {
    /// A signer from a private key and a contact URI.
    ///
    /// `private_key` is a PEM (`BEGIN PRIVATE KEY` PKCS#8 or `BEGIN EC PRIVATE KEY` SEC 1), or
    /// the raw 32-byte scalar in base64url (what `web-push generate-vapid-keys` prints). `subject`
    /// must be a `mailto:` address or an `https:` URL that does not point at localhost.
    pub fn new(private_key: &str, subject: &str) -> Result<Self, ValidationError> {
        check_subject(subject)?;
        let pair = parse_key(private_key)?;
        let public_b64 = b64url(pair.public_key().as_ref());
        Ok(VapidSigner {
            pair,
            public_b64,
            subject: subject.to_owned(),
            rng: SystemRandom::new(),
        })
    }

    /// The public key (the browser's `applicationServerKey`), unpadded base64url.
    pub fn public_key_base64url(&self) -> &str {
        &self.public_b64
    }

    /// The contact URI.
    pub fn subject(&self) -> &str {
        &self.subject
    }

    /// A signed JWT for `origin` expiring at `exp` (seconds since the UNIX epoch).
    pub fn sign(&self, origin: &str, exp: i64) -> Result<String, ValidationError> {
        let header = b64url(br#"{"typ":"JWT","alg":"ES256"}"#);
        let claims = serde_json::json!({ "aud": origin, "exp": exp, "sub": self.subject });
        let signed = format!("{header}.{}", b64url(claims.to_string().as_bytes()));
        let sig = self
            .pair
            .sign(&self.rng, signed.as_bytes())
            .map_err(|_| ValidationError::new("vapid.private_key", "signing failed"))?;
        Ok(format!("{signed}.{}", b64url(sig.as_ref())))
    }

    /// The `Authorization` header value: `vapid t=<jwt>, k=<public key>`.
    pub fn authorization(&self, origin: &str, exp: i64) -> Result<String, ValidationError> {
        Ok(format!(
            "vapid t={}, k={}",
            self.sign(origin, exp)?,
            self.public_b64
        ))
    }
}

impl fmt::Debug for VapidSigner {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("VapidSigner")
            .field("public_key", &self.public_b64)
            .field("subject", &self.subject)
            .field("private_key", &"<redacted>")
            .finish()
    }
}

/// Checks a VAPID `sub`: `mailto:` with an address, or an `https:` URL whose host is not
/// localhost (push services refuse those).
pub fn check_subject(subject: &str) -> Result<(), ValidationError> {
    let bad = |why: &str| Err(ValidationError::new("vapid.subject", why.to_owned()));
    if let Some(address) = subject.strip_prefix("mailto:") {
        let Some((local, domain)) = address.split_once('@') else {
            return bad("a mailto: subject needs an address (mailto:ops@example.com)");
        };
        if local.is_empty() || domain.is_empty() || address.chars().any(char::is_whitespace) {
            return bad("a mailto: subject needs an address (mailto:ops@example.com)");
        }
        if is_local_name(domain) {
            return bad("must not point at localhost");
        }
        return Ok(());
    }
    if subject.starts_with("https:") {
        let url = match url::Url::parse(subject) {
            Ok(u) => u,
            Err(_) => return bad("is not a valid https: URL"),
        };
        return match url.host() {
            Some(url::Host::Domain(h)) if !is_local_name(h) => Ok(()),
            Some(url::Host::Domain(_)) => bad("must not point at localhost"),
            Some(url::Host::Ipv4(ip)) if !ip.is_loopback() => Ok(()),
            Some(url::Host::Ipv6(ip)) if !ip.is_loopback() => Ok(()),
            Some(_) => bad("must not point at localhost"),
            None => bad("is not a valid https: URL"),
        };
    }
    bad("must be a mailto: or https: URI (RFC 8292 §2.1)")
}

fn is_local_name(host: &str) -> bool {
    let host = host.trim_end_matches('.').to_ascii_lowercase();
    host == "localhost" || host.ends_with(".localhost") || host == "127.0.0.1" || host == "[::1]"
}

fn parse_key(text: &str) -> Result<EcdsaKeyPair, ValidationError> {
    let bad = |why: &str| ValidationError::new("vapid.private_key", why.to_owned());
    let text = text.trim();
    if text.starts_with("-----BEGIN") {
        let b64: String = text
            .lines()
            .filter(|l| !l.starts_with("-----"))
            .map(str::trim)
            .collect();
        let der = STANDARD
            .decode(b64)
            .map_err(|_| bad("the PEM body is not base64"))?;
        return EcdsaKeyPair::from_private_key_der(&ECDSA_P256_SHA256_FIXED_SIGNING, &der)
            .map_err(|_| bad("the PEM is not a P-256 private key (PKCS#8 or SEC 1)"));
    }
    let scalar = b64url_decode(text)
        .filter(|s| s.len() == 32)
        .ok_or_else(|| bad("must be a PEM or a 32-byte base64url private key"))?;
    // aws-lc-rs wants the public half too: derive it from the scalar.
    let ecdh = EcdhKey::from_private_key(&ECDH_P256, &scalar)
        .map_err(|_| bad("is not a valid P-256 private key"))?;
    let public = ecdh
        .compute_public_key()
        .map_err(|_| bad("is not a valid P-256 private key"))?;
    let public: EcPublicKeyUncompressedBin<'_> = public
        .as_be_bytes()
        .map_err(|_| bad("is not a valid P-256 private key"))?;
    EcdsaKeyPair::from_private_key_and_public_key(
        &ECDSA_P256_SHA256_FIXED_SIGNING,
        &scalar,
        public.as_ref(),
    )
    .map_err(|_| bad("is not a valid P-256 private key"))
}

#[derive(Clone)]
struct Cached {
    header: Arc<str>,
    exp: i64,
}

/// VAPID `Authorization` headers per push-service origin, signed on first use and reused until
/// [`RENEW_BEFORE_EXPIRY`] before they expire. One cache per VAPID key.
pub struct TokenCache {
    signer: VapidSigner,
    lifetime: Duration,
    tokens: RwLock<HashMap<String, Cached>>,
}

impl TokenCache {
    /// A cache for `signer` whose tokens live `lifetime` (more than [`RENEW_BEFORE_EXPIRY`], at
    /// most [`MAX_TOKEN_LIFETIME`]).
    pub fn new(signer: VapidSigner, lifetime: Duration) -> Result<Self, ValidationError> {
        if lifetime > MAX_TOKEN_LIFETIME || lifetime <= RENEW_BEFORE_EXPIRY {
            return Err(ValidationError::new(
                "vapid_token_lifetime",
                "must be more than 1 hour and at most 24 hours",
            ));
        }
        Ok(TokenCache {
            signer,
            lifetime,
            tokens: RwLock::new(HashMap::new()),
        })
    }

    /// The signer.
    pub fn signer(&self) -> &VapidSigner {
        &self.signer
    }

    /// The header for `origin` at `now` (seconds since the UNIX epoch).
    pub fn authorization(&self, origin: &str, now: i64) -> Result<Arc<str>, ValidationError> {
        let renew = RENEW_BEFORE_EXPIRY.as_secs() as i64;
        {
            let tokens = self.tokens.read().unwrap_or_else(|e| e.into_inner());
            if let Some(c) = tokens.get(origin) {
                if c.exp - now > renew {
                    return Ok(c.header.clone());
                }
            }
        }
        let exp = now + self.lifetime.as_secs() as i64;
        let header: Arc<str> = self.signer.authorization(origin, exp)?.into();
        let mut tokens = self.tokens.write().unwrap_or_else(|e| e.into_inner());
        // A process talks to a handful of push services; stale origins are dropped on the way.
        tokens.retain(|_, c| c.exp - now > renew);
        tokens.insert(
            origin.to_owned(),
            Cached {
                header: header.clone(),
                exp,
            },
        );
        Ok(header)
    }
}

impl fmt::Debug for TokenCache {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let origins = self.tokens.read().map(|t| t.len()).unwrap_or(0);
        f.debug_struct("TokenCache")
            .field("signer", &self.signer)
            .field("lifetime", &self.lifetime)
            .field("cached_origins", &origins)
            .finish()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use aws_lc_rs::signature::{UnparsedPublicKey, ECDSA_P256_SHA256_FIXED};
    use tidings_testkit::webpush::{check_vapid_claims, verify_vapid, VapidKey};

    #[test]
    fn the_rfc_8292_example_token_verifies_with_its_key() {
        // RFC 8292 §2.4 / PROTOCOLS.md §4.4.
        let t = "eyJ0eXAiOiJKV1QiLCJhbGciOiJFUzI1NiJ9.eyJhdWQiOiJodHRwczovL3B1c2guZXhhbXBsZS5uZXQiLCJleHAiOjE0NTM1MjM3NjgsInN1YiI6Im1haWx0bzpwdXNoQGV4YW1wbGUuY29tIn0.i3CYb7t4xfxCDquptFOepC9GAu_HLGkMlMuCGSK2rpiUfnK9ojFwDXb1JrErtmysazNjjvW2L9OkSSHzvoD1oA";
        let k = "BA1Hxzyi1RUM1b5wjxsn7nGxAszw2u61m164i3MrAIxHF6YK5h4SDYic-dRuU_RCPCfA5aq9ojSwk5Y2EmClBPs";
        let (signed, sig) = t.rsplit_once('.').unwrap();
        let key = UnparsedPublicKey::new(&ECDSA_P256_SHA256_FIXED, b64url_decode(k).unwrap());
        key.verify(signed.as_bytes(), &b64url_decode(sig).unwrap())
            .expect("the RFC example signature verifies");
        let mut tampered = signed.to_owned();
        tampered.push('x');
        assert!(key
            .verify(tampered.as_bytes(), &b64url_decode(sig).unwrap())
            .is_err());
        let claims: serde_json::Value =
            serde_json::from_slice(&b64url_decode(signed.split('.').nth(1).unwrap()).unwrap())
                .unwrap();
        assert_eq!(claims["aud"], "https://push.example.net");
        assert_eq!(claims["sub"], "mailto:push@example.com");
    }

    #[test]
    fn our_tokens_verify_and_carry_origin_expiry_and_subject() {
        let key = VapidKey::generate();
        for text in [key.pkcs8_pem(), key.private_key_base64url()] {
            let signer = VapidSigner::new(&text, "mailto:ops@example.com").unwrap();
            assert_eq!(signer.public_key_base64url(), key.public_key_base64url());
            let now = 1_800_000_000;
            let header = signer
                .authorization("https://fcm.googleapis.com", now + 43_200)
                .unwrap();
            let token = verify_vapid(&header).unwrap();
            assert_eq!(token.public_key, key.public_key());
            check_vapid_claims(&token.claims, "https://fcm.googleapis.com", now).unwrap();
        }
    }

    #[test]
    fn tokens_are_cached_per_origin_and_renewed_an_hour_before_expiry() {
        let key = VapidKey::generate();
        let signer = VapidSigner::new(&key.pkcs8_pem(), "https://example.com/contact").unwrap();
        let cache = TokenCache::new(signer, Duration::from_secs(12 * 3600)).unwrap();
        let now = 1_800_000_000;
        let a = cache.authorization("https://a.example", now).unwrap();
        let a_later = cache
            .authorization("https://a.example", now + 10 * 3600)
            .unwrap();
        assert_eq!(a, a_later, "reused while more than an hour remains");
        let b = cache.authorization("https://b.example", now).unwrap();
        assert_ne!(a, b, "one token per origin");
        assert_eq!(verify_vapid(&b).unwrap().claims.aud, "https://b.example");
        let renewed = cache
            .authorization("https://a.example", now + 11 * 3600 + 1)
            .unwrap();
        assert_ne!(a, renewed, "renewed within the last hour");
        let claims = verify_vapid(&renewed).unwrap().claims;
        assert_eq!(claims.exp, now + 11 * 3600 + 1 + 12 * 3600);
    }

    #[test]
    fn token_lifetime_is_capped_at_24_hours() {
        let key = VapidKey::generate();
        let signer = || VapidSigner::new(&key.pkcs8_pem(), "mailto:a@example.com").unwrap();
        assert!(TokenCache::new(signer(), Duration::from_secs(25 * 3600)).is_err());
        assert!(TokenCache::new(signer(), Duration::from_secs(1800)).is_err());
        assert!(TokenCache::new(signer(), MAX_TOKEN_LIFETIME).is_ok());
    }

    #[test]
    fn subject_must_be_mailto_or_https_and_not_localhost() {
        for ok in [
            "mailto:ops@example.com",
            "https://example.com",
            "https://example.com/contact",
        ] {
            assert!(check_subject(ok).is_ok(), "{ok}");
        }
        for bad in [
            "",
            "ops@example.com",
            "mailto:",
            "mailto:ops",
            "http://example.com",
            "https://localhost",
            "https://app.localhost/x",
            "https://127.0.0.1/",
            "https://[::1]/",
            "mailto:root@localhost",
        ] {
            let e = check_subject(bad).unwrap_err();
            assert_eq!(e.field(), "vapid.subject", "{bad}");
        }
    }

    #[test]
    fn bad_keys_are_refused_and_debug_hides_the_private_key() {
        for bad in [
            "",
            "not a key",
            "AAAA",
            "-----BEGIN PRIVATE KEY-----\nAAAA\n-----END PRIVATE KEY-----",
        ] {
            let e = VapidSigner::new(bad, "mailto:a@example.com").unwrap_err();
            assert_eq!(e.field(), "vapid.private_key", "{bad:?}");
        }
        let key = VapidKey::generate();
        let signer = VapidSigner::new(&key.pkcs8_pem(), "mailto:a@example.com").unwrap();
        let shown = format!("{signer:?}");
        assert!(!shown.contains(&key.private_key_base64url()), "{shown}");
        assert!(shown.contains(&key.public_key_base64url()));
    }
}
