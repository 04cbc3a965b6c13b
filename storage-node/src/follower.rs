//! Replication, follower side (ARCHITECTURE.md, "Replication").
//!
//! One fetcher task per leader node serves every partition this node follows there.
//! Before fetching in a new leader epoch a follower truncates its log by epoch
//! (KIP-101/279: it asks the leader where its last epoch ends), never by its own HW.

use crate::config::ReplicationSettings;
use crate::replica::Replica;
use crate::replicas::Replicas;
use bytes::Bytes;
use fjord_log::Role;
use fjord_protocol::{Batch, ErrorCode, FjordError, NodeId, Result};
use fjord_rpc::{NodeClient, ReplicaFetchPartition, ReplicaFetchRequest};
use parking_lot::Mutex;
use std::collections::HashMap;
use std::sync::{Arc, Weak};
use std::time::Duration;
use tokio::task::JoinHandle;
use tracing::{debug, info, warn};

const BACKOFF_MIN: Duration = Duration::from_millis(50);
const BACKOFF_MAX: Duration = Duration::from_secs(1);

pub struct FollowerSide {
    replicas: Arc<Replicas>,
    http: reqwest::Client,
    settings: ReplicationSettings,
    /// One fetcher task per leader node this node follows partitions of.
    fetchers: Mutex<HashMap<NodeId, JoinHandle<()>>>,
}

impl FollowerSide {
    pub fn new(replicas: Arc<Replicas>, settings: ReplicationSettings) -> Result<Self> {
        let http = fjord_rpc::client::http_client(settings.cluster_secret.as_ref())?;
        Ok(Self { replicas, http, settings, fetchers: Mutex::new(HashMap::new()) })
    }

    /// Starts a fetcher for every leader node this node follows partitions of (a
    /// fetcher ends by itself once it has nothing left to follow).
    pub fn ensure_fetchers(self: &Arc<Self>) {
        let leaders = self.replicas.leaders_followed();
        let mut fetchers = self.fetchers.lock();
        fetchers.retain(|_, task| !task.is_finished());
        for leader in leaders {
            fetchers.entry(leader).or_insert_with(|| tokio::spawn(run_fetcher(Arc::downgrade(self), leader)));
        }
    }

    /// Stops every fetcher.
    pub fn stop(&self) {
        for (_, t) in self.fetchers.lock().drain() {
            t.abort();
        }
    }

    fn client(&self, leader: NodeId) -> Option<NodeClient> {
        let endpoint = self.replicas.metadata().nodes.get(&leader).map(|i| i.endpoint.clone())?;
        Some(NodeClient::new(self.http.clone(), &endpoint))
    }
}

/// Fetches from `leader` for every partition this node follows there, until there are
/// none left or the node is gone.
async fn run_fetcher(side: Weak<FollowerSide>, leader: NodeId) {
    let mut backoff = BACKOFF_MIN;
    loop {
        let Some(f) = side.upgrade() else { return };
        let replicas = f.replicas.followed_on(leader);
        if replicas.is_empty() {
            return;
        }
        let fetched = match f.client(leader) {
            None => Err(FjordError::new(ErrorCode::LeaderNotAvailable, format!("node {leader} has no endpoint"))),
            Some(client) => match fetchable(&client, replicas).await {
                none if none.is_empty() => Err(FjordError::new(ErrorCode::LeaderNotAvailable, "nothing to fetch yet")),
                ready => fetch_once(&f, &client, &ready).await,
            },
        };
        drop(f);
        match fetched {
            Ok(()) => backoff = BACKOFF_MIN,
            Err(e) => {
                debug!(leader, error = %e, "replica fetch not done");
                tokio::time::sleep(backoff).await;
                backoff = (backoff * 2).min(BACKOFF_MAX);
            }
        }
    }
}

/// The replicas ready to fetch, each with the epoch its log is fenced and truncated
/// for (fetches ask in exactly that epoch, so a leader re-elected since refuses them);
/// truncates by epoch first where the role asks for it.
async fn fetchable(client: &NodeClient, replicas: Vec<Arc<Replica>>) -> Vec<(Arc<Replica>, u32)> {
    let mut ready = Vec::new();
    for r in replicas {
        let epoch = r.state.lock().meta.leader_epoch;
        match r.log.role() {
            Role::Follower { epoch: e, truncated: true } if e == epoch => ready.push((r, epoch)),
            Role::Follower { epoch: e, truncated: false } if e == epoch => {
                match truncate_for_epoch(client, &r, epoch).await {
                    Ok(()) => ready.push((r, epoch)),
                    Err(e) => debug!(partition = %r.tp, error = %e, "truncation by epoch not done yet"),
                }
            }
            // The metadata moved on and the role has not caught up yet.
            _ => {}
        }
    }
    ready
}

/// KIP-101/279: ask the leader where our latest epoch ends on its log and cut ours
/// there, then take replicated appends of `epoch`.
async fn truncate_for_epoch(client: &NodeClient, r: &Arc<Replica>, epoch: u32) -> Result<()> {
    let history = r.log.epochs();
    let leo = r.log.offsets().log_end;
    let mut target = leo;
    if let Some(&(last_epoch, _)) = history.last() {
        let answer = client.epoch_end(&r.tp, last_epoch).await?;
        target = answer.end_offset.min(leo);
        if let Some(leader_epoch) = answer.epoch {
            // Our records of epochs the leader never had diverge too.
            if let Some(&(_, start)) = history.iter().find(|(e, _)| *e > leader_epoch) {
                target = target.min(start);
            }
        }
    }
    let log = r.log.clone();
    let new_leo = tokio::task::spawn_blocking(move || log.truncate_for_epoch(epoch, target))
        .await
        .map_err(|e| FjordError::new(ErrorCode::Internal, format!("truncate task: {e}")))?
        .map_err(FjordError::from)?;
    if new_leo < leo {
        info!(partition = %r.tp, from = leo, to = new_leo, "truncated a divergent suffix by leader epoch");
    }
    Ok(())
}

async fn fetch_once(f: &FollowerSide, client: &NodeClient, replicas: &[(Arc<Replica>, u32)]) -> Result<()> {
    let fetched_at: Vec<u64> = replicas.iter().map(|(r, _)| r.log.offsets().log_end).collect();
    let req = ReplicaFetchRequest {
        follower: f.replicas.me(),
        max_wait_ms: f.settings.fetch_wait_max.as_millis() as u64,
        max_bytes: f.settings.fetch_max_bytes,
        partitions: replicas
            .iter()
            .zip(&fetched_at)
            .map(|((r, epoch), fetch_offset)| ReplicaFetchPartition {
                topic: r.tp.topic.clone(),
                partition: r.tp.partition,
                fetch_offset: *fetch_offset,
                leader_epoch: *epoch,
            })
            .collect(),
    };
    let answer = client.replica_fetch(&req, f.settings.fetch_wait_max + Duration::from_secs(10)).await?;
    let mut frames = answer.batches.into_iter();
    for ((result, (r, epoch)), fetched_at) in answer.results.iter().zip(replicas).zip(fetched_at) {
        let epoch = *epoch;
        let mine: Vec<Bytes> = frames.by_ref().take(result.batches as usize).collect();
        if let Some(e) = &result.error {
            if e.code == ErrorCode::OffsetOutOfRange {
                let leader_start = e.details.as_ref().and_then(|d| d.log_start_offset);
                match leader_start {
                    // Behind the leader's log start (its retention removed what we need
                    // next): start over there, as Kafka's follower does.
                    Some(start) if fetched_at < start => {
                        let log = r.log.clone();
                        let reset = tokio::task::spawn_blocking(move || log.reset_to(epoch, start)).await;
                        match reset {
                            Ok(Ok(())) => {
                                info!(partition = %r.tp, from = fetched_at, to = start, "behind the leader's log start: reset the log to it")
                            }
                            Ok(Err(e)) => {
                                debug!(partition = %r.tp, error = %e, "reset to the leader's log start not done")
                            }
                            Err(e) => warn!(partition = %r.tp, error = %e, "reset task failed"),
                        }
                    }
                    // Our log is ahead of the leader's: truncate by epoch again.
                    _ => r.log.require_truncation(epoch),
                }
            }
            debug!(partition = %r.tp, error = %e, "leader refused the fetch");
            continue;
        }
        if !mine.is_empty() {
            append_fetched(r, mine, epoch, fetched_at).await?;
        }
        // A follower's HW: the leader's, as far as its own log reaches.
        if matches!(r.log.role(), Role::Follower { epoch: e, truncated: true } if e == epoch) {
            let leo = r.log.offsets().log_end;
            r.log.advance_high_watermark(result.high_watermark.min(leo));
        }
    }
    Ok(())
}

/// Appends a fetch answer's batches of one partition, fetched at `fetched_at` in `epoch`.
async fn append_fetched(r: &Replica, batches: Vec<Bytes>, epoch: u32, fetched_at: u64) -> Result<()> {
    let (log, tp) = (r.log.clone(), r.tp.clone());
    tokio::task::spawn_blocking(move || -> Result<()> {
        let mut from = fetched_at;
        for bytes in batches {
            // Never appended: the fetcher backs off and fetches it again.
            let batch = Batch::parse(bytes).map_err(|e| {
                warn!(partition = %tp, offset = from, error = %e, "a fetched batch failed validation; fetching it again");
                FjordError::new(ErrorCode::CorruptBatch, e.to_string())
            })?;
            // The leader has nothing in [from, base): a gap its compaction left.
            let next = batch.next_offset();
            // Fenced: refused if this replica's role moved on since it asked.
            log.append_replicated(batch, epoch, from).map_err(FjordError::from)?;
            from = next;
        }
        Ok(())
    })
    .await
    .map_err(|e| FjordError::new(ErrorCode::Internal, format!("append task: {e}")))?
}
