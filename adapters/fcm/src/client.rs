//! The channel: routes a push to its app's Firebase project, renders it, sends it through the
//! project's flow control, and classifies the answer.

use std::collections::HashMap;
use std::fmt;
use std::sync::{Arc, OnceLock};
use std::task::{Context, Poll};
use std::time::Duration;

use async_trait::async_trait;
use bytes::Bytes;
use tidings::{
    Accepted, AppId, ChannelCapabilities, Clock, Platform, Push, PushChannel, PushError,
    ValidationError,
};
use tower::buffer::Buffer;
use tower::limit::{ConcurrencyLimitLayer, RateLimitLayer};
use tower::util::BoxService;
use tower::{BoxError, Service, ServiceBuilder, ServiceExt};

use crate::auth::{transport_error, AccessToken, TokenSource};
use crate::config::{FcmChannelBuilder, FcmConfig};
use crate::request::{self, RenderOptions, MAX_PAYLOAD_BYTES};
use crate::response::{self, Verdict};

/// What one HTTP exchange returned.
#[derive(Debug)]
struct Reply {
    status: u16,
    retry_after: Option<String>,
    body: Bytes,
}

type ReplyFuture = futures_core_boxed::BoxFuture<Result<Reply, BoxError>>;

mod futures_core_boxed {
    use std::future::Future;
    use std::pin::Pin;

    pub(super) type BoxFuture<T> = Pin<Box<dyn Future<Output = T> + Send + 'static>>;
}

/// One HTTP exchange, as a tower service (the innermost layer of a project's flow control).
#[derive(Clone)]
struct HttpExchange {
    http: reqwest::Client,
}

impl Service<reqwest::Request> for HttpExchange {
    type Response = Reply;
    type Error = PushError;
    type Future = futures_core_boxed::BoxFuture<Result<Reply, PushError>>;

    fn poll_ready(&mut self, _cx: &mut Context<'_>) -> Poll<Result<(), PushError>> {
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, request: reqwest::Request) -> Self::Future {
        let http = self.http.clone();
        Box::pin(async move {
            let response = http
                .execute(request)
                .await
                .map_err(|e| transport_error("FCM request", e))?;
            let status = response.status().as_u16();
            let retry_after = response
                .headers()
                .get(http::header::RETRY_AFTER)
                .and_then(|v| v.to_str().ok())
                .map(str::to_owned);
            let body = response
                .bytes()
                .await
                .map_err(|e| transport_error("FCM response", e))?;
            Ok(Reply {
                status,
                retry_after,
                body,
            })
        })
    }
}

/// A Firebase project: its flow control, shared by every app that sends through it.
struct Project {
    id: String,
    http: reqwest::Client,
    max_concurrent: usize,
    rate_limit_per_minute: Option<u64>,
    /// Built on first use: the buffer's worker task needs a Tokio runtime.
    service: OnceLock<Buffer<reqwest::Request, ReplyFuture>>,
}

impl fmt::Debug for Project {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Project")
            .field("id", &self.id)
            .field("max_concurrent", &self.max_concurrent)
            .field("rate_limit_per_minute", &self.rate_limit_per_minute)
            .finish()
    }
}

impl Project {
    /// `Buffer` → optional `RateLimit` → `ConcurrencyLimit` → HTTP. The buffer makes the rate
    /// limit (whose state is not shared between clones) one limit for every caller.
    fn service(&self) -> Buffer<reqwest::Request, ReplyFuture> {
        self.service
            .get_or_init(|| {
                let rate = self.rate_limit_per_minute.map(|n| {
                    // Per-second windows when the rate allows it: smoother than a burst of a
                    // minute's quota, and never more than `n` a minute.
                    if n >= 60 {
                        RateLimitLayer::new(n / 60, Duration::from_secs(1))
                    } else {
                        RateLimitLayer::new(n, Duration::from_secs(60))
                    }
                });
                let inner = ServiceBuilder::new()
                    .option_layer(rate)
                    .layer(ConcurrencyLimitLayer::new(self.max_concurrent))
                    .map_err(Into::<BoxError>::into)
                    .service(HttpExchange {
                        http: self.http.clone(),
                    });
                Buffer::new(BoxService::new(inner), self.max_concurrent)
            })
            .clone()
    }
}

/// How one app's pushes go out.
#[derive(Debug)]
struct Route {
    project: Arc<Project>,
    auth: Arc<TokenSource>,
    send_url: String,
    url: reqwest::Url,
    render: RenderOptions,
}

struct Inner {
    routes: HashMap<AppId, Route>,
    base_url: String,
    request_timeout: Duration,
}

/// The FCM HTTP v1 [`PushChannel`]. Cheap to clone; clones share connections, access tokens
/// and flow control. Build it with [`FcmChannel::builder`] or [`FcmChannel::from_config`].
#[derive(Clone)]
pub struct FcmChannel {
    inner: Arc<Inner>,
}

impl fmt::Debug for FcmChannel {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut apps: Vec<_> = self.inner.routes.iter().collect();
        apps.sort_by(|a, b| a.0.cmp(b.0));
        let apps: Vec<_> = apps
            .into_iter()
            .map(|(app, r)| (app.as_str(), r.project.id.as_str()))
            .collect();
        f.debug_struct("FcmChannel")
            .field("base_url", &self.inner.base_url)
            .field("apps", &apps)
            .field("request_timeout", &self.inner.request_timeout)
            .finish_non_exhaustive()
    }
}

impl FcmChannel {
    /// A builder.
    pub fn builder() -> FcmChannelBuilder {
        FcmChannelBuilder::default()
    }

    /// A channel from a (deserialized) configuration, validated, with the system clock.
    pub fn from_config(config: FcmConfig) -> Result<FcmChannel, ValidationError> {
        FcmChannelBuilder::from_config(config).build()
    }

    pub(crate) fn from_parts(
        config: FcmConfig,
        clock: Arc<dyn Clock>,
    ) -> Result<FcmChannel, ValidationError> {
        let mut http = reqwest::Client::builder()
            .tcp_nodelay(true)
            .timeout(config.request_timeout)
            .connect_timeout(config.request_timeout.min(Duration::from_secs(10)))
            .redirect(reqwest::redirect::Policy::none())
            .pool_idle_timeout(Duration::from_secs(90));
        if config.http2_prior_knowledge {
            http = http.http2_prior_knowledge();
        }
        let http = http.build().map_err(|e| {
            ValidationError::new("http", format!("cannot build the HTTP client: {e}"))
        })?;

        let mut projects: HashMap<String, Arc<Project>> = HashMap::new();
        let mut sources: HashMap<(String, String), Arc<TokenSource>> = HashMap::new();
        let mut routes = HashMap::new();
        for (i, app) in config.apps.iter().enumerate() {
            let key = &app.service_account;
            let project = projects
                .entry(key.project_id.clone())
                .or_insert_with(|| {
                    Arc::new(Project {
                        id: key.project_id.clone(),
                        http: http.clone(),
                        max_concurrent: config.max_concurrent_per_project,
                        rate_limit_per_minute: config.rate_limit_per_minute,
                        service: OnceLock::new(),
                    })
                })
                .clone();
            let token_uri = config.token_uri.as_deref().unwrap_or(&key.token_uri);
            let source_key = (key.client_email.clone(), token_uri.to_owned());
            let auth = match sources.get(&source_key) {
                Some(s) => Arc::clone(s),
                None => {
                    let s = Arc::new(
                        TokenSource::new(key, token_uri, http.clone(), Arc::clone(&clock))
                            .map_err(|e| e.within(&format!("apps[{i}]")))?,
                    );
                    sources.insert(source_key, Arc::clone(&s));
                    s
                }
            };
            let send_url = request::send_url(&config.base_url, &key.project_id);
            let url = reqwest::Url::parse(&send_url)
                .map_err(|e| ValidationError::new("base_url", format!("is not a URL ({e})")))?;
            routes.insert(
                app.app.clone(),
                Route {
                    project,
                    auth,
                    send_url,
                    url,
                    render: RenderOptions {
                        android_channel_id: app.android_channel_id.clone(),
                        extra_data: app.data.clone(),
                    },
                },
            );
        }
        Ok(FcmChannel {
            inner: Arc::new(Inner {
                routes,
                base_url: config.base_url,
                request_timeout: config.request_timeout,
            }),
        })
    }

    /// The Firebase project the pushes of `app` go to, if the app is configured.
    pub fn project_of(&self, app: &AppId) -> Option<&str> {
        self.inner.routes.get(app).map(|r| r.project.id.as_str())
    }

    /// One exchange through the project's flow control. Returns a `'static` boxed future so
    /// the tower types stay out of `send`'s future (whose `Send` proof they would confuse).
    fn exchange(
        route: &Route,
        parts: &http::request::Parts,
        body: Bytes,
        token: &AccessToken,
    ) -> futures_core_boxed::BoxFuture<Result<Reply, PushError>> {
        let mut request = reqwest::Request::new(parts.method.clone(), route.url.clone());
        *request.headers_mut() = parts.headers.clone();
        request
            .headers_mut()
            .insert(http::header::AUTHORIZATION, token.header.clone());
        *request.body_mut() = Some(body.into());
        // Boxed outside an async block: proving `Send` for the tower futures inside one trips a
        // compiler limitation (higher-ranked lifetimes).
        let sent: ReplyFuture = Box::pin(route.project.service().oneshot(request));
        let project = Arc::clone(&route.project);
        Box::pin(async move { sent.await.map_err(|e| flow_error(&project.id, e)) })
    }
}

/// Errors out of a project's flow control: the exchange's own [`PushError`], or a failure of
/// the buffer itself.
fn flow_error(project: &str, error: BoxError) -> PushError {
    match error.downcast::<PushError>() {
        Ok(push_error) => *push_error,
        Err(other) => {
            PushError::unavailable(format!("the flow control of project {project} failed"))
                .with_source(other)
        }
    }
}

#[async_trait]
impl PushChannel for FcmChannel {
    fn platform(&self) -> Platform {
        Platform::Fcm
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
            PushError::misconfigured(format!("no FCM service account for app {}", push.app))
        })?;
        let (parts, body) = request::render(push, &route.send_url, &route.render)?.into_parts();
        let token = route.auth.token().await?;
        let reply = Self::exchange(route, &parts, body.clone(), &token).await?;
        match response::classify(reply.status, reply.retry_after.as_deref(), &reply.body) {
            Verdict::Accepted(accepted) => Ok(accepted),
            Verdict::Failed(error) => Err(error),
            Verdict::RefreshToken => {
                tracing::debug!(project = %route.project.id, "access token refused; refreshing once");
                let token = route.auth.replace(&token).await?;
                let reply = Self::exchange(route, &parts, body, &token).await?;
                match response::classify(reply.status, reply.retry_after.as_deref(), &reply.body) {
                    Verdict::Accepted(accepted) => Ok(accepted),
                    Verdict::Failed(error) => Err(error),
                    Verdict::RefreshToken => Err(PushError::misconfigured(format!(
                        "FCM refused a freshly issued access token for project {}",
                        route.project.id
                    ))
                    .with_reason("UNAUTHENTICATED")),
                }
            }
        }
    }
}
