//! Exactly-once produce against a real cluster — ZooKeeper, 3 storage nodes and 2
//! gateways as separate processes — under leader failures. Every wait is a condition
//! polled against a deadline; the only deliberate pauses are the faults themselves.

mod common;

use common::cluster::{Cluster, SESSION_TIMEOUT_MS};
use fjord_client::{Acks, ProduceOptions, ProduceReply, Record, SessionHeaders};
use serde_json::{json, Value};
use std::collections::BTreeMap;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

const TOPIC: &str = "eo";
const PARTITIONS: u32 = 3;
/// How long one attempt may take before the producer gives up on it and retries.
const ATTEMPT: Duration = Duration::from_secs(8);
/// How long one request may take, retries included, before the test fails.
const REQUEST_DEADLINE: Duration = Duration::from_secs(90);

/// A small deterministic generator (the test picks gateways and batch sizes at random).
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }
}

/// What the producers saw.
#[derive(Default)]
struct Stats {
    /// Attempts that failed ambiguously or retriably and were sent again.
    retries: AtomicU64,
    /// Answers that said `Idempotent-Replayed`.
    replays: AtomicU64,
}

/// Sends one keyed request until it is acknowledged, each attempt through a random
/// gateway, retrying every failure that may leave the write undone or done: no answer,
/// a cut connection, any retriable error. Any other error fails the test.
async fn produce_exactly_once(
    gateways: &[fjord_client::Client],
    rng: &mut Rng,
    stats: &Stats,
    key: &str,
    records: &[Record],
) -> ProduceReply {
    let opts = ProduceOptions {
        acks: Acks::All,
        timeout_ms: Some(2_000),
        idempotency_key: Some(key.to_owned()),
        ..Default::default()
    };
    let started = Instant::now();
    loop {
        let g = (rng.next() % gateways.len() as u64) as usize;
        let attempt = tokio::time::timeout(ATTEMPT, gateways[g].produce(TOPIC, None, records, &opts)).await;
        let failure = match attempt {
            Ok(Ok(reply)) if reply.all_written() => {
                if reply.replayed.is_some() {
                    stats.replays.fetch_add(1, Ordering::Relaxed);
                }
                return reply;
            }
            Ok(Ok(reply)) => format!("partial answer {reply:?}"),
            Ok(Err(e)) if e.retriable() => e.to_string(),
            Ok(Err(e)) => panic!("request {key}: a failure that must not happen: {e}"),
            Err(_) => "no answer in time".to_owned(),
        };
        stats.retries.fetch_add(1, Ordering::Relaxed);
        assert!(
            started.elapsed() < REQUEST_DEADLINE,
            "request {key} not acknowledged within {REQUEST_DEADLINE:?}: {failure}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// Every record of every partition, as `(partition, offset, value)`, read through
/// gateway 0 once every partition's high watermark covers its log end.
async fn read_topic(c: &Cluster) -> Vec<(u32, u64, Value)> {
    let mut out = Vec::new();
    for p in 0..PARTITIONS {
        let deadline = Instant::now() + Duration::from_secs(30);
        let all = loop {
            if let Some(all) = c.read_all(0, TOPIC, p).await {
                break all;
            }
            assert!(Instant::now() < deadline, "{TOPIC}/{p} could not be read within 30 s");
            tokio::time::sleep(Duration::from_millis(100)).await;
        };
        out.extend(all.into_iter().map(|(o, v)| (p, o, v)));
    }
    out
}

/// Waits until every partition has a leader and a full ISR.
async fn settled(c: &Cluster) {
    c.wait_for_isr(TOPIC, 3, Duration::from_secs(60)).await;
}

/// **Zero duplicates under leader faults.** Four producers send keyed `acks=all`
/// requests (1 to 3 unkeyed records each, routed by the key) and retry every ambiguous
/// failure — no answer, timeouts, `*_after_append`, leaders moving — with the same key
/// through a random gateway, while partition leaders are, round after round, killed with
/// `kill -9`, paused (SIGSTOP) past the ZooKeeper session timeout, and stopped with
/// SIGTERM, and brought back. Afterwards every request was acknowledged, and every
/// acknowledged record is in the topic exactly once, at the partition and offset its
/// acknowledgement named: no retry wrote a record twice, none was lost.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn retried_keyed_requests_never_duplicate_under_leader_faults() {
    let mut c = Cluster::start(3, 2).await;
    c.create_topic(TOPIC, PARTITIONS, 3, json!({"min.insync.replicas": 2})).await;
    settled(&c).await;

    // The producers reach the gateways (never faulted here) on their own clients, so the
    // fault schedule below owns the cluster.
    let gateways: Arc<Vec<fjord_client::Client>> = Arc::new((0..c.gateways.len()).map(|g| c.api(g)).collect());
    let stop = Arc::new(AtomicBool::new(false));
    let stats = Arc::new(Stats::default());
    let mut producers = Vec::new();
    for w in 0..4u64 {
        let (gateways, stop, stats) = (gateways.clone(), stop.clone(), stats.clone());
        producers.push(tokio::spawn(async move {
            let mut rng = Rng(0x9E37_79B9_7F4A_7C15 ^ (w + 1));
            let mut acked: Vec<(Value, u32, u64)> = Vec::new();
            let mut i = 0u64;
            while !stop.load(Ordering::Relaxed) {
                let n = 1 + (rng.next() % 3) as usize;
                let values: Vec<Value> = (0..n).map(|r| json!({"w": w, "i": i, "r": r})).collect();
                let records: Vec<Record> = values.iter().cloned().map(Record::value).collect();
                let key = format!("w{w}-req{i}");
                let reply = produce_exactly_once(&gateways, &mut rng, &stats, &key, &records).await;
                for (v, o) in values.into_iter().zip(&reply.offsets) {
                    acked.push((v, o.partition, o.offset.expect("an acknowledged record has an offset")));
                }
                i += 1;
            }
            acked
        }));
    }

    // The faults: each round takes the leader of one partition down three ways.
    for round in 0..2u32 {
        for (k, fault) in ["kill -9", "pause", "SIGTERM"].into_iter().enumerate() {
            let p = (round * 3 + k as u32) % PARTITIONS;
            let victim = c.leader(TOPIC, p as usize).await.expect("a leader");
            eprintln!("round {round}: {fault} of node {victim} (leader of {TOPIC}/{p})");
            match fault {
                "kill -9" => c.node(victim as usize).kill9(),
                "pause" => c.node(victim as usize).pause(),
                _ => {
                    let node = c.node(victim as usize);
                    tokio::task::block_in_place(|| node.terminate(Duration::from_secs(15)));
                }
            }
            // The fault lasts past the session timeout, with producers running.
            tokio::time::sleep(Duration::from_millis(2 * SESSION_TIMEOUT_MS)).await;
            if fault == "pause" {
                c.node(victim as usize).resume();
            } else {
                c.restart_node(victim as usize);
            }
            settled(&c).await;
        }
    }
    stop.store(true, Ordering::Relaxed);
    let mut acked = Vec::new();
    for p in producers {
        acked.extend(p.await.expect("producer task"));
    }
    let stored = read_topic(&c).await;

    let mut found: BTreeMap<String, Vec<(u32, u64)>> = BTreeMap::new();
    for (p, o, v) in &stored {
        found.entry(v.to_string()).or_default().push((*p, *o));
    }
    let duplicates: Vec<_> = found.iter().filter(|(_, at)| at.len() > 1).collect();
    assert!(duplicates.is_empty(), "records written more than once: {duplicates:?}");
    for (v, p, o) in &acked {
        assert_eq!(found.get(&v.to_string()), Some(&vec![(*p, *o)]), "acknowledged record {v} at {p}/{o}");
    }
    assert_eq!(stored.len(), acked.len(), "the topic holds exactly the acknowledged records");
    let (retries, replays) = (stats.retries.load(Ordering::Relaxed), stats.replays.load(Ordering::Relaxed));
    eprintln!("{} records acknowledged, {retries} attempts retried, {replays} answered as replays", acked.len());
    assert!(retries > 0, "the faults caused no retry: the test did not exercise what it claims");
}

/// One keyed request to partition 0 (the topic route with an explicit partition).
async fn keyed(c: &Cluster, g: usize, key: &str, value: &str) -> fjord_client::Result<ProduceReply> {
    let opts = ProduceOptions {
        acks: Acks::All,
        timeout_ms: Some(5_000),
        idempotency_key: Some(key.into()),
        ..Default::default()
    };
    let records = [Record { partition: Some(0), ..Record::value(json!(value)) }];
    c.api(g).produce(TOPIC, None, &records, &opts).await
}

/// Record `"s{sequence}"` of producer session `(id, epoch)` to partition 0 through gateway `g`.
async fn sequenced(c: &Cluster, g: usize, id: u64, epoch: u32, sequence: u32) -> fjord_client::Result<ProduceReply> {
    let opts = ProduceOptions {
        acks: Acks::All,
        timeout_ms: Some(5_000),
        session: Some(SessionHeaders { producer_id: id, producer_epoch: epoch, sequence }),
        ..Default::default()
    };
    c.api(g).produce(TOPIC, Some(0), &[Record::value(json!(format!("s{sequence}")))], &opts).await
}

/// Retries `f` while it fails retriably, for up to 60 s.
async fn until_ok<F, Fut>(what: &str, mut f: F) -> ProduceReply
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = fjord_client::Result<ProduceReply>>,
{
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        match tokio::time::timeout(ATTEMPT, f()).await {
            Ok(Ok(r)) => return r,
            Ok(Err(e)) if !e.retriable() => panic!("{what}: {e}"),
            other => assert!(Instant::now() < deadline, "{what}: no success within 60 s: {other:?}"),
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// **Replays survive failover and restarts.** A keyed request acknowledged by one
/// leader is answered as a replay, with its original offset and nothing written, by the
/// next leader after the first is killed, and again after every node of the cluster was
/// killed and restarted; a producer session's repeated sequence is a replay on the new
/// leader too, and its next sequence is written there.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn replays_are_answered_after_a_leader_moves_and_after_a_full_restart() {
    let mut c = Cluster::start(3, 2).await;
    c.create_topic(TOPIC, 1, 3, json!({"min.insync.replicas": 2})).await;
    c.wait_for_isr(TOPIC, 3, Duration::from_secs(30)).await;
    let first = until_ok("first attempt", || keyed(&c, 0, "order-1", "v")).await;
    assert_eq!(first.replayed, None);
    let session = c.api(1).register_producer("writer").await.expect("register");
    let (id, epoch) = (session.producer_id, session.producer_epoch);
    let s0 = until_ok("sequence 0", || sequenced(&c, 0, id, epoch, 0)).await;

    let leader = c.leader(TOPIC, 0).await.expect("leader");
    c.node(leader as usize).kill9();
    c.wait_until(
        "another node leads",
        Duration::from_millis(4 * SESSION_TIMEOUT_MS) + Duration::from_secs(5),
        |c| async move { c.leader(TOPIC, 0).await.is_some_and(|l| l != leader) },
    )
    .await;
    let retry = until_ok("retry on the new leader", || keyed(&c, 1, "order-1", "v")).await;
    assert_eq!((retry.offsets.clone(), retry.replayed.as_deref()), (first.offsets.clone(), Some("true")));
    let s0_again = until_ok("sequence 0 again", || sequenced(&c, 1, id, epoch, 0)).await;
    assert_eq!((s0_again.offsets, s0_again.replayed.as_deref()), (s0.offsets.clone(), Some("true")));
    let s1 = until_ok("sequence 1", || sequenced(&c, 1, id, epoch, 1)).await;
    assert_eq!(s1.replayed, None);

    c.restart_node(leader as usize);
    c.wait_for_isr(TOPIC, 3, Duration::from_secs(30)).await;
    for n in 1..=3 {
        c.node(n).kill9();
    }
    for n in 1..=3 {
        c.restart_node(n);
    }
    c.wait_for_isr(TOPIC, 3, Duration::from_secs(60)).await;
    let after_restart = until_ok("retry after a full restart", || keyed(&c, 0, "order-1", "v")).await;
    assert_eq!((after_restart.offsets, after_restart.replayed.as_deref()), (first.offsets, Some("true")));
    // After the restart the high watermark climbs back as the followers fetch.
    c.wait_until("the three records are readable again", Duration::from_secs(30), |c| async move {
        c.read_all(0, TOPIC, 0).await.is_some_and(|r| r.len() >= 3)
    })
    .await;
    let records = c.read_all(0, TOPIC, 0).await.expect("read");
    let values: Vec<&Value> = records.iter().map(|(_, v)| v).collect();
    assert_eq!(values, [&json!("v"), &json!("s0"), &json!("s1")], "each written once");
}
