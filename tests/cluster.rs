//! A real cluster — ZooKeeper, 3 storage nodes, 2 gateways as separate processes — under
//! faults. Each test states the property it proves.

mod common;

use common::cluster::Cluster;
use serde_json::{json, Value};
use std::time::Duration;

/// Records produced with `acks=all` through either gateway to a topic with RF=3 are
/// replicated to all three nodes (ISR of 3) and read back through either gateway, in
/// order, with dense offsets.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn replicated_produce_and_consume_through_any_gateway() {
    let c = Cluster::start(3, 2).await;
    c.create_topic("orders", 3, 3, json!({"min.insync.replicas": 2})).await;
    c.wait_for_isr("orders", 3, Duration::from_secs(30)).await;

    for i in 0..20u32 {
        let g = (i % 2) as usize;
        let r = c
            .client
            .post(format!("{}/v1/topics/orders/partitions/{}/records?acks=all", c.gateway(g), i % 3))
            .json(&json!({"records": [{"key": format!("k{i}"), "value": {"i": i}}]}))
            .send()
            .await
            .expect("produce");
        let status = r.status();
        let body: Value = r.json().await.expect("json");
        assert_eq!(status, 200, "{body}");
    }
    for p in 0..3u32 {
        for g in 0..2 {
            let body = c.get(g, &format!("/v1/topics/orders/partitions/{p}/records?offset=0")).await.expect("consume");
            let records = body["records"].as_array().expect("records");
            let values: Vec<u64> = records.iter().map(|r| r["value"]["i"].as_u64().expect("i")).collect();
            let expected: Vec<u64> = (0..20u64).filter(|i| i % 3 == u64::from(p)).collect();
            assert_eq!(values, expected, "partition {p} through gateway {g}");
            let offsets: Vec<u64> = records.iter().map(|r| r["offset"].as_u64().expect("offset")).collect();
            assert_eq!(offsets, (0..expected.len() as u64).collect::<Vec<_>>());
        }
    }
    let t = c.describe("orders").await.expect("describe");
    for p in t["partitions"].as_array().expect("partitions") {
        assert_eq!(p["isr"].as_array().map(Vec::len), Some(3), "{p}");
    }

    // Growing the topic: the controller elects leaders for the new partitions, which
    // then take replicated writes.
    let r = c
        .client
        .patch(format!("{}/v1/topics/orders", c.gateway(1)))
        .json(&json!({"partitions": 5}))
        .send()
        .await
        .expect("alter");
    assert_eq!(r.status(), 200);
    c.wait_for_isr("orders", 3, Duration::from_secs(30)).await;
    let (status, body) = c.produce(0, "orders", 4, "all", &json!({"new": true})).await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["offsets"][0]["offset"], 0);

    // Deleting it through one gateway: both gateways forget it.
    let r = c.client.delete(format!("{}/v1/topics/orders", c.gateway(1))).send().await.expect("delete");
    assert_eq!(r.status(), 204);
    c.wait_until("both gateways answer 404 for the deleted topic", Duration::from_secs(10), |c| async move {
        let mut gone = true;
        for g in 0..2 {
            let r = c.client.get(format!("{}/v1/topics/orders", c.gateway(g))).send().await;
            gone &= r.is_ok_and(|r| r.status() == 404);
        }
        gone
    })
    .await;
}

/// Leader kill under load: producers write `acks=all` through both gateways to a topic
/// with 3 partitions, RF=3, min.insync.replicas=2, while the leader of a partition is
/// `kill -9`ed, restarted, and the next leader killed (3 rounds). Afterwards every
/// acknowledged record is present exactly once, at the offset it was acknowledged with
/// (so in acknowledged order), offsets dense; and each partition accepted writes again
/// within 10 s of each kill.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn leader_kill_under_load_loses_no_acknowledged_record() {
    use std::collections::BTreeMap;
    use std::sync::atomic::{AtomicBool, Ordering};
    use std::sync::{Arc, Mutex};

    let mut c = Cluster::start(3, 2).await;
    c.create_topic("load", 3, 3, json!({"min.insync.replicas": 2})).await;
    c.wait_for_isr("load", 3, Duration::from_secs(30)).await;

    // partition -> offset -> id, for every acknowledged record.
    let acked: Arc<Mutex<BTreeMap<u32, BTreeMap<u64, String>>>> = Arc::default();
    let stop = Arc::new(AtomicBool::new(false));
    let gateways: Vec<String> = (0..2).map(|g| c.gateway(g)).collect();
    let mut producers = Vec::new();
    for (g, base) in gateways.into_iter().enumerate() {
        let (acked, stop, client) = (acked.clone(), stop.clone(), c.client.clone());
        producers.push(tokio::spawn(async move {
            let mut n = 0u64;
            while !stop.load(Ordering::Relaxed) {
                let p = (n % 3) as u32;
                let id = format!("g{g}-{n}");
                n += 1;
                let r = client
                    .post(format!("{base}/v1/topics/load/partitions/{p}/records?acks=all&timeout_ms=5000"))
                    .json(&json!({"records": [{"value": {"id": id}}]}))
                    .timeout(Duration::from_secs(15))
                    .send()
                    .await;
                if let Ok(r) = r {
                    if r.status() == 200 {
                        let body: Value = r.json().await.expect("json");
                        let offset = body["offsets"][0]["offset"].as_u64().expect("offset");
                        let prev = acked.lock().expect("lock").entry(p).or_default().insert(offset, id.clone());
                        assert!(prev.is_none(), "offset {offset} of partition {p} acknowledged twice");
                    }
                }
            }
        }));
    }

    let count = |acked: &Arc<Mutex<BTreeMap<u32, BTreeMap<u64, String>>>>, p: u32| {
        acked.lock().expect("lock").get(&p).map_or(0, BTreeMap::len)
    };
    for round in 0..3u32 {
        let p = round % 3;
        let before = count(&acked, p);
        c.wait_until("writes flow", Duration::from_secs(20), |_| {
            let a = acked.clone();
            async move { count(&a, p) >= before + 5 }
        })
        .await;
        let leader = c.leader("load", p as usize).await.expect("leader") as usize;
        c.node(leader).kill9();
        let killed = std::time::Instant::now();
        let at_kill = count(&acked, p);
        c.wait_until("the partition accepts writes again", Duration::from_secs(10), |_| {
            let a = acked.clone();
            async move { count(&a, p) > at_kill + 2 }
        })
        .await;
        eprintln!("round {round}: partition {p} writable again {:?} after killing node {leader}", killed.elapsed());
        c.restart_node(leader);
        c.wait_for_isr("load", 3, Duration::from_secs(60)).await;
    }
    stop.store(true, Ordering::Relaxed);
    for p in producers {
        p.await.expect("producer");
    }

    let acked = acked.lock().expect("lock").clone();
    for p in 0..3u32 {
        // A leader elected moments ago (preferred-leader election after the last
        // restart) learns its followers' progress on their next fetch; until then its HW
        // lags and the tail is not visible yet, as in Kafka.
        let need = acked.get(&p).and_then(|m| m.keys().next_back()).map_or(0, |o| o + 1);
        c.wait_until("the high watermark covers every acknowledged offset", Duration::from_secs(20), |c| async move {
            c.describe("load")
                .await
                .and_then(|t| t["partitions"][p as usize]["high_watermark"].as_u64())
                .is_some_and(|hw| hw >= need)
        })
        .await;
        let log = c.read_all((p % 2) as usize, "load", p).await.expect("read");
        let offsets: Vec<u64> = log.iter().map(|(o, _)| *o).collect();
        assert_eq!(offsets, (0..log.len() as u64).collect::<Vec<_>>(), "partition {p}: dense offsets");
        let mut seen = std::collections::HashSet::new();
        for (_, v) in &log {
            let id = v["id"].as_str().expect("id").to_owned();
            assert!(seen.insert(id.clone()), "partition {p}: {id} appears twice");
        }
        let want = acked.get(&p).cloned().unwrap_or_default();
        assert!(want.len() > 15, "partition {p}: only {} acknowledged", want.len());
        for (offset, id) in &want {
            let got = log.get(*offset as usize).map(|(_, v)| v["id"].as_str().unwrap_or_default().to_owned());
            assert_eq!(got.as_deref(), Some(id.as_str()), "partition {p}: acknowledged {id} at offset {offset}");
        }
    }
}

/// Divergent log (KIP-101): the leader appends records that its followers do not have
/// (followers paused, `acks=1`) and is killed; a follower becomes leader and takes
/// `acks=all` writes; the old leader returns, truncates its unreplicated suffix by leader
/// epoch and converges: once it leads again (it is the preferred replica), its log is
/// exactly the log the new leader served — every `acks=all` record at its acknowledged
/// offset, and none of the divergent records no follower could have fetched (a fetch
/// already in flight when the followers were paused may carry the first one over).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn divergent_log_is_truncated_by_epoch() {
    let mut c = Cluster::start(3, 2).await;
    c.create_topic("div", 1, 3, json!({"min.insync.replicas": 2})).await;
    c.wait_for_isr("div", 3, Duration::from_secs(30)).await;
    let t = c.describe("div").await.expect("describe");
    let replicas: Vec<usize> = t["partitions"][0]["replicas"]
        .as_array()
        .expect("replicas")
        .iter()
        .map(|r| r.as_u64().expect("id") as usize)
        .collect();
    let old_leader = c.leader("div", 0).await.expect("leader") as usize;
    assert_eq!(old_leader, replicas[0], "the preferred replica leads");

    let mut committed = Vec::new();
    for i in 0..5 {
        let (s, b) = c.produce(0, "div", 0, "all", &json!({"phase": "before", "i": i})).await;
        assert_eq!(s, 200, "{b}");
        committed.push((b["offsets"][0]["offset"].as_u64().expect("offset"), json!({"phase": "before", "i": i})));
    }
    // Followers stop fetching; the leader appends what nobody else will ever have.
    for f in &replicas[1..] {
        c.node(*f).pause();
    }
    for i in 0..3 {
        let (s, b) = c.produce(0, "div", 0, "1", &json!({"phase": "divergent", "i": i})).await;
        assert_eq!(s, 200, "{b}");
    }
    c.node(old_leader).kill9();
    for f in &replicas[1..] {
        c.node(*f).resume();
    }
    c.wait_until("a follower leads", Duration::from_secs(20), |c| async move {
        c.leader("div", 0).await.is_some_and(|l| l as usize != old_leader)
    })
    .await;
    for i in 0..5 {
        let value = json!({"phase": "after", "i": i});
        let deadline = std::time::Instant::now() + Duration::from_secs(15);
        let offset = loop {
            let (status, body) = c.produce(1, "div", 0, "all", &value).await;
            if status == 200 {
                break body["offsets"][0]["offset"].as_u64().expect("offset");
            }
            assert!(std::time::Instant::now() < deadline, "the new leader refuses acks=all writes: {status} {body}");
            tokio::time::sleep(Duration::from_millis(100)).await;
        };
        committed.push((offset, value));
    }
    // What the new leader serves, before the old leader returns.
    let reference = c.read_all(0, "div", 0).await.expect("read");
    c.restart_node(old_leader);
    c.wait_until(
        "the old leader is back in the ISR and leads again (preferred)",
        Duration::from_secs(60),
        |c| async move {
            let Some(t) = c.describe("div").await else { return false };
            let p = &t["partitions"][0];
            p["leader"].as_u64() == Some(old_leader as u64) && p["isr"].as_array().map(Vec::len) == Some(3)
        },
    )
    .await;
    // The returning leader's HW catches up on its followers' next fetch.
    let need = reference.len() as u64;
    c.wait_until("the high watermark covers the new leader's log", Duration::from_secs(20), |c| async move {
        c.describe("div").await.and_then(|t| t["partitions"][0]["high_watermark"].as_u64()).is_some_and(|hw| hw >= need)
    })
    .await;
    let log = c.read_all(0, "div", 0).await.expect("read");
    assert_eq!(log, reference, "the returning leader's log converged to the new leader's");
    let offsets: Vec<u64> = log.iter().map(|(o, _)| *o).collect();
    assert_eq!(offsets, (0..log.len() as u64).collect::<Vec<_>>(), "dense offsets");
    let divergent: Vec<&Value> = log.iter().map(|(_, v)| v).filter(|v| v["phase"] == "divergent").collect();
    assert!(
        divergent.iter().all(|v| v["i"] == 0),
        "records appended after the followers were paused survived: {divergent:?}"
    );
    for (offset, value) in &committed {
        assert_eq!(log.get(*offset as usize).map(|(_, v)| v), Some(value), "acks=all record at {offset}");
    }
}
