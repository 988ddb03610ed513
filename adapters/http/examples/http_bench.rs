//! Load generator for the client API: requests per second on loopback, in-memory store.
//!
//! ```text
//! cargo run --release -p tidings-http --example http_bench -- [--seconds 5] [--connections 64]
//!     [--server-threads 2] [--client-threads 2] [--jwt] [--only history|update]
//! ```
//!
//! The server (the client API over a `MemoryStore`) runs on its own tokio runtime; the load
//! generator runs beside it on another, in the same process, over 127.0.0.1 with HTTP/1.1
//! keep-alive connections, each sending its next request as soon as the previous answer is read.
//! Two workloads: a 50-item history page (`GET /notifications?limit=50`, ~18 KB of JSON) and a
//! state update (`PATCH /notifications/{id}`, toggling read/unread over 500 notifications so
//! every request changes state, bumps the change sequence and schedules a sync signal).

use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use http_body_util::{BodyExt, Full};
use hyper::body::Bytes;
use hyper_util::rt::TokioIo;
use jsonwebtoken::{encode, EncodingKey, Header};
use serde_json::json;
use tidings::{
    App, EndpointRegistration, NewNotification, NotificationId, Platform, PushAddress, Tidings,
};
use tidings_http::{router, HttpConfig, JwtIdentity, JwtKey};
use tidings_memory::{MemoryStore, RecordingChannel, StaticIdentity};

const APP: &str = "bench";
const USER: &str = "bench-user";
const TOKEN: &str = "bench-token";
const JWT_SECRET: &[u8] = b"bench-secret-bench-secret-bench-secret";
const NOTIFICATIONS: usize = 500;

struct Options {
    seconds: u64,
    connections: usize,
    server_threads: usize,
    client_threads: usize,
    jwt: bool,
    only: Option<String>,
}

fn options() -> Result<Options, String> {
    let mut o = Options {
        seconds: 5,
        connections: 64,
        server_threads: 2,
        client_threads: 2,
        jwt: false,
        only: None,
    };
    let mut args = std::env::args().skip(1);
    while let Some(arg) = args.next() {
        let mut value = || args.next().ok_or_else(|| format!("{arg} needs a value"));
        match arg.as_str() {
            "--seconds" => o.seconds = value()?.parse().map_err(|_| "bad --seconds")?,
            "--connections" => o.connections = value()?.parse().map_err(|_| "bad --connections")?,
            "--server-threads" => {
                o.server_threads = value()?.parse().map_err(|_| "bad --server-threads")?
            }
            "--client-threads" => {
                o.client_threads = value()?.parse().map_err(|_| "bad --client-threads")?
            }
            "--jwt" => o.jwt = true,
            "--only" => o.only = Some(value()?),
            other => return Err(format!("unknown argument {other}")),
        }
    }
    if o.seconds == 0 || o.connections == 0 || o.server_threads == 0 || o.client_threads == 0 {
        return Err("numbers must be positive".into());
    }
    Ok(o)
}

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let o = options()?;
    let server_rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(o.server_threads)
        .thread_name("server")
        .enable_all()
        .build()?;
    let (addr, ids) = server_rt.block_on(start_server(o.jwt))?;
    let token = if o.jwt {
        let exp = tidings::Timestamp::now_utc().as_secs() + 3600;
        encode(
            &Header::default(),
            &json!({"sub": USER, "app": APP, "exp": exp}),
            &EncodingKey::from_secret(JWT_SECRET)?,
        )?
    } else {
        TOKEN.to_owned()
    };

    let client_rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(o.client_threads)
        .thread_name("client")
        .enable_all()
        .build()?;
    println!(
        "tidings-http bench: {} connections, {} s per workload, server {} threads, client {} threads, identity {}",
        o.connections,
        o.seconds,
        o.server_threads,
        o.client_threads,
        if o.jwt { "JwtIdentity HS256" } else { "StaticIdentity" }
    );
    let ids = Arc::new(ids);
    for workload in [Workload::History, Workload::Update] {
        if o.only
            .as_deref()
            .is_some_and(|only| only != workload.name())
        {
            continue;
        }
        let report = client_rt.block_on(load(addr, workload, &token, Arc::clone(&ids), &o))?;
        let per_request = |cpu: Duration| cpu.as_secs_f64() * 1e6 / report.requests.max(1) as f64;
        let (server_us, client_us) = (
            per_request(report.server_cpu),
            per_request(report.client_cpu),
        );
        println!(
            "{:<8} {:>9.0} req/s  ({} requests, {} errors, p50 {:.2} ms, p99 {:.2} ms, {:.1} KB/response)",
            workload.name(),
            report.requests as f64 / report.elapsed.as_secs_f64(),
            report.requests,
            report.errors,
            report.p50.as_secs_f64() * 1e3,
            report.p99.as_secs_f64() * 1e3,
            report.bytes as f64 / report.requests.max(1) as f64 / 1024.0,
        );
        println!(
            "         CPU per request: server {server_us:.1} us, load generator {client_us:.1} us; \
             the process got {:.2} of {} cores",
            (report.server_cpu + report.client_cpu).as_secs_f64() / report.elapsed.as_secs_f64(),
            std::thread::available_parallelism().map_or(0, |n| n.get()),
        );
    }
    drop(client_rt);
    drop(server_rt);
    Ok(())
}

async fn start_server(
    jwt: bool,
) -> Result<(SocketAddr, Vec<NotificationId>), Box<dyn std::error::Error>> {
    let builder = Tidings::builder()
        .store(MemoryStore::new())
        .channel(RecordingChannel::counting(Platform::Apns))
        .channel(RecordingChannel::counting(Platform::Fcm))
        .app(App::new(APP));
    let tidings = if jwt {
        builder
            .identity(
                JwtIdentity::builder()
                    .key(JwtKey::hs256(JWT_SECRET)?)
                    .build()?,
            )
            .build()?
    } else {
        builder
            .identity(StaticIdentity::new().with_user(TOKEN, APP, USER))
            .build()?
    };
    // Two devices, so every state change schedules a sync signal to one of them.
    for (installation, token) in [("phone", "ab".repeat(32)), ("tablet", "cd".repeat(32))] {
        let address = PushAddress::Apns {
            token,
            environment: tidings::ApnsEnvironment::Production,
        };
        tidings
            .register_endpoint(
                EndpointRegistration::new(APP, USER, address).installation_id(installation),
            )
            .await?;
    }
    let mut ids = Vec::with_capacity(NOTIFICATIONS);
    for i in 0..NOTIFICATIONS {
        let n = tidings
            .send(
                NewNotification::new(APP, USER, format!("order-{i}"))
                    .title(format!("Order {i} shipped"))
                    .body("Your parcel is on its way and arrives on Tuesday between 9 and 12.")
                    .group("orders"),
            )
            .await?;
        ids.push(n.id);
    }
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
    let addr = listener.local_addr()?;
    let app = axum::Router::new().nest("/tidings", router(tidings, HttpConfig::default()));
    tokio::spawn(async move { axum::serve(listener, app).await });
    Ok((addr, ids))
}

#[derive(Clone, Copy)]
enum Workload {
    History,
    Update,
}

impl Workload {
    fn name(self) -> &'static str {
        match self {
            Workload::History => "history",
            Workload::Update => "update",
        }
    }
}

/// CPU time (user + system) used so far by this process's threads named `name`, from
/// /proc/self/task (Linux; zero elsewhere), in clock ticks of 10 ms.
fn cpu_ticks(name: &str) -> u64 {
    let Ok(tasks) = std::fs::read_dir("/proc/self/task") else {
        return 0;
    };
    tasks
        .flatten()
        .filter_map(|task| std::fs::read_to_string(task.path().join("stat")).ok())
        .filter_map(|stat| {
            let open = stat.find('(')?;
            let close = stat.rfind(')')?;
            if &stat[open + 1..close] != name {
                return None;
            }
            let fields: Vec<&str> = stat[close + 2..].split_whitespace().collect();
            Some(fields.get(11)?.parse::<u64>().ok()? + fields.get(12)?.parse::<u64>().ok()?)
        })
        .sum()
}

struct Report {
    server_cpu: Duration,
    client_cpu: Duration,
    requests: u64,
    errors: u64,
    bytes: u64,
    elapsed: Duration,
    p50: Duration,
    p99: Duration,
}

async fn load(
    addr: SocketAddr,
    workload: Workload,
    token: &str,
    ids: Arc<Vec<NotificationId>>,
    o: &Options,
) -> Result<Report, Box<dyn std::error::Error>> {
    let measuring = Arc::new(AtomicBool::new(false));
    let stop = Arc::new(AtomicBool::new(false));
    let counter = Arc::new(AtomicU64::new(0));
    let auth = format!("Bearer {token}");
    let mut tasks = Vec::with_capacity(o.connections);
    for _ in 0..o.connections {
        let stream = tokio::net::TcpStream::connect(addr).await?;
        stream.set_nodelay(true)?;
        let (mut sender, connection) =
            hyper::client::conn::http1::handshake(TokioIo::new(stream)).await?;
        tokio::spawn(connection);
        let (measuring, stop, counter, ids, auth) = (
            Arc::clone(&measuring),
            Arc::clone(&stop),
            Arc::clone(&counter),
            Arc::clone(&ids),
            auth.clone(),
        );
        tasks.push(tokio::spawn(async move {
            let mut latencies = Vec::new();
            let (mut errors, mut bytes) = (0u64, 0u64);
            while !stop.load(Ordering::Relaxed) {
                let request = match workload {
                    Workload::History => {
                        hyper::Request::get(format!("http://{addr}/tidings/notifications?limit=50"))
                            .header("authorization", &auth)
                            .body(Full::new(Bytes::new()))
                    }
                    Workload::Update => {
                        let i = counter.fetch_add(1, Ordering::Relaxed) as usize;
                        let id = ids[i % ids.len()];
                        let read = if (i / ids.len()).is_multiple_of(2) {
                            "read"
                        } else {
                            "unread"
                        };
                        hyper::Request::patch(format!("http://{addr}/tidings/notifications/{id}"))
                            .header("authorization", &auth)
                            .header("content-type", "application/json")
                            .body(Full::new(Bytes::from(format!(r#"{{"read":"{read}"}}"#))))
                    }
                };
                let Ok(request) = request else { break };
                let started = Instant::now();
                let Ok(response) = sender.send_request(request).await else {
                    errors += 1;
                    break;
                };
                let ok = response.status().is_success();
                let Ok(body) = response.into_body().collect().await else {
                    errors += 1;
                    break;
                };
                if measuring.load(Ordering::Relaxed) {
                    latencies.push(started.elapsed());
                    bytes += body.to_bytes().len() as u64;
                    if !ok {
                        errors += 1;
                    }
                }
            }
            (latencies, errors, bytes)
        }));
    }
    tokio::time::sleep(Duration::from_secs(1)).await; // warm-up
    measuring.store(true, Ordering::Relaxed);
    let started = Instant::now();
    let (server_before, client_before) = (cpu_ticks("server"), cpu_ticks("client"));
    tokio::time::sleep(Duration::from_secs(o.seconds)).await;
    measuring.store(false, Ordering::Relaxed);
    let elapsed = started.elapsed();
    let ticks = |t: u64| Duration::from_millis(t * 10);
    let server_cpu = ticks(cpu_ticks("server").saturating_sub(server_before));
    let client_cpu = ticks(cpu_ticks("client").saturating_sub(client_before));
    stop.store(true, Ordering::Relaxed);
    let mut all = Vec::new();
    let (mut errors, mut bytes) = (0, 0);
    for task in tasks {
        let (latencies, e, b) = task.await?;
        all.extend(latencies);
        errors += e;
        bytes += b;
    }
    all.sort_unstable();
    let pick = |q: f64| {
        all.get(((all.len() as f64 - 1.0) * q) as usize)
            .copied()
            .unwrap_or_default()
    };
    Ok(Report {
        server_cpu,
        client_cpu,
        requests: all.len() as u64,
        errors,
        bytes,
        elapsed,
        p50: pick(0.5),
        p99: pick(0.99),
    })
}
