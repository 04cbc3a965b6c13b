//! Consumer groups with real processes: `fjord standalone`, and a ZooKeeper cluster of
//! storage nodes behind two gateways.

mod common;

use common::cluster::Cluster;
use common::groups::{assignments, commit, join, poll, settled, Member, Tp};
use common::{create_topic, produce, wait_until, Standalone};
use fjord_client::{Acks, Client, Event, EventStream, Join, Record, Start};
use fjord_protocol::group::{coordinator_partition, OFFSETS_TOPIC};
use serde_json::{json, Value};
use std::collections::{BTreeMap, BTreeSet};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};
use tokio::sync::Mutex;

/// What every consumer task saw.
#[derive(Default)]
struct Log {
    /// (member, topic, partition, offset)
    consumed: Vec<(String, String, u32, u64)>,
    /// Records a member polled but never committed because it "crashed" first.
    uncommitted: BTreeSet<(String, u32, u64)>,
}

/// A consumer loop: poll, then commit what the poll returned; `crash` makes it stop
/// right after a poll, before committing (a process dying mid-batch).
fn spawn_consumer(
    api: Client,
    mut m: Member,
    log: Arc<Mutex<Log>>,
    crash: Arc<AtomicBool>,
    stop: Arc<AtomicBool>,
) -> tokio::task::JoinHandle<()> {
    tokio::spawn(async move {
        while !stop.load(Ordering::Relaxed) {
            let polled = match poll(&api, &m, 200).await {
                Ok(p) => p,
                Err(e) => panic!("member {} poll failed: {e}", m.id),
            };
            m.generation = polled.generation;
            assert!(
                polled.records.iter().all(|(t, p, _, _)| polled.assignment.contains(&(t.clone(), *p))),
                "member {} got records of partitions it does not own",
                m.id
            );
            {
                let mut log = log.lock().await;
                for (t, p, o, _) in &polled.records {
                    log.consumed.push((m.id.clone(), t.clone(), *p, *o));
                }
                if crash.load(Ordering::Relaxed) {
                    log.uncommitted.extend(polled.records.iter().map(|(t, p, o, _)| (t.clone(), *p, *o)));
                    return;
                }
            }
            if !polled.records.is_empty() {
                commit(&api, &m, &polled.records)
                    .await
                    .unwrap_or_else(|e| panic!("member {} commit failed: {e}", m.id));
            }
        }
    })
}

/// Two members of one group over a 6-partition topic get disjoint assignments covering
/// every partition; a third joins and the group rebalances to three disjoint shares; one
/// member crashes (stops polling, leaving its last poll uncommitted) and, after its
/// session timeout, its partitions move to the others. Producers write throughout, and
/// every member commits after each batch: at the end every produced record was consumed
/// (none lost), and the only records consumed twice are ones the crashed member polled
/// but never committed — the at-least-once window — which the test counts.
#[tokio::test]
async fn rebalances_and_eviction_lose_nothing_and_duplicate_only_the_uncommitted() {
    let dir = tempfile::tempdir().expect("tempdir");
    let fjord = Standalone::start(&dir.path().join("data")).await;
    let api = fjord.api();
    create_topic(&api, "events", 6).await;
    let all: BTreeSet<Tp> = (0..6).map(|p| ("events".to_owned(), p)).collect();

    // Producers write keyed records (spread over all partitions) for the whole test.
    let stop_producing = Arc::new(AtomicBool::new(false));
    let producer = {
        let (api, stop) = (api.clone(), stop_producing.clone());
        tokio::spawn(async move {
            let mut i = 0u64;
            while !stop.load(Ordering::Relaxed) {
                let batch = (0..10).map(|k| Record::keyed(format!("k{}", i + k), json!(i + k))).collect();
                produce(&api, "events", batch).await;
                i += 10;
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
            i
        })
    };

    let spec = Join {
        topics: vec!["events".into()],
        session_timeout_ms: Some(2000),
        auto_offset_reset: Some("earliest".into()),
        auto_commit: Some(false),
        assignor: Some("sticky".into()),
        client_id: None,
    };
    let log = Arc::new(Mutex::new(Log::default()));
    let stop = Arc::new(AtomicBool::new(false));
    let mut crash = BTreeMap::new();
    let mut tasks = Vec::new();
    let mut members = BTreeSet::new();
    let mut ids = Vec::new();
    let mut start = |m: Member, crash: &mut BTreeMap<String, Arc<AtomicBool>>| {
        let flag = Arc::new(AtomicBool::new(false));
        crash.insert(m.id.clone(), flag.clone());
        tasks.push(spawn_consumer(api.clone(), m, log.clone(), flag, stop.clone()));
    };

    for name in ["a", "b"] {
        let m = join(&api, "workers", &Join { client_id: Some(name.into()), ..spec.clone() }).await;
        members.insert(m.id.clone());
        ids.push(m.id.clone());
        start(m, &mut crash);
    }
    wait_until("two members share all six partitions", Duration::from_secs(20), || async {
        assignments(&api, "workers").await.is_some_and(|a| settled(&a, &members, &all))
    })
    .await;
    let generation_before = api.describe_group("workers").await.expect("describe").generation;

    let c = join(&api, "workers", &Join { client_id: Some("c".into()), ..spec.clone() }).await;
    assert!(c.generation > generation_before, "a join starts a new generation");
    members.insert(c.id.clone());
    ids.push(c.id.clone());
    start(c, &mut crash);
    wait_until("three members share all six partitions, two each", Duration::from_secs(20), || async {
        assignments(&api, "workers")
            .await
            .is_some_and(|a| settled(&a, &members, &all) && a.values().all(|(s, _)| s.len() == 2))
    })
    .await;

    // Member b crashes: it stops right after a poll, leaving that poll uncommitted.
    let b = ids[1].clone();
    crash[&b].store(true, Ordering::Relaxed);
    members.remove(&b);
    let crashed_at = Instant::now();
    wait_until("b is evicted and a and c share all six partitions", Duration::from_secs(20), || async {
        assignments(&api, "workers").await.is_some_and(|a| settled(&a, &members, &all))
    })
    .await;
    let moved_after = crashed_at.elapsed();
    assert!(moved_after >= Duration::from_millis(1500), "evicted before its 2 s session timeout: {moved_after:?}");

    // Stop producing, then let the survivors drain everything.
    stop_producing.store(true, Ordering::Relaxed);
    let produced = producer.await.expect("producer");
    let mut hw: BTreeMap<u32, u64> = BTreeMap::new();
    for p in 0..6 {
        hw.insert(p, api.offsets("events", p, None).await.expect("offsets").high_watermark);
    }
    assert_eq!(hw.values().sum::<u64>(), produced, "every produced record is in the log");
    wait_until("the group has committed every partition to its high watermark", Duration::from_secs(30), || async {
        api.group_offsets("workers").await.is_ok_and(|o| {
            (0..6).all(|p| o.offsets.iter().any(|r| r.partition == p && r.offset == Some(hw[&p]) && r.lag == Some(0)))
        })
    })
    .await;
    stop.store(true, Ordering::Relaxed);
    for t in tasks {
        t.await.expect("consumer task");
    }

    let log = log.lock().await;
    let mut seen: BTreeMap<(String, u32, u64), usize> = BTreeMap::new();
    for (_, t, p, o) in &log.consumed {
        *seen.entry((t.clone(), *p, *o)).or_default() += 1;
    }
    for (p, end) in &hw {
        for o in 0..*end {
            assert!(seen.contains_key(&("events".to_owned(), *p, o)), "record events-{p}@{o} was never consumed");
        }
    }
    let duplicates: Vec<_> = seen.iter().filter(|(_, n)| **n > 1).map(|(k, n)| (k.clone(), *n)).collect();
    for (k, n) in &duplicates {
        assert_eq!(*n, 2, "{k:?} consumed {n} times");
        assert!(log.uncommitted.contains(k), "{k:?} was consumed twice but was not in the crashed member's window");
    }
    eprintln!(
        "produced {produced}; consumed {} ({} duplicates, all among the {} records the crashed member polled \
         without committing); partitions moved {moved_after:?} after the crash",
        log.consumed.len(),
        duplicates.len(),
        log.uncommitted.len()
    );
}

/// Reads a stream until `want` record events arrived, returning their ids and data;
/// fails after `within`.
async fn sse_records(stream: &mut EventStream, want: usize, within: Duration) -> Vec<(String, Value)> {
    let deadline = Instant::now() + within;
    let mut out = Vec::new();
    while out.len() < want {
        let left = deadline.saturating_duration_since(Instant::now());
        let event: Event = tokio::time::timeout(left, stream.next_event())
            .await
            .unwrap_or_else(|_| panic!("only {} of {want} events within {within:?}: {out:?}", out.len()))
            .expect("stream")
            .expect("stream ended early");
        if event.event == "record" {
            out.push((event.id.clone().unwrap_or_default(), event.json().expect("event data is JSON")));
        }
    }
    out
}

/// An SSE client of a partition receives records as they are produced (not only those
/// already there), each with `id: partition:offset`; after it disconnects and more are
/// produced, reconnecting with `Last-Event-ID` resumes right after the last one it got:
/// no gap, no repeat. A member's SSE poll stream delivers its group's records the same way.
#[tokio::test]
async fn sse_streams_deliver_live_records_and_resume_from_last_event_id() {
    let dir = tempfile::tempdir().expect("tempdir");
    let fjord = Standalone::start(&dir.path().join("data")).await;
    let api = fjord.api();
    let values = |r: std::ops::Range<u64>| r.map(|i| Record::value(json!(i))).collect::<Vec<_>>();
    create_topic(&api, "feed", 1).await;
    produce(&api, "feed", values(0..3)).await;

    // The wire format itself: status and content type of a stream.
    let url = format!("{}/v1/topics/feed/partitions/0/records?offset=earliest", fjord.base);
    let resp = reqwest::Client::new().get(&url).header("accept", "text/event-stream").send().await.expect("open");
    assert_eq!(resp.status(), 200);
    let ct = resp.headers()["content-type"].to_str().unwrap_or_default().to_owned();
    assert!(ct.starts_with("text/event-stream"), "content type {ct}");
    drop(resp);

    let mut stream = api.stream("feed", 0, Start::Earliest, None, Some(200)).await.expect("open stream");
    let first = sse_records(&mut stream, 3, Duration::from_secs(10)).await;
    // Produced after the stream opened: must arrive live.
    produce(&api, "feed", values(3..6)).await;
    let live = sse_records(&mut stream, 3, Duration::from_secs(10)).await;
    drop(stream);
    let got: Vec<(String, Value)> = first.into_iter().chain(live).collect();
    let ids: Vec<&str> = got.iter().map(|(id, _)| id.as_str()).collect();
    assert_eq!(ids, ["0:0", "0:1", "0:2", "0:3", "0:4", "0:5"]);
    assert!(got.iter().enumerate().all(|(i, (_, r))| r["value"] == i as u64 && r["offset"] == i as u64));

    produce(&api, "feed", values(6..9)).await;
    let mut stream = api.stream("feed", 0, Start::Earliest, Some("0:5"), Some(200)).await.expect("reopen stream");
    let resumed = sse_records(&mut stream, 3, Duration::from_secs(10)).await;
    let offsets: Vec<u64> = resumed.iter().map(|(_, r)| r["offset"].as_u64().expect("offset")).collect();
    assert_eq!(offsets, [6, 7, 8], "resumed after the last event id, no gap and no repeat");
    drop(stream);

    // A member's poll as a stream.
    let spec = Join {
        topics: vec!["feed".into()],
        auto_offset_reset: Some("earliest".into()),
        session_timeout_ms: Some(10_000),
        ..Join::default()
    };
    let m = join(&api, "readers", &spec).await;
    let opts = fjord_client::ReadOptions { timeout_ms: Some(1000), ..Default::default() };
    let mut stream = api.poll_stream("readers", &m.id, &opts).await.expect("open member stream");
    let backlog = sse_records(&mut stream, 9, Duration::from_secs(10)).await;
    produce(&api, "feed", values(9..10)).await;
    let live = sse_records(&mut stream, 1, Duration::from_secs(10)).await;
    let ids: Vec<String> = backlog.iter().chain(&live).map(|(id, _)| id.clone()).collect();
    let want: Vec<String> = (0..10).map(|o| format!("feed:0:{o}")).collect();
    assert_eq!(ids, want);
}

/// Through a 3-node cluster with two gateways: a member that alternates gateways on every
/// poll (and commits through the other one) sees one consistent stream per partition —
/// every offset once, in order. Then the node coordinating the group is killed: the
/// committed offsets survive on the new coordinator (the offsets topic is replicated),
/// and the member carries on from them — re-joining if the new coordinator does not
/// know it — so that, after more records, every record was consumed exactly once.
#[tokio::test]
async fn any_gateway_serves_a_member_and_offsets_survive_coordinator_failover() {
    let mut c = Cluster::start(3, 2).await;
    c.create_topic("orders", 4, 3, json!({})).await;
    c.wait_for_isr("orders", 3, Duration::from_secs(30)).await;
    let spec = Join {
        topics: vec!["orders".into()],
        auto_offset_reset: Some("earliest".into()),
        auto_commit: Some(false),
        session_timeout_ms: Some(30_000),
        ..Join::default()
    };
    let mut m = join(&c.api(0), "billing", &spec).await;
    for i in 0..200u64 {
        let r = c.produce(i as usize % 2, "orders", (i % 4) as u32, Acks::All, &json!(i)).await;
        assert!(r.offset().is_some(), "{r:?}");
    }

    let mut consumed: BTreeMap<u32, Vec<u64>> = BTreeMap::new();
    let mut commits: BTreeMap<u32, u64> = BTreeMap::new();
    let mut turn = 0usize;
    let drain =
        |consumed: &BTreeMap<u32, Vec<u64>>, want: u64| consumed.values().map(Vec::len).sum::<usize>() as u64 >= want;
    let deadline = Instant::now() + Duration::from_secs(60);
    while !drain(&consumed, 200) {
        assert!(Instant::now() < deadline, "consumed only {consumed:?}");
        let g = turn % 2;
        turn += 1;
        let polled = poll(&c.api(g), &m, 500).await.unwrap_or_else(|e| panic!("poll via gateway {g}: {e}"));
        m.generation = polled.generation;
        for (_, p, o, _) in &polled.records {
            consumed.entry(*p).or_default().push(*o);
            commits.insert(*p, o + 1);
        }
        if !polled.records.is_empty() {
            commit(&c.api(1 - g), &m, &polled.records).await.expect("commit");
        }
    }
    for (p, offsets) in &consumed {
        let want: Vec<u64> = (0..offsets.len() as u64).collect();
        assert_eq!(offsets, &want, "partition {p}: one stream, every offset once, in order");
    }

    // Kill the coordinator of the group.
    let offsets_topic = c.describe(OFFSETS_TOPIC).await.expect("offsets topic exists");
    let count = offsets_topic.partitions.len() as u32;
    let p = coordinator_partition("billing", count) as usize;
    let coordinator = c.leader(OFFSETS_TOPIC, p).await.expect("coordinator") as usize;
    c.node(coordinator).kill9();
    let killed_at = Instant::now();

    // The committed offsets are there on the new coordinator.
    let survivor = 0;
    c.wait_until("the new coordinator serves the committed offsets", Duration::from_secs(30), |c| {
        let commits = &commits;
        async move {
            let Ok(o) = c.api(survivor).group_offsets("billing").await else { return false };
            commits.iter().all(|(p, off)| o.offsets.iter().any(|r| r.partition == *p && r.offset == Some(*off)))
        }
    })
    .await;
    let seen_after = killed_at.elapsed();

    // More records; the member carries on (re-joining if it must) and reads exactly them.
    for i in 200..240u64 {
        let r = c.produce(0, "orders", (i % 4) as u32, Acks::All, &json!(i)).await;
        assert!(r.offset().is_some(), "{r:?}");
    }
    let deadline = Instant::now() + Duration::from_secs(60);
    let mut rejoined = false;
    while !drain(&consumed, 240) {
        assert!(Instant::now() < deadline, "consumed only {consumed:?}");
        let g = turn % 2;
        turn += 1;
        let polled = match poll(&c.api(g), &m, 500).await {
            Ok(p) => p,
            Err(e) if e.code() == Some("unknown_member_id") => {
                m = join(&c.api(g), "billing", &spec).await;
                rejoined = true;
                continue;
            }
            Err(e) if e.retriable() => {
                eprintln!("retriable poll failure while the coordinator moves: {e}");
                continue;
            }
            Err(e) => panic!("poll via gateway {g}: {e}"),
        };
        m.generation = polled.generation;
        for (_, p, o, _) in &polled.records {
            consumed.entry(*p).or_default().push(*o);
        }
        if !polled.records.is_empty() {
            let committed = commit(&c.api(1 - g), &m, &polled.records).await;
            assert!(committed.as_ref().map_or_else(|e| e.status() == Some(503), |_| true), "{committed:?}");
        }
    }
    for (p, offsets) in &consumed {
        let want: Vec<u64> = (0..offsets.len() as u64).collect();
        assert_eq!(offsets, &want, "partition {p}: after the failover, no record lost or repeated");
    }
    let total: usize = consumed.values().map(Vec::len).sum();
    assert_eq!(total, 240);
    eprintln!("coordinator failover: offsets served again {seen_after:?} after kill -9; member re-joined: {rejoined}");
}
