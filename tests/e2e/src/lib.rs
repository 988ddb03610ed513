//! A harness for end-to-end tests: a [`Tidings`] with in-memory adapters on every platform, a
//! manual clock, and one user's four devices.

use std::time::Duration;

use tidings::{
    ApnsEnvironment, App, Clock, DispatchReport, Dispatcher, DispatcherConfig, Endpoint,
    EndpointRegistration, ManualClock, NewNotification, Platform, PushAddress, Tidings, Timestamp,
};
use tidings_memory::{MemoryStore, RecordingChannel};

/// The app every harness configures.
pub const APP: &str = "chat";

/// A Tidings with a [`MemoryStore`], a [`RecordingChannel`] per platform and a [`ManualClock`].
#[derive(Debug)]
pub struct Harness {
    /// The handle under test.
    pub tidings: Tidings,
    /// The clock it reads.
    pub clock: ManualClock,
    /// The store behind it.
    pub store: MemoryStore,
    /// Recorded APNs pushes.
    pub apns: RecordingChannel,
    /// Recorded FCM pushes.
    pub fcm: RecordingChannel,
    /// Recorded WNS pushes.
    pub wns: RecordingChannel,
    /// Recorded Web Push pushes.
    pub webpush: RecordingChannel,
    /// A dispatcher without jitter.
    pub dispatcher: Dispatcher,
}

/// One user's four devices.
#[derive(Debug, Clone)]
pub struct Devices {
    /// An iPhone (APNs).
    pub iphone: Endpoint,
    /// An Android phone (FCM).
    pub android: Endpoint,
    /// A Windows PC (WNS).
    pub windows: Endpoint,
    /// A browser (Web Push).
    pub browser: Endpoint,
}

impl Devices {
    /// All four.
    pub fn all(&self) -> [&Endpoint; 4] {
        [&self.iphone, &self.android, &self.windows, &self.browser]
    }
}

impl Default for Harness {
    fn default() -> Self {
        Harness::new()
    }
}

impl Harness {
    /// A harness whose app uses the default settings (shoulder tap).
    pub fn new() -> Self {
        Harness::with_app(App::new(APP))
    }

    /// A harness with the given app settings (its id should be [`APP`]).
    pub fn with_app(app: App) -> Self {
        let clock = ManualClock::starting_2026();
        let store = MemoryStore::new();
        let apns = RecordingChannel::new(Platform::Apns);
        let fcm = RecordingChannel::new(Platform::Fcm);
        let wns = RecordingChannel::new(Platform::Wns);
        let webpush = RecordingChannel::new(Platform::WebPush);
        let tidings = Tidings::builder()
            .store(store.clone())
            .channel(apns.clone())
            .channel(fcm.clone())
            .channel(wns.clone())
            .channel(webpush.clone())
            .clock(clock.clone())
            .app(app)
            .build()
            .expect("valid configuration");
        let mut config = DispatcherConfig::default();
        config.backoff.jitter = false;
        config.lease_duration = Duration::from_secs(60);
        config.attempt_timeout = Duration::from_secs(5);
        let dispatcher = tidings
            .dispatcher_with(config)
            .expect("valid dispatcher config");
        Harness {
            tidings,
            clock,
            store,
            apns,
            fcm,
            wns,
            webpush,
            dispatcher,
        }
    }

    /// A harness with only an FCM channel.
    pub fn only_android() -> Self {
        let h = Harness::new();
        let tidings = Tidings::builder()
            .store(h.store.clone())
            .channel(h.fcm.clone())
            .clock(h.clock.clone())
            .app(App::new(APP))
            .build()
            .expect("valid configuration");
        let dispatcher = tidings.dispatcher();
        Harness {
            tidings,
            dispatcher,
            ..h
        }
    }

    /// The clock's time.
    pub fn clock_now(&self) -> Timestamp {
        self.clock.now()
    }

    /// The channel of `platform`.
    pub fn channel(&self, platform: Platform) -> &RecordingChannel {
        match platform {
            Platform::Apns => &self.apns,
            Platform::Fcm => &self.fcm,
            Platform::Wns => &self.wns,
            Platform::WebPush => &self.webpush,
        }
    }

    /// Pushes recorded on every channel.
    pub fn total_pushes(&self) -> usize {
        Platform::ALL.iter().map(|p| self.channel(*p).len()).sum()
    }

    /// Registers one device of each platform for `user`; `tag` keeps addresses unique.
    pub async fn register_devices(&self, user: &str, tag: u8) -> Devices {
        let mut out = Vec::new();
        for address in addresses(tag) {
            let reg = EndpointRegistration::new(APP, user, address);
            out.push(
                self.tidings
                    .register_endpoint(reg)
                    .await
                    .expect("valid registration"),
            );
        }
        let browser = out.pop().expect("four");
        let windows = out.pop().expect("four");
        let android = out.pop().expect("four");
        let iphone = out.pop().expect("four");
        Devices {
            iphone,
            android,
            windows,
            browser,
        }
    }

    /// Runs the dispatcher until nothing is due now.
    pub async fn dispatch(&self) -> DispatchReport {
        self.dispatcher.run_until_idle().await.expect("dispatch")
    }

    /// Moves the clock forward.
    pub fn advance(&self, d: Duration) {
        self.clock.advance(d);
    }
}

/// Valid push addresses, one per platform, distinct per `tag`.
pub fn addresses(tag: u8) -> [PushAddress; 4] {
    [
        PushAddress::Apns {
            token: format!("{tag:02x}").repeat(32),
            environment: ApnsEnvironment::Production,
        },
        PushAddress::Fcm {
            token: format!("fcm-token-{tag}:APA91bHun4MxP5egoKMwt2KZFBaFUH"),
        },
        PushAddress::Wns {
            channel_uri: format!("https://db5p.notify.windows.com/?token=AwYAAAD{tag}"),
        },
        PushAddress::WebPush {
            endpoint: format!("https://fcm.googleapis.com/fcm/send/browser-{tag}"),
            p256dh: "BCVxsr7N_eNgVRqvHtD0zTZsEc6-VV-JvLexhqUzORcxaOzi6-AYWXvTBHm4bjyPjs7Vd8pZGH6SRpkNtoIAiw4".into(),
            auth: "BTBZMqHH6r4Tts7J_aSIgg".into(),
        },
    ]
}

/// Parses a notification from JSON, as a host reading it from a request would; the error text
/// on failure.
pub fn from_json(json: &str) -> Result<NewNotification, String> {
    serde_json::from_str(json).map_err(|e| e.to_string())
}

/// The root README's embedding example, compiled and run as a doctest so it stays true.
#[doc = include_str!("../../../README.md")]
pub mod readme {}
