//! Shared state of the gateway and routing of calls to partition leaders.

use crate::config::GatewayConfig;
use crate::error::{ApiError, ApiResult};
use crate::metrics::ReasonLabels;
use fjord_coordinator::{ClusterMetadata, Coordinator, NewTopic, TopicConfig, TopicMetadata};
use fjord_protocol::group::{GroupRequest, GroupResponse, OFFSETS_TOPIC};
use fjord_protocol::{ErrorCode, FjordError, NodeApi, NodeId, TopicPartition};
use std::future::Future;
use std::sync::atomic::AtomicU64;
use std::sync::Arc;
use std::time::Duration;
use tokio::time::Instant;

/// Finds the [`NodeApi`] of a storage node by id: in-process in standalone, a network
/// client in a cluster.
pub trait NodeDirectory: Send + Sync + 'static {
    fn node(&self, id: NodeId) -> Option<Arc<dyn NodeApi>>;
}

/// A directory of exactly one node (standalone).
pub struct SingleNode {
    pub id: NodeId,
    pub api: Arc<dyn NodeApi>,
}

impl NodeDirectory for SingleNode {
    fn node(&self, id: NodeId) -> Option<Arc<dyn NodeApi>> {
        (id == self.id).then(|| self.api.clone())
    }
}

#[derive(Clone)]
pub struct AppState {
    pub coordinator: Arc<dyn Coordinator>,
    pub nodes: Arc<dyn NodeDirectory>,
    pub config: Arc<GatewayConfig>,
    /// Picks the partition of each request's unkeyed records (sticky per request).
    pub round_robin: Arc<AtomicU64>,
    /// Room for `acks=0` bytes in flight (`max_unacknowledged_bytes`, one permit a byte).
    pub unacknowledged: Arc<tokio::sync::Semaphore>,
    /// This process's metrics registry and the gateway's metrics.
    pub metrics: crate::metrics::Metrics,
    /// Client quotas' buckets.
    pub quotas: Arc<crate::quota::Quotas>,
}

impl AppState {
    pub fn new(coordinator: Arc<dyn Coordinator>, nodes: Arc<dyn NodeDirectory>, config: GatewayConfig) -> Self {
        let unacknowledged = Arc::new(tokio::sync::Semaphore::new(config.max_unacknowledged_bytes));
        let quotas = Arc::new(crate::quota::Quotas::new(config.quotas.clone()));
        let metrics = crate::metrics::Metrics::default();
        metrics.register_collector(Box::new(crate::metrics::SessionCollector::new(&coordinator)));
        Self {
            quotas,
            coordinator,
            nodes,
            config: Arc::new(config),
            round_robin: Arc::new(AtomicU64::new(0)),
            unacknowledged,
            metrics,
        }
    }

    /// Adds metrics collected at scrape time to this process's `/metrics` (a storage
    /// node in the same process).
    pub fn register_collector(&self, collector: Box<dyn prometheus_client::collector::Collector>) {
        self.metrics.register_collector(collector);
    }

    pub fn metadata(&self) -> Arc<ClusterMetadata> {
        self.coordinator.metadata().borrow().clone()
    }

    /// The topic, or `unknown_topic` (after checking the name is valid at all).
    pub fn topic(&self, name: &str) -> ApiResult<Arc<TopicMetadata>> {
        fjord_coordinator::validate_topic_name(name)?;
        self.metadata().topic(name).cloned().ok_or_else(|| unknown_topic(name))
    }

    /// Calls `f` on the leader of `tp`, refreshing and retrying while the leader is
    /// unknown, moving, or not ready, until `deadline`.
    pub async fn call_leader<T, F, Fut>(&self, tp: &TopicPartition, deadline: Instant, f: F) -> ApiResult<T>
    where
        F: Fn(Arc<dyn NodeApi>) -> Fut,
        Fut: Future<Output = Result<T, FjordError>>,
    {
        self.call_leader_retrying(tp, deadline, &[], f).await
    }

    /// [`call_leader`](Self::call_leader), also retrying the errors in `also` — for calls
    /// a retry cannot repeat, such as an idempotent produce, the errors that leave it
    /// unknown whether it happened.
    pub async fn call_leader_retrying<T, F, Fut>(
        &self,
        tp: &TopicPartition,
        deadline: Instant,
        also: &[ErrorCode],
        f: F,
    ) -> ApiResult<T>
    where
        F: Fn(Arc<dyn NodeApi>) -> Fut,
        Fut: Future<Output = Result<T, FjordError>>,
    {
        let mut rx = self.coordinator.metadata();
        let mut backoff = Duration::from_millis(2);
        loop {
            let leader = {
                let meta = rx.borrow_and_update();
                let topic = meta.topic(&tp.topic).ok_or_else(|| unknown_topic(&tp.topic))?;
                let p = topic
                    .partitions
                    .get(tp.partition as usize)
                    .ok_or_else(|| unknown_partition(topic, tp.partition))?;
                p.leader
            };
            let attempt = match leader.and_then(|id| self.nodes.node(id)) {
                // The deadline bounds each call too: a leader cut off by the network
                // drops packets, and the call would otherwise wait out its own timeout.
                Some(node) => tokio::time::timeout_at(deadline, f(node)).await.unwrap_or_else(|_| {
                    Err(FjordError::new(
                        ErrorCode::RequestTimeout,
                        format!("the leader of {tp} did not answer within the request's deadline"),
                    ))
                }),
                None => Err(FjordError::new(
                    ErrorCode::LeaderNotAvailable,
                    format!("{tp} has no leader available right now"),
                )),
            };
            match attempt {
                // `corrupt_log` comes from reads only (nothing written): the leader found
                // a damaged batch and is handing the partition to another replica.
                Err(e)
                    if matches!(
                        e.code,
                        ErrorCode::NotLeader | ErrorCode::LeaderNotAvailable | ErrorCode::CorruptLog
                    ) || also.contains(&e.code) =>
                {
                    if Instant::now() + backoff >= deadline {
                        return Err(e.into());
                    }
                    self.metrics.gateway.retries.get_or_create(&ReasonLabels { reason: e.code.as_str() }).inc();
                    // Wake on a metadata change or after the backoff, whichever is first.
                    let _ = tokio::time::timeout(backoff, rx.changed()).await;
                    backoff = (backoff * 2).min(Duration::from_millis(100));
                }
                other => return other.map_err(ApiError::from),
            }
        }
    }
}

impl AppState {
    /// `topic` as the metadata shows it once every partition has a leader (the
    /// controller elects them after a create or a partition increase), or at
    /// `deadline` as it is then; `topic` itself if that incarnation is not visible.
    pub async fn await_leaders(&self, topic: TopicMetadata, deadline: Instant) -> TopicMetadata {
        let mut rx = self.coordinator.metadata();
        loop {
            let current = rx.borrow_and_update().topic(&topic.name).filter(|t| t.topic_id == topic.topic_id).cloned();
            let led = current.as_ref().is_some_and(|t| t.partitions.iter().all(|p| p.leader.is_some()));
            if led || !matches!(tokio::time::timeout_at(deadline, rx.changed()).await, Ok(Ok(()))) {
                // Copied once, at the end: not on every change while waiting.
                return current.map_or(topic, |t| TopicMetadata::clone(&t));
            }
        }
    }

    /// The partition count of the offsets topic, creating the topic on first use.
    pub async fn offsets_topic(&self) -> ApiResult<u32> {
        if let Some(t) = self.metadata().topic(OFFSETS_TOPIC) {
            return Ok(t.partitions.len() as u32);
        }
        let live = self.metadata().nodes.values().filter(|n| !n.shutting_down).count() as u32;
        let spec = NewTopic {
            name: OFFSETS_TOPIC.to_owned(),
            partitions: self.config.offsets_topic_partitions,
            replication_factor: self.config.offsets_topic_replication_factor.min(live).max(1),
            config: TopicConfig::offsets_topic(),
        };
        match self.coordinator.create_topic(spec).await {
            Ok(t) => {
                tracing::info!(partitions = t.partitions.len(), "created the offsets topic on first use");
                Ok(t.partitions.len() as u32)
            }
            // Created by someone else meanwhile — or still being created, or left
            // half-made by a creator that failed (the controller removes it after
            // INCOMPLETE_TOPIC_GRACE): retriable, not the client's unknown topic.
            Err(e) if e.code == ErrorCode::TopicAlreadyExists => match self.metadata().topic(OFFSETS_TOPIC) {
                Some(t) => Ok(t.partitions.len() as u32),
                None => Err(ApiError::new(
                    ErrorCode::LeaderNotAvailable,
                    format!("the offsets topic `{OFFSETS_TOPIC}` is being created; retry"),
                )),
            },
            Err(e) => Err(e.into()),
        }
    }

    /// Calls the coordinator of the request's group (or, for a list, of the partition
    /// it names), retrying while the coordinator moves, until `deadline`.
    pub async fn call_group(&self, req: GroupRequest, deadline: Instant) -> ApiResult<GroupResponse> {
        let count = self.offsets_topic().await?;
        let tp = TopicPartition::new(OFFSETS_TOPIC, req.partition(count));
        self.call_leader(&tp, deadline, |node| {
            let req = req.clone();
            async move { node.group(req).await }
        })
        .await
    }
}

pub fn unknown_topic(name: &str) -> ApiError {
    ApiError::new(ErrorCode::UnknownTopic, format!("topic `{name}` does not exist"))
}

pub fn unknown_partition(topic: &TopicMetadata, partition: u32) -> ApiError {
    ApiError::new(
        ErrorCode::UnknownPartition,
        format!(
            "topic `{}` has {} partition(s); there is no partition {partition}",
            topic.name,
            topic.partitions.len()
        ),
    )
}
