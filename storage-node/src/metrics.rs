//! The storage node's Prometheus metrics, collected at scrape time from the open
//! replicas and the metadata snapshot (nothing is counted on the produce or fetch path).
//!
//! Per partition replica (labels `topic`, `partition`): log start and end offsets, high
//! watermark, stored bytes, whether this node leads it, ISR and replica counts; on the
//! leader only, whether it is under-replicated (ISR smaller than the replica list), as
//! Kafka's `UnderReplicatedPartitions` counts it on the leader. Per node: replicas,
//! leaderships, under-replicated and offline partitions it holds, and whether it is the
//! controller (which also reports how many partitions are not led by their preferred
//! replica). Per consumer group this node coordinates: members, generation, and per
//! partition the committed offset and the lag behind this node's replica's high
//! watermark (where it holds one: on a follower the lag can read a little low).
//!
//! Besides those, [`NodeMetrics`](crate::counters::NodeMetrics) counts as the node works — request and storage-write
//! latencies, group-commit sizes, ISR changes, cleanup — in atomic counters and
//! histograms (a lock-free add, or a short lock per histogram observation); the storage
//! engine, the coordinator session and the controller loop report their own counters,
//! read at scrape time too.

use crate::counters::counter;
use crate::groups::{GroupCoordinator, GroupFigures};
use crate::replicas::Replicas;
use fjord_coordinator::Coordinator;
use fjord_protocol::TopicPartition;
use prometheus_client::collector::Collector;
use prometheus_client::encoding::{DescriptorEncoder, EncodeLabelSet, EncodeMetric};
use prometheus_client::metrics::counter::ConstCounter;
use prometheus_client::metrics::gauge::ConstGauge;
use prometheus_client::metrics::MetricType;
use std::collections::HashMap;
use std::sync::{Arc, Weak};

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct PartitionLabels {
    topic: String,
    partition: u32,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct FollowerLabels {
    topic: String,
    partition: u32,
    follower: u32,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct FamilyLabels {
    family: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct GroupLabels {
    group: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct GroupPartitionLabels {
    group: String,
    topic: String,
    partition: u32,
}

/// One replica's figures at scrape time.
struct Row {
    labels: PartitionLabels,
    log_start: u64,
    log_end: u64,
    high_watermark: u64,
    size_bytes: u64,
    leader: bool,
    offline: bool,
    isr: usize,
    replicas: usize,
    /// On the leader, each follower seen fetching: its id, records behind this LEO, and
    /// time since it last had everything (what `replica.lag.time.max.ms` is held to).
    followers: Vec<(u32, u64, f64)>,
}

/// The collector of one node's metrics.
pub struct NodeCollector {
    replicas: Arc<Replicas>,
    /// The groups this node coordinates and its coordinator client (weak: a registry
    /// must not keep a node, or its ZooKeeper session, alive).
    groups: Weak<GroupCoordinator>,
    coordinator: Weak<dyn Coordinator>,
}

impl std::fmt::Debug for NodeCollector {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("NodeCollector").field("node", &self.replicas.me()).finish()
    }
}

impl NodeCollector {
    pub fn new(replicas: Arc<Replicas>, groups: Weak<GroupCoordinator>, coordinator: Weak<dyn Coordinator>) -> Self {
        Self { replicas, groups, coordinator }
    }

    fn rows(&self) -> Vec<Row> {
        let me = self.replicas.me();
        let now = tokio::time::Instant::now();
        let mut rows: Vec<Row> = self
            .replicas
            .all()
            .iter()
            .map(|r| {
                let o = r.log.offsets();
                let (m, mut followers) = {
                    let s = r.state.lock();
                    let followers: Vec<(u32, u64, f64)> = if s.meta.leader == Some(me) {
                        (s.followers.iter())
                            .map(|(id, p)| {
                                let behind = o.log_end.saturating_sub(p.fetch_offset);
                                (*id, behind, now.saturating_duration_since(p.last_caught_up).as_secs_f64())
                            })
                            .collect()
                    } else {
                        Vec::new()
                    };
                    (s.meta.clone(), followers)
                };
                followers.sort_unstable_by_key(|f| f.0);
                Row {
                    labels: PartitionLabels { topic: r.tp.topic.clone(), partition: r.tp.partition },
                    log_start: o.log_start,
                    log_end: o.log_end,
                    high_watermark: o.high_watermark,
                    size_bytes: o.size_bytes,
                    leader: m.leader == Some(me),
                    offline: m.leader.is_none(),
                    isr: m.isr.len(),
                    replicas: m.replicas.len(),
                    followers,
                }
            })
            .collect();
        rows.sort_by(|a, b| (&a.labels.topic, a.labels.partition).cmp(&(&b.labels.topic, b.labels.partition)));
        rows
    }
}

fn gauge(encoder: &mut DescriptorEncoder<'_>, name: &str, help: &str, value: u64) -> Result<(), std::fmt::Error> {
    let g = ConstGauge::new(i64::try_from(value).unwrap_or(i64::MAX));
    g.encode(encoder.encode_descriptor(name, help, None, MetricType::Gauge)?)
}

fn per_partition(
    encoder: &mut DescriptorEncoder<'_>,
    rows: &[Row],
    name: &str,
    help: &str,
    value: impl Fn(&Row) -> Option<u64>,
) -> Result<(), std::fmt::Error> {
    let mut family = encoder.encode_descriptor(name, help, None, MetricType::Gauge)?;
    for row in rows {
        if let Some(v) = value(row) {
            let g = ConstGauge::new(i64::try_from(v).unwrap_or(i64::MAX));
            g.encode(family.encode_family(&row.labels)?)?;
        }
    }
    Ok(())
}

impl Collector for NodeCollector {
    fn encode(&self, mut encoder: DescriptorEncoder<'_>) -> Result<(), std::fmt::Error> {
        let rows = self.rows();
        let e = &mut encoder;
        per_partition(e, &rows, "fjord_partition_log_start_offset", "First offset still stored", |r| {
            Some(r.log_start)
        })?;
        per_partition(e, &rows, "fjord_partition_log_end_offset", "Offset the next record will get (LEO)", |r| {
            Some(r.log_end)
        })?;
        per_partition(e, &rows, "fjord_partition_high_watermark", "Offset below which records are committed", |r| {
            Some(r.high_watermark)
        })?;
        per_partition(e, &rows, "fjord_partition_size_bytes", "Bytes of stored batches", |r| Some(r.size_bytes))?;
        per_partition(e, &rows, "fjord_partition_leader", "1 if this node leads the partition", |r| {
            Some(u64::from(r.leader))
        })?;
        per_partition(e, &rows, "fjord_partition_isr_size", "In-sync replicas", |r| Some(r.isr as u64))?;
        per_partition(e, &rows, "fjord_partition_replicas", "Assigned replicas", |r| Some(r.replicas as u64))?;
        per_partition(
            e,
            &rows,
            "fjord_partition_under_replicated",
            "1 if the ISR is smaller than the replica list (reported by the leader)",
            |r| r.leader.then_some(u64::from(r.isr < r.replicas)),
        )?;
        let count = |f: &dyn Fn(&Row) -> bool| rows.iter().filter(|r| f(r)).count() as u64;
        gauge(e, "fjord_node_replicas", "Partition replicas on this node", rows.len() as u64)?;
        gauge(e, "fjord_node_leader_partitions", "Partitions this node leads", count(&|r| r.leader))?;
        gauge(
            e,
            "fjord_node_under_replicated_partitions",
            "Partitions this node leads whose ISR is smaller than their replica list",
            count(&|r| r.leader && r.isr < r.replicas),
        )?;
        gauge(e, "fjord_node_offline_partitions", "Partitions held here that have no leader", count(&|r| r.offline))?;
        let meta = self.replicas.metadata();
        let controller = meta.controller == Some(self.replicas.me());
        gauge(e, "fjord_controller_active", "1 if this node is the controller", u64::from(controller))?;
        // Kafka's PreferredReplicaImbalanceCount: on the controller only (0 elsewhere).
        let imbalance: usize = if controller {
            fjord_coordinator::controller::leader_imbalance(&meta).values().map(|(not_led, _)| not_led).sum()
        } else {
            0
        };
        gauge(
            e,
            "fjord_controller_preferred_replica_imbalance_count",
            "On the controller: partitions not led by their preferred replica",
            imbalance as u64,
        )?;
        encode_followers(e, &rows)?;
        self.replicas.metrics().encode(e)?;
        encode_engine(e, &self.replicas.engine_stats())?;
        if let Some(session) = self.coordinator.upgrade().and_then(|c| c.session_stats()) {
            gauge(
                e,
                "fjord_zookeeper_connected",
                "1 while this node's ZooKeeper session is connected",
                u64::from(session.connected),
            )?;
            counter(
                e,
                "fjord_zookeeper_disconnects",
                "Times this node's ZooKeeper connection was lost",
                session.disconnects,
            )?;
            counter(
                e,
                "fjord_zookeeper_session_expirations",
                "ZooKeeper sessions of this node that expired and were replaced",
                session.expirations,
            )?;
        }
        let groups = self.groups.upgrade().map(|g| g.figures()).unwrap_or_default();
        encode_groups(e, &groups, &rows)
    }
}

fn encode_followers(e: &mut DescriptorEncoder<'_>, rows: &[Row]) -> Result<(), std::fmt::Error> {
    let labels = |row: &Row, id: u32| FollowerLabels {
        topic: row.labels.topic.clone(),
        partition: row.labels.partition,
        follower: id,
    };
    let mut records = e.encode_descriptor(
        "fjord_partition_follower_lag_records",
        "On the leader: records a follower lacks of this log (LEO minus its fetch offset)",
        None,
        MetricType::Gauge,
    )?;
    for row in rows {
        for (id, behind, _) in &row.followers {
            let v = i64::try_from(*behind).unwrap_or(i64::MAX);
            ConstGauge::new(v).encode(records.encode_family(&labels(row, *id))?)?;
        }
    }
    let mut seconds = e.encode_descriptor(
        "fjord_partition_follower_lag_seconds",
        "On the leader: time since a follower last had every record (held to replica.lag.time.max.ms)",
        None,
        MetricType::Gauge,
    )?;
    for row in rows {
        for (id, _, secs) in &row.followers {
            ConstGauge::new(*secs).encode(seconds.encode_family(&labels(row, *id))?)?;
        }
    }
    Ok(())
}

/// The storage engine's figures (RocksDB: per column family, and the whole database).
fn encode_engine(e: &mut DescriptorEncoder<'_>, stats: &fjord_log::EngineStats) -> Result<(), std::fmt::Error> {
    type Pick = fn(&fjord_log::FamilyStats) -> u64;
    let per_family: [(&str, &str, Pick); 4] = [
        ("fjord_rocksdb_memtable_bytes", "Bytes in memtables not yet flushed", |f| f.memtable_bytes),
        ("fjord_rocksdb_pending_compaction_bytes", "Bytes compactions still have to rewrite", |f| {
            f.pending_compaction_bytes
        }),
        ("fjord_rocksdb_table_bytes", "Bytes of live table files", |f| f.table_bytes),
        ("fjord_rocksdb_blob_bytes", "Bytes of live blob files", |f| f.blob_bytes),
    ];
    for (name, help, pick) in per_family {
        let mut family = e.encode_descriptor(name, help, None, MetricType::Gauge)?;
        for f in &stats.families {
            let v = i64::try_from(pick(f)).unwrap_or(i64::MAX);
            ConstGauge::new(v).encode(family.encode_family(&FamilyLabels { family: f.name })?)?;
        }
    }
    let mut stalls = e.encode_descriptor(
        "fjord_rocksdb_write_stalls",
        "Writes RocksDB slowed (kind=delay) or stopped (kind=stop) since the node started",
        None,
        MetricType::Counter,
    )?;
    for f in &stats.families {
        for (kind, v) in [("delay", f.stall_delays), ("stop", f.stall_stops)] {
            #[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
            struct StallLabels {
                family: &'static str,
                kind: &'static str,
            }
            ConstCounter::new(v).encode(stalls.encode_family(&StallLabels { family: f.name, kind })?)?;
        }
    }
    gauge(e, "fjord_rocksdb_block_cache_usage_bytes", "Bytes the block cache holds", stats.block_cache_usage_bytes)?;
    gauge(
        e,
        "fjord_rocksdb_block_cache_capacity_bytes",
        "Bytes the block cache may hold",
        stats.block_cache_capacity_bytes,
    )?;
    gauge(e, "fjord_rocksdb_running_compactions", "Compactions running now", stats.running_compactions)?;
    gauge(e, "fjord_rocksdb_running_flushes", "Memtable flushes running now", stats.running_flushes)?;
    gauge(e, "fjord_rocksdb_write_stopped", "1 while RocksDB stops writes", u64::from(stats.write_stopped))?;
    gauge(
        e,
        "fjord_rocksdb_delayed_write_rate_bytes",
        "Rate writes are slowed to now, bytes/s (0: not slowed)",
        stats.delayed_write_rate,
    )
}

fn encode_groups(e: &mut DescriptorEncoder<'_>, groups: &[GroupFigures], rows: &[Row]) -> Result<(), std::fmt::Error> {
    let hw: HashMap<TopicPartition, u64> =
        rows.iter().map(|r| (TopicPartition::new(&r.labels.topic, r.labels.partition), r.high_watermark)).collect();
    let mut members = e.encode_descriptor(
        "fjord_group_members",
        "Members of a group this node coordinates",
        None,
        MetricType::Gauge,
    )?;
    for g in groups {
        ConstGauge::new(g.members as i64).encode(members.encode_family(&GroupLabels { group: g.group.clone() })?)?;
    }
    let mut generation = e.encode_descriptor(
        "fjord_group_generation",
        "Generation (rebalances so far) of a group",
        None,
        MetricType::Gauge,
    )?;
    for g in groups {
        ConstGauge::new(i64::from(g.generation))
            .encode(generation.encode_family(&GroupLabels { group: g.group.clone() })?)?;
    }
    let labels = |g: &GroupFigures, tp: &TopicPartition| GroupPartitionLabels {
        group: g.group.clone(),
        topic: tp.topic.clone(),
        partition: tp.partition,
    };
    let mut committed =
        e.encode_descriptor("fjord_group_committed_offset", "A group's committed offset", None, MetricType::Gauge)?;
    for g in groups {
        for (tp, offset) in &g.offsets {
            let v = i64::try_from(*offset).unwrap_or(i64::MAX);
            ConstGauge::new(v).encode(committed.encode_family(&labels(g, tp))?)?;
        }
    }
    let mut lag = e.encode_descriptor(
        "fjord_group_lag",
        "Records between a group's committed offset and the high watermark of this node's replica",
        None,
        MetricType::Gauge,
    )?;
    for g in groups {
        for (tp, offset) in &g.offsets {
            if let Some(hw) = hw.get(tp) {
                let v = i64::try_from(hw.saturating_sub(*offset)).unwrap_or(i64::MAX);
                ConstGauge::new(v).encode(lag.encode_family(&labels(g, tp))?)?;
            }
        }
    }
    Ok(())
}
