//! Assignment by each assignor, and the hand-over of moving partitions.

use super::*;
use crate::common::*;
use serde_json::{json, Value};
use std::collections::{BTreeMap, BTreeSet};

/// Two members `a` and `b` join a 6-partition topic with `assignor`; after each polls
/// once more (the hand-over), their assignments are disjoint, cover all 6, 3 each, and
/// for range and roundrobin are the ones Kafka's assignors give (members in id order).
/// A third member `c` makes a new generation; after the hand-over the three are
/// disjoint, covering, 2 each. Returns the assignments before and after `c` joined.
async fn two_then_three(assignor: &str) -> (BTreeMap<String, BTreeSet<u32>>, BTreeMap<String, BTreeSet<u32>>) {
    let h = Harness::new().await;
    h.create_topic(json!({"name": "six", "partitions": 6})).await;
    let first = h.join("g", member("six", "a", assignor, "latest")).await;
    assert_eq!(partitions(&first["assignment"]), all(6), "a lone member owns everything: {first}");
    let a = member_id(&first);
    let second = h.join("g", member("six", "b", assignor, "latest")).await;
    let b = member_id(&second);
    assert!(generation(&second) > generation(&first), "a join starts a new generation");
    assert!(partitions(&second["assignment"]).is_empty(), "b owns nothing a still owns: {second}");

    let two = h.settle("g", &[&a, &b]).await;
    let (pa, pb) = (&two[&a], &two[&b]);
    assert!(pa.is_disjoint(pb), "{assignor}: {two:?}");
    assert_eq!(pa | pb, all(6), "{assignor}: {two:?}");
    assert_eq!((pa.len(), pb.len()), (3, 3), "{assignor}: {two:?}");
    match assignor {
        "range" => assert_eq!((pa.clone(), pb.clone()), (set([0, 1, 2]), set([3, 4, 5]))),
        "roundrobin" => assert_eq!((pa.clone(), pb.clone()), (set([0, 2, 4]), set([1, 3, 5]))),
        _ => {}
    }
    let d = h.describe("g").await;
    assert_eq!(d["assignor"], assignor);
    assert_eq!(generation(&d), generation(&second));

    let third = h.join("g", member("six", "c", assignor, "latest")).await;
    let c = member_id(&third);
    assert!(generation(&third) > generation(&second), "a join starts a new generation");
    let three = h.settle("g", &[&a, &b, &c]).await;
    let (qa, qb, qc) = (&three[&a], &three[&b], &three[&c]);
    assert!(qa.is_disjoint(qb) && qa.is_disjoint(qc) && qb.is_disjoint(qc), "{assignor}: {three:?}");
    assert_eq!(&(qa | qb) | qc, all(6), "{assignor}: {three:?}");
    assert_eq!((qa.len(), qb.len(), qc.len()), (2, 2, 2), "{assignor}: {three:?}");
    let d = h.describe("g").await;
    assert_eq!(generation(&d), generation(&third), "settling is polls, not rebalances");
    h.shutdown().await;
    let names = |m: BTreeMap<String, BTreeSet<u32>>| -> BTreeMap<String, BTreeSet<u32>> {
        m.into_iter().map(|(id, ps)| (id.split('-').next().expect("client prefix").to_owned(), ps)).collect()
    };
    (names(two), names(three))
}

/// Range: two members split six partitions into contiguous halves; three into thirds.
#[tokio::test]
async fn range_assigns_disjoint_covering_ranges() {
    let (_, three) = two_then_three("range").await;
    assert_eq!(three["a"], set([0, 1]));
    assert_eq!(three["b"], set([2, 3]));
    assert_eq!(three["c"], set([4, 5]));
}

/// Roundrobin: partitions dealt in turn to members in id order.
#[tokio::test]
async fn roundrobin_deals_partitions_in_turn() {
    let (_, three) = two_then_three("roundrobin").await;
    assert_eq!(three["a"], set([0, 3]));
    assert_eq!(three["b"], set([1, 4]));
    assert_eq!(three["c"], set([2, 5]));
}

/// Sticky: when a third member joins, the two old members keep partitions they had, and
/// only what balance requires moves: 2 of 6 (one from each), all to the newcomer.
#[tokio::test]
async fn sticky_moves_only_what_balance_requires() {
    let (two, three) = two_then_three("sticky").await;
    assert!(three["a"].is_subset(&two["a"]), "a lost a partition it could keep: {two:?} → {three:?}");
    assert!(three["b"].is_subset(&two["b"]), "b lost a partition it could keep: {two:?} → {three:?}");
    let moved = (&two["a"] - &three["a"]).len() + (&two["b"] - &three["b"]).len();
    assert_eq!(moved, 2, "{two:?} → {three:?}");
}

/// A member asking for another assignor than the group's (explicitly, or the default
/// `range` by omission) is 409 `inconsistent_group_protocol` and the group is unchanged;
/// once the group is empty again, a new member may pick another assignor.
#[tokio::test]
async fn another_assignor_is_an_inconsistent_group_protocol() {
    let h = Harness::new().await;
    h.create_topic(json!({"name": "t", "partitions": 2})).await;
    let a = h.join_id("g", json!({"topics": ["t"], "assignor": "sticky"})).await;
    let before = h.fingerprint("g").await;
    h.post_json("/v1/groups/g/members", &json!({"topics": ["t"], "assignor": "range"}))
        .await
        .expect_error(409, "inconsistent_group_protocol");
    h.post_json("/v1/groups/g/members", &json!({"topics": ["t"], "assignor": "roundrobin"}))
        .await
        .expect_error(409, "inconsistent_group_protocol");
    h.post_json("/v1/groups/g/members", &json!({"topics": ["t"]}))
        .await
        .expect_error(409, "inconsistent_group_protocol");
    assert_eq!(h.fingerprint("g").await, before);
    h.join("g", json!({"topics": ["t"], "assignor": "sticky"})).await;

    let d = h.describe("g").await;
    for m in d["members"].as_array().expect("members") {
        h.delete(&format!("/v1/groups/g/members/{}", m["member_id"].as_str().expect("id"))).await.expect_no_content();
    }
    h.join("g", json!({"topics": ["t"], "assignor": "roundrobin"})).await;
    assert_eq!(h.describe("g").await["assignor"], "roundrobin");
    h.get(&format!("/v1/groups/g/members/{a}/records")).await.expect_error(404, "unknown_member_id");
    h.shutdown().await;
}

/// KIP-848 hand-over: after `b` joins, `b`'s join answer lists the partitions `a` still
/// owns as `pending`, and `b` reads none of them while `a` owns them. `a`'s next poll
/// commits what it read (auto-commit) and releases them; `b`'s next poll owns them and
/// starts exactly at `a`'s commit: no record read twice, none skipped.
#[tokio::test]
async fn hand_over_waits_for_the_old_owner_to_poll() {
    let h = Harness::new().await;
    h.create_topic(json!({"name": "h", "partitions": 6})).await;
    for p in 0..6 {
        h.fill("h", p, 0, 2).await;
    }
    let a = h.join_id("g", member("h", "a", "range", "earliest")).await;
    assert_eq!(polled(&h.poll("g", &a, "").await).len(), 12);

    let joined = h.join("g", member("h", "b", "range", "earliest")).await;
    let b = member_id(&joined);
    assert_eq!(partitions(&joined["assignment"]), BTreeSet::new(), "{joined}");
    assert_eq!(partitions(&joined["pending"]), set([3, 4, 5]), "{joined}");
    let d = h.describe("g").await;
    let by_id: BTreeMap<&str, &Value> =
        d["members"].as_array().expect("members").iter().map(|m| (m["member_id"].as_str().expect("id"), m)).collect();
    assert_eq!(partitions(&by_id[a.as_str()]["assignment"]), all(6), "{d}");
    assert_eq!(partitions(&by_id[b.as_str()]["pending"]), set([3, 4, 5]), "{d}");

    // b polls before a has released anything: nothing to read.
    let early = h.poll("g", &b, "").await;
    assert_eq!((partitions(&early["assignment"]), partitions(&early["pending"])), (BTreeSet::new(), set([3, 4, 5])));
    assert_eq!(polled(&early), none());

    for p in 0..6 {
        h.fill("h", p, 2, 1).await;
    }
    let released = h.poll("g", &a, "").await;
    assert_eq!(partitions(&released["assignment"]), set([0, 1, 2]), "{released}");
    assert_eq!(partitions(&released["pending"]), BTreeSet::new());
    assert_eq!(polled(&released), vec![(0, 2), (1, 2), (2, 2)], "a reads only what it still owns");
    assert_eq!(
        h.committed("g", "h").await,
        (0..6).map(|p| (p, 2)).collect::<BTreeMap<u32, u64>>(),
        "a committed before releasing"
    );

    let taken = h.poll("g", &b, "").await;
    assert_eq!(partitions(&taken["assignment"]), set([3, 4, 5]), "{taken}");
    assert_eq!(partitions(&taken["pending"]), BTreeSet::new());
    assert_eq!(polled(&taken), vec![(3, 2), (4, 2), (5, 2)], "b starts at a's commit");
    h.shutdown().await;
}
