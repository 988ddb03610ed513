//! Our one adapter from [`PushChannel`] to tower, so channel authors never write a `Service`.

use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use futures::future::BoxFuture;
use tower::util::BoxCloneSyncService;
use tower::{Service, ServiceBuilder, ServiceExt};

use crate::channel::{Accepted, Push, PushChannel};
use crate::error::{BoxError, PushError};

/// A channel behind tower layers.
pub(crate) type ChannelService = BoxCloneSyncService<Push, Accepted, PushError>;

#[derive(Clone)]
struct PushChannelService(Arc<dyn PushChannel>);

impl Service<Push> for PushChannelService {
    type Response = Accepted;
    type Error = PushError;
    type Future = BoxFuture<'static, Result<Accepted, PushError>>;

    fn poll_ready(&mut self, _cx: &mut Context<'_>) -> Poll<Result<(), PushError>> {
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, push: Push) -> Self::Future {
        let channel = Arc::clone(&self.0);
        Box::pin(async move { channel.send(&push).await })
    }
}

/// Wraps `channel` in a per-attempt timeout and a concurrency limit shared by every clone.
pub(crate) fn layered(
    channel: Arc<dyn PushChannel>,
    timeout: Duration,
    concurrency: usize,
) -> ChannelService {
    let service = ServiceBuilder::new()
        .concurrency_limit(concurrency)
        .timeout(timeout)
        .service(PushChannelService(channel))
        .map_err(move |e: BoxError| match e.downcast::<PushError>() {
            Ok(push_error) => *push_error,
            Err(other) if other.is::<tower::timeout::error::Elapsed>() => {
                PushError::timeout(format!("no answer within {timeout:?}"))
            }
            Err(other) => PushError::unavailable("channel failed").with_source(other),
        });
    BoxCloneSyncService::new(service)
}
