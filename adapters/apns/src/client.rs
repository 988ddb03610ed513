//! The channel: routes a push to its app's credentials and the endpoint's environment, renders
//! it, sends it over a long-lived HTTP/2 connection, and classifies the answer.

use std::collections::HashMap;
use std::fmt;
use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use http::uri::PathAndQuery;
use tidings::{
    Accepted, ApnsEnvironment, AppId, ChannelCapabilities, Clock, Platform, Push, PushChannel,
    PushError, ValidationError,
};

use crate::auth::{ProviderToken, TokenSigner};
use crate::config::{ApnsChannelBuilder, ApnsConfig, ApnsCredentials};
use crate::request::{self, Message, RenderOptions, TopicHeaders, MAX_PAYLOAD_BYTES};
use crate::response::{self, Answer, ClassifyOptions, Verdict};
use crate::transport::{Failure, Origin, Proxies, Reply, TlsBase, Transport};

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
    /// `apns-topic` per push type, ready.
    topics: TopicHeaders,
    auth: Auth,
    /// One HTTP/2 connection per environment, shared with every app using the same
    /// credential.
    production: Transport,
    sandbox: Transport,
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
        // One verifier (trust roots) per channel, one TLS client configuration and one
        // connection per environment per credential; one signer per key.
        let tls = TlsBase::new(config.trusted_ca_pem.as_deref())?;
        let proxies = Proxies::from_env();
        let origin = |url: &str, field: &'static str| {
            Origin::parse(url, &proxies)
                .map(Arc::new)
                .map_err(|reason| ValidationError::new(field, reason))
        };
        let production_origin = origin(&config.production_url, "production_url")?;
        let sandbox_origin = origin(&config.sandbox_url, "sandbox_url")?;
        let mut transports: HashMap<String, (Transport, Transport)> = HashMap::new();
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
            let (production, sandbox) = match transports.get(&credential) {
                Some(pair) => pair.clone(),
                None => {
                    let identity = match &app.credentials {
                        ApnsCredentials::Certificate { identity_pem } => {
                            Some(identity_pem.as_str())
                        }
                        ApnsCredentials::Token { .. } => None,
                    };
                    let client = tls.client_config(identity).map_err(|e| e.within(&at))?;
                    let pair = (
                        Transport::new(
                            Arc::clone(&production_origin),
                            Arc::clone(&client),
                            config.request_timeout,
                        ),
                        Transport::new(Arc::clone(&sandbox_origin), client, config.request_timeout),
                    );
                    transports.insert(credential.clone(), pair.clone());
                    pair
                }
            };
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
            let render = RenderOptions {
                topic: app.topic.clone(),
                sound: app.sound.clone(),
            };
            let topics = TopicHeaders::new(&render.topic).map_err(|e| e.within(&at))?;
            routes.insert(
                app.app.clone(),
                Route {
                    render,
                    topics,
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

    /// Sends `message` with the provider token, if any; resends it once, rendered again by
    /// `again`, if the server refused the stream unprocessed (`REFUSED_STREAM`, or above a
    /// GOAWAY's last stream id). The message is borrowed (and taken when sent) so that it is
    /// held once in the future of a push.
    async fn deliver(
        transport: &Transport,
        path: &PathAndQuery,
        message: &mut Message,
        token: Option<&ProviderToken>,
        again: impl FnOnce() -> Result<Message, PushError>,
    ) -> Result<Reply, PushError> {
        if let Some(token) = token {
            message
                .headers
                .insert(http::header::AUTHORIZATION, token.header.clone());
        }
        // (Scoped, and not `match …await {}`: the first attempt's future and result would stay
        // in this future's state through the resend.)
        {
            let first = transport
                .exchange(path, &mut message.headers, &mut message.body)
                .await;
            match first {
                Ok(reply) => return Ok(reply),
                Err(Failure::Failed(e)) => return Err(e),
                Err(Failure::Refused(e)) => {
                    tracing::debug!(error = %e, "APNs refused the stream unprocessed; resending once");
                }
            }
        }
        *message = again()?;
        if let Some(token) = token {
            message
                .headers
                .insert(http::header::AUTHORIZATION, token.header.clone());
        }
        transport
            .exchange(path, &mut message.headers, &mut message.body)
            .await
            .map_err(Failure::into_error)
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
        let (device, environment) = request::device_token(push)?;
        let transport = match environment {
            ApnsEnvironment::Production => &route.production,
            ApnsEnvironment::Sandbox => &route.sandbox,
        };
        let now = self.inner.clock.now();
        let id = uuid::Uuid::new_v4();
        let render = || request::render_message(push, &route.render, Some(&route.topics), now, id);
        let mut message = render()?;
        let path = transport.device_path(device)?;
        let token = match &route.auth {
            Auth::Token(signer) => Some(signer.token()?),
            Auth::Certificate => None,
        };
        let verdict = {
            let reply =
                Self::deliver(transport, &path, &mut message, token.as_deref(), render).await?;
            self.classify(&reply)
        };
        let verdict = match verdict {
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
                // was refused, not accepted. (Boxed: rare, and kept out of every push's future.)
                message = render()?;
                let reply = Box::pin(Self::deliver(
                    transport,
                    &path,
                    &mut message,
                    Some(&token),
                    render,
                ))
                .await?;
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
                accepted
                    .provider_message_id
                    .get_or_insert_with(|| id.hyphenated().to_string());
                Ok(accepted)
            }
            Verdict::Failed(error) => Err(error),
            Verdict::RefreshToken => Err(PushError::misconfigured(
                "APNs refused the provider token as expired",
            )),
        }
    }
}
