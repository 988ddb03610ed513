//! The loopback HTTP server, request journal and per-address scripts shared by the WNS and Web
//! Push mocks.
//!
//! The server speaks HTTP/1.1 and HTTP/2 (prior knowledge) on `127.0.0.1`, an ephemeral port,
//! collects each request body (capped), asks a synchronous handler for a [`Planned`] answer, waits
//! the planned delay and then answers or drops the connection. Dropping [`Loopback`] stops the
//! accept loop and every open connection.

use std::collections::{HashMap, VecDeque};
use std::fmt;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use bytes::Bytes;
use http_body_util::{BodyExt, Full, Limited};
use hyper::body::Incoming;
use hyper::{Request, Response, StatusCode};
use hyper_util::rt::{TokioExecutor, TokioIo};
use hyper_util::server::conn::auto;
use tokio::net::TcpListener;
use tokio::sync::watch;
use tokio::task::{JoinHandle, JoinSet};

/// Largest request body read; anything longer is answered 413 without reaching the handler.
const READ_LIMIT: usize = 1 << 20;

/// What the handler wants done with a request.
pub(crate) struct Planned {
    /// Wait this long first (a slow provider).
    pub(crate) delay: Option<Duration>,
    /// Then answer, or drop the connection.
    pub(crate) reply: Reply,
}

/// An answer, or none.
pub(crate) enum Reply {
    /// Send this response.
    Respond(Response<Full<Bytes>>),
    /// Close the connection without answering.
    Drop,
}

/// A response with `status`, the given headers and body.
pub(crate) fn response(
    status: u16,
    headers: &[(&str, String)],
    content_type: Option<&str>,
    body: impl Into<Bytes>,
) -> Response<Full<Bytes>> {
    let mut b = Response::builder().status(StatusCode::from_u16(status).unwrap_or(StatusCode::OK));
    for (name, value) in headers {
        b = b.header(*name, value.as_str());
    }
    if let Some(ct) = content_type {
        b = b.header("content-type", ct);
    }
    b.body(Full::new(body.into())).unwrap()
}

/// The connection was dropped on purpose (scripted).
#[derive(Debug)]
struct Dropped;

impl fmt::Display for Dropped {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("connection dropped by the mock's script")
    }
}

impl std::error::Error for Dropped {}

/// A bound, not yet serving listener: the address is known before the handler is built.
pub(crate) struct Bound {
    listener: TcpListener,
    addr: SocketAddr,
}

impl Bound {
    /// Binds `127.0.0.1` on an ephemeral port.
    pub(crate) async fn new() -> Bound {
        let listener = TcpListener::bind(("127.0.0.1", 0))
            .await
            .expect("bind a loopback port for the mock");
        let addr = listener.local_addr().expect("the mock's local address");
        Bound { listener, addr }
    }

    /// The address it listens on.
    pub(crate) fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// Serves every connection with `handler` until the returned [`Loopback`] is dropped.
    pub(crate) fn serve<H>(self, handler: H) -> Loopback
    where
        H: Fn(Request<Bytes>) -> Planned + Send + Sync + 'static,
    {
        let handler = Arc::new(handler);
        let listener = self.listener;
        let task = tokio::spawn(async move {
            let mut conns = JoinSet::new();
            loop {
                tokio::select! {
                    accepted = listener.accept() => {
                        let Ok((stream, _)) = accepted else { continue };
                        let _ = stream.set_nodelay(true);
                        conns.spawn(serve_connection(stream, Arc::clone(&handler)));
                    }
                    Some(_) = conns.join_next(), if !conns.is_empty() => {}
                }
            }
        });
        Loopback { task }
    }
}

async fn serve_connection<H>(stream: tokio::net::TcpStream, handler: Arc<H>)
where
    H: Fn(Request<Bytes>) -> Planned + Send + Sync + 'static,
{
    let service = hyper::service::service_fn(move |req: Request<Incoming>| {
        let handler = Arc::clone(&handler);
        async move {
            let (parts, body) = req.into_parts();
            let body = match Limited::new(body, READ_LIMIT).collect().await {
                Ok(collected) => collected.to_bytes(),
                Err(_) => {
                    return Ok::<_, Dropped>(response(
                        413,
                        &[],
                        Some("text/plain"),
                        "request body too large",
                    ))
                }
            };
            let planned = handler(Request::from_parts(parts, body));
            if let Some(delay) = planned.delay {
                tokio::time::sleep(delay).await;
            }
            match planned.reply {
                Reply::Respond(r) => Ok(r),
                Reply::Drop => Err(Dropped),
            }
        }
    });
    let _ = auto::Builder::new(TokioExecutor::new())
        .serve_connection(TokioIo::new(stream), service)
        .await;
}

/// A running server; dropping it stops the server and closes its connections.
pub(crate) struct Loopback {
    task: JoinHandle<()>,
}

impl Drop for Loopback {
    fn drop(&mut self) {
        // Aborting the accept task drops its JoinSet, which aborts every connection task.
        self.task.abort();
    }
}

/// Locks a mutex, ignoring poisoning (a panicking test thread must not hide the journal).
pub(crate) fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

/// Every request a mock saw, in arrival order, with a count tests can await.
pub(crate) struct Journal<T> {
    items: Mutex<Vec<T>>,
    count: watch::Sender<usize>,
}

impl<T: Clone> Journal<T> {
    /// An empty journal.
    pub(crate) fn new() -> Self {
        Journal {
            items: Mutex::new(Vec::new()),
            count: watch::Sender::new(0),
        }
    }

    /// Appends one entry.
    pub(crate) fn push(&self, item: T) {
        let n = {
            let mut items = lock(&self.items);
            items.push(item);
            items.len()
        };
        self.count.send_replace(n);
    }

    /// A copy of every entry.
    pub(crate) fn all(&self) -> Vec<T> {
        lock(&self.items).clone()
    }

    /// Entries matching `keep`.
    pub(crate) fn filter(&self, keep: impl Fn(&T) -> bool) -> Vec<T> {
        lock(&self.items)
            .iter()
            .filter(|i| keep(i))
            .cloned()
            .collect()
    }

    /// How many entries there are.
    pub(crate) fn len(&self) -> usize {
        lock(&self.items).len()
    }

    /// Forgets every entry.
    pub(crate) fn clear(&self) {
        lock(&self.items).clear();
        self.count.send_replace(0);
    }

    /// Waits until there are at least `n` entries, then returns them all.
    pub(crate) async fn wait_for(&self, n: usize) -> Vec<T> {
        let mut rx = self.count.subscribe();
        // The sender lives in `self`, so the channel cannot close while we wait.
        let _ = rx.wait_for(|c| *c >= n).await;
        self.all()
    }
}

/// Scripted answers per address: a queue consumed one per request, then a standing answer.
pub(crate) struct Scripts<S> {
    map: Mutex<HashMap<String, Script<S>>>,
}

struct Script<S> {
    queue: VecDeque<S>,
    always: Option<S>,
}

impl<S: Clone> Scripts<S> {
    /// No scripts.
    pub(crate) fn new() -> Self {
        Scripts {
            map: Mutex::new(HashMap::new()),
        }
    }

    fn with<R>(&self, key: &str, f: impl FnOnce(&mut Script<S>) -> R) -> R {
        let mut map = lock(&self.map);
        let entry = map.entry(key.to_owned()).or_insert_with(|| Script {
            queue: VecDeque::new(),
            always: None,
        });
        f(entry)
    }

    /// Queues answers for the next requests to `key`.
    pub(crate) fn queue(&self, key: &str, answers: impl IntoIterator<Item = S>) {
        self.with(key, |s| s.queue.extend(answers));
    }

    /// Sets the answer used once the queue is empty (`None`: normal behaviour).
    pub(crate) fn always(&self, key: &str, answer: Option<S>) {
        self.with(key, |s| s.always = answer);
    }

    /// The answer for the next request to `key`, if scripted.
    pub(crate) fn next(&self, key: &str) -> Option<S> {
        let mut map = lock(&self.map);
        let s = map.get_mut(key)?;
        s.queue.pop_front().or_else(|| s.always.clone())
    }

    /// Forgets every script.
    pub(crate) fn clear(&self) {
        lock(&self.map).clear();
    }
}
