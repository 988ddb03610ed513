//! The transport: HTTP/2 (the `h2` crate) over TLS (rustls with aws-lc-rs, through
//! `tokio-rustls`), one long-lived connection per (credential, environment).
//!
//! - **Connect** lazily, on the first request: TCP (TCP_NODELAY; every address of the host,
//!   the other address family 300 ms after the first as hyper's connector does; through an
//!   HTTP CONNECT tunnel when `HTTPS_PROXY`/`ALL_PROXY` name an `http://` proxy and `NO_PROXY`
//!   does not exclude the host, as reqwest did), TLS with ALPN `h2` (the platform's trust roots
//!   plus the configured extra CA, and the client identity with certificate auth), then the
//!   HTTP/2 handshake; all within the connect timeout. The connection's future runs in a task
//!   of its own.
//! - **Share** the connection among concurrent requests: each takes a clone of the
//!   [`SendRequest`] handle, and h2 queues streams beyond the server's
//!   `SETTINGS_MAX_CONCURRENT_STREAMS` (one stream until the server's settings arrive, as APNs
//!   allows one stream until it has seen a valid provider token).
//! - **Reconnect** when the connection has died or received GOAWAY: the next request dials a
//!   new one, one dial at a time (concurrent requests wait for it, and share its failure).
//! - **Fail** requests in flight on a dying connection as unavailable (retryable), except those
//!   the server refused unprocessed (`REFUSED_STREAM`, or above the last stream id of a
//!   GOAWAY), which [`Failure::Refused`] tells the caller it may resend at once.
//! - **Keep alive**: an HTTP/2 PING after about an hour without requests; no PONG within 20 s
//!   closes the connection (the next request opens another).
//! - **Stop**: dropping the last clone of a [`Transport`] ends its connection tasks.
//!
//! Error messages never hold the request path (it holds the device token).

use std::fmt;
use std::io;
use std::net::{IpAddr, SocketAddr};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use bytes::{Bytes, BytesMut};
use h2::client::{Connection, ResponseFuture, SendRequest};
use h2::{Ping, Reason, RecvStream};
use http::header::{HeaderMap, HeaderName, CONTENT_LENGTH};
use http::uri::{Authority, PathAndQuery, Scheme};
use http::{HeaderValue, Method, Request, Uri};
use rustls_pki_types::pem::{self, PemObject, SectionKind};
use rustls_pki_types::{CertificateDer, PrivateKeyDer, ServerName};
use tidings::{PushError, ValidationError};
use tokio::io::{AsyncRead, AsyncReadExt as _, AsyncWrite, AsyncWriteExt as _};
use tokio::net::TcpStream;
use tokio::sync::watch;
use tokio::time::Instant;
use tokio_rustls::rustls::{self, ClientConfig};
use tokio_rustls::TlsConnector;

/// Longest wait for a TCP + TLS + HTTP/2 connection (the request timeout if shorter).
pub(crate) const MAX_CONNECT_TIMEOUT: Duration = Duration::from_secs(10);
/// Silence after which an HTTP/2 PING checks the connection.
const KEEPALIVE_IDLE: Duration = Duration::from_secs(3600);
/// How often the connection task checks for silence (12 checks make the idle hour).
const KEEPALIVE_CHECK: Duration = Duration::from_secs(300);
/// Checks without a request before the PING.
const KEEPALIVE_IDLE_CHECKS: u32 = (KEEPALIVE_IDLE.as_secs() / KEEPALIVE_CHECK.as_secs()) as u32;
/// How long to wait for the PONG before closing the connection.
const PONG_TIMEOUT: Duration = Duration::from_secs(20);
/// How long the first address family has before the other one is tried too.
const HAPPY_EYEBALLS_DELAY: Duration = Duration::from_millis(300);
/// Longest proxy answer to a CONNECT.
const MAX_PROXY_RESPONSE: usize = 8192;

const APNS_ID: HeaderName = HeaderName::from_static("apns-id");
const RETRY_AFTER: HeaderName = HeaderName::from_static("retry-after");

/// What one exchange returned.
#[derive(Debug)]
pub(crate) struct Reply {
    pub(crate) status: u16,
    pub(crate) apns_id: Option<String>,
    pub(crate) retry_after: Option<String>,
    pub(crate) body: Bytes,
}

/// Why an exchange failed.
#[derive(Debug)]
pub(crate) enum Failure {
    /// The server refused the stream without processing it (`REFUSED_STREAM`, GOAWAY below
    /// it, or the connection was gone before the request left): resending is safe.
    Refused(PushError),
    /// Anything else: the request may or may not have been processed.
    Failed(PushError),
}

impl Failure {
    pub(crate) fn into_error(self) -> PushError {
        match self {
            Failure::Refused(e) | Failure::Failed(e) => e,
        }
    }
}

// ===== TLS =====

/// The certificates of a PEM bundle (at least one), as trust anchors to add.
pub(crate) fn parse_certificates(pem: &str) -> Option<Vec<CertificateDer<'static>>> {
    let certs = CertificateDer::pem_slice_iter(pem.as_bytes())
        .collect::<Result<Vec<_>, _>>()
        .ok()?;
    (!certs.is_empty()).then_some(certs)
}

/// A client identity from one PEM document: the certificate chain and the (last) private key
/// (PKCS#8, PKCS#1 or SEC1); `None` without a key, without a certificate, or with any other
/// section.
pub(crate) fn parse_identity(
    pem_text: &str,
) -> Option<(Vec<CertificateDer<'static>>, PrivateKeyDer<'static>)> {
    let mut reader = std::io::Cursor::new(pem_text.as_bytes());
    let mut certs = Vec::new();
    let mut key = None;
    while let Some((kind, der)) = pem::from_buf(&mut reader).ok()? {
        match kind {
            SectionKind::Certificate => certs.push(CertificateDer::from(der)),
            SectionKind::PrivateKey => key = Some(PrivateKeyDer::Pkcs8(der.into())),
            SectionKind::RsaPrivateKey => key = Some(PrivateKeyDer::Pkcs1(der.into())),
            SectionKind::EcPrivateKey => key = Some(PrivateKeyDer::Sec1(der.into())),
            _ => return None,
        }
    }
    match key {
        Some(key) if !certs.is_empty() => Some((certs, key)),
        _ => None,
    }
}

/// What every connection of a channel verifies servers with: the platform's trust roots
/// (`rustls-platform-verifier`, as reqwest's `rustls` feature uses) plus `extra_ca_pem`, with
/// the process's default rustls crypto provider, else aws-lc-rs.
#[derive(Clone)]
pub(crate) struct TlsBase {
    provider: Arc<rustls::crypto::CryptoProvider>,
    verifier: Arc<rustls_platform_verifier::Verifier>,
}

impl fmt::Debug for TlsBase {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("TlsBase").finish_non_exhaustive()
    }
}

impl TlsBase {
    pub(crate) fn new(extra_ca_pem: Option<&str>) -> Result<TlsBase, ValidationError> {
        let provider = rustls::crypto::CryptoProvider::get_default()
            .cloned()
            .unwrap_or_else(|| Arc::new(rustls::crypto::aws_lc_rs::default_provider()));
        let verifier = match extra_ca_pem {
            None => {
                rustls_platform_verifier::Verifier::new(Arc::clone(&provider)).map_err(|e| {
                    ValidationError::new(
                        "http",
                        format!("cannot load the trusted certificates: {e}"),
                    )
                })?
            }
            Some(pem) => {
                let certs = parse_certificates(pem).ok_or_else(|| {
                    ValidationError::new("trusted_ca_pem", "must be a certificate in PEM")
                })?;
                rustls_platform_verifier::Verifier::new_with_extra_roots(
                    certs,
                    Arc::clone(&provider),
                )
                .map_err(|e| {
                    ValidationError::new(
                        "trusted_ca_pem",
                        format!("cannot be trusted as a CA certificate: {e}"),
                    )
                })?
            }
        };
        Ok(TlsBase {
            provider,
            verifier: Arc::new(verifier),
        })
    }

    /// The client configuration of one credential: ALPN `h2`, TLS 1.2 and 1.3, SNI, and the
    /// client identity (`identity_pem`: key and certificate) for certificate auth.
    pub(crate) fn client_config(
        &self,
        identity_pem: Option<&str>,
    ) -> Result<Arc<ClientConfig>, ValidationError> {
        let builder = ClientConfig::builder_with_provider(Arc::clone(&self.provider))
            .with_protocol_versions(rustls::ALL_VERSIONS)
            .map_err(|e| ValidationError::new("http", format!("cannot set up TLS: {e}")))?
            .dangerous()
            .with_custom_certificate_verifier(self.verifier.clone());
        let mut config = match identity_pem {
            None => builder.with_no_client_auth(),
            Some(pem) => {
                let bad = |reason: String| ValidationError::new("credentials.identity_pem", reason);
                let (certs, key) = parse_identity(pem).ok_or_else(|| {
                    bad("must hold a private key and a certificate in PEM".to_owned())
                })?;
                builder
                    .with_client_auth_cert(certs, key)
                    .map_err(|e| bad(format!("is not a usable client identity: {e}")))?
            }
        };
        config.alpn_protocols = vec![b"h2".to_vec()];
        Ok(Arc::new(config))
    }
}

// ===== Origin =====

#[derive(Debug)]
enum Host {
    Name(String),
    Ip(IpAddr),
}

impl Host {
    fn from_url(url: &url::Url) -> Option<Host> {
        match url.host()? {
            url::Host::Domain(name) => Some(Host::Name(name.to_owned())),
            url::Host::Ipv4(ip) => Some(Host::Ip(ip.into())),
            url::Host::Ipv6(ip) => Some(Host::Ip(ip.into())),
        }
    }
}

/// The environment's proxies, read once per channel from `HTTPS_PROXY`, `ALL_PROXY` and
/// `NO_PROXY` (and their lower-case forms) by the same rules reqwest applied.
pub(crate) struct Proxies(hyper_util::client::proxy::matcher::Matcher);

impl Proxies {
    pub(crate) fn from_env() -> Proxies {
        Proxies(hyper_util::client::proxy::matcher::Matcher::from_system())
    }
}

impl fmt::Debug for Proxies {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // The matcher's own Debug would show proxy credentials.
        f.debug_struct("Proxies").finish_non_exhaustive()
    }
}

/// An HTTP proxy to tunnel through (CONNECT).
struct Proxy {
    host: Host,
    port: u16,
    /// `Proxy-Authorization`, from the proxy URL's user and password.
    authorization: Option<HeaderValue>,
    /// `scheme://host:port`, without credentials, for messages.
    shown: String,
    /// Set for a proxy scheme this transport cannot tunnel through (`https`, `socks5`).
    unsupported: bool,
}

impl fmt::Debug for Proxy {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Proxy")
            .field("proxy", &self.shown)
            .finish_non_exhaustive()
    }
}

impl Proxy {
    fn of(proxies: &Proxies, authority: &Authority) -> Option<Proxy> {
        let target = Uri::try_from(format!("https://{authority}/")).ok()?;
        let intercept = proxies.0.intercept(&target)?;
        let uri = intercept.uri();
        let scheme = uri.scheme_str().unwrap_or("http").to_ascii_lowercase();
        let port = uri
            .port_u16()
            .unwrap_or(if scheme == "https" { 443 } else { 80 });
        let host = uri.host().unwrap_or_default();
        let shown = format!("{scheme}://{host}:{port}");
        let host = host.trim_start_matches('[').trim_end_matches(']');
        let host = match host.parse::<IpAddr>() {
            Ok(ip) => Host::Ip(ip),
            Err(_) => Host::Name(host.to_owned()),
        };
        Some(Proxy {
            host,
            port,
            authorization: intercept.basic_auth().cloned(),
            unsupported: scheme != "http",
            shown,
        })
    }
}

/// Where an environment's requests go, parsed once from its base URL.
#[derive(Debug)]
pub(crate) struct Origin {
    base_url: String,
    host: Host,
    port: u16,
    server_name: ServerName<'static>,
    authority: Authority,
    /// The base URL's path without its trailing `/` (empty for APNs).
    path_prefix: String,
    proxy: Option<Proxy>,
}

impl Origin {
    /// Parses an `https` base URL (validated by the configuration) and finds its proxy.
    pub(crate) fn parse(base_url: &str, proxies: &Proxies) -> Result<Origin, String> {
        let url = url::Url::parse(base_url).map_err(|e| format!("is not a URL ({e})"))?;
        let host = Host::from_url(&url);
        let (Some(host), Some(port), "https") = (host, url.port_or_known_default(), url.scheme())
        else {
            return Err("must be an https URL with a host".to_owned());
        };
        let server_name = match &host {
            Host::Name(name) => ServerName::try_from(name.clone())
                .map_err(|e| format!("has an invalid host name ({e})"))?,
            Host::Ip(ip) => ServerName::IpAddress((*ip).into()),
        };
        let authority = &url[url::Position::BeforeHost..url::Position::AfterPort];
        let authority = Authority::try_from(authority)
            .map_err(|e| format!("has an invalid authority ({e})"))?;
        let proxy = Proxy::of(proxies, &authority);
        if let Some(proxy) = &proxy {
            tracing::debug!(%authority, proxy = %proxy.shown, "APNs connections go through a proxy");
        }
        Ok(Origin {
            base_url: base_url.to_owned(),
            host,
            port,
            server_name,
            authority,
            path_prefix: url.path().trim_end_matches('/').to_owned(),
            proxy,
        })
    }

    /// `host:port` for a CONNECT request (IPv6 addresses in brackets).
    fn connect_target(&self) -> String {
        match &self.host {
            Host::Name(name) => format!("{name}:{}", self.port),
            Host::Ip(ip) => SocketAddr::new(*ip, self.port).to_string(),
        }
    }

    /// The request path `{prefix}/3/device/{token}`, built directly for the hex tokens APNs
    /// issues; other tokens are escaped as the URL parser escapes them.
    fn device_path(&self, token: &str) -> Result<PathAndQuery, PushError> {
        let plain = token
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'.' | b'_' | b'~'));
        let path = if plain {
            let mut path = String::with_capacity(self.path_prefix.len() + 10 + token.len());
            path.push_str(&self.path_prefix);
            path.push_str("/3/device/");
            path.push_str(token);
            path
        } else {
            let url = url::Url::parse(&crate::request::device_url(&self.base_url, token)).map_err(
                |e| {
                    PushError::misconfigured("the APNs base URL does not make a URL").with_source(e)
                },
            )?;
            match url.query() {
                Some(query) => format!("{}?{query}", url.path()),
                None => url.path().to_owned(),
            }
        };
        PathAndQuery::from_maybe_shared(Bytes::from(path)).map_err(|e| {
            PushError::misconfigured("the APNs base URL does not make a URL").with_source(e)
        })
    }

    fn uri(&self, path: PathAndQuery) -> Result<Uri, PushError> {
        let mut parts = http::uri::Parts::default();
        parts.scheme = Some(Scheme::HTTPS);
        parts.authority = Some(self.authority.clone());
        parts.path_and_query = Some(path);
        Uri::from_parts(parts).map_err(|e| {
            PushError::misconfigured("the APNs base URL does not make a URI").with_source(e)
        })
    }
}

// ===== Transport =====

/// Locks a mutex, ignoring poisoning (the guarded state is valid at every point).
fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

/// One (credential, environment)'s connection. Cheap to clone; clones share it.
#[derive(Clone)]
pub(crate) struct Transport {
    shared: Arc<Shared>,
}

struct Shared {
    origin: Arc<Origin>,
    tls: TlsConnector,
    request_timeout: Duration,
    connect_timeout: Duration,
    /// The connection requests go out on, if one is open.
    current: Mutex<Option<Live>>,
    /// Held while dialing: one dial at a time.
    dial: tokio::sync::Mutex<Dial>,
    /// Dial attempts finished so far.
    dials: AtomicU64,
    /// Dropped with the last clone: every connection task then ends.
    stop: watch::Sender<()>,
}

struct Live {
    send: SendRequest<Bytes>,
    state: Arc<ConnState>,
    id: u64,
}

/// What a connection's task and its users share.
#[derive(Debug, Default)]
struct ConnState {
    /// The connection's task has ended.
    closed: AtomicBool,
    /// A request went out since the keepalive's last check.
    used: AtomicBool,
}

#[derive(Default)]
struct Dial {
    /// The last attempt's failure: requests that waited for it share it.
    failure: Option<DialFailure>,
    next_id: u64,
}

#[derive(Clone, Debug)]
struct DialFailure {
    timed_out: bool,
    message: String,
}

impl DialFailure {
    fn error(&self) -> PushError {
        if self.timed_out {
            PushError::timeout(self.message.clone())
        } else {
            PushError::unavailable(self.message.clone())
        }
    }
}

impl fmt::Debug for Transport {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let connected = lock(&self.shared.current)
            .as_ref()
            .is_some_and(|l| !l.state.closed.load(Ordering::Relaxed));
        f.debug_struct("Transport")
            .field("authority", &self.shared.origin.authority)
            .field("connected", &connected)
            .finish_non_exhaustive()
    }
}

/// Marks the connection closed however its task ends.
struct ClosedOnDrop(Arc<ConnState>);

impl Drop for ClosedOnDrop {
    fn drop(&mut self) {
        self.0.closed.store(true, Ordering::Release);
    }
}

/// The error a stream ended with: refused unprocessed (safe to resend), or failed.
fn stream_failure(what: &str, e: h2::Error) -> Failure {
    let refused = e.is_remote()
        && ((e.is_reset() && e.reason() == Some(Reason::REFUSED_STREAM)) || e.is_go_away());
    let error = PushError::unavailable(format!("{what} failed: {e}")).with_source(e);
    if refused {
        Failure::Refused(error)
    } else {
        Failure::Failed(error)
    }
}

impl Transport {
    pub(crate) fn new(
        origin: Arc<Origin>,
        tls: Arc<ClientConfig>,
        request_timeout: Duration,
    ) -> Transport {
        let (stop, _) = watch::channel(());
        Transport {
            shared: Arc::new(Shared {
                origin,
                tls: TlsConnector::from(tls),
                request_timeout,
                connect_timeout: request_timeout.min(MAX_CONNECT_TIMEOUT),
                current: Mutex::new(None),
                dial: tokio::sync::Mutex::new(Dial::default()),
                dials: AtomicU64::new(0),
                stop,
            }),
        }
    }

    /// The request path of a device token.
    pub(crate) fn device_path(&self, token: &str) -> Result<PathAndQuery, PushError> {
        self.shared.origin.device_path(token)
    }

    /// One `POST` of `body` to `path` with `headers`, within the request timeout. Headers and
    /// body are taken when the request goes out (they are borrowed so that the caller's future,
    /// boxed per push, holds them once).
    pub(crate) async fn exchange(
        &self,
        path: &PathAndQuery,
        headers: &mut HeaderMap,
        body: &mut Bytes,
    ) -> Result<Reply, Failure> {
        let result = tokio::time::timeout(
            self.shared.request_timeout,
            self.exchange_now(path, headers, body),
        )
        .await;
        result.unwrap_or_else(|_| {
            Err(Failure::Failed(PushError::timeout(
                "APNs request timed out",
            )))
        })
    }

    async fn exchange_now(
        &self,
        path: &PathAndQuery,
        headers: &mut HeaderMap,
        body: &mut Bytes,
    ) -> Result<Reply, Failure> {
        let response = self.start(path, headers, body).await?;
        let response = response
            .await
            .map_err(|e| stream_failure("APNs request", e))?;
        let (parts, mut recv) = response.into_parts();
        let header = |name: &HeaderName| {
            parts
                .headers
                .get(name)
                .and_then(|v| v.to_str().ok())
                .map(str::to_owned)
        };
        let status = parts.status.as_u16();
        let apns_id = header(&APNS_ID);
        let retry_after = header(&RETRY_AFTER);
        drop(parts);
        let body = if recv.is_end_stream() {
            Bytes::new()
        } else {
            read_body(&mut recv)
                .await
                .map_err(|e| stream_failure("APNs response", e))?
        };
        Ok(Reply {
            status,
            apns_id,
            retry_after,
            body,
        })
    }

    /// Sends the request on the current connection (dialing one if there is none, or if it
    /// turns out closed or going away: nothing was sent on it yet); returns the response's
    /// future.
    async fn start(
        &self,
        path: &PathAndQuery,
        headers: &mut HeaderMap,
        body: &mut Bytes,
    ) -> Result<ResponseFuture, Failure> {
        let shared = &*self.shared;
        // Dialing is rare and its future large: boxed, so that every request's future stays
        // small (it is moved into a box per push).
        let (send, id) = match shared.current() {
            Some(found) => found,
            None => Box::pin(shared.connection(None))
                .await
                .map_err(Failure::Failed)?,
        };
        let ready = send.ready().await;
        let mut send = match ready {
            Ok(send) => send,
            Err(e) => {
                tracing::debug!(error = %e, "APNs connection unusable; reconnecting");
                let (send, _) = Box::pin(shared.connection(Some(id)))
                    .await
                    .map_err(Failure::Failed)?;
                let ready = send.ready().await;
                ready.map_err(|e| {
                    Failure::Failed(
                        PushError::unavailable(format!("APNs connection failed: {e}"))
                            .with_source(e),
                    )
                })?
            }
        };
        let body = std::mem::take(body);
        let mut request = Request::new(());
        *request.method_mut() = Method::POST;
        *request.uri_mut() = shared.origin.uri(path.clone()).map_err(Failure::Failed)?;
        *request.headers_mut() = std::mem::take(headers);
        request
            .headers_mut()
            .insert(CONTENT_LENGTH, HeaderValue::from(body.len()));
        let (response, mut stream) = send.send_request(request, false).map_err(|e| {
            let refused = e.is_go_away() || e.is_io() || e.is_reset();
            let error = PushError::unavailable(format!("APNs request failed: {e}")).with_source(e);
            if refused {
                Failure::Refused(error)
            } else {
                Failure::Failed(error)
            }
        })?;
        if let Err(e) = stream.send_data(body, true) {
            return Err(stream_failure("APNs request", e));
        }
        Ok(response)
    }
}

/// The whole response body, releasing flow-control capacity as it arrives.
async fn read_body(recv: &mut RecvStream) -> Result<Bytes, h2::Error> {
    let mut first: Option<Bytes> = None;
    let mut more: Option<BytesMut> = None;
    while let Some(chunk) = recv.data().await {
        let chunk = chunk?;
        let _ = recv.flow_control().release_capacity(chunk.len());
        if let Some(buf) = more.as_mut() {
            buf.extend_from_slice(&chunk);
        } else if let Some(head) = first.take() {
            let mut buf = BytesMut::with_capacity(head.len() + chunk.len());
            buf.extend_from_slice(&head);
            buf.extend_from_slice(&chunk);
            more = Some(buf);
        } else {
            first = Some(chunk);
        }
    }
    Ok(match more {
        Some(buf) => buf.freeze(),
        None => first.unwrap_or_default(),
    })
}

impl Shared {
    /// The open connection's handle and id, if there is one.
    fn current(&self) -> Option<(SendRequest<Bytes>, u64)> {
        let current = lock(&self.current);
        let live = current.as_ref()?;
        if live.state.closed.load(Ordering::Acquire) {
            return None;
        }
        if !live.state.used.load(Ordering::Relaxed) {
            live.state.used.store(true, Ordering::Relaxed);
        }
        Some((live.send.clone(), live.id))
    }

    /// A usable connection: the current one unless it is closed or is `stale`, else a new one.
    /// One dial at a time; requests that waited for a dial that failed share its failure.
    async fn connection(&self, stale: Option<u64>) -> Result<(SendRequest<Bytes>, u64), PushError> {
        let seen = self.dials.load(Ordering::Acquire);
        let mut dial = self.dial.lock().await;
        {
            let mut current = lock(&self.current);
            if let Some(live) = current.as_ref() {
                if !live.state.closed.load(Ordering::Acquire) && Some(live.id) != stale {
                    return Ok((live.send.clone(), live.id));
                }
            }
            // Requests still in flight on the old connection keep it open until they end.
            *current = None;
        }
        if self.dials.load(Ordering::Acquire) != seen {
            if let Some(failure) = &dial.failure {
                return Err(failure.error());
            }
        }
        let result = tokio::time::timeout(self.connect_timeout, self.connect()).await;
        self.dials.fetch_add(1, Ordering::Release);
        let failure = match result {
            Ok(Ok(send)) => {
                dial.failure = None;
                dial.next_id += 1;
                let id = dial.next_id;
                let (send, state) = send;
                *lock(&self.current) = Some(Live {
                    send: send.clone(),
                    state,
                    id,
                });
                return Ok((send, id));
            }
            Ok(Err(failure)) => failure,
            Err(_) => DialFailure {
                timed_out: true,
                message: format!(
                    "APNs connection to {} timed out after {:?}",
                    self.origin.authority, self.connect_timeout
                ),
            },
        };
        tracing::debug!(authority = %self.origin.authority, error = %failure.message, "APNs connection failed");
        dial.failure = Some(failure.clone());
        Err(failure.error())
    }

    /// Dials: TCP, TLS, the HTTP/2 handshake; spawns the connection's task.
    async fn connect(&self) -> Result<(SendRequest<Bytes>, Arc<ConnState>), DialFailure> {
        let authority = &self.origin.authority;
        let fail = |what: &str, e: &dyn fmt::Display| DialFailure {
            timed_out: false,
            message: format!("APNs connection to {authority} failed: {what}: {e}"),
        };
        let runtime = tokio::runtime::Handle::try_current()
            .map_err(|e| fail("no Tokio runtime to run it", &e))?;
        let origin = &*self.origin;
        let tcp = match &origin.proxy {
            None => tcp_connect(&origin.host, origin.port, self.connect_timeout)
                .await
                .map_err(|e| fail("TCP", &e))?,
            Some(proxy) if proxy.unsupported => {
                return Err(fail(
                    "proxy",
                    &format!(
                        "{} is not an http:// proxy, the only kind this channel tunnels through \
                         (set NO_PROXY to reach APNs directly)",
                        proxy.shown
                    ),
                ))
            }
            Some(proxy) => {
                let what = format!("proxy {}", proxy.shown);
                let mut tcp = tcp_connect(&proxy.host, proxy.port, self.connect_timeout)
                    .await
                    .map_err(|e| fail(&what, &e))?;
                tunnel(
                    &mut tcp,
                    &origin.connect_target(),
                    proxy.authorization.as_ref(),
                )
                .await
                .map_err(|e| fail(&what, &e))?;
                tcp
            }
        };
        tcp.set_nodelay(true).map_err(|e| fail("TCP_NODELAY", &e))?;
        let tls = self
            .tls
            .connect(self.origin.server_name.clone(), tcp)
            .await
            .map_err(|e| fail("TLS", &e))?;
        if let Some(protocol) = tls.get_ref().1.alpn_protocol() {
            if protocol != b"h2" {
                let protocol = String::from_utf8_lossy(protocol).into_owned();
                return Err(fail(
                    "ALPN",
                    &format!("the server chose {protocol}, not h2"),
                ));
            }
        }
        let (send, connection) = h2::client::Builder::new()
            .enable_push(false)
            // APNs allows one stream until it has seen a valid provider token; its SETTINGS
            // raise the limit.
            .initial_max_send_streams(1)
            .handshake::<_, Bytes>(tls)
            .await
            .map_err(|e| fail("HTTP/2 handshake", &e))?;
        let state = Arc::new(ConnState::default());
        runtime.spawn(drive(connection, Arc::clone(&state), self.stop.subscribe()));
        tracing::debug!(%authority, "APNs connection open");
        Ok((send, state))
    }
}

/// TCP to `host:port`: every address of the host (an IP address: that one), those of the first
/// address's family in turn and, 300 ms later unless one connected, those of the other family
/// too (happy eyeballs, as hyper's connector does), each within an even share of `timeout`.
async fn tcp_connect(host: &Host, port: u16, timeout: Duration) -> io::Result<TcpStream> {
    let addresses: Vec<SocketAddr> = match host {
        Host::Ip(ip) => vec![SocketAddr::new(*ip, port)],
        Host::Name(name) => tokio::net::lookup_host((name.as_str(), port))
            .await?
            .collect(),
    };
    let Some(first) = addresses.first() else {
        return Err(io::Error::new(
            io::ErrorKind::NotFound,
            "the host has no address",
        ));
    };
    let each = u32::try_from(addresses.len())
        .ok()
        .and_then(|n| timeout.checked_div(n))
        .unwrap_or(timeout);
    let (preferred, fallback): (Vec<SocketAddr>, Vec<SocketAddr>) = addresses
        .iter()
        .partition(|a| a.is_ipv4() == first.is_ipv4());
    if fallback.is_empty() {
        return connect_each(&preferred, each).await;
    }
    let primary = connect_each(&preferred, each);
    tokio::pin!(primary);
    tokio::select! {
        result = &mut primary => return match result {
            Ok(tcp) => Ok(tcp),
            Err(_) => connect_each(&fallback, each).await,
        },
        () = tokio::time::sleep(HAPPY_EYEBALLS_DELAY) => {}
    }
    let secondary = connect_each(&fallback, each);
    tokio::pin!(secondary);
    tokio::select! {
        result = &mut primary => match result {
            Ok(tcp) => Ok(tcp),
            Err(_) => secondary.await,
        },
        result = &mut secondary => match result {
            Ok(tcp) => Ok(tcp),
            Err(_) => primary.await,
        },
    }
}

/// Tries `addresses` in turn, each within `each`.
async fn connect_each(addresses: &[SocketAddr], each: Duration) -> io::Result<TcpStream> {
    let mut last = None;
    for &address in addresses {
        match tokio::time::timeout(each, TcpStream::connect(address)).await {
            Ok(Ok(tcp)) => return Ok(tcp),
            Ok(Err(e)) => last = Some(e),
            Err(_) => {
                last = Some(io::Error::new(
                    io::ErrorKind::TimedOut,
                    format!("connecting to {address} timed out"),
                ))
            }
        }
    }
    Err(last.unwrap_or_else(|| io::Error::new(io::ErrorKind::NotFound, "no address to try")))
}

/// Opens an HTTP CONNECT tunnel to `target` (`host:port`) through the proxy `tcp` is connected
/// to.
async fn tunnel(
    tcp: &mut TcpStream,
    target: &str,
    authorization: Option<&HeaderValue>,
) -> io::Result<()> {
    let mut request = format!("CONNECT {target} HTTP/1.1\r\nHost: {target}\r\n").into_bytes();
    if let Some(authorization) = authorization {
        request.extend_from_slice(b"Proxy-Authorization: ");
        request.extend_from_slice(authorization.as_bytes());
        request.extend_from_slice(b"\r\n");
    }
    request.extend_from_slice(b"\r\n");
    tcp.write_all(&request).await?;
    let mut response = Vec::with_capacity(256);
    let mut chunk = [0u8; 512];
    loop {
        let n = tcp.read(&mut chunk).await?;
        if n == 0 {
            return Err(io::Error::new(
                io::ErrorKind::UnexpectedEof,
                "the proxy closed the connection before answering CONNECT",
            ));
        }
        response.extend_from_slice(&chunk[..n]);
        if response.windows(4).any(|w| w == b"\r\n\r\n") {
            break;
        }
        if response.len() > MAX_PROXY_RESPONSE {
            return Err(io::Error::new(
                io::ErrorKind::InvalidData,
                "the proxy's answer to CONNECT is too long",
            ));
        }
    }
    let status_line = response
        .split(|b| *b == b'\n')
        .next()
        .map(|l| String::from_utf8_lossy(l).trim().to_owned())
        .unwrap_or_default();
    match status_line.split_whitespace().nth(1) {
        Some("200") => Ok(()),
        Some("407") => Err(io::Error::new(
            io::ErrorKind::PermissionDenied,
            "the proxy requires authorization (407)",
        )),
        _ => Err(io::Error::new(
            io::ErrorKind::ConnectionRefused,
            format!("the proxy refused the tunnel: {status_line}"),
        )),
    }
}

/// Logs how a connection ended.
fn log_closed(result: Result<(), h2::Error>) {
    if let Err(e) = result {
        tracing::debug!(error = %e, "APNs connection closed");
    }
}

/// Drives one connection until it closes, every [`Transport`] clone is dropped, or a PING goes
/// unanswered; PINGs it after an hour without requests.
async fn drive<T>(
    mut connection: Connection<T, Bytes>,
    state: Arc<ConnState>,
    mut stop: watch::Receiver<()>,
) where
    T: AsyncRead + AsyncWrite + Unpin,
{
    let _closed = ClosedOnDrop(Arc::clone(&state));
    let mut pings = connection.ping_pong();
    let stop = stop.changed();
    tokio::pin!(stop);
    let check = tokio::time::sleep(KEEPALIVE_CHECK);
    tokio::pin!(check);
    let mut idle_checks = 0;
    loop {
        tokio::select! {
            biased;
            result = &mut connection => return log_closed(result),
            _ = &mut stop => return,
            () = &mut check => {
                check.as_mut().reset(Instant::now() + KEEPALIVE_CHECK);
                if state.used.swap(false, Ordering::Relaxed) {
                    idle_checks = 0;
                    continue;
                }
                idle_checks += 1;
                if idle_checks < KEEPALIVE_IDLE_CHECKS {
                    continue;
                }
                idle_checks = 0;
            }
        }
        // An hour without requests: PING, still driving the connection.
        let Some(pinger) = pings.as_mut() else {
            continue;
        };
        let pong = pinger.ping(Ping::opaque());
        tokio::pin!(pong);
        let deadline = tokio::time::sleep(PONG_TIMEOUT);
        tokio::pin!(deadline);
        tokio::select! {
            biased;
            result = &mut connection => return log_closed(result),
            _ = &mut stop => return,
            result = &mut pong => {
                if let Err(e) = result {
                    tracing::debug!(error = %e, "APNs keepalive PING failed; closing");
                    return;
                }
            }
            () = &mut deadline => {
                tracing::debug!("APNs keepalive PING unanswered; closing");
                return;
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use futures::future::join_all;
    use tidings::PushErrorKind;
    use tidings_testkit::apns::ApnsMock;

    use super::*;

    fn transport(base_url: &str, ca_pem: &str, timeout: Duration) -> Transport {
        let tls = TlsBase::new(Some(ca_pem)).unwrap();
        let origin = Origin::parse(base_url, &Proxies::from_env()).unwrap();
        Transport::new(Arc::new(origin), tls.client_config(None).unwrap(), timeout)
    }

    async fn post(t: &Transport) -> Result<Reply, Failure> {
        let path = t.device_path("abcd").unwrap();
        t.exchange(&path, &mut HeaderMap::new(), &mut Bytes::from_static(b"{}"))
            .await
    }

    #[test]
    fn paths_are_built_directly_and_odd_tokens_escaped_like_urls() {
        let proxies = Proxies::from_env();
        let origin = Origin::parse("https://api.push.apple.com", &proxies).unwrap();
        assert_eq!(origin.device_path("ab12").unwrap(), "/3/device/ab12");
        assert_eq!(origin.authority, "api.push.apple.com");
        assert_eq!(origin.port, 443);
        assert_eq!(origin.device_path("a b").unwrap(), "/3/device/a%20b");
        let origin = Origin::parse("https://127.0.0.1:8443/prefix/", &proxies).unwrap();
        assert_eq!(origin.device_path("ab12").unwrap(), "/prefix/3/device/ab12");
        assert_eq!(origin.authority, "127.0.0.1:8443");
        assert_eq!(origin.connect_target(), "127.0.0.1:8443");
        let origin = Origin::parse("https://[::1]:8443", &proxies).unwrap();
        assert_eq!(origin.authority, "[::1]:8443");
        assert_eq!(origin.connect_target(), "[::1]:8443");
        assert!(Origin::parse("http://api.push.apple.com", &proxies).is_err());
    }

    #[test]
    fn identities_need_a_key_and_a_certificate() {
        assert!(parse_identity("no").is_none());
        assert!(parse_certificates("no").is_none());
        let key = tidings_testkit::apns::ApnsSigningKey::generate("TEAM123456", "KEY1234567");
        assert!(parse_identity(&key.p8_pem()).is_none(), "a key alone");
    }

    #[tokio::test]
    async fn dropping_the_transport_ends_its_connection_task() {
        let mock = ApnsMock::start().await;
        let t = transport(&mock.base_url(), mock.ca_pem(), Duration::from_secs(5));
        let reply = post(&t).await.unwrap();
        assert_eq!(reply.status, 403, "no provider token");
        let state = {
            let current = lock(&t.shared.current);
            Arc::clone(&current.as_ref().unwrap().state)
        };
        assert!(!state.closed.load(Ordering::Acquire));

        drop(t);

        tokio::time::timeout(Duration::from_secs(5), async {
            while !state.closed.load(Ordering::Acquire) {
                tokio::time::sleep(Duration::from_millis(5)).await;
            }
        })
        .await
        .expect("the connection task ends");
    }

    #[tokio::test]
    async fn concurrent_requests_share_one_failed_dial() {
        let mock = ApnsMock::start().await;
        // Nothing listens on port 1.
        let t = transport("https://127.0.0.1:1", mock.ca_pem(), Duration::from_secs(5));

        let results = join_all((0..10).map(|_| post(&t))).await;

        for r in results {
            match r {
                Err(Failure::Failed(e)) => assert_eq!(e.kind(), PushErrorKind::Unavailable),
                other => panic!("{other:?}"),
            }
        }
        assert_eq!(
            t.shared.dials.load(Ordering::Acquire),
            1,
            "one dial for all"
        );
        // A later request dials again.
        assert!(post(&t).await.is_err());
        assert_eq!(t.shared.dials.load(Ordering::Acquire), 2);
    }
}
