//! Prometheus metrics: the process's registry, the gateway's own metrics, and the
//! middleware that counts and times every request.
//!
//! Names follow Prometheus conventions (`fjord_gateway_*`, `_total` counters, `_seconds`
//! histograms) with Kafka's meanings where Kafka has one (records and bytes in and out
//! per topic). `GET /metrics` encodes the registry in the OpenMetrics text format; a
//! storage node in the same process (`fjord standalone`) adds its collector to it
//! ([`crate::AppState::register_collector`]).

use axum::extract::{MatchedPath, Request, State};
use axum::http::Method;
use axum::middleware::Next;
use axum::response::Response;
use parking_lot::RwLock;
use prometheus_client::collector::Collector;
use prometheus_client::encoding::{DescriptorEncoder, EncodeLabelSet, EncodeMetric};
use prometheus_client::metrics::counter::{ConstCounter, Counter};
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::{ConstGauge, Gauge};
use prometheus_client::metrics::histogram::{exponential_buckets, Histogram};
use prometheus_client::metrics::MetricType;
use prometheus_client::registry::Registry;
use std::collections::HashMap;
use std::sync::Arc;
use std::time::Instant;

/// The OpenMetrics text format's media type.
pub const CONTENT_TYPE: &str = "application/openmetrics-text; version=1.0.0; charset=utf-8";

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct RequestLabels {
    /// The route's template (`/v1/topics/{topic}/records`), `unmatched` for none.
    pub route: String,
    pub method: &'static str,
    pub status: u16,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct RouteLabels {
    pub route: String,
    pub method: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct TopicLabels {
    pub topic: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct ReasonLabels {
    /// The error code that was retried (`not_leader`, `leader_not_available`, …).
    pub reason: &'static str,
}

type LatencyFamily = Family<RouteLabels, Histogram, fn() -> Histogram>;

/// Request latencies from 0.25 ms to about 66 s, doubling.
fn latency_histogram() -> Histogram {
    Histogram::new(exponential_buckets(0.000_25, 2.0, 19))
}

/// What the gateway counts.
#[derive(Clone)]
pub struct GatewayMetrics {
    pub requests: Family<RequestLabels, Counter>,
    pub request_duration: LatencyFamily,
    pub produced_records: Family<TopicLabels, Counter>,
    pub produced_bytes: Family<TopicLabels, Counter>,
    pub consumed_records: Family<TopicLabels, Counter>,
    pub consumed_bytes: Family<TopicLabels, Counter>,
    /// Requests being served right now: long polls included, an event stream only until
    /// its head is sent (its body runs on in [`streams_open`](Self::streams_open)).
    pub in_flight: Gauge,
    /// Server-Sent Events streams open now (partition and member streams).
    pub streams_open: Gauge,
    /// Calls to a partition leader the gateway made again, by the error that made it.
    pub retries: Family<ReasonLabels, Counter>,
}

impl GatewayMetrics {
    fn new() -> Self {
        Self {
            requests: Family::default(),
            request_duration: Family::new_with_constructor(latency_histogram as fn() -> Histogram),
            produced_records: Family::default(),
            produced_bytes: Family::default(),
            consumed_records: Family::default(),
            consumed_bytes: Family::default(),
            in_flight: Gauge::default(),
            streams_open: Gauge::default(),
            retries: Family::default(),
        }
    }

    fn register(&self, r: &mut Registry) {
        r.register(
            "fjord_gateway_requests",
            "HTTP requests answered, by route, method and status",
            self.requests.clone(),
        );
        r.register(
            "fjord_gateway_request_duration_seconds",
            "Time to the response head, by route and method (a stream's body runs on after it)",
            self.request_duration.clone(),
        );
        r.register(
            "fjord_gateway_produced_records",
            "Records acknowledged (or, with acks=0, accepted), by topic",
            self.produced_records.clone(),
        );
        r.register(
            "fjord_gateway_produced_bytes",
            "Request body bytes of the records counted as produced, by topic",
            self.produced_bytes.clone(),
        );
        r.register(
            "fjord_gateway_consumed_records",
            "Records answered to consumers (partition reads and group polls), by topic",
            self.consumed_records.clone(),
        );
        r.register(
            "fjord_gateway_consumed_bytes",
            "Key and value bytes of the records answered to consumers, by topic",
            self.consumed_bytes.clone(),
        );
        r.register(
            "fjord_gateway_requests_in_flight",
            "Requests being served now, long polls included; an event stream until its head is sent",
            self.in_flight.clone(),
        );
        r.register(
            "fjord_gateway_streams_open",
            "Server-Sent Events streams open now; one whose client left counts until its next read (at most a heartbeat)",
            self.streams_open.clone(),
        );
        r.register(
            "fjord_gateway_retries",
            "Calls to a partition leader made again, by the error code that made the gateway retry",
            self.retries.clone(),
        );
    }

    /// Counts records produced to `topic`.
    pub fn produced(&self, topic: &str, records: usize, bytes: usize) {
        if records == 0 {
            return;
        }
        let labels = TopicLabels { topic: topic.to_owned() };
        self.produced_records.get_or_create(&labels).inc_by(records as u64);
        self.produced_bytes.get_or_create(&labels).inc_by(bytes as u64);
    }

    /// Counts records answered to a consumer of `topic`.
    pub fn consumed(&self, topic: &str, records: usize, bytes: usize) {
        if records == 0 {
            return;
        }
        let labels = TopicLabels { topic: topic.to_owned() };
        self.consumed_records.get_or_create(&labels).inc_by(records as u64);
        self.consumed_bytes.get_or_create(&labels).inc_by(bytes as u64);
    }
}

/// The gateway's view of the cluster, read at scrape time: how current its metadata is
/// and the state of its coordinator session (none for an in-process coordinator).
pub struct SessionCollector {
    coordinator: std::sync::Weak<dyn fjord_coordinator::Coordinator>,
}

impl SessionCollector {
    pub fn new(coordinator: &Arc<dyn fjord_coordinator::Coordinator>) -> Self {
        Self { coordinator: Arc::downgrade(coordinator) }
    }
}

impl std::fmt::Debug for SessionCollector {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SessionCollector").finish_non_exhaustive()
    }
}

impl Collector for SessionCollector {
    fn encode(&self, mut encoder: DescriptorEncoder<'_>) -> Result<(), std::fmt::Error> {
        let Some(s) = self.coordinator.upgrade().and_then(|c| c.session_stats()) else { return Ok(()) };
        let age = s.disconnected_since.map_or(0.0, |t| t.elapsed().as_secs_f64());
        ConstGauge::new(age).encode(encoder.encode_descriptor(
            "fjord_gateway_metadata_age_seconds",
            "How stale the gateway's metadata may be: 0 while its ZooKeeper session is connected (watches keep it current), else the time since the connection was lost",
            None,
            MetricType::Gauge,
        )?)?;
        ConstGauge::new(i64::from(s.connected)).encode(encoder.encode_descriptor(
            "fjord_gateway_zookeeper_connected",
            "1 while the gateway's ZooKeeper session is connected",
            None,
            MetricType::Gauge,
        )?)?;
        ConstCounter::new(s.disconnects).encode(encoder.encode_descriptor(
            "fjord_gateway_zookeeper_disconnects",
            "Times the gateway's ZooKeeper connection was lost",
            None,
            MetricType::Counter,
        )?)?;
        ConstCounter::new(s.expirations).encode(encoder.encode_descriptor(
            "fjord_gateway_zookeeper_session_expirations",
            "ZooKeeper sessions of the gateway that expired and were replaced",
            None,
            MetricType::Counter,
        )?)
    }
}

/// The request series of one route template, by (status, method): handles into the
/// families, so that counting a request whose series exists allocates nothing and takes
/// one read lock (a family lookup builds and hashes an owned label set every time).
type RouteSeries = HashMap<(u16, &'static str), (Counter, Histogram)>;

/// The process's registry with the gateway's metrics in it.
#[derive(Clone)]
pub struct Metrics {
    pub gateway: GatewayMetrics,
    registry: Arc<RwLock<Registry>>,
    routes: Arc<RwLock<HashMap<Box<str>, RouteSeries>>>,
}

impl Default for Metrics {
    fn default() -> Self {
        let gateway = GatewayMetrics::new();
        let mut registry = Registry::default();
        gateway.register(&mut registry);
        Self { gateway, registry: Arc::new(RwLock::new(registry)), routes: Arc::default() }
    }
}

impl Metrics {
    /// Adds metrics collected at scrape time (a storage node's partitions).
    pub fn register_collector(&self, collector: Box<dyn Collector>) {
        self.registry.write().register_collector(collector);
    }

    /// Counts one answered request and its time to the response head.
    fn request(&self, route: &str, method: &'static str, status: u16, seconds: f64) {
        if let Some((count, time)) = self.routes.read().get(route).and_then(|r| r.get(&(status, method))) {
            count.inc();
            time.observe(seconds);
            return;
        }
        let m = &self.gateway;
        let count = m.requests.get_or_create(&RequestLabels { route: route.to_owned(), method, status }).clone();
        let time = m.request_duration.get_or_create(&RouteLabels { route: route.to_owned(), method }).clone();
        count.inc();
        time.observe(seconds);
        self.routes.write().entry(route.into()).or_default().insert((status, method), (count, time));
    }

    /// The registry in the OpenMetrics text format.
    pub fn encode(&self) -> String {
        let mut out = String::new();
        if let Err(e) = prometheus_client::encoding::text::encode(&mut out, &self.registry.read()) {
            tracing::warn!(error = %e, "encoding metrics failed");
        }
        out
    }
}

fn method_label(m: &Method) -> &'static str {
    match *m {
        Method::GET => "GET",
        Method::POST => "POST",
        Method::PUT => "PUT",
        Method::PATCH => "PATCH",
        Method::DELETE => "DELETE",
        Method::HEAD => "HEAD",
        Method::OPTIONS => "OPTIONS",
        _ => "other",
    }
}

/// One count in a gauge (a request in flight, an open stream); leaves it when dropped,
/// also when the client goes away and the future holding it is dropped mid-way.
pub struct Held(Gauge);

impl Held {
    pub fn enter(g: &Gauge) -> Self {
        g.inc();
        Self(g.clone())
    }
}

impl Drop for Held {
    fn drop(&mut self) {
        self.0.dec();
    }
}

/// Counts and times every request by its route template (so a topic name never becomes
/// a label here) and status.
pub async fn record(State(metrics): State<Metrics>, req: Request, next: Next) -> Response {
    let route = req.extensions().get::<MatchedPath>().cloned();
    let method = method_label(req.method());
    let started = Instant::now();
    let in_flight = Held::enter(&metrics.gateway.in_flight);
    let response = next.run(req).await;
    drop(in_flight);
    let route = route.as_ref().map_or("unmatched", MatchedPath::as_str);
    metrics.request(route, method, response.status().as_u16(), started.elapsed().as_secs_f64());
    response
}
