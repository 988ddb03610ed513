//! Per-app settings.

use std::time::Duration;

use serde::{Deserialize, Serialize};

use crate::error::ValidationError;
use crate::id::AppId;
use crate::notification::{VisualContent, MAX_EXPIRY};

/// Whether content may travel through the vendors' push services.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum PayloadMode {
    /// The push carries only ids; the device fetches the content over the client API. Visible
    /// alerts show the app's placeholder text until the app's extension replaces it.
    #[default]
    ShoulderTap,
    /// Content goes in the push when it fits the platform's limit; otherwise a shoulder tap.
    Inline,
}

/// An app the host serves and its settings.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct App {
    /// Its id.
    pub id: AppId,
    /// Shoulder tap (default) or inline.
    #[serde(default)]
    pub payload_mode: PayloadMode,
    /// Expiry of notifications sent without one. Default 7 days.
    #[serde(default = "default_expiry", with = "crate::time::serde_secs")]
    pub default_expiry: Duration,
    /// Longest expiry accepted; at most 30 days (the default).
    #[serde(default = "max_expiry", with = "crate::time::serde_secs")]
    pub max_expiry: Duration,
    /// State changes within this window reach each other device as one sync signal. Default 2 s.
    #[serde(default = "sync_window", with = "crate::time::serde_secs")]
    pub sync_coalesce_window: Duration,
    /// The generic alert shown in shoulder-tap mode before the app fetches the content.
    #[serde(default = "placeholder")]
    pub placeholder: VisualContent,
}

fn default_expiry() -> Duration {
    Duration::from_secs(7 * 24 * 3600)
}
fn max_expiry() -> Duration {
    MAX_EXPIRY
}
fn sync_window() -> Duration {
    Duration::from_secs(2)
}
fn placeholder() -> VisualContent {
    VisualContent {
        title: "New notification".into(),
        body: None,
    }
}

impl App {
    /// An app with default settings.
    pub fn new(id: impl Into<AppId>) -> Self {
        App {
            id: id.into(),
            payload_mode: PayloadMode::ShoulderTap,
            default_expiry: default_expiry(),
            max_expiry: max_expiry(),
            sync_coalesce_window: sync_window(),
            placeholder: placeholder(),
        }
    }

    /// Sets the payload mode.
    #[must_use]
    pub fn payload_mode(mut self, mode: PayloadMode) -> Self {
        self.payload_mode = mode;
        self
    }

    /// Sets the default expiry.
    #[must_use]
    pub fn default_expiry(mut self, d: Duration) -> Self {
        self.default_expiry = d;
        self
    }

    /// Sets the maximum expiry (at most 30 days).
    #[must_use]
    pub fn max_expiry(mut self, d: Duration) -> Self {
        self.max_expiry = d;
        self
    }

    /// Sets the sync coalescing window.
    #[must_use]
    pub fn sync_coalesce_window(mut self, d: Duration) -> Self {
        self.sync_coalesce_window = d;
        self
    }

    /// Sets the placeholder alert text.
    #[must_use]
    pub fn placeholder(mut self, title: impl Into<String>, body: Option<String>) -> Self {
        self.placeholder = VisualContent {
            title: title.into(),
            body,
        };
        self
    }

    /// Checks the settings.
    pub fn validate(&self) -> Result<(), ValidationError> {
        if self.id.as_str().is_empty() {
            return Err(ValidationError::new("app.id", "must not be empty"));
        }
        if self.max_expiry > MAX_EXPIRY || self.max_expiry.is_zero() {
            return Err(ValidationError::new(
                "app.max_expiry",
                "must be between 1 s and 30 days",
            ));
        }
        if self.default_expiry > self.max_expiry || self.default_expiry.is_zero() {
            return Err(ValidationError::new(
                "app.default_expiry",
                "must be positive and at most max_expiry",
            ));
        }
        if self.sync_coalesce_window > Duration::from_secs(3600) {
            return Err(ValidationError::new(
                "app.sync_coalesce_window",
                "must be at most one hour",
            ));
        }
        if self.placeholder.title.trim().is_empty() {
            return Err(ValidationError::new(
                "app.placeholder.title",
                "must not be empty",
            ));
        }
        Ok(())
    }
}
