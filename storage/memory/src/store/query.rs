//! History and the change feed.

use std::ops::Bound;
use std::sync::Arc;

use tidings::{
    AppId, ChangePage, ChangesQuery, HistoryCursor, HistoryPage, HistoryQuery, Notification,
    Status, UserId,
};

use super::state::State;

/// A [`HistoryPage`] with shared notifications (copied outside the lock).
#[derive(Debug, Default)]
pub(crate) struct Page {
    pub(crate) items: Vec<Arc<Notification>>,
    pub(crate) next: Option<HistoryCursor>,
}

impl Page {
    /// The page the trait returns.
    pub(crate) fn into_page(self) -> HistoryPage {
        HistoryPage {
            items: self.items.iter().map(|n| Notification::clone(n)).collect(),
            next: self.next,
        }
    }
}

/// A [`ChangePage`] with shared notifications (copied outside the lock).
#[derive(Debug)]
pub(crate) struct Changes {
    pub(crate) changes: Vec<Arc<Notification>>,
    pub(crate) next_since: u64,
    pub(crate) more: bool,
}

impl Changes {
    /// The page the trait returns.
    pub(crate) fn into_page(self) -> ChangePage {
        ChangePage {
            changes: self
                .changes
                .iter()
                .map(|n| Notification::clone(n))
                .collect(),
            next_since: self.next_since,
            more: self.more,
        }
    }
}

impl State {
    /// [`Store::history`](tidings::Store::history): newest first by (created_at, id), walking
    /// the user's ordered index backwards from the cursor.
    pub(crate) fn history(&self, q: &HistoryQuery) -> Page {
        let limit = q.limit.max(1);
        let mut page = Page::default();
        let Some(user) = self.user(&q.app, &q.user) else {
            return page;
        };
        let upper = match q.after {
            Some(c) => Bound::Excluded((c.created_at, c.id)),
            None => Bound::Unbounded,
        };
        let f = &q.filter;
        let candidates = user
            .history
            .range((Bound::Unbounded, upper))
            .rev()
            .take_while(|(created, _)| f.since.is_none_or(|since| *created >= since))
            .filter_map(|(_, id)| self.notifications.get(id))
            .map(|e| &e.notification)
            .filter(|n| {
                !n.is_expired(q.now)
                    && (f.include_deleted || n.state.status != Status::Deleted)
                    && f.read.is_none_or(|r| n.state.read == r)
                    && f.action.is_none_or(|a| n.state.action == a)
                    && f.group.as_ref().is_none_or(|g| n.group.as_ref() == Some(g))
            });
        for n in candidates {
            if page.items.len() == limit {
                // One more match exists: the page continues.
                page.next = page.items.last().map(|n| HistoryCursor::of(n));
                break;
            }
            page.items.push(Arc::clone(n));
        }
        page
    }

    /// [`Store::changes`](tidings::Store::changes): ascending sequence after `since`.
    pub(crate) fn changes(&self, q: &ChangesQuery) -> Changes {
        let limit = q.limit.max(1);
        let mut page = Changes {
            changes: Vec::new(),
            next_since: q.since,
            more: false,
        };
        let Some(user) = self.user(&q.app, &q.user) else {
            return page;
        };
        let after = (Bound::Excluded(q.since), Bound::Unbounded);
        for (sequence, id) in user.changes.range(after) {
            let Some(n) = self.notifications.get(id).map(|e| &e.notification) else {
                continue;
            };
            if n.is_expired(q.now) {
                if page.changes.len() < limit {
                    // Skipped for good: the cursor moves past it.
                    page.next_since = *sequence;
                }
                continue;
            }
            if page.changes.len() == limit {
                page.more = true;
                break;
            }
            page.changes.push(Arc::clone(n));
            page.next_since = *sequence;
        }
        page
    }

    /// [`Store::current_sequence`](tidings::Store::current_sequence).
    pub(crate) fn current_sequence(&self, app: &AppId, user: &UserId) -> u64 {
        self.user(app, user).map_or(0, |u| u.sequence)
    }
}
