//! A small host serving the Tidings client API on 127.0.0.1 with in-memory adapters.
//!
//! ```text
//! cargo run --example http_host              # serve on 127.0.0.1:8787 until Ctrl-C
//! cargo run --example http_host -- --port 9000
//! cargo run --example http_host -- --smoke   # start, call itself once, exit (for CI)
//! ```
//!
//! It prints curl commands to paste: register a device, send (the host's own demo route calls
//! `Tidings::send` in-process), fetch, dismiss, read history and the change feed. Pushes go to a
//! recording channel that prints what a real push service would have received.

use std::net::SocketAddr;
use std::process::ExitCode;
use std::time::Duration;

use axum::extract::State;
use axum::routing::post;
use axum::{Json, Router};
use http_body_util::{BodyExt, Empty};
use hyper::body::Bytes;
use hyper_util::rt::TokioIo;
use serde_json::{json, Value};
use tidings::{App, NewNotification, Platform, PushContent, Tidings};
use tidings_http::{router, HttpConfig};
use tidings_memory::{MemoryStore, RecordingChannel, StaticIdentity};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::watch;

const APP: &str = "demo";

#[tokio::main]
async fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let smoke = args.iter().any(|a| a == "--smoke");
    let port = match args.iter().position(|a| a == "--port") {
        Some(i) => match args.get(i + 1).and_then(|p| p.parse::<u16>().ok()) {
            Some(p) => p,
            None => {
                eprintln!("usage: http_host [--port N] [--smoke]");
                return ExitCode::FAILURE;
            }
        },
        None if smoke => 0,
        None => 8787,
    };
    match run(port, smoke).await {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("http_host: {e}");
            ExitCode::FAILURE
        }
    }
}

async fn run(port: u16, smoke: bool) -> Result<(), Box<dyn std::error::Error>> {
    let apns = RecordingChannel::new(Platform::Apns);
    let fcm = RecordingChannel::new(Platform::Fcm);
    let tidings = Tidings::builder()
        .store(MemoryStore::new())
        .channel(apns.clone())
        .channel(fcm.clone())
        .identity(
            StaticIdentity::new()
                .with_user("alice-token", APP, "alice")
                .with_user("bob-token", APP, "bob"),
        )
        .app(App::new(APP))
        .build()?;

    let welcome = tidings
        .send(
            NewNotification::new(APP, "alice", "welcome")
                .title("Welcome to Tidings")
                .body("Fetched over the client API"),
        )
        .await?;

    let config = HttpConfig::builder().server_url("/tidings").build()?;
    let app = Router::new()
        .route("/demo/send", post(demo_send))
        .with_state(tidings.clone())
        .nest("/tidings", router(tidings.clone(), config));

    let listener = TcpListener::bind(SocketAddr::from(([127, 0, 0, 1], port))).await?;
    let addr = listener.local_addr()?;
    let (stop_tx, stop_rx) = watch::channel(false);

    let dispatcher = tidings.dispatcher();
    let mut dispatcher_stop = stop_rx.clone();
    let dispatching = tokio::spawn(dispatcher.run(async move {
        let _ = dispatcher_stop.wait_for(|stop| *stop).await;
    }));
    for channel in [apns, fcm] {
        tokio::spawn(print_pushes(channel, stop_rx.clone()));
    }

    let mut server_stop = stop_rx.clone();
    let server = tokio::spawn(async move {
        axum::serve(listener, app)
            .with_graceful_shutdown(async move {
                let _ = server_stop.wait_for(|stop| *stop).await;
            })
            .await
    });

    let outcome = if smoke {
        smoke_test(addr).await
    } else {
        print_instructions(addr, &welcome.id.to_string());
        tokio::signal::ctrl_c().await?;
        println!("\nshutting down");
        Ok(())
    };
    let _ = stop_tx.send(true);
    server.await??;
    dispatching.await??;
    outcome
}

/// The host's own route (not part of the client API): sends a notification in-process, as the
/// host's business logic would.
async fn demo_send(State(tidings): State<Tidings>, Json(body): Json<Value>) -> Json<Value> {
    let user = body["user"].as_str().unwrap_or("alice").to_owned();
    let title = body["title"]
        .as_str()
        .unwrap_or("Hello from the host")
        .to_owned();
    let key = format!("demo-{}", tidings::NotificationId::new_random());
    match tidings
        .send(NewNotification::new(APP, user, key).title(title))
        .await
    {
        Ok(n) => Json(json!({"id": n.id})),
        Err(e) => Json(json!({"error": e.to_string()})),
    }
}

/// Prints each push a recording channel receives, as a push service would see it.
async fn print_pushes(channel: RecordingChannel, mut stop: watch::Receiver<bool>) {
    let mut seen = 0;
    loop {
        tokio::select! {
            () = channel.wait_for_pushes(seen + 1) => {}
            _ = stop.wait_for(|stop| *stop) => return,
        }
        for recorded in channel.pushes().into_iter().skip(seen) {
            seen += 1;
            let push = &recorded.push;
            let content = match &push.content {
                PushContent::Tap { alert: Some(a) } => {
                    format!("shoulder tap, placeholder alert {:?}", a.title)
                }
                PushContent::Tap { alert: None } => "silent shoulder tap".to_owned(),
                PushContent::Inline { .. } => "inline content".to_owned(),
            };
            println!(
                "[{} push] {} for notification {} (sequence {}): {content}",
                push.endpoint.platform(),
                push.kind.as_str(),
                push.notification_id
                    .map(|id| id.to_string())
                    .unwrap_or_else(|| "-".into()),
                push.sequence,
            );
        }
    }
}

fn print_instructions(addr: SocketAddr, welcome: &str) {
    let base = format!("http://{addr}/tidings");
    let auth = "-H 'Authorization: Bearer alice-token'";
    println!(
        r#"Tidings client API on {base} (OpenAPI: {base}/openapi.json). Ctrl-C stops it.
Tokens: alice-token (alice), bob-token (bob), app "{APP}".

# 1. A device registers its push address (here: an iOS device, installation "alice-phone"):
curl -s -X PUT {base}/endpoints/alice-phone {auth} -H 'Content-Type: application/json' \
  -d '{{"address": {{"platform": "apns", "token": "00112233445566778899aabbccddeeff00112233445566778899aabbccddeeff", "environment": "sandbox"}}}}'

# 2. The host sends a notification in-process (this demo exposes it as a host-only route):
curl -s -X POST http://{addr}/demo/send -H 'Content-Type: application/json' -d '{{"user": "alice", "title": "Your order shipped"}}'
#    The server prints the push: a shoulder tap with the notification id, no content.

# 3. The device pulls the content (this one was sent at startup):
curl -s {base}/notifications/{welcome} {auth} -H 'Tidings-Installation-Id: alice-phone'

# 4. The user dismisses it on this device (other devices get a sync signal):
curl -s -X PATCH {base}/notifications/{welcome} {auth} -H 'Tidings-Installation-Id: alice-phone' \
  -H 'Content-Type: application/json' -d '{{"read": "read", "action": "dismissed"}}'

# 5. History, newest first, and the change feed a device catches up with:
curl -s '{base}/notifications?limit=50' {auth}
curl -s '{base}/changes?since=0' {auth}

# Someone else's token sees nothing of alice's (404, as for a missing id):
curl -s {base}/notifications/{welcome} -H 'Authorization: Bearer bob-token'
"#
    );
}

/// Starts, asks itself for alice's history once, and checks the answer.
async fn smoke_test(addr: SocketAddr) -> Result<(), Box<dyn std::error::Error>> {
    let stream = TcpStream::connect(addr).await?;
    let (mut sender, connection) =
        hyper::client::conn::http1::handshake(TokioIo::new(stream)).await?;
    let conn = tokio::spawn(connection);
    let request = hyper::Request::get(format!("http://{addr}/tidings/notifications"))
        .header("host", addr.to_string())
        .header("authorization", "Bearer alice-token")
        .body(Empty::<Bytes>::new())?;
    let response =
        tokio::time::timeout(Duration::from_secs(10), sender.send_request(request)).await??;
    let status = response.status();
    let body = response.into_body().collect().await?.to_bytes();
    drop(sender);
    let _ = conn.await;
    let page: Value = serde_json::from_slice(&body)?;
    if status != 200 || page["items"][0]["visual"]["title"] != "Welcome to Tidings" {
        return Err(format!("unexpected answer {status}: {page}").into());
    }
    println!("smoke test passed: GET /tidings/notifications answered {status} with the welcome notification");
    Ok(())
}
