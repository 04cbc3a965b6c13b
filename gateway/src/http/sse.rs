//! Server-Sent Events: one pump behind every stream (a partition's records, a group
//! member's polls). A stream's [`EventSource`] says what comes next; the pump sends it,
//! keeps the connection alive with heartbeat comments while idle, ends the stream with
//! an `error` event when the source fails, and stops as soon as the client goes.

use crate::error::{ApiResult, ErrorBody};
use axum::http::{header, HeaderMap};
use axum::response::sse::{Event, KeepAlive, Sse};
use fjord_protocol::FjordError;
use futures::{SinkExt, Stream, StreamExt};
use prometheus_client::metrics::gauge::Gauge;
use std::convert::Infallible;
use std::future::Future;
use std::time::Duration;

/// Events queued for a slow client before the source waits for it.
const BUFFER: usize = 256;

/// What a stream sends next.
pub trait EventSource: Send + 'static {
    /// The next events: empty when nothing arrived within the source's own wait, an
    /// error to end the stream with.
    fn next_events(&mut self) -> impl Future<Output = ApiResult<Vec<Event>>> + Send;
}

/// A stream that sends `first`, then whatever `source` gives, until either fails or
/// the client disconnects.
///
/// `open` counts the stream while its pump runs (it stops at the first send or check
/// after the client left: within one heartbeat interval).
pub fn stream(
    mut source: impl EventSource,
    first: ApiResult<Vec<Event>>,
    heartbeat: Duration,
    open: Gauge,
) -> Sse<impl Stream<Item = Result<Event, Infallible>>> {
    let (mut tx, rx) = futures::channel::mpsc::channel::<Event>(BUFFER);
    tokio::spawn(async move {
        let _open = crate::metrics::Held::enter(&open);
        let mut next = first;
        loop {
            match next {
                Ok(events) => {
                    for event in events {
                        if tx.send(event).await.is_err() {
                            return;
                        }
                    }
                }
                Err(e) => {
                    let _ = tx.send(error_event(&e.0)).await;
                    return;
                }
            }
            if tx.is_closed() {
                return;
            }
            next = source.next_events().await;
        }
    });
    Sse::new(rx.map(Ok)).keep_alive(KeepAlive::new().interval(heartbeat).text("heartbeat"))
}

/// An error as the last event of a stream.
pub fn error_event(e: &FjordError) -> Event {
    let body = serde_json::to_string(&ErrorBody::from_error(e)).unwrap_or_default();
    Event::default().event("error").data(body)
}

/// Whether the client asked for a Server-Sent Events stream.
pub fn wants_event_stream(headers: &HeaderMap) -> bool {
    accepts(headers, "text/event-stream")
}

/// Whether an `Accept` header names `media` (parameters and quality ignored).
pub fn accepts(headers: &HeaderMap, media: &str) -> bool {
    headers
        .get_all(header::ACCEPT)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .any(|m| m.split(';').next().is_some_and(|m| m.trim().eq_ignore_ascii_case(media)))
}
