//! Stream processing against a real `fjord standalone`: pipelines built with the Rust
//! DSL run in this process ([`Processor`]), pipelines defined as JSON run as real
//! `fjord processor` processes, and the results are compared with references computed
//! here from the same input.

mod common;

use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use common::{create_topic, produce, readme, readme_block, wait_until, Standalone};
use fjord_client::{Client, NewTopic, Record, Start};
use fjord_streams::{Processor, ProcessorConfig, Topology, WindowSpec};
use serde_json::{json, Value};

/// An hour ago, to the minute: event times that retention (7 days) leaves alone.
fn recent() -> i64 {
    let t = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(0, |d| d.as_millis() as i64);
    (t - 3_600_000).div_euclid(60_000) * 60_000
}

fn order(region: &str, amount: u64, ts: i64) -> Record {
    Record { value: Some(json!({"region": region, "amount": amount})), timestamp: Some(ts), ..Record::default() }
}

/// Every record of every partition of `topic`; `None` if a read failed (a partition
/// without a leader for a moment).
async fn try_read_topic(api: &Client, topic: &str) -> Option<Vec<fjord_client::ConsumedRecord>> {
    let d = api.describe_topic(topic).await.ok()?;
    let mut out = Vec::new();
    for p in 0..d.partitions.len() as u32 {
        out.extend(api.read_to_end(topic, p, Start::Earliest).await.ok()?);
    }
    Some(out)
}

/// Every record of every partition of `topic`.
async fn read_topic(api: &Client, topic: &str) -> Vec<fjord_client::ConsumedRecord> {
    try_read_topic(api, topic).await.expect("read the topic")
}

/// How many records `topic` holds now (0 while a read fails).
async fn count_topic(api: &Client, topic: &str) -> usize {
    try_read_topic(api, topic).await.map_or(0, |r| r.len())
}

/// `(key, window_start) → values in output order`.
fn updates(records: &[fjord_client::ConsumedRecord]) -> BTreeMap<(String, i64), Vec<Value>> {
    let mut out: BTreeMap<(String, i64), Vec<Value>> = BTreeMap::new();
    for r in records {
        let v = r.value.clone().unwrap_or(Value::Null);
        let k = (v["key"].as_str().unwrap_or_default().to_owned(), v["window_start"].as_i64().unwrap_or(0));
        out.entry(k).or_default().push(v["value"].clone());
    }
    out
}

/// Orders per (region, window start) for tumbling windows of `window_ms`.
fn counts_per_window(orders: &[Record], window_ms: i64) -> BTreeMap<(String, i64), u64> {
    let mut expected: BTreeMap<(String, i64), u64> = BTreeMap::new();
    for r in orders {
        let region = r.value.as_ref().and_then(|v| v["region"].as_str()).unwrap_or_default().to_owned();
        let ts = r.timestamp.unwrap_or(0);
        *expected.entry((region, ts.div_euclid(window_ms) * window_ms)).or_default() += 1;
    }
    expected
}

/// Every window's count updates are exactly 1, 2, …, n: none twice, none skipped.
fn assert_each_window_counts_once(
    out: &[fjord_client::ConsumedRecord],
    expected: &BTreeMap<(String, i64), u64>,
    context: &dyn Fn() -> String,
) {
    let got = updates(out);
    for (k, values) in &got {
        let n = expected.get(k).copied().unwrap_or(0);
        let want: Vec<Value> = (1..=n).map(|i| json!(i)).collect();
        assert_eq!(values, &want, "window {k:?}; {}", context());
    }
    assert_eq!(got.len(), expected.len(), "every window has updates; {}", context());
}

fn spawn_processor(api_base: &str, def: &Path, instance: &str, log: &Path) -> Child {
    let out = std::fs::File::create(log).expect("log");
    Command::new(env!("CARGO_BIN_EXE_fjord"))
        .args(["processor", "--url", api_base, "--pipeline"])
        .arg(def)
        .args(["--instance", instance, "--session-timeout-ms", "3000"])
        .env("RUST_LOG", "info,fjord_streams=debug")
        .stdin(Stdio::null())
        .stdout(out.try_clone().expect("log"))
        .stderr(out)
        .spawn()
        .expect("spawn fjord processor")
}

/// A windowed count per region through a repartition, with out-of-order records within
/// the grace period and late ones beyond it, equals the reference computed here: each
/// window's updates are exactly 1, 2, …, n (none twice, none skipped), late records are
/// dropped and counted; and the repartition keeps each key's order.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn windowed_counts_through_a_repartition_equal_the_reference() {
    let dir = tempfile::tempdir().expect("tempdir");
    let server = Standalone::start(&dir.path().join("data")).await;
    let api = server.api();
    // One partition, so the order records reach the windows is the order written.
    create_topic(&api, "orders", 1).await;
    create_topic(&api, "counts", 2).await;
    let mut records = Vec::new();
    let mut t = recent();
    let regions = ["eu", "us", "apac"];
    for i in 0..600u64 {
        t += 37;
        // Every 7th record 1.5 s back (within the 2 s grace); every 50th 30 s back (late).
        let ts = if i % 50 == 49 {
            t - 30_000
        } else if i % 7 == 0 {
            t - 1_500
        } else {
            t
        };
        records.push(order(regions[(i % 3) as usize], i, ts));
    }
    for chunk in records.chunks(100) {
        produce(&api, "orders", chunk.to_vec()).await;
    }
    let topology = Topology::source(["orders"])
        .key_by(|r| fjord_streams::record::as_key(r.value.get("region")))
        .window(WindowSpec::tumbling(5_000).grace(2_000))
        .count()
        .sink("counts")
        .expect("valid");
    let processor = Processor::new(api.clone(), topology, ProcessorConfig::new("region-counts")).expect("processor");
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let run = tokio::spawn(async move {
        let r = processor.run(async { stopped.await.ok().unwrap_or(()) }).await;
        (r, processor.status())
    });
    // Reference: stream time over the input order; a record is late when its window's
    // end + grace is at or before it.
    let mut expected: BTreeMap<(String, i64), u64> = BTreeMap::new();
    let mut late = 0;
    let mut st = i64::MIN;
    for r in &records {
        let ts = r.timestamp.unwrap_or(0);
        st = st.max(ts);
        let start = ts.div_euclid(5_000) * 5_000;
        if start + 5_000 + 2_000 <= st {
            late += 1;
            continue;
        }
        let region = r.value.as_ref().and_then(|v| v["region"].as_str()).unwrap_or_default().to_owned();
        *expected.entry((region, start)).or_default() += 1;
    }
    assert!(late >= 10, "{late}");
    let total: u64 = expected.values().sum();
    wait_until("every taken record is counted", Duration::from_secs(60), || async {
        read_topic(&api, "counts").await.len() as u64 >= total
    })
    .await;
    let out = read_topic(&api, "counts").await;
    assert_eq!(out.len() as u64, total, "one update per record taken");
    assert_each_window_counts_once(&out, &expected, &String::new);
    // The repartition topic kept each region's order of the source.
    let moved = read_topic(&api, "region-counts-repartition-1").await;
    let mut seen: BTreeMap<String, Vec<u64>> = BTreeMap::new();
    for r in &moved {
        let v = r.value.clone().unwrap_or(Value::Null);
        seen.entry(r.key.clone().unwrap_or_default()).or_default().push(v["amount"].as_u64().unwrap_or(0));
    }
    for (region, amounts) in &seen {
        assert!(amounts.windows(2).all(|w| w[0] < w[1]), "{region}: order kept");
    }
    assert_eq!(seen.values().map(Vec::len).sum::<usize>(), records.len());
    let _ = stop.send(());
    let (result, status) = run.await.expect("join");
    result.expect("the processor ran cleanly");
    let counted_late: u64 = status.tasks.iter().map(|t| t.late_records).sum();
    assert_eq!(counted_late, late, "late records counted: {status:?}");
}

/// A stream–table join against a compacted topic: payments enriched with the customer
/// row of their key, including a row updated while the pipeline runs.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn payments_are_enriched_from_a_compacted_customers_table() {
    let dir = tempfile::tempdir().expect("tempdir");
    let server = Standalone::start(&dir.path().join("data")).await;
    let api = server.api();
    let mut customers = NewTopic::new("customers", 2);
    customers.config.insert("cleanup.policy".into(), json!("compact"));
    api.create_topic(&customers).await.expect("customers");
    create_topic(&api, "payments", 2).await;
    create_topic(&api, "enriched", 1).await;
    produce(
        &api,
        "customers",
        vec![Record::keyed("c1", json!({"name": "Ada"})), Record::keyed("c2", json!({"name": "Bo"}))],
    )
    .await;
    let topology = Topology::source(["payments"])
        .join_table("customers", |p, c| json!({"amount": p.value["amount"], "name": c.map(|c| c["name"].clone())}))
        .sink("enriched")
        .expect("valid");
    let processor = Processor::new(api.clone(), topology, ProcessorConfig::new("enrich")).expect("processor");
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let run = tokio::spawn(async move { processor.run(async { stopped.await.ok().unwrap_or(()) }).await });
    produce(
        &api,
        "payments",
        vec![
            Record::keyed("c1", json!({"amount": 10})),
            Record::keyed("c2", json!({"amount": 20})),
            Record::keyed("c3", json!({"amount": 30})),
        ],
    )
    .await;
    wait_until("two enriched payments", Duration::from_secs(30), || async {
        read_topic(&api, "enriched").await.len() >= 2
    })
    .await;
    // A table update is seen by later records.
    produce(&api, "customers", vec![Record::keyed("c3", json!({"name": "Cy"}))]).await;
    wait_until("the new row is in the table", Duration::from_secs(30), || async {
        produce(&api, "payments", vec![Record::keyed("c3", json!({"amount": 31}))]).await;
        read_topic(&api, "enriched").await.iter().any(|r| r.value.as_ref().is_some_and(|v| v["name"] == "Cy"))
    })
    .await;
    let out: BTreeSet<String> =
        read_topic(&api, "enriched").await.iter().filter_map(|r| r.value.as_ref().map(|v| v.to_string())).collect();
    assert!(out.contains(&json!({"amount": 10, "name": "Ada"}).to_string()), "{out:?}");
    assert!(out.contains(&json!({"amount": 20, "name": "Bo"}).to_string()), "{out:?}");
    assert!(!out.iter().any(|v| v.contains("\"amount\":30")), "c3 had no row when its first payment came: {out:?}");
    let _ = stop.send(());
    run.await.expect("join").expect("the processor ran cleanly");
}

/// Two `fjord processor` instances share a pipeline (JSON definition, jq expressions);
/// one is killed with SIGKILL mid-stream, possibly between a batch's writes and its
/// commit. Its tasks move to the other, which restores their state from the changelog
/// and redoes the begun batches: every window's updates are still exactly 1, 2, …, n —
/// no record counted twice, none missed, no output written twice.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_killed_processor_instance_loses_and_duplicates_nothing() {
    let dir = tempfile::tempdir().expect("tempdir");
    let server = Standalone::start(&dir.path().join("data")).await;
    let api = server.api();
    create_topic(&api, "orders", 4).await;
    create_topic(&api, "counts", 2).await;
    let def = json!({
        "name": "per-region",
        "source": ["orders"],
        "steps": [
            {"filter": ".amount >= 0"},
            {"key_by": ".region"},
            {"aggregate": {"op": "count", "window": {"tumbling": {"size_ms": 60000}}, "grace_ms": 3600000}}
        ],
        "sink": "counts"
    });
    let def_path = dir.path().join("pipeline.json");
    std::fs::write(&def_path, def.to_string()).expect("write");
    let a = spawn_processor(&server.base, &def_path, "a", &dir.path().join("a.log"));
    let b = spawn_processor(&server.base, &def_path, "b", &dir.path().join("b.log"));
    // The input: 12 regions, times rising by 250 ms; written in rounds of 50 by a
    // producer that keeps going while the instance is killed.
    let regions: Vec<String> = (0..12).map(|i| format!("r{i}")).collect();
    let base = recent();
    let all: Vec<Record> =
        (0..6_000u64).map(|i| order(&regions[(i * 7 % 12) as usize], i, base + (i as i64) * 250)).collect();
    let expected = counts_per_window(&all, 60_000);
    let producer = {
        let api = api.clone();
        let all = all.clone();
        tokio::spawn(async move {
            for chunk in all.chunks(50) {
                produce(&api, "orders", chunk.to_vec()).await;
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
        })
    };
    let logs = || {
        let mut text = String::new();
        for entry in std::fs::read_dir(dir.path()).into_iter().flatten().flatten() {
            let path = entry.path();
            if path.extension().is_some_and(|e| e == "log") {
                text += &format!("--- {}\n{}\n", path.display(), std::fs::read_to_string(&path).unwrap_or_default());
            }
        }
        text
    };
    // Four kills, alternating between the instances, each restarted after: every kill
    // may land between a batch's changelog write and its commit.
    let mut procs = [("a", a), ("b", b)];
    let mut kills = 0;
    let mut threshold = 400;
    while kills < 4 {
        wait_until("the pipeline moves on", Duration::from_secs(60), || async {
            read_topic(&api, "counts").await.len() > threshold
        })
        .await;
        let (name, child) = &mut procs[kills % 2];
        let log = dir.path().join(format!("{name}.log"));
        wait_until(&format!("{name} has tasks"), Duration::from_secs(30), || async {
            std::fs::read_to_string(&log).unwrap_or_default().contains("task started")
        })
        .await;
        child.kill().expect("SIGKILL");
        child.wait().expect("reap");
        let _ = std::fs::rename(&log, dir.path().join(format!("{name}.{kills}.log")));
        *child = spawn_processor(&server.base, &def_path, name, &log);
        kills += 1;
        threshold += 500;
    }
    producer.await.expect("producer");
    let total: u64 = expected.values().sum();
    wait_until("every record counted", Duration::from_secs(90), || async {
        read_topic(&api, "counts").await.len() as u64 >= total
    })
    .await;
    // Give a straggler a moment to show: nothing more may arrive beyond the total.
    let settled = read_topic(&api, "counts").await;
    assert_eq!(settled.len() as u64, total, "one update per record; logs:\n{}", logs());
    assert_each_window_counts_once(&settled, &expected, &|| format!("logs:\n{}", logs()));
    let all_logs = logs();
    eprintln!("batches redone after a kill: {}", all_logs.matches("redo=true").count());
    for (_, child) in &mut procs {
        let _ = child.kill();
        let _ = child.wait();
    }
}

/// Runs `script` with bash against `server`: curl answers end with a newline, `fjord`
/// is the binary under test and talks to the server.
async fn run_script(server: &Standalone, script: &str) -> String {
    let bin_dir = Path::new(env!("CARGO_BIN_EXE_fjord")).parent().expect("bin dir").to_owned();
    let path = format!("{}:{}", bin_dir.display(), std::env::var("PATH").unwrap_or_default());
    let script = format!(
        "set -euo pipefail\ncurl() {{ command curl --fail-with-body -w '\\n' \"$@\"; }}\n{}",
        script.replace("localhost:8080", &format!("127.0.0.1:{}", server.port))
    );
    let run = tokio::process::Command::new("bash")
        .arg("-c")
        .arg(&script)
        .env("PATH", path)
        .env("FJORD_URL", &server.base)
        .output();
    let out = tokio::time::timeout(Duration::from_secs(60), run).await.expect("the script finished").expect("bash");
    let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
    assert!(
        out.status.success(),
        "script failed: {}\nstdout:\n{stdout}\nstderr:\n{}",
        out.status,
        String::from_utf8_lossy(&out.stderr)
    );
    stdout
}

/// The README's two pipeline examples, run verbatim after its curl session against a
/// fresh `fjord standalone` (which runs the pipelines itself): each prints exactly what
/// the README says it prints. Then `fjord pipeline delete` removes a pipeline with its
/// group and internal topics.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn readme_pipeline_examples_work_as_printed() {
    let readme = readme();
    let dir = tempfile::tempdir().expect("tempdir");
    let server = Standalone::start(&dir.path().join("data")).await;
    run_script(&server, &readme_block(&readme, "session")).await;
    for (example, output) in [("pipelines", "pipelines-output"), ("join", "join-output")] {
        let printed = readme_block(&readme, output);
        let want: Vec<&str> = printed.lines().collect();
        let got = run_script(&server, &readme_block(&readme, example)).await;
        let lines: Vec<&str> = got.lines().collect();
        let tail = &lines[lines.len().saturating_sub(want.len())..];
        assert_eq!(tail, want.as_slice(), "{example} prints what the README says; all it printed:\n{got}");
    }
    let api = server.api();
    let d = api.describe_pipeline("orders-per-region").await.expect("describe");
    assert_eq!(d["state"], "running", "{d}");
    let lag: u64 = d["inputs"].as_array().into_iter().flatten().filter_map(|i| i["lag"].as_u64()).sum();
    assert_eq!(lag, 0, "{d}");
    run_script(&server, "fjord pipeline delete orders-per-region").await;
    let topics: Vec<String> = api.list_topics().await.expect("topics").into_iter().map(|t| t.name).collect();
    assert!(!topics.iter().any(|t| t.starts_with("orders-per-region-")), "internal topics deleted: {topics:?}");
    assert!(topics.contains(&"orders-per-region".to_owned()), "the sink stays");
    let groups: Vec<String> = api.list_groups().await.expect("groups").into_iter().map(|g| g.group).collect();
    assert!(!groups.contains(&"orders-per-region".to_owned()), "its group is deleted: {groups:?}");
}

/// A pipeline on a 3-node cluster (RF=3, `min.insync.replicas=2` for every topic it
/// reads and writes, its internal ones included) while the storage node leading the
/// most partitions is killed with SIGKILL mid-stream and later restarted: the processor
/// rides out the failover (retrying its idempotent writes, re-reading its changelog up
/// to the new leader's log end) and every window's updates are still exactly 1, 2, …, n.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_storage_leader_killed_under_a_pipeline_loses_and_duplicates_nothing() {
    // The processor runs in this test: its log is the test's output (shown on failure).
    let _ = tracing_subscriber::fmt()
        .with_env_filter(tracing_subscriber::EnvFilter::new("fjord_streams=debug"))
        .with_test_writer()
        .try_init();
    let mut c = common::cluster::Cluster::start(3, 2).await;
    let strict = json!({"min.insync.replicas": 2});
    c.create_topic("orders", 4, 3, strict.clone()).await;
    c.create_topic("counts", 2, 3, strict.clone()).await;
    c.wait_for_isr("orders", 3, Duration::from_secs(30)).await;
    c.wait_for_isr("counts", 3, Duration::from_secs(30)).await;
    let topology = Topology::source(["orders"])
        .key_by(|r| fjord_streams::record::as_key(r.value.get("region")))
        .window(WindowSpec::tumbling(60_000).grace(3_600_000))
        .count()
        .sink("counts")
        .expect("valid");
    let mut cfg = ProcessorConfig::new("cluster-counts");
    cfg.replication_factor = Some(3);
    cfg.topic_config.insert("min.insync.replicas".into(), json!(2));
    let processor = Processor::new(c.api(0), topology, cfg).expect("processor");
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let run = tokio::spawn(async move {
        let r = processor.run(async { stopped.await.ok().unwrap_or(()) }).await;
        (r, processor.status())
    });
    // Orders written through the other gateway, each batch with an Idempotency-Key and
    // retried until acknowledged: the input holds each order exactly once.
    let regions: Vec<String> = (0..8).map(|i| format!("r{i}")).collect();
    let base = recent();
    let all: Vec<Record> =
        (0..2_000u64).map(|i| order(&regions[(i * 5 % 8) as usize], i, base + (i as i64) * 100)).collect();
    let expected = counts_per_window(&all, 60_000);
    let producer = {
        let api = c.api(1);
        tokio::spawn(async move {
            for (n, chunk) in all.chunks(50).enumerate() {
                let opts = fjord_client::ProduceOptions {
                    acks: fjord_client::Acks::All,
                    idempotency_key: Some(format!("orders-{n}")),
                    timeout_ms: Some(5_000),
                    ..Default::default()
                };
                let deadline = std::time::Instant::now() + Duration::from_secs(60);
                loop {
                    match api.produce("orders", None, chunk, &opts).await {
                        Ok(r) if r.all_written() => break,
                        other => {
                            assert!(std::time::Instant::now() < deadline, "batch {n} never acknowledged: {other:?}");
                            tokio::time::sleep(Duration::from_millis(100)).await;
                        }
                    }
                }
                tokio::time::sleep(Duration::from_millis(30)).await;
            }
        })
    };
    let api = c.api(0);
    wait_until("the pipeline is running", Duration::from_secs(60), || async {
        count_topic(&api, "counts").await > 300
    })
    .await;
    // The node that leads the most partitions of the pipeline's topics.
    let mut leads: BTreeMap<u32, usize> = BTreeMap::new();
    for t in ["orders", "counts", "cluster-counts-changelog-1", "cluster-counts-repartition-1"] {
        if let Some(d) = c.describe(t).await {
            for p in d.partitions {
                if let Some(l) = p.leader {
                    *leads.entry(l).or_default() += 1;
                }
            }
        }
    }
    let victim = leads.iter().max_by_key(|(_, n)| **n).map(|(id, _)| *id).expect("a leader");
    c.node(victim as usize).kill9();
    wait_until("the pipeline moves on without it", Duration::from_secs(60), || async {
        count_topic(&api, "counts").await > 900
    })
    .await;
    c.restart_node(victim as usize);
    producer.await.expect("producer");
    let total: u64 = expected.values().sum();
    let deadline = std::time::Instant::now() + Duration::from_secs(120);
    while (count_topic(&api, "counts").await as u64) < total && std::time::Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    let out = read_topic(&api, "counts").await;
    let _ = stop.send(());
    let (result, status) = run.await.expect("join");
    let offsets = api.group_offsets("cluster-counts").await;
    assert!(
        out.len() as u64 >= total,
        "only {} of {total} updates; processor: {result:?} {status:?}; group: {offsets:?}",
        out.len()
    );
    assert_eq!(out.len() as u64, total, "one update per order; processor: {result:?} {status:?}");
    assert_each_window_counts_once(&out, &expected, &String::new);
    result.expect("the processor ran through the failover");
}

/// A stream–stream join of orders with payments (co-partitioned, keyed by order id)
/// within 5 s, against the reference computed here: exactly the pairs of the same key
/// whose times are at most 5 s apart, each once.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stream_join_pairs_exactly_the_records_within_its_window() {
    let dir = tempfile::tempdir().expect("tempdir");
    let server = Standalone::start(&dir.path().join("data")).await;
    let api = server.api();
    create_topic(&api, "orders", 3).await;
    create_topic(&api, "payments", 3).await;
    create_topic(&api, "paid", 1).await;
    let base = recent();
    let mut orders = Vec::new();
    let mut payments = Vec::new();
    for i in 0..300i64 {
        let id = format!("order-{}", i % 60);
        orders.push((id.clone(), i, base + i * 1_000));
        // Every third payment comes 20 s late for its order: no pair.
        let lag = if i % 3 == 0 { 20_000 } else { (i % 5) * 1_000 };
        payments.push((id, i, base + i * 1_000 + lag));
    }
    let records = |rows: &[(String, i64, i64)]| -> Vec<Record> {
        rows.iter()
            .map(|(id, n, ts)| Record {
                key: Some(id.clone()),
                value: Some(json!({"n": n})),
                timestamp: Some(*ts),
                ..Record::default()
            })
            .collect()
    };
    produce(&api, "orders", records(&orders)).await;
    produce(&api, "payments", records(&payments)).await;
    let topology = Topology::source(["orders"])
        .join_stream(
            "payments",
            fjord_streams::JoinWindow::within(5_000).grace(3_600_000),
            |o, p| json!({"order": o.value["n"], "payment": p.value["n"]}),
        )
        .sink("paid")
        .expect("valid");
    let processor = Processor::new(api.clone(), topology, ProcessorConfig::new("paid")).expect("processor");
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let run = tokio::spawn(async move { processor.run(async { stopped.await.ok().unwrap_or(()) }).await });
    let expected: BTreeSet<(i64, i64)> = orders
        .iter()
        .flat_map(|(id, n, t)| {
            payments
                .iter()
                .filter(move |(pid, _, pt)| pid == id && (pt - t).abs() <= 5_000)
                .map(move |(_, m, _)| (*n, *m))
        })
        .collect();
    assert!(expected.len() > 100, "{}", expected.len());
    wait_until("every pair is written", Duration::from_secs(60), || async {
        count_topic(&api, "paid").await >= expected.len()
    })
    .await;
    let out = read_topic(&api, "paid").await;
    let got: Vec<(i64, i64)> = out
        .iter()
        .filter_map(|r| {
            r.value.as_ref().map(|v| (v["order"].as_i64().unwrap_or(-1), v["payment"].as_i64().unwrap_or(-1)))
        })
        .collect();
    assert_eq!(got.len(), expected.len(), "each pair once");
    assert_eq!(got.into_iter().collect::<BTreeSet<_>>(), expected);
    let _ = stop.send(());
    run.await.expect("join").expect("the processor ran cleanly");
}

/// Bad input to the pipeline commands: a definition file that is not JSON, and one that
/// does not compile, are refused by `fjord processor --pipeline` with exit 2 and where it
/// is wrong; `fjord pipeline create` of a definition the server refuses exits 2 with the
/// server's message, and nothing is stored.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pipeline_commands_refuse_bad_definitions_clearly() {
    let dir = tempfile::tempdir().expect("tempdir");
    let server = Standalone::start(&dir.path().join("data")).await;
    create_topic(&server.api(), "in", 1).await;
    create_topic(&server.api(), "out", 1).await;
    let not_json = dir.path().join("not-json.json");
    std::fs::write(&not_json, "{name: oops").expect("write");
    let bad = dir.path().join("bad.json");
    std::fs::write(
        &bad,
        json!({"name": "p", "source": ["in"], "steps": [{"filter": ".a >"}], "sink": "out"}).to_string(),
    )
    .expect("write");
    let fjord = |args: &[&str]| {
        Command::new(env!("CARGO_BIN_EXE_fjord")).args(args).args(["--url", &server.base]).output().expect("run fjord")
    };
    for (args, says) in [
        (vec!["processor", "--pipeline", not_json.to_str().unwrap_or_default()], "not a pipeline definition"),
        (vec!["processor", "--pipeline", bad.to_str().unwrap_or_default()], "steps[0].filter (at character"),
        (vec!["pipeline", "create", bad.to_str().unwrap_or_default()], "invalid_pipeline"),
    ] {
        let out = fjord(&args);
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(2), "{args:?}: {stderr}");
        assert!(stderr.contains(says), "{args:?} should say {says:?}: {stderr}");
    }
    assert!(server.api().list_pipelines().await.expect("list").is_empty(), "nothing stored");
}

/// **The in-process processor stays within its gateway's `max_timeout_ms`.** With the
/// gateway's maximum at 1 s (below the processor's own 5 s write and table waits), a
/// stored pipeline still runs: every input reaches the sink. Before, each of its writes
/// asked for `timeout_ms=5000`, was refused as `invalid_request`, and the pipeline
/// restarted forever without output.
#[tokio::test(flavor = "multi_thread")]
async fn a_pipeline_runs_under_a_gateway_whose_max_timeout_is_short() {
    let dir = tempfile::tempdir().expect("tempdir");
    let config = dir.path().join("fjord.toml");
    std::fs::write(&config, "[gateway]\nmax_timeout_ms = 1000\n").expect("config");
    let server = Standalone::start_with(
        &dir.path().join("data"),
        common::free_port(),
        &["--config", config.to_str().expect("utf-8")],
    )
    .await;
    let api = server.api();
    create_topic(&api, "short-in", 2).await;
    create_topic(&api, "short-out", 2).await;
    let def = json!({"name": "short", "source": ["short-in"], "sink": "short-out",
                     "steps": [{"filter": ".amount > 0"}, {"map": "{region, doubled: (.amount * 2)}"}]});
    api.create_pipeline(&def).await.expect("create the pipeline");
    let ts = recent();
    produce(&api, "short-in", (1..=20).map(|i| order("eu", i, ts + i as i64)).collect()).await;
    wait_until("every input reaches the sink", Duration::from_secs(60), || async {
        count_topic(&api, "short-out").await == 20
    })
    .await;
    let mut doubled: Vec<u64> =
        read_topic(&api, "short-out").await.iter().filter_map(|r| r.value.as_ref()?["doubled"].as_u64()).collect();
    doubled.sort_unstable();
    assert_eq!(doubled, (1..=20).map(|i| i * 2).collect::<Vec<_>>());
}
