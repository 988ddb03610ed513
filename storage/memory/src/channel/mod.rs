//! [`RecordingChannel`]: a [`PushChannel`] that records what it is given and answers as scripted.

mod script;
#[cfg(test)]
mod tests;

use std::collections::{HashMap, VecDeque};
use std::fmt;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};

use async_trait::async_trait;
use tidings::{Accepted, ChannelCapabilities, EndpointId, Platform, Push, PushChannel, PushError};
use tokio::sync::Notify;

pub use script::{Answer, RecordedPush, Scripted};

/// A [`PushChannel`] for any platform that sends nothing: it records every push it is given
/// (every attempt) with what it answered, and answers as scripted per endpoint — accept by
/// default.
///
/// Clones share everything, so a test keeps one handle and gives a clone to the
/// [`Tidings`](tidings::Tidings) builder:
///
/// - scripts: [`script`](Self::script) queues answers for one endpoint, consumed in order;
///   [`script_always`](Self::script_always) sets that endpoint's standing answer once its queue
///   is empty; [`script_default`](Self::script_default) answers for every other endpoint.
/// - an optional payload limit ([`with_payload_limit`](Self::with_payload_limit)): a push whose
///   JSON-serialized [`content`](Push::content) is longer fails with
///   [`PushError::payload_too_large`], before any script is consulted, as a real channel checks
///   size before sending.
/// - [`counting`](Self::counting) mode keeps counts only, no pushes: for benchmarks.
///
/// Accepted pushes get a provider message id `recorded-<n>`.
#[derive(Clone)]
pub struct RecordingChannel {
    inner: Arc<Inner>,
}

struct Inner {
    platform: Platform,
    counting: bool,
    /// Payload limit in bytes; 0 for none.
    payload_limit: AtomicUsize,
    /// Whether any script was ever set (lets unscripted pushes skip the lock).
    scripted: AtomicBool,
    started: AtomicU64,
    answered: AtomicU64,
    accepted: AtomicU64,
    /// Tasks in one of the `wait_for_*` methods.
    waiters: AtomicUsize,
    changed: Notify,
    state: Mutex<Recorder>,
}

#[derive(Default)]
struct Recorder {
    pushes: Vec<RecordedPush>,
    queues: HashMap<EndpointId, VecDeque<Scripted>>,
    standing: HashMap<EndpointId, Scripted>,
    default: Option<Scripted>,
}

impl RecordingChannel {
    /// A channel for `platform` that records every push.
    pub fn new(platform: Platform) -> Self {
        RecordingChannel::build(platform, false)
    }

    /// A channel for `platform` that only counts pushes ([`len`](Self::len),
    /// [`accepted_count`](Self::accepted_count)) and keeps none, so it costs no memory per push.
    /// Scripts and the payload limit still apply.
    pub fn counting(platform: Platform) -> Self {
        RecordingChannel::build(platform, true)
    }

    fn build(platform: Platform, counting: bool) -> Self {
        RecordingChannel {
            inner: Arc::new(Inner {
                platform,
                counting,
                payload_limit: AtomicUsize::new(0),
                scripted: AtomicBool::new(false),
                started: AtomicU64::new(0),
                answered: AtomicU64::new(0),
                accepted: AtomicU64::new(0),
                waiters: AtomicUsize::new(0),
                changed: Notify::new(),
                state: Mutex::new(Recorder::default()),
            }),
        }
    }

    /// This channel with a payload limit of `bytes` (see [`set_payload_limit`](Self::set_payload_limit)).
    #[must_use]
    pub fn with_payload_limit(self, bytes: usize) -> Self {
        self.set_payload_limit(Some(bytes));
        self
    }

    /// Sets or removes the payload limit: a push whose JSON-serialized content is longer than
    /// `bytes` fails with [`PushError::payload_too_large`]. The limit is also reported as
    /// [`ChannelCapabilities::max_payload_bytes`].
    pub fn set_payload_limit(&self, bytes: Option<usize>) {
        let limit = bytes.map_or(0, |b| b.max(1));
        self.inner.payload_limit.store(limit, Ordering::SeqCst);
    }

    /// Queues answers for pushes to `endpoint`, consumed one per push in order (after any
    /// answers queued earlier).
    pub fn script(&self, endpoint: EndpointId, answers: impl IntoIterator<Item = Scripted>) {
        let mut state = self.lock();
        state.queues.entry(endpoint).or_default().extend(answers);
        self.inner.scripted.store(true, Ordering::SeqCst);
    }

    /// Sets the answer for every push to `endpoint` once its queue is used up.
    pub fn script_always(&self, endpoint: EndpointId, answer: Scripted) {
        self.lock().standing.insert(endpoint, answer);
        self.inner.scripted.store(true, Ordering::SeqCst);
    }

    /// Sets the answer for pushes to endpoints that have no script of their own (instead of
    /// [`Scripted::Accept`]), e.g. [`Scripted::Unavailable`] for a provider outage.
    pub fn script_default(&self, answer: Scripted) {
        self.lock().default = Some(answer);
        self.inner.scripted.store(true, Ordering::SeqCst);
    }

    /// Forgets every script: everything is accepted again.
    pub fn clear_scripts(&self) {
        let mut state = self.lock();
        state.queues.clear();
        state.standing.clear();
        state.default = None;
    }

    /// Every push answered so far, oldest first (empty in counting mode).
    pub fn pushes(&self) -> Vec<RecordedPush> {
        self.lock().pushes.clone()
    }

    /// The pushes answered so far that went to `endpoint`, oldest first.
    pub fn pushes_to(&self, endpoint: EndpointId) -> Vec<RecordedPush> {
        self.filtered(|p| p.endpoint_id() == endpoint)
    }

    /// The pushes accepted so far, oldest first.
    pub fn accepted(&self) -> Vec<RecordedPush> {
        self.filtered(RecordedPush::is_accepted)
    }

    fn filtered(&self, keep: impl Fn(&RecordedPush) -> bool) -> Vec<RecordedPush> {
        self.lock()
            .pushes
            .iter()
            .filter(|p| keep(p))
            .cloned()
            .collect()
    }

    /// How many pushes it answered (also in counting mode).
    pub fn len(&self) -> usize {
        usize::try_from(self.inner.answered.load(Ordering::SeqCst)).unwrap_or(usize::MAX)
    }

    /// Whether it answered no push yet.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// How many pushes it accepted (also in counting mode).
    pub fn accepted_count(&self) -> u64 {
        self.inner.accepted.load(Ordering::SeqCst)
    }

    /// How many pushes it was given, answered or not yet (a delayed push counts from the start).
    pub fn started(&self) -> u64 {
        self.inner.started.load(Ordering::SeqCst)
    }

    /// Forgets the recorded pushes and resets the counts (scripts stay).
    pub fn clear(&self) {
        let mut state = self.lock();
        state.pushes.clear();
        self.inner.started.store(0, Ordering::SeqCst);
        self.inner.answered.store(0, Ordering::SeqCst);
        self.inner.accepted.store(0, Ordering::SeqCst);
    }

    /// Waits until at least `n` pushes have been answered (since the last [`clear`](Self::clear)).
    pub async fn wait_for_pushes(&self, n: usize) {
        self.wait_until(|| self.len() >= n).await;
    }

    /// Waits until at least `n` pushes have been given to the channel, answered or not: a test
    /// that scripted a [`Scripted::Delay`] learns that a dispatcher is in the middle of a push.
    pub async fn wait_for_started(&self, n: u64) {
        self.wait_until(|| self.started() >= n).await;
    }

    async fn wait_until(&self, ready: impl Fn() -> bool) {
        struct Waiting<'a>(&'a AtomicUsize);
        impl Drop for Waiting<'_> {
            fn drop(&mut self) {
                self.0.fetch_sub(1, Ordering::SeqCst);
            }
        }
        self.inner.waiters.fetch_add(1, Ordering::SeqCst);
        let _waiting = Waiting(&self.inner.waiters);
        loop {
            let notified = self.inner.changed.notified();
            tokio::pin!(notified);
            notified.as_mut().enable();
            if ready() {
                return;
            }
            notified.await;
        }
    }

    fn changed(&self) {
        if self.inner.waiters.load(Ordering::SeqCst) > 0 {
            self.inner.changed.notify_waiters();
        }
    }

    fn lock(&self) -> MutexGuard<'_, Recorder> {
        self.inner
            .state
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
    }

    /// The scripted answer for the next push to `endpoint`.
    fn next_answer(&self, endpoint: EndpointId) -> Scripted {
        if !self.inner.scripted.load(Ordering::SeqCst) {
            return Scripted::Accept;
        }
        let mut state = self.lock();
        if let Some(answer) = state
            .queues
            .get_mut(&endpoint)
            .and_then(VecDeque::pop_front)
        {
            return answer;
        }
        state
            .standing
            .get(&endpoint)
            .copied()
            .or(state.default)
            .unwrap_or(Scripted::Accept)
    }

    /// The error for a push over the payload limit, if it is.
    fn check_size(&self, push: &Push) -> Option<PushError> {
        let limit = self.inner.payload_limit.load(Ordering::SeqCst);
        if limit == 0 {
            return None;
        }
        let size = serde_json::to_vec(&push.content).map_or(usize::MAX, |v| v.len());
        (size > limit).then(|| PushError::payload_too_large(size, limit))
    }

    fn answer(
        &self,
        push: &Push,
        result: Result<Accepted, PushError>,
    ) -> Result<Accepted, PushError> {
        if !self.inner.counting {
            let recorded = RecordedPush {
                push: push.clone(),
                answer: Answer::of(&result),
            };
            self.lock().pushes.push(recorded);
        }
        self.inner.answered.fetch_add(1, Ordering::SeqCst);
        self.changed();
        result
    }
}

impl fmt::Debug for RecordingChannel {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("RecordingChannel")
            .field("platform", &self.inner.platform)
            .field("counting", &self.inner.counting)
            .field("answered", &self.len())
            .field("accepted", &self.accepted_count())
            .finish_non_exhaustive()
    }
}

/// A real provider's payload limit for `platform` (PROTOCOLS.md §5), in bytes.
fn platform_limit(platform: Platform) -> usize {
    match platform {
        Platform::Apns | Platform::Fcm => 4096,
        Platform::Wns => 5000,
        Platform::WebPush => 3993,
    }
}

#[async_trait]
impl PushChannel for RecordingChannel {
    fn platform(&self) -> Platform {
        self.inner.platform
    }

    fn capabilities(&self) -> ChannelCapabilities {
        let limit = self.inner.payload_limit.load(Ordering::SeqCst);
        ChannelCapabilities {
            max_payload_bytes: if limit == 0 {
                platform_limit(self.inner.platform)
            } else {
                limit
            },
            silent_push: self.inner.platform.supports_silent_push(),
            collapse: true,
        }
    }

    async fn send(&self, push: &Push) -> Result<Accepted, PushError> {
        self.inner.started.fetch_add(1, Ordering::SeqCst);
        self.changed();
        if let Some(too_large) = self.check_size(push) {
            return self.answer(push, Err(too_large));
        }
        let scripted = self.next_answer(push.endpoint.id);
        if let Scripted::Delay(d) = scripted {
            tokio::time::sleep(d).await;
        }
        let result = match scripted.error() {
            Some(e) => Err(e),
            None => {
                let n = self.inner.accepted.fetch_add(1, Ordering::SeqCst) + 1;
                Ok(Accepted {
                    provider_message_id: Some(format!("recorded-{n}")),
                })
            }
        };
        self.answer(push, result)
    }
}
