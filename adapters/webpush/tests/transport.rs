//! Transport hardening against a hand-written loopback HTTP/1.1 server: redirects are not
//! followed and error bodies are read only up to the cap.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use tidings::{AddressPolicy, PushChannel, PushErrorKind};
use tidings_testkit::channel::{endpoint_for, push_to, visible};
use tidings_testkit::webpush::{Subscription, VapidKey};
use tidings_webpush::WebPushChannel;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpListener;

const APP: &str = "chat";

fn channel(timeout: Duration) -> WebPushChannel {
    WebPushChannel::builder()
        .vapid(
            APP,
            VapidKey::generate().pkcs8_pem(),
            "mailto:ops@example.com",
        )
        .address_policy(AddressPolicy::with_loopback_for_tests())
        .timeout(timeout)
        .build()
        .expect("a valid configuration")
}

/// Serves every connection on a fresh loopback port: reads the request head, writes `head`, then
/// `body_forever` chunks until the client goes away. Counts connections.
async fn serve(head: String, body_forever: bool) -> (String, Arc<AtomicUsize>) {
    let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let origin = format!("http://{}", listener.local_addr().expect("addr"));
    let connections = Arc::new(AtomicUsize::new(0));
    let counted = connections.clone();
    tokio::spawn(async move {
        while let Ok((mut stream, _)) = listener.accept().await {
            counted.fetch_add(1, Ordering::SeqCst);
            let head = head.clone();
            tokio::spawn(async move {
                let mut buf = vec![0u8; 16 * 1024];
                let _ = stream.read(&mut buf).await;
                if stream.write_all(head.as_bytes()).await.is_err() {
                    return;
                }
                if body_forever {
                    let chunk = format!("400\r\n{}\r\n", "x".repeat(0x400));
                    while stream.write_all(chunk.as_bytes()).await.is_ok() {}
                }
            });
        }
    });
    (origin, connections)
}

#[tokio::test]
async fn redirects_are_not_followed() {
    let (elsewhere, elsewhere_hits) = serve(
        "HTTP/1.1 201 Created\r\nContent-Length: 0\r\n\r\n".into(),
        false,
    )
    .await;
    let (origin, hits) = serve(
        format!("HTTP/1.1 307 Temporary Redirect\r\nLocation: {elsewhere}/push/x\r\nContent-Length: 0\r\n\r\n"),
        false,
    )
    .await;
    let sub = Subscription::generate(format!("{origin}/push/a"));
    let push = push_to(
        &endpoint_for(&APP.into(), sub.address()),
        visible("Hi", "there"),
    );
    let err = channel(Duration::from_secs(5))
        .send(&push)
        .await
        .unwrap_err();
    assert_eq!(err.kind(), PushErrorKind::Rejected, "{err:?}");
    assert_eq!(hits.load(Ordering::SeqCst), 1);
    assert_eq!(
        elsewhere_hits.load(Ordering::SeqCst),
        0,
        "the redirect was followed"
    );
}

#[tokio::test]
async fn an_endless_error_body_is_read_only_up_to_the_cap() {
    let (origin, _) = serve(
        "HTTP/1.1 403 Forbidden\r\nTransfer-Encoding: chunked\r\n\r\n".into(),
        true,
    )
    .await;
    let sub = Subscription::generate(format!("{origin}/push/a"));
    let push = push_to(
        &endpoint_for(&APP.into(), sub.address()),
        visible("Hi", "there"),
    );
    // Reading the whole body would never end and hit the timeout instead.
    let err = channel(Duration::from_secs(30))
        .send(&push)
        .await
        .unwrap_err();
    assert_eq!(err.kind(), PushErrorKind::Misconfigured, "{err:?}");
}
