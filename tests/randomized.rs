//! A randomized fault test with a checker, in Jepsen's manner: a cluster of real
//! processes (ZooKeeper, 3 storage nodes, 2 gateways, each in its own network namespace)
//! takes writes from one writer per partition — each record retried with its own
//! `Idempotency-Key` through a random gateway until acknowledged — while a seeded nemesis
//! runs one fault per round: `kill -9` and restart, a pause past the session timeout, a
//! SIGTERM and restart, a ZooKeeper restart, a node isolated, a leader cut off from
//! ZooKeeper, two nodes cut from each other, one-way loss of a leader's packets, 5% loss
//! everywhere, a node's disk full (each node's data dir is a small tmpfs). After every
//! round the network heals and the cluster must become fully in
//! sync again. Two consumer-group members poll and commit through random gateways the
//! whole time (rejoining when a fault expels them). Then the checker: **every
//! acknowledged record at its acknowledged offset, no record twice (idempotent retries),
//! offsets dense from 0 to the high watermark, every replica's log identical** (each node
//! in turn left alone to serve it), **the group's committed offsets never moved
//! backwards** (sampled after every round) **and every record below them was consumed at
//! least once**.
//!
//! Reproducible from its seed: `FJORD_FAULT_SEED` (default: from the clock, printed),
//! `FJORD_FAULT_ROUNDS` (default 4, as CI runs it); `scripts/fault-rounds.sh` runs many.
//! Root only (network namespaces).

mod common;

use common::cluster::{Cluster, SESSION_TIMEOUT_MS};
use common::groups::{self, Member};
use fjord_client::{Acks, Join, ProduceOptions, Record};
use serde_json::{json, Value};
use std::collections::{BTreeMap, BTreeSet};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

const PARTITIONS: u32 = 3;
const NODES: u32 = 3;
const GATEWAYS: usize = 2;

/// SplitMix64: small, seedable, good enough to pick faults.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }

    fn below(&mut self, n: u64) -> u64 {
        self.next() % n
    }

    fn node(&mut self) -> u32 {
        1 + self.below(u64::from(NODES)) as u32
    }
}

fn env_u64(name: &str) -> Option<u64> {
    std::env::var(name).ok().and_then(|v| v.parse().ok())
}

/// What the writers were told: per partition, acknowledged offset → record.
#[derive(Default)]
struct History {
    acked: Vec<BTreeMap<u64, Value>>,
    /// Offsets acknowledged for two different records.
    conflicts: Vec<(u32, u64, Value, Value)>,
    /// Records given up on (never acknowledged within the writer's patience): they may
    /// be in the log, at most once.
    abandoned: Vec<Value>,
    attempts: u64,
}

/// One writer per partition: record `i` is retried with the key `p{p}-{i}` through a
/// random gateway until acknowledged (or for 60 s), then `i + 1`.
fn start_writers(c: &Cluster, history: Arc<Mutex<History>>, stop: Arc<AtomicBool>) -> Vec<tokio::task::JoinHandle<()>> {
    let apis: Vec<_> = (0..GATEWAYS).map(|g| c.api(g)).collect();
    (0..PARTITIONS)
        .map(|p| {
            let (apis, history, stop) = (apis.clone(), history.clone(), stop.clone());
            tokio::spawn(async move {
                let mut i = 0u64;
                let mut turn = p as usize;
                while !stop.load(Ordering::Relaxed) {
                    let value = json!({"p": p, "i": i});
                    let opts = ProduceOptions {
                        acks: Acks::All,
                        timeout_ms: Some(5_000),
                        idempotency_key: Some(format!("p{p}-{i}")),
                        ..Default::default()
                    };
                    let give_up = Instant::now() + Duration::from_secs(60);
                    loop {
                        turn += 1;
                        let api = &apis[turn % apis.len()];
                        let batch = [Record::value(value.clone())];
                        let sent =
                            tokio::time::timeout(Duration::from_secs(15), api.produce("rand", Some(p), &batch, &opts))
                                .await;
                        let offset = match sent {
                            Ok(Ok(r)) if r.all_written() => r.offsets.first().and_then(|o| o.offset),
                            _ => None,
                        };
                        let finished = {
                            let mut h = history.lock().expect("history");
                            h.attempts += 1;
                            if let Some(offset) = offset {
                                if let Some(first) = h.acked[p as usize].insert(offset, value.clone()) {
                                    if first != value {
                                        h.conflicts.push((p, offset, first, value.clone()));
                                    }
                                }
                                true
                            } else if Instant::now() > give_up || stop.load(Ordering::Relaxed) {
                                h.abandoned.push(value.clone());
                                true
                            } else {
                                false
                            }
                        };
                        if finished {
                            break;
                        }
                        tokio::time::sleep(Duration::from_millis(100)).await;
                    }
                    i += 1;
                }
            })
        })
        .collect()
}

const GROUP: &str = "rand-readers";

/// What the group's members were given: per partition, every offset a poll returned.
#[derive(Default)]
struct Reads {
    consumed: Vec<BTreeSet<u64>>,
    polls: u64,
}

/// Two members of [`GROUP`], each polling through a random gateway and committing what
/// each poll returned; a member expelled (or whose calls fail for a session) joins again.
fn start_readers(c: &Cluster, reads: Arc<Mutex<Reads>>, stop: Arc<AtomicBool>) -> Vec<tokio::task::JoinHandle<()>> {
    let apis: Vec<_> = (0..GATEWAYS).map(|g| c.api(g)).collect();
    (0..2usize)
        .map(|r| {
            let (apis, reads, stop) = (apis.clone(), reads.clone(), stop.clone());
            tokio::spawn(async move {
                let spec = Join {
                    topics: vec!["rand".into()],
                    session_timeout_ms: Some(10_000),
                    auto_offset_reset: Some("earliest".into()),
                    auto_commit: Some(false),
                    client_id: Some(format!("reader-{r}")),
                    ..Join::default()
                };
                let mut turn = r;
                let mut member: Option<Member> = None;
                while !stop.load(Ordering::Relaxed) {
                    turn += 1;
                    let api = &apis[turn % apis.len()];
                    let Some(m) = member.as_mut() else {
                        match api.join(GROUP, &spec).await {
                            Ok(j) => {
                                member = Some(Member { group: GROUP.into(), id: j.member_id, generation: j.generation })
                            }
                            Err(_) => tokio::time::sleep(Duration::from_millis(200)).await,
                        }
                        continue;
                    };
                    match groups::poll(api, m, 1_000).await {
                        Ok(polled) => {
                            m.generation = polled.generation;
                            {
                                let mut rd = reads.lock().expect("reads");
                                rd.polls += 1;
                                for (_, p, o, _) in &polled.records {
                                    rd.consumed[*p as usize].insert(*o);
                                }
                            }
                            if !polled.records.is_empty() {
                                // A refused commit (a rebalance, a fault) is read again.
                                let _ = groups::commit(api, m, &polled.records).await;
                            }
                        }
                        Err(fjord_client::Error::Api { code, .. }) if code == "unknown_member_id" => member = None,
                        Err(_) => tokio::time::sleep(Duration::from_millis(200)).await,
                    }
                }
            })
        })
        .collect()
}

/// The group's committed offset per partition (0 where none), through gateway 0.
async fn committed(c: &Cluster) -> Option<Vec<u64>> {
    let o = c.api(0).group_offsets(GROUP).await.ok()?;
    let mut out = vec![0; PARTITIONS as usize];
    for p in o.offsets.iter().filter(|p| p.topic == "rand") {
        out[p.partition as usize] = p.offset.unwrap_or(0);
    }
    Some(out)
}

/// One fault of the nemesis, held for `hold`, then undone (the network healed, the
/// process restarted or resumed).
async fn fault(c: &mut Cluster, rng: &mut Rng, hold: Duration) -> String {
    let leader = c.leader("rand", rng.below(u64::from(PARTITIONS)) as usize).await;
    let victim = leader.filter(|_| rng.below(2) == 0).unwrap_or_else(|| rng.node());
    let n = |id: u32| format!("n{id}");
    let what = match rng.below(10) {
        0 => {
            c.node(victim as usize).kill9();
            tokio::time::sleep(hold).await;
            c.restart_node(victim as usize);
            format!("kill -9 node {victim}")
        }
        1 => {
            c.node(victim as usize).pause();
            tokio::time::sleep(hold.max(Duration::from_millis(SESSION_TIMEOUT_MS * 2))).await;
            c.node(victim as usize).resume();
            format!("pause node {victim} past the session timeout")
        }
        2 => {
            c.node(victim as usize).terminate(Duration::from_secs(15));
            tokio::time::sleep(hold).await;
            c.restart_node(victim as usize);
            format!("SIGTERM node {victim}")
        }
        3 => {
            c.zk.stop();
            tokio::time::sleep(hold).await;
            c.zk.start_again();
            "restart ZooKeeper".to_owned()
        }
        4 => {
            c.net.as_ref().expect("net").isolate(&n(victim));
            tokio::time::sleep(hold).await;
            format!("isolate node {victim}")
        }
        5 => {
            c.net.as_ref().expect("net").cut(&n(victim), "zk");
            tokio::time::sleep(hold.max(Duration::from_millis(SESSION_TIMEOUT_MS * 2))).await;
            format!("cut node {victim} from ZooKeeper")
        }
        6 => {
            let other = 1 + (victim % NODES);
            c.net.as_ref().expect("net").cut(&n(victim), &n(other));
            tokio::time::sleep(hold).await;
            format!("cut node {victim} from node {other}")
        }
        7 => {
            let net = c.net.as_ref().expect("net");
            for f in (1..=NODES).filter(|f| *f != victim) {
                net.cut_one_way(&n(victim), &n(f));
            }
            tokio::time::sleep(hold).await;
            format!("node {victim}'s packets stop reaching the other nodes")
        }
        8 => {
            c.net.as_ref().expect("net").loss(5);
            tokio::time::sleep(hold).await;
            "5% loss on every link".to_owned()
        }
        _ => {
            c.fill_disk(victim as usize);
            tokio::time::sleep(hold).await;
            c.free_disk(victim as usize);
            format!("node {victim}'s disk full")
        }
    };
    c.net.as_ref().expect("net").heal();
    what
}

async fn in_sync(c: &Cluster) -> bool {
    c.describe("rand").await.is_some_and(|t| {
        t.partitions.len() == PARTITIONS as usize
            && t.partitions.iter().all(|p| p.leader.is_some() && p.isr.len() == NODES as usize)
    })
}

/// Every partition's log through gateway 0, once its high watermark covers `want[p]`.
async fn logs(c: &Cluster, want: &[u64]) -> Vec<Vec<(u64, Value)>> {
    let mut out = Vec::new();
    for p in 0..PARTITIONS {
        let w = want[p as usize];
        c.wait_until(&format!("partition {p}'s high watermark reaches {w}"), Duration::from_secs(60), |c| async move {
            c.api(0).offsets("rand", p, None).await.is_ok_and(|o| o.high_watermark >= w)
        })
        .await;
        out.push(c.read_all(0, "rand", p).await.expect("read"));
    }
    out
}

/// **Randomized faults lose, move and duplicate nothing acknowledged** (the module's
/// doc comment has the checks).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn randomized_faults_lose_move_and_duplicate_nothing() {
    let seed = env_u64("FJORD_FAULT_SEED").unwrap_or_else(|| fjord_protocol::now_ms() as u64);
    let rounds = env_u64("FJORD_FAULT_ROUNDS").unwrap_or(4);
    eprintln!("randomized fault test: FJORD_FAULT_SEED={seed} FJORD_FAULT_ROUNDS={rounds}");
    let mut rng = Rng(seed);
    let mut c = Cluster::start_partitionable_on_small_disks(NODES as usize, GATEWAYS).await;
    c.create_topic("rand", PARTITIONS, 3, json!({"min.insync.replicas": 2})).await;
    c.wait_for_isr("rand", 3, Duration::from_secs(30)).await;

    let history =
        Arc::new(Mutex::new(History { acked: vec![BTreeMap::new(); PARTITIONS as usize], ..History::default() }));
    let stop = Arc::new(AtomicBool::new(false));
    let writers = start_writers(&c, history.clone(), stop.clone());
    let reads = Arc::new(Mutex::new(Reads { consumed: vec![BTreeSet::new(); PARTITIONS as usize], polls: 0 }));
    let readers = start_readers(&c, reads.clone(), stop.clone());
    let mut samples: Vec<Vec<u64>> = Vec::new();
    let mut done = Vec::new();
    for round in 0..rounds {
        let hold = Duration::from_millis(1_000 + rng.below(4_000));
        let before = history.lock().expect("history").acked.iter().map(BTreeMap::len).sum::<usize>();
        let what = fault(&mut c, &mut rng, hold).await;
        eprintln!("round {round}: {what} for {hold:?}");
        c.wait_until(&format!("in sync after round {round} ({what})"), Duration::from_secs(90), in_sync).await;
        // Progress after healing: every writer gets at least one more write through.
        let seen: Vec<usize> = history.lock().expect("history").acked.iter().map(BTreeMap::len).collect();
        c.wait_until(&format!("writes go on after round {round}"), Duration::from_secs(60), |_| {
            let history = history.clone();
            let seen = seen.clone();
            async move { history.lock().expect("history").acked.iter().zip(&seen).all(|(a, s)| a.len() > *s) }
        })
        .await;
        done.push(format!("{what} ({} acknowledged before)", before));
        if let Some(now) = committed(&c).await {
            samples.push(now);
        }
    }
    // The group catches up with what was written before it stops.
    let written: Vec<u64> = history.lock().expect("history").acked.iter().map(|a| a.len() as u64).collect();
    c.wait_until("the group commits past what was written", Duration::from_secs(60), |c| {
        let written = written.clone();
        async move { committed(c).await.is_some_and(|now| now.iter().zip(&written).all(|(c, w)| c >= w)) }
    })
    .await;
    samples.extend(committed(&c).await);
    stop.store(true, Ordering::Relaxed);
    for w in writers.into_iter().chain(readers) {
        w.await.expect("writer or reader");
    }
    let h = std::mem::take(&mut *history.lock().expect("history"));
    eprintln!(
        "seed {seed}: {} rounds, {} acknowledged, {} attempts, {} abandoned",
        rounds,
        h.acked.iter().map(BTreeMap::len).sum::<usize>(),
        h.attempts,
        h.abandoned.len()
    );
    assert!(h.conflicts.is_empty(), "seed {seed}: offsets acknowledged for two records: {:?}", h.conflicts);

    // The checker, on the log as the cluster serves it.
    let want: Vec<u64> = h.acked.iter().map(|a| a.keys().next_back().map_or(0, |o| o + 1)).collect();
    let reference = logs(&c, &want).await;
    for (p, log) in (0u32..).zip(&reference) {
        let offsets: Vec<u64> = log.iter().map(|(o, _)| *o).collect();
        assert_eq!(offsets, (0..offsets.len() as u64).collect::<Vec<_>>(), "seed {seed}: partition {p}: offsets dense");
        let at: BTreeMap<u64, &Value> = log.iter().map(|(o, v)| (*o, v)).collect();
        let lost: Vec<_> = h.acked[p as usize].iter().filter(|(o, v)| at.get(o) != Some(v)).collect();
        assert!(lost.is_empty(), "seed {seed}: partition {p}: acknowledged records not at their offsets: {lost:?}");
        let mut values: Vec<String> = log.iter().map(|(_, v)| v.to_string()).collect();
        let n = values.len();
        values.sort();
        values.dedup();
        assert_eq!(values.len(), n, "seed {seed}: partition {p}: a record twice (its retries share a key)");
    }
    // Every replica's copy: all nodes but one stopped (SIGTERM: leadership moves to the
    // one left, which was in sync), that one serves exactly the same log.
    for keep in 1..=NODES {
        // In sync right before: the last round's heal can be followed by an ISR shrink
        // the in-sync check after it did not see yet (a follower cut for longer than the
        // lag time), and a partition whose ISR lacks `keep` goes offline when the others
        // stop — as it should (seed 3003).
        c.wait_until(&format!("in sync before node {keep} is left alone"), Duration::from_secs(90), in_sync).await;
        for n in (1..=NODES).filter(|n| *n != keep) {
            c.node(n as usize).terminate(Duration::from_secs(15));
        }
        c.wait_until(&format!("node {keep} leads every partition"), Duration::from_secs(60), |c| async move {
            c.describe("rand").await.is_some_and(|t| t.partitions.iter().all(|p| p.leader == Some(keep)))
        })
        .await;
        let served = logs(&c, &want).await;
        for (p, (a, b)) in reference.iter().zip(&served).enumerate() {
            assert!(a == b, "seed {seed}: partition {p}: node {keep}'s copy differs from the cluster's log");
        }
        for n in (1..=NODES).filter(|n| *n != keep) {
            c.restart_node(n as usize);
        }
        c.wait_until("in sync again", Duration::from_secs(90), in_sync).await;
    }
    // The group: commits never moved back, and every record below them was consumed.
    for pair in samples.windows(2) {
        assert!(pair[0].iter().zip(&pair[1]).all(|(a, b)| a <= b), "seed {seed}: a commit moved back: {samples:?}");
    }
    let rd = std::mem::take(&mut *reads.lock().expect("reads"));
    let last = samples.last().cloned().unwrap_or_default();
    for (p, upto) in last.iter().enumerate() {
        let missed: Vec<u64> = (0..*upto).filter(|o| !rd.consumed[p].contains(o)).take(5).collect();
        assert!(missed.is_empty(), "seed {seed}: partition {p}: committed past records never consumed: {missed:?}");
    }
    eprintln!("seed {seed}: {} polls; committed {last:?}", rd.polls);
    eprintln!("seed {seed}: passed: {}", done.join("; "));
}
