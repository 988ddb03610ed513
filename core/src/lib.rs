#![doc = include_str!("../README.md")]

pub mod app;
pub mod channel;
pub mod delivery;
pub mod endpoint;
mod engine;
pub mod error;
pub mod id;
pub mod identity;
pub mod notification;
pub mod platform;
pub mod store;
pub mod time;
pub mod token;

pub use app::{App, BackgroundBudget, PayloadMode};
pub use channel::{Accepted, ChannelCapabilities, Push, PushChannel, PushContent};
pub use delivery::{Delivery, DeliveryKind, DeliveryOutcome, LeasedDelivery, Outcome};
pub use endpoint::{AddressPolicy, ApnsEnvironment, Endpoint, EndpointRegistration, PushAddress};
pub use engine::{
    Backoff, DispatchReport, Dispatcher, DispatcherConfig, SweepReport, Tidings, TidingsBuilder,
    MAX_BULK_IDS,
};
pub use error::{
    BoxError, Error, ErrorKind, IdentityError, IdentityErrorKind, PushError, PushErrorKind, Retry,
    StoreError, StoreErrorKind, ValidationError,
};
pub use id::{AppId, DeliveryId, EndpointId, LeaseToken, NotificationId, UserId};
pub use identity::{Credential, Identity, Principal};
pub use notification::{
    FallbackPolicy, NewNotification, Notification, NotificationState, Priority, ReadState,
    StatePatch, Status, UserAction, VisualContent,
};
pub use platform::{Platform, PlatformSet};
pub use store::{
    BulkStateUpdate, ChangePage, ChangesQuery, HistoryCursor, HistoryFilter, HistoryPage,
    HistoryQuery, Inserted, LeaseRequest, OutcomeReport, PurgeReport, StateUpdate, Store,
    SyncSchedule,
};
pub use time::{Clock, ManualClock, SystemClock, Timestamp};

#[cfg(feature = "mock")]
pub use channel::MockPushChannel;
#[cfg(feature = "mock")]
pub use identity::MockIdentity;
#[cfg(feature = "mock")]
pub use store::MockStore;
