//! The delivery slab: deliveries live in a vector, and a delivery's id encodes its slot.
//!
//! A [`DeliveryId`] minted here is `(serial, slot)` as a UUID's two halves: the serial never
//! repeats within a store, so ids are unique, and the slot makes every lookup an index instead of
//! a hash probe. Serials also order deliveries created at the same time by creation, so the due
//! and lease indexes append instead of inserting at random and leasing walks the slab in order.

use tidings::{DeliveryId, DeliveryKind, EndpointId, Timestamp};
use uuid::Uuid;

use super::state::{DeliveryEntry, Slot};

/// An empty slab with more slots than this releases them.
const SHRINK_ABOVE: usize = 4096;

/// What the indexes need to know of a delivery removed from the slab.
#[derive(Clone, Copy, Debug)]
pub(crate) struct Removed {
    pub(crate) slot: Slot,
    pub(crate) next_attempt_at: Timestamp,
    pub(crate) expires_at: Timestamp,
    pub(crate) kind: DeliveryKind,
    pub(crate) endpoint_id: EndpointId,
}

/// The id of a delivery not stored yet ([`Slab::insert`] assigns the real one).
pub(crate) const UNASSIGNED: DeliveryId = DeliveryId::from_uuid(Uuid::nil());

/// Deliveries by slot.
#[derive(Debug, Default)]
pub(crate) struct Slab {
    slots: Vec<Option<DeliveryEntry>>,
    free: Vec<u32>,
    serial: u64,
    len: usize,
}

fn slot_of(id: DeliveryId) -> usize {
    (id.as_uuid().as_u64_pair().1 & 0xFFFF_FFFF) as usize
}

impl Slab {
    /// Stores `entry` under a fresh id (written into `entry.delivery.id`) and returns the id.
    pub(crate) fn insert(&mut self, mut entry: DeliveryEntry) -> DeliveryId {
        let slot = match self.free.pop() {
            Some(slot) => slot,
            None => {
                self.slots.push(None);
                u32::try_from(self.slots.len() - 1).unwrap_or(u32::MAX)
            }
        };
        self.serial += 1;
        let id = DeliveryId::from_uuid(Uuid::from_u64_pair(self.serial, u64::from(slot)));
        entry.delivery.id = id;
        if let Some(place) = self.slots.get_mut(slot as usize) {
            *place = Some(entry);
            self.len += 1;
        }
        id
    }

    /// The delivery `id`, if it exists.
    pub(crate) fn get(&self, id: DeliveryId) -> Option<&DeliveryEntry> {
        self.slots
            .get(slot_of(id))?
            .as_ref()
            .filter(|e| e.delivery.id == id)
    }

    /// The delivery `id`, if it exists, for changing.
    pub(crate) fn get_mut(&mut self, id: DeliveryId) -> Option<&mut DeliveryEntry> {
        self.slots
            .get_mut(slot_of(id))?
            .as_mut()
            .filter(|e| e.delivery.id == id)
    }

    /// Whether delivery `id` exists.
    pub(crate) fn contains(&self, id: DeliveryId) -> bool {
        self.get(id).is_some()
    }

    /// Removes delivery `id`, if it exists, dropping it in place; returns what its indexes need.
    pub(crate) fn remove(&mut self, id: DeliveryId) -> Option<Removed> {
        let slot = slot_of(id);
        let place = self.slots.get_mut(slot)?;
        let entry = place.as_ref().filter(|e| e.delivery.id == id)?;
        let d = &entry.delivery;
        let removed = Removed {
            slot: entry.slot,
            next_attempt_at: d.next_attempt_at,
            expires_at: d.expires_at,
            kind: d.kind,
            endpoint_id: d.endpoint_id,
        };
        *place = None;
        self.free.push(u32::try_from(slot).unwrap_or(u32::MAX));
        self.len -= 1;
        if self.len == 0 && self.slots.len() > SHRINK_ABOVE {
            // Idle after a burst: give the burst's memory back (ids stay unique by serial).
            self.slots = Vec::new();
            self.free = Vec::new();
        }
        Some(removed)
    }

    /// How many deliveries it holds.
    pub(crate) fn len(&self) -> usize {
        self.len
    }
}

#[cfg(test)]
mod tests {
    use std::collections::HashSet;
    use std::sync::Arc;

    use tidings::{ApnsEnvironment, Delivery, Endpoint, PushAddress};

    use super::*;
    use crate::store::state::Slot;

    fn entry() -> DeliveryEntry {
        let t = Timestamp::from_secs(1_767_225_600);
        let endpoint = Endpoint {
            id: EndpointId::new_random(),
            app: "app".into(),
            user: "alice".into(),
            installation_id: None,
            address: PushAddress::Apns {
                token: "ab".into(),
                environment: ApnsEnvironment::Sandbox,
            },
            active: true,
            created_at: t,
            last_seen_at: t,
            address_expires_at: None,
            deactivation_reason: None,
        };
        DeliveryEntry {
            delivery: Delivery {
                id: UNASSIGNED,
                app: "app".into(),
                user: "alice".into(),
                endpoint_id: endpoint.id,
                notification_id: None,
                kind: DeliveryKind::Sync,
                sequence: 1,
                attempt: 0,
                next_attempt_at: t,
                expires_at: t,
            },
            slot: Slot::Due,
            notification: None,
            endpoint: Arc::new(endpoint),
        }
    }

    #[test]
    fn ids_stay_unique_and_old_ids_stay_dead_across_slot_reuse_and_shrinking() {
        let mut slab = Slab::default();
        let mut seen = HashSet::new();
        let mut dead = Vec::new();
        for round in 0..3 {
            let ids: Vec<_> = (0..5000).map(|_| slab.insert(entry())).collect();
            for id in &ids {
                assert!(seen.insert(*id), "id minted twice in round {round}");
                assert!(slab.contains(*id));
            }
            // The new entries reuse the slots of the dead ones, which must stay unknown.
            for id in &dead {
                assert!(slab.get(*id).is_none() && slab.remove(*id).is_none());
            }
            // Free some, take them again: LIFO reuse of the same slots.
            for id in &ids[..10] {
                assert!(slab.remove(*id).is_some());
            }
            let again: Vec<_> = (0..10).map(|_| slab.insert(entry())).collect();
            for (old, new) in ids[..10].iter().zip(&again) {
                assert!(slab.get(*old).is_none());
                assert!(seen.insert(*new));
            }
            let ids: Vec<_> = ids[10..].iter().chain(&again).copied().collect();
            for id in ids {
                assert!(slab.remove(id).is_some());
                dead.push(id);
            }
            assert_eq!(slab.len(), 0);
        }
        for id in dead {
            assert!(slab.get(id).is_none() && slab.remove(id).is_none());
        }
        assert!(
            slab.get(DeliveryId::new_random()).is_none(),
            "foreign ids are unknown"
        );
    }
}
