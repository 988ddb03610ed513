//! The engines and the [`Tidings`] handle.

mod backoff;
mod dispatch;
mod expiry;
mod fanout;
mod query;
mod service;
mod state;

use std::collections::HashMap;
use std::fmt;
use std::sync::Arc;
use std::time::Duration;

pub use backoff::Backoff;
pub use dispatch::{DispatchReport, Dispatcher, DispatcherConfig};
pub use expiry::SweepReport;
pub use state::MAX_BULK_IDS;

use crate::app::App;
use crate::channel::PushChannel;
use crate::endpoint::AddressPolicy;
use crate::error::{Error, ValidationError};
use crate::id::AppId;
use crate::identity::Identity;
use crate::platform::{Platform, PlatformSet};
use crate::store::Store;
use crate::time::{Clock, SystemClock};

/// The one entry point a host needs: send notifications, register endpoints, change state,
/// query history, and build the [`Dispatcher`] that pushes.
///
/// Cheap to clone; clones share everything. Build it with [`Tidings::builder`].
#[derive(Clone)]
pub struct Tidings {
    inner: Arc<Inner>,
}

struct Inner {
    store: Arc<dyn Store>,
    channels: HashMap<Platform, Arc<dyn PushChannel>>,
    identity: Option<Arc<dyn Identity>>,
    clock: Arc<dyn Clock>,
    apps: HashMap<AppId, App>,
    address_policy: AddressPolicy,
    sync_ttl: Duration,
    endpoint_stale_after: Option<Duration>,
}

impl fmt::Debug for Tidings {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut platforms: Vec<_> = self.inner.channels.keys().copied().collect();
        platforms.sort();
        f.debug_struct("Tidings")
            .field("store", &self.inner.store)
            .field("platforms", &platforms)
            .field("apps", &self.inner.apps.keys().collect::<Vec<_>>())
            .finish_non_exhaustive()
    }
}

impl Tidings {
    /// A builder.
    pub fn builder() -> TidingsBuilder {
        TidingsBuilder::default()
    }

    /// The store.
    pub fn store(&self) -> &Arc<dyn Store> {
        &self.inner.store
    }

    /// The clock.
    pub fn clock(&self) -> &Arc<dyn Clock> {
        &self.inner.clock
    }

    /// The address policy push addresses are checked against.
    pub fn address_policy(&self) -> &AddressPolicy {
        &self.inner.address_policy
    }

    /// The settings of `app`, or an error naming the `app` field when it is not configured.
    pub fn app(&self, app: &AppId) -> Result<&App, ValidationError> {
        self.inner
            .apps
            .get(app)
            .ok_or_else(|| ValidationError::new("app", format!("unknown app {:?}", app.as_str())))
    }

    /// The platforms that have a channel.
    pub fn platforms(&self) -> PlatformSet {
        self.inner.channels.keys().copied().collect()
    }

    /// The channel for `platform`, if configured.
    pub fn channel(&self, platform: Platform) -> Option<&Arc<dyn PushChannel>> {
        self.inner.channels.get(&platform)
    }

    /// Authenticates a client credential through the configured [`Identity`].
    pub async fn authenticate(
        &self,
        credential: &crate::identity::Credential,
    ) -> Result<crate::identity::Principal, Error> {
        let Some(identity) = &self.inner.identity else {
            return Err(crate::error::IdentityError::new(
                crate::error::IdentityErrorKind::Invalid,
                "no identity adapter is configured",
            )
            .into());
        };
        Ok(identity.authenticate(credential).await?)
    }
}

/// Builds a [`Tidings`] handle.
#[derive(Default)]
pub struct TidingsBuilder {
    store: Option<Arc<dyn Store>>,
    channels: Vec<Arc<dyn PushChannel>>,
    identity: Option<Arc<dyn Identity>>,
    clock: Option<Arc<dyn Clock>>,
    apps: Vec<App>,
    address_policy: Option<AddressPolicy>,
    sync_ttl: Option<Duration>,
    endpoint_stale_after: Option<Option<Duration>>,
}

impl fmt::Debug for TidingsBuilder {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("TidingsBuilder")
            .field("channels", &self.channels.len())
            .field("apps", &self.apps.len())
            .finish_non_exhaustive()
    }
}

impl TidingsBuilder {
    /// The store (required).
    #[must_use]
    pub fn store(mut self, store: impl Store) -> Self {
        self.store = Some(Arc::new(store));
        self
    }

    /// The store, shared with other code.
    #[must_use]
    pub fn shared_store(mut self, store: Arc<dyn Store>) -> Self {
        self.store = Some(store);
        self
    }

    /// Adds the channel for its platform (one per platform).
    #[must_use]
    pub fn channel(mut self, channel: impl PushChannel) -> Self {
        self.channels.push(Arc::new(channel));
        self
    }

    /// Adds a channel shared with other code.
    #[must_use]
    pub fn shared_channel(mut self, channel: Arc<dyn PushChannel>) -> Self {
        self.channels.push(channel);
        self
    }

    /// The identity adapter for client credentials.
    #[must_use]
    pub fn identity(mut self, identity: impl Identity) -> Self {
        self.identity = Some(Arc::new(identity));
        self
    }

    /// The clock (default: [`SystemClock`]).
    #[must_use]
    pub fn clock(mut self, clock: impl Clock) -> Self {
        self.clock = Some(Arc::new(clock));
        self
    }

    /// Adds an app (at least one is required).
    #[must_use]
    pub fn app(mut self, app: App) -> Self {
        self.apps.push(app);
        self
    }

    /// Which hosts client-supplied push URLs may name (default: [`AddressPolicy::default`]).
    #[must_use]
    pub fn address_policy(mut self, policy: AddressPolicy) -> Self {
        self.address_policy = Some(policy);
        self
    }

    /// How long a sync signal stays worth sending (default 1 hour).
    #[must_use]
    pub fn sync_ttl(mut self, ttl: Duration) -> Self {
        self.sync_ttl = Some(ttl);
        self
    }

    /// Endpoints not refreshed for this long are deactivated by the sweeper (default 90 days;
    /// `None` keeps them).
    #[must_use]
    pub fn endpoint_stale_after(mut self, after: Option<Duration>) -> Self {
        self.endpoint_stale_after = Some(after);
        self
    }

    /// Checks the configuration and builds the handle.
    pub fn build(self) -> Result<Tidings, ValidationError> {
        let store = self
            .store
            .ok_or_else(|| ValidationError::new("store", "a store is required"))?;
        if self.apps.is_empty() {
            return Err(ValidationError::new("apps", "configure at least one app"));
        }
        let mut apps = HashMap::new();
        for app in self.apps {
            app.validate()?;
            if apps.insert(app.id.clone(), app).is_some() {
                return Err(ValidationError::new("apps", "an app is configured twice"));
            }
        }
        let mut channels = HashMap::new();
        for channel in self.channels {
            let platform = channel.platform();
            if channels.insert(platform, channel).is_some() {
                return Err(ValidationError::new(
                    "channels",
                    format!("two channels for platform {platform}"),
                ));
            }
        }
        let sync_ttl = self.sync_ttl.unwrap_or(Duration::from_secs(3600));
        if sync_ttl.is_zero() {
            return Err(ValidationError::new("sync_ttl", "must be positive"));
        }
        Ok(Tidings {
            inner: Arc::new(Inner {
                store,
                channels,
                identity: self.identity,
                clock: self.clock.unwrap_or_else(|| Arc::new(SystemClock)),
                apps,
                address_policy: self.address_policy.unwrap_or_default(),
                sync_ttl,
                endpoint_stale_after: self
                    .endpoint_stale_after
                    .unwrap_or(Some(Duration::from_secs(90 * 24 * 3600))),
            }),
        })
    }
}
