//! Consumer-group helpers over `fjord-client`: a member as a client keeps it (id and
//! the generation of its last poll), polls, commits, and the group's view of who owns
//! what.

use fjord_client::{Client, Commit, CommitOffset, Join, ReadOptions, Result};
use serde_json::Value;
use std::collections::{BTreeMap, BTreeSet};

/// (topic, partition)
pub type Tp = (String, u32);

fn tps(v: &[fjord_client::TopicPartition]) -> BTreeSet<Tp> {
    v.iter().map(|tp| (tp.topic.clone(), tp.partition)).collect()
}

/// A member as a client sees it: its id and the generation of its last poll.
#[derive(Debug, Clone)]
pub struct Member {
    pub group: String,
    pub id: String,
    pub generation: u32,
}

pub async fn join(api: &Client, group: &str, join: &Join) -> Member {
    let m = api.join(group, join).await.unwrap_or_else(|e| panic!("join {group}: {e}"));
    Member { group: group.to_owned(), id: m.member_id, generation: m.generation }
}

pub struct Polled {
    pub generation: u32,
    pub assignment: BTreeSet<Tp>,
    /// (topic, partition, offset, value)
    pub records: Vec<(String, u32, u64, Value)>,
}

/// One poll of `m`, long-polling up to `timeout_ms`, at most 200 records.
pub async fn poll(api: &Client, m: &Member, timeout_ms: u64) -> Result<Polled> {
    let opts = ReadOptions { timeout_ms: Some(timeout_ms), max_records: Some(200), ..ReadOptions::default() };
    let r = api.poll(&m.group, &m.id, &opts).await?;
    let records =
        r.records.into_iter().map(|r| (r.topic, r.partition, r.offset, r.value.unwrap_or(Value::Null))).collect();
    Ok(Polled { generation: r.generation, assignment: tps(&r.assignment), records })
}

/// Commits, per partition, the offset after the last record of `records`.
pub async fn commit(api: &Client, m: &Member, records: &[(String, u32, u64, Value)]) -> Result<()> {
    let mut next: BTreeMap<Tp, u64> = BTreeMap::new();
    for (t, p, o, _) in records {
        let e = next.entry((t.clone(), *p)).or_default();
        *e = (*e).max(o + 1);
    }
    let offsets =
        next.into_iter().map(|((topic, partition), offset)| CommitOffset { topic, partition, offset, metadata: None });
    let commit = Commit { member_id: Some(m.id.clone()), generation: Some(m.generation), offsets: offsets.collect() };
    api.commit(&m.group, &commit).await
}

/// The members' current assignments (and how many partitions each still waits for),
/// per the group description; `None` if it cannot be read.
pub async fn assignments(api: &Client, group: &str) -> Option<BTreeMap<String, (BTreeSet<Tp>, usize)>> {
    let d = api.describe_group(group).await.ok()?;
    Some(d.members.into_iter().map(|m| (m.member_id, (tps(&m.assignment), m.pending.len()))).collect())
}

/// Whether `members` are exactly the group's members, with disjoint assignments that
/// together cover `all`, and nothing pending.
pub fn settled(a: &BTreeMap<String, (BTreeSet<Tp>, usize)>, members: &BTreeSet<String>, all: &BTreeSet<Tp>) -> bool {
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
