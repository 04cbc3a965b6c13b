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
}
