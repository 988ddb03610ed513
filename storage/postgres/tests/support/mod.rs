//! A push channel that records every push, for tests with real dispatchers.
#![allow(dead_code, unreachable_pub)]

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use async_trait::async_trait;
use tidings::{
    Accepted, App, ChannelCapabilities, DeliveryId, DispatcherConfig, Platform, Push, PushChannel,
    PushError, Store, Tidings,
};
use tokio::sync::Notify;

/// Which dispatchers pushed each delivery, shared by every channel of a test.
pub type PushLog = Arc<Mutex<HashMap<DeliveryId, Vec<usize>>>>;

/// An FCM channel that accepts every push at once and logs it under its dispatcher's number.
/// With `hang_after`, the push numbered `n` and every later one is logged, then never answers
/// (a dispatcher stuck there is then aborted, like a crashed process).
#[derive(Debug)]
pub struct CountingChannel {
    pub who: usize,
    pub log: PushLog,
    pub hang_after: Option<(usize, Arc<Notify>)>,
    pub pushed: Arc<Notify>,
    sent: Mutex<usize>,
}

impl CountingChannel {
    pub fn new(who: usize, log: PushLog, pushed: Arc<Notify>) -> Self {
        CountingChannel {
            who,
            log,
            hang_after: None,
            pushed,
            sent: Mutex::new(0),
        }
    }
}

#[async_trait]
impl PushChannel for CountingChannel {
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
        self.log
            .lock()
            .expect("log lock")
            .entry(push.delivery_id)
            .or_default()
            .push(self.who);
        self.pushed.notify_waiters();
        let n = {
            let mut sent = self.sent.lock().expect("sent lock");
            *sent += 1;
            *sent
        };
        if let Some((after, crashed)) = &self.hang_after {
            if n >= *after {
                crashed.notify_one();
                std::future::pending::<()>().await;
            }
        }
        Ok(Accepted::default())
    }
}

/// A Tidings instance on `store` with app `app` and one channel.
pub fn tidings(
    store: Arc<dyn Store>,
    channel: CountingChannel,
    clock: tidings::ManualClock,
) -> Tidings {
    Tidings::builder()
        .shared_store(store)
        .channel(channel)
        .clock(clock)
        .app(App::new("app"))
        .build()
        .expect("tidings")
}

/// Small batches, a long lease, quick idle polls, no sweeps.
pub fn dispatcher_config() -> DispatcherConfig {
    DispatcherConfig {
        batch_size: 100,
        concurrency_per_channel: 100,
        lease_duration: Duration::from_secs(60),
        attempt_timeout: Duration::from_secs(30),
        idle_poll: Duration::from_millis(50),
        sweep_interval: None,
        ..DispatcherConfig::default()
    }
}
