//! The `mock` feature's mockall mocks stand in for adapters: here a store outage must surface
//! as a retryable error from the handle and the dispatcher, never a panic or a lost send.
#![cfg(feature = "mock")]

use tidings::{
    App, ErrorKind, ManualClock, MockPushChannel, MockStore, NewNotification, Platform, StoreError,
    Tidings,
};

fn tidings_with(store: MockStore) -> Tidings {
    let mut channel = MockPushChannel::new();
    channel.expect_platform().return_const(Platform::Fcm);
    Tidings::builder()
        .store(store)
        .channel(channel)
        .clock(ManualClock::starting_2026())
        .app(App::new("chat"))
        .build()
        .expect("valid configuration")
}

#[tokio::test]
async fn a_store_outage_during_send_is_a_retryable_error() {
    let mut store = MockStore::new();
    store
        .expect_insert_notification()
        .times(1)
        .returning(|_| Err(StoreError::unavailable("connection refused")));
    let tidings = tidings_with(store);

    let err = tidings
        .send(NewNotification::new("chat", "alice", "1").title("Hi"))
        .await
        .expect_err("the store is down");

    assert_eq!(err.kind(), ErrorKind::Unavailable);
    assert!(err.is_retryable());
}

#[tokio::test]
async fn invalid_input_never_reaches_the_store() {
    // No expectations: any store call would panic the mock.
    let tidings = tidings_with(MockStore::new());
    let err = tidings
        .send(NewNotification::new("chat", "alice", "1"))
        .await
        .expect_err("no content");
    assert_eq!(err.field(), Some("content"));
}

#[tokio::test]
async fn a_store_outage_while_leasing_is_a_retryable_dispatch_error() {
    let mut store = MockStore::new();
    store
        .expect_lease_due()
        .returning(|_| Err(StoreError::unavailable("pool timed out")));
    let tidings = tidings_with(store);

    let err = tidings
        .dispatcher()
        .run_once()
        .await
        .expect_err("the store is down");

    assert!(err.is_retryable());
}
