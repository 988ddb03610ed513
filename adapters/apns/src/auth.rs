//! Provider tokens (PROTOCOLS.md §1.4, §7 item 4): an ES256 JWT (`kid` = key id, `iss` = team
//! id, `iat`) signed with the `.p8` key, cached as a ready `authorization` header and replaced
//! once it reaches the configured age (20–60 minutes); one signing at a time.

use std::fmt;
use std::sync::{Arc, Mutex, RwLock};
use std::time::Duration;

use http::HeaderValue;
use jsonwebtoken::{Algorithm, EncodingKey, Header};
use serde::Serialize;
use tidings::{Clock, PushError, Timestamp, ValidationError};

use crate::config::MIN_TOKEN_REFRESH;

#[derive(Serialize)]
struct Claims<'a> {
    iss: &'a str,
    iat: i64,
}

/// A signed provider token: the `authorization` header value (marked sensitive).
pub(crate) struct ProviderToken {
    pub(crate) header: HeaderValue,
    pub(crate) issued_at: Timestamp,
}

impl fmt::Debug for ProviderToken {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ProviderToken")
            .field("header", &"<redacted>")
            .field("issued_at", &self.issued_at)
            .finish()
    }
}

/// The provider tokens of one `.p8` key.
pub(crate) struct TokenSigner {
    team_id: String,
    key_id: String,
    key: EncodingKey,
    refresh_after: Duration,
    clock: Arc<dyn Clock>,
    current: RwLock<Option<Arc<ProviderToken>>>,
    signing: Mutex<()>,
}

impl fmt::Debug for TokenSigner {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let issued = self.cached().map(|t| t.issued_at);
        f.debug_struct("TokenSigner")
            .field("team_id", &self.team_id)
            .field("key_id", &self.key_id)
            .field("private_key", &"<redacted>")
            .field("token_issued_at", &issued)
            .finish()
    }
}

impl TokenSigner {
    pub(crate) fn new(
        team_id: &str,
        key_id: &str,
        p8_pem: &str,
        refresh_after: Duration,
        clock: Arc<dyn Clock>,
    ) -> Result<Self, ValidationError> {
        let key = EncodingKey::from_ec_pem(p8_pem.as_bytes()).map_err(|_| {
            ValidationError::new(
                "credentials.private_key",
                "must be the .p8 key: a P-256 private key in PEM",
            )
        })?;
        Ok(TokenSigner {
            team_id: team_id.to_owned(),
            key_id: key_id.to_owned(),
            key,
            refresh_after,
            clock,
            current: RwLock::new(None),
            signing: Mutex::new(()),
        })
    }

    fn cached(&self) -> Option<Arc<ProviderToken>> {
        self.current
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .clone()
    }

    fn fresh(&self, now: Timestamp) -> Option<Arc<ProviderToken>> {
        self.cached()
            .filter(|t| now >= t.issued_at && now.since(t.issued_at) < self.refresh_after)
    }

    /// A valid token: the cached one until it reaches the refresh age, else a new one (signed
    /// by one caller; callers that waited use its result).
    pub(crate) fn token(&self) -> Result<Arc<ProviderToken>, PushError> {
        let now = self.clock.now();
        if let Some(token) = self.fresh(now) {
            return Ok(token);
        }
        let _guard = self.signing.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(token) = self.fresh(now) {
            return Ok(token);
        }
        self.sign(now)
    }

    /// A new token after APNs answered `ExpiredProviderToken` to `rejected`. If another caller
    /// already replaced it, that replacement is used. A token younger than 20 minutes is not
    /// replaced (APNs would refuse the update, and a re-signed token would carry nearly the
    /// same `iat`): our clock and Apple's disagree, which is a configuration fault.
    pub(crate) fn replace(
        &self,
        rejected: &Arc<ProviderToken>,
    ) -> Result<Arc<ProviderToken>, PushError> {
        let _guard = self.signing.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(current) = self.cached().filter(|t| !Arc::ptr_eq(t, rejected)) {
            return Ok(current);
        }
        let now = self.clock.now();
        let age = now.since(rejected.issued_at);
        if age < MIN_TOKEN_REFRESH {
            return Err(PushError::misconfigured(format!(
                "APNs says the provider token of key {} expired although it is {} s old: \
                 check the system clock",
                self.key_id,
                age.as_secs()
            ))
            .with_reason("ExpiredProviderToken"));
        }
        self.sign(now)
    }

    /// Signs a token with `iat` = `now` and caches it.
    fn sign(&self, now: Timestamp) -> Result<Arc<ProviderToken>, PushError> {
        let mut header = Header::new(Algorithm::ES256);
        header.kid = Some(self.key_id.clone());
        let claims = Claims {
            iss: &self.team_id,
            iat: now.as_secs(),
        };
        let jwt = jsonwebtoken::encode(&header, &claims, &self.key).map_err(|e| {
            PushError::misconfigured("cannot sign the APNs provider token").with_source(e)
        })?;
        let mut value = HeaderValue::try_from(format!("bearer {jwt}"))
            .map_err(|_| PushError::misconfigured("the provider token is not a header value"))?;
        value.set_sensitive(true);
        let token = Arc::new(ProviderToken {
            header: value,
            issued_at: now,
        });
        *self.current.write().unwrap_or_else(|p| p.into_inner()) = Some(Arc::clone(&token));
        tracing::debug!(key_id = %self.key_id, team_id = %self.team_id, "APNs provider token signed");
        Ok(token)
    }
}

#[cfg(test)]
mod tests {
    use tidings::{ManualClock, PushErrorKind};
    use tidings_testkit::apns::ApnsSigningKey;

    use super::*;

    fn signer(clock: &ManualClock) -> (ApnsSigningKey, TokenSigner) {
        let key = ApnsSigningKey::generate("TEAM123456", "KEY1234567");
        let signer = TokenSigner::new(
            key.team_id(),
            key.key_id(),
            &key.p8_pem(),
            Duration::from_secs(50 * 60),
            Arc::new(clock.clone()),
        )
        .unwrap();
        (key, signer)
    }

    fn claims(token: &ProviderToken) -> (serde_json::Value, serde_json::Value) {
        let text = token.header.to_str().unwrap();
        let jwt = text.strip_prefix("bearer ").unwrap();
        let mut parts = jwt.split('.');
        let decode = |p: &str| {
            use base64_like::decode;
            serde_json::from_slice::<serde_json::Value>(&decode(p)).unwrap()
        };
        let header = decode(parts.next().unwrap());
        let claims = decode(parts.next().unwrap());
        (header, claims)
    }

    /// base64url without padding, just enough for the tests.
    mod base64_like {
        pub(super) fn decode(s: &str) -> Vec<u8> {
            let val = |c: u8| -> u32 {
                match c {
                    b'A'..=b'Z' => u32::from(c - b'A'),
                    b'a'..=b'z' => u32::from(c - b'a') + 26,
                    b'0'..=b'9' => u32::from(c - b'0') + 52,
                    b'-' => 62,
                    _ => 63,
                }
            };
            let mut out = Vec::new();
            let (mut acc, mut bits) = (0u32, 0);
            for c in s.bytes() {
                acc = (acc << 6) | val(c);
                bits += 6;
                if bits >= 8 {
                    bits -= 8;
                    out.push((acc >> bits) as u8);
                }
            }
            out
        }
    }

    #[test]
    fn token_is_es256_with_key_id_team_and_issue_time() {
        let clock = ManualClock::new(Timestamp::from_secs(1_767_225_600));
        let (_, s) = signer(&clock);
        let t = s.token().unwrap();
        let (header, claims) = claims(&t);
        assert_eq!(header["alg"], "ES256");
        assert_eq!(header["kid"], "KEY1234567");
        assert_eq!(claims["iss"], "TEAM123456");
        assert_eq!(claims["iat"], 1_767_225_600);
        assert!(t.header.is_sensitive());
    }

    #[test]
    fn token_is_reused_until_the_refresh_age_then_replaced() {
        let clock = ManualClock::new(Timestamp::from_secs(1_767_225_600));
        let (_, s) = signer(&clock);
        let first = s.token().unwrap();
        clock.advance(Duration::from_secs(49 * 60));
        assert!(Arc::ptr_eq(&first, &s.token().unwrap()));
        clock.advance(Duration::from_secs(60));
        let second = s.token().unwrap();
        assert!(!Arc::ptr_eq(&first, &second));
        assert_eq!(claims(&second).1["iat"], 1_767_225_600 + 50 * 60);
    }

    #[test]
    fn expired_token_is_replaced_once_and_only_when_old_enough() {
        let clock = ManualClock::new(Timestamp::from_secs(1_767_225_600));
        let (_, s) = signer(&clock);
        let first = s.token().unwrap();
        let err = s.replace(&first).unwrap_err();
        assert_eq!(err.kind(), PushErrorKind::Misconfigured, "clock skew");
        clock.advance(Duration::from_secs(25 * 60));
        let second = s.replace(&first).unwrap();
        assert!(!Arc::ptr_eq(&first, &second));
        let third = s.replace(&first).unwrap();
        assert!(
            Arc::ptr_eq(&second, &third),
            "a caller holding the old token gets the replacement, not a new signature"
        );
    }

    #[test]
    fn concurrent_first_callers_share_one_signature() {
        let clock = ManualClock::new(Timestamp::from_secs(1_767_225_600));
        let (_, s) = signer(&clock);
        let tokens: Vec<Arc<ProviderToken>> = std::thread::scope(|scope| {
            let handles: Vec<_> = (0..8).map(|_| scope.spawn(|| s.token().unwrap())).collect();
            handles.into_iter().map(|h| h.join().unwrap()).collect()
        });
        assert!(tokens.iter().all(|t| Arc::ptr_eq(t, &tokens[0])));
    }

    #[test]
    fn debug_hides_the_key_and_the_token() {
        let clock = ManualClock::new(Timestamp::from_secs(1_767_225_600));
        let (key, s) = signer(&clock);
        let t = s.token().unwrap();
        let shown = format!("{s:?} {t:?}");
        let jwt = t.header.to_str().unwrap().trim_start_matches("bearer ");
        assert!(!shown.contains(jwt));
        for line in key.p8_pem().lines().filter(|l| !l.starts_with("-----")) {
            assert!(!shown.contains(line));
        }
    }
}
