//! Fault tests against a real cluster — ZooKeeper, 3 storage nodes and gateways as
//! separate processes — each stating in its doc comment the property it proves. Every
//! wait is a condition polled against a deadline; the only deliberate pauses are the
//! faults themselves (a process kept stopped for a while).

mod common;

use common::cluster::{Cluster, Produced, IMBALANCE_CHECK_INTERVAL_S, LAG_TIME_MAX_MS, SESSION_TIMEOUT_MS};
use fjord_client::{Acks, PartitionDescription};
use serde_json::json;
use std::collections::BTreeSet;
use std::time::{Duration, Instant};

/// The harness's `FJORD_INTERNAL__CONTROLLED_SHUTDOWN_TIMEOUT_MS`: how long a SIGTERMed
/// node waits for its leaderships to move before it stops anyway.
const CONTROLLED_SHUTDOWN_TIMEOUT: Duration = Duration::from_millis(5_000);

/// How long after losing a node (kill -9) the cluster may take to notice it: the
/// ZooKeeper session timeout, twice over for the server's expiry tick, plus a margin.
fn node_loss_deadline() -> Duration {
    Duration::from_millis(2 * SESSION_TIMEOUT_MS) + Duration::from_secs(5)
}

/// Produces `{"i": i}` to `topic`/`partition` through gateway `g`.
async fn produce(c: &Cluster, g: usize, topic: &str, partition: u32, acks: Acks, i: u64) -> Produced {
    c.produce(g, topic, partition, acks, &json!({"i": i})).await
}

/// Produces `{"i": i}` with `acks=all` and asserts it was acknowledged; returns its offset.
async fn produce_ok(c: &Cluster, g: usize, topic: &str, partition: u32, i: u64) -> u64 {
    let r = produce(c, g, topic, partition, Acks::All, i).await;
    r.offset().unwrap_or_else(|| panic!("acks=all produce of {i} to {topic}/{partition}: {r:?}"))
}

/// Retries an `acks=all` produce of `{"i": i}` until it is acknowledged, failing after
/// `within`; returns how long it took.
async fn produce_until_ok(c: &Cluster, g: usize, topic: &str, partition: u32, i: u64, within: Duration) -> Duration {
    let start = Instant::now();
    loop {
        let r = produce(c, g, topic, partition, Acks::All, i).await;
        if r.offset().is_some() {
            return start.elapsed();
        }
        assert!(
            start.elapsed() < within,
            "acks=all writes to {topic}/{partition} did not succeed within {within:?}; last answer {r:?}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// Every record of a partition up to its high watermark, as `(offset, i)`.
async fn read_all(c: &Cluster, g: usize, topic: &str, partition: u32) -> Option<Vec<(u64, u64)>> {
    c.read_all(g, topic, partition).await?.into_iter().map(|(o, v)| Some((o, v["i"].as_u64()?))).collect()
}

/// Asserts that `topic`/`partition` holds exactly `expected` (the `i` of each record),
/// in order, at dense offsets from 0, waiting (bounded) for the high watermark to reach
/// them, through every gateway.
async fn assert_log(c: &Cluster, topic: &str, partition: u32, expected: &[u64]) {
    for g in 0..c.gateways.len() {
        c.wait_until(
            &format!("{topic}/{partition} holds {} records via gateway {g}", expected.len()),
            Duration::from_secs(15),
            |c| async move { read_all(c, g, topic, partition).await.is_some_and(|r| r.len() >= expected.len()) },
        )
        .await;
        let got = read_all(c, g, topic, partition).await.expect("read back");
        let values: Vec<u64> = got.iter().map(|(_, i)| *i).collect();
        assert_eq!(values, expected, "{topic}/{partition} through gateway {g}");
        let offsets: Vec<u64> = got.iter().map(|(o, _)| *o).collect();
        assert_eq!(offsets, (0..expected.len() as u64).collect::<Vec<_>>(), "{topic}/{partition}: dense offsets");
    }
}

/// One partition's description (leader, leader_epoch, replicas, isr, ...).
async fn partition(c: &Cluster, topic: &str, p: usize) -> Option<PartitionDescription> {
    c.describe(topic).await?.partitions.get(p).cloned()
}

/// The controller and the registered node ids, per gateway `g`.
async fn cluster_view(c: &Cluster, g: usize) -> Option<(Option<u32>, BTreeSet<u32>)> {
    let v = c.api(g).cluster().await.ok()?;
    Some((v.controller, v.nodes.iter().map(|n| n.id).collect()))
}

async fn controller(c: &Cluster) -> Option<u32> {
    cluster_view(c, 0).await?.0
}

/// A partition's `(high_watermark, log_end_offset)` from its leader.
async fn offsets(c: &Cluster, topic: &str, p: u32) -> Option<(u64, u64)> {
    let o = c.api(0).offsets(topic, p, None).await.ok()?;
    Some((o.high_watermark, o.log_end_offset))
}

/// Whether every partition of `topic` has a leader other than `node`.
async fn led_without(c: &Cluster, topic: &str, node: u32) -> bool {
    c.describe(topic).await.is_some_and(|t| t.partitions.iter().all(|p| p.leader.is_some_and(|l| l != node)))
}

/// **Follower pause.** A follower that stops fetching (SIGSTOP) leaves the ISR after about
/// `replica.lag.time.max.ms`, and `acks=all` writes keep succeeding meanwhile (the ISR
/// still meets `min.insync.replicas`=2). Once resumed (SIGCONT) it catches up and rejoins
/// the ISR, and its log is the leader's: made the only live replica, it serves every
/// acknowledged record, in order, at the same offsets.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn paused_follower_leaves_the_isr_and_rejoins_after_catching_up() {
    let mut c = Cluster::start(3, 2).await;
    c.create_topic("paused", 1, 3, json!({"min.insync.replicas": 2})).await;
    c.wait_for_isr("paused", 3, Duration::from_secs(30)).await;
    let mut expected = Vec::new();
    for i in 0..10 {
        produce_ok(&c, (i % 2) as usize, "paused", 0, i).await;
        expected.push(i);
    }

    // Pause a follower that is not the controller, so that only the leader's lag check
    // (not a controller reacting to a lost session) can take it out of the ISR first.
    let leader = c.leader("paused", 0).await.expect("leader");
    let ctl = controller(&c).await;
    let replicas = partition(&c, "paused", 0).await.expect("describe").replicas;
    let follower = replicas.iter().copied().find(|r| *r != leader && Some(*r) != ctl).expect("a plain follower");
    c.node(follower as usize).pause();
    let paused_at = Instant::now();

    // Writes go on: the first ones wait until the ISR shrinks, none fails.
    let mut i = 10;
    let mut shrunk_after = None;
    let shrink_deadline = Duration::from_millis(4 * LAG_TIME_MAX_MS);
    while shrunk_after.is_none() {
        produce_ok(&c, (i % 2) as usize, "paused", 0, i).await;
        expected.push(i);
        i += 1;
        let isr = partition(&c, "paused", 0).await.expect("describe").isr;
        if !isr.contains(&follower) {
            shrunk_after = Some(paused_at.elapsed());
        }
        assert!(
            paused_at.elapsed() < shrink_deadline,
            "paused follower {follower} still in the ISR {isr:?} after {shrink_deadline:?}"
        );
    }
    let shrunk_after = shrunk_after.expect("shrunk");
    eprintln!("paused follower {follower} left the ISR after {shrunk_after:?} (lag time {LAG_TIME_MAX_MS} ms)");
    assert!(shrunk_after >= Duration::from_millis(LAG_TIME_MAX_MS / 2), "removed too early: {shrunk_after:?}");
    for _ in 0..10 {
        produce_ok(&c, (i % 2) as usize, "paused", 0, i).await;
        expected.push(i);
        i += 1;
    }

    c.node(follower as usize).resume();
    c.wait_until(&format!("node {follower} rejoins the ISR"), Duration::from_secs(30), |c| async move {
        partition(c, "paused", 0).await.is_some_and(|p| p.isr.contains(&follower) && p.isr.len() == 3)
    })
    .await;
    for _ in 0..5 {
        produce_ok(&c, (i % 2) as usize, "paused", 0, i).await;
        expected.push(i);
        i += 1;
    }

    // Its log matches: kill the two others, so it is the only live ISR member and leads.
    for other in replicas.iter().copied().filter(|r| *r != follower) {
        c.node(other as usize).kill9();
    }
    c.wait_until(&format!("node {follower} leads alone"), node_loss_deadline() * 2, |c| async move {
        partition(c, "paused", 0).await.is_some_and(|p| p.leader == Some(follower))
    })
    .await;
    assert_log(&c, "paused", 0, &expected).await;
}

/// **Controller kill.** When the controller is killed (kill -9), another live node is
/// elected controller within about two session timeouts, and that new controller handles
/// the next node loss: the partition whose leader is killed next gets a new leader from
/// its ISR (epoch bumped) and takes `acks=all` writes again within 10 s of the kill.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_new_controller_is_elected_and_handles_the_next_node_loss() {
    let mut c = Cluster::start(3, 2).await;
    c.create_topic("ctl", 3, 3, json!({"min.insync.replicas": 2})).await;
    c.wait_for_isr("ctl", 3, Duration::from_secs(30)).await;
    let mut expected: Vec<Vec<u64>> = vec![Vec::new(); 3];
    for i in 0..9 {
        produce_ok(&c, 0, "ctl", (i % 3) as u32, i).await;
        expected[(i % 3) as usize].push(i);
    }

    let old = controller(&c).await.expect("a controller");
    c.node(old as usize).kill9();
    let killed_at = Instant::now();
    c.wait_until("a different live node is the controller", node_loss_deadline(), |c| async move {
        cluster_view(c, 0)
            .await
            .is_some_and(|(ctl, nodes)| ctl.is_some_and(|n| n != old && nodes.contains(&n)) && !nodes.contains(&old))
    })
    .await;
    let new = controller(&c).await.expect("new controller");
    eprintln!("controller {old} killed; node {new} took over after {:?}", killed_at.elapsed());

    // The new controller handles the loss of the old one: leaders move off it.
    c.wait_until("no partition is led by the dead controller", node_loss_deadline(), |c| led_without(c, "ctl", old))
        .await;

    // Bring the old controller back so a second loss still leaves two in-sync replicas.
    c.restart_node(old as usize);
    c.wait_for_isr("ctl", 3, Duration::from_secs(30)).await;
    assert_eq!(controller(&c).await, Some(new), "the returning node does not take the controller role back");

    // Kill a leader that is not the new controller.
    let mut victim = None;
    c.wait_until("a partition led by a node other than the controller", Duration::from_secs(30), |c| async move {
        c.describe("ctl").await.is_some_and(|t| t.partitions.iter().any(|p| p.leader.is_some_and(|l| l != new)))
    })
    .await;
    let t = c.describe("ctl").await.expect("describe");
    for p in &t.partitions {
        if let Some(l) = p.leader.filter(|l| *l != new) {
            victim = Some((p.partition, l, p.leader_epoch));
            break;
        }
    }
    let (p, dead_leader, epoch) = victim.expect("victim");
    c.node(dead_leader as usize).kill9();
    let took = produce_until_ok(&c, 1, "ctl", p, 100, Duration::from_secs(10)).await;
    expected[p as usize].push(100);
    eprintln!("leader {dead_leader} of ctl/{p} killed; writes succeeded again after {took:?}");

    let after = partition(&c, "ctl", p as usize).await.expect("describe");
    let new_leader = after.leader.expect("a new leader");
    assert_ne!(new_leader, dead_leader);
    assert!(after.leader_epoch > epoch, "epoch bumped: {after:?}");
    assert_eq!(controller(&c).await, Some(new), "the same controller handled it");
    for (p, exp) in expected.iter().enumerate() {
        assert_log(&c, "ctl", p as u32, exp).await;
    }
}

/// Creates `name` (1 partition, RF=3, `min.insync.replicas`=2) through gateway `g`,
/// retrying retriable errors until `within`. A `topic_already_exists` after a failed
/// attempt means that attempt did create it.
async fn create_topic_until_ok(c: &Cluster, g: usize, name: &str, within: Duration) {
    let start = Instant::now();
    let mut attempts = 0;
    let spec = fjord_client::NewTopic {
        name: name.into(),
        partitions: Some(1),
        replication_factor: Some(3),
        config: json!({"min.insync.replicas": 2}).as_object().cloned().unwrap_or_default(),
    };
    loop {
        attempts += 1;
        let created = tokio::time::timeout(Duration::from_secs(10), c.api(g).create_topic(&spec)).await;
        let e = match created {
            Ok(Ok(_)) => return,
            Ok(Err(e)) if attempts > 1 && e.code() == Some("topic_already_exists") => return,
            Ok(Err(e)) => e,
            Err(_) => fjord_client::Error::Transport("no answer within 10 s".into()),
        };
        assert!(e.retriable(), "creating {name} via gateway {g}: {e}");
        assert!(start.elapsed() < within, "could not create {name} via gateway {g} within {within:?}: {e}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// **ZooKeeper restart.** When ZooKeeper crashes, stays down for longer than the session
/// timeout, and starts again, storage nodes and gateways reconnect and watch again:
/// through every gateway, topics can be created (gateway → ZooKeeper writes) and are
/// picked up by the controller and the nodes (watches), `acks=all` produce and consume
/// work on old and new topics, and all three nodes are listed. The nodes' own ZooKeeper
/// work resumes too: a follower killed afterwards leaves the ISR (controller watching
/// `/brokers/ids`) and, restarted, re-registers and rejoins it (leader's ISR write).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn nodes_and_gateways_recover_from_a_zookeeper_restart() {
    let mut c = Cluster::start(3, 2).await;
    c.create_topic("zk", 1, 3, json!({"min.insync.replicas": 2})).await;
    c.wait_for_isr("zk", 3, Duration::from_secs(30)).await;
    let mut expected = Vec::new();
    for i in 0..5 {
        produce_ok(&c, (i % 2) as usize, "zk", 0, i).await;
        expected.push(i);
    }

    c.zk.stop();
    // The fault itself: ZooKeeper stays down past the session timeout.
    tokio::time::sleep(Duration::from_millis(2 * SESSION_TIMEOUT_MS)).await;
    c.zk.start_again();

    let deadline = Duration::from_secs(30);
    // Gateways talk to ZooKeeper again (cached metadata alone cannot create a topic).
    for g in 0..2 {
        create_topic_until_ok(&c, g, &format!("after{g}"), deadline).await;
    }
    for t in ["after0", "after1", "zk"] {
        c.wait_for_isr(t, 3, deadline).await;
    }
    for g in 0..2 {
        produce_until_ok(&c, g, "zk", 0, 5 + g as u64, deadline).await;
        expected.push(5 + g as u64);
        for t in ["after0", "after1"] {
            produce_until_ok(&c, g, t, 0, g as u64, deadline).await;
        }
    }
    assert_log(&c, "zk", 0, &expected).await;
    for t in ["after0", "after1"] {
        assert_log(&c, t, 0, &[0, 1]).await;
    }
    for g in 0..2 {
        c.wait_until(&format!("gateway {g} lists all 3 nodes and a controller"), deadline, |c| async move {
            cluster_view(c, g).await.is_some_and(|(ctl, nodes)| ctl.is_some() && nodes == BTreeSet::from([1, 2, 3]))
        })
        .await;
    }

    // The nodes' coordination works again: a node loss and return is handled.
    let leader = c.leader("zk", 0).await.expect("leader");
    let ctl = controller(&c).await.expect("controller");
    let victim = (1..=3u32).find(|n| *n != leader && *n != ctl).expect("a plain follower");
    c.node(victim as usize).kill9();
    c.wait_for_isr("zk", 2, node_loss_deadline()).await;
    c.restart_node(victim as usize);
    c.wait_for_isr("zk", 3, deadline).await;
    produce_until_ok(&c, 0, "zk", 0, 7, deadline).await;
    expected.push(7);
    assert_log(&c, "zk", 0, &expected).await;
}

/// **min.insync.replicas.** With two of three replicas down and the ISR shrunk to the
/// leader alone, an `acks=all` produce fails at once with the retriable
/// `not_enough_replicas` (503) and appends nothing (high watermark and log end offset
/// unchanged), while `acks=1` still succeeds.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn acks_all_is_refused_below_min_insync_replicas_and_writes_nothing() {
    let mut c = Cluster::start(3, 1).await;
    c.create_topic("minisr", 1, 3, json!({"min.insync.replicas": 2})).await;
    c.wait_for_isr("minisr", 3, Duration::from_secs(30)).await;
    for i in 0..5 {
        produce_ok(&c, 0, "minisr", 0, i).await;
    }

    let leader = c.leader("minisr", 0).await.expect("leader");
    for other in (1..=3u32).filter(|n| *n != leader) {
        c.node(other as usize).kill9();
    }
    c.wait_until("the ISR has shrunk to the leader alone", node_loss_deadline() * 2, |c| async move {
        partition(c, "minisr", 0).await.is_some_and(|p| p.leader == Some(leader) && p.isr == vec![leader])
    })
    .await;
    let before = offsets(&c, "minisr", 0).await.expect("offsets");
    assert_eq!(before, (5, 5), "(high watermark, log end offset) before");

    match produce(&c, 0, "minisr", 0, Acks::All, 5).await {
        Produced::Failed(fjord_client::Error::Api { status, code, retriable, .. }) => {
            assert_eq!((status, code.as_str(), retriable), (503, "not_enough_replicas", true));
        }
        other => panic!("acks=all below min.insync.replicas: {other:?}"),
    }
    assert_eq!(offsets(&c, "minisr", 0).await, Some(before), "nothing was appended");

    let r = produce(&c, 0, "minisr", 0, Acks::Leader, 6).await;
    assert_eq!(r.offset(), Some(5), "{r:?}");
    assert_eq!(offsets(&c, "minisr", 0).await, Some((6, 6)));
    assert_log(&c, "minisr", 0, &[0, 1, 2, 3, 4, 6]).await;
}

/// Creates `spread` (3 partitions, RF=3, `min.insync.replicas` 2) and waits until every
/// partition is led by its preferred replica with a full ISR.
async fn create_spread(c: &Cluster) {
    c.create_topic("spread", 3, 3, json!({"min.insync.replicas": 2})).await;
    c.wait_for_isr("spread", 3, Duration::from_secs(30)).await;
    c.wait_until("every partition is led by its preferred replica", Duration::from_secs(10), |c| {
        preferred_everywhere(c)
    })
    .await;
}

/// A node that is not the controller (its leadership moves sooner when it dies).
async fn not_the_controller(c: &Cluster) -> u32 {
    let ctl = controller(c).await.expect("controller");
    (1..=3u32).find(|n| *n != ctl).expect("victim")
}

/// Kills `victim`, waits until it leads nothing of `spread`, writes record `p` to each
/// partition `p` meanwhile, and restarts it.
async fn bounce(c: &mut Cluster, victim: u32) {
    c.node(victim as usize).kill9();
    c.wait_until(&format!("node {victim} leads nothing"), node_loss_deadline(), |c| led_without(c, "spread", victim))
        .await;
    for p in 0..3 {
        produce_until_ok(c, 0, "spread", p, u64::from(p), Duration::from_secs(10)).await;
    }
    c.restart_node(victim as usize);
}

/// **Asked-for election.** With the controller's automatic check off
/// (`controller.auto_leader_rebalance_enable = false`), leadership that moved off a node
/// stays off once the node is back in sync — observed over several check intervals —
/// and `POST /v1/elections` through a gateway (`fjord_client::elect_preferred_leaders`)
/// hands it back: `elected` for the partition the node is preferred for, with its leader
/// epoch bumped, `already_preferred` for the others, and every acknowledged record still
/// there and writable after. The controller's `preferred_replica_imbalance_count` metric
/// counts the one partition off its preferred leader before, none after.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_asked_for_election_restores_the_preferred_leader_when_the_automatic_check_is_off() {
    let mut c = Cluster::start_with_env(3, 1, &[("FJORD_CONTROLLER__AUTO_LEADER_REBALANCE_ENABLE", "false")]).await;
    create_spread(&c).await;
    let victim = not_the_controller(&c).await;
    let before = c.describe("spread").await.expect("describe");
    let moved = before.partitions.iter().find(|p| p.replicas[0] == victim).expect("victim preferred somewhere");
    let (moved_partition, epoch_before) = (moved.partition, moved.leader_epoch);
    bounce(&mut c, victim).await;
    c.wait_for_isr("spread", 3, Duration::from_secs(30)).await;
    // Three check intervals with the node in sync: an automatic election would have run.
    let window = Duration::from_secs(3 * IMBALANCE_CHECK_INTERVAL_S);
    let until = tokio::time::Instant::now() + window;
    while tokio::time::Instant::now() < until {
        assert_ne!(c.leader("spread", moved_partition as usize).await, Some(victim), "moved back unasked");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }

    let ctl_port = c.nodes[controller(&c).await.expect("controller") as usize - 1].port;
    let imbalance = "fjord_controller_preferred_replica_imbalance_count";
    let t = scrape(&c, ctl_port).await.expect("controller metrics");
    assert_eq!(sample(&t, imbalance), Some(1.0), "one partition off its preferred leader: {t}");

    let asked: Vec<fjord_client::PartitionRef> =
        (0..3).map(|partition| fjord_client::PartitionRef { topic: "spread".into(), partition }).collect();
    let r = c.api(0).elect_preferred_leaders(Some(&asked), Some(20_000)).await.expect("elect");
    assert_eq!(r.results.len(), 3, "{r:?}");
    for x in &r.results {
        let expected = if x.partition == moved_partition { "elected" } else { "already_preferred" };
        assert_eq!(x.outcome, expected, "{r:?}");
        assert_eq!(x.leader, x.preferred, "{r:?}");
    }
    let after = c.describe("spread").await.expect("describe");
    let p = &after.partitions[moved_partition as usize];
    assert_eq!(p.leader, Some(victim));
    assert!(p.leader_epoch >= epoch_before + 2, "one bump to move away, one to come back: {p:?}");
    assert!(preferred_everywhere(&c).await);
    c.wait_until("the controller reports no imbalance", Duration::from_secs(10), |c| async move {
        scrape(c, ctl_port).await.is_some_and(|t| sample(&t, imbalance) == Some(0.0))
    })
    .await;
    for p in 0..3 {
        produce_until_ok(&c, 0, "spread", p, 10 + u64::from(p), Duration::from_secs(10)).await;
        assert_log(&c, "spread", p, &[u64::from(p), 10 + u64::from(p)]).await;
    }
}

/// Every partition of `spread` is led by its preferred replica with a full ISR.
async fn preferred_everywhere(c: &Cluster) -> bool {
    c.describe("spread").await.is_some_and(|t| {
        t.partitions.iter().all(|p| p.leader.is_some() && p.leader == p.replicas.first().copied() && p.isr.len() == 3)
    })
}

/// **Rebalance.** Leaders of a 3-partition, RF=3 topic start out on their preferred
/// replicas, one per node. When a node dies its leaderships move to other ISR members;
/// once it is back and in sync again, the controller's leader-imbalance check (every
/// [`IMBALANCE_CHECK_INTERVAL_S`] here; the node leads none of the partitions it is
/// preferred for, 100% > the default 10%) hands each partition back to its preferred
/// replica (the first of `replicas`), so leaders are spread over all three nodes again,
/// and every partition takes `acks=all` writes.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn preferred_leaders_are_restored_after_a_node_returns() {
    let mut c = Cluster::start(3, 2).await;
    create_spread(&c).await;
    let leaders = |t: &fjord_client::TopicDescription| -> BTreeSet<u32> {
        t.partitions.iter().filter_map(|p| p.leader).collect()
    };
    assert_eq!(
        leaders(&c.describe("spread").await.expect("describe")),
        BTreeSet::from([1, 2, 3]),
        "spread at creation"
    );

    let victim = not_the_controller(&c).await;
    bounce(&mut c, victim).await;
    c.wait_until(
        "every partition is led by its preferred replica again",
        Duration::from_secs(30),
        preferred_everywhere,
    )
    .await;
    assert_eq!(leaders(&c.describe("spread").await.expect("describe")), BTreeSet::from([1, 2, 3]), "spread again");
    for p in 0..3 {
        produce_until_ok(&c, 1, "spread", p, 10 + u64::from(p), Duration::from_secs(10)).await;
        assert_log(&c, "spread", p, &[u64::from(p), 10 + u64::from(p)]).await;
    }
}

/// **Controlled shutdown.** A node sent SIGTERM hands its leaderships to other in-sync
/// replicas before it exits — it exits well within the controlled-shutdown timeout, and
/// once it has, no partition is led by it — so `acks=all` writes to the partitions it led
/// succeed right away, without waiting for its ZooKeeper session to time out.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigterm_moves_leaderships_before_the_node_exits() {
    let mut c = Cluster::start(3, 2).await;
    c.create_topic("cs", 3, 3, json!({"min.insync.replicas": 2})).await;
    c.wait_for_isr("cs", 3, Duration::from_secs(30)).await;
    for p in 0..3 {
        produce_ok(&c, 0, "cs", p, u64::from(p)).await;
    }

    let ctl = controller(&c).await.expect("controller");
    let t = c.describe("cs").await.expect("describe");
    let victim =
        t.partitions.iter().filter_map(|p| p.leader).find(|l| *l != ctl).expect("a leader that is not the controller");
    let led: Vec<u32> = t.partitions.iter().filter(|p| p.leader == Some(victim)).map(|p| p.partition).collect();

    let started = Instant::now();
    let exited = tokio::task::block_in_place(|| c.node(victim as usize).terminate(Duration::from_secs(15)));
    let took = started.elapsed();
    eprintln!("node {victim} (leading {led:?}) exited {took:?} after SIGTERM");
    assert!(exited, "node {victim} did not exit on SIGTERM");
    assert!(
        took < CONTROLLED_SHUTDOWN_TIMEOUT,
        "node {victim} took {took:?} to stop: its leaderships were not handed over (it waited out the timeout)"
    );

    // Its leaderships had moved in ZooKeeper before it exited; allow the gateway's watch
    // a moment (far less than a session timeout) to deliver that.
    c.wait_until(
        &format!("no partition is led by node {victim}"),
        Duration::from_millis(SESSION_TIMEOUT_MS / 3),
        |c| led_without(c, "cs", victim),
    )
    .await;
    for p in &led {
        let written_in = produce_until_ok(&c, 1, "cs", *p, 10, Duration::from_millis(SESSION_TIMEOUT_MS)).await;
        eprintln!("cs/{p} took an acks=all write {written_in:?} after node {victim} exited");
    }
    for p in 0..3u32 {
        let mut exp = vec![u64::from(p)];
        if led.contains(&p) {
            exp.push(10);
        }
        assert_log(&c, "cs", p, &exp).await;
    }
}

/// **A follower behind the leader's log start.** A follower that was down while the
/// leader's retention (`retention.bytes`) removed every batch it would fetch next finds
/// its fetch offset below the leader's log start when it comes back. It starts its log
/// over at the leader's log start (Kafka's `truncateFullyAndStartAt`), catches up and
/// rejoins the ISR, instead of being refused with `offset_out_of_range` forever; then,
/// made the leader, it serves the leader's records from that log start on.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_follower_behind_the_leaders_log_start_resets_and_rejoins() {
    let mut c = Cluster::start(3, 1).await;
    c.create_topic("ret", 1, 3, json!({"min.insync.replicas": 2, "retention.bytes": 4096})).await;
    c.wait_for_isr("ret", 3, Duration::from_secs(30)).await;
    produce_ok(&c, 0, "ret", 0, 0).await;
    let leader = c.leader("ret", 0).await.expect("leader");
    let ctl = controller(&c).await.expect("controller");
    let victim = (1..=3u32)
        .find(|n| *n != leader && *n != ctl)
        .unwrap_or_else(|| (1..=3).find(|n| *n != leader).expect("a follower"));
    c.node(victim as usize).kill9();
    c.wait_for_isr("ret", 2, node_loss_deadline()).await;
    // Enough one-record batches that retention (every second) moves the log start well
    // past the one record the victim has.
    let pad = "x".repeat(1000);
    for i in 1..=40u64 {
        let r = c.produce(0, "ret", 0, Acks::All, &json!({"i": i, "pad": pad})).await;
        assert!(r.offset().is_some(), "produce {i}: {r:?}");
    }
    c.wait_until("the leader's retention moved its log start past offset 1", Duration::from_secs(20), |c| async move {
        c.describe("ret").await.is_some_and(|t| t.partitions[0].log_start_offset.unwrap_or(0) > 1)
    })
    .await;
    c.restart_node(victim as usize);
    c.wait_for_isr("ret", 3, Duration::from_secs(30)).await;
    let start = c.describe("ret").await.expect("describe").partitions[0].log_start_offset.expect("log start");

    // Made the leader (the others stopped), it serves what it fetched after the reset.
    for n in (1..=3u32).filter(|n| *n != victim) {
        c.node(n as usize).kill9();
    }
    c.wait_until(&format!("node {victim} leads"), node_loss_deadline() * 2, |c| async move {
        c.leader("ret", 0).await == Some(victim)
    })
    .await;
    let records: Vec<(u64, serde_json::Value)> = c
        .api(0)
        .read_to_end("ret", 0, fjord_client::Start::Earliest)
        .await
        .expect("read from the reset follower")
        .into_iter()
        .map(|r| (r.offset, r.value.unwrap_or_default()))
        .collect();
    let offsets: Vec<u64> = records.iter().map(|(o, _)| *o).collect();
    let first = offsets.first().copied().expect("records");
    assert!(first >= start, "it serves from the leader's log start {start} on: {offsets:?}");
    assert_eq!(offsets.last().copied(), Some(40), "up to the last acknowledged record");
    let is: Vec<u64> = records.iter().map(|(_, v)| v["i"].as_u64().expect("i")).collect();
    assert_eq!(is, (first..=40).collect::<Vec<_>>(), "every record from there, each at its offset");
}

/// Flips a byte inside the stored batch at `base` of `topic`/0 in a stopped node's
/// storage engine (real RocksDB, opened from the test), keeping its key and length: what
/// bit rot that RocksDB's own checksums did not catch leaves behind.
fn damage_stored_batch(dir: &std::path::Path, topic_id: &str, base: u64) {
    use fjord_log::{Engine, RocksEngine, RocksOptions, WriteOp};
    let engine = RocksEngine::open(dir, &RocksOptions::default()).expect("open the node's storage");
    let store = fjord_protocol::codec::StoreName::new(topic_id, 0).encode();
    let mut found = None;
    engine
        .scan(&store, base, &mut |b, bytes| {
            found = (b == base).then(|| bytes.to_vec());
            false
        })
        .expect("scan");
    let mut bytes = found.unwrap_or_else(|| panic!("no stored batch at {base} in {store}"));
    let last = bytes.len() - 1;
    bytes[last] ^= 0x01;
    engine.write(&store, &[WriteOp::PutBatch { base_offset: base, bytes: &bytes }]).expect("write back");
    engine.sync().expect("sync");
}

/// **A damaged batch is never served and is fetched again.** The preferred leader's
/// stored copy of one batch is damaged while it is down (bytes flipped under RocksDB).
/// It comes back, catches up (its log end is right, so nothing notices) and leads again.
/// Then a consumer reads the partition from the start: the leader finds the batch failing
/// its checksum, serves none of it, says so in its log and lists the replica as offline;
/// the controller moves the leadership to an in-sync replica and the gateway's retry
/// reads every record there, byte for byte as produced. The damaged replica cuts its log
/// at the batch, fetches it again from the new leader, rejoins the ISR and — once the
/// other nodes are stopped and it leads alone — serves the whole log intact.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_damaged_batch_is_never_served_and_is_fetched_again_from_the_new_leader() {
    let mut c = Cluster::start(3, 1).await;
    c.create_topic("dmg", 1, 3, json!({"min.insync.replicas": 2})).await;
    c.wait_for_isr("dmg", 3, Duration::from_secs(30)).await;
    let written: Vec<u64> = (0..30).collect();
    for i in &written {
        produce_ok(&c, 0, "dmg", 0, *i).await;
    }
    let t = c.describe("dmg").await.expect("describe");
    let preferred = t.partitions[0].replicas[0];
    assert_eq!(t.partitions[0].leader, Some(preferred), "the preferred replica leads at first");
    assert!(c.node(preferred as usize).terminate(Duration::from_secs(20)), "node {preferred} stops on SIGTERM");
    damage_stored_batch(&c.node_storage_dir(preferred as usize), &t.topic_id, 10);
    c.restart_node(preferred as usize);
    c.wait_until(&format!("node {preferred} leads again, in sync"), Duration::from_secs(60), |c| async move {
        partition(c, "dmg", 0).await.is_some_and(|p| p.leader == Some(preferred) && p.isr.len() == 3)
    })
    .await;

    // Read from the start through the damaged leader: every record, intact.
    assert_log(&c, "dmg", 0, &written).await;
    let log = c.node(preferred as usize).log_text();
    assert!(log.contains("a stored batch failed its checksum"), "node {preferred} says what it found");
    assert!(log.contains("offset=10"), "and where");
    c.wait_until(&format!("node {preferred} cut its log and is in sync again"), Duration::from_secs(60), |c| {
        let cut = c.nodes[preferred as usize - 1].log_text().contains("cut the log at the damaged batch");
        async move { cut && partition(c, "dmg", 0).await.is_some_and(|p| p.isr.len() == 3) }
    })
    .await;

    // Alone, the repaired replica serves the whole log, byte for byte.
    for n in (1..=3u32).filter(|n| *n != preferred) {
        assert!(c.node(n as usize).terminate(Duration::from_secs(20)), "node {n} stops on SIGTERM");
    }
    c.wait_until(&format!("node {preferred} leads alone"), node_loss_deadline() * 2, |c| async move {
        c.leader("dmg", 0).await == Some(preferred)
    })
    .await;
    assert_log(&c, "dmg", 0, &written).await;
}

/// Runs one `zkCli.sh` command against the cluster's ZooKeeper; returns its output.
fn zk_cli(c: &Cluster, args: &[&str]) -> String {
    let out = std::process::Command::new("/usr/share/zookeeper/bin/zkCli.sh")
        .args(["-server", &c.zk.connect_string()])
        .args(args)
        .output()
        .expect("run zkCli.sh");
    format!("{}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr))
}

/// **An unreadable znode deletes nothing.** When a topic's partition-state znode stops
/// decoding (here overwritten with garbage), the topic drops out of the metadata — the
/// gateway answers `unknown_topic` — but no storage node deletes its data: once the
/// znode is readable again, every acknowledged record is served as before.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_undecodable_znode_leaves_the_data_alone() {
    let c = Cluster::start(3, 1).await;
    c.create_topic("z", 1, 3, json!({"min.insync.replicas": 2})).await;
    c.wait_for_isr("z", 3, Duration::from_secs(30)).await;
    for i in 0..5 {
        produce_ok(&c, 0, "z", 0, i).await;
    }
    let path = "/fjord/brokers/topics/z/partitions/0/state";
    let original = zk_cli(&c, &["get", path])
        .lines()
        .find(|l| l.starts_with('{'))
        .map(str::to_owned)
        .unwrap_or_else(|| panic!("no JSON in zkCli's answer for {path}"));
    zk_cli(&c, &["set", path, "not json"]);
    c.wait_until("the gateway leaves the topic out", Duration::from_secs(20), |c| async move {
        c.describe("z").await.is_none()
    })
    .await;
    c.wait_until("every node has read the bad znode", Duration::from_secs(20), |c| async move {
        c.nodes.iter().all(|n| n.log_text().contains("skipping a znode Fjord cannot read"))
    })
    .await;
    zk_cli(&c, &["set", path, &original]);
    c.wait_for_isr("z", 3, Duration::from_secs(30)).await;
    assert_log(&c, "z", 0, &[0, 1, 2, 3, 4]).await;
}

/// The value of the sample `series` in an OpenMetrics text, if present.
fn sample(text: &str, series: &str) -> Option<f64> {
    text.lines().find_map(|l| l.strip_prefix(series)?.strip_prefix(' ')?.parse().ok())
}

/// `/metrics` of a process listening on `port` (a gateway's public port, a storage
/// node's internal one), or `None` if it does not answer. Sent as Prometheus would be
/// configured to: with the cluster secret, which storage nodes require on their internal
/// port (gateways without authentication ignore it).
async fn scrape(c: &Cluster, port: u16) -> Option<String> {
    let r = c
        .client
        .get(format!("http://127.0.0.1:{port}/metrics"))
        .bearer_auth(common::cluster::CLUSTER_SECRET)
        .timeout(Duration::from_secs(5))
        .send()
        .await
        .ok()?;
    if !r.status().is_success() {
        return None;
    }
    r.text().await.ok()
}

/// **Metrics match what happened.** Every process serves `/metrics` (gateways on their
/// public port, storage nodes on their internal one): the gateway that took the writes
/// counts them and the other none; every replica reports the record count as its log
/// end offset and exactly one node — the leader — reports leading the partition. While
/// a follower is paused, the leader reports the partition under-replicated (per
/// partition and in its node count) once the ISR has shrunk — having counted the shrink,
/// and the paused follower's lag in time past `replica.lag.time.max.ms` — and not after
/// the follower rejoined (an expansion counted). Every process reports its ZooKeeper
/// session connected, and the gateways their metadata current.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_process_serves_metrics_that_match_what_happened() {
    let mut c = Cluster::start(3, 2).await;
    c.create_topic("m", 1, 3, json!({})).await;
    c.wait_for_isr("m", 3, Duration::from_secs(30)).await;
    for i in 0..10 {
        produce_ok(&c, 0, "m", 0, i).await;
    }
    let produced = r#"fjord_gateway_produced_records_total{topic="m"}"#;
    let g0 = scrape(&c, c.gateways[0].port).await.expect("gateway 0 serves /metrics");
    assert_eq!(sample(&g0, produced), Some(10.0), "{g0}");
    let g1 = scrape(&c, c.gateways[1].port).await.expect("gateway 1 serves /metrics");
    assert_eq!(sample(&g1, produced), None, "gateway 1 produced nothing");
    for g in [&g0, &g1] {
        assert_eq!(sample(g, "fjord_gateway_zookeeper_connected"), Some(1.0), "{g}");
        assert_eq!(sample(g, "fjord_gateway_metadata_age_seconds"), Some(0.0));
        assert_eq!(sample(g, "fjord_gateway_zookeeper_session_expirations_total"), Some(0.0));
    }

    let leader = c.leader("m", 0).await.expect("leader");
    let ports: Vec<(u32, u16)> = c.nodes.iter().enumerate().map(|(i, p)| (i as u32 + 1, p.port)).collect();
    let leo = r#"fjord_partition_log_end_offset{topic="m",partition="0"}"#;
    let leads = r#"fjord_partition_leader{topic="m",partition="0"}"#;
    let under = r#"fjord_partition_under_replicated{topic="m",partition="0"}"#;
    let ports_ref = &ports;
    c.wait_until("every replica reports 10 records", Duration::from_secs(20), |c| async move {
        let mut all = true;
        for (_, port) in ports_ref {
            all &= scrape(c, *port).await.is_some_and(|t| sample(&t, leo) == Some(10.0));
        }
        all
    })
    .await;
    for (id, port) in &ports {
        let t = scrape(&c, *port).await.expect("node serves /metrics");
        assert_eq!(sample(&t, leads), Some(f64::from(u8::from(*id == leader))), "node {id}: {t}");
        assert_eq!(sample(&t, "fjord_node_replicas").map(|v| v >= 1.0), Some(true), "node {id}");
        assert_eq!(sample(&t, "fjord_zookeeper_connected"), Some(1.0), "node {id}");
    }
    let leader_port = ports.iter().find(|(id, _)| *id == leader).map(|(_, p)| *p).expect("leader port");
    let t = scrape(&c, leader_port).await.expect("leader metrics");
    assert_eq!(sample(&t, under), Some(0.0));

    let ctl = controller(&c).await;
    let follower = ports.iter().map(|(id, _)| *id).find(|id| *id != leader && Some(*id) != ctl).expect("a follower");
    let lag_records =
        format!(r#"fjord_partition_follower_lag_records{{topic="m",partition="0",follower="{follower}"}}"#);
    let lag_seconds =
        format!(r#"fjord_partition_follower_lag_seconds{{topic="m",partition="0",follower="{follower}"}}"#);
    let lag_ref = &lag_records;
    c.wait_until("the leader sees the follower caught up", Duration::from_secs(20), |c| async move {
        scrape(c, leader_port).await.is_some_and(|t| sample(&t, lag_ref) == Some(0.0))
    })
    .await;
    let counter = |t: &str, name: &str| sample(t, name).unwrap_or_else(|| panic!("{name} missing: {t}"));
    let shrinks_before = counter(&t, "fjord_node_isr_shrinks_total");
    let expands_before = counter(&t, "fjord_node_isr_expands_total");
    c.node(follower as usize).pause();
    c.wait_until(
        "the leader reports the partition under-replicated",
        Duration::from_millis(8 * LAG_TIME_MAX_MS),
        |c| async move {
            scrape(c, leader_port).await.is_some_and(|t| {
                sample(&t, under) == Some(1.0) && sample(&t, "fjord_node_under_replicated_partitions") == Some(1.0)
            })
        },
    )
    .await;
    let t = scrape(&c, leader_port).await.expect("leader metrics");
    assert!(counter(&t, "fjord_node_isr_shrinks_total") > shrinks_before, "the shrink is counted: {t}");
    let lagged = sample(&t, &lag_seconds).expect("the paused follower's lag");
    assert!(lagged * 1000.0 > LAG_TIME_MAX_MS as f64, "lag {lagged} s past replica.lag.time.max.ms");
    c.node(follower as usize).resume();
    c.wait_until("the partition is fully replicated again", Duration::from_secs(30), |c| async move {
        scrape(c, leader_port).await.is_some_and(|t| sample(&t, under) == Some(0.0))
    })
    .await;
    let t = scrape(&c, leader_port).await.expect("leader metrics");
    assert!(counter(&t, "fjord_node_isr_expands_total") > expands_before, "the expansion is counted: {t}");
}
