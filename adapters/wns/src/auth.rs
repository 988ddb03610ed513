//! OAuth 2 client-credentials access tokens (PROTOCOLS.md §3.1), legacy (Package SID at
//! `login.live.com`) or Entra ID: cached until shortly before they expire, refreshed by one
//! caller at a time.

use std::fmt;
use std::sync::Arc;
use std::time::Duration;

use http::HeaderValue;
use serde::Deserialize;
use tidings::token::TokenCache;
use tidings::{Clock, PushError};

use crate::config::WnsCredentials;
use crate::response::parse_continue_after;

/// Scope of the legacy (Package SID) flow.
pub const LEGACY_SCOPE: &str = "notify.windows.com";
/// Scope of the Entra ID flow.
pub const WNS_ENTRA_SCOPE: &str = "https://wns.windows.com/.default";
/// Token endpoint of the legacy flow.
pub const LEGACY_TOKEN_URL: &str = "https://login.live.com/accesstoken.srf";
/// Access tokens are refreshed this long before they expire (core's [`TokenCache`] rule).
pub use tidings::token::REFRESH_MARGIN;
/// Largest token response read, in bytes.
const MAX_TOKEN_RESPONSE: usize = 64 * 1024;

#[derive(Deserialize)]
struct TokenResponse {
    access_token: String,
    #[serde(default)]
    expires_in: Option<u64>,
}

#[derive(Deserialize, Default)]
struct OAuthError {
    #[serde(default)]
    error: String,
    #[serde(default)]
    error_description: String,
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

/// The access tokens of one app's credentials.
pub(crate) struct TokenSource {
    credentials: WnsCredentials,
    token_url: String,
    http: reqwest::Client,
    cache: TokenCache<AccessToken>,
}

impl fmt::Debug for TokenSource {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("TokenSource")
            .field("credentials", &self.credentials)
            .field("token_url", &self.token_url)
            .field("access_token_refresh_at", &self.cache.refresh_at())
            .finish()
    }
}

impl TokenSource {
    pub(crate) fn new(
        credentials: WnsCredentials,
        token_url: String,
        http: reqwest::Client,
        clock: Arc<dyn Clock>,
    ) -> Self {
        TokenSource {
            credentials,
            token_url,
            http,
            cache: TokenCache::new(clock),
        }
    }

    /// A valid access token: the cached one, or a new one (one fetch at a time; callers that
    /// waited for it use its result).
    pub(crate) async fn token(&self) -> Result<Arc<AccessToken>, PushError> {
        self.cache.get(|| self.fetch()).await
    }

    /// A new token after WNS refused `rejected`; if another caller already replaced it, that
    /// replacement is used instead of fetching again.
    pub(crate) async fn replace(
        &self,
        rejected: &Arc<AccessToken>,
    ) -> Result<Arc<AccessToken>, PushError> {
        self.cache.replace(rejected, || self.fetch()).await
    }

    async fn fetch(&self) -> Result<(AccessToken, Duration), PushError> {
        let (client_id, secret, scope) = match &self.credentials {
            WnsCredentials::Legacy {
                package_sid,
                client_secret,
            } => (package_sid.as_str(), client_secret.as_str(), LEGACY_SCOPE),
            WnsCredentials::Entra {
                client_id,
                client_secret,
                ..
            } => (client_id.as_str(), client_secret.as_str(), WNS_ENTRA_SCOPE),
        };
        let mut response = self
            .http
            .post(&self.token_url)
            .form(&[
                ("grant_type", "client_credentials"),
                ("client_id", client_id),
                ("client_secret", secret),
                ("scope", scope),
            ])
            .send()
            .await
            .map_err(|e| transport_error("WNS token request", e))?;
        let status = response.status().as_u16();
        let retry_after = response
            .headers()
            .get(http::header::RETRY_AFTER)
            .and_then(|v| v.to_str().ok())
            .map(str::to_owned);
        let body = read_capped(&mut response, MAX_TOKEN_RESPONSE)
            .await
            .map_err(|e| transport_error("WNS token response", e))?;
        if status != 200 {
            return Err(token_error(status, retry_after.as_deref(), &body));
        }
        let parsed: TokenResponse = serde_json::from_slice(&body).map_err(|e| {
            PushError::unavailable("the token endpoint answered 200 without an access token")
                .with_source(e)
        })?;
        let expires_in = Duration::from_secs(parsed.expires_in.unwrap_or(3600));
        let mut header = HeaderValue::try_from(format!("Bearer {}", parsed.access_token))
            .map_err(|_| PushError::unavailable("the access token is not a header value"))?;
        header.set_sensitive(true);
        tracing::debug!(
            client_id = %client_id,
            expires_in = expires_in.as_secs(),
            "WNS access token obtained"
        );
        Ok((AccessToken { header }, expires_in))
    }
}

/// Reads at most `cap` bytes of a response body; the rest is left unread (the connection is
/// then not reused, which is the point: an oversized answer is not ours to buffer).
pub(crate) async fn read_capped(
    response: &mut reqwest::Response,
    cap: usize,
) -> Result<Vec<u8>, reqwest::Error> {
    let mut body = Vec::new();
    while let Some(chunk) = response.chunk().await? {
        let room = cap - body.len();
        body.extend_from_slice(&chunk[..chunk.len().min(room)]);
        if body.len() >= cap {
            break;
        }
    }
    Ok(body)
}

/// A failed token request: refusals of the grant (`invalid_client`, `invalid_scope`, …) are
/// configuration faults; 429 and 5xx are retryable.
fn token_error(status: u16, retry_after: Option<&str>, body: &[u8]) -> PushError {
    let e: OAuthError = serde_json::from_slice(body).unwrap_or_default();
    let text = format!(
        "the WNS token endpoint answered {status} {}: {}",
        e.error, e.error_description
    );
    let after = parse_continue_after(retry_after);
    let error = match status {
        429 => PushError::throttled(text, after),
        500..=599 => {
            let e = PushError::unavailable(text);
            match after {
                Some(d) => e.with_retry(tidings::Retry::After(d)),
                None => e,
            }
        }
        _ => PushError::misconfigured(text),
    };
    if e.error.is_empty() {
        error
    } else {
        error.with_reason(e.error)
    }
}

/// A reqwest failure: timeouts are timeouts, everything else is unavailability. The message
/// leaves the URL out (a channel URI is a secret that reaches a device).
pub(crate) fn transport_error(what: &str, e: reqwest::Error) -> PushError {
    let e = e.without_url();
    if e.is_timeout() {
        PushError::timeout(format!("{what} timed out")).with_source(e)
    } else {
        PushError::unavailable(format!("{what} failed: {e}")).with_source(e)
    }
}

#[cfg(test)]
mod tests {
    use tidings::PushErrorKind;

    use super::*;

    #[test]
    fn refused_grants_are_misconfiguration_and_outages_retry() {
        let invalid = token_error(
            400,
            None,
            br#"{"error":"invalid_client","error_description":"client authentication failed"}"#,
        );
        assert_eq!(invalid.kind(), PushErrorKind::Misconfigured);
        assert_eq!(invalid.reason(), Some("invalid_client"));
        let entra = token_error(401, None, br#"{"error":"invalid_client"}"#);
        assert_eq!(entra.kind(), PushErrorKind::Misconfigured);
        let busy = token_error(503, Some("7"), b"");
        assert_eq!(busy.kind(), PushErrorKind::Unavailable);
        assert_eq!(busy.retry(), tidings::Retry::After(Duration::from_secs(7)));
        assert_eq!(token_error(429, None, b"").kind(), PushErrorKind::Throttled);
    }
}
