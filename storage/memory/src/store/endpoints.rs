//! Endpoints: registration, moves between users, removal, deactivation.

use std::sync::Arc;

use tidings::{AppId, Endpoint, EndpointId, StoreError, StoreErrorKind, Timestamp, UserId};

use super::state::{not_found, EndpointEntry, State};

impl State {
    /// [`Store::upsert_endpoint`](tidings::Store::upsert_endpoint).
    pub(crate) fn upsert_endpoint(&mut self, new: Endpoint) -> Result<Endpoint, StoreError> {
        let key = new.address.key();
        let same_address = self
            .apps
            .get(&new.app)
            .and_then(|a| a.by_address.get(&key))
            .copied();
        if let Some(id) = same_address {
            return Ok(self.rewrite(id, new, key));
        }
        let same_installation = new.installation_id.as_ref().and_then(|inst| {
            self.user(&new.app, &new.user)
                .and_then(|u| u.installations.get(inst))
                .copied()
        });
        if let Some(id) = same_installation {
            return Ok(self.rewrite(id, new, key));
        }
        if self.endpoints.contains_key(&new.id) {
            return Err(StoreError::new(
                StoreErrorKind::Conflict,
                "an endpoint with this id already exists",
            ));
        }
        Ok(self.upsert_fresh(new, key))
    }

    /// Updates endpoint `id` from a registration whose address key is `key`: it takes the new
    /// user, installation id, address and expiry and becomes active; it keeps its id and creation
    /// time. Its pending deliveries are dropped when it changed user or address.
    fn rewrite(&mut self, id: EndpointId, new: Endpoint, key: String) -> Endpoint {
        let Some(old) = self.endpoints.get(&id).map(|e| Arc::clone(&e.endpoint)) else {
            // The indexes point at a missing endpoint: repair by storing the registration anew.
            self.forget_indexes(&new, &key, id);
            return self.upsert_fresh(new, key);
        };
        let old_key = old.address.key();
        let user_changed = old.user != new.user;
        if user_changed || old_key != key {
            self.drop_endpoint_deliveries(id);
        }
        if old_key != key {
            if let Some(app) = self.apps.get_mut(&old.app) {
                if app.by_address.get(&old_key) == Some(&id) {
                    app.by_address.remove(&old_key);
                }
                app.by_address.insert(key, id);
            }
        }
        if user_changed || old.installation_id != new.installation_id {
            if let (Some(inst), Some(user)) =
                (&old.installation_id, self.user_mut(&old.app, &old.user))
            {
                if user.installations.get(inst) == Some(&id) {
                    user.installations.remove(inst);
                }
            }
            if let Some(inst) = &new.installation_id {
                // One installation has one address: an endpoint of the new user holding this
                // installation id under an older address is replaced by this one.
                let other = self
                    .user(&new.app, &new.user)
                    .and_then(|u| u.installations.get(inst))
                    .copied()
                    .filter(|other| *other != id);
                if let Some(other) = other {
                    self.remove_endpoint(other);
                }
                self.user_entry(&new.app, &new.user)
                    .installations
                    .insert(inst.clone(), id);
            }
        }
        if user_changed {
            if let Some(user) = self.user_mut(&old.app, &old.user) {
                user.endpoints.retain(|e| *e != id);
            }
            self.user_entry(&new.app, &new.user).endpoints.push(id);
        }
        let Some(entry) = self.endpoints.get_mut(&id) else {
            return new;
        };
        let ep = Arc::make_mut(&mut entry.endpoint);
        ep.user = new.user;
        ep.installation_id = new.installation_id;
        ep.address = new.address;
        ep.address_expires_at = new.address_expires_at;
        ep.active = true;
        ep.last_seen_at = new.last_seen_at;
        ep.deactivation_reason = None;
        let stored = ep.clone();
        self.refresh_endpoint_deliveries(id);
        stored
    }

    /// Removes index entries of `key` and the registration's installation that point at `id`.
    fn forget_indexes(&mut self, new: &Endpoint, key: &str, id: EndpointId) {
        if let Some(app) = self.apps.get_mut(&new.app) {
            if app.by_address.get(key) == Some(&id) {
                app.by_address.remove(key);
            }
        }
        if let (Some(inst), Some(user)) = (&new.installation_id, self.user_mut(&new.app, &new.user))
        {
            if user.installations.get(inst) == Some(&id) {
                user.installations.remove(inst);
            }
        }
    }

    /// Stores a registration as a new endpoint (its indexes are known to be free).
    fn upsert_fresh(&mut self, new: Endpoint, key: String) -> Endpoint {
        let id = if self.endpoints.contains_key(&new.id) {
            EndpointId::new_random()
        } else {
            new.id
        };
        let stored = Endpoint {
            id,
            active: true,
            deactivation_reason: None,
            ..new
        };
        let user = self.user_entry(&stored.app, &stored.user);
        user.endpoints.push(id);
        if let Some(inst) = &stored.installation_id {
            user.installations.insert(inst.clone(), id);
        }
        if let Some(app) = self.apps.get_mut(&stored.app) {
            app.by_address.insert(key, id);
        }
        self.endpoints.insert(
            id,
            EndpointEntry {
                endpoint: Arc::new(stored.clone()),
                deliveries: Vec::new(),
                pending_sync: None,
                sync_budget: None,
            },
        );
        stored
    }

    /// [`Store::endpoints`](tidings::Store::endpoints): oldest first.
    pub(crate) fn endpoints_of(&self, app: &AppId, user: &UserId) -> Vec<Endpoint> {
        let Some(data) = self.user(app, user) else {
            return Vec::new();
        };
        let mut list: Vec<Endpoint> = data
            .endpoints
            .iter()
            .filter_map(|id| self.endpoints.get(id))
            .map(|e| Endpoint::clone(&e.endpoint))
            .collect();
        list.sort_by_key(|e| (e.created_at, e.id));
        list
    }

    /// [`Store::delete_endpoint`](tidings::Store::delete_endpoint).
    pub(crate) fn delete_endpoint(
        &mut self,
        app: &AppId,
        user: &UserId,
        id: EndpointId,
    ) -> Result<(), StoreError> {
        if self.owned_endpoint(app, user, id).is_none() {
            return Err(not_found("endpoint"));
        }
        self.remove_endpoint(id);
        Ok(())
    }

    /// Deactivates an endpoint and drops its pending deliveries.
    pub(crate) fn deactivate(&mut self, id: EndpointId, reason: &str) {
        if let Some(entry) = self.endpoints.get_mut(&id) {
            let ep = Arc::make_mut(&mut entry.endpoint);
            ep.active = false;
            ep.deactivation_reason = Some(reason.to_owned());
        }
        self.drop_endpoint_deliveries(id);
    }

    /// [`Store::deactivate_stale_endpoints`](tidings::Store::deactivate_stale_endpoints).
    ///
    /// A scan over endpoints: the sweeper calls it rarely, and endpoints are few next to
    /// notifications and deliveries.
    pub(crate) fn deactivate_stale_endpoints(
        &mut self,
        seen_before: Timestamp,
        now: Timestamp,
    ) -> usize {
        let mut doomed = std::mem::take(&mut self.scratch_endpoints);
        doomed.clear();
        doomed.extend(
            self.endpoints
                .values()
                .map(|e| &e.endpoint)
                .filter(|ep| {
                    ep.active
                        && (ep.last_seen_at < seen_before
                            || ep.address_expires_at.is_some_and(|t| t <= now))
                })
                .map(|ep| ep.id),
        );
        for id in &doomed {
            let expired = self
                .endpoints
                .get(id)
                .and_then(|e| e.endpoint.address_expires_at)
                .is_some_and(|t| t <= now);
            let reason = if expired { "address expired" } else { "stale" };
            self.deactivate(*id, reason);
        }
        let n = doomed.len();
        self.scratch_endpoints = doomed;
        n
    }
}
