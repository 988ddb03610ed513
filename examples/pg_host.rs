//! An axum host service on PostgreSQL: devices register, an order is shipped and its
//! notification written in the same database transaction, and a dispatcher pushes it.
//!
//! ```text
//! DATABASE_URL=postgres://postgres@127.0.0.1:5432/test \
//!     cargo run --example pg_host            # scripted demo, then exits
//! DATABASE_URL=... cargo run --example pg_host -- --serve   # serve on 127.0.0.1:3000
//! ```
//!
//! The demo drives the router in-process (no client needed) and prints each step. With
//! `--serve` it listens on 127.0.0.1:3000 until killed:
//!
//! ```text
//! curl -X POST 127.0.0.1:3000/devices -H 'content-type: application/json' \
//!      -d '{"user":"alice","fcm_token":"token-1"}'
//! curl -X POST 127.0.0.1:3000/orders/42/ship -H 'content-type: application/json' \
//!      -d '{"user":"alice"}'
//! curl 127.0.0.1:3000/users/alice/notifications
//! ```
//!
//! Pushes go to a channel that prints them instead of calling FCM.
#![allow(clippy::print_stdout)]

use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use axum::body::Body;
use axum::extract::{Path, State};
use axum::http::{Request, StatusCode};
use axum::routing::{get, post};
use axum::{Json, Router};
use diesel_async::pooled_connection::bb8::Pool;
use diesel_async::pooled_connection::AsyncDieselConnectionManager;
use diesel_async::scoped_futures::ScopedFutureExt;
use diesel_async::{AsyncConnection, AsyncPgConnection, RunQueryDsl};
use serde::Deserialize;
use tidings::{
    Accepted, App, ChannelCapabilities, EndpointRegistration, NewNotification, Platform, Push,
    PushAddress, PushChannel, PushError, Tidings,
};
use tidings_postgres::{PgStore, PgStoreConfig, TransactionError};
use tokio::sync::Notify;
use tower::ServiceExt;

/// Prints every push instead of sending it.
#[derive(Debug)]
struct PrintingChannel {
    pushed: Arc<Notify>,
}

#[async_trait]
impl PushChannel for PrintingChannel {
    fn platform(&self) -> Platform {
        Platform::Fcm
    }
    fn capabilities(&self) -> ChannelCapabilities {
        ChannelCapabilities {
            max_payload_bytes: 4096,
            silent_push: true,
            collapse: true,
        }
    }
    async fn send(&self, push: &Push) -> Result<Accepted, PushError> {
        println!(
            "  [dispatcher] push {:?} of notification {:?} to endpoint {} (attempt {})",
            push.kind, push.notification_id, push.endpoint.id, push.attempt
        );
        self.pushed.notify_one();
        Ok(Accepted::default())
    }
}

#[derive(Clone)]
struct AppState {
    tidings: Tidings,
    store: PgStore,
    /// The host's own pool for its business tables.
    pool: Pool<AsyncPgConnection>,
}

#[derive(Deserialize)]
struct Device {
    user: String,
    fcm_token: String,
}

async fn register(
    State(s): State<AppState>,
    Json(d): Json<Device>,
) -> Result<(StatusCode, Json<serde_json::Value>), (StatusCode, String)> {
    let address = PushAddress::Fcm { token: d.fcm_token };
    let endpoint = s
        .tidings
        .register_endpoint(EndpointRegistration::new("shop", d.user, address))
        .await
        .map_err(|e| (StatusCode::BAD_REQUEST, e.to_string()))?;
    Ok((
        StatusCode::CREATED,
        Json(serde_json::json!({ "endpoint_id": endpoint.id.to_string() })),
    ))
}

#[derive(Deserialize)]
struct Ship {
    user: String,
    /// Demo switch: fail the business write after the notification was written.
    #[serde(default)]
    fail_after_notifying: bool,
}

/// Marks the order shipped and writes "your order shipped" in the same transaction: both
/// commit, or neither does.
async fn ship(
    State(s): State<AppState>,
    Path(order): Path<i64>,
    Json(req): Json<Ship>,
) -> Result<Json<serde_json::Value>, (StatusCode, String)> {
    let notification = s
        .tidings
        .prepare(
            NewNotification::new("shop", req.user.clone(), format!("order-{order}-shipped"))
                .title(format!("Order {order} shipped")),
        )
        .map_err(|e| (StatusCode::BAD_REQUEST, e.to_string()))?;
    let mut pooled = s
        .pool
        .get()
        .await
        .map_err(|e| (StatusCode::SERVICE_UNAVAILABLE, e.to_string()))?;
    let conn: &mut AsyncPgConnection = &mut pooled;
    let store = s.store.clone();
    let fail = req.fail_after_notifying;
    let user = req.user;
    let result = conn
        .transaction::<_, TransactionError, _>(|conn| {
            async move {
                diesel::sql_query(
                    "INSERT INTO shop.orders (id, customer, state) VALUES ($1, $2, 'shipped')
                     ON CONFLICT (id) DO UPDATE SET state = 'shipped'",
                )
                .bind::<diesel::sql_types::BigInt, _>(order)
                .bind::<diesel::sql_types::Text, _>(user)
                .execute(conn)
                .await?;
                let inserted = store.insert_notification_in(conn, notification).await?;
                if fail {
                    // Any error here rolls back the order and the notification together.
                    return Err(diesel::result::Error::RollbackTransaction.into());
                }
                Ok(inserted)
            }
            .scope_boxed()
        })
        .await;
    match result {
        Ok(inserted) => Ok(Json(serde_json::json!({
            "order": order,
            "state": "shipped",
            "notification_id": inserted.notification.id.to_string(),
            "deliveries": inserted.deliveries,
        }))),
        Err(e) => Err((StatusCode::CONFLICT, format!("order not shipped: {e}"))),
    }
}

async fn history(
    State(s): State<AppState>,
    Path(user): Path<String>,
) -> Result<Json<serde_json::Value>, (StatusCode, String)> {
    let page = s
        .tidings
        .history(&"shop".into(), &user.into(), Default::default(), None, 50)
        .await
        .map_err(|e| (StatusCode::INTERNAL_SERVER_ERROR, e.to_string()))?;
    Ok(Json(serde_json::to_value(&page.items).unwrap_or_default()))
}

async fn call(
    router: &Router,
    method: &str,
    uri: &str,
    body: serde_json::Value,
) -> (StatusCode, String) {
    let request = Request::builder()
        .method(method)
        .uri(uri)
        .header("content-type", "application/json")
        .body(Body::from(body.to_string()))
        .expect("request");
    let response = router.clone().oneshot(request).await.expect("infallible");
    let status = response.status();
    let bytes = axum::body::to_bytes(response.into_body(), 1 << 20)
        .await
        .unwrap_or_default();
    (status, String::from_utf8_lossy(&bytes).into_owned())
}

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error + Send + Sync>> {
    let url = std::env::var("DATABASE_URL")
        .map_err(|_| "set DATABASE_URL, e.g. postgres://postgres@127.0.0.1:5432/test")?;
    let serve = std::env::args().any(|a| a == "--serve");

    println!("connecting to PostgreSQL and migrating schema tidings_example");
    let store = PgStore::connect(PgStoreConfig::new(url.clone()).schema("tidings_example")).await?;
    let report = store.migrate().await?;
    println!(
        "  migrations applied now: {:?}; schema at {}",
        report.applied, report.current
    );

    println!("creating the host's own table shop.orders");
    let mut setup = AsyncPgConnection::establish(&url).await?;
    diesel::sql_query("CREATE SCHEMA IF NOT EXISTS shop")
        .execute(&mut setup)
        .await?;
    diesel::sql_query(
        "CREATE TABLE IF NOT EXISTS shop.orders (id bigint PRIMARY KEY, customer text NOT NULL, state text NOT NULL)",
    )
    .execute(&mut setup)
    .await?;

    let pushed = Arc::new(Notify::new());
    let tidings = Tidings::builder()
        .store(store.clone())
        .channel(PrintingChannel {
            pushed: pushed.clone(),
        })
        .app(App::new("shop"))
        .build()?;
    let pool = Pool::builder()
        .max_size(8)
        .build(AsyncDieselConnectionManager::<AsyncPgConnection>::new(
            url.clone(),
        ))
        .await?;
    let state = AppState {
        tidings: tidings.clone(),
        store,
        pool,
    };
    let router = Router::new()
        .route("/devices", post(register))
        .route("/orders/{id}/ship", post(ship))
        .route("/users/{user}/notifications", get(history))
        .with_state(state);

    // The dispatcher runs next to the web server; idle, it sleeps until PostgreSQL's NOTIFY
    // says a notification was committed (here or on any other instance).
    let (stop, mut stopped) = tokio::sync::watch::channel(false);
    let dispatcher = tidings.dispatcher().run(async move {
        let _ = stopped.wait_for(|s| *s).await;
    });

    let host = async {
        if serve {
            let listener = tokio::net::TcpListener::bind("127.0.0.1:3000").await?;
            println!("listening on http://127.0.0.1:3000 (Ctrl-C to stop)");
            axum::serve(listener, router).await?;
            return Ok::<(), Box<dyn std::error::Error + Send + Sync>>(());
        }
        let run = uuid::Uuid::new_v4().simple().to_string();
        let user = format!("alice-{}", &run[..8]);
        let order = i64::from(fastrand::u32(..));

        println!("POST /devices: {user} registers a phone");
        let (status, body) = call(
            &router,
            "POST",
            "/devices",
            serde_json::json!({ "user": user, "fcm_token": format!("token-{run}") }),
        )
        .await;
        println!("  {status} {body}");

        println!(
            "POST /orders/{}/ship with a business failure after notifying",
            order + 1
        );
        let (status, body) = call(
            &router,
            "POST",
            &format!("/orders/{}/ship", order + 1),
            serde_json::json!({ "user": user, "fail_after_notifying": true }),
        )
        .await;
        println!("  {status} {body}");
        println!("  -> rolled back: no order row, no notification, nothing to push");

        println!("POST /orders/{order}/ship: order update and notification in one transaction");
        let got_push = pushed.notified();
        let (status, body) = call(
            &router,
            "POST",
            &format!("/orders/{order}/ship"),
            serde_json::json!({ "user": user }),
        )
        .await;
        println!("  {status} {body}");
        tokio::time::timeout(Duration::from_secs(10), got_push)
            .await
            .map_err(|_| "the dispatcher did not push within 10 s")?;

        println!("GET /users/{user}/notifications");
        let (status, body) = call(
            &router,
            "GET",
            &format!("/users/{user}/notifications"),
            serde_json::json!(null),
        )
        .await;
        println!("  {status} {body}");
        Ok(())
    };
    let (dispatched, hosted) = tokio::join!(dispatcher, async {
        let result = host.await;
        stop.send_replace(true);
        result
    });
    hosted?;
    dispatched?;
    println!("done");
    Ok(())
}
