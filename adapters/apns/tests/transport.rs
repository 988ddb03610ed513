//! The HTTP/2 transport against the loopback APNs fake: a dropped connection, a GOAWAY with
//! requests in flight, and a timeout, each followed by pushes that succeed.

mod common;

use std::time::Duration;

use common::{builder, endpoint, key, push, token_mock, visual};
use futures::future::join_all;
use tidings::{PushChannel, PushErrorKind};
use tidings_testkit::apns::ApnsReply;

#[tokio::test]
async fn a_dropped_connection_fails_the_push_as_retryable_and_the_next_one_reconnects() {
    let k = key("KEY0000001");
    let mock = token_mock(&k).await;
    let channel = builder(&mock, "chat", &k).build().unwrap();
    let ep = endpoint("chat", "d1d1");
    channel.send(&push(&ep, visual("0", "x"))).await.unwrap();
    mock.script_once("d1d1", ApnsReply::DropConnection);

    let err = channel
        .send(&push(&ep, visual("1", "x")))
        .await
        .unwrap_err();
    assert_eq!(err.kind(), PushErrorKind::Unavailable, "{err:?}");
    assert!(err.is_retryable() && !err.endpoint_gone());
    assert!(
        !format!("{err:?} {err}").contains("d1d1"),
        "no device token in errors: {err:?}"
    );

    channel.send(&push(&ep, visual("2", "x"))).await.unwrap();
    let statuses: Vec<_> = mock.requests_for("d1d1").iter().map(|r| r.status).collect();
    assert_eq!(statuses, vec![Some(200), None, Some(200)]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn after_a_goaway_concurrent_pushes_get_through_on_a_new_connection() {
    let k = key("KEY0000001");
    let mock = token_mock(&k).await;
    let channel = builder(&mock, "chat", &k).build().unwrap();
    channel
        .send(&push(&endpoint("chat", "e0e0"), visual("warm", "x")))
        .await
        .unwrap();
    mock.script_once("e1e1", ApnsReply::GoAway);
    let mut pushes = vec![push(&endpoint("chat", "e1e1"), visual("goaway", "x"))];
    pushes.extend(
        (0..30).map(|i| push(&endpoint("chat", &format!("{i:04x}e2e2")), visual("t", "b"))),
    );

    let results = join_all(pushes.iter().map(|p| channel.send(p))).await;

    // The push whose stream the fake reset fails as retryable; every other one either went out
    // before the GOAWAY or was refused unprocessed and resent on the new connection.
    let err = results[0].as_ref().unwrap_err();
    assert!(err.is_retryable(), "{err:?}");
    for r in &results[1..] {
        assert!(r.is_ok(), "{r:?}");
    }
    // Refused streams were not processed: each push reached the fake once.
    for i in 0..30 {
        let seen = mock.requests_for(&format!("{i:04x}e2e2"));
        assert_eq!(seen.len(), 1, "{seen:?}");
    }
    let after: Vec<_> = (0..5)
        .map(|i| push(&endpoint("chat", &format!("{i:04x}e3e3")), visual("t", "b")))
        .collect();
    for r in join_all(after.iter().map(|p| channel.send(p))).await {
        r.unwrap();
    }
}

#[tokio::test]
async fn a_timed_out_push_leaves_the_connection_usable() {
    let k = key("KEY0000001");
    let mock = token_mock(&k).await;
    let channel = builder(&mock, "chat", &k)
        .request_timeout(Duration::from_millis(300))
        .build()
        .unwrap();
    let ep = endpoint("chat", "f1f1");
    channel.send(&push(&ep, visual("0", "x"))).await.unwrap();
    mock.script_once("f1f1", ApnsReply::slow(Duration::from_secs(2)));

    let err = channel
        .send(&push(&ep, visual("1", "x")))
        .await
        .unwrap_err();
    assert_eq!(err.kind(), PushErrorKind::Timeout, "{err:?}");
    assert!(err.is_retryable());

    channel.send(&push(&ep, visual("2", "x"))).await.unwrap();
}
