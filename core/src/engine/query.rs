//! History, the change feed and fetching one notification.

use crate::error::{Error, ValidationError};
use crate::id::{AppId, EndpointId, NotificationId, UserId};
use crate::notification::Notification;
use crate::store::{
    ChangePage, ChangesQuery, HistoryCursor, HistoryFilter, HistoryPage, HistoryQuery,
};

use super::Tidings;

/// Largest page a query returns.
pub(crate) const MAX_PAGE: usize = 500;

impl Tidings {
    /// A page of the user's history, newest first. Pass the page's `next` as `after` to continue.
    /// `limit` must be 1 to 500.
    pub async fn history(
        &self,
        app: &AppId,
        user: &UserId,
        filter: HistoryFilter,
        after: Option<HistoryCursor>,
        limit: usize,
    ) -> Result<HistoryPage, Error> {
        self.app(app)?;
        check_limit(limit)?;
        let query = HistoryQuery {
            app: app.clone(),
            user: user.clone(),
            filter,
            after,
            limit,
            now: self.inner.clock.now(),
        };
        Ok(self.inner.store.history(&query).await?)
    }

    /// The user's notifications changed after sequence `since`, oldest change first. A device
    /// that was offline catches up with this. `limit` must be 1 to 500.
    pub async fn changes(
        &self,
        app: &AppId,
        user: &UserId,
        since: u64,
        limit: usize,
    ) -> Result<ChangePage, Error> {
        self.app(app)?;
        check_limit(limit)?;
        let query = ChangesQuery {
            app: app.clone(),
            user: user.clone(),
            since,
            limit,
            now: self.inner.clock.now(),
        };
        Ok(self.inner.store.changes(&query).await?)
    }

    /// One of the user's notifications, without recording a fetch.
    pub async fn notification(
        &self,
        app: &AppId,
        user: &UserId,
        id: NotificationId,
    ) -> Result<Notification, Error> {
        self.app(app)?;
        let now = self.inner.clock.now();
        Ok(self.inner.store.notification(app, user, id, now).await?)
    }

    /// The pull of push-to-pull: one of the user's notifications, fetched by `endpoint` (one of
    /// the user's endpoints). Recording the fetch cancels that endpoint's pending iOS fallback
    /// alert for the notification.
    pub async fn fetch(
        &self,
        app: &AppId,
        user: &UserId,
        id: NotificationId,
        endpoint: Option<EndpointId>,
    ) -> Result<Notification, Error> {
        self.app(app)?;
        let now = self.inner.clock.now();
        let n = match endpoint {
            Some(endpoint) => {
                self.inner
                    .store
                    .record_fetch(app, user, id, endpoint, now)
                    .await?
            }
            None => self.inner.store.notification(app, user, id, now).await?,
        };
        metrics::counter!("tidings_fetches_total").increment(1);
        Ok(n)
    }
}

fn check_limit(limit: usize) -> Result<(), ValidationError> {
    if limit == 0 || limit > MAX_PAGE {
        return Err(ValidationError::new(
            "limit",
            format!("must be 1 to {MAX_PAGE}"),
        ));
    }
    Ok(())
}
