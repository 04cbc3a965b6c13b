//! Consumer groups (`/v1/groups/…`) and of Server-Sent Events on
//! the partition read route: the whole router over a real storage node (RocksDB in a
//! temp dir, background tasks running) and the embedded coordinator, driven with
//! `oneshot` (no socket).
//!
//! Every rejected request is checked for its status, its stable error `code`, and for
//! having changed nothing: the group's description (generation, members, who owns what,
//! what is pending, committed offsets) is the same afterwards, and a group that did not
//! exist still does not.
//!
//! Session eviction is not tested here (the process tests cover it): every member keeps
//! the default 45 s session, far longer than any test here runs, so no member expires
//! while a test relies on it. Waits are on conditions with deadlines, never on sleeps.

mod assignment;
mod commits;
mod input;
mod polls;

use crate::common::*;
use axum::http::StatusCode;
use serde_json::{json, Value};
use std::collections::{BTreeMap, BTreeSet};

impl Harness {
    /// Produces `n` records to one partition, values `"p{partition}-{i}"` from `from`.
    pub async fn fill(&self, topic: &str, partition: u32, from: u64, n: u64) {
        let records: Vec<Value> =
            (from..from + n).map(|i| json!({"value": format!("p{partition}-{i}"), "partition": partition})).collect();
        self.produce(topic, Value::Array(records)).await;
    }

    // --- groups ---

    /// Joins, asserting 200; returns the answer.
    pub async fn join(&self, group: &str, body: Value) -> Value {
        self.post_json(&format!("/v1/groups/{group}/members"), &body).await.expect_status(200)
    }

    /// Joins and returns the member id.
    pub async fn join_id(&self, group: &str, body: Value) -> String {
        member_id(&self.join(group, body).await)
    }

    /// Polls, asserting 200; returns the answer.
    pub async fn poll(&self, group: &str, member: &str, query: &str) -> Value {
        self.get(&format!("/v1/groups/{group}/members/{member}/records?{query}")).await.expect_status(200)
    }

    pub async fn describe(&self, group: &str) -> Value {
        self.get(&format!("/v1/groups/{group}")).await.expect_status(200)
    }

    /// What must not change when a request is refused: the group's description without
    /// the members' `last_seen_ms_ago` (a clock), or `null` for a group that does not exist.
    pub async fn fingerprint(&self, group: &str) -> Value {
        let reply = self.get(&format!("/v1/groups/{group}")).await;
        if reply.status == StatusCode::NOT_FOUND {
            reply.expect_error(404, "unknown_group");
            return Value::Null;
        }
        let mut d = reply.expect_status(200);
        for m in d["members"].as_array_mut().expect("members array") {
            m.as_object_mut().expect("member object").remove("last_seen_ms_ago");
        }
        d
    }

    /// The group's committed offsets in `topic`, by partition.
    pub async fn committed(&self, group: &str, topic: &str) -> BTreeMap<u32, u64> {
        let d = self.describe(group).await;
        d["offsets"]
            .as_array()
            .expect("offsets array")
            .iter()
            .filter(|o| o["topic"] == topic)
            .map(|o| (as_u32(&o["partition"]), o["offset"].as_u64().expect("offset")))
            .collect()
    }

    /// GET /v1/groups/{g}/offsets as rows by partition (one topic).
    pub async fn offset_rows(&self, group: &str) -> BTreeMap<u32, Value> {
        let body = self.get(&format!("/v1/groups/{group}/offsets")).await.expect_status(200);
        assert_eq!(body["group"], group);
        body["offsets"]
            .as_array()
            .expect("offsets array")
            .iter()
            .map(|r| (as_u32(&r["partition"]), r.clone()))
            .collect()
    }

    pub async fn group_names(&self) -> Vec<String> {
        let list = self.get("/v1/groups").await.expect_status(200);
        list["groups"]
            .as_array()
            .expect("groups array")
            .iter()
            .map(|g| g["group"].as_str().expect("name").to_owned())
            .collect()
    }

    /// Polls each member in turn, twice, asserting after every poll that no partition is
    /// owned twice; afterwards nothing may be pending. Returns each member's assignment.
    /// Two rounds always suffice: in the first every old owner releases what moved away
    /// from it, in the second every member takes what is left of its target.
    pub async fn settle(&self, group: &str, members: &[&str]) -> BTreeMap<String, BTreeSet<u32>> {
        let mut out = BTreeMap::new();
        for _round in 0..2 {
            for m in members {
                let answer = self.poll(group, m, "").await;
                out.insert((*m).to_owned(), partitions(&answer["assignment"]));
                assert_owned_at_most_once(&self.describe(group).await);
            }
        }
        let d = self.describe(group).await;
        for m in d["members"].as_array().expect("members") {
            assert_eq!(m["pending"], json!([]), "still pending after two rounds: {d}");
        }
        out
    }
}

pub fn as_u32(v: &Value) -> u32 {
    u32::try_from(v.as_u64().unwrap_or_else(|| panic!("not a u32: {v}"))).expect("u32")
}

pub fn member_id(answer: &Value) -> String {
    answer["member_id"].as_str().unwrap_or_else(|| panic!("no member_id in {answer}")).to_owned()
}

pub fn generation(answer: &Value) -> u64 {
    answer["generation"].as_u64().unwrap_or_else(|| panic!("no generation in {answer}"))
}

/// The partition numbers of a `[{"topic", "partition"}]` list.
pub fn partitions(list: &Value) -> BTreeSet<u32> {
    list.as_array().unwrap_or_else(|| panic!("not a list: {list}")).iter().map(|tp| as_u32(&tp["partition"])).collect()
}

/// `(partition, offset)` of each record of a poll answer, in answer order.
pub fn polled(answer: &Value) -> Vec<(u32, u64)> {
    answer["records"]
        .as_array()
        .unwrap_or_else(|| panic!("no records in {answer}"))
        .iter()
        .map(|r| (as_u32(&r["partition"]), r["offset"].as_u64().expect("offset")))
        .collect()
}

pub fn none() -> Vec<(u32, u64)> {
    Vec::new()
}

pub fn all(n: u32) -> BTreeSet<u32> {
    (0..n).collect()
}

pub fn set<const N: usize>(ps: [u32; N]) -> BTreeSet<u32> {
    ps.into_iter().collect()
}

/// No partition is owned by two members in a group description.
#[track_caller]
pub fn assert_owned_at_most_once(description: &Value) {
    let mut seen = BTreeSet::new();
    for m in description["members"].as_array().expect("members") {
        for tp in m["assignment"].as_array().expect("assignment") {
            let key = (tp["topic"].to_string(), as_u32(&tp["partition"]));
            assert!(seen.insert(key), "a partition is owned twice: {description}");
        }
    }
}

/// A join body.
pub fn member(topic: &str, client: &str, assignor: &str, reset: &str) -> Value {
    json!({"topics": [topic], "client_id": client, "assignor": assignor, "auto_offset_reset": reset})
}
