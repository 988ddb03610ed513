//! The channel: routes a push to its app's credentials and the endpoint's environment, renders
//! it, sends it over a long-lived HTTP/2 connection, and classifies the answer.

use std::collections::HashMap;
use std::fmt;
use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use bytes::Bytes;
use tidings::{
    Accepted, ApnsEnvironment, AppId, ChannelCapabilities, Clock, Platform, Push, PushChannel,
    PushError, ValidationError,
};

use crate::auth::{ProviderToken, TokenSigner};
use crate::config::{ApnsChannelBuilder, ApnsConfig, ApnsCredentials};
use crate::request::{self, RenderOptions, MAX_PAYLOAD_BYTES};
use crate::response::{self, Answer, ClassifyOptions, Verdict};

/// How an app authenticates.
#[derive(Debug)]
enum Auth {
    Token(Arc<TokenSigner>),
    Certificate,
}

/// How one app's pushes go out.
#[derive(Debug)]
struct Route {
    render: RenderOptions,
    auth: Auth,
    /// One client (connection pool: in practice one HTTP/2 connection) per environment,
    /// shared with every app using the same credential.
    production: reqwest::Client,
    sandbox: reqwest::Client,
    credential: String,
}

struct Inner {
    routes: HashMap<AppId, Route>,
    production_url: String,
    sandbox_url: String,
    request_timeout: Duration,
    classify: ClassifyOptions,
    clock: Arc<dyn Clock>,
}

/// The APNs [`PushChannel`]. Cheap to clone; clones share connections and provider tokens.
/// Build it with [`ApnsChannel::builder`] or [`ApnsChannel::from_config`].
#[derive(Clone)]
pub struct ApnsChannel {
    inner: Arc<Inner>,
}

impl fmt::Debug for ApnsChannel {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut apps: Vec<_> = self
            .inner
            .routes
            .iter()
            .map(|(app, r)| {
                let auth = match &r.auth {
                    Auth::Token(_) => "token",
                    Auth::Certificate => "certificate",
                };
                (app.as_str(), r.render.topic.as_str(), auth)
            })
            .collect();
        apps.sort_unstable();
        f.debug_struct("ApnsChannel")
            .field("production_url", &self.inner.production_url)
            .field("sandbox_url", &self.inner.sandbox_url)
            .field("apps", &apps)
            .field("request_timeout", &self.inner.request_timeout)
            .finish_non_exhaustive()
    }
}

/// What one exchange returned.
struct Reply {
    status: u16,
    apns_id: Option<String>,
    retry_after: Option<String>,
    body: Bytes,
}

fn http_client(
    config: &ApnsConfig,
    credentials: &ApnsCredentials,
) -> Result<reqwest::Client, ValidationError> {
    let mut b = reqwest::Client::builder()
        // APNs speaks HTTP/2 only (negotiated by ALPN over TLS).
        .http2_prior_knowledge()
        .tcp_nodelay(true)
        .timeout(config.request_timeout)
        .connect_timeout(config.request_timeout.min(Duration::from_secs(10)))
        .redirect(reqwest::redirect::Policy::none())
        // Long-lived connections (Apple: keep them for hours); an HTTP/2 PING after an hour
        // of silence keeps idle ones open.
        .pool_idle_timeout(None)
        .http2_keep_alive_interval(Duration::from_secs(3600))
        .http2_keep_alive_while_idle(true);
    if let Some(ca) = &config.trusted_ca_pem {
        let certs = reqwest::Certificate::from_pem_bundle(ca.as_bytes())
            .map_err(|_| ValidationError::new("trusted_ca_pem", "must be a certificate in PEM"))?;
        b = b.tls_certs_merge(certs);
    }
    if let ApnsCredentials::Certificate { identity_pem } = credentials {
        let identity = reqwest::Identity::from_pem(identity_pem.as_bytes()).map_err(|_| {
            ValidationError::new(
                "credentials.identity_pem",
                "must hold a private key and a certificate in PEM",
            )
        })?;
        b = b.identity(identity);
    }
    b.build()
        .map_err(|e| ValidationError::new("http", format!("cannot build the HTTP client: {e}")))
}

impl ApnsChannel {
    /// A builder.
    pub fn builder() -> ApnsChannelBuilder {
        ApnsChannelBuilder::default()
    }

    /// A channel from a (deserialized) configuration, validated, with the system clock.
    pub fn from_config(config: ApnsConfig) -> Result<ApnsChannel, ValidationError> {
        ApnsChannelBuilder::from_config(config).build()
    }

    pub(crate) fn from_parts(
        config: ApnsConfig,
        clock: Arc<dyn Clock>,
    ) -> Result<ApnsChannel, ValidationError> {
        // One client per (credential, environment); one signer per key.
        let mut clients: HashMap<(String, ApnsEnvironment), reqwest::Client> = HashMap::new();
        let mut signers: HashMap<String, Arc<TokenSigner>> = HashMap::new();
        let mut routes = HashMap::new();
        for (i, app) in config.apps.iter().enumerate() {
            let at = format!("apps[{i}]");
            // Names the credential in logs and for sharing, without anything secret in it.
            let credential = match &app.credentials {
                ApnsCredentials::Token {
                    team_id, key_id, ..
                } => format!("token:{team_id}:{key_id}"),
                ApnsCredentials::Certificate { identity_pem } => {
                    let first = config
                        .apps
                        .iter()
                        .position(|a| {
                            matches!(&a.credentials,
                                ApnsCredentials::Certificate { identity_pem: p } if p == identity_pem)
                        })
                        .unwrap_or(i);
                    format!("certificate:apps[{first}]")
                }
            };
            let mut client_for = |env| -> Result<reqwest::Client, ValidationError> {
                if let Some(c) = clients.get(&(credential.clone(), env)) {
                    return Ok(c.clone());
                }
                let c = http_client(&config, &app.credentials).map_err(|e| e.within(&at))?;
                clients.insert((credential.clone(), env), c.clone());
                Ok(c)
            };
            let production = client_for(ApnsEnvironment::Production)?;
            let sandbox = client_for(ApnsEnvironment::Sandbox)?;
            let auth = match &app.credentials {
                ApnsCredentials::Token {
                    team_id,
                    key_id,
                    private_key,
                } => {
                    let signer = match signers.get(&credential) {
                        Some(s) => Arc::clone(s),
                        None => {
                            let s = Arc::new(
                                TokenSigner::new(
                                    team_id,
                                    key_id,
                                    private_key,
                                    config.token_refresh,
                                    Arc::clone(&clock),
                                )
                                .map_err(|e| e.within(&at))?,
                            );
                            signers.insert(credential.clone(), Arc::clone(&s));
                            s
                        }
                    };
                    Auth::Token(signer)
                }
                ApnsCredentials::Certificate { .. } => Auth::Certificate,
            };
            routes.insert(
                app.app.clone(),
                Route {
                    render: RenderOptions {
                        topic: app.topic.clone(),
                        sound: app.sound.clone(),
                    },
                    auth,
                    production,
                    sandbox,
                    credential,
                },
            );
        }
        Ok(ApnsChannel {
            inner: Arc::new(Inner {
                routes,
                production_url: config.production_url,
                sandbox_url: config.sandbox_url,
                request_timeout: config.request_timeout,
                classify: ClassifyOptions {
                    server_error_floor: config.server_error_floor,
                },
                clock,
            }),
        })
    }

    /// The bundle id the pushes of `app` go to, if the app is configured.
    pub fn topic_of(&self, app: &AppId) -> Option<&str> {
        self.inner.routes.get(app).map(|r| r.render.topic.as_str())
    }

    async fn exchange(
        http: &reqwest::Client,
        url: reqwest::Url,
        headers: http::HeaderMap,
        body: Bytes,
        token: Option<&ProviderToken>,
    ) -> Result<Reply, PushError> {
        let mut request = reqwest::Request::new(http::Method::POST, url);
        *request.headers_mut() = headers;
        if let Some(token) = token {
            request
                .headers_mut()
                .insert(http::header::AUTHORIZATION, token.header.clone());
        }
        *request.body_mut() = Some(body.into());
        let response = http
            .execute(request)
            .await
            .map_err(|e| transport_error("APNs request", e))?;
        let status = response.status().as_u16();
        let header = |name: &str| {
            response
                .headers()
                .get(name)
                .and_then(|v| v.to_str().ok())
                .map(str::to_owned)
        };
        let apns_id = header("apns-id");
        let retry_after = header("retry-after");
        let body = response
            .bytes()
            .await
            .map_err(|e| transport_error("APNs response", e))?;
        Ok(Reply {
            status,
            apns_id,
            retry_after,
            body,
        })
    }

    fn classify(&self, reply: &Reply) -> Verdict {
        response::classify(
            Answer {
                status: reply.status,
                apns_id: reply.apns_id.as_deref(),
                retry_after: reply.retry_after.as_deref(),
                body: &reply.body,
            },
            self.inner.classify,
        )
    }
}

/// A reqwest failure, without its URL (the URL holds the device token): timeouts are
/// timeouts; connection failures, resets and GOAWAY are unavailability (the next request opens
/// a new connection).
fn transport_error(what: &str, e: reqwest::Error) -> PushError {
    let e = e.without_url();
    if e.is_timeout() {
        PushError::timeout(format!("{what} timed out")).with_source(e)
    } else {
        PushError::unavailable(format!("{what} failed: {e}")).with_source(e)
    }
}

#[async_trait]
impl PushChannel for ApnsChannel {
    fn platform(&self) -> Platform {
        Platform::Apns
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
            PushError::misconfigured(format!("no APNs credentials for app {}", push.app))
        })?;
        let (_, environment) = request::device_token(push)?;
        let (base, http) = match environment {
            ApnsEnvironment::Production => (&self.inner.production_url, &route.production),
            ApnsEnvironment::Sandbox => (&self.inner.sandbox_url, &route.sandbox),
        };
        let now = self.inner.clock.now();
        let id = uuid::Uuid::new_v4();
        let rendered = request::render(push, base, &route.render, now, id)?;
        let apns_id = rendered.apns_id;
        let url = reqwest::Url::parse(&rendered.url).map_err(|e| {
            PushError::misconfigured("the APNs base URL does not make a URL").with_source(e)
        })?;
        let token = match &route.auth {
            Auth::Token(signer) => Some(signer.token()?),
            Auth::Certificate => None,
        };
        let reply = Self::exchange(
            http,
            url.clone(),
            rendered.headers,
            rendered.body,
            token.as_deref(),
        )
        .await?;
        let verdict = match self.classify(&reply) {
            Verdict::RefreshToken => {
                let (Auth::Token(signer), Some(old)) = (&route.auth, &token) else {
                    return Err(PushError::misconfigured(
                        "APNs answered ExpiredProviderToken to a certificate connection",
                    )
                    .with_reason("ExpiredProviderToken"));
                };
                tracing::debug!(credential = %route.credential, "provider token expired; re-signing once");
                let token = signer.replace(old)?;
                // Rendered again, identically (same instant, same apns-id): the first attempt
                // was refused, not accepted.
                let again = request::render(push, base, &route.render, now, id)?;
                let reply =
                    Self::exchange(http, url, again.headers, again.body, Some(&token)).await?;
                match self.classify(&reply) {
                    Verdict::RefreshToken => {
                        return Err(PushError::misconfigured(
                            "APNs refused a freshly signed provider token as expired",
                        )
                        .with_reason("ExpiredProviderToken"))
                    }
                    other => other,
                }
            }
            other => other,
        };
        match verdict {
            Verdict::Accepted(mut accepted) => {
                accepted.provider_message_id.get_or_insert(apns_id);
                Ok(accepted)
            }
            Verdict::Failed(error) => Err(error),
            Verdict::RefreshToken => Err(PushError::misconfigured(
                "APNs refused the provider token as expired",
            )),
        }
    }
}
