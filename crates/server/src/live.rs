//! Live streams: optional backfill bucket by bucket, then every bucket as it closes, filtered
//! per subscriber. Shared by gRPC `Flows.Stream`, the SSE API and whisker's watch; a client
//! that falls behind is told in-band and dropped, and ingestion never waits for it.

use std::sync::atomic::Ordering;
use std::sync::Arc;

use caracal_flow::filter::Expr;
use caracal_flow::time::BUCKET_SECONDS;
use caracal_flow::Flow;
use tokio::sync::{broadcast, mpsc};

use crate::hub::{Hub, StreamGuard};

/// What a live stream delivers.
#[derive(Debug)]
pub enum StreamEvent {
    /// A flow of a closed bucket (or of the backfill), with its stable id.
    Flow(i64, Box<Flow>),
    /// The client fell behind by this many buckets and is being dropped.
    Lagged(u64),
}

/// Sends backfill (bucket by bucket from `start`) and then every closed bucket, filtered,
/// until the receiver goes away or falls so far behind that it is dropped. Ingestion never
/// waits for a stream: a slow one lags on the broadcast and is told so in-band.
pub async fn stream_flows(
    hub: Arc<Hub>,
    filter: Expr,
    start: Option<i64>,
    events: mpsc::Sender<StreamEvent>,
) {
    let _guard = StreamGuard::new(hub.clone());
    let mut live = hub.subscribe();
    let mut last_sent = hub.last_emitted();
    let send_bucket = |flows: &[(i64, Flow)]| {
        let matching: Vec<StreamEvent> = flows
            .iter()
            .filter(|(_, flow)| filter.matches(flow))
            .map(|(id, flow)| StreamEvent::Flow(*id, Box::new(flow.clone())))
            .collect();
        hub.metrics
            .streamed
            .fetch_add(matching.len() as u64, Ordering::Relaxed);
        matching
    };
    if let Some(start) = start {
        let mut bucket = caracal_flow::time::bucket_start(start).max(hub.ring().oldest_bucket());
        while bucket <= last_sent {
            let flows = hub.ring().bucket_flows(bucket);
            for event in send_bucket(&flows) {
                if events.send(event).await.is_err() {
                    return;
                }
            }
            bucket += BUCKET_SECONDS;
        }
    }
    let closing = hub.closing();
    tokio::pin!(closing);
    loop {
        let received = tokio::select! {
            _ = &mut closing => return,
            received = live.recv() => received,
        };
        match received {
            Ok(closed) if closed.start <= last_sent => continue,
            Ok(closed) => {
                last_sent = closed.start;
                for event in send_bucket(&closed.flows) {
                    if events.send(event).await.is_err() {
                        return;
                    }
                }
            }
            Err(broadcast::error::RecvError::Lagged(missed)) => {
                hub.metrics.streams_dropped.fetch_add(1, Ordering::Relaxed);
                tracing::warn!(
                    missed_buckets = missed,
                    "dropping a live stream that fell behind"
                );
                let _ = events.send(StreamEvent::Lagged(missed)).await;
                return;
            }
            Err(broadcast::error::RecvError::Closed) => return,
        }
    }
}
