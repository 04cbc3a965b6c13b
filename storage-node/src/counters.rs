//! What a storage node counts as it works ([`NodeMetrics`]): atomic counters and
//! histograms on the paths they time, encoded by [`crate::metrics`]'s collector at
//! scrape time with the gauges it reads there.

use fjord_coordinator::controller::ControllerStats;
use prometheus_client::encoding::{DescriptorEncoder, EncodeLabelSet, EncodeMetric};
use prometheus_client::metrics::counter::{ConstCounter, Counter};
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::histogram::{exponential_buckets, Histogram};
use prometheus_client::metrics::{MetricType, TypedMetric};
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::{Duration, Instant};

/// Which side of the node a figure is about.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct KindLabels {
    pub kind: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct AcksLabels {
    acks: &'static str,
}

type LatencyFamily<L> = Family<L, Histogram, fn() -> Histogram>;

/// Latencies from 50 µs to about 26 s, doubling.
fn latency_histogram() -> Histogram {
    Histogram::new(exponential_buckets(0.000_05, 2.0, 20))
}

/// What the node counts as it works.
pub struct NodeMetrics {
    /// Produce requests as leader, received to answered (`acks=all`: replication
    /// included), by `acks`.
    produce_duration: LatencyFamily<AcksLabels>,
    /// Storage writes of the append queues (group commits; with `wal_sync = "always"`
    /// the fsync included), and how many produce batches each held.
    pub append_write_duration: Histogram,
    pub group_commit_batches: Histogram,
    /// Stored batches read for an answer, by `kind` (`consumer`, `follower`): the read,
    /// not the long-poll wait before it.
    fetch_read_duration: LatencyFamily<KindLabels>,
    /// Handles on the families' series, so the hot paths do not look labels up.
    pub produce_acks: [Histogram; 3],
    pub fetch_consumer: Histogram,
    pub fetch_follower: Histogram,
    /// The periodic WAL fsync (`wal_sync = "interval"`).
    pub wal_sync_duration: Histogram,
    /// ISR changes this node wrote as leader (Kafka's `IsrShrinksPerSec`, `IsrExpandsPerSec`).
    pub isr_shrinks: Counter,
    pub isr_expands: Counter,
    /// Cleanup passes that removed something, and the bytes they removed, by `kind`
    /// (`retention`, `compaction`).
    pub cleanups: Family<KindLabels, Counter>,
    pub cleaned_bytes: Family<KindLabels, Counter>,
    /// What this node's controller loop did (it runs in the same process).
    pub controller: Arc<ControllerStats>,
}

impl Default for NodeMetrics {
    fn default() -> Self {
        let produce_duration: LatencyFamily<AcksLabels> =
            Family::new_with_constructor(latency_histogram as fn() -> Histogram);
        let fetch_read_duration: LatencyFamily<KindLabels> =
            Family::new_with_constructor(latency_histogram as fn() -> Histogram);
        let acks = |acks| produce_duration.get_or_create(&AcksLabels { acks }).clone();
        let kind = |kind| fetch_read_duration.get_or_create(&KindLabels { kind }).clone();
        Self {
            produce_acks: [acks("0"), acks("1"), acks("all")],
            fetch_consumer: kind("consumer"),
            fetch_follower: kind("follower"),
            append_write_duration: latency_histogram(),
            group_commit_batches: Histogram::new(exponential_buckets(1.0, 2.0, 12)),
            produce_duration,
            fetch_read_duration,
            wal_sync_duration: latency_histogram(),
            isr_shrinks: Counter::default(),
            isr_expands: Counter::default(),
            cleanups: Family::default(),
            cleaned_bytes: Family::default(),
            controller: Arc::default(),
        }
    }
}

impl NodeMetrics {
    /// Times `f` into `h`.
    pub fn time<T>(h: &Histogram, f: impl FnOnce() -> T) -> T {
        let start = Instant::now();
        let out = f();
        h.observe(start.elapsed().as_secs_f64());
        out
    }

    pub fn observe(h: &Histogram, took: Duration) {
        h.observe(took.as_secs_f64());
    }

    /// A cleanup pass of `kind` that removed `bytes` (counted only if it removed any).
    pub fn cleaned(&self, kind: &'static str, bytes: u64) {
        let labels = KindLabels { kind };
        self.cleanups.get_or_create(&labels).inc();
        self.cleaned_bytes.get_or_create(&labels).inc_by(bytes);
    }

    pub(crate) fn encode(&self, e: &mut DescriptorEncoder<'_>) -> Result<(), std::fmt::Error> {
        encode_metric(
            e,
            "fjord_node_produce_duration_seconds",
            "Produce requests led here, received to answered (acks=all: replicated)",
            &self.produce_duration,
        )?;
        encode_metric(
            e,
            "fjord_node_append_write_duration_seconds",
            "Storage writes of produce appends (one group commit each; fsync included with wal_sync=always)",
            &self.append_write_duration,
        )?;
        encode_metric(
            e,
            "fjord_node_group_commit_batches",
            "Produce batches written together in one storage write",
            &self.group_commit_batches,
        )?;
        encode_metric(
            e,
            "fjord_node_fetch_read_duration_seconds",
            "Reading stored batches for a consumer or follower fetch (the wait for data not included)",
            &self.fetch_read_duration,
        )?;
        encode_metric(
            e,
            "fjord_node_wal_sync_duration_seconds",
            "Periodic fsyncs of the write-ahead log (wal_sync=interval)",
            &self.wal_sync_duration,
        )?;
        encode_metric(e, "fjord_node_isr_shrinks", "ISR shrinks this node wrote as leader", &self.isr_shrinks)?;
        encode_metric(e, "fjord_node_isr_expands", "ISR expansions this node wrote as leader", &self.isr_expands)?;
        encode_metric(
            e,
            "fjord_node_cleanups",
            "Retention or compaction passes that removed something",
            &self.cleanups,
        )?;
        encode_metric(e, "fjord_node_cleaned_bytes", "Bytes removed by retention or compaction", &self.cleaned_bytes)?;
        let c = &self.controller;
        let n = |a: &std::sync::atomic::AtomicU64| a.load(Ordering::Relaxed);
        counter(e, "fjord_controller_activations", "Times this node became the controller", n(&c.activations))?;
        let mut elections = e.encode_descriptor(
            "fjord_controller_leader_elections",
            "Partition leaders this node elected as controller, by kind (clean: from the ISR; unclean: from outside it; preferred: moved back to the preferred replica)",
            None,
            MetricType::Counter,
        )?;
        for (kind, v) in [
            ("clean", n(&c.clean_elections)),
            ("unclean", n(&c.unclean_elections)),
            ("preferred", n(&c.preferred_elections)),
        ] {
            ConstCounter::new(v).encode(elections.encode_family(&KindLabels { kind })?)?;
        }
        counter(
            e,
            "fjord_controller_offline_transitions",
            "Partitions this node took offline as controller (no live replica could lead)",
            n(&c.offline_transitions),
        )
    }
}

fn encode_metric<M: EncodeMetric + TypedMetric>(
    e: &mut DescriptorEncoder<'_>,
    name: &str,
    help: &str,
    metric: &M,
) -> Result<(), std::fmt::Error> {
    metric.encode(e.encode_descriptor(name, help, None, M::TYPE)?)
}

/// A counter kept elsewhere (`name` without `_total`: the encoder adds it).
pub(crate) fn counter(
    e: &mut DescriptorEncoder<'_>,
    name: &str,
    help: &str,
    value: u64,
) -> Result<(), std::fmt::Error> {
    ConstCounter::new(value).encode(e.encode_descriptor(name, help, None, MetricType::Counter)?)
}
