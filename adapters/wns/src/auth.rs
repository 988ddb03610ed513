//! OAuth 2 client-credentials access tokens (PROTOCOLS.md §3.1), legacy (Package SID at
//! `login.live.com`) or Entra ID: cached until shortly before they expire, refreshed by one
//! caller at a time.

use std::fmt;
use std::sync::Arc;
use std::time::Duration;

use http::HeaderValue;
use tidings::token::{read_grant, TokenCache};
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
        let retry_after = parse_continue_after(
            response
                .headers()
                .get(http::header::RETRY_AFTER)
                .and_then(|v| v.to_str().ok()),
        );
        let body = read_capped(&mut response, MAX_TOKEN_RESPONSE)
            .await
            .map_err(|e| transport_error("WNS token response", e))?;
        let grant = read_grant("the WNS token endpoint", status, retry_after, &body)?;
        let expires_in = grant.expires_in;
        let mut header = HeaderValue::try_from(format!("Bearer {}", grant.access_token))
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
