//! Consumer groups with real processes: `fjord standalone`, and a ZooKeeper cluster of
//! storage nodes behind two gateways.

mod common;

use common::cluster::Cluster;
use common::Standalone;
use fjord_protocol::group::{coordinator_partition, OFFSETS_TOPIC};
use serde_json::{json, Value};
use std::collections::{BTreeMap, BTreeSet};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};
use tokio::sync::Mutex;

/// (topic, partition)
type Tp = (String, u32);

fn tps(v: &Value) -> BTreeSet<Tp> {
    v.as_array()
        .map(|a| {
            a.iter()
                .filter_map(|tp| {
                    Some((tp["topic"].as_str()?.to_owned(), u32::try_from(tp["partition"].as_u64()?).ok()?))
                })
                .collect()
        })
        .unwrap_or_default()
}

/// One answer: status (0 when the request itself failed) and JSON body.
async fn send(req: reqwest::RequestBuilder) -> (u16, Value) {
    match req.timeout(Duration::from_secs(30)).send().await {
        Ok(r) => {
            let status = r.status().as_u16();
            (status, r.json().await.unwrap_or(Value::Null))
        }
        Err(e) => (0, json!({"transport_error": e.to_string()})),
    }
}

/// A member as a client sees it: its id and the generation of its last poll.
#[derive(Debug, Clone)]
struct Member {
    group: String,
    id: String,
    generation: u64,
}

async fn join(client: &reqwest::Client, base: &str, group: &str, body: Value) -> Member {
    let (status, v) = send(client.post(format!("{base}/v1/groups/{group}/members")).json(&body)).await;
    assert_eq!(status, 200, "join: {v}");
    Member {
        group: group.to_owned(),
        id: v["member_id"].as_str().expect("member_id").to_owned(),
        generation: v["generation"].as_u64().expect("generation"),
    }
}

struct Polled {
    generation: u64,
    assignment: BTreeSet<Tp>,
    /// (topic, partition, offset, value)
    records: Vec<(String, u32, u64, Value)>,
}

async fn poll(client: &reqwest::Client, base: &str, m: &Member, timeout_ms: u64) -> Result<Polled, (u16, Value)> {
    let (status, v) =
        send(client.get(format!(
            "{base}/v1/groups/{}/members/{}/records?timeout_ms={timeout_ms}&max_records=200",
            m.group, m.id
        )))
        .await;
    if status != 200 {
        return Err((status, v));
    }
    let records = v["records"]
        .as_array()
        .expect("records")
        .iter()
        .map(|r| {
            (
                r["topic"].as_str().expect("topic").to_owned(),
                r["partition"].as_u64().expect("partition") as u32,
                r["offset"].as_u64().expect("offset"),
                r["value"].clone(),
            )
        })
        .collect();
    Ok(Polled { generation: v["generation"].as_u64().expect("generation"), assignment: tps(&v["assignment"]), records })
}

/// Commits, per partition, the offset after the last record of `records`.
async fn commit(
    client: &reqwest::Client,
    base: &str,
    m: &Member,
    records: &[(String, u32, u64, Value)],
) -> (u16, Value) {
    let mut next: BTreeMap<Tp, u64> = BTreeMap::new();
    for (t, p, o, _) in records {
        let e = next.entry((t.clone(), *p)).or_default();
        *e = (*e).max(o + 1);
    }
    let offsets: Vec<Value> = next.iter().map(|((t, p), o)| json!({"topic": t, "partition": p, "offset": o})).collect();
    send(client.post(format!("{base}/v1/groups/{}/offsets", m.group)).json(&json!({
        "member_id": m.id, "generation": m.generation, "offsets": offsets
    })))
    .await
}

async fn produce(client: &reqwest::Client, base: &str, topic: &str, records: Vec<Value>) {
    let (status, v) =
        send(client.post(format!("{base}/v1/topics/{topic}/records?acks=all")).json(&json!({"records": records})))
            .await;
    assert_eq!(status, 200, "produce: {v}");
}

async fn wait_until<F, Fut>(what: &str, within: Duration, mut cond: F)
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = bool>,
{
    let deadline = Instant::now() + within;
    while !cond().await {
        assert!(Instant::now() < deadline, "timed out after {within:?} waiting until {what}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// The members' current assignments per the group description.
async fn assignments(
    client: &reqwest::Client,
    base: &str,
    group: &str,
) -> Option<BTreeMap<String, (BTreeSet<Tp>, usize)>> {
    let (status, v) = send(client.get(format!("{base}/v1/groups/{group}"))).await;
    if status != 200 {
        return None;
    }
    Some(
        v["members"]
            .as_array()?
            .iter()
            .map(|m| {
                let pending = m["pending"].as_array().map_or(0, Vec::len);
                (m["member_id"].as_str().unwrap_or_default().to_owned(), (tps(&m["assignment"]), pending))
            })
            .collect(),
    )
}

/// Whether `members` are exactly the group's members, with disjoint assignments that
/// together cover `all`, and nothing pending.
fn settled(a: &BTreeMap<String, (BTreeSet<Tp>, usize)>, members: &BTreeSet<String>, all: &BTreeSet<Tp>) -> bool {
    let ids: BTreeSet<String> = a.keys().cloned().collect();
    if ids != *members || a.values().any(|(_, pending)| *pending > 0) {
        return false;
    }
    let mut seen = BTreeSet::new();
    for (set, _) in a.values() {
        for tp in set {
            if !seen.insert(tp.clone()) {
                return false;
            }
        }
    }
    seen == *all
}

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
    client: reqwest::Client,
    base: String,
    mut m: Member,
    log: Arc<Mutex<Log>>,
    crash: Arc<AtomicBool>,
    stop: Arc<AtomicBool>,
) -> tokio::task::JoinHandle<()> {
    tokio::spawn(async move {
        while !stop.load(Ordering::Relaxed) {
            let polled = match poll(&client, &base, &m, 200).await {
                Ok(p) => p,
                Err((status, v)) => panic!("member {} poll failed: {status} {v}", m.id),
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
                let (status, v) = commit(&client, &base, &m, &polled.records).await;
                assert_eq!(status, 204, "member {} commit failed: {v}", m.id);
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
    let client = reqwest::Client::new();
    let base = fjord.base.clone();
    let (status, v) =
        send(client.post(format!("{base}/v1/topics")).json(&json!({"name": "events", "partitions": 6}))).await;
    assert_eq!(status, 201, "{v}");
    let all: BTreeSet<Tp> = (0..6).map(|p| ("events".to_owned(), p)).collect();

    // Producers write keyed records (spread over all partitions) for the whole test.
    let stop_producing = Arc::new(AtomicBool::new(false));
    let producer = {
        let (client, base, stop) = (client.clone(), base.clone(), stop_producing.clone());
        tokio::spawn(async move {
            let mut i = 0u64;
            while !stop.load(Ordering::Relaxed) {
                let batch = (0..10).map(|k| json!({"key": format!("k{}", i + k), "value": i + k})).collect();
                produce(&client, &base, "events", batch).await;
                i += 10;
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
            i
        })
    };

    let spec = json!({"topics": ["events"], "session_timeout_ms": 2000, "auto_offset_reset": "earliest",
        "auto_commit": false, "assignor": "sticky"});
    let log = Arc::new(Mutex::new(Log::default()));
    let stop = Arc::new(AtomicBool::new(false));
    let mut crash = BTreeMap::new();
    let mut tasks = Vec::new();
    let mut members = BTreeSet::new();
    let mut ids = Vec::new();
    let mut start = |m: Member, crash: &mut BTreeMap<String, Arc<AtomicBool>>| {
        let flag = Arc::new(AtomicBool::new(false));
        crash.insert(m.id.clone(), flag.clone());
        tasks.push(spawn_consumer(client.clone(), base.clone(), m, log.clone(), flag, stop.clone()));
    };

    for name in ["a", "b"] {
        let mut s = spec.clone();
        s["client_id"] = json!(name);
        let m = join(&client, &base, "workers", s).await;
        members.insert(m.id.clone());
        ids.push(m.id.clone());
        start(m, &mut crash);
    }
    wait_until("two members share all six partitions", Duration::from_secs(20), || async {
        assignments(&client, &base, "workers").await.is_some_and(|a| settled(&a, &members, &all))
    })
    .await;
    let (_, d) = send(client.get(format!("{base}/v1/groups/workers"))).await;
    let generation_before = d["generation"].as_u64().expect("generation");

    let mut s = spec.clone();
    s["client_id"] = json!("c");
    let c = join(&client, &base, "workers", s).await;
    assert!(c.generation > generation_before, "a join starts a new generation");
    members.insert(c.id.clone());
    ids.push(c.id.clone());
    start(c, &mut crash);
    wait_until("three members share all six partitions, two each", Duration::from_secs(20), || async {
        assignments(&client, &base, "workers")
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
        assignments(&client, &base, "workers").await.is_some_and(|a| settled(&a, &members, &all))
    })
    .await;
    let moved_after = crashed_at.elapsed();
    assert!(moved_after >= Duration::from_millis(1500), "evicted before its 2 s session timeout: {moved_after:?}");

    // Stop producing, then let the survivors drain everything.
    stop_producing.store(true, Ordering::Relaxed);
    let produced = producer.await.expect("producer");
    let mut hw: BTreeMap<u32, u64> = BTreeMap::new();
    for p in 0..6 {
        let (_, o) = send(client.get(format!("{base}/v1/topics/events/partitions/{p}/offsets"))).await;
        hw.insert(p, o["high_watermark"].as_u64().expect("hw"));
    }
    assert_eq!(hw.values().sum::<u64>(), produced, "every produced record is in the log");
    wait_until("the group has committed every partition to its high watermark", Duration::from_secs(30), || async {
        let (_, o) = send(client.get(format!("{base}/v1/groups/workers/offsets"))).await;
        o["offsets"].as_array().is_some_and(|rows| {
            (0..6).all(|p| {
                rows.iter().any(|r| r["partition"] == p && r["offset"].as_u64() == Some(hw[&p]) && r["lag"] == 0)
            })
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

/// Reads Server-Sent Events from `resp` until `want` record events arrived, returning
/// their ids and data; fails after `within`.
async fn sse_records(resp: &mut reqwest::Response, want: usize, within: Duration) -> Vec<(String, Value)> {
    let deadline = Instant::now() + within;
    let mut buf = String::new();
    let mut out = Vec::new();
    while out.len() < want {
        let left = deadline.saturating_duration_since(Instant::now());
        let chunk = tokio::time::timeout(left, resp.chunk())
            .await
            .unwrap_or_else(|_| panic!("only {} of {want} events within {within:?}: {out:?}", out.len()))
            .expect("stream chunk")
            .expect("stream ended early");
        buf.push_str(&String::from_utf8_lossy(&chunk));
        while let Some(end) = buf.find("\n\n") {
            let event: String = buf.drain(..end + 2).collect();
            let mut kind = "";
            let (mut id, mut data) = (String::new(), String::new());
            for line in event.lines() {
                if let Some(v) = line.strip_prefix("event:") {
                    kind = if v.trim() == "record" { "record" } else { "other" };
                } else if let Some(v) = line.strip_prefix("id:") {
                    id = v.trim().to_owned();
                } else if let Some(v) = line.strip_prefix("data:") {
                    data.push_str(v.trim_start());
                }
            }
            if kind == "record" {
                out.push((id, serde_json::from_str(&data).expect("event data is JSON")));
            }
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
    let client = reqwest::Client::new();
    let base = fjord.base.clone();
    let (status, v) =
        send(client.post(format!("{base}/v1/topics")).json(&json!({"name": "feed", "partitions": 1}))).await;
    assert_eq!(status, 201, "{v}");
    produce(&client, &base, "feed", (0..3).map(|i| json!({"value": i})).collect()).await;

    let url = format!("{base}/v1/topics/feed/partitions/0/records?offset=earliest&heartbeat_ms=200");
    let mut resp = client.get(&url).header("accept", "text/event-stream").send().await.expect("open stream");
    assert_eq!(resp.status(), 200);
    let ct = resp.headers()["content-type"].to_str().unwrap_or_default().to_owned();
    assert!(ct.starts_with("text/event-stream"), "content type {ct}");
    let first = sse_records(&mut resp, 3, Duration::from_secs(10)).await;
    // Produced after the stream opened: must arrive live.
    produce(&client, &base, "feed", (3..6).map(|i| json!({"value": i})).collect()).await;
    let live = sse_records(&mut resp, 3, Duration::from_secs(10)).await;
    drop(resp);
    let got: Vec<(String, Value)> = first.into_iter().chain(live).collect();
    let ids: Vec<&str> = got.iter().map(|(id, _)| id.as_str()).collect();
    assert_eq!(ids, ["0:0", "0:1", "0:2", "0:3", "0:4", "0:5"]);
    assert!(got.iter().enumerate().all(|(i, (_, r))| r["value"] == i as u64 && r["offset"] == i as u64));

    produce(&client, &base, "feed", (6..9).map(|i| json!({"value": i})).collect()).await;
    let mut resp = client
        .get(&url)
        .header("accept", "text/event-stream")
        .header("last-event-id", "0:5")
        .send()
        .await
        .expect("reopen stream");
    assert_eq!(resp.status(), 200);
    let resumed = sse_records(&mut resp, 3, Duration::from_secs(10)).await;
    let offsets: Vec<u64> = resumed.iter().map(|(_, r)| r["offset"].as_u64().expect("offset")).collect();
    assert_eq!(offsets, [6, 7, 8], "resumed after the last event id, no gap and no repeat");
    drop(resp);

    // A member's poll as a stream.
    let m = join(
        &client,
        &base,
        "readers",
        json!({"topics": ["feed"], "auto_offset_reset": "earliest", "session_timeout_ms": 10000}),
    )
    .await;
    let mut resp = client
        .get(format!("{base}/v1/groups/readers/members/{}/records?timeout_ms=1000", m.id))
        .header("accept", "text/event-stream")
        .send()
        .await
        .expect("open member stream");
    assert_eq!(resp.status(), 200);
    let backlog = sse_records(&mut resp, 9, Duration::from_secs(10)).await;
    produce(&client, &base, "feed", vec![json!({"value": 9})]).await;
    let live = sse_records(&mut resp, 1, Duration::from_secs(10)).await;
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
    let client = c.client.clone();
    let spec = json!({"topics": ["orders"], "auto_offset_reset": "earliest", "auto_commit": false,
        "session_timeout_ms": 30000});
    let mut m = join(&client, &c.gateway(0), "billing", spec.clone()).await;
    for i in 0..200u64 {
        let (status, v) = c.produce(i as usize % 2, "orders", (i % 4) as u32, "all", &json!(i)).await;
        assert_eq!(status, 200, "{v}");
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
        let polled =
            poll(&client, &c.gateway(g), &m, 500).await.unwrap_or_else(|e| panic!("poll via gateway {g}: {e:?}"));
        m.generation = polled.generation;
        for (_, p, o, _) in &polled.records {
            consumed.entry(*p).or_default().push(*o);
            commits.insert(*p, o + 1);
        }
        if !polled.records.is_empty() {
            let (status, v) = commit(&client, &c.gateway(1 - g), &m, &polled.records).await;
            assert_eq!(status, 204, "{v}");
        }
    }
    for (p, offsets) in &consumed {
        let want: Vec<u64> = (0..offsets.len() as u64).collect();
        assert_eq!(offsets, &want, "partition {p}: one stream, every offset once, in order");
    }

    // Kill the coordinator of the group.
    let offsets_topic = c.describe(OFFSETS_TOPIC).await.expect("offsets topic exists");
    let count = offsets_topic["partitions"].as_array().expect("partitions").len() as u32;
    let p = coordinator_partition("billing", count) as usize;
    let coordinator = c.leader(OFFSETS_TOPIC, p).await.expect("coordinator") as usize;
    c.node(coordinator).kill9();
    let killed_at = Instant::now();

    // The committed offsets are there on the new coordinator.
    let survivor = 0;
    c.wait_until("the new coordinator serves the committed offsets", Duration::from_secs(30), |c| {
        let commits = &commits;
        async move {
            let Some(o) = c.get(survivor, "/v1/groups/billing/offsets").await else { return false };
            o["offsets"].as_array().is_some_and(|rows| {
                commits.iter().all(|(p, off)| rows.iter().any(|r| r["partition"] == *p && r["offset"] == *off))
            })
        }
    })
    .await;
    let seen_after = killed_at.elapsed();

    // More records; the member carries on (re-joining if it must) and reads exactly them.
    for i in 200..240u64 {
        let (status, v) = c.produce(0, "orders", (i % 4) as u32, "all", &json!(i)).await;
        assert_eq!(status, 200, "{v}");
    }
    let deadline = Instant::now() + Duration::from_secs(60);
    let mut rejoined = false;
    while !drain(&consumed, 240) {
        assert!(Instant::now() < deadline, "consumed only {consumed:?}");
        let g = turn % 2;
        turn += 1;
        let polled = match poll(&client, &c.gateway(g), &m, 500).await {
            Ok(p) => p,
            Err((404, v)) if v["error"]["code"] == "unknown_member_id" => {
                m = join(&client, &c.gateway(g), "billing", spec.clone()).await;
                rejoined = true;
                continue;
            }
            Err((status, v)) if status == 503 || status == 0 => {
                eprintln!("retriable poll failure while the coordinator moves: {status} {v}");
                continue;
            }
            Err(e) => panic!("poll via gateway {g}: {e:?}"),
        };
        m.generation = polled.generation;
        for (_, p, o, _) in &polled.records {
            consumed.entry(*p).or_default().push(*o);
        }
        if !polled.records.is_empty() {
            let (status, v) = commit(&client, &c.gateway(1 - g), &m, &polled.records).await;
            assert!(status == 204 || status == 503, "{v}");
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
