//! Server-Sent Events: a partition's records and a member's polls as streams.

use crate::common::*;
use crate::groups::*;
use axum::body::Body;
use axum::http::{header, Request, StatusCode};
use http_body_util::BodyExt;
use serde_json::{json, Value};
use std::time::Duration;
use tokio::time::Instant;
use tower::ServiceExt;

/// One block of an event stream: an event (`event`, `id`, `data`) or comments.
#[derive(Debug, Default)]
struct Block {
    event: Option<String>,
    id: Option<String>,
    data: Option<String>,
    comments: Vec<String>,
}

/// Reads an event stream's body block by block.
struct EventReader {
    body: Body,
    buf: Vec<u8>,
}

impl EventReader {
    /// The next block, waiting for it until `deadline`.
    async fn next_block(&mut self, deadline: Instant) -> Block {
        loop {
            if let Some(end) = self.buf.windows(2).position(|w| w == b"\n\n") {
                let text = String::from_utf8(self.buf[..end].to_vec()).expect("UTF-8 stream");
                self.buf.drain(..end + 2);
                let mut block = Block::default();
                for line in text.lines() {
                    if let Some(comment) = line.strip_prefix(':') {
                        block.comments.push(comment.trim().to_owned());
                        continue;
                    }
                    let (field, value) = line.split_once(':').unwrap_or((line, ""));
                    let value = value.strip_prefix(' ').unwrap_or(value).to_owned();
                    match field {
                        "event" => block.event = Some(value),
                        "id" => block.id = Some(value),
                        "data" => block.data = Some(value),
                        other => panic!("unexpected field `{other}` in {text:?}"),
                    }
                }
                return block;
            }
            let frame = tokio::time::timeout_at(deadline, self.body.frame())
                .await
                .unwrap_or_else(|_| panic!("no complete block before the deadline; buffered {:?}", self.buf))
                .expect("the stream ended")
                .expect("stream error");
            if let Ok(data) = frame.into_data() {
                self.buf.extend_from_slice(&data);
            }
        }
    }

    /// The next `record` event (heartbeats skipped) as `(id, data)`.
    async fn next_record(&mut self, deadline: Instant) -> (String, Value) {
        loop {
            let block = self.next_block(deadline).await;
            if block.event.is_none() && block.data.is_none() {
                continue;
            }
            assert_eq!(block.event.as_deref(), Some("record"), "{block:?}");
            let data = serde_json::from_str(block.data.as_deref().expect("data")).expect("record JSON");
            return (block.id.expect("an id"), data);
        }
    }

    /// The next `n` records as `(id, offset, value)`.
    async fn records(&mut self, n: usize) -> Vec<(String, u64, String)> {
        let deadline = Instant::now() + Duration::from_secs(10);
        let mut out = Vec::new();
        for _ in 0..n {
            let (id, data) = self.next_record(deadline).await;
            out.push((id, data["offset"].as_u64().expect("offset"), data["value"].as_str().expect("value").to_owned()));
        }
        out
    }
}

impl Harness {
    /// Opens an event stream, asserting 200 and `text/event-stream`.
    async fn stream(&self, uri: &str, headers: &[(&str, &str)]) -> EventReader {
        let mut builder = Request::get(uri).header(header::ACCEPT, "text/event-stream");
        for (name, value) in headers {
            builder = builder.header(*name, *value);
        }
        let response =
            self.app.clone().oneshot(builder.body(Body::empty()).expect("request")).await.expect("infallible");
        assert_eq!(response.status(), StatusCode::OK);
        let content_type = response.headers().get(header::CONTENT_TYPE).and_then(|v| v.to_str().ok()).unwrap_or("");
        assert!(content_type.starts_with("text/event-stream"), "content type `{content_type}`");
        EventReader { body: response.into_body(), buf: Vec::new() }
    }
}

/// `(id, offset, value)` of records `from..to` of partition `p` as `fill` wrote them.
fn expected(p: u32, from: u64, to: u64) -> Vec<(String, u64, String)> {
    (from..to).map(|o| (format!("{p}:{o}"), o, format!("p{p}-{o}"))).collect()
}

/// Records produced before and after the stream opened all arrive, in order, as
/// `event: record` with `id: partition:offset` and the record as data.
#[tokio::test]
async fn sse_streams_records_from_before_and_after_opening() {
    let h = Harness::new().await;
    h.create_topic(json!({"name": "e", "partitions": 2})).await;
    h.fill("e", 1, 0, 3).await;
    h.fill("e", 0, 0, 1).await;
    let mut s = h.stream("/v1/topics/e/partitions/1/records?offset=earliest", &[]).await;
    assert_eq!(s.records(3).await, expected(1, 0, 3));
    h.fill("e", 1, 3, 2).await;
    h.fill("e", 0, 1, 1).await;
    h.fill("e", 1, 5, 1).await;
    assert_eq!(s.records(3).await, expected(1, 3, 6), "only partition 1, in order, nothing skipped");

    // From an offset, too.
    let mut s = h.stream("/v1/topics/e/partitions/1/records?offset=4", &[]).await;
    assert_eq!(s.records(2).await, expected(1, 4, 6));
    h.shutdown().await;
}

/// With `heartbeat_ms=100`, an idle stream sends a `:heartbeat` comment; a record
/// produced afterwards still arrives. `heartbeat_ms` outside [100, 60000] is 400.
#[tokio::test]
async fn sse_sends_heartbeats_while_idle() {
    let h = Harness::new().await;
    h.create_topic(json!({"name": "e", "partitions": 1})).await;
    h.fill("e", 0, 0, 2).await;
    for q in ["heartbeat_ms=99", "heartbeat_ms=60001", "heartbeat_ms=-1", "heartbeat_ms=often"] {
        h.get_with(&format!("/v1/topics/e/partitions/0/records?{q}"), &[("accept", "text/event-stream")])
            .await
            .expect_error(400, "invalid_request");
    }
    let mut s = h.stream("/v1/topics/e/partitions/0/records?offset=latest&heartbeat_ms=100", &[]).await;
    let block = s.next_block(Instant::now() + Duration::from_secs(5)).await;
    assert_eq!((block.event.as_deref(), block.data.as_deref()), (None, None), "no record is due: {block:?}");
    assert_eq!(block.comments, ["heartbeat"]);
    let block = s.next_block(Instant::now() + Duration::from_secs(5)).await;
    assert_eq!(block.comments, ["heartbeat"], "heartbeats keep coming while idle");
    h.fill("e", 0, 2, 1).await;
    assert_eq!(s.records(1).await, expected(0, 2, 3));
    h.shutdown().await;
}

/// The `fjord_gateway_streams_open` gauge.
async fn streams_open(h: &Harness) -> f64 {
    let text = h.get("/metrics").await.text();
    text.lines()
        .find_map(|l| l.strip_prefix("fjord_gateway_streams_open ")?.parse::<f64>().ok())
        .unwrap_or_else(|| panic!("no streams_open gauge in {text}"))
}

/// Waits (10 s at most) until the gauge is `want`.
async fn streams_open_reaches(h: &Harness, want: f64, what: &str) {
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let now = streams_open(h).await;
        if now == want {
            return;
        }
        assert!(Instant::now() < deadline, "{what}: streams_open is {now}, not {want}, after 10 s");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// `fjord_gateway_streams_open` counts open event streams: two while two are open (the
/// requests-in-flight gauge no longer does once their heads went), one within a few
/// heartbeats after a client drops its stream.
#[tokio::test]
async fn open_streams_are_counted_until_their_client_leaves() {
    let h = Harness::new().await;
    h.create_topic(json!({"name": "e", "partitions": 1})).await;
    assert_eq!(streams_open(&h).await, 0.0);
    let mut first = h.stream("/v1/topics/e/partitions/0/records?offset=latest&heartbeat_ms=100", &[]).await;
    let second = h.stream("/v1/topics/e/partitions/0/records?offset=latest&heartbeat_ms=100", &[]).await;
    // The pump starts on its own task just after the head: wait for the count.
    streams_open_reaches(&h, 2.0, "two open").await;
    drop(second);
    streams_open_reaches(&h, 1.0, "one dropped").await;
    // The other one still streams.
    h.fill("e", 0, 0, 1).await;
    assert_eq!(first.records(1).await, expected(0, 0, 1));
    h.shutdown().await;
}

/// Reconnecting with `Last-Event-ID: p:o` resumes at o + 1 (over the query's offset):
/// no gap, no repeat — the record after the last one expected is a new one produced as
/// a marker. A Last-Event-ID naming another partition, or malformed, is 400; one past
/// the log end is 416.
#[tokio::test]
async fn sse_resumes_after_last_event_id() {
    let h = Harness::new().await;
    h.create_topic(json!({"name": "e", "partitions": 2})).await;
    h.fill("e", 0, 0, 5).await;
    let uri = "/v1/topics/e/partitions/0/records?offset=earliest";
    let mut first = h.stream(uri, &[]).await;
    let seen = first.records(3).await;
    assert_eq!(seen, expected(0, 0, 3));
    let last_id = seen[2].0.clone();
    drop(first);

    let mut resumed = h.stream(uri, &[("last-event-id", last_id.as_str())]).await;
    assert_eq!(resumed.records(2).await, expected(0, 3, 5));
    h.fill("e", 0, 5, 1).await;
    assert_eq!(resumed.records(1).await, expected(0, 5, 6), "nothing between the resumed records and the marker");

    // Resuming after the last record waits for the next one.
    let mut tail = h.stream(uri, &[("last-event-id", "0:5")]).await;
    h.fill("e", 0, 6, 1).await;
    assert_eq!(tail.records(1).await, expected(0, 6, 7));

    for bad in ["1:2", "2", "0:x", "-1:2", "0:-1", ""] {
        let reply = h.get_with(uri, &[("accept", "text/event-stream"), ("last-event-id", bad)]).await;
        let message = reply.expect_error(400, "invalid_request");
        if bad == "1:2" {
            assert!(message.contains("partition 1"), "{message}");
        }
    }
    h.get_with(uri, &[("accept", "text/event-stream"), ("last-event-id", "0:100")])
        .await
        .expect_error(416, "offset_out_of_range");
    h.shutdown().await;
}

/// A member's poll as an event stream: first `event: assignment` with the member's id,
/// generation and partitions, then `event: record` with `id: topic:partition:offset` for
/// records there before and produced after. After a rebalance, an `assignment` event with
/// the new generation comes before any record read in it.
#[tokio::test]
async fn member_event_stream_sends_the_assignment_then_records() {
    let h = Harness::new().await;
    h.create_topic(json!({"name": "ms", "partitions": 2})).await;
    h.fill("ms", 0, 0, 2).await;
    let joined = h.join("g", member("ms", "a", "range", "earliest")).await;
    let a = member_id(&joined);
    let mut s = h.stream(&format!("/v1/groups/g/members/{a}/records"), &[]).await;
    let deadline = Instant::now() + Duration::from_secs(10);
    let first = s.next_block(deadline).await;
    assert_eq!(first.event.as_deref(), Some("assignment"), "{first:?}");
    let assignment: Value = serde_json::from_str(first.data.as_deref().expect("data")).expect("JSON");
    assert_eq!(assignment["member_id"], json!(a));
    assert_eq!(assignment["generation"], joined["generation"]);
    assert_eq!(partitions(&assignment["assignment"]), all(2));
    let mut ids = Vec::new();
    for _ in 0..2 {
        ids.push(s.next_record(deadline).await.0);
    }
    h.fill("ms", 1, 0, 1).await;
    ids.push(s.next_record(deadline).await.0);
    assert_eq!(ids, ["ms:0:0", "ms:0:1", "ms:1:0"]);

    // b joins. The long poll a's stream has in flight belongs to the old generation and
    // may still return a record; the record after that is read in the new generation,
    // so its `assignment` event must come first.
    let b = h.join("g", member("ms", "b", "range", "earliest")).await;
    h.fill("ms", 0, 2, 1).await;
    let mut seen: Vec<(Option<String>, Option<String>)> = Vec::new();
    let mut announced = None;
    while !seen.iter().any(|(_, id)| id.as_deref() == Some("ms:0:3")) {
        let block = s.next_block(deadline).await;
        if block.event.is_none() {
            continue;
        }
        if block.event.as_deref() == Some("assignment") {
            announced = Some(serde_json::from_str::<Value>(block.data.as_deref().expect("data")).expect("JSON"));
        }
        if block.id.as_deref() == Some("ms:0:2") {
            h.fill("ms", 0, 3, 1).await;
        }
        seen.push((block.event, block.id));
    }
    let records: Vec<&str> = seen.iter().filter_map(|(_, id)| id.as_deref()).collect();
    assert_eq!(records, ["ms:0:2", "ms:0:3"], "{seen:?}");
    let at = seen.iter().position(|(e, _)| e.as_deref() == Some("assignment")).expect("an assignment event");
    assert!(at < seen.len() - 1, "the new assignment came after a record of the new generation: {seen:?}");
    let announced = announced.expect("assignment");
    assert_eq!(announced["generation"], b["generation"], "{announced}");
    assert_eq!(partitions(&announced["assignment"]), set([0]), "{announced}");
    h.shutdown().await;
}

/// A rebalance reaches an idle member's event stream promptly: the `assignment` event
/// should not wait for the stream's long poll (15 s, twice) to end without records.
#[tokio::test]
async fn member_event_stream_announces_a_rebalance_without_waiting_for_records() {
    let h = Harness::new().await;
    h.create_topic(json!({"name": "ms", "partitions": 2})).await;
    let a = h.join_id("g", member("ms", "a", "range", "earliest")).await;
    let mut s = h.stream(&format!("/v1/groups/g/members/{a}/records"), &[]).await;
    let first = s.next_block(Instant::now() + Duration::from_secs(10)).await;
    assert_eq!(first.event.as_deref(), Some("assignment"), "{first:?}");
    let b = h.join("g", member("ms", "b", "range", "earliest")).await;
    // Well under the stream's 15 s long poll, well over what a coordinator call takes.
    let deadline = Instant::now() + Duration::from_secs(5);
    let block = s.next_block(deadline).await;
    assert_eq!(block.event.as_deref(), Some("assignment"), "{block:?}");
    let announced: Value = serde_json::from_str(block.data.as_deref().expect("data")).expect("JSON");
    assert_eq!(announced["generation"], b["generation"]);
    h.shutdown().await;
}
