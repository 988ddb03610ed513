//! The channel: picks the app's credentials, renders the push, checks the channel URI, sends,
//! and classifies the answer.

use std::collections::HashMap;
use std::fmt;
use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use bytes::Bytes;
use tidings::{
    Accepted, AppId, ChannelCapabilities, Clock, Platform, Push, PushChannel, PushError,
    ValidationError,
};

use crate::auth::{read_capped, transport_error, AccessToken, TokenSource};
use crate::config::{WnsChannelBuilder, WnsConfig};
use crate::guard::guard;
use crate::request::{self, MAX_PAYLOAD_BYTES};
use crate::response::{self, Verdict, WnsResponse};

/// Largest response body read from a channel URI (WNS answers with headers only).
const MAX_RESPONSE_BODY: usize = 16 * 1024;

/// How one app's pushes are authenticated.
#[derive(Debug)]
struct Route {
    auth: Arc<TokenSource>,
}

struct Inner {
    routes: HashMap<AppId, Route>,
    http: reqwest::Client,
    wns_hosts: Vec<String>,
    loopback_for_tests: bool,
    request_timeout: Duration,
}

/// The WNS [`PushChannel`]. Cheap to clone; clones share connections and access tokens. Build
/// it with [`WnsChannel::builder`] or [`WnsChannel::from_config`].
#[derive(Clone)]
pub struct WnsChannel {
    inner: Arc<Inner>,
}

impl fmt::Debug for WnsChannel {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut apps: Vec<_> = self.inner.routes.iter().collect();
        apps.sort_by(|a, b| a.0.cmp(b.0));
        let apps: Vec<_> = apps
            .into_iter()
            .map(|(app, r)| (app.as_str(), &r.auth))
            .collect();
        f.debug_struct("WnsChannel")
            .field("apps", &apps)
            .field("wns_hosts", &self.inner.wns_hosts)
            .field("loopback_for_tests", &self.inner.loopback_for_tests)
            .field("request_timeout", &self.inner.request_timeout)
            .finish_non_exhaustive()
    }
}

impl WnsChannel {
    /// A builder.
    pub fn builder() -> WnsChannelBuilder {
        WnsChannelBuilder::default()
    }

    /// A channel from a (deserialized) configuration, validated, with the system clock.
    pub fn from_config(config: WnsConfig) -> Result<WnsChannel, ValidationError> {
        WnsChannelBuilder::from_config(config).build()
    }

    pub(crate) fn from_parts(
        config: WnsConfig,
        clock: Arc<dyn Clock>,
    ) -> Result<WnsChannel, ValidationError> {
        let mut http = reqwest::Client::builder()
            .tcp_nodelay(true)
            .timeout(config.request_timeout)
            .connect_timeout(config.request_timeout.min(Duration::from_secs(10)))
            // Never follow a redirect: it could lead off notify.windows.com.
            .redirect(reqwest::redirect::Policy::none())
            .https_only(!config.loopback_for_tests)
            .pool_idle_timeout(Duration::from_secs(90));
        if config.http2_prior_knowledge {
            http = http.http2_prior_knowledge();
        }
        let http = http.build().map_err(|e| {
            ValidationError::new("http", format!("cannot build the HTTP client: {e}"))
        })?;

        let mut sources: HashMap<(String, String), Arc<TokenSource>> = HashMap::new();
        let mut routes = HashMap::new();
        for app in &config.apps {
            let token_url = app.effective_token_url();
            let key = (WnsConfig::client_id_of(app).to_owned(), token_url.clone());
            let auth = Arc::clone(sources.entry(key).or_insert_with(|| {
                Arc::new(TokenSource::new(
                    app.credentials.clone(),
                    token_url,
                    http.clone(),
                    Arc::clone(&clock),
                ))
            }));
            routes.insert(app.app.clone(), Route { auth });
        }
        Ok(WnsChannel {
            inner: Arc::new(Inner {
                routes,
                http,
                wns_hosts: config.wns_hosts,
                loopback_for_tests: config.loopback_for_tests,
                request_timeout: config.request_timeout,
            }),
        })
    }

    /// One exchange with a channel URI.
    async fn exchange(
        &self,
        url: &url::Url,
        parts: &http::request::Parts,
        body: Bytes,
        token: &AccessToken,
    ) -> Result<WnsResponse, PushError> {
        let mut request = reqwest::Request::new(parts.method.clone(), url.clone());
        *request.headers_mut() = parts.headers.clone();
        request
            .headers_mut()
            .insert(http::header::AUTHORIZATION, token.header.clone());
        *request.body_mut() = Some(body.into());
        let mut response = self
            .inner
            .http
            .execute(request)
            .await
            .map_err(|e| transport_error("WNS request", e))?;
        let answer = WnsResponse::from_headers(response.status().as_u16(), response.headers());
        let header = |name: &str| {
            response
                .headers()
                .get(name)
                .and_then(|v| v.to_str().ok())
                .unwrap_or("")
        };
        tracing::debug!(
            status = answer.status,
            wns_status = answer.wns_status.as_deref().unwrap_or(""),
            msg_id = answer.msg_id.as_deref().unwrap_or(""),
            debug_trace = header("x-wns-debug-trace"),
            ms_cv = header("ms-cv"),
            device = answer.device_status.as_deref().unwrap_or(""),
            error_description = answer.error_description.as_deref().unwrap_or(""),
            "WNS answered"
        );
        // Drain (a capped amount of) the body so the connection can be reused.
        read_capped(&mut response, MAX_RESPONSE_BODY)
            .await
            .map_err(|e| transport_error("WNS response", e))?;
        Ok(answer)
    }
}

#[async_trait]
impl PushChannel for WnsChannel {
    fn platform(&self) -> Platform {
        Platform::Wns
    }

    fn capabilities(&self) -> ChannelCapabilities {
        ChannelCapabilities {
            max_payload_bytes: MAX_PAYLOAD_BYTES,
            silent_push: true,
            collapse: true,
        }
    }

    async fn send(&self, push: &Push) -> Result<Accepted, PushError> {
        let route = self.inner.routes.get(&push.app).ok_or_else(|| {
            PushError::misconfigured(format!("no WNS credentials for app {}", push.app))
        })?;
        let (parts, body) = request::render(push)?.into_parts();
        let uri = request::channel_uri(push)?;
        let url = guard(uri, &self.inner.wns_hosts, self.inner.loopback_for_tests)?;
        let token = route.auth.token().await?;
        let answer = self.exchange(&url, &parts, body.clone(), &token).await?;
        match response::classify(&answer) {
            Verdict::Accepted(accepted) => Ok(accepted),
            Verdict::Failed(error) => Err(error),
            Verdict::RefreshToken => {
                tracing::debug!(app = %push.app, "WNS refused the access token; refreshing once");
                let token = route.auth.replace(&token).await?;
                let answer = self.exchange(&url, &parts, body, &token).await?;
                match response::classify(&answer) {
                    Verdict::Accepted(accepted) => Ok(accepted),
                    Verdict::Failed(error) => Err(error),
                    Verdict::RefreshToken => Err(PushError::misconfigured(format!(
                        "WNS refused a freshly issued access token for app {}",
                        push.app
                    ))
                    .with_reason("unauthorized")),
                }
            }
        }
    }
}
