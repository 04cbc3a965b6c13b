//! A randomized fault test with a checker, in Jepsen's manner: a cluster of real
//! processes (ZooKeeper, 3 storage nodes, 2 gateways, each in its own network namespace)
//! takes writes from one writer per partition — each record retried with its own
//! `Idempotency-Key` through a random gateway until acknowledged — while a seeded nemesis
//! runs one fault per round: `kill -9` and restart, a pause past the session timeout, a
//! SIGTERM and restart, a ZooKeeper restart, a node isolated, a leader cut off from
//! ZooKeeper, two nodes cut from each other, one-way loss of a leader's packets, 5% loss
//! everywhere. After every round the network heals and the cluster must become fully in
//! sync again. Then the checker: **every acknowledged record at its acknowledged offset,
//! no record twice (idempotent retries), offsets dense from 0 to the high watermark, and
//! every replica's log identical** (each node in turn left alone to serve it).
//!
//! Reproducible from its seed: `FJORD_FAULT_SEED` (default: from the clock, printed),
//! `FJORD_FAULT_ROUNDS` (default 4, as CI runs it); `scripts/fault-rounds.sh` runs many.
//! Root only (network namespaces).

mod common;

use common::cluster::{Cluster, SESSION_TIMEOUT_MS};
use fjord_client::{Acks, ProduceOptions, Record};
use serde_json::{json, Value};
use std::collections::BTreeMap;
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

/// One fault of the nemesis, held for `hold`, then undone (the network healed, the
/// process restarted or resumed).
async fn fault(c: &mut Cluster, rng: &mut Rng, hold: Duration) -> String {
    let leader = c.leader("rand", rng.below(u64::from(PARTITIONS)) as usize).await;
    let victim = leader.filter(|_| rng.below(2) == 0).unwrap_or_else(|| rng.node());
    let n = |id: u32| format!("n{id}");
    let what = match rng.below(9) {
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
        _ => {
            c.net.as_ref().expect("net").loss(5);
            tokio::time::sleep(hold).await;
            "5% loss on every link".to_owned()
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
    let mut c = Cluster::start_partitionable(NODES as usize, GATEWAYS).await;
    c.create_topic("rand", PARTITIONS, 3, json!({"min.insync.replicas": 2})).await;
    c.wait_for_isr("rand", 3, Duration::from_secs(30)).await;

    let history =
        Arc::new(Mutex::new(History { acked: vec![BTreeMap::new(); PARTITIONS as usize], ..History::default() }));
    let stop = Arc::new(AtomicBool::new(false));
    let writers = start_writers(&c, history.clone(), stop.clone());
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
    }
    stop.store(true, Ordering::Relaxed);
    for w in writers {
        w.await.expect("writer");
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
    eprintln!("seed {seed}: passed: {}", done.join("; "));
}
