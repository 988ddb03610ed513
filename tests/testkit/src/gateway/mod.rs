//! Shared core of the loopback mock gateways: the server loop, per-connection control,
//! request recording, per-address scripts, a clock the test controls, and JWT plumbing.
//!
//! Nothing here is public API; each mock (`apns`, `fcm`, ...) wraps these pieces in its own
//! provider-shaped types. `lib.rs` declares this module for the APNs and FCM mocks. The module is written so that
//! any mock can reuse it:
//!
//! - [`serve`] runs an accept loop on a bound listener. Each accepted TCP stream goes through an
//!   `accept` future (a TLS handshake, or nothing) and is then served by hyper's automatic
//!   HTTP/1.1 + HTTP/2 builder (or HTTP/2 only). Requests are handed to a [`Handler`] together
//!   with the connection's [`Conn`], through which a handler can drop the TCP connection without
//!   answering or send GOAWAY. The returned [`ServerHandle`] stops everything when dropped.
//! - [`Recorder`] keeps every request a mock saw (can be switched off for benchmarks) and lets a
//!   test await "at least n requests" without sleeping.
//! - [`Scripts`] holds per-address replies: one-shot replies (consumed in order) and a sticky
//!   reply used once the one-shot queue is empty.
//! - [`Clock`] is the mock's notion of now: the system clock plus an offset the test moves, so
//!   token ages and expiries are testable without sleeping.
//! - [`Jwt`] splits and decodes a compact JWS; the signature check itself is the caller's.
//!
//! Locks are `std::sync::Mutex`es held only for short, synchronous sections, never across an
//! `.await`.

use std::collections::{HashMap, VecDeque};
use std::future::Future;
use std::io;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, AtomicI64, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine as _;
use bytes::Bytes;
use http_body_util::{BodyExt as _, Full};
use hyper::body::Incoming;
use hyper::{Request, Response};
use hyper_util::rt::{TokioExecutor, TokioIo};
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{mpsc, watch, Notify};

/// A response body.
pub(crate) type Body = Full<Bytes>;

/// Locks a mutex, ignoring poisoning (a panicking test thread must not cascade).
pub(crate) fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

/// What a handler asks of its connection.
#[derive(Debug, Clone, Copy)]
enum ConnCmd {
    /// Close the TCP connection at once, answering nothing.
    Drop,
    /// Send GOAWAY (HTTP/2) / close after the current exchange (HTTP/1.1).
    GoAway,
}

/// One accepted connection, as seen by a handler.
#[derive(Debug)]
pub(crate) struct Conn {
    cmd: mpsc::UnboundedSender<ConnCmd>,
    closed: watch::Receiver<bool>,
    /// Per-connection state a mock may keep (APNs: the key id first used and the current
    /// provider token). Opaque to the gateway; mocks without per-connection rules ignore it
    /// (hence the `allow`: this file is compiled once per mock).
    #[allow(dead_code)]
    pub(crate) state: Mutex<ConnState>,
}

/// Per-connection state a mock may keep.
#[derive(Debug, Default)]
#[allow(dead_code)]
pub(crate) struct ConnState {
    /// The credential identity first used on the connection (APNs: key id).
    pub(crate) first_identity: Option<String>,
    /// The last credential accepted on the connection and when it was first seen (mock secs).
    pub(crate) current_credential: Option<(String, i64)>,
}

impl Conn {
    /// Closes the TCP connection without answering; resolves once it is closed. The caller then
    /// returns an error from its handler (the response is never written).
    pub(crate) async fn drop_connection(&self) -> io::Error {
        let _ = self.cmd.send(ConnCmd::Drop);
        self.wait_closed().await;
        io::Error::new(
            io::ErrorKind::ConnectionAborted,
            "connection dropped by script",
        )
    }

    /// Starts a graceful shutdown (GOAWAY) and returns the error that resets this request.
    pub(crate) fn go_away(&self) -> io::Error {
        let _ = self.cmd.send(ConnCmd::GoAway);
        io::Error::new(io::ErrorKind::ConnectionReset, "GOAWAY sent by script")
    }

    async fn wait_closed(&self) {
        let mut closed = self.closed.clone();
        let _ = closed.wait_for(|c| *c).await;
    }
}

/// Serves one request.
pub(crate) trait Handler: Send + Sync + 'static {
    /// Answers `req`, which arrived on `conn`. An `Err` resets the stream (HTTP/2) or closes the
    /// connection (HTTP/1.1) without a response.
    fn handle(
        self: Arc<Self>,
        req: Request<Incoming>,
        conn: Arc<Conn>,
    ) -> impl Future<Output = Result<Response<Body>, io::Error>> + Send;
}

/// Stops the server (accept loop and every open connection) when dropped.
#[derive(Debug)]
pub(crate) struct ServerHandle {
    addr: SocketAddr,
    shutdown: watch::Sender<bool>,
    accept_task: tokio::task::JoinHandle<()>,
}

impl ServerHandle {
    /// The bound address (127.0.0.1 and an ephemeral port).
    pub(crate) fn addr(&self) -> SocketAddr {
        self.addr
    }
}

impl Drop for ServerHandle {
    fn drop(&mut self) {
        let _ = self.shutdown.send(true);
        self.accept_task.abort();
    }
}

/// Binds 127.0.0.1 on an ephemeral port.
pub(crate) async fn bind_loopback() -> TcpListener {
    TcpListener::bind(("127.0.0.1", 0))
        .await
        .expect("binding 127.0.0.1:0 for a mock gateway")
}

/// Marks a connection closed however its task ends (completion, shutdown or abort).
struct ClosedGuard(watch::Sender<bool>);

impl Drop for ClosedGuard {
    fn drop(&mut self) {
        let _ = self.0.send(true);
    }
}

/// Runs the accept loop on `listener`. Every stream goes through `accept` (e.g. a TLS
/// handshake; a failed handshake just closes the stream) and is then served by `handler`.
pub(crate) fn serve<H, A, F, IO>(
    listener: TcpListener,
    http2_only: bool,
    accept: A,
    handler: Arc<H>,
) -> ServerHandle
where
    H: Handler,
    A: Fn(TcpStream) -> F + Send + Sync + 'static,
    F: Future<Output = io::Result<IO>> + Send + 'static,
    IO: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    let addr = listener
        .local_addr()
        .expect("local address of a bound listener");
    let (shutdown, shutdown_rx) = watch::channel(false);
    let accept = Arc::new(accept);
    let accept_task = tokio::spawn(async move {
        loop {
            let Ok((stream, _peer)) = listener.accept().await else {
                continue;
            };
            let _ = stream.set_nodelay(true);
            let accept = Arc::clone(&accept);
            let handler = Arc::clone(&handler);
            let mut shutdown_rx = shutdown_rx.clone();
            tokio::spawn(async move {
                let io = tokio::select! {
                    io = accept(stream) => match io {
                        Ok(io) => io,
                        Err(_) => return,
                    },
                    _ = shutdown_rx.wait_for(|s| *s) => return,
                };
                serve_connection(io, http2_only, handler, shutdown_rx).await;
            });
        }
    });
    ServerHandle {
        addr,
        shutdown,
        accept_task,
    }
}

async fn serve_connection<H, IO>(
    io: IO,
    http2_only: bool,
    handler: Arc<H>,
    mut shutdown_rx: watch::Receiver<bool>,
) where
    H: Handler,
    IO: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    let (cmd_tx, mut cmd_rx) = mpsc::unbounded_channel();
    let (closed_tx, closed_rx) = watch::channel(false);
    let _closed = ClosedGuard(closed_tx);
    let conn = Arc::new(Conn {
        cmd: cmd_tx,
        closed: closed_rx,
        state: Mutex::new(ConnState::default()),
    });
    let service = hyper::service::service_fn(move |req| {
        let handler = Arc::clone(&handler);
        let conn = Arc::clone(&conn);
        async move { handler.handle(req, conn).await }
    });
    let mut builder = hyper_util::server::conn::auto::Builder::new(TokioExecutor::new());
    if http2_only {
        builder = builder.http2_only();
    }
    builder.http2().max_concurrent_streams(1000);
    let connection = builder.serve_connection(TokioIo::new(io), service);
    tokio::pin!(connection);
    let mut going_away = false;
    loop {
        tokio::select! {
            _ = connection.as_mut() => return,
            cmd = cmd_rx.recv(), if !going_away => match cmd {
                Some(ConnCmd::Drop) | None => return,
                Some(ConnCmd::GoAway) => {
                    going_away = true;
                    connection.as_mut().graceful_shutdown();
                }
            },
            _ = shutdown_rx.wait_for(|s| *s) => return,
        }
    }
}

/// Reads a whole request body (bodies are small; the mocks check sizes after reading).
pub(crate) async fn read_body(body: Incoming) -> Result<Bytes, io::Error> {
    body.collect()
        .await
        .map(|c| c.to_bytes())
        .map_err(|e| io::Error::new(io::ErrorKind::InvalidData, e))
}

/// A JSON response with the given status and extra headers.
pub(crate) fn json_response(
    status: u16,
    body: &serde_json::Value,
    headers: &[(&str, String)],
) -> Response<Body> {
    let bytes = serde_json::to_vec(body).unwrap_or_default();
    let mut builder = Response::builder()
        .status(status)
        .header("content-type", "application/json; charset=UTF-8");
    for (name, value) in headers {
        builder = builder.header(*name, value.as_str());
    }
    builder
        .body(Full::new(Bytes::from(bytes)))
        .unwrap_or_else(|_| Response::new(Full::new(Bytes::new())))
}

/// An empty response with the given status and extra headers.
pub(crate) fn empty_response(status: u16, headers: &[(&str, String)]) -> Response<Body> {
    let mut builder = Response::builder().status(status);
    for (name, value) in headers {
        builder = builder.header(*name, value.as_str());
    }
    builder
        .body(Full::new(Bytes::new()))
        .unwrap_or_else(|_| Response::new(Full::new(Bytes::new())))
}

/// Every request a mock saw, in arrival order.
#[derive(Debug)]
pub(crate) struct Recorder<T> {
    items: Mutex<Vec<T>>,
    count: AtomicU64,
    enabled: AtomicBool,
    notify: Notify,
}

impl<T: Clone> Recorder<T> {
    pub(crate) fn new() -> Self {
        Recorder {
            items: Mutex::new(Vec::new()),
            count: AtomicU64::new(0),
            enabled: AtomicBool::new(true),
            notify: Notify::new(),
        }
    }

    /// Stores one request (unless recording is off) and wakes waiters.
    pub(crate) fn record(&self, item: T) {
        if self.enabled.load(Ordering::Relaxed) {
            lock(&self.items).push(item);
        }
        self.count.fetch_add(1, Ordering::Relaxed);
        self.notify.notify_waiters();
    }

    /// Everything recorded so far.
    pub(crate) fn snapshot(&self) -> Vec<T> {
        lock(&self.items).clone()
    }

    /// Recorded items matching `f`.
    pub(crate) fn filtered(&self, f: impl Fn(&T) -> bool) -> Vec<T> {
        lock(&self.items).iter().filter(|t| f(t)).cloned().collect()
    }

    /// Requests seen, recorded or not.
    pub(crate) fn count(&self) -> u64 {
        self.count.load(Ordering::Relaxed)
    }

    /// Forgets the recorded requests (the count stays).
    pub(crate) fn clear(&self) {
        lock(&self.items).clear();
    }

    /// Turns storing on or off (counting always happens).
    pub(crate) fn set_enabled(&self, on: bool) {
        self.enabled.store(on, Ordering::Relaxed);
    }

    /// Waits until at least `n` requests are stored, then returns them all.
    pub(crate) async fn wait_for(&self, n: usize) -> Vec<T> {
        loop {
            let notified = self.notify.notified();
            tokio::pin!(notified);
            notified.as_mut().enable();
            {
                let items = lock(&self.items);
                if items.len() >= n {
                    return items.clone();
                }
            }
            notified.await;
        }
    }
}

/// Per-address scripted replies.
#[derive(Debug)]
pub(crate) struct Scripts<R> {
    map: Mutex<HashMap<String, Script<R>>>,
    any: AtomicBool,
}

#[derive(Debug)]
struct Script<R> {
    once: VecDeque<R>,
    always: Option<R>,
}

impl<R: Clone> Scripts<R> {
    pub(crate) fn new() -> Self {
        Scripts {
            map: Mutex::new(HashMap::new()),
            any: AtomicBool::new(false),
        }
    }

    fn with(&self, address: &str, f: impl FnOnce(&mut Script<R>)) {
        let mut map = lock(&self.map);
        let script = map.entry(address.to_owned()).or_insert_with(|| Script {
            once: VecDeque::new(),
            always: None,
        });
        f(script);
        self.any.store(true, Ordering::Relaxed);
    }

    /// Every request to `address` gets `reply` (after any one-shot replies).
    pub(crate) fn always(&self, address: &str, reply: R) {
        self.with(address, |s| s.always = Some(reply));
    }

    /// The next request to `address` gets `reply` (queued after earlier one-shot replies).
    pub(crate) fn once(&self, address: &str, reply: R) {
        self.with(address, |s| s.once.push_back(reply));
    }

    /// Forgets the scripts of one address.
    pub(crate) fn clear(&self, address: &str) {
        lock(&self.map).remove(address);
    }

    /// Forgets every script.
    pub(crate) fn clear_all(&self) {
        lock(&self.map).clear();
    }

    /// The reply scripted for the next request to `address`, if any.
    pub(crate) fn next(&self, address: &str) -> Option<R> {
        if !self.any.load(Ordering::Relaxed) {
            return None;
        }
        let mut map = lock(&self.map);
        let script = map.get_mut(address)?;
        script.once.pop_front().or_else(|| script.always.clone())
    }
}

/// The mock's "now": the system clock plus an offset the test moves.
#[derive(Debug, Default)]
pub(crate) struct Clock {
    offset_ms: AtomicI64,
}

fn system_ms() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_millis() as i64)
        .unwrap_or(0)
}

impl Clock {
    /// Milliseconds since the UNIX epoch.
    pub(crate) fn now_ms(&self) -> i64 {
        system_ms() + self.offset_ms.load(Ordering::Relaxed)
    }

    /// Seconds since the UNIX epoch.
    pub(crate) fn now_secs(&self) -> i64 {
        self.now_ms().div_euclid(1000)
    }

    /// Moves now forward.
    pub(crate) fn advance(&self, by: Duration) {
        self.offset_ms
            .fetch_add(by.as_millis() as i64, Ordering::Relaxed);
    }

    /// Sets now to `unix_secs` (it keeps running from there).
    pub(crate) fn set_now(&self, unix_secs: i64) {
        self.offset_ms
            .store(unix_secs * 1000 - system_ms(), Ordering::Relaxed);
    }
}

/// A compact JWS split into its parts and decoded (the signature is not checked here).
#[derive(Debug)]
pub(crate) struct Jwt<'a> {
    /// `header.claims`, the signed input.
    pub(crate) signing_input: &'a str,
    /// Decoded JOSE header.
    pub(crate) header: serde_json::Value,
    /// Decoded claims.
    pub(crate) claims: serde_json::Value,
    /// Decoded signature bytes.
    pub(crate) signature: Vec<u8>,
}

impl<'a> Jwt<'a> {
    /// Splits and decodes `token`; `None` if it is not a well-formed compact JWS.
    pub(crate) fn parse(token: &'a str) -> Option<Jwt<'a>> {
        let (signing_input, sig) = token.rsplit_once('.')?;
        let (header, claims) = signing_input.split_once('.')?;
        if claims.contains('.') {
            return None;
        }
        let header: serde_json::Value =
            serde_json::from_slice(&URL_SAFE_NO_PAD.decode(header).ok()?).ok()?;
        let claims: serde_json::Value =
            serde_json::from_slice(&URL_SAFE_NO_PAD.decode(claims).ok()?).ok()?;
        if !header.is_object() || !claims.is_object() {
            return None;
        }
        let signature = URL_SAFE_NO_PAD.decode(sig).ok()?;
        Some(Jwt {
            signing_input,
            header,
            claims,
            signature,
        })
    }
}

/// Encodes `header.claims` and appends the signature made by `sign` (test-side JWT minting).
pub(crate) fn sign_jwt(
    header: &serde_json::Value,
    claims: &serde_json::Value,
    sign: impl FnOnce(&[u8]) -> Vec<u8>,
) -> String {
    let mut out = URL_SAFE_NO_PAD.encode(serde_json::to_vec(header).unwrap_or_default());
    out.push('.');
    out.push_str(&URL_SAFE_NO_PAD.encode(serde_json::to_vec(claims).unwrap_or_default()));
    let signature = sign(out.as_bytes());
    out.push('.');
    out.push_str(&URL_SAFE_NO_PAD.encode(signature));
    out
}

/// PEM-encodes DER bytes under `label`, 64 columns.
pub(crate) fn pem_encode(label: &str, der: &[u8]) -> String {
    let b64 = base64::engine::general_purpose::STANDARD.encode(der);
    let mut out = format!("-----BEGIN {label}-----\n");
    for chunk in b64.as_bytes().chunks(64) {
        out.push_str(std::str::from_utf8(chunk).unwrap_or_default());
        out.push('\n');
    }
    out.push_str(&format!("-----END {label}-----\n"));
    out
}

/// Decodes the first PEM block labelled `label`.
pub(crate) fn pem_decode(label: &str, pem: &str) -> Option<Vec<u8>> {
    let begin = format!("-----BEGIN {label}-----");
    let end = format!("-----END {label}-----");
    let start = pem.find(&begin)? + begin.len();
    let stop = start + pem[start..].find(&end)?;
    let b64: String = pem[start..stop]
        .chars()
        .filter(|c| !c.is_whitespace())
        .collect();
    base64::engine::general_purpose::STANDARD.decode(b64).ok()
}

/// A cache of verification results keyed by the exact credential string, bounded so that a
/// benchmark minting many tokens cannot grow it without limit.
#[derive(Debug)]
pub(crate) struct VerifyCache<V> {
    map: Mutex<HashMap<String, V>>,
}

const VERIFY_CACHE_MAX: usize = 4096;

impl<V: Clone> VerifyCache<V> {
    pub(crate) fn new() -> Self {
        VerifyCache {
            map: Mutex::new(HashMap::new()),
        }
    }

    /// The cached result for `key`, or `compute()` stored and returned.
    pub(crate) fn get_or(&self, key: &str, compute: impl FnOnce() -> V) -> V {
        if let Some(v) = lock(&self.map).get(key) {
            return v.clone();
        }
        let v = compute();
        let mut map = lock(&self.map);
        if map.len() >= VERIFY_CACHE_MAX {
            map.clear();
        }
        map.insert(key.to_owned(), v.clone());
        v
    }

    /// Forgets everything (e.g. after a key was registered or removed).
    pub(crate) fn clear(&self) {
        lock(&self.map).clear();
    }
}
