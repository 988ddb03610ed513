//! The outbox: leasing due deliveries and applying their outcomes.

use std::sync::Arc;

use tidings::{
    DeliveryKind, DeliveryOutcome, LeaseRequest, LeaseToken, LeasedDelivery, Outcome,
    OutcomeReport, Timestamp,
};

use super::state::{Slot, State};

impl State {
    /// [`Store::lease_due`](tidings::Store::lease_due).
    ///
    /// Lapsed leases (deadline at or before `now`) go back to the due index first, so they
    /// compete with other due deliveries by due time. Due deliveries that are expired or whose
    /// endpoint is gone or inactive are parked (left for the purge) instead of leased.
    pub(crate) fn lease_due(&mut self, request: LeaseRequest) -> Vec<LeasedDelivery> {
        let now = request.now;
        self.retake_lapsed(now);
        let mut leased = Vec::with_capacity(request.limit.min(self.due.len()));
        while leased.len() < request.limit {
            let Some(&(due_at, id)) = self.due.first() else {
                break;
            };
            if due_at > now {
                break;
            }
            self.due.pop_first();
            let Some(entry) = self.deliveries.get_mut(id) else {
                continue;
            };
            let d = &mut entry.delivery;
            if d.kind == DeliveryKind::Sync {
                // Leased or parked, it is no longer pending: later changes need a new signal.
                if let Some(ep) = self.endpoints.get_mut(&d.endpoint_id) {
                    if ep.pending_sync == Some(id) {
                        ep.pending_sync = None;
                    }
                }
            }
            // Deliveries of inactive endpoints do not exist (deactivation drops them), and a
            // notification delivery always carries its notification; the check is defensive.
            let deliverable = d.expires_at > now
                && entry.endpoint.active
                && (d.kind == DeliveryKind::Sync || entry.notification.is_some());
            if !deliverable {
                entry.slot = Slot::Parked;
                continue;
            }
            let token = LeaseToken::new_random();
            d.attempt = d.attempt.saturating_add(1);
            entry.slot = Slot::Leased {
                token,
                until: request.lease_until,
            };
            self.leases.insert((request.lease_until, id));
            leased.push(LeasedDelivery {
                delivery: d.clone(),
                lease: token,
                lease_until: request.lease_until,
                endpoint: Arc::clone(&entry.endpoint),
                notification: entry.notification.clone(),
            });
        }
        leased
    }

    /// Moves deliveries whose lease lapsed at `now` back to the due index.
    fn retake_lapsed(&mut self, now: Timestamp) {
        while let Some(&(until, id)) = self.leases.first() {
            if until > now {
                break;
            }
            self.leases.pop_first();
            let Some(entry) = self.deliveries.get_mut(id) else {
                continue;
            };
            if !matches!(entry.slot, Slot::Leased { until: held, .. } if held == until) {
                continue;
            }
            entry.slot = Slot::Due;
            self.due.insert((entry.delivery.next_attempt_at, id));
            if entry.delivery.kind == DeliveryKind::Sync {
                if let Some(ep) = self.endpoints.get_mut(&entry.delivery.endpoint_id) {
                    ep.pending_sync.get_or_insert(id);
                }
            }
        }
    }

    /// [`Store::record_outcomes`](tidings::Store::record_outcomes). Returns the report and
    /// whether any delivery was rescheduled.
    pub(crate) fn record_outcomes(
        &mut self,
        outcomes: Vec<DeliveryOutcome>,
    ) -> (OutcomeReport, bool) {
        let mut report = OutcomeReport::default();
        let mut rescheduled = false;
        for o in outcomes {
            let current = self.deliveries.get(o.delivery).and_then(|e| match e.slot {
                Slot::Leased { token, .. } if token == o.lease => Some(e.delivery.endpoint_id),
                _ => None,
            });
            let Some(endpoint_id) = current else {
                report.stale += 1;
                continue;
            };
            report.applied += 1;
            match o.outcome {
                Outcome::Accepted { .. } | Outcome::Failed { .. } => {
                    self.remove_delivery(o.delivery);
                }
                Outcome::Retry { at, .. } => {
                    self.release(o.delivery, at);
                    rescheduled = true;
                }
                Outcome::EndpointGone {
                    reason,
                    address_key,
                } => {
                    self.remove_delivery(o.delivery);
                    let still_there = self.endpoints.get(&endpoint_id).is_some_and(|e| {
                        e.endpoint.active && e.endpoint.address.key() == address_key
                    });
                    if still_there {
                        self.deactivate(endpoint_id, &reason);
                        report.deactivated += 1;
                    }
                }
            }
        }
        (report, rescheduled)
    }
}
