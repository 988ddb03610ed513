//! Fixed test data and scaffolding for a channel crate's own tests: an endpoint, a push and
//! visual content with the documented values below, and [`EndToEnd`], a `Tidings` wired to one
//! channel on a manual clock.
//!
//! A test that relies on one of the values (a sequence number, a collapse id, a group, a
//! priority, an expiry) should still set it after calling the fixture, so that it reads on its
//! own: `let mut p = push(address, content); p.sequence = 7;`.
//!
//! The values:
//!
//! - app [`APP`] (`chat`), user [`USER`] (`alice`);
//! - every time is [`T0`] (2026-01-01T00:00:00Z): the endpoint is registered and last seen then,
//!   the push is sent then and expires [`LIFETIME`] (an hour) later;
//! - the push is a first attempt (`attempt` 1) of a [`DeliveryKind::Notification`] with a fresh
//!   delivery id and notification id, sequence 1, [`Priority::Normal`], collapse id
//!   [`COLLAPSE_ID`] (`collapse-1`), no group and no display TTL;
//! - the endpoint is active, with a fresh id, no installation id and an address that never
//!   expires.
//!
//! Nothing here needs a feature of the kit: it uses only `tidings` types.

use std::sync::Arc;
use std::time::Duration;

use tidings::{
    AppId, DeliveryId, DeliveryKind, DispatchReport, Dispatcher, DispatcherConfig, Endpoint,
    EndpointRegistration, ManualClock, NewNotification, Notification, NotificationId, Priority,
    Push, PushAddress, PushContent, StatePatch, Tidings, TidingsBuilder, Timestamp, UserId,
    VisualContent,
};

use crate::store::fixtures::endpoint_with;
pub use crate::store::fixtures::T0;

/// The app of every fixture endpoint and push.
pub const APP: &str = "chat";
/// The user of every fixture endpoint.
pub const USER: &str = "alice";
/// How long after it is sent a fixture push expires: an hour.
pub const LIFETIME: Duration = Duration::from_secs(3600);
/// The collapse id of a fixture push.
pub const COLLAPSE_ID: &str = "collapse-1";

/// How far [`EndToEnd::dismiss_from`] moves the clock before it dispatches the sync signals:
/// past the default two-second coalescing window.
pub const SYNC_WAIT: Duration = Duration::from_secs(3);

/// An active endpoint of [`APP`] for [`USER`] at `address`, registered at [`T0`], with a fresh
/// id.
pub fn endpoint(address: PushAddress) -> Arc<Endpoint> {
    Arc::new(endpoint_with(
        &AppId::new(APP),
        &UserId::new(USER),
        address,
        T0,
    ))
}

/// A first-attempt notification push of `content` to [`endpoint`]`(address)`, sent at [`T0`]
/// and expiring [`LIFETIME`] later, with sequence 1, normal priority, collapse id
/// [`COLLAPSE_ID`], no group and fresh delivery and notification ids.
pub fn push(address: PushAddress, content: PushContent) -> Push {
    first_attempt(endpoint(address), T0, COLLAPSE_ID, content)
}

/// A title with a body.
pub fn visual(title: &str, body: &str) -> VisualContent {
    VisualContent {
        title: title.to_owned(),
        body: Some(body.to_owned()),
    }
}

/// A title without a body.
pub fn title_only(title: &str) -> VisualContent {
    VisualContent {
        title: title.to_owned(),
        body: None,
    }
}

/// A first-attempt notification push of `content` to `endpoint`, sent at `sent_at` and expiring
/// [`LIFETIME`] later, with sequence 1, normal priority, `collapse_id`, no group and fresh ids.
pub(super) fn first_attempt(
    endpoint: Arc<Endpoint>,
    sent_at: Timestamp,
    collapse_id: &str,
    content: PushContent,
) -> Push {
    Push {
        delivery_id: DeliveryId::new_random(),
        kind: DeliveryKind::Notification,
        app: endpoint.app.clone(),
        endpoint,
        notification_id: Some(NotificationId::new_random()),
        sequence: 1,
        priority: Priority::Normal,
        collapse_id: collapse_id.to_owned(),
        group: None,
        display_ttl: None,
        expires_at: sent_at.plus(LIFETIME),
        sent_at,
        attempt: 1,
        content,
    }
}

/// `Tidings` with one channel, on a manual clock, next to the fake of the channel's provider:
/// the scaffolding of a channel crate's end-to-end tests. Every method panics on an error, as an
/// assertion would.
#[derive(Debug)]
pub struct EndToEnd<M> {
    /// The provider's fake, which the test scripts and reads.
    pub mock: M,
    /// The handle, built on [`clock`](Self::clock).
    pub tidings: Tidings,
    /// The clock the handle reads; advance it to make retries and sync signals due.
    pub clock: ManualClock,
    /// A dispatcher with the default configuration but no backoff jitter, so that retry times
    /// are exact.
    pub dispatcher: Dispatcher,
}

impl<M> EndToEnd<M> {
    /// Builds `builder` (its store, channel, apps and any address policy already set) on
    /// `clock`, and its dispatcher.
    pub fn new(mock: M, clock: ManualClock, builder: TidingsBuilder) -> Self {
        let tidings = builder
            .clock(clock.clone())
            .build()
            .expect("the end-to-end Tidings builds");
        let mut config = DispatcherConfig::default();
        config.backoff.jitter = false;
        let dispatcher = tidings
            .dispatcher_with(config)
            .expect("the default dispatcher configuration is valid");
        EndToEnd {
            mock,
            tidings,
            clock,
            dispatcher,
        }
    }

    /// Registers `address` for `user` of `app`; returns the endpoint as stored.
    pub async fn register(&self, app: &str, user: &str, address: PushAddress) -> Endpoint {
        self.tidings
            .register_endpoint(EndpointRegistration::new(app, user, address))
            .await
            .unwrap_or_else(|e| panic!("registering an endpoint for {user} failed: {e:?}"))
    }

    /// Sends `user` of `app` the notification `app_notification_id` with `title` (and nothing
    /// else); returns it as stored.
    pub async fn notify(
        &self,
        app: &str,
        user: &str,
        app_notification_id: &str,
        title: &str,
    ) -> Notification {
        self.tidings
            .send(NewNotification::new(app, user, app_notification_id).title(title))
            .await
            .unwrap_or_else(|e| panic!("sending {app_notification_id} failed: {e:?}"))
    }

    /// Runs the dispatcher until nothing is due.
    pub async fn run(&self) -> DispatchReport {
        self.dispatcher
            .run_until_idle()
            .await
            .unwrap_or_else(|e| panic!("the dispatcher failed: {e:?}"))
    }

    /// The "dismissed on one device" scenario: sends the user of `origin` a notification
    /// (`m1`, titled `Hi`) and dispatches it, dismisses it from `origin`, moves the clock
    /// [`SYNC_WAIT`] ahead and dispatches the sync signals. Returns the notification as the
    /// change left it: its `sequence` is the one the signals carry.
    pub async fn dismiss_from(&self, origin: &Endpoint) -> Notification {
        let n = self
            .notify(origin.app.as_str(), origin.user.as_str(), "m1", "Hi")
            .await;
        self.run().await;
        let changed = self
            .tidings
            .update_state(
                &origin.app,
                &origin.user,
                n.id,
                StatePatch::dismissed(),
                Some(origin.id),
            )
            .await
            .unwrap_or_else(|e| panic!("dismissing the notification failed: {e:?}"));
        self.clock.advance(SYNC_WAIT);
        self.run().await;
        changed
    }

    /// The "credentials expire between two notifications" scenario: sends the user of
    /// `endpoint` a notification (`m1`, titled `One`) and dispatches it, calls `expire` (which
    /// makes the credentials the channel cached stale at the fake), sends another (`m2`, titled
    /// `Two`) and dispatches; asserts that the second was accepted at once, without a retry.
    pub async fn assert_credentials_renewed(
        &self,
        endpoint: &Endpoint,
        expire: impl FnOnce(&Self),
    ) {
        let (app, user) = (endpoint.app.as_str(), endpoint.user.as_str());
        self.notify(app, user, "m1", "One").await;
        self.run().await;

        expire(self);
        self.notify(app, user, "m2", "Two").await;
        let report = self.run().await;

        assert_eq!((report.accepted, report.retried), (1, 0), "{report:?}");
    }

    /// The "endpoint gone" scenario, for a fake already scripted to answer `endpoint` as gone:
    /// sends its user a notification (`m1`, titled `Hi`) and dispatches it; asserts that the
    /// dispatcher found one endpoint gone and that `endpoint` is now inactive with `reason`;
    /// then sends another (`m2`, titled `Again`) and dispatches, so that the caller can check
    /// that nothing more reached the fake.
    pub async fn assert_gone_deactivates(&self, endpoint: &Endpoint, reason: &str) {
        let (app, user) = (endpoint.app.as_str(), endpoint.user.as_str());
        self.notify(app, user, "m1", "Hi").await;

        let report = self.run().await;

        assert_eq!(report.gone, 1, "{report:?}");
        let endpoints = self
            .tidings
            .endpoints(&endpoint.app, &endpoint.user)
            .await
            .unwrap_or_else(|e| panic!("listing the endpoints failed: {e:?}"));
        let after = endpoints
            .iter()
            .find(|e| e.id == endpoint.id)
            .expect("the gone endpoint is still listed");
        assert!(!after.active, "a gone endpoint is deactivated: {after:?}");
        assert_eq!(after.deactivation_reason.as_deref(), Some(reason));

        self.notify(app, user, "m2", "Again").await;
        self.run().await;
    }
}
