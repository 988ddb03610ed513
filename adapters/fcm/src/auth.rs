//! OAuth 2 access tokens from a service account (PROTOCOLS.md §2.2): an RS256 JWT assertion
//! traded at the token URI, cached until shortly before it expires, refreshed by one caller at
//! a time.

use std::fmt;
use std::sync::Arc;
use std::time::Duration;

use http::HeaderValue;
use jsonwebtoken::{Algorithm, EncodingKey, Header};
use serde::Serialize;
use tidings::token::{read_grant, TokenCache};
use tidings::{Clock, PushError, Timestamp, ValidationError};

use crate::config::ServiceAccountKey;
use crate::response::parse_retry_after;

/// The scope FCM sends need.
pub const MESSAGING_SCOPE: &str = "https://www.googleapis.com/auth/firebase.messaging";
/// Access tokens are refreshed this long before they expire (core's [`TokenCache`] rule).
pub use tidings::token::REFRESH_MARGIN;
/// Lifetime of the signed assertion (Google allows at most one hour).
const ASSERTION_LIFETIME: i64 = 3600;
const JWT_BEARER: &str = "urn:ietf:params:oauth:grant-type:jwt-bearer";

#[derive(Serialize)]
struct Claims<'a> {
    iss: &'a str,
    scope: &'a str,
    aud: &'a str,
    iat: i64,
    exp: i64,
}

/// A cached access token: the ready `Authorization` header value (marked sensitive).
pub(crate) struct AccessToken {
    pub(crate) header: HeaderValue,
}

impl fmt::Debug for AccessToken {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("AccessToken")
            .field("header", &"<redacted>")
            .finish()
    }
}

/// The access tokens of one service account.
pub(crate) struct TokenSource {
    client_email: String,
    private_key_id: Option<String>,
    key: EncodingKey,
    token_uri: String,
    http: reqwest::Client,
    clock: Arc<dyn Clock>,
    cache: TokenCache<AccessToken>,
}

impl fmt::Debug for TokenSource {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("TokenSource")
            .field("client_email", &self.client_email)
            .field("token_uri", &self.token_uri)
            .field("private_key", &"<redacted>")
            .field("access_token_refresh_at", &self.cache.refresh_at())
            .finish()
    }
}

impl TokenSource {
    pub(crate) fn new(
        account: &ServiceAccountKey,
        token_uri: &str,
        http: reqwest::Client,
        clock: Arc<dyn Clock>,
    ) -> Result<Self, ValidationError> {
        let key = EncodingKey::from_rsa_pem(account.private_key.as_bytes()).map_err(|_| {
            ValidationError::new(
                "service_account.private_key",
                "must be an RSA private key in PEM",
            )
        })?;
        Ok(TokenSource {
            client_email: account.client_email.clone(),
            private_key_id: account.private_key_id.clone(),
            key,
            token_uri: token_uri.to_owned(),
            http,
            cache: TokenCache::new(Arc::clone(&clock)),
            clock,
        })
    }

    /// A valid access token: the cached one, or a new one (one fetch at a time; callers that
    /// waited for it use its result).
    pub(crate) async fn token(&self) -> Result<Arc<AccessToken>, PushError> {
        self.cache.get(|| self.fetch()).await
    }

    /// A new token after FCM refused `rejected`; if another caller already replaced it, that
    /// replacement is used instead of fetching again.
    pub(crate) async fn replace(
        &self,
        rejected: &Arc<AccessToken>,
    ) -> Result<Arc<AccessToken>, PushError> {
        self.cache.replace(rejected, || self.fetch()).await
    }

    /// The signed assertion for a token request at `now`.
    pub(crate) fn assertion(&self, now: Timestamp) -> Result<String, PushError> {
        let mut header = Header::new(Algorithm::RS256);
        header.kid = self.private_key_id.clone();
        let iat = now.as_secs();
        let claims = Claims {
            iss: &self.client_email,
            scope: MESSAGING_SCOPE,
            aud: &self.token_uri,
            iat,
            exp: iat + ASSERTION_LIFETIME,
        };
        jsonwebtoken::encode(&header, &claims, &self.key).map_err(|e| {
            PushError::misconfigured("cannot sign the service-account assertion").with_source(e)
        })
    }

    async fn fetch(&self) -> Result<(AccessToken, Duration), PushError> {
        let now = self.clock.now();
        let assertion = self.assertion(now)?;
        let response = self
            .http
            .post(&self.token_uri)
            .form(&[
                ("grant_type", JWT_BEARER),
                ("assertion", assertion.as_str()),
            ])
            .send()
            .await
            .map_err(|e| transport_error("token request", e))?;
        let status = response.status().as_u16();
        let retry_after = parse_retry_after(
            response
                .headers()
                .get(http::header::RETRY_AFTER)
                .and_then(|v| v.to_str().ok()),
        );
        let body = response
            .bytes()
            .await
            .map_err(|e| transport_error("token response", e))?;
        let grant = read_grant("the token endpoint", status, retry_after, &body)?;
        let expires_in = grant.expires_in;
        let mut header = HeaderValue::try_from(format!("Bearer {}", grant.access_token))
            .map_err(|_| PushError::unavailable("the access token is not a header value"))?;
        header.set_sensitive(true);
        tracing::debug!(
            client_email = %self.client_email,
            expires_in = expires_in.as_secs(),
            "FCM access token obtained"
        );
        Ok((AccessToken { header }, expires_in))
    }
}

/// A reqwest failure: timeouts are timeouts, everything else is unavailability.
pub(crate) fn transport_error(what: &str, e: reqwest::Error) -> PushError {
    // reqwest's Display may include the URL, which holds no secret (tokens travel in headers
    // and bodies).
    if e.is_timeout() {
        PushError::timeout(format!("{what} timed out")).with_source(e)
    } else {
        PushError::unavailable(format!("{what} failed: {e}")).with_source(e)
    }
}
