//! Network partitions between real hosts: ZooKeeper, three storage nodes and the
//! gateways each in its own network namespace ([`common::netns`]), links cut by packet
//! filters while every process keeps running. Each test states in its doc comment the
//! property it checks; the one they share: **every `acks=all` write acknowledged
//! before, during or after the fault is read back at its acknowledged offset once the
//! network heals, and no offset was acknowledged for two different records.**
//!
//! Writers run through the whole fault, one request at a time, as a client would (a
//! short pause after a refusal); what they were told is checked at the end. Root only,
//! as CI runs it; one cluster at a time.

mod common;

use common::cluster::{Cluster, LAG_TIME_MAX_MS, SESSION_TIMEOUT_MS};
use fjord_client::{Acks, Client, ProduceOptions, Record};
use serde_json::{json, Value};
use std::collections::BTreeMap;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;
use tokio::task::JoinHandle;

/// How long a cut-off node may take to lose its ZooKeeper session and be replaced: the
/// session timeout twice over (the server's expiry tick) plus a margin.
fn node_loss_deadline() -> Duration {
    Duration::from_millis(2 * SESSION_TIMEOUT_MS) + Duration::from_secs(10)
}

/// What one writer was told.
#[derive(Debug, Default)]
struct Writes {
    /// Acknowledged offset → the record acknowledged there.
    acked: BTreeMap<u64, Value>,
    /// Offsets acknowledged a second time, for another record: `(offset, first, second)`.
    conflicts: Vec<(u64, Value, Value)>,
    /// Error code → how many writes got it.
    refused: BTreeMap<String, u32>,
}

/// A task writing `{"w": name, "i": i}` to one partition until stopped.
struct Writer {
    stop: Arc<AtomicBool>,
    acked: Arc<AtomicU64>,
    task: JoinHandle<Writes>,
}

impl Writer {
    fn start(api: Client, topic: &str, partition: u32, name: &str) -> Writer {
        let (stop, acked) = (Arc::new(AtomicBool::new(false)), Arc::new(AtomicU64::new(0)));
        let (topic, name) = (topic.to_owned(), name.to_owned());
        let (s, a) = (stop.clone(), acked.clone());
        let task = tokio::spawn(async move {
            let opts = ProduceOptions { acks: Acks::All, timeout_ms: Some(5_000), ..Default::default() };
            let mut w = Writes::default();
            let mut i = 0u64;
            while !s.load(Ordering::Relaxed) {
                let value = json!({"w": name, "i": i});
                i += 1;
                let batch = [Record::value(value.clone())];
                let sent = api.produce(&topic, Some(partition), &batch, &opts);
                let code = match tokio::time::timeout(Duration::from_secs(15), sent).await {
                    Ok(Ok(reply)) => match (reply.all_written(), reply.offsets.first()) {
                        (true, Some(o)) => match o.offset {
                            Some(offset) => {
                                if let Some(first) = w.acked.insert(offset, value.clone()) {
                                    w.conflicts.push((offset, first, value));
                                }
                                a.fetch_add(1, Ordering::Relaxed);
                                continue;
                            }
                            None => "no offset".to_owned(),
                        },
                        (_, o) => o.and_then(|o| o.error.as_ref()).map_or("no error".to_owned(), |e| e.code.clone()),
                    },
                    Ok(Err(fjord_client::Error::Api { code, .. })) => code,
                    Ok(Err(_)) => "transport".to_owned(),
                    Err(_) => "no answer within 15 s".to_owned(),
                };
                *w.refused.entry(code).or_default() += 1;
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
            w
        });
        Writer { stop, acked, task }
    }

    fn acked(&self) -> u64 {
        self.acked.load(Ordering::Relaxed)
    }

    /// Waits until `n` more writes than now have been acknowledged.
    async fn wait_for_more(&self, n: u64, within: Duration, what: &str) {
        let from = self.acked();
        common::wait_until(what, within, || async move { self.acked() >= from + n }).await;
    }

    async fn finish(self) -> Writes {
        self.stop.store(true, Ordering::Relaxed);
        self.task.await.expect("writer")
    }
}

/// The writes of several writers to one partition: every acknowledged offset once.
fn merged(all: Vec<Writes>) -> Writes {
    let mut m = Writes::default();
    for w in all {
        for (offset, v) in w.acked {
            if let Some(first) = m.acked.insert(offset, v.clone()) {
                m.conflicts.push((offset, first, v));
            }
        }
        m.conflicts.extend(w.conflicts);
        for (code, n) in w.refused {
            *m.refused.entry(code).or_default() += n;
        }
    }
    m
}

/// Waits until the partition's high watermark covers every acknowledged offset, then
/// asserts each acknowledged record is at its offset and no offset was acknowledged
/// twice. Returns the log read.
async fn assert_kept(c: &Cluster, topic: &str, partition: u32, w: &Writes) -> BTreeMap<u64, Value> {
    assert!(w.conflicts.is_empty(), "offsets acknowledged for two records: {:?}", w.conflicts);
    let want = w.acked.keys().next_back().map_or(0, |o| o + 1);
    c.wait_until("the high watermark covers every acknowledged offset", Duration::from_secs(60), |c| async move {
        c.api(0).offsets(topic, partition, None).await.is_ok_and(|o| o.high_watermark >= want)
    })
    .await;
    let log: BTreeMap<u64, Value> = c.read_all(0, topic, partition).await.expect("read the log").into_iter().collect();
    let lost: Vec<_> = w.acked.iter().filter(|(o, v)| log.get(o) != Some(v)).collect();
    assert!(
        lost.is_empty(),
        "{} of {} acknowledged records are not at their offsets: {:?} (refusals: {:?})",
        lost.len(),
        w.acked.len(),
        &lost[..lost.len().min(5)],
        w.refused
    );
    log
}

/// The controller's node id, per gateway `g`.
async fn controller(c: &Cluster, g: usize) -> Option<u32> {
    c.api(g).cluster().await.ok()?.controller
}

/// The leader of `topic`/0 per gateway `g`.
async fn leader_via(c: &Cluster, g: usize, topic: &str) -> Option<u32> {
    c.api(g).describe_topic(topic).await.ok()?.partitions.first()?.leader
}

async fn isr(c: &Cluster, topic: &str) -> Vec<u32> {
    c.describe(topic).await.and_then(|t| t.partitions.first().map(|p| p.isr.clone())).unwrap_or_default()
}

/// A replicated topic (`min.insync.replicas=2`) with every replica in sync.
async fn replicated_topic(c: &Cluster, name: &str, partitions: u32) {
    c.create_topic(name, partitions, 3, json!({"min.insync.replicas": 2})).await;
    c.wait_for_isr(name, 3, Duration::from_secs(30)).await;
}

/// Cuts `leader` off from the other nodes (only its own packets, if `one_way`), then
/// waits until it has shrunk the ISR of `topic` to itself and refuses `acks=all` writes
/// as `not_enough_replicas`.
async fn cut_leader_from_followers(c: &Cluster, topic: &str, leader: u32, one_way: bool) {
    let net = c.net.as_ref().expect("net");
    for f in (1..=3u32).filter(|n| *n != leader) {
        let (l, f) = (format!("n{leader}"), format!("n{f}"));
        if one_way {
            net.cut_one_way(&l, &f);
        } else {
            net.cut(&l, &f);
        }
    }
    let deadline = Duration::from_millis(LAG_TIME_MAX_MS) + Duration::from_secs(30);
    c.wait_until("the ISR shrinks to the leader", deadline, |c| async move { isr(c, topic).await == vec![leader] })
        .await;
    c.wait_until("writes are refused as not_enough_replicas", Duration::from_secs(30), |c| async move {
        c.produce(0, topic, 0, Acks::All, &json!({"probe": true})).await.code().as_deref()
            == Some("not_enough_replicas")
    })
    .await;
}

/// **A leader cut off from ZooKeeper — but not from its followers or the gateway —
/// acknowledges nothing it then loses** (the zombie leader). Its session expires, the
/// controller makes a follower leader in a new epoch and the followers leave the old
/// one, so `acks=all` writes it still takes cannot reach `min.insync.replicas` and are
/// never acknowledged; the gateway moves to the new leader and writes go on there. After
/// healing, the old leader rejoins, truncated to the new leader's log: with the other
/// two nodes killed it leads again and serves exactly the log read before.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_leader_cut_off_from_zookeeper_acknowledges_nothing_it_loses() {
    let mut c = Cluster::start_partitionable(3, 1).await;
    replicated_topic(&c, "zombie", 1).await;
    let old = c.leader("zombie", 0).await.expect("a leader");
    let w = Writer::start(c.api(0), "zombie", 0, "w");
    w.wait_for_more(20, Duration::from_secs(30), "writes before the cut").await;

    c.net.as_ref().expect("net").cut(&format!("n{old}"), "zk");
    c.wait_until("another node leads", node_loss_deadline(), |c| async move {
        leader_via(c, 0, "zombie").await.is_some_and(|l| l != old)
    })
    .await;
    w.wait_for_more(20, Duration::from_secs(30), "writes through the new leader").await;

    c.net.as_ref().expect("net").heal();
    c.wait_for_isr("zombie", 3, Duration::from_secs(60)).await;
    w.wait_for_more(10, Duration::from_secs(30), "writes after healing").await;
    let writes = w.finish().await;
    let log = assert_kept(&c, "zombie", 0, &writes).await;

    // The old leader's own copy: the only one left, it leads and serves the same log.
    for n in (1..=3u32).filter(|n| *n != old) {
        c.node(n as usize).kill9();
    }
    c.wait_until(&format!("node {old} leads again"), node_loss_deadline() * 2, |c| async move {
        c.leader("zombie", 0).await == Some(old)
    })
    .await;
    // A new leader's high watermark can lag its log for a moment (KAFKA-7128).
    let end = log.keys().next_back().map_or(0, |o| o + 1);
    c.wait_until("its high watermark covers the log", Duration::from_secs(30), |c| async move {
        c.api(0).offsets("zombie", 0, None).await.is_ok_and(|o| o.high_watermark >= end)
    })
    .await;
    let again: BTreeMap<u64, Value> = c.read_all(0, "zombie", 0).await.expect("read").into_iter().collect();
    assert_eq!(again, log, "the old leader's log after healing is the cluster's log");
}

/// **A leader cut off from its followers — but not from ZooKeeper — refuses writes it
/// cannot replicate.** It shrinks the ISR to itself after `replica.lag.time.max.ms`;
/// with `min.insync.replicas=2` every `acks=all` write from then on is refused with
/// `not_enough_replicas` (retriable: nothing written) rather than acknowledged and lost.
/// After healing the followers catch up and rejoin, writes succeed again, and every
/// acknowledged record is in place.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_leader_cut_off_from_its_followers_refuses_writes_instead_of_losing_them() {
    let c = Cluster::start_partitionable(3, 1).await;
    replicated_topic(&c, "alone", 1).await;
    let leader = c.leader("alone", 0).await.expect("a leader");
    let w = Writer::start(c.api(0), "alone", 0, "w");
    w.wait_for_more(20, Duration::from_secs(30), "writes before the cut").await;

    cut_leader_from_followers(&c, "alone", leader, false).await;
    let before = w.acked();
    // From then on every write is refused, the writer's included.
    for _ in 0..5 {
        let r = c.produce(0, "alone", 0, Acks::All, &json!({"probe": true})).await;
        assert_eq!(r.code().as_deref(), Some("not_enough_replicas"), "{r:?}");
    }
    assert!(isr(&c, "alone").await == vec![leader], "still cut off");
    assert_eq!(w.acked(), before, "no write acknowledged with the leader alone in the ISR");

    c.net.as_ref().expect("net").heal();
    c.wait_for_isr("alone", 3, Duration::from_secs(60)).await;
    w.wait_for_more(10, Duration::from_secs(30), "writes after healing").await;
    let writes = w.finish().await;
    assert!(writes.refused.contains_key("not_enough_replicas"), "{:?}", writes.refused);
    assert_kept(&c, "alone", 0, &writes).await;
}

/// **A gateway cut off from ZooKeeper acknowledges no write through a deposed leader.**
/// Gateway 0 loses ZooKeeper, so its metadata stops changing; then the partition's
/// leader is cut off from ZooKeeper too and replaced. Gateway 0 keeps sending to the old
/// leader, whose followers have left: its writes time out or are refused, never
/// acknowledged and then lost. Gateway 1, which sees the new leader, keeps writing.
/// After healing every write either gateway acknowledged is in place, each offset once.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_gateway_cut_off_from_zookeeper_acknowledges_nothing_through_a_deposed_leader() {
    let c = Cluster::start_partitionable(3, 2).await;
    replicated_topic(&c, "stale", 1).await;
    let old = c.leader("stale", 0).await.expect("a leader");
    let stale = Writer::start(c.api(0), "stale", 0, "g0");
    let fresh = Writer::start(c.api(1), "stale", 0, "g1");
    stale.wait_for_more(10, Duration::from_secs(30), "writes through gateway 0").await;
    fresh.wait_for_more(10, Duration::from_secs(30), "writes through gateway 1").await;

    let net = c.net.as_ref().expect("net");
    net.cut("g0", "zk");
    net.cut(&format!("n{old}"), "zk");
    c.wait_until("gateway 1 sees another leader", node_loss_deadline(), |c| async move {
        leader_via(c, 1, "stale").await.is_some_and(|l| l != old)
    })
    .await;
    fresh.wait_for_more(20, Duration::from_secs(30), "writes through gateway 1 to the new leader").await;

    net.heal();
    c.wait_for_isr("stale", 3, Duration::from_secs(60)).await;
    stale.wait_for_more(5, Duration::from_secs(60), "gateway 0 writes again after healing").await;
    let writes = merged(vec![stale.finish().await, fresh.finish().await]);
    assert_kept(&c, "stale", 0, &writes).await;
}

/// **An isolated controller is replaced, and nothing acknowledged is lost.** The
/// controller's node is cut off from every other host: its session ends, another node
/// becomes controller and re-elects the leaders it had, and writes to every partition go
/// on. After healing there is one controller, every partition is fully in sync, and
/// every acknowledged write to each partition is in place.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_isolated_controller_is_replaced_and_loses_nothing() {
    let c = Cluster::start_partitionable(3, 1).await;
    replicated_topic(&c, "ctl", 3).await;
    let ctl = controller(&c, 0).await.expect("a controller");
    let writers: Vec<Writer> = (0..3).map(|p| Writer::start(c.api(0), "ctl", p, "w")).collect();
    for w in &writers {
        w.wait_for_more(5, Duration::from_secs(30), "writes before the cut").await;
    }

    c.net.as_ref().expect("net").isolate(&format!("n{ctl}"));
    c.wait_until(
        "another controller, and no partition led by the isolated node",
        node_loss_deadline(),
        |c| async move {
            let moved = controller(c, 0).await.is_some_and(|n| n != ctl);
            moved
                && c.describe("ctl")
                    .await
                    .is_some_and(|t| t.partitions.iter().all(|p| p.leader.is_some() && p.leader != Some(ctl)))
        },
    )
    .await;
    for w in &writers {
        w.wait_for_more(5, Duration::from_secs(30), "writes while the controller is isolated").await;
    }

    c.net.as_ref().expect("net").heal();
    c.wait_for_isr("ctl", 3, Duration::from_secs(60)).await;
    let mut all = Vec::new();
    for w in writers {
        all.push(w.finish().await);
    }
    assert!(controller(&c, 0).await.is_some(), "a controller after healing");
    for (p, w) in (0u32..).zip(&all) {
        assert_kept(&c, "ctl", p, w).await;
    }
}

/// **A one-way partition: the leader's packets stop reaching its followers** (theirs
/// still reach it). Their fetches go unanswered, so they fall behind and the leader
/// shrinks the ISR to itself; with `min.insync.replicas=2` writes are then refused, not
/// lost. After healing the followers rejoin and every acknowledged write is in place.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_one_way_partition_from_the_leader_shrinks_the_isr_and_loses_nothing() {
    let c = Cluster::start_partitionable(3, 1).await;
    replicated_topic(&c, "oneway", 1).await;
    let leader = c.leader("oneway", 0).await.expect("a leader");
    let w = Writer::start(c.api(0), "oneway", 0, "w");
    w.wait_for_more(20, Duration::from_secs(30), "writes before the cut").await;

    cut_leader_from_followers(&c, "oneway", leader, true).await;

    c.net.as_ref().expect("net").heal();
    c.wait_for_isr("oneway", 3, Duration::from_secs(60)).await;
    w.wait_for_more(10, Duration::from_secs(30), "writes after healing").await;
    let writes = w.finish().await;
    assert_kept(&c, "oneway", 0, &writes).await;
}

/// **5% packet loss on every link between hosts**: retransmissions slow the cluster,
/// nothing more — writes keep being acknowledged throughout, and after healing every
/// acknowledged write is in place with every replica in sync.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn five_percent_loss_on_every_link_slows_writes_and_loses_nothing() {
    let c = Cluster::start_partitionable(3, 1).await;
    replicated_topic(&c, "lossy", 1).await;
    let w = Writer::start(c.api(0), "lossy", 0, "w");
    w.wait_for_more(10, Duration::from_secs(30), "writes before the loss").await;

    c.net.as_ref().expect("net").loss(5);
    w.wait_for_more(50, Duration::from_secs(90), "writes under 5% loss").await;
    assert!(c.net.as_ref().expect("net").dropped() > 0, "the loss rules dropped packets");

    c.net.as_ref().expect("net").heal();
    c.wait_for_isr("lossy", 3, Duration::from_secs(60)).await;
    w.wait_for_more(10, Duration::from_secs(30), "writes after healing").await;
    let writes = w.finish().await;
    assert_kept(&c, "lossy", 0, &writes).await;
}

/// **200 ms of delay on every link** (every packet the switch forwards is held 200 ms —
/// a userspace delay line, as the CI machine's kernel has no `sch_netem`): a request and
/// its answer take at least 400 ms more on each hop, which stays below the session
/// timeout and `replica.lag.time.max.ms`, so the cluster only slows — writes keep being
/// acknowledged throughout (each `acks=all` write now waits for several crossings), and
/// after healing every acknowledged write is in place with every replica in sync.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_hundred_ms_of_delay_on_every_link_slows_writes_and_loses_nothing() {
    let c = Cluster::start_partitionable(3, 1).await;
    replicated_topic(&c, "slow", 1).await;
    let w = Writer::start(c.api(0), "slow", 0, "w");
    w.wait_for_more(10, Duration::from_secs(30), "writes before the delay").await;

    c.net.as_ref().expect("net").delay(Duration::from_millis(200));
    // The test process to the gateway and back is two crossings: 400 ms at least.
    let started = std::time::Instant::now();
    assert!(c.describe("slow").await.is_some(), "a read through the delayed gateway");
    assert!(started.elapsed() >= Duration::from_millis(400), "a round trip took only {:?}", started.elapsed());
    w.wait_for_more(10, Duration::from_secs(90), "writes under 200 ms of delay").await;

    let held = c.net.as_ref().expect("net").heal();
    assert!(held > 100, "the delay line held only {held} packets");
    c.wait_for_isr("slow", 3, Duration::from_secs(60)).await;
    w.wait_for_more(10, Duration::from_secs(30), "writes after healing").await;
    let writes = w.finish().await;
    assert_kept(&c, "slow", 0, &writes).await;
}
