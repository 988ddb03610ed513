//! Endpoint registration and state sync.

use std::collections::{HashMap, HashSet};

use crate::endpoint::{Endpoint, EndpointRegistration};
use crate::error::{Error, StoreError, StoreErrorKind, ValidationError};
use crate::id::{AppId, EndpointId, NotificationId, UserId};
use crate::notification::{Notification, StatePatch, MAX_SHORT_TEXT};
use crate::store::{BulkStateUpdate, StateUpdate, SyncSchedule};
use crate::time::Timestamp;

/// Most notifications one [`Tidings::update_states`] may name.
pub const MAX_BULK_IDS: usize = 1000;

use super::fanout::check_no_nul;
use super::Tidings;

impl Tidings {
    /// Registers or refreshes an endpoint after validating its push address against the
    /// [`AddressPolicy`](crate::AddressPolicy). A push address already registered (to any user
    /// of the app) moves to this user: the previous user can no longer reach that device.
    pub async fn register_endpoint(
        &self,
        registration: EndpointRegistration,
    ) -> Result<Endpoint, Error> {
        self.app(&registration.app)?;
        let user = registration.user.as_str();
        if user.trim().is_empty() || user.len() > MAX_SHORT_TEXT {
            return Err(ValidationError::new("user", "must be 1 to 256 bytes").into());
        }
        check_no_nul("user", user)?;
        if let Some(id) = &registration.installation_id {
            if id.trim().is_empty() || id.len() > MAX_SHORT_TEXT {
                return Err(
                    ValidationError::new("installation_id", "must be 1 to 256 bytes").into(),
                );
            }
            check_no_nul("installation_id", id)?;
        }
        let address = registration.address.validate(&self.inner.address_policy)?;
        let now = self.inner.clock.now();
        if registration.address_expires_at.is_some_and(|t| t <= now) {
            return Err(ValidationError::new("address_expires_at", "is in the past").into());
        }
        let endpoint = Endpoint {
            id: EndpointId::new_random(),
            app: registration.app,
            user: registration.user,
            installation_id: registration.installation_id,
            address,
            active: true,
            created_at: now,
            last_seen_at: now,
            address_expires_at: registration.address_expires_at,
            deactivation_reason: None,
        };
        let platform = endpoint.platform();
        let stored = self.inner.store.upsert_endpoint(endpoint).await?;
        metrics::counter!("tidings_endpoints_registered_total", "platform" => platform.as_str())
            .increment(1);
        tracing::debug!(app = %stored.app, endpoint_id = %stored.id, platform = %platform, "endpoint registered");
        Ok(stored)
    }

    /// The user's endpoints in the app, active or not.
    pub async fn endpoints(&self, app: &AppId, user: &UserId) -> Result<Vec<Endpoint>, Error> {
        Ok(self.inner.store.endpoints(app, user).await?)
    }

    /// Removes an endpoint of the user (not found when it belongs to someone else).
    pub async fn delete_endpoint(
        &self,
        app: &AppId,
        user: &UserId,
        id: EndpointId,
    ) -> Result<(), Error> {
        Ok(self.inner.store.delete_endpoint(app, user, id).await?)
    }

    /// Changes the state of one of the user's notifications (read, activated, dismissed,
    /// snoozed, deleted) and schedules coalesced sync signals to the user's other endpoints that
    /// take silent pushes. `origin` is the endpoint the change came from, if any; it gets no
    /// signal. A patch that changes nothing changes nothing (no sequence bump, no signals).
    pub async fn update_state(
        &self,
        app: &AppId,
        user: &UserId,
        id: NotificationId,
        patch: StatePatch,
        origin: Option<EndpointId>,
    ) -> Result<Notification, Error> {
        let (at, sync) = self.state_change(app, &patch)?;
        let update = StateUpdate {
            app: app.clone(),
            user: user.clone(),
            id,
            patch,
            at,
            origin,
            sync: Some(sync),
        };
        let updated = self.inner.store.update_state(update).await?;
        count_changes(std::slice::from_ref(&updated), at);
        tracing::debug!(app = %app, notification_id = %id, sequence = updated.sequence, "state changed");
        Ok(updated)
    }

    /// Changes the state of many of the user's notifications at once ("mark all read", "clear
    /// all"), atomically: on an error none of them changed. Returns one entry per id, in the
    /// order given: the notification as it is now, or `None` for an id that names no
    /// notification of the user (never existed, expired, or someone else's). Repeated ids count
    /// once (each later repeat answers like the first). The other devices get one coalesced
    /// sync signal, as for a single change. At most [`MAX_BULK_IDS`] ids.
    pub async fn update_states(
        &self,
        app: &AppId,
        user: &UserId,
        ids: &[NotificationId],
        patch: StatePatch,
        origin: Option<EndpointId>,
    ) -> Result<Vec<Option<Notification>>, Error> {
        if ids.is_empty() || ids.len() > MAX_BULK_IDS {
            return Err(ValidationError::new(
                "ids",
                format!("must name 1 to {MAX_BULK_IDS} notifications"),
            )
            .into());
        }
        let (at, sync) = self.state_change(app, &patch)?;
        let mut seen = HashSet::with_capacity(ids.len());
        let distinct: Vec<NotificationId> =
            ids.iter().copied().filter(|id| seen.insert(*id)).collect();
        let results = self
            .inner
            .store
            .update_states(BulkStateUpdate {
                app: app.clone(),
                user: user.clone(),
                ids: distinct.clone(),
                patch,
                at,
                origin,
                sync: Some(sync),
            })
            .await?;
        if results.len() != distinct.len() {
            return Err(StoreError::new(
                StoreErrorKind::Corrupt,
                format!(
                    "update_states answered {} results for {} ids",
                    results.len(),
                    distinct.len()
                ),
            )
            .into());
        }
        let changed = count_changes(results.iter().flatten(), at);
        tracing::debug!(app = %app, ids = distinct.len(), changed, "states changed");
        if distinct.len() == ids.len() {
            return Ok(results);
        }
        let by_id: HashMap<NotificationId, Option<Notification>> =
            distinct.into_iter().zip(results).collect();
        Ok(ids
            .iter()
            .map(|id| by_id.get(id).cloned().flatten())
            .collect())
    }

    /// Checks a state change of `app` and computes when it happens and its sync schedule.
    fn state_change(
        &self,
        app: &AppId,
        patch: &StatePatch,
    ) -> Result<(Timestamp, SyncSchedule), Error> {
        let settings = self.app(app)?;
        if patch.is_empty() {
            return Err(ValidationError::new("patch", "names no change").into());
        }
        let now = self.inner.clock.now();
        Ok((
            now,
            SyncSchedule {
                due_at: now.plus(settings.sync_coalesce_window),
                expires_at: now.plus(settings.sync_coalesce_window + self.inner.sync_ttl),
                apns_budget: settings.apns_background_budget,
            },
        ))
    }

    /// Deletes a notification for the user on every device (status `deleted`; it leaves history
    /// and the change feed tells the other devices).
    pub async fn delete_notification(
        &self,
        app: &AppId,
        user: &UserId,
        id: NotificationId,
        origin: Option<EndpointId>,
    ) -> Result<Notification, Error> {
        self.update_state(app, user, id, StatePatch::deleted(), origin)
            .await
    }

    /// Erases everything of a user in every app.
    pub async fn delete_user(&self, user: &UserId) -> Result<(), Error> {
        self.inner.store.delete_user(user).await?;
        tracing::info!("user erased");
        Ok(())
    }
}

/// Counts the notifications a state change at `at` changed (a patch that changes nothing leaves
/// `changed_at` as it was) in `tidings_state_changes_total`, and returns how many.
fn count_changes<'a>(
    notifications: impl IntoIterator<Item = &'a Notification>,
    at: Timestamp,
) -> usize {
    let changed = notifications
        .into_iter()
        .filter(|n| n.state.changed_at == at)
        .count();
    if changed > 0 {
        metrics::counter!("tidings_state_changes_total").increment(changed as u64);
    }
    changed
}
