//! The controller: one storage node, elected through the coordinator, that decides
//! partition leadership for the whole cluster — in a ZooKeeper cluster and, over the
//! embedded store, in `fjord standalone` alike (ARCHITECTURE.md, "One control path").
//!
//! The decisions are a pure function, [`plan`], from a metadata snapshot to the partition
//! states that should change; [`run`] campaigns for the role and, while it holds it,
//! applies each plan with conditional writes. Keeping the rules pure lets them be tested
//! exhaustively without a backend, and makes the run loop level-triggered: it never needs
//! to know *what* happened (node loss, node return, controlled shutdown, new topic), only
//! what the metadata looks like now. A lost race or a missed event is repaired by the next
//! snapshot or the next retry tick.
//!
//! The rules are Kafka's (ZooKeeper-mode `PartitionStateMachine` /
//! `PartitionLeaderElectionAlgorithms`), with the differences noted on [`plan`].

use crate::api::Coordinator;
use crate::model::{ClusterMetadata, ElectionRequest, NodeInfo, PartitionState};
use fjord_protocol::{ErrorCode, NodeId};
use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::future::Future;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};
use tracing::{debug, info, warn};

/// What one node's controller loop has done since it started, for metrics (Kafka's
/// `ControllerStats`): counters only ever grow.
#[derive(Debug, Default)]
pub struct ControllerStats {
    /// Times this node became the controller.
    pub activations: AtomicU64,
    /// Partition leaders it elected from the ISR (a leader lost or leaving).
    pub clean_elections: AtomicU64,
    /// Leaders it elected from outside the ISR (`unclean.leader.election.enable`).
    pub unclean_elections: AtomicU64,
    /// Leaderships it moved back to the preferred replica (asked for or by the
    /// imbalance check).
    pub preferred_elections: AtomicU64,
    /// Partitions it took offline: no live replica could lead.
    pub offline_transitions: AtomicU64,
}

impl ControllerStats {
    fn count(&self, counter: &AtomicU64) {
        counter.fetch_add(1, Ordering::Relaxed);
    }
}

/// Why the controller writes a plan: what a leader change in it counts as.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Cause {
    Plan,
    Preferred,
}

/// How often the controller re-plans without a metadata change, so that a write that
/// failed for a transient reason (lost connection, timeout) is retried.
pub const RETRY_INTERVAL: Duration = Duration::from_millis(500);

/// How long a topic stays incomplete ([`ClusterMetadata::incomplete_topics`]) before the
/// controller removes it. Creating or deleting a topic takes milliseconds; one still
/// half-made after this was left so by a writer that failed (a ZooKeeper restart or a
/// lost connection between its writes), and until it is removed its name is taken
/// while the topic does not exist — which, for the offsets topic, stops every group.
pub const INCOMPLETE_TOPIC_GRACE: Duration = Duration::from_secs(60);

/// The partition states that should change, as `(topic, new state)`. Each new state
/// carries the **current** `version`, so writing it with
/// [`Coordinator::update_partition_state`] fails if anyone changed the partition since the
/// snapshot was taken; [`Coordinator::write_plan`] writes them all, fenced by the
/// controller epoch. Partitions that need no change are left out; applying every state
/// of a plan and planning again gives an empty plan.
///
/// A node is *live* when it is registered and not `shutting_down` — and, for one
/// partition, when it does not list it among its `offline_replicas` (a damaged replica:
/// it is down for that partition alone, and does not keep leading it as a shutting-down
/// sole in-sync leader would). Per partition:
///
/// 1. **New partition** (no leader, leader epoch 0): the first live replica in assignment
///    order leads and the ISR is the live replicas (Kafka's `NewPartition →
///    OnlinePartition`); with no live replica it stays new.
/// 2. **Leader live**: dead and shutting-down nodes leave the ISR, with no epoch bump
///    (Kafka's `OfflineReplica` transition). Leadership stays where it is: moving it back
///    to the preferred replica is [`preferred_elections`]' business, run by
///    [`LeaderBalance`]'s check or on request, never as a side effect of a change.
/// 3. **No leader, or the leader dead or shutting down**: the first replica in assignment
///    order that is live and in the ISR leads, the epoch is bumped and the ISR becomes the
///    live part of the old ISR (Kafka's `OfflinePartitionLeaderElection`; for a
///    shutting-down leader, `ControlledShutdownLeaderElection`). If no ISR member is live:
///    - with `unclean.leader.election.enable`, the first live replica leads with ISR
///      `[it]` — acknowledged records it lacks are lost, which is what the option means;
///    - otherwise the partition is offline: no leader (the epoch is bumped once, when a
///      leader is taken away) and the ISR is kept as it is, so that any of its members
///      can be elected when it returns. Every one of them held all committed records
///      when it was last in the ISR, so electing it loses nothing.
///
/// As in Kafka's controlled shutdown, a shutting-down leader with no live in-sync
/// successor keeps leading (its ISR shrinks to itself, with no epoch bump, and no
/// unclean election replaces it while it lives): the partition stays writable until the
/// node's process ends and its registration goes, when rule 3 takes the leadership away
/// and the partition is offline until an ISR member returns.
pub fn plan(meta: &ClusterMetadata) -> Vec<(String, PartitionState)> {
    let live: BTreeSet<NodeId> = meta.nodes.values().filter(|n| !n.shutting_down).map(|n| n.id).collect();
    let registered: BTreeSet<NodeId> = meta.nodes.keys().copied().collect();
    let with_offline: Vec<&NodeInfo> = meta.nodes.values().filter(|n| !n.offline_replicas.is_empty()).collect();
    let mut out = Vec::new();
    for (name, topic) in &meta.topics {
        let unclean = topic.config.unclean_leader_election_enable;
        for p in &topic.partitions {
            let down: Vec<NodeId> =
                with_offline.iter().filter(|n| !n.serves(name, p.partition)).map(|n| n.id).collect();
            let next = if down.is_empty() {
                plan_partition(p, &live, &registered, unclean)
            } else {
                let without = |set: &BTreeSet<NodeId>| set.iter().copied().filter(|id| !down.contains(id)).collect();
                plan_partition(p, &without(&live), &without(&registered), unclean)
            };
            if let Some(next) = next {
                out.push((name.clone(), next));
            }
        }
    }
    out
}

/// When the controller moves leaderships back to preferred replicas by itself (Kafka's
/// `auto.leader.rebalance.enable`, `leader.imbalance.per.broker.percentage` and
/// `leader.imbalance.check.interval.seconds`, with Kafka's defaults). On-demand elections
/// (`POST /v1/elections`) run whatever this says.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct LeaderBalance {
    pub auto_leader_rebalance_enable: bool,
    /// A node's imbalance ratio — of the partitions whose preferred replica it is, the
    /// share it does not lead — must be above this for the check to elect.
    pub leader_imbalance_per_broker_percentage: u32,
    pub leader_imbalance_check_interval_seconds: u64,
}

impl Default for LeaderBalance {
    fn default() -> Self {
        Self {
            auto_leader_rebalance_enable: true,
            leader_imbalance_per_broker_percentage: 10,
            leader_imbalance_check_interval_seconds: 300,
        }
    }
}

impl LeaderBalance {
    pub fn validate(&self) -> std::result::Result<(), String> {
        if self.leader_imbalance_per_broker_percentage > 100 {
            return Err(format!(
                "leader_imbalance_per_broker_percentage must be 0..=100, got {}",
                self.leader_imbalance_per_broker_percentage
            ));
        }
        if self.leader_imbalance_check_interval_seconds == 0 {
            return Err("leader_imbalance_check_interval_seconds must be at least 1".into());
        }
        Ok(())
    }

    fn interval(&self) -> Duration {
        Duration::from_secs(self.leader_imbalance_check_interval_seconds.max(1))
    }
}

/// Whether `partition` of `topic` can be led by its preferred replica (the first
/// assigned) now: it is live, serves the partition and is in the ISR. Kafka's
/// `PREFERRED_LEADER_NOT_AVAILABLE` when not.
pub fn preferred_available(meta: &ClusterMetadata, topic: &str, p: &PartitionState) -> bool {
    let Some(&preferred) = p.replicas.first() else { return false };
    let live = meta.nodes.get(&preferred).is_some_and(|n| !n.shutting_down && n.serves(topic, p.partition));
    live && p.isr.contains(&preferred)
}

/// Preferred-leader elections (Kafka's `PreferredReplicaPartitionLeaderElection`) for the
/// partitions `selected` picks: each led by a node other than its preferred replica,
/// when the preferred replica is available ([`preferred_available`]), becomes led by it
/// with the epoch bumped. A partition with no leader is left to [`plan`]. States carry
/// the version read, as [`plan`]'s do.
pub fn preferred_elections(
    meta: &ClusterMetadata,
    mut selected: impl FnMut(&str, &PartitionState) -> bool,
) -> Vec<(String, PartitionState)> {
    let mut out = Vec::new();
    for (name, topic) in &meta.topics {
        for p in &topic.partitions {
            let Some(&preferred) = p.replicas.first() else { continue };
            if p.leader.is_none_or(|l| l == preferred) || !selected(name, p) || !preferred_available(meta, name, p) {
                continue;
            }
            let mut next = p.clone();
            next.leader = Some(preferred);
            next.leader_epoch = p.leader_epoch.saturating_add(1);
            out.push((name.clone(), next));
        }
    }
    out
}

/// Each node's leader imbalance as `(not led, preferred for)`: of the partitions whose
/// preferred replica it is, how many it does not lead (Kafka's
/// `checkAndTriggerAutoLeaderRebalance`). Nodes preferred for nothing are left out.
pub fn leader_imbalance(meta: &ClusterMetadata) -> BTreeMap<NodeId, (usize, usize)> {
    let mut out: BTreeMap<NodeId, (usize, usize)> = BTreeMap::new();
    for p in meta.topics.values().flat_map(|t| &t.partitions) {
        if let Some(&preferred) = p.replicas.first() {
            let e = out.entry(preferred).or_default();
            e.1 += 1;
            if p.leader != Some(preferred) {
                e.0 += 1;
            }
        }
    }
    out
}

/// The nodes of [`leader_imbalance`] whose imbalance ratio is above `percentage`.
pub fn over_threshold(meta: &ClusterMetadata, percentage: u32) -> BTreeMap<NodeId, (usize, usize)> {
    let mut all = leader_imbalance(meta);
    all.retain(|_, (not_led, total)| *not_led * 100 > percentage as usize * *total);
    all
}

/// The elections the periodic check runs: [`preferred_elections`] for the partitions of
/// every node whose imbalance ratio is above `percentage` (none at or below it).
pub fn rebalance_elections(meta: &ClusterMetadata, percentage: u32) -> Vec<(String, PartitionState)> {
    let over = over_threshold(meta, percentage);
    if over.is_empty() {
        return Vec::new();
    }
    preferred_elections(meta, |_, p| p.replicas.first().is_some_and(|r| over.contains_key(r)))
}

/// The new state of one partition, or `None` when it needs no change.
///
/// Epochs saturate rather than wrap: followers and fencing rely on epochs never going
/// backwards, and four billion elections of one partition will not happen.
fn plan_partition(
    p: &PartitionState,
    live: &BTreeSet<NodeId>,
    registered: &BTreeSet<NodeId>,
    unclean: bool,
) -> Option<PartitionState> {
    let is_live = |id: &NodeId| live.contains(id);
    let live_isr: Vec<NodeId> = p.isr.iter().copied().filter(is_live).collect();
    let mut next = p.clone();
    match p.leader {
        None if p.leader_epoch == 0 => {
            let isr: Vec<NodeId> = p.replicas.iter().copied().filter(is_live).collect();
            next.leader = Some(*isr.first()?);
            next.leader_epoch = 1;
            next.isr = isr;
        }
        Some(leader) if is_live(&leader) => next.isr = live_isr,
        _ => {
            let clean = p.replicas.iter().copied().find(|r| is_live(r) && p.isr.contains(r));
            let unclean_choice = || p.replicas.iter().copied().find(is_live).filter(|_| unclean);
            // A leader still registered here is shutting down (a dead one is not
            // registered): with no in-sync successor it keeps leading, and the ISR
            // keeps it, until its process ends.
            let staying = p.leader.filter(|l| registered.contains(l) && p.isr.contains(l));
            if let Some(leader) = clean {
                next.leader = Some(leader);
                next.leader_epoch = p.leader_epoch.saturating_add(1);
                next.isr = live_isr;
            } else if let Some(leader) = staying {
                next.isr = vec![leader];
            } else if let Some(leader) = unclean_choice() {
                next.leader = Some(leader);
                next.leader_epoch = p.leader_epoch.saturating_add(1);
                next.isr = vec![leader];
            } else if p.leader.is_some() {
                next.leader = None;
                next.leader_epoch = p.leader_epoch.saturating_add(1);
            }
        }
    }
    (next != *p).then_some(next)
}

/// Runs the controller role for `node` until `shutdown` completes: campaigns whenever the
/// cluster has no controller and, while `node` is the controller, applies [`plan`] to
/// every new metadata snapshot (and every [`RETRY_INTERVAL`]).
///
/// Writes are conditional on the partition's version; a [`ErrorCode::StaleVersion`]
/// answer means someone else (a leader changing its ISR, say) wrote first, and the next
/// snapshot brings a fresh plan. Other errors are logged and retried on the next tick.
pub async fn run(
    coordinator: Arc<dyn Coordinator>,
    node: NodeId,
    balance: LeaderBalance,
    stats: Arc<ControllerStats>,
    shutdown: impl Future<Output = ()>,
) {
    tokio::select! {
        () = shutdown => info!(node, "controller loop stopped"),
        () = control(&*coordinator, node, INCOMPLETE_TOPIC_GRACE, &balance, &stats) => {
            warn!(node, "controller loop ended: the metadata feed closed");
        }
    }
}

/// A controller loop for `node` running in the background (see [`run`]); it stops when
/// this is dropped.
#[must_use = "the controller stops when its task handle is dropped"]
pub struct ControllerTask {
    task: Option<tokio::task::JoinHandle<()>>,
    stats: Arc<ControllerStats>,
}

impl ControllerTask {
    /// What the loop has done so far.
    pub fn stats(&self) -> &Arc<ControllerStats> {
        &self.stats
    }

    /// Stops the loop and waits until it has let go of the coordinator.
    pub async fn stop(mut self) {
        if let Some(task) = self.task.take() {
            task.abort();
            let _ = task.await;
        }
    }
}

impl Drop for ControllerTask {
    fn drop(&mut self) {
        if let Some(task) = &self.task {
            task.abort();
        }
    }
}

/// Campaigns once for `node` (so that, with no other candidate, it is the controller
/// when this returns), then runs the loop as [`spawn`] does.
pub async fn start(coordinator: Arc<dyn Coordinator>, node: NodeId) -> ControllerTask {
    start_with(coordinator, node, Arc::default()).await
}

/// [`start`], counting into `stats`.
pub async fn start_with(
    coordinator: Arc<dyn Coordinator>,
    node: NodeId,
    stats: Arc<ControllerStats>,
) -> ControllerTask {
    let vacant = coordinator.metadata().borrow().controller.is_none();
    if vacant {
        if let Err(e) = coordinator.campaign_controller(node).await {
            warn!(node, error = %e, "controller campaign failed; the loop retries");
        }
    }
    spawn_with(coordinator, node, INCOMPLETE_TOPIC_GRACE, LeaderBalance::default(), stats)
}

/// Starts [`run`]'s loop for `node` on the current runtime until the handle is dropped.
pub fn spawn(coordinator: Arc<dyn Coordinator>, node: NodeId) -> ControllerTask {
    spawn_with_grace(coordinator, node, INCOMPLETE_TOPIC_GRACE)
}

/// [`spawn`] with another [`INCOMPLETE_TOPIC_GRACE`] (tests).
pub fn spawn_with_grace(coordinator: Arc<dyn Coordinator>, node: NodeId, grace: Duration) -> ControllerTask {
    spawn_with(coordinator, node, grace, LeaderBalance::default(), Arc::default())
}

/// [`spawn`] with another [`INCOMPLETE_TOPIC_GRACE`] and [`LeaderBalance`], counting
/// into `stats`.
pub fn spawn_with(
    coordinator: Arc<dyn Coordinator>,
    node: NodeId,
    grace: Duration,
    balance: LeaderBalance,
    stats: Arc<ControllerStats>,
) -> ControllerTask {
    let counted = stats.clone();
    let task = tokio::spawn(async move {
        control(&*coordinator, node, grace, &balance, &counted).await;
        warn!(node, "controller loop ended: the metadata feed closed");
    });
    ControllerTask { task: Some(task), stats }
}

/// The loop behind [`run`]; returns only if the metadata watch closes. Cancelling it (on
/// shutdown) at any await point is safe: an interrupted write either happened or did not,
/// and the next controller plans from whatever is stored.
///
/// Preferred-leader elections run only when [`plan`] has nothing to change (they need
/// the state it leads to): a pending request ([`ClusterMetadata::preferred_election`])
/// first — run, then removed once nothing of it is left to elect — else, when the
/// imbalance check is due, [`rebalance_elections`].
async fn control(
    coordinator: &dyn Coordinator,
    node: NodeId,
    grace: Duration,
    balance: &LeaderBalance,
    stats: &ControllerStats,
) {
    let mut rx = coordinator.metadata();
    let mut tick = tokio::time::interval(RETRY_INTERVAL);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let period = balance.interval();
    let mut check = tokio::time::interval_at(tokio::time::Instant::now() + period, period);
    check.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut check_due = false;
    let mut active = false;
    let mut incomplete = IncompleteTopics::default();
    loop {
        let meta = rx.borrow_and_update().clone();
        match meta.controller {
            None => match coordinator.campaign_controller(node).await {
                // The win shows up as a new snapshot; act on that one.
                Ok(Some(epoch)) => debug!(node, controller_epoch = epoch, "won the controller election"),
                Ok(None) => debug!(node, "another node won the controller election"),
                Err(e) => warn!(node, error = %e, "controller campaign failed; retrying"),
            },
            Some(c) if c == node => {
                if !active {
                    info!(node, controller_epoch = meta.controller_epoch, "this node is now the controller");
                    active = true;
                    stats.count(&stats.activations);
                }
                let planned = plan(&meta);
                if !planned.is_empty() {
                    apply(coordinator, &meta, planned, Cause::Plan, stats).await;
                } else if let Some(request) = &meta.preferred_election {
                    run_requested(coordinator, &meta, request, stats).await;
                } else if check_due {
                    check_due = false;
                    if balance.auto_leader_rebalance_enable {
                        rebalance(coordinator, &meta, balance.leader_imbalance_per_broker_percentage, stats).await;
                    }
                }
                incomplete.sweep(coordinator, &meta, grace).await;
            }
            Some(other) => {
                if active {
                    info!(node, controller = other, "this node is no longer the controller");
                    active = false;
                    incomplete = IncompleteTopics::default();
                }
            }
        }
        tokio::select! {
            changed = rx.changed() => if changed.is_err() { return },
            _ = tick.tick() => {}
            _ = check.tick() => check_due = active,
        }
    }
}

/// Runs the pending election request: elects what it can, and removes the request once
/// nothing it names is left to elect (done, or its preferred replica unavailable — as
/// Kafka does). A failed write leaves it for the next round.
async fn run_requested(
    coordinator: &dyn Coordinator,
    meta: &ClusterMetadata,
    request: &ElectionRequest,
    stats: &ControllerStats,
) {
    let elections = preferred_elections(meta, |topic, p| request.includes(topic, p.partition));
    if !elections.is_empty() {
        info!(partitions = elections.len(), "preferred-leader election asked for");
        apply(coordinator, meta, elections, Cause::Preferred, stats).await;
        return;
    }
    match coordinator.clear_preferred_election(&request.id).await {
        Ok(_) => debug!(id = %request.id, "preferred-leader election done"),
        Err(e) => warn!(error = %e, "could not remove the finished election request; will retry"),
    }
}

/// The periodic imbalance check ([`LeaderBalance`]).
async fn rebalance(coordinator: &dyn Coordinator, meta: &ClusterMetadata, percentage: u32, stats: &ControllerStats) {
    let elections = rebalance_elections(meta, percentage);
    if elections.is_empty() {
        debug!("leader imbalance check: every node at or below the threshold");
        return;
    }
    let over: Vec<String> = over_threshold(meta, percentage)
        .into_iter()
        .map(|(id, (not_led, total))| format!("{id}: {not_led}/{total}"))
        .collect();
    info!(
        threshold_percent = percentage, nodes = ?over, partitions = elections.len(),
        "leader imbalance above the threshold: electing preferred leaders"
    );
    apply(coordinator, meta, elections, Cause::Preferred, stats).await;
}

/// Writes `planned` (from [`plan`] or an election) in one fenced batch, logging and
/// counting leader changes.
async fn apply(
    coordinator: &dyn Coordinator,
    meta: &ClusterMetadata,
    planned: Vec<(String, PartitionState)>,
    cause: Cause,
    stats: &ControllerStats,
) {
    let results = match coordinator.write_plan(meta.controller_epoch, planned.clone()).await {
        Ok(results) => results,
        Err(e) if e.code == ErrorCode::StaleVersion => {
            info!(controller_epoch = meta.controller_epoch, error = %e, "deposed: a newer controller was elected");
            return;
        }
        Err(e) => {
            warn!(error = %e, "controller could not write its plan; will retry");
            return;
        }
    };
    for ((topic, next), result) in planned.iter().zip(results) {
        let partition = next.partition;
        let Some(before) = meta.partition(topic, partition) else { continue };
        match result {
            Ok(_) => {
                if let Some(change) = log_change(topic, before, next) {
                    stats.count(match (cause, change) {
                        (Cause::Preferred, _) => &stats.preferred_elections,
                        (Cause::Plan, Change::Clean) => &stats.clean_elections,
                        (Cause::Plan, Change::Unclean) => &stats.unclean_elections,
                        (Cause::Plan, Change::Offline) => &stats.offline_transitions,
                    });
                }
            }
            Err(e) if e.code == ErrorCode::StaleVersion => {
                debug!(%topic, partition, "partition state changed under the controller; re-planning");
            }
            // Deleted (or not yet fully created) while we planned: the next snapshot
            // no longer asks for it.
            Err(e) if matches!(e.code, ErrorCode::UnknownTopic | ErrorCode::UnknownPartition) => {
                debug!(%topic, partition, error = %e, "partition vanished under the controller");
            }
            Err(e) => warn!(%topic, partition, error = %e, "controller could not write partition state; will retry"),
        }
    }
}

/// When this controller first saw each incomplete topic (name, id) — its own clock: a
/// new controller waits the whole grace again.
#[derive(Default)]
struct IncompleteTopics(HashMap<(String, String), Instant>);

impl IncompleteTopics {
    /// Removes every topic incomplete for `grace` or longer.
    async fn sweep(&mut self, coordinator: &dyn Coordinator, meta: &ClusterMetadata, grace: Duration) {
        let now = Instant::now();
        self.0.retain(|(name, id), _| meta.incomplete_topics.get(name) == Some(id));
        for (name, id) in &meta.incomplete_topics {
            let since = *self.0.entry((name.clone(), id.clone())).or_insert(now);
            if now.duration_since(since) < grace {
                continue;
            }
            match coordinator.remove_incomplete_topic(name, id).await {
                Ok(true) => warn!(
                    topic = %name, topic_id = %id, waited_s = grace.as_secs(),
                    "removed a topic left half-created or half-deleted; its name is free again"
                ),
                Ok(false) => debug!(topic = %name, "incomplete topic changed under the controller"),
                Err(e) => warn!(topic = %name, error = %e, "could not remove an incomplete topic; will retry"),
            }
        }
    }
}

/// A leader change the controller wrote.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Change {
    Clean,
    Unclean,
    Offline,
}

/// Logs a written partition state; says what leader change it was (`None`: the leader
/// stayed, only the ISR changed).
fn log_change(topic: &str, before: &PartitionState, after: &PartitionState) -> Option<Change> {
    let partition = after.partition;
    let (old_leader, new_leader, epoch) = (before.leader, after.leader, after.leader_epoch);
    match new_leader {
        _ if old_leader == new_leader => {
            debug!(%topic, partition, leader = ?new_leader, old_isr = ?before.isr, isr = ?after.isr, "ISR shrunk");
            None
        }
        None => {
            warn!(
                %topic, partition, ?old_leader, leader_epoch = epoch, isr = ?after.isr,
                "partition offline: no in-sync replica is live"
            );
            Some(Change::Offline)
        }
        Some(l) if !before.isr.contains(&l) && before.leader_epoch > 0 => {
            warn!(
                %topic, partition, ?old_leader, ?new_leader, leader_epoch = epoch, old_isr = ?before.isr,
                "unclean leader election: records acknowledged by the old ISR may be lost"
            );
            Some(Change::Unclean)
        }
        Some(_) => {
            info!(
                %topic, partition, ?old_leader, ?new_leader, leader_epoch = epoch, isr = ?after.isr,
                "elected partition leader"
            );
            Some(Change::Clean)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::{NodeInfo, TopicConfig, TopicMetadata};

    fn meta(nodes: &[NodeId], partitions: Vec<PartitionState>) -> ClusterMetadata {
        let mut m = ClusterMetadata::default();
        for id in nodes {
            m.nodes.insert(
                *id,
                NodeInfo {
                    id: *id,
                    endpoint: format!("n{id}"),
                    rack: None,
                    shutting_down: false,
                    offline_replicas: Default::default(),
                },
            );
        }
        m.topics.insert(
            "t".into(),
            Arc::new(TopicMetadata {
                name: "t".into(),
                topic_id: "id".into(),
                config: TopicConfig::default(),
                partitions,
            }),
        );
        m
    }

    fn part(replicas: &[NodeId], leader: Option<NodeId>, epoch: u32, isr: &[NodeId]) -> PartitionState {
        PartitionState {
            partition: 0,
            replicas: replicas.to_vec(),
            leader,
            leader_epoch: epoch,
            isr: isr.to_vec(),
            version: 7,
        }
    }

    /// The one change planned for the single partition of `m`, if any.
    fn planned(m: &ClusterMetadata) -> Option<PartitionState> {
        let mut p = plan(m);
        assert!(p.len() <= 1, "{p:?}");
        let (topic, state) = p.pop()?;
        assert_eq!(topic, "t");
        assert_eq!(state.version, 7, "a plan keeps the version it was read at");
        Some(state)
    }

    fn apply_plan(m: &mut ClusterMetadata) {
        for (topic, state) in plan(m) {
            let p = &mut Arc::make_mut(m.topics.get_mut(&topic).expect("topic")).partitions[state.partition as usize];
            *p = PartitionState { version: p.version + 1, ..state };
        }
    }

    #[test]
    fn node_loss_elects_the_first_live_isr_replica_in_assignment_order() {
        // Leader 1 dies; 3 is listed before 2 in the assignment, both in the ISR.
        let m = meta(&[2, 3], vec![part(&[1, 3, 2], Some(1), 4, &[2, 1, 3])]);
        let next = planned(&m).expect("election");
        assert_eq!((next.leader, next.leader_epoch, next.isr), (Some(3), 5, vec![2, 3]));
    }

    #[test]
    fn first_live_replica_not_in_isr_is_passed_over() {
        let m = meta(&[2, 3], vec![part(&[1, 2, 3], Some(1), 4, &[1, 3])]);
        let next = planned(&m).expect("election");
        assert_eq!((next.leader, next.leader_epoch, next.isr), (Some(3), 5, vec![3]));
    }

    #[test]
    fn no_live_isr_member_takes_the_partition_offline_keeping_the_isr() {
        let m = meta(&[3], vec![part(&[1, 2, 3], Some(1), 4, &[1, 2])]);
        let next = planned(&m).expect("offline");
        assert_eq!((next.leader, next.leader_epoch, next.isr.clone()), (None, 5, vec![1, 2]));
        // Staying offline changes nothing, and bumps no epoch.
        let offline = meta(&[3], vec![next]);
        assert_eq!(planned(&offline), None);
    }

    #[test]
    fn unclean_election_takes_the_first_live_replica_alone() {
        let mut m = meta(&[2, 3], vec![part(&[1, 3, 2], Some(1), 4, &[1])]);
        Arc::make_mut(m.topics.get_mut("t").expect("t")).config.unclean_leader_election_enable = true;
        let next = planned(&m).expect("unclean");
        assert_eq!((next.leader, next.leader_epoch, next.isr), (Some(3), 5, vec![3]));
        // From an offline partition too.
        Arc::make_mut(m.topics.get_mut("t").expect("t")).partitions[0] = part(&[1, 3, 2], None, 5, &[1]);
        let next = planned(&m).expect("unclean from offline");
        assert_eq!((next.leader, next.leader_epoch, next.isr), (Some(3), 6, vec![3]));
    }

    #[test]
    fn nothing_live_at_all_stays_offline_even_when_unclean() {
        let mut m = meta(&[], vec![part(&[1, 2], None, 3, &[1])]);
        Arc::make_mut(m.topics.get_mut("t").expect("t")).config.unclean_leader_election_enable = true;
        assert_eq!(planned(&m), None);
    }

    #[test]
    fn returning_isr_member_of_an_offline_partition_is_elected() {
        let m = meta(&[2, 3], vec![part(&[1, 2, 3], None, 5, &[2])]);
        let next = planned(&m).expect("election");
        assert_eq!((next.leader, next.leader_epoch, next.isr), (Some(2), 6, vec![2]));
    }

    #[test]
    fn returning_node_outside_the_isr_changes_nothing() {
        // 1 is the preferred replica and back, but not yet in sync: leadership stays.
        let m = meta(&[1, 2, 3], vec![part(&[1, 2, 3], Some(2), 5, &[2, 3])]);
        assert_eq!(planned(&m), None);
        // And an offline partition stays offline when only out-of-sync replicas return.
        let m = meta(&[1, 3], vec![part(&[1, 2, 3], None, 5, &[2])]);
        assert_eq!(planned(&m), None);
    }

    #[test]
    fn a_preferred_replica_back_in_sync_is_elected_only_by_an_election() {
        let m = meta(&[1, 2, 3], vec![part(&[1, 2, 3], Some(2), 5, &[2, 3, 1])]);
        assert_eq!(planned(&m), None, "plan leaves a live leader where it is");
        let mut elected = preferred_elections(&m, |_, _| true);
        let (topic, next) = elected.pop().expect("preferred election");
        assert!(elected.is_empty());
        assert_eq!(topic, "t");
        assert_eq!((next.leader, next.leader_epoch, next.isr, next.version), (Some(1), 6, vec![2, 3, 1], 7));
        assert!(preferred_elections(&m, |_, _| false).is_empty(), "only selected partitions");
    }

    #[test]
    fn an_unavailable_preferred_replica_is_not_elected() {
        // Out of the ISR; registered but shutting down; not registered; damaged here.
        let out_of_sync = meta(&[1, 2, 3], vec![part(&[1, 2, 3], Some(2), 5, &[2, 3])]);
        let mut shutting = meta(&[1, 2, 3], vec![part(&[1, 2, 3], Some(2), 5, &[2, 3, 1])]);
        shutting.nodes.get_mut(&1).expect("1").shutting_down = true;
        let gone = meta(&[2, 3], vec![part(&[1, 2, 3], Some(2), 5, &[2, 3, 1])]);
        let mut damaged = meta(&[1, 2, 3], vec![part(&[1, 2, 3], Some(2), 5, &[2, 3, 1])]);
        offline_on(&mut damaged, 1, 0);
        let offline = meta(&[1, 2, 3], vec![part(&[1, 2, 3], None, 5, &[1])]);
        for m in [out_of_sync, shutting, gone, damaged, offline] {
            assert!(preferred_elections(&m, |_, _| true).is_empty(), "{m:#?}");
            assert!(rebalance_elections(&m, 0).is_empty(), "{m:#?}");
        }
    }

    /// `partitions` partitions of `t` on nodes 1..=3, each preferred by node
    /// `p % 3 + 1`, all in sync; the first `moved` of those preferred by node 1 led by 2.
    fn spread(partitions: u32, moved: usize) -> ClusterMetadata {
        let mut left = moved;
        let states = (0..partitions)
            .map(|p| {
                let first = p % 3 + 1;
                let replicas = [first, first % 3 + 1, (first + 1) % 3 + 1];
                let leader = if first == 1 && left > 0 {
                    left -= 1;
                    2
                } else {
                    first
                };
                PartitionState { partition: p, ..part(&replicas, Some(leader), 3, &[1, 2, 3]) }
            })
            .collect();
        meta(&[1, 2, 3], states)
    }

    #[test]
    fn the_imbalance_check_elects_only_for_nodes_above_the_threshold() {
        // Node 1 is preferred for 10 of 30 partitions.
        let m = spread(30, 1);
        assert_eq!(leader_imbalance(&m).get(&1), Some(&(1, 10)));
        assert_eq!(leader_imbalance(&m).get(&2), Some(&(0, 10)));
        // 1 of 10 is 10%: not above Kafka's default threshold.
        assert!(rebalance_elections(&m, 10).is_empty());
        assert_eq!(rebalance_elections(&m, 9).len(), 1);
        let m = spread(30, 2);
        let elected = rebalance_elections(&m, 10);
        assert_eq!(elected.len(), 2, "20% is above 10%: both of node 1's partitions move back");
        assert!(elected.iter().all(|(_, p)| p.leader == Some(1) && p.replicas[0] == 1 && p.leader_epoch == 4));
        assert!(rebalance_elections(&m, 20).is_empty(), "at the threshold is not above it");
        // 100% can never be passed: leadership is never moved by the check.
        assert!(rebalance_elections(&spread(30, 10), 100).is_empty());
        assert_eq!(rebalance_elections(&spread(30, 10), 99).len(), 10);
    }

    #[test]
    fn leader_balance_config_is_checked() {
        assert_eq!(LeaderBalance::default().validate(), Ok(()));
        let too_much = LeaderBalance { leader_imbalance_per_broker_percentage: 101, ..Default::default() };
        assert!(too_much.validate().is_err());
        let never = LeaderBalance { leader_imbalance_check_interval_seconds: 0, ..Default::default() };
        assert!(never.validate().is_err());
    }

    #[test]
    fn dead_follower_leaves_the_isr_without_an_epoch_bump() {
        let m = meta(&[1, 3], vec![part(&[1, 2, 3], Some(1), 5, &[1, 2, 3])]);
        let next = planned(&m).expect("shrink");
        assert_eq!((next.leader, next.leader_epoch, next.isr), (Some(1), 5, vec![1, 3]));
    }

    #[test]
    fn shutting_down_leader_hands_over_and_leaves_every_isr() {
        let mut m = ClusterMetadata::default();
        for id in [1, 2, 3] {
            m.nodes.insert(
                id,
                NodeInfo {
                    id,
                    endpoint: String::new(),
                    rack: None,
                    shutting_down: id == 1,
                    offline_replicas: Default::default(),
                },
            );
        }
        let partitions = vec![
            PartitionState { partition: 0, ..part(&[1, 2, 3], Some(1), 5, &[1, 2, 3]) },
            PartitionState { partition: 1, ..part(&[2, 1, 3], Some(2), 5, &[2, 1, 3]) },
            PartitionState { partition: 2, ..part(&[3, 2, 1], Some(3), 5, &[3, 1]) },
        ];
        m.topics.insert(
            "t".into(),
            Arc::new(TopicMetadata {
                name: "t".into(),
                topic_id: "id".into(),
                config: TopicConfig::default(),
                partitions,
            }),
        );
        apply_plan(&mut m);
        let ps = &m.topics["t"].partitions;
        assert_eq!((ps[0].leader, ps[0].leader_epoch, ps[0].isr.clone()), (Some(2), 6, vec![2, 3]));
        assert_eq!((ps[1].leader, ps[1].leader_epoch, ps[1].isr.clone()), (Some(2), 5, vec![2, 3]));
        assert_eq!((ps[2].leader, ps[2].leader_epoch, ps[2].isr.clone()), (Some(3), 5, vec![3]));
        assert!(plan(&m).is_empty());
    }

    fn offline_on(m: &mut ClusterMetadata, node: NodeId, partition: u32) {
        let n = m.nodes.get_mut(&node).expect("node");
        n.offline_replicas.insert(fjord_protocol::TopicPartition::new("t", partition));
    }

    #[test]
    fn an_offline_replica_leader_is_replaced_and_leaves_the_isr_of_that_partition_alone() {
        let partitions = vec![
            PartitionState { partition: 0, ..part(&[1, 2, 3], Some(1), 5, &[1, 2, 3]) },
            PartitionState { partition: 1, ..part(&[1, 2, 3], Some(1), 5, &[1, 2, 3]) },
        ];
        let mut m = meta(&[1, 2, 3], partitions);
        offline_on(&mut m, 1, 0);
        apply_plan(&mut m);
        let ps = &m.topics["t"].partitions;
        assert_eq!((ps[0].leader, ps[0].leader_epoch, ps[0].isr.clone()), (Some(2), 6, vec![2, 3]));
        assert_eq!((ps[1].leader, ps[1].leader_epoch, ps[1].isr.clone()), (Some(1), 5, vec![1, 2, 3]), "untouched");
        // Back (no longer offline) but out of the ISR: it follows until its leader adds it.
        m.nodes.get_mut(&1).expect("1").offline_replicas.clear();
        assert!(plan(&m).is_empty(), "{:?}", plan(&m));
    }

    #[test]
    fn an_offline_sole_isr_leader_takes_the_partition_offline_keeping_the_isr() {
        let mut m = meta(&[1, 2], vec![part(&[1, 2], Some(1), 5, &[1])]);
        offline_on(&mut m, 1, 0);
        let next = planned(&m).expect("offline");
        assert_eq!(
            (next.leader, next.leader_epoch, next.isr),
            (None, 6, vec![1]),
            "not kept as a shutting-down one is"
        );
        // Unclean election may pick the live out-of-sync replica, never the offline one.
        Arc::make_mut(m.topics.get_mut("t").expect("t")).config.unclean_leader_election_enable = true;
        let next = planned(&m).expect("unclean");
        assert_eq!((next.leader, next.isr), (Some(2), vec![2]));
    }

    #[test]
    fn shutting_down_sole_isr_leader_keeps_leading_until_it_is_gone() {
        let mut m = meta(&[1, 2], vec![part(&[1, 2], Some(1), 5, &[1])]);
        m.nodes.get_mut(&1).expect("1").shutting_down = true;
        assert_eq!(planned(&m), None, "no in-sync successor: node 1 keeps leading");
        // Not even an unclean election replaces it while it lives.
        Arc::make_mut(m.topics.get_mut("t").expect("t")).config.unclean_leader_election_enable = true;
        assert_eq!(planned(&m), None, "no unclean election of a live leader");
        Arc::make_mut(m.topics.get_mut("t").expect("t")).config.unclean_leader_election_enable = false;
        // A dead follower still leaves its ISR (no epoch bump).
        let mut m = meta(&[1], vec![part(&[1, 2], Some(1), 5, &[1, 2])]);
        m.nodes.get_mut(&1).expect("1").shutting_down = true;
        let next = planned(&m).expect("shrink");
        assert_eq!((next.leader, next.leader_epoch, next.isr), (Some(1), 5, vec![1]));
        // Once its process ends (its registration goes) the partition is offline.
        m.nodes.remove(&1);
        let next = planned(&m).expect("offline");
        assert_eq!((next.leader, next.leader_epoch, next.isr), (None, 6, vec![1, 2]));
    }

    #[test]
    fn new_partition_gets_its_first_replica_as_leader_at_epoch_1() {
        let m = meta(&[1, 2, 3], vec![part(&[2, 3, 1], None, 0, &[2, 3, 1])]);
        let next = planned(&m).expect("new");
        assert_eq!((next.leader, next.leader_epoch, next.isr), (Some(2), 1, vec![2, 3, 1]));
        // The embedded backend creates partitions with an empty ISR: same outcome.
        let m = meta(&[1, 2, 3], vec![part(&[2, 3, 1], None, 0, &[])]);
        let next = planned(&m).expect("new, empty isr");
        assert_eq!((next.leader, next.leader_epoch, next.isr), (Some(2), 1, vec![2, 3, 1]));
        // With its first replica down, the next live one leads and the ISR is the live ones.
        let m = meta(&[1, 3], vec![part(&[2, 3, 1], None, 0, &[2, 3, 1])]);
        let next = planned(&m).expect("new, first down");
        assert_eq!((next.leader, next.leader_epoch, next.isr), (Some(3), 1, vec![3, 1]));
        // With none live it stays new.
        assert_eq!(planned(&meta(&[9], vec![part(&[2, 3, 1], None, 0, &[])])), None);
    }

    /// A small deterministic generator (xorshift64*) so the property below explores many
    /// random cases reproducibly without a property-testing dependency.
    struct Rng(u64);

    impl Rng {
        fn next(&mut self) -> u64 {
            self.0 ^= self.0 >> 12;
            self.0 ^= self.0 << 25;
            self.0 ^= self.0 >> 27;
            self.0.wrapping_mul(0x2545_F491_4F6C_DD1D)
        }
        fn below(&mut self, n: u64) -> u64 {
            self.next() % n
        }
        fn chance(&mut self, percent: u64) -> bool {
            self.below(100) < percent
        }
        fn subset(&mut self, of: &[NodeId], percent: u64) -> Vec<NodeId> {
            of.iter().copied().filter(|_| self.chance(percent)).collect()
        }
    }

    fn random_metadata(rng: &mut Rng) -> ClusterMetadata {
        let all: Vec<NodeId> = (1..=6).collect();
        let mut m = ClusterMetadata::default();
        for id in rng.subset(&all, 60) {
            let shutting_down = rng.chance(20);
            let mut offline_replicas = BTreeSet::new();
            while rng.chance(15) {
                let tp = fjord_protocol::TopicPartition::new(format!("t{}", rng.below(3)), rng.below(4) as u32);
                offline_replicas.insert(tp);
            }
            m.nodes.insert(id, NodeInfo { id, endpoint: String::new(), rack: None, shutting_down, offline_replicas });
        }
        for t in 0..rng.below(3) + 1 {
            let config = TopicConfig { unclean_leader_election_enable: rng.chance(30), ..TopicConfig::default() };
            let partitions = (0..rng.below(4) as u32 + 1)
                .map(|partition| {
                    let mut replicas = all.clone();
                    // A random permutation, cut to the replication factor.
                    for i in (1..replicas.len()).rev() {
                        replicas.swap(i, rng.below(i as u64 + 1) as usize);
                    }
                    replicas.truncate(rng.below(4) as usize + 1);
                    let fresh = rng.chance(20);
                    let isr = if fresh && rng.chance(50) { vec![] } else { rng.subset(&replicas, 60) };
                    let leader = if fresh || rng.chance(15) {
                        None
                    } else if rng.chance(80) && !isr.is_empty() {
                        Some(isr[rng.below(isr.len() as u64) as usize])
                    } else {
                        Some(replicas[rng.below(replicas.len() as u64) as usize])
                    };
                    let leader_epoch = if fresh { 0 } else { rng.below(10) as u32 + 1 };
                    let version = rng.below(100) as i32;
                    PartitionState { partition, replicas, leader, leader_epoch, isr, version }
                })
                .collect();
            let name = format!("t{t}");
            m.topics
                .insert(name.clone(), Arc::new(TopicMetadata { name, topic_id: String::new(), config, partitions }));
        }
        m
    }

    /// Property: planning is idempotent — once a plan is applied the next plan is empty —
    /// and every planned state is one Kafka's rules allow: an ISR-only change only removes
    /// members that are not live, a new leader is live and in the new ISR, epochs only grow and grow exactly when the leader changes, the version is
    /// the one read, and a leader outside the old ISR appears only by unclean election.
    #[test]
    fn applying_a_plan_leaves_nothing_to_plan() {
        let mut rng = Rng(0x9E37_79B9_7F4A_7C15);
        for case in 0..20_000 {
            let before = random_metadata(&mut rng);
            for (topic, next) in plan(&before) {
                let t = &before.topics[&topic];
                let old = &t.partitions[next.partition as usize];
                // Live for this partition: registered, not shutting down, not offline here.
                let serves = |n: &&NodeInfo| n.serves(&topic, next.partition);
                let live: BTreeSet<NodeId> =
                    before.nodes.values().filter(|n| !n.shutting_down).filter(serves).map(|n| n.id).collect();
                let registered: BTreeSet<NodeId> = before.nodes.values().filter(serves).map(|n| n.id).collect();
                assert_eq!(next.version, old.version, "case {case}");
                assert_eq!(next.replicas, old.replicas, "case {case}");
                assert_ne!(&next, old, "case {case}: a no-op in the plan");
                assert_eq!(
                    next.leader_epoch > old.leader_epoch,
                    next.leader != old.leader,
                    "case {case}: {old:?} → {next:?}"
                );
                // A shutting-down leader (registered, not live) hands over only to an
                // in-sync replica, and keeps leading (in its ISR) when none is live.
                let leaving = old.leader.filter(|l| registered.contains(l) && !live.contains(l) && old.isr.contains(l));
                if let (Some(_), true) = (leaving, next.leader != old.leader) {
                    let l = next.leader.expect("a live leader is replaced, not removed");
                    assert!(old.isr.contains(&l), "case {case}: {old:?} → {next:?}");
                }
                if next.leader == old.leader {
                    let kept = |r: &NodeId| leaving == Some(*r);
                    assert!(
                        next.isr.iter().all(|r| old.isr.contains(r) && (live.contains(r) || kept(r))),
                        "case {case}: {old:?} → {next:?}"
                    );
                } else if let Some(l) = next.leader {
                    assert!(live.contains(&l) && next.isr.contains(&l), "case {case}: {old:?} → {next:?}");
                    let fresh = old.leader.is_none() && old.leader_epoch == 0;
                    if !old.isr.contains(&l) && !fresh {
                        assert!(t.config.unclean_leader_election_enable, "case {case}: {old:?} → {next:?}");
                        assert_eq!(next.isr, vec![l], "case {case}");
                    }
                } else {
                    assert_eq!(next.isr, old.isr, "case {case}: offline keeps the ISR");
                }
            }
            let mut after = before.clone();
            apply_plan(&mut after);
            assert_eq!(plan(&after), vec![], "case {case}: before {before:#?}\nafter {after:#?}");
        }
    }

    mod run_loop {
        use super::super::*;
        use crate::model::{NewTopic, NodeInfo, TopicConfig};
        use crate::EmbeddedCoordinator;

        fn node(id: NodeId) -> NodeInfo {
            NodeInfo {
                id,
                endpoint: format!("n{id}"),
                rack: None,
                shutting_down: false,
                offline_replicas: Default::default(),
            }
        }

        /// Waits until `cond` holds for a snapshot, failing after a deadline with the last
        /// snapshot it saw.
        async fn wait_for(
            c: &dyn Coordinator,
            what: &str,
            cond: impl Fn(&ClusterMetadata) -> bool,
        ) -> Arc<ClusterMetadata> {
            let mut rx = c.metadata();
            let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
            loop {
                let m = rx.borrow_and_update().clone();
                if cond(&m) {
                    return m;
                }
                match tokio::time::timeout_at(deadline, rx.changed()).await {
                    Ok(Ok(())) => {}
                    Ok(Err(_)) => panic!("metadata feed closed while waiting for {what}"),
                    Err(_) => panic!("timed out waiting for {what}; last metadata: {m:#?}"),
                }
            }
        }

        /// Nodes 1..=3 and a 3-partition, RF=3 topic `t` led by their preferred replicas,
        /// with a controller (node 100, no replica) balancing as `balance`; then node 1
        /// shuts down, its leadership moves, and it comes back in sync. Returns the
        /// store, the controller and the partition node 1 is preferred for, now led by
        /// another node.
        async fn moved_off_node_1(balance: LeaderBalance) -> (Arc<EmbeddedCoordinator>, ControllerTask, u32) {
            let c = Arc::new(EmbeddedCoordinator::in_memory());
            for id in [1, 2, 3] {
                c.register_node(node(id)).await.expect("register");
            }
            let spec =
                NewTopic { name: "t".into(), partitions: 3, replication_factor: 3, config: TopicConfig::default() };
            c.create_topic(spec).await.expect("create");
            let dyn_c: Arc<dyn Coordinator> = c.clone();
            let task = spawn_with(dyn_c.clone(), 100, INCOMPLETE_TOPIC_GRACE, balance, Arc::default());
            let m = wait_for(&*dyn_c, "leaders", |m| m.topics["t"].partitions.iter().all(|p| p.leader.is_some())).await;
            let p = m.topics["t"].partitions.iter().find(|p| p.replicas[0] == 1).expect("node 1 preferred somewhere");
            let partition = p.partition;
            assert_eq!(p.leader, Some(1));
            c.update_node(NodeInfo { shutting_down: true, ..node(1) }).await.expect("shutting down");
            wait_for(&*dyn_c, "node 1 to hand over", |m| {
                let p = &m.topics["t"].partitions[partition as usize];
                p.leader.is_some_and(|l| l != 1) && !p.isr.contains(&1)
            })
            .await;
            c.update_node(node(1)).await.expect("back");
            // What its leader does once it has caught up: take it back into the ISR.
            let mut state = c.metadata().borrow().topics["t"].partitions[partition as usize].clone();
            state.isr.push(1);
            c.update_partition_state("t", state).await.expect("ISR expansion");
            (c, task, partition)
        }

        type Counts = (u64, (u64, u64, u64), u64);

        /// Waits (a few seconds) until the controller's counters read `want`: activations,
        /// (clean, unclean, preferred) elections, offline transitions. A change is
        /// counted once its write is answered, just after the snapshot shows it.
        async fn counted(task: &ControllerTask, want: Counts, what: &str) {
            let read = |s: &ControllerStats| {
                let n = |a: &AtomicU64| a.load(Ordering::Relaxed);
                let elections = (n(&s.clean_elections), n(&s.unclean_elections), n(&s.preferred_elections));
                (n(&s.activations), elections, n(&s.offline_transitions))
            };
            let deadline = tokio::time::Instant::now() + Duration::from_secs(5);
            while read(task.stats()) != want && tokio::time::Instant::now() < deadline {
                tokio::time::sleep(Duration::from_millis(10)).await;
            }
            assert_eq!(read(task.stats()), want, "{what}");
        }

        fn leader_of(c: &EmbeddedCoordinator, partition: u32) -> Option<NodeId> {
            c.metadata().borrow().topics["t"].partitions[partition as usize].leader
        }

        /// Above the threshold (node 1 leads none of the one partition it is preferred
        /// for: 100% > 10%), the controller elects the preferred replica at the first
        /// check after the interval and not before — not at the change itself, as it did
        /// before leader balancing followed Kafka. Time is tokio's paused clock, so "not
        /// before" is exact rather than a guess.
        #[tokio::test(start_paused = true)]
        async fn an_imbalance_above_the_threshold_is_corrected_at_the_next_check_and_not_before() {
            let start = tokio::time::Instant::now();
            let interval = Duration::from_secs(60);
            let balance = LeaderBalance { leader_imbalance_check_interval_seconds: 60, ..Default::default() };
            let (c, task, partition) = moved_off_node_1(balance).await;
            assert!(start.elapsed() < Duration::from_secs(5), "set-up took {:?}", start.elapsed());
            // Three first leaders and node 1's hand-over.
            counted(&task, (1, (4, 0, 0), 0), "the first leaders and the hand-over are clean elections").await;
            // The loop re-plans every RETRY_INTERVAL meanwhile: over a hundred rounds.
            tokio::time::sleep_until(start + interval - Duration::from_secs(1)).await;
            assert_ne!(leader_of(&c, partition), Some(1), "elected before the check was due");
            let m = wait_for(&*c, "the preferred leader back", |m| {
                m.topics["t"].partitions[partition as usize].leader == Some(1)
            })
            .await;
            assert!(start.elapsed() >= interval, "elected after {:?}", start.elapsed());
            assert!(plan(&m).is_empty() && rebalance_elections(&m, 10).is_empty(), "balanced: {m:#?}");
            counted(&task, (1, (4, 0, 1), 0), "the move back is a preferred election").await;
            task.stop().await;
        }

        /// At the threshold (100% can never be passed) the check moves nothing, however
        /// many intervals pass; an election asked for moves the leader back at once and
        /// the request is removed. One whose preferred replica is not available moves
        /// nothing and is removed too, so it does not block the next.
        #[tokio::test(start_paused = true)]
        async fn at_the_threshold_nothing_moves_until_an_election_is_asked_for() {
            let balance = LeaderBalance {
                leader_imbalance_per_broker_percentage: 100,
                leader_imbalance_check_interval_seconds: 1,
                ..Default::default()
            };
            let (c, task, partition) = moved_off_node_1(balance).await;
            let before = leader_of(&c, partition);
            tokio::time::sleep(Duration::from_secs(10)).await;
            assert_eq!(leader_of(&c, partition), before, "ten checks at the threshold moved nothing");

            let asked = |p: u32| ElectionRequest {
                id: format!("request-{p}"),
                partitions: [fjord_protocol::TopicPartition::new("t", p)].into(),
            };
            c.request_preferred_election(asked(partition)).await.expect("request");
            let err = c.request_preferred_election(asked(partition)).await.expect_err("one at a time");
            assert_eq!(err.code, ErrorCode::ElectionInProgress);
            let m = wait_for(&*c, "the election run and its request removed", |m| {
                m.topics["t"].partitions[partition as usize].leader == Some(1) && m.preferred_election.is_none()
            })
            .await;
            // Epoch 1 at creation, 2 at the hand-over, 3 at the election.
            assert_eq!(m.topics["t"].partitions[partition as usize].leader_epoch, 3);

            // Node 2 leaves: the partition it is preferred for cannot go back to it.
            c.update_node(NodeInfo { shutting_down: true, ..node(2) }).await.expect("shutting down");
            let m =
                wait_for(&*c, "node 2 to hand over", |m| m.topics["t"].partitions.iter().all(|p| p.leader != Some(2)))
                    .await;
            let of_2 = m.topics["t"].partitions.iter().find(|p| p.replicas[0] == 2).expect("node 2 preferred");
            let (p2, leader) = (of_2.partition, of_2.leader);
            c.request_preferred_election(asked(p2)).await.expect("request");
            wait_for(&*c, "the request removed", |m| m.preferred_election.is_none()).await;
            assert_eq!(leader_of(&c, p2), leader, "leadership stays when the preferred replica is away");
            task.stop().await;
        }

        /// The controller campaigns, elects the preferred replica of every new partition,
        /// moves leadership off a node that starts a controlled shutdown (and takes it out
        /// of every ISR), and stops when told to; a second node's controller loop stays
        /// passive throughout.
        #[tokio::test]
        async fn elects_leaders_handles_controlled_shutdown_and_stops() {
            let c = Arc::new(EmbeddedCoordinator::in_memory());
            for id in [1, 2, 3] {
                c.register_node(node(id)).await.expect("register");
            }
            let spec =
                NewTopic { name: "t".into(), partitions: 6, replication_factor: 3, config: TopicConfig::default() };
            c.create_topic(spec).await.expect("create");
            assert!(c.metadata().borrow().topics["t"].partitions.iter().all(|p| p.leader.is_none()));

            let (stop1, stopped1) = tokio::sync::oneshot::channel::<()>();
            let (stop2, stopped2) = tokio::sync::oneshot::channel::<()>();
            let dyn_c: Arc<dyn Coordinator> = c.clone();
            let first = tokio::spawn(run(dyn_c.clone(), 1, LeaderBalance::default(), Arc::default(), async move {
                stopped1.await.unwrap_or(())
            }));
            let m = wait_for(&*dyn_c, "node 1 to become controller", |m| m.controller == Some(1)).await;
            assert_eq!(m.controller_epoch, 1);
            let second = tokio::spawn(run(dyn_c.clone(), 2, LeaderBalance::default(), Arc::default(), async move {
                stopped2.await.unwrap_or(())
            }));

            let m = wait_for(&*dyn_c, "leaders for the new topic", |m| {
                m.topics["t"].partitions.iter().all(|p| p.leader.is_some())
            })
            .await;
            for p in &m.topics["t"].partitions {
                assert_eq!((p.leader, p.leader_epoch), (p.replicas.first().copied(), 1), "{p:?}");
                assert_eq!(p.isr, p.replicas, "{p:?}");
            }
            let led_by_2: Vec<u32> =
                m.topics["t"].partitions.iter().filter(|p| p.leader == Some(2)).map(|p| p.partition).collect();
            assert!(!led_by_2.is_empty(), "placement spreads leaders: {m:#?}");

            c.update_node(NodeInfo { shutting_down: true, ..node(2) }).await.expect("shutting down");
            let m = wait_for(&*dyn_c, "node 2 to lead nothing and leave every ISR", |m| {
                m.topics["t"].partitions.iter().all(|p| p.leader != Some(2) && !p.isr.contains(&2))
            })
            .await;
            for p in &m.topics["t"].partitions {
                let leader = p.leader.expect("another ISR member took over");
                assert!(p.isr.contains(&leader), "{p:?}");
                let expected_epoch = if led_by_2.contains(&p.partition) { 2 } else { 1 };
                assert_eq!(p.leader_epoch, expected_epoch, "{p:?}");
                // The new leader is the next replica in assignment order.
                let expected = p.replicas.iter().copied().find(|r| *r != 2);
                assert_eq!(p.leader, expected, "{p:?}");
            }
            assert!(plan(&m).is_empty(), "the controller left nothing undone");
            assert_eq!(m.controller, Some(1), "the passive loop did not take over");

            stop1.send(()).expect("controller 1 running");
            stop2.send(()).expect("controller 2 running");
            for (name, task) in [("controller 1", first), ("controller 2", second)] {
                tokio::time::timeout(Duration::from_secs(10), task)
                    .await
                    .unwrap_or_else(|_| panic!("{name} did not stop on shutdown"))
                    .expect("controller task panicked");
            }
        }
    }
}
