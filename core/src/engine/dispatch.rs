//! The dispatcher: lease due deliveries, push them, record what happened.

use std::collections::HashMap;
use std::fmt;
use std::future::Future;
use std::time::{Duration, Instant};

use futures::stream::{FuturesUnordered, StreamExt};
use tower::ServiceExt;
use tracing::Instrument;

use crate::app::{App, PayloadMode};
use crate::channel::{Push, PushContent};
use crate::delivery::{DeliveryKind, DeliveryOutcome, LeasedDelivery, Outcome};
use crate::error::{Error, PushError, PushErrorKind, Retry, ValidationError};
use crate::notification::Priority;
use crate::platform::Platform;
use crate::store::LeaseRequest;
use crate::time::Timestamp;

use super::service::{layered, ChannelService};
use super::{Backoff, Tidings};

/// How a [`Dispatcher`] works.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct DispatcherConfig {
    /// Deliveries leased per batch (default 512).
    pub batch_size: usize,
    /// How long a lease lasts; a delivery whose dispatcher died is retaken after it (default
    /// 90 s). Must exceed `attempt_timeout` × ⌈`batch_size` / `concurrency_per_channel`⌉, the
    /// longest a batch's pushes to one channel can take, so that outcomes arrive while their
    /// leases hold.
    pub lease_duration: Duration,
    /// Per-attempt timeout; a push that takes longer is retried (default 30 s).
    pub attempt_timeout: Duration,
    /// Pushes in flight per channel (default 256).
    pub concurrency_per_channel: usize,
    /// How long an idle dispatcher waits for new work before looking again (default 1 s).
    pub idle_poll: Duration,
    /// Backoff between retries.
    pub backoff: Backoff,
    /// Attempts before a delivery is given up (default 12).
    pub max_attempts: u32,
    /// How often [`Dispatcher::run`] also sweeps expired data (default every 60 s; `None`: never).
    pub sweep_interval: Option<Duration>,
}

impl Default for DispatcherConfig {
    fn default() -> Self {
        DispatcherConfig {
            batch_size: 512,
            lease_duration: Duration::from_secs(90),
            attempt_timeout: Duration::from_secs(30),
            concurrency_per_channel: 256,
            idle_poll: Duration::from_secs(1),
            backoff: Backoff::default(),
            max_attempts: 12,
            sweep_interval: Some(Duration::from_secs(60)),
        }
    }
}

impl DispatcherConfig {
    fn validate(&self) -> Result<(), ValidationError> {
        if self.batch_size == 0 || self.batch_size > 10_000 {
            return Err(ValidationError::new("batch_size", "must be 1 to 10000"));
        }
        if self.concurrency_per_channel == 0 {
            return Err(ValidationError::new(
                "concurrency_per_channel",
                "must be positive",
            ));
        }
        // A batch's pushes to one channel go in waves of `concurrency_per_channel`, each wave
        // taking up to `attempt_timeout`.
        let waves = u32::try_from(self.batch_size.div_ceil(self.concurrency_per_channel))
            .unwrap_or(u32::MAX);
        if self.attempt_timeout.is_zero()
            || self.lease_duration <= self.attempt_timeout.saturating_mul(waves)
        {
            return Err(ValidationError::new(
                "lease_duration",
                format!(
                    "must be longer than attempt_timeout × ⌈batch_size / concurrency_per_channel⌉ \
                     ({waves} × {:?}), and attempt_timeout positive",
                    self.attempt_timeout
                ),
            ));
        }
        if self.max_attempts == 0 {
            return Err(ValidationError::new("max_attempts", "must be positive"));
        }
        if self.idle_poll.is_zero() {
            return Err(ValidationError::new("idle_poll", "must be positive"));
        }
        Ok(())
    }
}

/// What one [`Dispatcher::run_once`] did.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct DispatchReport {
    /// Deliveries leased.
    pub leased: usize,
    /// Pushes the provider accepted.
    pub accepted: usize,
    /// Deliveries rescheduled.
    pub retried: usize,
    /// Deliveries given up.
    pub failed: usize,
    /// Endpoints found gone.
    pub gone: usize,
    /// Outcomes the store ignored because the lease had been retaken meanwhile.
    pub stale: usize,
}

impl DispatchReport {
    fn add(&mut self, other: DispatchReport) {
        self.leased += other.leased;
        self.accepted += other.accepted;
        self.retried += other.retried;
        self.failed += other.failed;
        self.gone += other.gone;
        self.stale += other.stale;
    }
}

/// Pushes due deliveries through the channels. Build one with [`Tidings::dispatcher`]; run it
/// as a task with [`run`](Dispatcher::run), or step it with [`run_once`](Dispatcher::run_once)
/// in tests. Several dispatchers (tasks, processes, hosts) may share a store: leases split the
/// work, and a dispatcher that dies loses nothing (its leases lapse and are retaken).
#[derive(Clone)]
pub struct Dispatcher {
    tidings: Tidings,
    config: DispatcherConfig,
    services: HashMap<Platform, ChannelService>,
}

impl fmt::Debug for Dispatcher {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Dispatcher")
            .field("config", &self.config)
            .finish_non_exhaustive()
    }
}

impl Tidings {
    /// A dispatcher with the default [`DispatcherConfig`].
    pub fn dispatcher(&self) -> Dispatcher {
        let config = DispatcherConfig::default();
        Dispatcher::new(self.clone(), config)
    }

    /// A dispatcher with `config`, checked.
    pub fn dispatcher_with(&self, config: DispatcherConfig) -> Result<Dispatcher, ValidationError> {
        config.validate()?;
        Ok(Dispatcher::new(self.clone(), config))
    }
}

/// One push in flight: its delivery and what it became.
struct Attempt {
    leased: LeasedDelivery,
    result: Result<crate::channel::Accepted, PushError>,
}

impl Dispatcher {
    fn new(tidings: Tidings, config: DispatcherConfig) -> Self {
        let services = tidings
            .inner
            .channels
            .iter()
            .map(|(p, c)| {
                let svc = layered(
                    c.clone(),
                    config.attempt_timeout,
                    config.concurrency_per_channel,
                );
                (*p, svc)
            })
            .collect();
        Dispatcher {
            tidings,
            config,
            services,
        }
    }

    /// The configuration.
    pub fn config(&self) -> &DispatcherConfig {
        &self.config
    }

    /// Leases one batch of due deliveries, pushes them concurrently and records the outcomes.
    pub async fn run_once(&self) -> Result<DispatchReport, Error> {
        let store = &self.tidings.inner.store;
        let clock = &self.tidings.inner.clock;
        let now = clock.now();
        let leased = store
            .lease_due(LeaseRequest {
                now,
                limit: self.config.batch_size,
                lease_until: now.plus(self.config.lease_duration),
            })
            .await?;
        let mut report = DispatchReport {
            leased: leased.len(),
            ..DispatchReport::default()
        };
        if leased.is_empty() {
            return Ok(report);
        }

        let mut in_flight = FuturesUnordered::new();
        let mut early = Vec::new();
        let mut histograms: HashMap<Platform, metrics::Histogram> = HashMap::new();
        for item in leased {
            match self.render(&item, now) {
                Ok((push, service)) => {
                    let platform = item.endpoint.platform();
                    let histogram = histograms
                        .entry(platform)
                        .or_insert_with(|| {
                            metrics::histogram!(
                                "tidings_push_duration_seconds",
                                "platform" => platform.as_str()
                            )
                        })
                        .clone();
                    in_flight.push(self.push_one(item, push, service, histogram));
                }
                Err(error) => early.push(Attempt {
                    leased: item,
                    result: Err(error),
                }),
            }
        }
        let mut attempts = early;
        while let Some(attempt) = in_flight.next().await {
            attempts.push(attempt);
        }

        let done_at = clock.now();
        let mut counts: HashMap<(Platform, &'static str), u64> = HashMap::new();
        let outcomes: Vec<DeliveryOutcome> = attempts
            .into_iter()
            .map(|attempt| {
                let platform = attempt.leased.endpoint.platform();
                let outcome = self.classify(&attempt, done_at);
                let label = match &outcome {
                    Outcome::Accepted { .. } => {
                        report.accepted += 1;
                        "accepted"
                    }
                    Outcome::Retry { .. } => {
                        report.retried += 1;
                        "retry"
                    }
                    Outcome::Failed { .. } => {
                        report.failed += 1;
                        "failed"
                    }
                    Outcome::EndpointGone { .. } => {
                        report.gone += 1;
                        "gone"
                    }
                };
                *counts.entry((platform, label)).or_default() += 1;
                DeliveryOutcome {
                    delivery: attempt.leased.delivery.id,
                    lease: attempt.leased.lease,
                    endpoint: attempt.leased.endpoint.id,
                    outcome,
                    at: done_at,
                }
            })
            .collect();
        for ((platform, outcome), n) in counts {
            metrics::counter!(
                "tidings_push_attempts_total",
                "platform" => platform.as_str(),
                "outcome" => outcome
            )
            .increment(n);
        }
        let recorded = store.record_outcomes(outcomes).await?;
        report.stale = recorded.stale;
        if recorded.stale > 0 {
            // Outcomes that came after their lease lapsed: the pushes will be sent again.
            metrics::counter!("tidings_stale_outcomes_total").increment(recorded.stale as u64);
            tracing::warn!(
                stale = recorded.stale,
                "outcomes arrived after their leases lapsed; those deliveries will be sent again"
            );
        }
        if recorded.deactivated > 0 {
            metrics::counter!("tidings_endpoints_deactivated_total", "reason" => "gone")
                .increment(recorded.deactivated as u64);
        }
        Ok(report)
    }

    /// Runs batches until nothing is due (tests and the quickstart use it with a manual clock).
    pub async fn run_until_idle(&self) -> Result<DispatchReport, Error> {
        let mut total = DispatchReport::default();
        loop {
            let report = self.run_once().await?;
            total.add(report);
            // Stop when nothing was leased, or when only retries into the future remain.
            if report.leased == 0 || report.leased == report.retried + report.stale {
                return Ok(total);
            }
        }
    }

    /// Dispatches until `shutdown` completes, then returns after finishing the batch in hand.
    /// Idle, it waits for the store's work signal (or `idle_poll`); it sweeps expired data every
    /// `sweep_interval`. Store failures are logged and retried after `idle_poll`, never fatal.
    pub async fn run<F>(self, shutdown: F) -> Result<(), Error>
    where
        F: Future<Output = ()> + Send,
    {
        let mut shutdown = std::pin::pin!(shutdown);
        let mut last_sweep = Instant::now();
        loop {
            if let Some(every) = self.config.sweep_interval {
                if last_sweep.elapsed() >= every {
                    last_sweep = Instant::now();
                    if let Err(e) = self.tidings.sweep().await {
                        metrics::counter!("tidings_dispatcher_errors_total", "step" => "sweep")
                            .increment(1);
                        tracing::warn!(error = %e, "sweep failed");
                    }
                }
            }
            let idle = match self.run_once().await {
                Ok(report) => report.leased < self.config.batch_size,
                Err(e) => {
                    metrics::counter!("tidings_dispatcher_errors_total", "step" => "batch")
                        .increment(1);
                    tracing::warn!(error = %e, retryable = e.is_retryable(), "dispatch batch failed");
                    true
                }
            };
            if idle {
                tokio::select! {
                    biased;
                    () = &mut shutdown => return Ok(()),
                    () = self.tidings.inner.store.wait_for_work(self.config.idle_poll) => {}
                }
            } else if futures::poll!(&mut shutdown).is_ready() {
                return Ok(());
            }
        }
    }

    /// The push for a leased delivery and the service that sends it, or why it cannot be sent.
    fn render(
        &self,
        item: &LeasedDelivery,
        now: Timestamp,
    ) -> Result<(Push, ChannelService), PushError> {
        let platform = item.endpoint.platform();
        let service = self
            .services
            .get(&platform)
            .ok_or_else(|| PushError::misconfigured(format!("no channel for platform {platform}")))?
            .clone();
        let app = self
            .tidings
            .app(&item.delivery.app)
            .map_err(|_| PushError::misconfigured("the delivery's app is not configured"))?;
        let d = &item.delivery;
        let mut push = Push {
            delivery_id: d.id,
            kind: d.kind,
            app: d.app.clone(),
            endpoint: item.endpoint.clone(),
            notification_id: d.notification_id,
            sequence: d.sequence,
            priority: Priority::Low,
            collapse_id: "sync".to_owned(),
            group: None,
            display_ttl: None,
            expires_at: d.expires_at,
            sent_at: now,
            attempt: d.attempt,
            content: PushContent::Tap { alert: None },
        };
        if d.kind == DeliveryKind::Sync {
            return Ok((push, service));
        }
        let n = item
            .notification
            .as_ref()
            .ok_or_else(|| PushError::rejected("the notification no longer exists"))?;
        push.priority = n.priority;
        push.collapse_id = n.id.to_string();
        push.group = n.group.clone();
        push.display_ttl = n.display_ttl;
        push.sequence = push.sequence.max(n.sequence);
        push.content = match (d.kind, app.payload_mode) {
            (DeliveryKind::FallbackAlert, PayloadMode::Inline) => {
                push.priority = Priority::High;
                PushContent::Inline {
                    visual: n.fallback.as_ref().map(|f| f.visual.clone()),
                    raw: None,
                }
            }
            (DeliveryKind::FallbackAlert, PayloadMode::ShoulderTap) => {
                push.priority = Priority::High;
                tap(app, true)
            }
            (_, PayloadMode::Inline) => PushContent::Inline {
                visual: n.visual.clone(),
                raw: n.raw.clone(),
            },
            (_, PayloadMode::ShoulderTap) => tap(app, n.visual.is_some()),
        };
        Ok((push, service))
    }

    fn push_one(
        &self,
        leased: LeasedDelivery,
        push: Push,
        service: ChannelService,
        histogram: metrics::Histogram,
    ) -> impl Future<Output = Attempt> + Send + 'static {
        let span = tracing::debug_span!(
            "tidings.push",
            app = %push.app,
            platform = %leased.endpoint.platform(),
            kind = push.kind.as_str(),
            notification_id = ?push.notification_id,
            endpoint_id = %leased.endpoint.id,
            attempt = push.attempt,
        );
        // Only inline pushes may need a second, shoulder-tap rendering.
        let retry_as_tap = match &push.content {
            PushContent::Inline { visual, .. } => {
                let mut tap = push.clone();
                tap.content = PushContent::Tap {
                    alert: visual.as_ref().and_then(|_| {
                        self.tidings
                            .app(&push.app)
                            .ok()
                            .map(|a| a.placeholder.clone())
                    }),
                };
                Some(tap)
            }
            PushContent::Tap { .. } => None,
        };
        async move {
            let started = Instant::now();
            let mut result = service.clone().oneshot(push).await;
            if let (Err(e), Some(tap)) = (&result, retry_as_tap) {
                if e.kind() == PushErrorKind::PayloadTooLarge {
                    tracing::debug!("inline content too large; sending a shoulder tap instead");
                    result = service.oneshot(tap).await;
                }
            }
            histogram.record(started.elapsed().as_secs_f64());
            match &result {
                Ok(_) => tracing::debug!("push accepted"),
                // The ids again: the `tidings.push` span is at DEBUG, this event at INFO.
                Err(e) => tracing::info!(
                    app = %leased.delivery.app,
                    platform = %leased.endpoint.platform(),
                    endpoint_id = %leased.endpoint.id,
                    notification_id = ?leased.delivery.notification_id,
                    attempt = leased.delivery.attempt,
                    kind = ?e.kind(),
                    reason = e.reason().unwrap_or(""),
                    retryable = e.is_retryable(),
                    "push failed: {}",
                    e.message()
                ),
            }
            Attempt { leased, result }
        }
        .instrument(span)
    }

    fn classify(&self, attempt: &Attempt, now: Timestamp) -> Outcome {
        let d = &attempt.leased.delivery;
        let error = match &attempt.result {
            Ok(accepted) => {
                return Outcome::Accepted {
                    provider_message_id: accepted.provider_message_id.clone(),
                }
            }
            Err(e) => e,
        };
        if error.endpoint_gone() {
            tracing::info!(
                endpoint_id = %attempt.leased.endpoint.id,
                platform = %attempt.leased.endpoint.platform(),
                "endpoint gone; deactivating"
            );
            return Outcome::EndpointGone {
                reason: error.reason().unwrap_or(error.message()).to_owned(),
                address_key: attempt.leased.endpoint.address.key(),
            };
        }
        let text = match error.reason() {
            Some(reason) => format!("{reason}: {}", error.message()),
            None => error.message().to_owned(),
        };
        let delay = match error.retry() {
            Retry::Never => return Outcome::Failed { error: text },
            Retry::Backoff => self.config.backoff.delay(d.attempt),
            Retry::After(after) => after,
        };
        if d.attempt >= self.config.max_attempts {
            return Outcome::Failed {
                error: format!("gave up after {} attempts: {text}", d.attempt),
            };
        }
        let at = now.plus(delay);
        if at >= d.expires_at {
            return Outcome::Failed {
                error: format!("the next attempt would come after expiry: {text}"),
            };
        }
        Outcome::Retry { at, error: text }
    }
}

fn tap(app: &App, visible: bool) -> PushContent {
    PushContent::Tap {
        alert: visible.then(|| app.placeholder.clone()),
    }
}
