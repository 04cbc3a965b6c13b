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

use crate::groups::{GroupCoordinator, GroupFigures};
use crate::replicas::Replicas;
use fjord_protocol::TopicPartition;
use prometheus_client::collector::Collector;
use prometheus_client::encoding::{DescriptorEncoder, EncodeLabelSet, EncodeMetric};
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
}

/// The collector of one node's metrics.
pub struct NodeCollector {
    replicas: Arc<Replicas>,
    /// The groups this node coordinates (weak: a registry must not keep a node alive).
    groups: Weak<GroupCoordinator>,
}

impl std::fmt::Debug for NodeCollector {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("NodeCollector").field("node", &self.replicas.me()).finish()
    }
}

impl NodeCollector {
    pub fn new(replicas: Arc<Replicas>, groups: Weak<GroupCoordinator>) -> Self {
        Self { replicas, groups }
    }

    fn rows(&self) -> Vec<Row> {
        let me = self.replicas.me();
        let mut rows: Vec<Row> = self
            .replicas
            .all()
            .iter()
            .map(|r| {
                let o = r.log.offsets();
                let m = r.meta();
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
        let groups = self.groups.upgrade().map(|g| g.figures()).unwrap_or_default();
        encode_groups(e, &groups, &rows)
    }
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
