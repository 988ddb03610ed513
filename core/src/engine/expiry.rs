//! Expiry: purge expired notifications and deactivate stale endpoints.

use crate::error::Error;

use super::Tidings;

/// Purge batch size.
const PURGE_BATCH: usize = 1000;

/// What one sweep removed.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct SweepReport {
    /// Expired notifications removed.
    pub notifications: usize,
    /// Deliveries removed with them (and expired sync signals).
    pub deliveries: usize,
    /// Endpoints deactivated because they were stale or their address expired.
    pub endpoints_deactivated: usize,
}

impl Tidings {
    /// Removes every notification expired now, with its pending deliveries, and deactivates
    /// endpoints not seen for the configured time or whose address expired. Safe to run
    /// concurrently from several instances. Costs O(expired).
    pub async fn sweep(&self) -> Result<SweepReport, Error> {
        let now = self.inner.clock.now();
        let mut report = SweepReport::default();
        loop {
            let purged = self.inner.store.purge_expired(now, PURGE_BATCH).await?;
            report.notifications += purged.notifications;
            report.deliveries += purged.deliveries;
            if purged.notifications < PURGE_BATCH {
                break;
            }
        }
        let seen_before = match self.inner.endpoint_stale_after {
            Some(after) => now.minus(after),
            None => crate::time::Timestamp::from_micros(i64::MIN),
        };
        report.endpoints_deactivated = self
            .inner
            .store
            .deactivate_stale_endpoints(seen_before, now)
            .await?;
        metrics::counter!("tidings_notifications_expired_total")
            .increment(report.notifications as u64);
        metrics::counter!("tidings_endpoints_deactivated_total", "reason" => "stale")
            .increment(report.endpoints_deactivated as u64);
        if report != SweepReport::default() {
            tracing::info!(
                notifications = report.notifications,
                deliveries = report.deliveries,
                endpoints = report.endpoints_deactivated,
                "sweep"
            );
        }
        Ok(report)
    }
}
