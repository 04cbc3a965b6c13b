//! One conformance suite for every [`Coordinator`] backend.
//!
//! Each shared case is an `async fn(Fixture)`; the `conformance!` macro runs it as
//! `embedded::<case>` against [`EmbeddedCoordinator`] and as `zk::<case>` against
//! [`ZkCoordinator`] on a real ZooKeeper. A fixture has a main coordinator and can hand
//! out a *peer*: another client of the same cluster (for ZooKeeper a second session,
//! so what the peer sees arrived through watches; for the embedded backend, which lives
//! in one process, the same instance).
//!
//! Neither backend elects anyone: the controller does, over either, so the shared cases
//! run it and assert who leads, in which epoch, after a create, a node loss and a
//! restart of the backend. ZooKeeper-only properties (sessions, server restarts) are in
//! `zk_only`.

use fjord_coordinator::testing::{ZkProxy, ZkServer};
use fjord_coordinator::{
    ClusterMetadata, Coordinator, EmbeddedCoordinator, ErrorCode, GatewayInfo, NewTopic, NodeInfo, PartitionState,
    SessionStats, TopicChange, TopicConfig, ZkCoordinator,
};
use fjord_protocol::auth::{
    AclBinding, Operation, PatternType, Permission, ResourcePattern, ResourceType, Scope, TokenRecord,
};
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::watch;

/// Upper bound for anything the tests wait on.
const DEADLINE: Duration = Duration::from_secs(20);
const SESSION_TIMEOUT: Duration = Duration::from_secs(4);
/// A nested chroot, so its ancestors must be created too.
const CHROOT: &str = "/it/fjord";

struct Fixture {
    main: Arc<dyn Coordinator>,
    zk: Option<ZkServer>,
    /// The embedded backend's data directory.
    dir: tempfile::TempDir,
}

impl Fixture {
    async fn embedded() -> Self {
        let dir = tempfile::tempdir().expect("tempdir");
        let main = EmbeddedCoordinator::open(dir.path()).await.expect("open");
        Self { main: Arc::new(main), zk: None, dir }
    }

    async fn zk() -> Self {
        let server = ZkServer::start();
        let main = connect(&server.connect_string(), SESSION_TIMEOUT).await;
        Self { main: Arc::new(main), zk: Some(server), dir: tempfile::tempdir().expect("tempdir") }
    }

    /// Stops the main client and opens a new one over the same stored state: the
    /// embedded store re-opened from its directory, a new ZooKeeper session. Every other
    /// handle on the main client must be dropped first.
    async fn restart(&mut self) {
        match &self.zk {
            Some(server) => {
                let fresh: Arc<dyn Coordinator> = Arc::new(connect(&server.connect_string(), SESSION_TIMEOUT).await);
                let old = std::mem::replace(&mut self.main, fresh);
                assert_eq!(Arc::strong_count(&old), 1, "the old client is still in use");
                drop(old);
            }
            None => {
                let old = std::mem::replace(&mut self.main, Arc::new(EmbeddedCoordinator::in_memory()));
                assert_eq!(Arc::strong_count(&old), 1, "the old client is still in use");
                drop(old);
                self.main = Arc::new(EmbeddedCoordinator::open(self.dir.path()).await.expect("re-open"));
            }
        }
    }

    /// Another client of the same cluster.
    async fn peer(&self) -> Arc<dyn Coordinator> {
        match &self.zk {
            Some(server) => Arc::new(connect(&server.connect_string(), SESSION_TIMEOUT).await),
            None => Arc::clone(&self.main),
        }
    }

    fn snapshot(&self) -> Arc<ClusterMetadata> {
        Arc::clone(&self.main.metadata().borrow())
    }
}

async fn connect(connect_string: &str, session_timeout: Duration) -> ZkCoordinator {
    ZkCoordinator::connect(connect_string, CHROOT, session_timeout).await.expect("connect to ZooKeeper")
}

fn node(id: u32) -> NodeInfo {
    NodeInfo {
        id,
        endpoint: format!("127.0.0.1:{}", 9000 + id),
        rack: None,
        shutting_down: false,
        offline_replicas: Default::default(),
    }
}

fn topic(name: &str, partitions: u32, replication_factor: u32) -> NewTopic {
    NewTopic { name: name.into(), partitions, replication_factor, config: TopicConfig::default() }
}

/// Waits until the snapshot satisfies `pred`, failing the test after [`DEADLINE`].
async fn eventually(
    rx: &mut watch::Receiver<Arc<ClusterMetadata>>,
    what: &str,
    pred: impl FnMut(&Arc<ClusterMetadata>) -> bool,
) -> Arc<ClusterMetadata> {
    let found = match tokio::time::timeout(DEADLINE, rx.wait_for(pred)).await {
        Ok(Ok(m)) => Some(Arc::clone(&m)),
        Ok(Err(_)) => panic!("metadata channel closed while waiting for: {what}"),
        Err(_) => None,
    };
    found.unwrap_or_else(|| panic!("not within {DEADLINE:?}: {what}; last snapshot: {:#?}", rx.borrow()))
}

/// Waits, up to [`DEADLINE`], until `cond` holds (for figures no watch announces).
async fn until(what: &str, mut cond: impl FnMut() -> bool) {
    let deadline = tokio::time::Instant::now() + DEADLINE;
    while !cond() {
        assert!(tokio::time::Instant::now() < deadline, "timed out waiting until {what}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

macro_rules! conformance {
    ($($case:ident),* $(,)?) => {
        mod embedded {
            $(
                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn $case() {
                    super::$case(super::Fixture::embedded().await).await;
                }
            )*
        }
        mod zk {
            $(
                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn $case() {
                    super::$case(super::Fixture::zk().await).await;
                }
            )*
        }
    };
}

conformance!(
    topics_are_created_altered_and_deleted_with_stable_error_codes,
    metadata_receivers_wake_on_changes_made_by_other_clients,
    nodes_and_gateways_appear_in_the_snapshot,
    partition_state_writes_are_conditional_on_the_version,
    a_plan_is_written_only_under_the_current_controller_epoch,
    the_first_controller_candidate_wins_and_others_are_refused,
    shutting_down_nodes_get_no_new_replicas,
    the_controller_leads_after_create_node_loss_and_restart,
    producer_registrations_bump_the_epoch_and_survive_restarts,
    tokens_and_acls_are_stored_shared_and_kept_across_restarts,
    pipelines_are_stored_shared_and_kept_across_restarts,
    one_election_request_is_pending_at_a_time_and_only_its_own_id_removes_it,
);

/// An election request shows up in every client's snapshot; a second one is refused with
/// `election_in_progress` while the first is pending (and does not replace it); removing
/// it by another id removes nothing; by its id, it goes and the next can be made.
async fn one_election_request_is_pending_at_a_time_and_only_its_own_id_removes_it(f: Fixture) {
    let request = |id: &str, partition: u32| fjord_coordinator::ElectionRequest {
        id: id.into(),
        partitions: [fjord_protocol::TopicPartition::new("orders", partition)].into(),
    };
    let first = request("first", 0);
    f.main.request_preferred_election(first.clone()).await.expect("request");
    let refused = f.main.request_preferred_election(request("second", 1)).await.expect_err("one at a time");
    assert_eq!(refused.code, ErrorCode::ElectionInProgress);
    assert!(refused.code.retriable());
    let peer = f.peer().await;
    let mut rx = peer.metadata();
    let m = eventually(&mut rx, "the peer sees the request", |m| m.preferred_election.is_some()).await;
    assert_eq!(m.preferred_election.as_ref(), Some(&first), "the refused one did not replace it");
    assert!(!peer.clear_preferred_election("second").await.expect("clear another id"));
    assert_eq!(f.snapshot().preferred_election.as_ref(), Some(&first), "still pending");
    assert!(peer.clear_preferred_election("first").await.expect("clear"));
    let mut rx = f.main.metadata();
    eventually(&mut rx, "the request gone", |m| m.preferred_election.is_none()).await;
    assert!(!f.main.clear_preferred_election("first").await.expect("clear again"), "gone already");
    f.main.request_preferred_election(request("third", 1)).await.expect("the next one");
}

fn token(id: &str, principal: &str) -> TokenRecord {
    TokenRecord {
        id: id.into(),
        principal: principal.into(),
        secret_sha256: "ab".repeat(32),
        created_ms: 1,
        expires_ms: Some(2),
        scopes: Scope::everything(),
        issued_by: None,
        description: "d".into(),
    }
}

fn acl(principal: &str, name: &str, permission: Permission) -> AclBinding {
    AclBinding {
        principal: principal.into(),
        resource: ResourcePattern {
            resource_type: ResourceType::Topic,
            pattern_type: PatternType::Prefixed,
            name: name.into(),
        },
        operation: Operation::Produce,
        permission,
    }
}

/// Token records and ACL bindings: stored whole, seen by another client, a token id
/// taken is refused and changes nothing, a binding added twice is one, removals remove
/// exactly what they name, and everything survives a restart of the backend.
async fn tokens_and_acls_are_stored_shared_and_kept_across_restarts(mut f: Fixture) {
    let (a, b) = (token("00aa", "alice"), token("00bb", "bob"));
    f.main.create_token(a.clone()).await.expect("create a");
    f.main.create_token(b.clone()).await.expect("create b");
    let taken = f.main.create_token(token("00aa", "mallory")).await.expect_err("id taken");
    assert_eq!(taken.code, ErrorCode::InvalidRequest);
    let allow = acl("alice", "orders.", Permission::Allow);
    let deny = acl("*", "orders.secret", Permission::Deny);
    f.main.create_acls(vec![allow.clone(), deny.clone()]).await.expect("acls");
    f.main.create_acls(vec![allow.clone()]).await.expect("again");
    let peer = f.peer().await;
    let mut rx = peer.metadata();
    let m = eventually(&mut rx, "the peer sees both tokens and both bindings", |m| {
        m.tokens.len() == 2 && m.acls.len() == 2
    })
    .await;
    assert_eq!(*m.tokens["00aa"], a, "stored whole, and not overwritten by the refused create");
    assert!(m.acls.contains(&deny) && !m.acls_unreadable);
    assert!(peer.delete_token("00bb").await.expect("delete"));
    assert!(!peer.delete_token("00bb").await.expect("again"), "gone already");
    peer.delete_acls(vec![deny.clone(), acl("nobody", "x", Permission::Allow)]).await.expect("delete acls");
    drop((rx, peer));
    let mut rx = f.main.metadata();
    eventually(&mut rx, "the main client sees the removals", |m| m.tokens.len() == 1 && m.acls.len() == 1).await;
    drop(rx);
    f.restart().await;
    let mut rx = f.main.metadata();
    let m = eventually(&mut rx, "tokens and ACLs after a restart", |m| m.tokens.len() == 1 && m.acls.len() == 1).await;
    assert_eq!(*m.tokens["00aa"], a);
    assert!(m.acls.contains(&allow));
}

/// Pipeline definitions: stored whole, seen by another client, a name taken is refused
/// with `pipeline_already_exists` and changes nothing, a removal is exact, and they
/// survive a restart of the backend.
async fn pipelines_are_stored_shared_and_kept_across_restarts(mut f: Fixture) {
    let record = |name: &str, sink: &str| fjord_coordinator::PipelineRecord {
        name: name.into(),
        definition: serde_json::json!({"name": name, "source": ["orders"], "steps": [{"filter": ".amount > 0"}], "sink": sink}),
        created_ms: 7,
        principal: "alice".into(),
    };
    let (a, b) = (record("per-region", "counts"), record("enrich", "enriched"));
    f.main.create_pipeline(a.clone()).await.expect("create a");
    f.main.create_pipeline(b.clone()).await.expect("create b");
    let taken = f.main.create_pipeline(record("per-region", "elsewhere")).await.expect_err("name taken");
    assert_eq!(taken.code, ErrorCode::PipelineAlreadyExists);
    let peer = f.peer().await;
    let mut rx = peer.metadata();
    let m = eventually(&mut rx, "the peer sees both pipelines", |m| m.pipelines.len() == 2).await;
    assert_eq!(m.pipelines["per-region"], a, "stored whole, and not overwritten by the refused create");
    assert!(peer.delete_pipeline("enrich").await.expect("delete"));
    assert!(!peer.delete_pipeline("enrich").await.expect("again"), "gone already");
    drop((rx, peer));
    f.restart().await;
    let mut rx = f.main.metadata();
    let m = eventually(&mut rx, "pipelines after a restart", |m| m.pipelines.len() == 1).await;
    assert_eq!(m.pipelines["per-region"], a);
}

/// A producer name keeps its id across registrations (from any client) and restarts;
/// each registration bumps the epoch by one; names are ids apart; a bad name is refused
/// and registers nothing; the snapshot shows every session by id.
async fn producer_registrations_bump_the_epoch_and_survive_restarts(mut f: Fixture) {
    let first = f.main.register_producer("writer-a").await.expect("register");
    assert_eq!((first.name.as_str(), first.epoch), ("writer-a", 0));
    let peer = f.peer().await;
    let again = peer.register_producer("writer-a").await.expect("register again");
    assert_eq!((again.id, again.epoch), (first.id, 1), "same id, next epoch");
    drop(peer);
    let other = f.main.register_producer("writer-b").await.expect("another name");
    assert_ne!(other.id, first.id);
    assert_eq!(other.epoch, 0);
    let bad = f.main.register_producer("no/slashes").await.expect_err("bad name");
    assert_eq!(bad.code, ErrorCode::InvalidRequest);
    let mut rx = f.main.metadata();
    let m = eventually(&mut rx, "both producers in the snapshot", |m| m.producers.len() == 2).await;
    assert_eq!(m.producers[&first.id], again);
    assert_eq!(m.producers[&other.id], other);
    drop(rx);
    f.restart().await;
    let mut rx = f.main.metadata();
    let m = eventually(&mut rx, "producers after a restart", |m| m.producers.len() == 2).await;
    assert_eq!(m.producers[&first.id], again, "persistent");
    drop(rx);
    let third = f.main.register_producer("writer-a").await.expect("after restart");
    assert_eq!((third.id, third.epoch), (first.id, 2));
}

/// Create, describe, alter and delete behave alike on every backend, refusals carry the
/// documented error code and change nothing, and a writer sees its own change in the
/// snapshot as soon as the call returns.
async fn topics_are_created_altered_and_deleted_with_stable_error_codes(f: Fixture) {
    let c = &f.main;
    c.register_node(node(1)).await.expect("register");
    let t = c.create_topic(topic("orders", 2, 1)).await.expect("create");
    assert_eq!(t.name, "orders");
    assert_eq!(t.partitions.len(), 2);
    assert!(t.partitions.iter().all(|p| p.replicas == vec![1]), "{t:?}");
    assert_eq!(f.snapshot().topics["orders"].topic_id, t.topic_id, "read-your-writes after create");

    fn err<T: std::fmt::Debug>(r: fjord_coordinator::Result<T>) -> fjord_coordinator::FjordError {
        r.expect_err("must be refused")
    }
    assert_eq!(err(c.create_topic(topic("orders", 2, 1)).await).code, ErrorCode::TopicAlreadyExists);
    assert_eq!(err(c.create_topic(topic("bad name", 1, 1)).await).code, ErrorCode::InvalidTopicName);
    assert_eq!(err(c.create_topic(topic("zero", 0, 1)).await).code, ErrorCode::InvalidPartitions);
    assert_eq!(err(c.create_topic(topic("huge", 10_001, 1)).await).code, ErrorCode::InvalidPartitions);
    let rf = err(c.create_topic(topic("rf3", 1, 3)).await);
    assert_eq!(rf.code, ErrorCode::InvalidReplicationFactor);
    assert!(rf.message.contains('3') && rf.message.contains('1'), "names both numbers: {}", rf.message);
    assert!(!f.snapshot().topics.contains_key("rf3"), "a refused create changes nothing");

    let grown = c.alter_topic("orders", TopicChange { partitions: Some(4), config: None }).await.expect("grow");
    assert_eq!((grown.partitions.len(), &grown.topic_id), (4, &t.topic_id));
    assert_eq!(grown.partitions[3].replicas, vec![1]);
    let shrink = c.alter_topic("orders", TopicChange { partitions: Some(1), config: None }).await;
    assert_eq!(err(shrink).code, ErrorCode::InvalidPartitions);
    assert_eq!(f.snapshot().topics["orders"].partitions.len(), 4, "a refused alter changes nothing");

    let config = TopicConfig { retention_ms: 1234, ..TopicConfig::default() };
    let altered =
        c.alter_topic("orders", TopicChange { partitions: None, config: Some(config.clone()) }).await.expect("config");
    assert_eq!(altered.config, config);
    assert_eq!(f.snapshot().topics["orders"].config, config);
    let missing = c.alter_topic("nope", TopicChange { partitions: Some(2), config: None }).await;
    assert_eq!(err(missing).code, ErrorCode::UnknownTopic);

    c.delete_topic("orders").await.expect("delete");
    assert!(!f.snapshot().topics.contains_key("orders"), "read-your-writes after delete");
    assert_eq!(err(c.delete_topic("orders").await).code, ErrorCode::UnknownTopic);
    let again = c.create_topic(topic("orders", 1, 1)).await.expect("re-create");
    assert_ne!(again.topic_id, t.topic_id, "a new incarnation gets a new topic id");
}

/// A metadata receiver wakes when another client of the cluster changes it.
async fn metadata_receivers_wake_on_changes_made_by_other_clients(f: Fixture) {
    let mut rx = f.main.metadata();
    rx.borrow_and_update();
    let peer = f.peer().await;
    peer.register_node(node(1)).await.expect("register");
    peer.create_topic(topic("woken", 3, 1)).await.expect("create");
    let m = eventually(&mut rx, "topic `woken` visible to the main client", |m| m.topics.contains_key("woken")).await;
    assert_eq!(m.topics["woken"].partitions.len(), 3);
    assert!(m.nodes.contains_key(&1));

    rx.borrow_and_update();
    peer.delete_topic("woken").await.expect("delete");
    eventually(&mut rx, "topic `woken` gone for the main client", |m| !m.topics.contains_key("woken")).await;
}

/// Registered nodes and gateways, and node updates, appear in the snapshot; updating
/// a node that is not registered is refused.
async fn nodes_and_gateways_appear_in_the_snapshot(f: Fixture) {
    let c = &f.main;
    c.register_node(node(1)).await.expect("register 1");
    c.register_node(node(2)).await.expect("register 2");
    let gw = GatewayInfo { id: "gw-1".into(), endpoint: "127.0.0.1:8080".into() };
    c.register_gateway(gw.clone()).await.expect("gateway");
    let m = f.snapshot();
    assert_eq!(m.nodes.keys().copied().collect::<Vec<_>>(), vec![1, 2]);
    assert_eq!(m.nodes[&2], node(2));
    assert_eq!(m.gateways["gw-1"], gw);
    assert!(!m.cluster_id.is_empty());

    let leaving = NodeInfo { shutting_down: true, ..node(2) };
    c.update_node(leaving.clone()).await.expect("update");
    assert_eq!(f.snapshot().nodes[&2], leaving);
    let unknown = c.update_node(node(99)).await.expect_err("not registered");
    assert_eq!(unknown.code, ErrorCode::InvalidRequest);

    let peer = f.peer().await;
    let mut rx = peer.metadata();
    let seen =
        eventually(&mut rx, "peer sees nodes and gateway", |m| m.nodes.len() == 2 && m.gateways.len() == 1).await;
    assert_eq!(seen.nodes[&2], leaving);
    assert_eq!(seen.cluster_id, m.cluster_id, "one cluster id for every client");
}

/// `update_partition_state` succeeds with the current version and bumps it, fails with
/// `StaleVersion` for an old one, and keeps the replica list.
async fn partition_state_writes_are_conditional_on_the_version(f: Fixture) {
    let c = &f.main;
    c.register_node(node(1)).await.expect("register");
    c.create_topic(topic("t", 1, 1)).await.expect("create");
    let before = f.snapshot().topics["t"].partitions[0].clone();
    let next =
        PartitionState { leader: Some(1), leader_epoch: before.leader_epoch + 1, isr: vec![1], ..before.clone() };
    let v = c.update_partition_state("t", next.clone()).await.expect("current version wins");
    assert!(v > before.version, "version bumped: {} -> {v}", before.version);
    let after = f.snapshot().topics["t"].partitions[0].clone();
    assert_eq!(after, PartitionState { version: v, ..next.clone() });
    assert_eq!(after.replicas, before.replicas, "replicas unchanged");

    let stale = c.update_partition_state("t", next.clone()).await.expect_err("old version loses");
    assert_eq!(stale.code, ErrorCode::StaleVersion);
    assert!(stale.retriable());
    assert_eq!(f.snapshot().topics["t"].partitions[0].version, v, "a lost race changes nothing");

    let missing = c.update_partition_state("nope", next.clone()).await.expect_err("unknown topic");
    assert_eq!(missing.code, ErrorCode::UnknownTopic);
    let bad = PartitionState { partition: 7, version: v, ..next };
    assert_eq!(c.update_partition_state("t", bad).await.expect_err("no partition").code, ErrorCode::UnknownPartition);
}

/// A controller's plan is fenced by its epoch: under any epoch but the current one
/// nothing is written and the answer is `stale_version`; under the current one every
/// state is written on its own terms (a state whose version moved on fails alone, as does
/// one of an unknown topic), with one result per state in order.
async fn a_plan_is_written_only_under_the_current_controller_epoch(f: Fixture) {
    let c = &f.main;
    c.register_node(node(1)).await.expect("register");
    c.create_topic(topic("t", 3, 1)).await.expect("create");
    let epoch = c.campaign_controller(1).await.expect("campaign").expect("wins");
    let before = f.snapshot().topics["t"].partitions.clone();
    let lead = |p: &PartitionState| PartitionState { leader: Some(1), leader_epoch: 1, isr: vec![1], ..p.clone() };
    let plan: Vec<(String, PartitionState)> = before.iter().map(|p| ("t".to_owned(), lead(p))).collect();

    for wrong in [epoch - 1, epoch + 1] {
        let e = c.write_plan(wrong, plan.clone()).await.expect_err("a deposed epoch writes nothing");
        assert_eq!(e.code, ErrorCode::StaleVersion, "{e}");
        assert_eq!(f.snapshot().topics["t"].partitions, before, "epoch {wrong} changed nothing");
    }

    // Partition 1 moves on before the plan lands.
    let moved = PartitionState { leader_epoch: 9, ..lead(&before[1]) };
    let v1 = c.update_partition_state("t", moved).await.expect("moved on");
    let mut plan = plan;
    plan.push(("gone".to_owned(), lead(&before[0])));
    let results = c.write_plan(epoch, plan).await.expect("the current epoch writes");
    assert_eq!(results.len(), 4);
    assert!(results[0].is_ok() && results[2].is_ok(), "{results:?}");
    assert_eq!(results[1].as_ref().expect_err("stale").code, ErrorCode::StaleVersion);
    assert_eq!(results[3].as_ref().expect_err("unknown").code, ErrorCode::UnknownTopic);
    let after = f.snapshot().topics["t"].partitions.clone();
    for i in [0, 2] {
        assert_eq!((after[i].leader, after[i].leader_epoch), (Some(1), 1), "{:?}", after[i]);
        assert_eq!(Ok(&after[i].version), results[i].as_ref(), "the version each write answered");
    }
    assert_eq!((after[1].leader_epoch, after[1].version), (9, v1), "the stale state did not land");
}

/// The first candidate becomes controller with an epoch, asking again confirms it with
/// the same epoch, and a candidate on another client is refused while it holds.
async fn the_first_controller_candidate_wins_and_others_are_refused(f: Fixture) {
    let epoch = f.main.campaign_controller(1).await.expect("campaign").expect("first candidate wins");
    assert!(epoch >= 1);
    assert_eq!(f.main.campaign_controller(1).await.expect("again"), Some(epoch), "re-asking keeps the epoch");
    let m = f.snapshot();
    assert_eq!((m.controller, m.controller_epoch), (Some(1), epoch));
    let peer = f.peer().await;
    assert_eq!(peer.campaign_controller(2).await.expect("second"), None, "only one controller");
}

/// Nodes marked `shutting_down` (controlled shutdown) get no replicas of new topics,
/// and the replication factor is checked against the remaining nodes.
async fn shutting_down_nodes_get_no_new_replicas(f: Fixture) {
    let a = &f.main;
    for id in 1..=3 {
        a.register_node(node(id)).await.expect("register");
    }
    a.update_node(NodeInfo { shutting_down: true, ..node(3) }).await.expect("update");
    let t = a.create_topic(topic("placed", 6, 2)).await.expect("create");
    for p in &t.partitions {
        assert_eq!(p.replicas.len(), 2);
        assert_ne!(p.replicas[0], p.replicas[1], "distinct replicas: {p:?}");
        assert!(!p.replicas.contains(&3), "no replica on the leaving node: {p:?}");
        assert_eq!(p.isr, p.replicas, "a new partition starts with every replica in sync");
        assert_eq!((p.leader, p.leader_epoch), (None, 0), "leaders are the controller's business");
    }
    let err = a.create_topic(topic("rf3", 1, 3)).await.expect_err("only two live nodes");
    assert_eq!(err.code, ErrorCode::InvalidReplicationFactor);
    assert!(err.message.contains("2 live"), "{}", err.message);
}

/// (partition, leader, leader epoch, ISR) of every partition of `t`.
fn leadership(m: &ClusterMetadata, t: &str) -> Vec<(u32, Option<u32>, u32, Vec<u32>)> {
    m.topics[t].partitions.iter().map(|p| (p.partition, p.leader, p.leader_epoch, p.isr.clone())).collect()
}

/// With the controller running over the backend: a new topic's partitions are led by
/// their first replica in epoch 1 with every replica in sync; when a node goes, each
/// partition it led moves to the next replica of its ISR in assignment order with the
/// epoch bumped once, and the node leaves every ISR without an epoch bump elsewhere; a
/// restart of the backend keeps every leader, epoch and ISR (no election happens when
/// the nodes come back before the controller).
async fn the_controller_leads_after_create_node_loss_and_restart(mut f: Fixture) {
    for id in 1..=3 {
        f.main.register_node(node(id)).await.expect("register");
    }
    let controller = fjord_coordinator::controller::spawn(f.main.clone(), 100);
    let t = f.main.create_topic(topic("led", 6, 3)).await.expect("create");
    let mut rx = f.main.metadata();
    let m = eventually(&mut rx, "every partition led", |m| {
        m.topics.get("led").is_some_and(|t| t.partitions.iter().all(|p| p.leader.is_some()))
    })
    .await;
    for p in &m.topics["led"].partitions {
        assert_eq!((p.leader, p.leader_epoch), (Some(t.partitions[p.partition as usize].replicas[0]), 1), "{p:?}");
        assert_eq!(p.isr, p.replicas, "{p:?}");
    }

    f.main.unregister_node(1).await.expect("node 1 goes");
    let m = eventually(&mut rx, "node 1 in no ISR and leading nothing", |m| {
        m.topics["led"].partitions.iter().all(|p| p.leader != Some(1) && !p.isr.contains(&1) && p.leader.is_some())
    })
    .await;
    for (before, after) in t.partitions.iter().zip(&m.topics["led"].partitions) {
        let expected_leader = before.replicas.iter().copied().find(|r| *r != 1);
        let led_by_1 = before.replicas[0] == 1;
        if led_by_1 {
            assert_eq!((after.leader, after.leader_epoch), (expected_leader, 2), "{after:?}");
        } else {
            assert_eq!((after.leader, after.leader_epoch), (Some(before.replicas[0]), 1), "{after:?}");
        }
        let isr: Vec<u32> = before.replicas.iter().copied().filter(|r| *r != 1).collect();
        let mut got = after.isr.clone();
        got.sort_unstable();
        let mut want = isr;
        want.sort_unstable();
        assert_eq!(got, want, "{after:?}");
    }
    let before_restart = leadership(&m, "led");

    controller.stop().await;
    drop(rx);
    f.restart().await;
    for id in 2..=3 {
        f.main.register_node(node(id)).await.expect("register again");
    }
    assert_eq!(leadership(&f.main.metadata().borrow(), "led"), before_restart, "stored across the restart");
    let controller = fjord_coordinator::controller::spawn(f.main.clone(), 100);
    let mut rx = f.main.metadata();
    // The controller has nothing to change: wait until it is active, then compare.
    eventually(&mut rx, "a controller", |m| m.controller == Some(100)).await;
    let settled = fjord_coordinator::controller::plan(&f.main.metadata().borrow());
    assert!(settled.is_empty(), "nothing to elect after the restart: {settled:?}");
    assert_eq!(leadership(&f.main.metadata().borrow(), "led"), before_restart, "epochs kept");
    controller.stop().await;
}

/// Properties that only a ZooKeeper backend has: sessions, ephemeral znodes, server
/// restarts.
mod zk_only {
    use super::*;

    struct Quiet;

    impl zookeeper_async::Watcher for Quiet {
        fn handle(&self, _: zookeeper_async::WatchedEvent) {}
    }

    /// An ACL binding whose znode does not decode is not dropped silently (leaving out a
    /// deny would widen access): the snapshot says `acls_unreadable` — gateways then
    /// allow only super users — while the readable bindings stay, until it is removed.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn an_undecodable_acl_binding_makes_the_snapshot_say_so() {
        let (server, a, _b) = zk_fixture().await;
        a.create_acls(vec![super::acl("alice", "o", Permission::Allow)]).await.expect("acl");
        let raw =
            zookeeper_async::ZooKeeper::connect(&server.connect_string(), SESSION_TIMEOUT, Quiet).await.expect("raw");
        let path = format!("{CHROOT}/security/acls/garbage");
        let open = zookeeper_async::Acl::open_unsafe().clone();
        raw.create(&path, b"not json".to_vec(), open, zookeeper_async::CreateMode::Persistent).await.expect("create");
        let mut rx = a.metadata();
        let m = eventually(&mut rx, "the snapshot says an ACL is unreadable", |m| m.acls_unreadable).await;
        assert_eq!(m.acls.len(), 1, "the readable binding stays");
        raw.delete(&path, None).await.expect("delete");
        eventually(&mut rx, "readable again once it is gone", |m| !m.acls_unreadable).await;
        let _ = raw.close().await;
    }

    /// **A snapshot never names an unregistered ISR member that registered before the
    /// ISR named it.** A restarted follower registers, its leader sees it and adds it to
    /// the ISR (KIP-841's order); a snapshot read across both writes must not have the
    /// ISR member without its registration, or the controller takes a live, in-sync node
    /// out of the ISR as dead. Here a raw client does the two writes back to back, round
    /// after round, while another client's snapshots (each change re-read through its
    /// watches) are checked; with registrations read before partition states this fails.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_snapshot_has_every_isr_member_that_registered_first() {
        let (server, a, b) = zk_fixture().await;
        a.register_node(node(1)).await.expect("register");
        a.create_topic(topic("t", 1, 1)).await.expect("create");
        let raw =
            zookeeper_async::ZooKeeper::connect(&server.connect_string(), SESSION_TIMEOUT, Quiet).await.expect("raw");
        let state_path = format!("{CHROOT}/brokers/topics/t/partitions/0/state");
        let mut rx = b.metadata();
        const ROUNDS: u32 = 200;
        let last = vec![1, 100 + ROUNDS - 1];
        // Every snapshot b publishes, until the one with the last expansion.
        let checker = tokio::spawn(async move {
            let (mut seen, mut bad) = (0u32, Vec::new());
            while rx.changed().await.is_ok() {
                let m = rx.borrow_and_update().clone();
                seen += 1;
                for p in m.topics.values().flat_map(|t| &t.partitions) {
                    bad.extend(p.isr.iter().filter(|id| !m.nodes.contains_key(id)).map(|id| (*id, p.isr.clone())));
                }
                if m.topics.get("t").is_some_and(|t| t.partitions[0].isr == last) {
                    break;
                }
            }
            (seen, bad)
        });
        let open = zookeeper_async::Acl::open_unsafe().clone();
        for id in 100..100 + ROUNDS {
            let registration = serde_json::to_vec(&node(id)).expect("encode");
            raw.create(
                &format!("{CHROOT}/brokers/ids/{id}"),
                registration,
                open.clone(),
                zookeeper_async::CreateMode::Ephemeral,
            )
            .await
            .expect("register");
            let (bytes, _) = raw.get_data(&state_path, false).await.expect("state");
            let mut state: serde_json::Value = serde_json::from_slice(&bytes).expect("state JSON");
            state["isr"] = serde_json::json!([1, id]);
            raw.set_data(&state_path, serde_json::to_vec(&state).expect("encode"), None).await.expect("expand");
        }
        let (seen, bad) =
            tokio::time::timeout(DEADLINE, checker).await.expect("b sees the last expansion").expect("checker");
        assert!(seen >= 5, "the checker saw only {seen} snapshots over {ROUNDS} rounds");
        assert!(
            bad.is_empty(),
            "{} of {seen} snapshots had an ISR member without its registration: {:?}",
            bad.len(),
            &bad[..bad.len().min(5)]
        );
        let _ = raw.close().await;
    }

    /// **A topic left half-made frees its name; one that does not decode keeps its
    /// data.** A creator that lost ZooKeeper between claiming a topic's name (its topic
    /// znode) and writing its config and partition states left a topic that does not
    /// exist but whose name is taken — for the offsets topic, every group join then
    /// failed. The controller removes such a topic once it has stayed incomplete for its
    /// grace, and the name can be created again; a topic whose partition state does not
    /// decode is held, not incomplete, and its znodes stay (storage nodes keep its data).
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_half_created_topic_is_removed_by_the_controller_and_its_name_freed() {
        let (server, a, _b) = zk_fixture().await;
        let a: Arc<dyn Coordinator> = Arc::new(a);
        a.register_node(node(1)).await.expect("register");
        a.create_topic(topic("whole", 1, 1)).await.expect("create");
        let raw =
            zookeeper_async::ZooKeeper::connect(&server.connect_string(), SESSION_TIMEOUT, Quiet).await.expect("raw");
        let open = zookeeper_async::Acl::open_unsafe().clone();
        let persistent = zookeeper_async::CreateMode::Persistent;
        let create = |path: String, bytes: &[u8]| {
            let (raw, open, bytes) = (&raw, open.clone(), bytes.to_vec());
            async move { raw.create(&path, bytes, open, persistent).await.unwrap_or_else(|e| panic!("{path}: {e:?}")) }
        };
        // Undecodable: the topic and config of a real one, a state that is not JSON.
        let (whole_config, _) = raw.get_data(&format!("{CHROOT}/config/topics/whole"), false).await.expect("config");
        let claim = br#"{"topic_id":"bad-id","partitions":{"0":[1]}}"#;
        create(format!("{CHROOT}/brokers/topics/bad"), claim).await;
        create(format!("{CHROOT}/config/topics/bad"), &whole_config).await;
        create(format!("{CHROOT}/brokers/topics/bad/partitions"), b"").await;
        create(format!("{CHROOT}/brokers/topics/bad/partitions/0"), b"").await;
        create(format!("{CHROOT}/brokers/topics/bad/partitions/0/state"), b"not json").await;
        // Led once, then lost its config: data may exist, so it is kept too.
        create(format!("{CHROOT}/brokers/topics/led"), br#"{"topic_id":"led-id","partitions":{"0":[1]}}"#).await;
        create(format!("{CHROOT}/brokers/topics/led/partitions"), b"").await;
        create(format!("{CHROOT}/brokers/topics/led/partitions/0"), b"").await;
        let led_state = br#"{"leader":1,"leader_epoch":3,"isr":[1],"controller_epoch":1}"#;
        create(format!("{CHROOT}/brokers/topics/led/partitions/0/state"), led_state).await;
        // Half-made: claimed, nothing else written.
        create(format!("{CHROOT}/brokers/topics/half"), br#"{"topic_id":"half-id","partitions":{"0":[1]}}"#).await;

        let mut rx = a.metadata();
        let m = eventually(&mut rx, "the three topics held", |m| m.held_topic_ids.len() == 3).await;
        let incomplete: Vec<_> = m.incomplete_topics.iter().map(|(n, id)| (n.as_str(), id.as_str())).collect();
        assert_eq!(incomplete, [("half", "half-id")], "neither the undecodable nor the led topic is incomplete");
        assert!(["half", "bad", "led"].iter().all(|t| m.topic(t).is_none()), "none is a topic");
        let taken = a.create_topic(topic("half", 1, 1)).await.expect_err("the name is taken until it is removed");
        assert_eq!(taken.code, ErrorCode::TopicAlreadyExists);

        let grace = Duration::from_secs(3);
        let started = std::time::Instant::now();
        let controller = fjord_coordinator::controller::spawn_with_grace(a.clone(), 100, grace);
        let m = eventually(&mut rx, "the half-made topic removed", |m| !m.incomplete_topics.contains_key("half")).await;
        assert!(started.elapsed() >= grace, "removed after {:?}, before the grace", started.elapsed());
        assert!(m.held_topic_ids.contains("bad-id") && m.held_topic_ids.contains("led-id"), "the others still held");
        let half = raw.exists(&format!("{CHROOT}/brokers/topics/half"), false).await.expect("exists");
        assert!(half.is_none(), "its topic znode is gone");
        let kept =
            ["brokers/topics/bad/partitions/0/state", "config/topics/bad", "brokers/topics/led/partitions/0/state"];
        for path in kept {
            let found = raw.exists(&format!("{CHROOT}/{path}"), false).await.expect("exists");
            assert!(found.is_some(), "{path} is kept");
        }
        let created = a.create_topic(topic("half", 2, 1)).await.expect("the name is free again");
        assert_ne!(created.topic_id, "half-id");
        let m = eventually(&mut rx, "the new topic whole and led", |m| {
            m.topic("half").is_some_and(|t| t.partitions.len() == 2 && t.partitions.iter().all(|p| p.leader.is_some()))
        })
        .await;
        assert!(m.topic("whole").is_some(), "a whole topic is left alone");
        controller.stop().await;
        let _ = raw.close().await;
    }

    async fn zk_fixture() -> (ZkServer, ZkCoordinator, ZkCoordinator) {
        let server = ZkServer::start();
        let a = connect(&server.connect_string(), SESSION_TIMEOUT).await;
        let b = connect(&server.connect_string(), SESSION_TIMEOUT).await;
        (server, a, b)
    }

    /// A node's and a gateway's registration lasts as long as the registering session:
    /// closing the coordinator removes them at once, dropping it removes them too.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn registrations_vanish_with_their_session() {
        let (server, a, b) = zk_fixture().await;
        a.register_node(node(5)).await.expect("register");
        a.register_gateway(GatewayInfo { id: "gw-a".into(), endpoint: "x:1".into() }).await.expect("gateway");
        let mut rx = b.metadata();
        eventually(&mut rx, "b sees node 5 and gw-a", |m| m.nodes.contains_key(&5) && m.gateways.contains_key("gw-a"))
            .await;
        a.close().await;
        eventually(&mut rx, "node 5 and gw-a gone after close", |m| m.nodes.is_empty() && m.gateways.is_empty()).await;

        let c = connect(&server.connect_string(), SESSION_TIMEOUT).await;
        c.register_node(node(6)).await.expect("register");
        eventually(&mut rx, "b sees node 6", |m| m.nodes.contains_key(&6)).await;
        drop(c);
        eventually(&mut rx, "node 6 gone after drop", |m| !m.nodes.contains_key(&6)).await;
    }

    /// When the controller's session ends, another candidate wins with a higher epoch
    /// (the fencing token), and every client sees the new controller.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn controller_moves_on_with_a_higher_epoch_when_its_session_ends() {
        let (_server, a, b) = zk_fixture().await;
        let first = a.campaign_controller(1).await.expect("campaign").expect("a wins");
        assert_eq!(b.campaign_controller(2).await.expect("campaign"), None);
        a.close().await;
        let mut rx = b.metadata();
        eventually(&mut rx, "controller gone", |m| m.controller.is_none()).await;
        let second = b.campaign_controller(2).await.expect("campaign").expect("b wins now");
        assert!(second > first, "epoch {second} must exceed {first}");
        let m = b.metadata().borrow().clone();
        assert_eq!((m.controller, m.controller_epoch), (Some(2), second));
    }

    /// A zombie controller — one whose session ended while it still believes it
    /// controls (paused past the session timeout, say) — cannot write its plans once
    /// another node has won a newer epoch: `write_plan` under the old epoch writes
    /// nothing, on any client.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_deposed_controllers_plan_is_refused() {
        let (server, a, b) = zk_fixture().await;
        b.register_node(node(1)).await.expect("register");
        b.create_topic(topic("t", 1, 1)).await.expect("create");
        let old = a.campaign_controller(1).await.expect("campaign").expect("a wins");
        a.close().await;
        let mut rx = b.metadata();
        eventually(&mut rx, "controller gone", |m| m.controller.is_none()).await;
        let new = b.campaign_controller(2).await.expect("campaign").expect("b wins");
        assert!(new > old);
        // The zombie's view: a client that still holds the old snapshot's epoch.
        let zombie = connect(&server.connect_string(), SESSION_TIMEOUT).await;
        let before = b.metadata().borrow().topics["t"].partitions[0].clone();
        let state = PartitionState { leader: Some(1), leader_epoch: 1, isr: vec![1], ..before.clone() };
        let e = zombie.write_plan(old, vec![("t".into(), state.clone())]).await.expect_err("fenced");
        assert_eq!(e.code, ErrorCode::StaleVersion, "{e}");
        assert_eq!(b.metadata().borrow().topics["t"].partitions[0], before, "nothing written");
        let written = b.write_plan(new, vec![("t".into(), state)]).await.expect("the new controller writes");
        assert!(written[0].is_ok(), "{written:?}");
    }

    /// Topics, config and registrations survive a ZooKeeper crash and restart; while
    /// the server is down writes fail with a retriable error instead of hanging; after
    /// it returns, changes made by others reach an existing client again (its watches
    /// were re-armed on the new connection).
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn state_survives_a_zookeeper_restart_and_watches_are_re_armed() {
        let (mut server, a, b) = zk_fixture().await;
        a.register_node(node(1)).await.expect("register");
        let config = TopicConfig { retention_ms: 4321, ..TopicConfig::default() };
        let created =
            a.create_topic(NewTopic { config: config.clone(), ..topic("durable", 2, 1) }).await.expect("create");

        assert_eq!(
            a.session_stats(),
            Some(SessionStats { connected: true, disconnects: 0, expirations: 0, disconnected_since: None })
        );
        server.stop();
        let down = a.create_topic(topic("while-down", 1, 1)).await.expect_err("ZooKeeper is down");
        assert!(down.retriable(), "connection trouble is retriable: {down}");
        until("a counts the lost connection", || {
            a.session_stats().is_some_and(|s| !s.connected && s.disconnects == 1 && s.disconnected_since.is_some())
        })
        .await;
        server.start_again();

        let fresh = connect(&server.connect_string(), SESSION_TIMEOUT).await;
        let m = fresh.metadata().borrow().clone();
        assert_eq!(m.topics["durable"].topic_id, created.topic_id);
        assert_eq!(m.topics["durable"].config, config);
        assert!(!m.topics.contains_key("while-down"));

        let mut rx = a.metadata();
        eventually(&mut rx, "a's node registration back or kept", |m| m.nodes.contains_key(&1)).await;
        until("a connected again", || a.session_stats().is_some_and(|s| s.connected && s.disconnected_since.is_none()))
            .await;
        // b's client may still be reconnecting: a retriable answer is retried, as a
        // client would, until the deadline.
        let deadline = tokio::time::Instant::now() + DEADLINE;
        let mut retried = false;
        loop {
            match b.create_topic(topic("after-restart", 1, 1)).await {
                Ok(_) => break,
                // A lost answer to an earlier attempt that did create it.
                Err(e) if retried && e.code == ErrorCode::TopicAlreadyExists => break,
                Err(e) if e.retriable() && tokio::time::Instant::now() < deadline => {
                    retried = true;
                    tokio::time::sleep(Duration::from_millis(50)).await
                }
                Err(e) => panic!("create after restart: {e}"),
            }
        }
        eventually(&mut rx, "a sees a topic created after the restart", |m| m.topics.contains_key("after-restart"))
            .await;
    }

    /// After a network partition longer than the session timeout, the session expires
    /// (its ephemeral znodes vanish for everyone else); when the network heals, the
    /// coordinator opens a new session, registers its node and gateway again, re-arms
    /// its watches and accepts writes. (zookeeper-async does not revive an expired
    /// session by itself: ARCHITECTURE.md, "ZooKeeper layout".)
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn an_expired_session_is_replaced_with_registrations_and_watches_restored() {
        let server = ZkServer::start();
        let proxy = ZkProxy::start(&server.connect_string()).await;
        let short = Duration::from_secs(2);
        let a = connect(&proxy.connect_string(), short).await;
        let b = connect(&server.connect_string(), SESSION_TIMEOUT).await;
        a.register_node(node(7)).await.expect("register");
        a.register_gateway(GatewayInfo { id: "gw-7".into(), endpoint: "x:7".into() }).await.expect("gateway");
        let mut seen_by_b = b.metadata();
        eventually(&mut seen_by_b, "b sees node 7", |m| m.nodes.contains_key(&7)).await;

        proxy.cut();
        eventually(&mut seen_by_b, "a's session expired: node 7 and gw-7 gone", |m| {
            !m.nodes.contains_key(&7) && !m.gateways.contains_key("gw-7")
        })
        .await;
        until("a counts the lost connection", || a.session_stats().is_some_and(|s| !s.connected && s.disconnects == 1))
            .await;
        proxy.heal();
        eventually(&mut seen_by_b, "node 7 and gw-7 registered again", |m| {
            m.nodes.contains_key(&7) && m.gateways.contains_key("gw-7")
        })
        .await;
        until("a's expired session counted and replaced", || {
            a.session_stats().is_some_and(|s| s.connected && s.expirations == 1)
        })
        .await;

        b.create_topic(topic("after-expiry", 1, 1)).await.expect("create");
        let mut seen_by_a = a.metadata();
        eventually(&mut seen_by_a, "a sees b's topic", |m| m.topics.contains_key("after-expiry")).await;
        a.create_topic(topic("from-a", 1, 1)).await.expect("a writes on its new session");
        eventually(&mut seen_by_b, "b sees a's topic", |m| m.topics.contains_key("from-a")).await;
    }
}
