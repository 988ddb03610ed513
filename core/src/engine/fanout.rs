//! Fanout: validate a notification, store it and enqueue its deliveries in one atomic step.

use std::time::Duration;

use tracing::Instrument;

use crate::error::{Error, ValidationError};
use crate::id::NotificationId;
use crate::notification::{
    NewNotification, Notification, NotificationState, ReadState, Status, UserAction, VisualContent,
    MAX_EXPIRY, MAX_FALLBACK_DELAY, MAX_SHORT_TEXT, MIN_FALLBACK_DELAY,
};
use crate::platform::Platform;
use crate::store::Inserted;

use super::Tidings;

/// Longest title, bytes.
const MAX_TITLE: usize = 1024;
/// Longest body, bytes.
const MAX_BODY: usize = 16 * 1024;
/// Longest raw content, bytes.
const MAX_RAW: usize = 64 * 1024;

impl Tidings {
    /// Sends a notification to a user: validates it, stores it and enqueues one delivery per
    /// active endpoint of the user in the app on a targeted platform — atomically. Sending the
    /// same app notification id again returns the stored notification and enqueues nothing.
    ///
    /// Errors name the offending field ([`Error::field`]); nothing is stored on error.
    pub async fn send(&self, new: NewNotification) -> Result<Notification, Error> {
        Ok(self.send_detailed(new).await?.notification)
    }

    /// Like [`send`](Self::send), but also tells whether this call created the notification and
    /// how many deliveries it enqueued.
    pub async fn send_detailed(&self, new: NewNotification) -> Result<Inserted, Error> {
        let notification = self.prepare(new)?;
        let span = tracing::debug_span!(
            "tidings.send",
            app = %notification.app,
            notification_id = %notification.id,
        );
        let inserted = self
            .inner
            .store
            .insert_notification(notification)
            .instrument(span.clone())
            .await?;
        let _enter = span.enter();
        if inserted.created {
            metrics::counter!("tidings_notifications_created_total").increment(1);
            metrics::counter!("tidings_deliveries_enqueued_total")
                .increment(inserted.deliveries as u64);
            tracing::debug!(deliveries = inserted.deliveries, "notification stored");
        } else {
            metrics::counter!("tidings_notifications_duplicate_total").increment(1);
        }
        Ok(inserted)
    }

    /// Validates `new` and turns it into the [`Notification`] that [`send`](Self::send) would
    /// store (with a fresh id, `created_at` = now and sequence 0, which the store assigns).
    ///
    /// Stores that write inside a host's own transaction use this, then insert the result
    /// themselves.
    pub fn prepare(&self, new: NewNotification) -> Result<Notification, ValidationError> {
        let app = self.app(&new.app)?;
        let now = self.inner.clock.now();
        check_text("user", new.user.as_str(), MAX_SHORT_TEXT, true)?;
        check_text(
            "app_notification_id",
            &new.app_notification_id,
            MAX_SHORT_TEXT,
            true,
        )?;
        if let Some(group) = &new.group {
            check_text("group", group, MAX_SHORT_TEXT, true)?;
        }
        if new.visual.is_none() && new.raw.is_none() {
            return Err(ValidationError::new(
                "content",
                "a notification needs visual content, raw content, or both",
            ));
        }
        if let Some(visual) = &new.visual {
            check_visual(visual).map_err(|e| e.within("visual"))?;
        }
        if let Some(raw) = &new.raw {
            check_text("raw", raw, MAX_RAW, true)?;
        }

        let max = app.max_expiry.min(MAX_EXPIRY);
        let expires_at = match (new.expires_at, new.expires_in) {
            (Some(at), _) => {
                if at <= now {
                    return Err(ValidationError::new("expires_at", "must be in the future"));
                }
                if at.since(now) > max {
                    return Err(ValidationError::new(
                        "expires_at",
                        format!("must be at most {} days ahead", max.as_secs() / 86_400),
                    ));
                }
                at
            }
            (None, Some(d)) => {
                if d.is_zero() || d > max {
                    return Err(ValidationError::new(
                        "expires_in",
                        format!("must be between 1 s and {} days", max.as_secs() / 86_400),
                    ));
                }
                now.plus(d)
            }
            (None, None) => now.plus(app.default_expiry.min(max)),
        };
        if let Some(ttl) = new.display_ttl {
            if ttl.is_zero() || ttl > MAX_EXPIRY {
                return Err(ValidationError::new(
                    "display_ttl",
                    "must be between 1 s and 30 days",
                ));
            }
        }

        let configured = self.platforms();
        let targets = match new.targets {
            Some(t) => {
                if t.is_empty() {
                    return Err(ValidationError::new(
                        "targets",
                        "must name at least one platform",
                    ));
                }
                if let Some(p) = t.iter().find(|p| !configured.contains(*p)) {
                    return Err(ValidationError::new(
                        "targets",
                        format!("no channel is configured for platform {p}"),
                    ));
                }
                t
            }
            None => configured,
        };

        if let Some(fallback) = &new.fallback {
            if fallback.delay < MIN_FALLBACK_DELAY || fallback.delay > MAX_FALLBACK_DELAY {
                return Err(ValidationError::new(
                    "fallback.delay",
                    "must be between 60 and 600 seconds",
                ));
            }
            if !targets.contains(Platform::Apns) {
                return Err(ValidationError::new(
                    "fallback",
                    "the iOS fallback needs APNs among the targets",
                ));
            }
            if new.raw.is_none() {
                return Err(ValidationError::new(
                    "fallback",
                    "the raw-to-visual fallback applies to notifications with raw content",
                ));
            }
            check_visual(&fallback.visual).map_err(|e| e.within("fallback.visual"))?;
        }

        Ok(Notification {
            id: NotificationId::new_random(),
            app: new.app,
            user: new.user,
            app_notification_id: new.app_notification_id,
            group: new.group,
            priority: new.priority,
            created_at: now,
            expires_at,
            display_ttl: new.display_ttl.map(|d| Duration::from_secs(d.as_secs())),
            visual: new.visual,
            raw: new.raw,
            targets,
            fallback: new.fallback,
            state: NotificationState {
                read: ReadState::Unread,
                action: UserAction::None,
                status: Status::Active,
                changed_at: now,
            },
            sequence: 0,
        })
    }
}

fn check_visual(visual: &VisualContent) -> Result<(), ValidationError> {
    check_text("title", &visual.title, MAX_TITLE, true)?;
    if let Some(body) = &visual.body {
        check_text("body", body, MAX_BODY, false)?;
    }
    Ok(())
}

fn check_text(
    field: &'static str,
    value: &str,
    max: usize,
    required: bool,
) -> Result<(), ValidationError> {
    if required && value.trim().is_empty() {
        return Err(ValidationError::new(field, "must not be empty"));
    }
    if value.len() > max {
        return Err(ValidationError::new(
            field,
            format!("must be at most {max} bytes"),
        ));
    }
    check_no_nul(field, value)
}

/// Text Tidings stores must not contain NUL: PostgreSQL's `text` cannot hold it, and a store
/// must be able to keep what `send` accepted.
pub(crate) fn check_no_nul(field: &'static str, value: &str) -> Result<(), ValidationError> {
    if value.contains('\0') {
        return Err(ValidationError::new(
            field,
            "must not contain NUL characters",
        ));
    }
    Ok(())
}
