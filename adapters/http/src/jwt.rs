//! [`JwtIdentity`]: bearer JWTs to principals.

use std::fmt;
use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use jsonwebtoken::crypto::CryptoProvider;
use jsonwebtoken::errors::ErrorKind as JwtErrorKind;
use jsonwebtoken::{Algorithm, DecodingKey, Validation};
use serde_json::{Map, Value};
use tidings::{
    AppId, Clock, Credential, Identity, IdentityError, IdentityErrorKind, Principal, SystemClock,
    UserId, ValidationError,
};

/// Largest leeway accepted for `exp` and `nbf`.
const MAX_LEEWAY: Duration = Duration::from_secs(300);

/// The signature algorithms [`JwtIdentity`] verifies.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum JwtAlgorithm {
    /// HMAC with SHA-256 and a shared secret.
    Hs256,
    /// RSASSA-PKCS1-v1_5 with SHA-256.
    Rs256,
    /// ECDSA on P-256 with SHA-256.
    Es256,
}

impl JwtAlgorithm {
    fn algorithm(self) -> Algorithm {
        match self {
            JwtAlgorithm::Hs256 => Algorithm::HS256,
            JwtAlgorithm::Rs256 => Algorithm::RS256,
            JwtAlgorithm::Es256 => Algorithm::ES256,
        }
    }
}

/// A verification key: its algorithm, an optional key id (`kid`) and the key. `Debug` shows no
/// key material.
#[derive(Clone)]
pub struct JwtKey {
    algorithm: JwtAlgorithm,
    kid: Option<String>,
    key: DecodingKey,
}

impl fmt::Debug for JwtKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("JwtKey")
            .field("algorithm", &self.algorithm)
            .field("kid", &self.kid)
            .field("key", &"<redacted>")
            .finish()
    }
}

impl JwtKey {
    /// An HS256 shared secret (at least 32 bytes, as RFC 7518 §3.2 requires).
    pub fn hs256(secret: impl AsRef<[u8]>) -> Result<Self, ValidationError> {
        let secret = secret.as_ref();
        if secret.len() < 32 {
            return Err(ValidationError::new(
                "key",
                "an HS256 secret must be at least 32 bytes",
            ));
        }
        let key = DecodingKey::from_secret(secret)
            .map_err(|_| ValidationError::new("key", "not a usable HS256 secret"))?;
        Ok(JwtKey::with(JwtAlgorithm::Hs256, key))
    }

    /// An RS256 public key in PEM (`BEGIN PUBLIC KEY` or `BEGIN RSA PUBLIC KEY`).
    pub fn rs256_pem(pem: impl AsRef<[u8]>) -> Result<Self, ValidationError> {
        let key = DecodingKey::from_rsa_pem(pem.as_ref())
            .map_err(|_| ValidationError::new("key", "not an RSA public key in PEM"))?;
        Ok(JwtKey::with(JwtAlgorithm::Rs256, key))
    }

    /// An RS256 public key from its JWK components (`n`, `e`, base64url).
    pub fn rs256_components(n: &str, e: &str) -> Result<Self, ValidationError> {
        let key = DecodingKey::from_rsa_components(n, e)
            .map_err(|_| ValidationError::new("key", "not RSA key components"))?;
        Ok(JwtKey::with(JwtAlgorithm::Rs256, key))
    }

    /// An ES256 public key in PEM (`BEGIN PUBLIC KEY`).
    pub fn es256_pem(pem: impl AsRef<[u8]>) -> Result<Self, ValidationError> {
        let key = DecodingKey::from_ec_pem(pem.as_ref())
            .map_err(|_| ValidationError::new("key", "not an EC public key in PEM"))?;
        Ok(JwtKey::with(JwtAlgorithm::Es256, key))
    }

    /// An ES256 public key from its JWK components (`x`, `y`, base64url).
    pub fn es256_components(x: &str, y: &str) -> Result<Self, ValidationError> {
        let key = DecodingKey::from_ec_components(x, y)
            .map_err(|_| ValidationError::new("key", "not P-256 key components"))?;
        Ok(JwtKey::with(JwtAlgorithm::Es256, key))
    }

    fn with(algorithm: JwtAlgorithm, key: DecodingKey) -> Self {
        JwtKey {
            algorithm,
            kid: None,
            key,
        }
    }

    /// The same key, selected by tokens whose header names this `kid`.
    #[must_use]
    pub fn kid(mut self, kid: impl Into<String>) -> Self {
        self.kid = Some(kid.into());
        self
    }

    /// The algorithm.
    pub fn algorithm(&self) -> JwtAlgorithm {
        self.algorithm
    }
}

/// Where the principal's app comes from.
#[derive(Clone, Debug, PartialEq, Eq)]
enum AppSource {
    Claim(String),
    Fixed(AppId),
}

/// An [`Identity`] that accepts signed JWTs (HS256, RS256, ES256).
///
/// A token is accepted when its signature verifies with a configured key (picked by `kid` when
/// the token names one, else every key of the token's algorithm is tried), `exp` is present and
/// in the future and `nbf`, if present, is in the past (both with the configured leeway, default
/// 30 s), and `iss` and `aud` match when configured. The user id is read from a configurable
/// claim (default `sub`); the app from another claim (default `app`) or fixed by configuration.
/// Time comes from an injected [`Clock`]. Rejections say why (expired, bad signature, wrong
/// issuer…) without echoing the token.
#[derive(Clone)]
pub struct JwtIdentity {
    inner: Arc<Inner>,
}

struct Inner {
    keys: Vec<JwtKey>,
    issuer: Option<String>,
    audience: Option<String>,
    leeway: Duration,
    user_claim: String,
    app: AppSource,
    clock: Arc<dyn Clock>,
}

impl fmt::Debug for JwtIdentity {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("JwtIdentity")
            .field("keys", &self.inner.keys)
            .field("issuer", &self.inner.issuer)
            .field("audience", &self.inner.audience)
            .field("leeway", &self.inner.leeway)
            .field("user_claim", &self.inner.user_claim)
            .field("app", &self.inner.app)
            .finish_non_exhaustive()
    }
}

/// Builds a [`JwtIdentity`].
#[derive(Debug)]
pub struct JwtIdentityBuilder {
    keys: Vec<JwtKey>,
    issuer: Option<String>,
    audience: Option<String>,
    leeway: Duration,
    user_claim: String,
    app: AppSource,
    clock: Option<Arc<dyn Clock>>,
}

impl JwtIdentity {
    /// A builder: add at least one key.
    pub fn builder() -> JwtIdentityBuilder {
        JwtIdentityBuilder {
            keys: Vec::new(),
            issuer: None,
            audience: None,
            leeway: Duration::from_secs(30),
            user_claim: "sub".to_owned(),
            app: AppSource::Claim("app".to_owned()),
            clock: None,
        }
    }
}

impl JwtIdentityBuilder {
    /// Adds a verification key (several allow rotation: give each a `kid`).
    #[must_use]
    pub fn key(mut self, key: JwtKey) -> Self {
        self.keys.push(key);
        self
    }

    /// Requires `iss` to equal `issuer`.
    #[must_use]
    pub fn issuer(mut self, issuer: impl Into<String>) -> Self {
        self.issuer = Some(issuer.into());
        self
    }

    /// Requires `aud` to be (or contain) `audience`.
    #[must_use]
    pub fn audience(mut self, audience: impl Into<String>) -> Self {
        self.audience = Some(audience.into());
        self
    }

    /// Clock skew tolerated on `exp` and `nbf` (default 30 s, at most 5 min).
    #[must_use]
    pub fn leeway(mut self, leeway: Duration) -> Self {
        self.leeway = leeway;
        self
    }

    /// The claim holding the user id (default `sub`).
    #[must_use]
    pub fn user_claim(mut self, claim: impl Into<String>) -> Self {
        self.user_claim = claim.into();
        self
    }

    /// The claim holding the app id (default `app`).
    #[must_use]
    pub fn app_claim(mut self, claim: impl Into<String>) -> Self {
        self.app = AppSource::Claim(claim.into());
        self
    }

    /// Every accepted token is for this app (for issuers that serve one app only).
    #[must_use]
    pub fn fixed_app(mut self, app: impl Into<AppId>) -> Self {
        self.app = AppSource::Fixed(app.into());
        self
    }

    /// The clock `exp` and `nbf` are checked against (default: the system clock).
    #[must_use]
    pub fn clock(mut self, clock: impl Clock) -> Self {
        self.clock = Some(Arc::new(clock));
        self
    }

    /// Checks the configuration.
    ///
    /// If the process has no jsonwebtoken crypto provider yet (none installed and the build
    /// enables more than one backend), this installs the aws-lc-rs one so that verification can
    /// never panic.
    pub fn build(self) -> Result<JwtIdentity, ValidationError> {
        if self.keys.is_empty() {
            return Err(ValidationError::new("keys", "configure at least one key"));
        }
        if self.leeway > MAX_LEEWAY {
            return Err(ValidationError::new("leeway", "must be at most 5 minutes"));
        }
        if self.user_claim.trim().is_empty() {
            return Err(ValidationError::new("user_claim", "must not be empty"));
        }
        match &self.app {
            AppSource::Claim(c) if c.trim().is_empty() => {
                return Err(ValidationError::new("app_claim", "must not be empty"))
            }
            AppSource::Fixed(a) if a.as_str().is_empty() => {
                return Err(ValidationError::new("fixed_app", "must not be empty"))
            }
            _ => {}
        }
        if CryptoProvider::try_get_default().is_none() {
            // Fails only when another thread installed one meanwhile, which is as good.
            let _ = jsonwebtoken::crypto::aws_lc::DEFAULT_PROVIDER.install_default();
        }
        Ok(JwtIdentity {
            inner: Arc::new(Inner {
                keys: self.keys,
                issuer: self.issuer,
                audience: self.audience,
                leeway: self.leeway,
                user_claim: self.user_claim,
                app: self.app,
                clock: self.clock.unwrap_or_else(|| Arc::new(SystemClock)),
            }),
        })
    }
}

fn invalid(message: &str) -> IdentityError {
    IdentityError::new(IdentityErrorKind::Invalid, message)
}

impl JwtIdentity {
    fn verify(&self, token: &str) -> Result<Map<String, Value>, IdentityError> {
        let inner = &self.inner;
        let header = jsonwebtoken::decode_header(token).map_err(|_| invalid("malformed token"))?;
        let candidates: Vec<&JwtKey> = inner
            .keys
            .iter()
            .filter(|k| k.algorithm.algorithm() == header.alg)
            .filter(|k| match (&header.kid, &k.kid) {
                (Some(wanted), Some(kid)) => wanted == kid,
                (Some(_), None) => false,
                (None, _) => true,
            })
            .collect();
        if candidates.is_empty() {
            return Err(invalid("no key for the token's algorithm and key id"));
        }
        let mut validation = Validation::new(header.alg);
        // exp and nbf are checked below against the injected clock.
        validation.validate_exp = false;
        validation.validate_nbf = false;
        validation.required_spec_claims.clear();
        validation.leeway = 0;
        // A configured issuer or audience must be present, not only match when present.
        match &inner.audience {
            Some(aud) => {
                validation.set_audience(&[aud]);
                validation.required_spec_claims.insert("aud".to_owned());
            }
            None => validation.validate_aud = false,
        }
        if let Some(iss) = &inner.issuer {
            validation.set_issuer(&[iss]);
            validation.required_spec_claims.insert("iss".to_owned());
        }
        let mut last = invalid("bad signature");
        for key in candidates {
            match jsonwebtoken::decode::<Map<String, Value>>(token, &key.key, &validation) {
                Ok(data) => return Ok(data.claims),
                Err(e) => {
                    last = match e.kind() {
                        JwtErrorKind::InvalidSignature => invalid("bad signature"),
                        JwtErrorKind::InvalidIssuer => invalid("wrong issuer"),
                        JwtErrorKind::InvalidAudience => invalid("wrong audience"),
                        JwtErrorKind::MissingRequiredClaim(c) if c == "iss" => invalid("no issuer"),
                        JwtErrorKind::MissingRequiredClaim(c) if c == "aud" => {
                            invalid("no audience")
                        }
                        JwtErrorKind::InvalidClaimFormat(_) => invalid("malformed claims"),
                        _ => invalid("malformed token"),
                    };
                    // Only a signature mismatch is worth trying the next key for.
                    if !matches!(e.kind(), JwtErrorKind::InvalidSignature) {
                        return Err(last);
                    }
                }
            }
        }
        Err(last)
    }

    fn check_times(&self, claims: &Map<String, Value>) -> Result<(), IdentityError> {
        let now = self.inner.clock.now().as_secs();
        let leeway = i64::try_from(self.inner.leeway.as_secs()).unwrap_or(0);
        let exp = match claims.get("exp") {
            Some(v) => numeric_date(v).ok_or_else(|| invalid("exp is not a number"))?,
            None => return Err(invalid("the token has no exp")),
        };
        if now >= exp.saturating_add(leeway) {
            return Err(IdentityError::new(
                IdentityErrorKind::Expired,
                "token expired",
            ));
        }
        if let Some(v) = claims.get("nbf") {
            let nbf = numeric_date(v).ok_or_else(|| invalid("nbf is not a number"))?;
            if now.saturating_add(leeway) < nbf {
                return Err(IdentityError::new(
                    IdentityErrorKind::Expired,
                    "token not valid yet",
                ));
            }
        }
        Ok(())
    }
}

/// A NumericDate (seconds, possibly fractional) as whole seconds.
fn numeric_date(v: &Value) -> Option<i64> {
    match v {
        Value::Number(n) => n.as_i64().or_else(|| {
            n.as_f64()
                .filter(|f| f.is_finite())
                .map(|f| f.floor() as i64)
        }),
        _ => None,
    }
}

/// A claim as an id: a non-empty string, or an integer written in decimal.
fn claim_id(claims: &Map<String, Value>, name: &str) -> Result<String, IdentityError> {
    let text = match claims.get(name) {
        Some(Value::String(s)) => s.clone(),
        Some(Value::Number(n)) if n.is_i64() || n.is_u64() => n.to_string(),
        Some(_) => return Err(invalid(&format!("claim {name} is not a string"))),
        None => return Err(invalid(&format!("the token has no {name} claim"))),
    };
    if text.trim().is_empty() || text.len() > 256 {
        return Err(invalid(&format!("claim {name} must be 1 to 256 bytes")));
    }
    Ok(text)
}

#[async_trait]
impl Identity for JwtIdentity {
    async fn authenticate(&self, credential: &Credential) -> Result<Principal, IdentityError> {
        let token = credential.expose();
        if token.is_empty() {
            return Err(IdentityError::new(IdentityErrorKind::Missing, "no token"));
        }
        let claims = self.verify(token)?;
        self.check_times(&claims)?;
        let user = UserId::from(claim_id(&claims, &self.inner.user_claim)?);
        let app = match &self.inner.app {
            AppSource::Fixed(app) => app.clone(),
            AppSource::Claim(name) => AppId::from(claim_id(&claims, name)?),
        };
        Ok(Principal { app, user })
    }
}
