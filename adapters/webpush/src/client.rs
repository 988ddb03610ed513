//! The I/O: one shared reqwest client over rustls (aws-lc-rs), HTTP/2 when the push service
//! offers it through ALPN and HTTP/1.1 keep-alive otherwise, connections pooled per origin,
//! `TCP_NODELAY`, a per-request timeout, no redirects, no proxies, the guarded DNS resolver and
//! capped response reads.

use std::error::Error as StdError;
use std::time::SystemTime;

use http::Request;
use tidings::{Accepted, PushError};

use crate::config::WebPushConfig;
use crate::guard::{BlockedAddress, GuardedResolver, REFUSED_REASON};
use crate::response;

/// The HTTP client.
#[derive(Clone, Debug)]
pub struct Client {
    http: reqwest::Client,
    max_response_bytes: usize,
}

impl Client {
    /// A client for `config`.
    pub fn new(config: &WebPushConfig) -> Result<Self, reqwest::Error> {
        let http = reqwest::Client::builder()
            .user_agent(concat!("tidings-webpush/", env!("CARGO_PKG_VERSION")))
            .redirect(reqwest::redirect::Policy::none())
            .no_proxy()
            .https_only(!config.loopback_for_tests)
            .dns_resolver(GuardedResolver {
                allow_loopback: config.loopback_for_tests,
            })
            .tcp_nodelay(true)
            .timeout(config.timeout)
            .connect_timeout(config.connect_timeout)
            .pool_idle_timeout(config.pool_idle_timeout)
            .http2_adaptive_window(true)
            .build()?;
        Ok(Client {
            http,
            max_response_bytes: config.max_response_bytes,
        })
    }

    /// Sends one request and classifies the answer.
    pub async fn send(&self, request: Request<Vec<u8>>) -> Result<Accepted, PushError> {
        let request = reqwest::Request::try_from(request).map_err(|e| {
            PushError::rejected("the endpoint is not a valid request URI").with_source(e)
        })?;
        let mut response = self.http.execute(request).await.map_err(transport_error)?;
        let status = response.status();
        let headers = std::mem::take(response.headers_mut());
        let body = collect_capped(&mut response, self.max_response_bytes)
            .await
            .map_err(transport_error)?;
        response::classify(status, &headers, &body, SystemTime::now())
    }
}

/// Reads at most `cap` bytes of a response body; the rest is never read.
async fn collect_capped(
    response: &mut reqwest::Response,
    cap: usize,
) -> Result<Vec<u8>, reqwest::Error> {
    let mut body = Vec::new();
    while body.len() < cap {
        match response.chunk().await? {
            Some(chunk) => {
                let room = cap - body.len();
                body.extend_from_slice(&chunk[..chunk.len().min(room)]);
            }
            None => break,
        }
    }
    Ok(body)
}

/// Maps a transport failure: a refused address is a rejected endpoint (never retried), a timeout
/// is retryable, anything else (connection refused, reset, TLS, DNS failure) is the push service
/// being unavailable.
fn transport_error(e: reqwest::Error) -> PushError {
    // Endpoint URLs are bearer capabilities: keep them out of messages and sources.
    let e = e.without_url();
    if blocked(&e) {
        return PushError::rejected("endpoint refused: its host resolves to a non-public address")
            .with_reason(REFUSED_REASON)
            .with_source(e);
    }
    if e.is_timeout() {
        return PushError::timeout("the push service did not answer in time").with_source(e);
    }
    PushError::unavailable(format!(
        "could not reach the push service: {}",
        describe(&e)
    ))
    .with_source(e)
}

fn blocked(e: &reqwest::Error) -> bool {
    let mut source: Option<&(dyn StdError + 'static)> = e.source();
    while let Some(s) = source {
        if s.is::<BlockedAddress>() {
            return true;
        }
        source = s.source();
    }
    false
}

/// The error chain without URLs (endpoint paths are secrets).
fn describe(e: &reqwest::Error) -> String {
    let mut parts = Vec::new();
    let mut source: Option<&(dyn StdError + 'static)> = e.source();
    while let Some(s) = source {
        parts.push(s.to_string());
        source = s.source();
    }
    if parts.is_empty() {
        "transport error".to_owned()
    } else {
        parts.join(": ")
    }
}
