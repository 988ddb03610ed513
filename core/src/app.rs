//! Per-app settings.

use std::time::Duration;

use serde::{Deserialize, Serialize};

use crate::error::ValidationError;
use crate::id::AppId;
use crate::notification::{VisualContent, MAX_EXPIRY};
use crate::time::Timestamp;

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
    /// How many APNs background pushes (sync signals) one device gets: by default 3 at once,
    /// then one per 20 minutes, Apple's "two or three per hour". `None` (`null` in a
    /// configuration file) sends every signal as soon as its coalescing window ends.
    #[serde(default = "background_budget")]
    pub apns_background_budget: Option<BackgroundBudget>,
}

/// A per-device cap on APNs background pushes, as a token bucket: `burst` signals may go at
/// once, and the bucket refills one signal per `interval`.
///
/// Apple treats background pushes (`content-available`, priority 5) as low priority and
/// throttles a device that gets too many: "don't try to send more than two or three per hour".
/// A signal over the budget is not dropped: it waits until the budget allows it, and every
/// state change made meanwhile folds into it (a pending signal absorbs later ones), so the
/// device still learns of every change, later. A device that opens the app catches up through
/// the change feed whatever the budget.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct BackgroundBudget {
    /// Signals that may go back to back (at least 1).
    pub burst: u32,
    /// One more signal is allowed per interval (1 s to 24 h).
    #[serde(with = "crate::time::serde_secs")]
    pub interval: Duration,
}

impl Default for BackgroundBudget {
    /// Three at once, then one per 20 minutes.
    fn default() -> Self {
        BackgroundBudget {
            burst: 3,
            interval: Duration::from_secs(20 * 60),
        }
    }
}

impl BackgroundBudget {
    /// `burst` signals at once, then one per `interval`.
    pub fn new(burst: u32, interval: Duration) -> Self {
        BackgroundBudget { burst, interval }
    }

    /// Admits one signal that would be due at `due`, for a device whose budget state is `tat`
    /// (the bucket's "theoretical arrival time", `None` for a device that never had a signal).
    /// Returns when the signal may go (`due` or later) and the device's new state.
    ///
    /// This is the generic cell rate algorithm: a signal may go at `tat - (burst - 1) *
    /// interval` or later, and each admitted signal moves `tat` one interval past the later of
    /// itself and the previous `tat`. Stores call it (or do the same sums in their query
    /// language) when they enqueue a sync signal for an APNs endpoint; a signal folded into a
    /// pending one spends nothing.
    pub fn admit(&self, tat: Option<Timestamp>, due: Timestamp) -> (Timestamp, Timestamp) {
        let interval = self.interval_micros();
        let allowed = match tat {
            Some(tat) => due.max(Timestamp::from_micros(
                tat.as_micros().saturating_sub(self.tolerance_micros()),
            )),
            None => due,
        };
        let base = tat.map_or(allowed, |t| t.max(allowed));
        (
            allowed,
            Timestamp::from_micros(base.as_micros().saturating_add(interval)),
        )
    }

    /// `interval` in microseconds, as stores keep it.
    pub fn interval_micros(&self) -> i64 {
        i64::try_from(self.interval.as_micros()).unwrap_or(i64::MAX)
    }

    /// `(burst - 1) * interval` in microseconds: how far ahead of `tat` a signal may go.
    pub fn tolerance_micros(&self) -> i64 {
        self.interval_micros()
            .saturating_mul(i64::from(self.burst.saturating_sub(1)))
    }

    /// Checks the settings.
    pub fn validate(&self) -> Result<(), ValidationError> {
        if self.burst == 0 {
            return Err(ValidationError::new(
                "app.apns_background_budget.burst",
                "must be at least 1",
            ));
        }
        if self.interval < Duration::from_secs(1) || self.interval > Duration::from_secs(86_400) {
            return Err(ValidationError::new(
                "app.apns_background_budget.interval",
                "must be between 1 s and 24 hours",
            ));
        }
        Ok(())
    }
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
fn background_budget() -> Option<BackgroundBudget> {
    Some(BackgroundBudget::default())
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
            apns_background_budget: background_budget(),
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

    /// Sets the per-device budget of APNs background pushes (`None`: no budget).
    #[must_use]
    pub fn apns_background_budget(mut self, budget: Option<BackgroundBudget>) -> Self {
        self.apns_background_budget = budget;
        self
    }

    /// Checks the settings.
    pub fn validate(&self) -> Result<(), ValidationError> {
        if let Some(budget) = &self.apns_background_budget {
            budget.validate()?;
        }
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

#[cfg(test)]
mod tests {
    use super::*;

    fn secs(s: i64) -> Timestamp {
        Timestamp::from_secs(s)
    }

    /// Admits signals due at `dues` (ascending), each after the previous one went, as a store
    /// does; returns when each went.
    fn run(budget: &BackgroundBudget, dues: &[i64]) -> Vec<i64> {
        let mut tat = None;
        let mut sent: Vec<i64> = Vec::new();
        for &due in dues {
            // A signal asked for while the previous one still waits folds into it.
            if sent.last().is_some_and(|&last| due < last) {
                continue;
            }
            let (allowed, next) = budget.admit(tat, secs(due));
            assert!(allowed >= secs(due), "a signal went before it was due");
            tat = Some(next);
            sent.push(allowed.as_secs());
        }
        sent
    }

    #[test]
    fn the_burst_goes_at_once_then_one_per_interval() {
        let budget = BackgroundBudget::new(3, Duration::from_secs(1200));
        assert_eq!(run(&budget, &[0, 1, 2, 3]), [0, 1, 2, 1200]);
        // Spaced an interval apart, nothing waits however many there are.
        let spaced: Vec<i64> = (0..10).map(|i| i * 1200).collect();
        assert_eq!(run(&budget, &spaced), spaced);
        // After a quiet period the whole burst is available again.
        assert_eq!(
            run(&budget, &[0, 1, 2, 10_000, 10_001, 10_002]),
            [0, 1, 2, 10_000, 10_001, 10_002]
        );
        let one = BackgroundBudget::new(1, Duration::from_secs(60));
        assert_eq!(run(&one, &[0, 10, 200]), [0, 60, 200]);
    }

    #[test]
    fn no_window_holds_more_than_the_burst_plus_one_per_interval() {
        // A small linear congruential generator: deterministic, varied arrival patterns.
        let mut seed: u64 = 0x5eed;
        let mut next = move || {
            seed = seed
                .wrapping_mul(6_364_136_223_846_793_005)
                .wrapping_add(1_442_695_040_888_963_407);
            seed >> 33
        };
        for round in 0..200 {
            let burst = u32::try_from(next() % 5 + 1).unwrap_or(1);
            let interval = i64::try_from(next() % 900 + 1).unwrap_or(1);
            let budget = BackgroundBudget::new(burst, Duration::from_secs(interval.unsigned_abs()));
            let mut t = 0;
            let dues: Vec<i64> = (0..200)
                .map(|_| {
                    t += i64::try_from(next() % 400).unwrap_or(0);
                    t
                })
                .collect();
            let sent = run(&budget, &dues);
            for (i, &start) in sent.iter().enumerate() {
                for k in 0..4 {
                    let end = start + k * interval;
                    let within = sent[i..].iter().filter(|&&s| s <= end).count();
                    assert!(
                        within <= burst as usize + usize::try_from(k).unwrap_or(0),
                        "round {round}: {within} signals in {k} intervals from {start} \
                         (burst {burst}, interval {interval})"
                    );
                }
            }
        }
    }

    #[test]
    fn budgets_are_validated_and_read_from_configuration() {
        assert!(BackgroundBudget::default().validate().is_ok());
        for bad in [
            BackgroundBudget::new(0, Duration::from_secs(60)),
            BackgroundBudget::new(1, Duration::from_millis(500)),
            BackgroundBudget::new(1, Duration::from_secs(86_401)),
        ] {
            assert!(
                App::new("a")
                    .apns_background_budget(Some(bad))
                    .validate()
                    .is_err(),
                "{bad:?}"
            );
        }
        let app: App = serde_json::from_str(r#"{"id": "a"}"#).unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(
            app.apns_background_budget,
            Some(BackgroundBudget::default())
        );
        let app: App = serde_json::from_str(r#"{"id": "a", "apns_background_budget": null}"#)
            .unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(app.apns_background_budget, None);
        let app: App = serde_json::from_str(
            r#"{"id": "a", "apns_background_budget": {"burst": 5, "interval": 600}}"#,
        )
        .unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(
            app.apns_background_budget,
            Some(BackgroundBudget::new(5, Duration::from_secs(600)))
        );
    }
}
