//! Partition assignors for consumer groups.
//!
//! In Kafka's classic protocol the group leader, a client, computes the assignment; Fjord
//! computes it on the server, in the group coordinator, as KIP-848 moved Kafka's, whenever
//! members join, leave or are evicted. [`assign`] is a pure function of the members (id,
//! subscribed topics and, for sticky, the partitions each held before this rebalance) and
//! the topics' partition counts: the same inputs always give the same assignment. Members
//! are taken in member-id order, as Kafka sorts them.
//!
//! - [`Assignor::Range`] — Kafka's `RangeAssignor`: per topic, contiguous ranges.
//! - [`Assignor::RoundRobin`] — Kafka's `RoundRobinAssignor`: all partitions dealt out in turn.
//! - [`Assignor::Sticky`] — Kafka's `StickyAssignor` goals: balanced first, then as few
//!   partitions moved as the algorithm finds; see [`assign`] for what is and is not optimal.

pub use fjord_protocol::group::Assignor;
use fjord_protocol::TopicPartition;
use std::cmp::Reverse;
use std::collections::{BTreeMap, BTreeSet, BinaryHeap};

/// What the assignor knows about one member.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct MemberSpec {
    /// The topics it subscribes to.
    pub topics: BTreeSet<String>,
    /// Its assignment before this rebalance. Only [`Assignor::Sticky`] reads it; claims on
    /// partitions that no longer exist or whose topic the member no longer subscribes to
    /// are ignored.
    pub current: Vec<TopicPartition>,
}

/// Assigns the partitions of the subscribed topics to the members.
///
/// `partitions` maps each topic to its partition count; subscribed topics missing from it
/// are skipped. The result has an entry for every member, possibly empty, each sorted by
/// (topic, partition). Every partition of a topic some member subscribes to goes to
/// exactly one member subscribed to that topic.
///
/// # Sticky
///
/// 1. Every valid previous claim is kept: a partition in a member's `current` that still
///    exists and whose topic the member still subscribes to. A partition two members
///    claim stays with the one claiming fewer partitions (ties: the lower member id); with
///    no generation numbers there is no telling which claim is newer.
/// 2. The partitions nobody holds go one at a time to the least-loaded member subscribed to
///    their topic (ties: the lower member id), topics with fewer subscribers first, as in
///    Kafka, so that their few candidates are not already full.
/// 3. Balance: while some member can hand a partition along a chain `a → v₁ → … → b` (each
///    giver holds a partition of a topic the next member subscribes to) to a member `b`
///    with at least two fewer partitions, do so; the members in between keep their counts.
///    Chains start from the most-loaded members that have one and are chosen to move the
///    fewest partitions their givers held before this rebalance, then to end at the
///    least-loaded member, then to be shortest. A giver hands on a partition it got in
///    this rebalance when it has one.
///
/// The balance is optimal: an assignment with no such chain ("cost-reducing path") has
/// the least sum of squared loads and the least maximum load possible under the
/// subscriptions (Harvey, Ladner, Lovász, Tamir, "Semi-matchings for bipartite graphs and
/// load balancing", J. Algorithms 59, 2006; brute-force-tested here on small groups).
/// Kafka's `StickyAssignor` documents a weaker goal that only considers direct moves:
/// `a: {x, y}`, `b: {x}`, `c: {y}` holding 2, 3 and 1 partitions already meet it, where
/// Fjord moves an `x` from `b` to `a` and a `y` from `a` to `c`.
///
/// Stickiness is optimal when all members subscribe to the same topics (property-tested):
/// a joining member takes exactly its share, ⌊partitions / members⌋, and only from members
/// above their new count; when a member leaves only its partitions move. Re-running on the
/// result changes nothing, whatever the subscriptions. With different subscriptions the
/// steps are greedy and can move more partitions than needed: chains are chosen one at a
/// time without look-ahead (test `sticky_is_greedy_with_different_subscriptions`), and a
/// partition two members claim is settled before anything else is known. Moving the fewest
/// partitions among the best-balanced assignments is a min-cost flow problem; Kafka's
/// assignor is a greedy heuristic too.
pub fn assign(
    assignor: Assignor,
    members: &BTreeMap<String, MemberSpec>,
    partitions: &BTreeMap<String, u32>,
) -> BTreeMap<String, Vec<TopicPartition>> {
    let group = Group::new(members, partitions);
    let lists = match assignor {
        Assignor::Range => group.range(),
        Assignor::RoundRobin => group.round_robin(),
        Assignor::Sticky => group.sticky(),
    };
    group.output(lists)
}

/// A topic with at least one partition and at least one subscriber.
struct Topic<'a> {
    name: &'a str,
    count: u32,
    /// Indexes of the subscribed members, ascending.
    subscribers: Vec<usize>,
}

/// The inputs as indexes: members by position in member-id order, topics by position in
/// name order, so sorting `(topic index, partition)` sorts by (topic, partition).
struct Group<'a> {
    ids: Vec<&'a str>,
    specs: Vec<&'a MemberSpec>,
    topics: Vec<Topic<'a>>,
}

/// Per member, its `(topic index, partition)`s.
type Lists = Vec<Vec<(usize, u32)>>;

impl<'a> Group<'a> {
    fn new(members: &'a BTreeMap<String, MemberSpec>, partitions: &'a BTreeMap<String, u32>) -> Self {
        let (ids, specs): (Vec<&str>, Vec<&MemberSpec>) = members.iter().map(|(id, spec)| (id.as_str(), spec)).unzip();
        let topics = partitions
            .iter()
            .filter(|&(_, &count)| count > 0)
            .filter_map(|(name, &count)| {
                let subscribers: Vec<usize> =
                    specs.iter().enumerate().filter(|(_, spec)| spec.topics.contains(name)).map(|(m, _)| m).collect();
                (!subscribers.is_empty()).then_some(Topic { name, count, subscribers })
            })
            .collect();
        Self { ids, specs, topics }
    }

    fn output(&self, lists: Lists) -> BTreeMap<String, Vec<TopicPartition>> {
        self.ids
            .iter()
            .zip(lists)
            .map(|(id, mut list)| {
                list.sort_unstable();
                let list = list.into_iter().map(|(t, p)| TopicPartition::new(self.topics[t].name, p)).collect();
                ((*id).to_owned(), list)
            })
            .collect()
    }

    fn empty_lists(&self) -> Lists {
        vec![Vec::new(); self.ids.len()]
    }

    fn range(&self) -> Lists {
        let mut lists = self.empty_lists();
        for (t, topic) in self.topics.iter().enumerate() {
            // u64 so that no product or sum can overflow; every value stays <= count.
            let k = topic.subscribers.len() as u64;
            let count = u64::from(topic.count);
            let (per_member, extra) = (count / k, count % k);
            let mut next = 0u64;
            for (i, &m) in topic.subscribers.iter().enumerate() {
                let len = per_member + u64::from((i as u64) < extra);
                lists[m].extend((next..next + len).map(|p| (t, p as u32)));
                next += len;
            }
        }
        lists
    }

    fn round_robin(&self) -> Lists {
        let mut lists = self.empty_lists();
        let mut cursor = 0;
        for (t, topic) in self.topics.iter().enumerate() {
            for p in 0..topic.count {
                // Kafka's circular iterator: the first subscriber at or after the cursor,
                // wrapping around.
                let at = topic.subscribers.partition_point(|&m| m < cursor);
                let Some(&m) = topic.subscribers.get(at).or(topic.subscribers.first()) else { break };
                lists[m].push((t, p));
                cursor = m + 1;
            }
        }
        lists
    }

    fn sticky(&self) -> Lists {
        let index: BTreeMap<&str, usize> = self.topics.iter().enumerate().map(|(t, topic)| (topic.name, t)).collect();
        let claims: Vec<BTreeSet<(usize, u32)>> = self
            .specs
            .iter()
            .map(|spec| {
                spec.current
                    .iter()
                    .filter_map(|tp| {
                        let &t = index.get(tp.topic.as_str())?;
                        (tp.partition < self.topics[t].count && spec.topics.contains(&tp.topic))
                            .then_some((t, tp.partition))
                    })
                    .collect()
            })
            .collect();
        let mut prev: Vec<Vec<Option<usize>>> =
            self.topics.iter().map(|topic| vec![None; topic.count as usize]).collect();
        for (m, mine) in claims.iter().enumerate() {
            for &(t, p) in mine {
                let slot = &mut prev[t][p as usize];
                let take = match *slot {
                    None => true,
                    Some(other) => mine.len() < claims[other].len(),
                };
                if take {
                    *slot = Some(m);
                }
            }
        }

        let receivers: BTreeSet<usize> = self.topics.iter().flat_map(|t| t.subscribers.iter().copied()).collect();
        let mut state = Sticky {
            topics: &self.topics,
            receivers: receivers.into_iter().collect(),
            prev,
            held: vec![BTreeMap::new(); self.ids.len()],
            load: vec![0; self.ids.len()],
        };
        for (t, topic) in self.topics.iter().enumerate() {
            for p in 0..topic.count {
                if let Some(m) = state.prev[t][p as usize] {
                    state.give(t, p, m);
                }
            }
        }

        let mut order: Vec<usize> = (0..self.topics.len()).collect();
        order.sort_by_key(|&t| (self.topics[t].subscribers.len(), t));
        for t in order {
            let topic = &self.topics[t];
            for p in 0..topic.count {
                if state.prev[t][p as usize].is_some() {
                    continue;
                }
                if let Some(&m) = topic.subscribers.iter().min_by_key(|&&m| (state.load[m], m)) {
                    state.give(t, p, m);
                }
            }
        }

        // Each step lowers the sum of squared loads by at least 2, so this ends; in practice
        // there are about as many steps as partitions that must move.
        while state.balance_step() {}
        state.into_lists()
    }
}

/// A member's partitions of one topic: `kept` ones it held before this rebalance,
/// `fresh` ones it got in this one.
#[derive(Debug, Clone, Default)]
struct Held {
    kept: BTreeSet<u32>,
    fresh: BTreeSet<u32>,
}

impl Held {
    /// The partition to hand on: a fresh one if there is one, so previous owners keep theirs.
    fn pick(&self) -> Option<u32> {
        self.fresh.last().or(self.kept.last()).copied()
    }
}

/// One hop of a balancing chain.
#[derive(Debug, Clone, Copy)]
struct Move {
    from: usize,
    to: usize,
    topic: usize,
    partition: u32,
}

struct Sticky<'g, 'a> {
    topics: &'g [Topic<'a>],
    /// Members subscribed to at least one topic: the only ones that can ever receive.
    receivers: Vec<usize>,
    /// The previous owner of each partition, claims checked and conflicts settled.
    prev: Vec<Vec<Option<usize>>>,
    /// Per member, per topic index, what it holds now.
    held: Vec<BTreeMap<usize, Held>>,
    load: Vec<usize>,
}

impl Sticky<'_, '_> {
    fn give(&mut self, topic: usize, partition: u32, to: usize) {
        let held = self.held[to].entry(topic).or_default();
        let set = if self.prev[topic][partition as usize] == Some(to) { &mut held.kept } else { &mut held.fresh };
        if set.insert(partition) {
            self.load[to] += 1;
        }
    }

    fn take(&mut self, topic: usize, partition: u32, from: usize) {
        if let Some(held) = self.held[from].get_mut(&topic) {
            if held.fresh.remove(&partition) || held.kept.remove(&partition) {
                self.load[from] -= 1;
            }
            if held.fresh.is_empty() && held.kept.is_empty() {
                self.held[from].remove(&topic);
            }
        }
    }

    /// Moves one partition's worth of load along a chain from a member to one with at
    /// least two fewer partitions, starting from the most-loaded members that have such a
    /// chain; false when no member has one.
    fn balance_step(&mut self) -> bool {
        let Some(min) = self.receivers.iter().map(|&m| self.load[m]).min() else { return false };
        let levels: BTreeSet<usize> = self.load.iter().copied().filter(|&l| l >= min + 2).collect();
        for level in levels.into_iter().rev() {
            let sources: Vec<usize> = (0..self.load.len()).filter(|&m| self.load[m] == level).collect();
            if let Some(chain) = self.chain(&sources, level - 2, min) {
                for hop in chain {
                    self.take(hop.topic, hop.partition, hop.from);
                    self.give(hop.topic, hop.partition, hop.to);
                }
                return true;
            }
        }
        false
    }

    /// A chain from one of `sources` to a member with at most `limit` partitions, or None.
    ///
    /// Dijkstra from all the sources at once over a graph of members and topics: member
    /// `u` → topic `t` if `u` holds a partition of `t`, costing (1 if the partition `u`
    /// would hand on, [`Held::pick`], is one it held before this rebalance, else 0; 1 hop);
    /// topic `t` → member `v` if `v` subscribes to `t`, free. The chain ends at the member
    /// reachable with the fewest previously held partitions moved, then the least loaded,
    /// then the fewest hops. `min` is the least load of any member that could receive:
    /// reaching it ends the search.
    fn chain(&self, sources: &[usize], limit: usize, min: usize) -> Option<Vec<Move>> {
        let members = self.load.len();
        // Node `m < members` is member `m`, node `members + t` is topic `t`.
        let mut label: Vec<Option<(usize, usize)>> = vec![None; members + self.topics.len()];
        let mut settled = vec![false; members + self.topics.len()];
        // Who hands on which partition of each topic, and through which topic each member
        // is reached.
        let mut giver: Vec<Option<(usize, u32)>> = vec![None; self.topics.len()];
        let mut through: Vec<Option<usize>> = vec![None; members];
        let mut heap = BinaryHeap::new();
        for &s in sources {
            label[s] = Some((0, 0));
            heap.push(Reverse((0, 0, s)));
        }
        let improves = |label: &[Option<(usize, usize)>], node: usize, next: (usize, usize)| match label[node] {
            None => true,
            Some(old) => next < old,
        };
        // The best target so far: (previously held partitions moved, its load, member).
        let mut best: Option<(usize, usize, usize)> = None;
        let beats = |best: Option<(usize, usize, usize)>, kept: usize, load: usize| match best {
            None => true,
            Some((k, l, _)) => (kept, load) < (k, l),
        };
        'search: while let Some(Reverse((kept, hops, node))) = heap.pop() {
            if settled[node] {
                continue;
            }
            settled[node] = true;
            if let Some(topic) = node.checked_sub(members) {
                for &v in &self.topics[topic].subscribers {
                    if !settled[v] && improves(&label, v, (kept, hops)) {
                        label[v] = Some((kept, hops));
                        through[v] = Some(topic);
                        // Nodes settle in (kept, hops) order: no member settled later
                        // can beat this one, so stop here rather than queue the rest.
                        if self.load[v] == min && min <= limit {
                            if beats(best, kept, min) {
                                best = Some((kept, min, v));
                            }
                            break 'search;
                        }
                        heap.push(Reverse((kept, hops, v)));
                    }
                }
                continue;
            }
            let u = node;
            if self.load[u] <= limit && beats(best, kept, self.load[u]) {
                best = Some((kept, self.load[u], u));
            }
            for (&topic, held) in &self.held[u] {
                let Some(partition) = held.pick() else { continue };
                let next = (kept + usize::from(held.fresh.is_empty()), hops + 1);
                let t = members + topic;
                if !settled[t] && improves(&label, t, next) {
                    label[t] = Some(next);
                    giver[topic] = Some((u, partition));
                    heap.push(Reverse((next.0, next.1, t)));
                }
            }
        }
        let (_, _, mut v) = best?;
        let mut chain = Vec::new();
        // Sources are reached through no topic: the walk back ends at the chain's start.
        while let Some(topic) = through[v] {
            let (from, partition) = giver[topic]?;
            chain.push(Move { from, to: v, topic, partition });
            v = from;
        }
        Some(chain)
    }

    fn into_lists(self) -> Lists {
        self.held
            .into_iter()
            .map(|topics| {
                topics
                    .into_iter()
                    .flat_map(|(t, held)| held.kept.into_iter().chain(held.fresh).map(move |p| (t, p)))
                    .collect()
            })
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::collection::{btree_map, btree_set, vec};
    use proptest::prelude::*;
    use proptest::sample::select;
    use proptest::test_runner::TestCaseError;

    type Assignment = BTreeMap<String, Vec<TopicPartition>>;

    /// `"t0p0 t1p2"` in Kafka's notation.
    fn tps(s: &str) -> Vec<TopicPartition> {
        s.split_whitespace()
            .map(|w| {
                let (topic, p) = w.rsplit_once('p').expect("tNpM");
                TopicPartition::new(topic, p.parse().expect("partition number"))
            })
            .collect()
    }

    fn spec(topics: &[&str], current: &str) -> MemberSpec {
        MemberSpec { topics: topics.iter().map(|t| (*t).to_owned()).collect(), current: tps(current) }
    }

    fn group(members: &[(&str, MemberSpec)]) -> BTreeMap<String, MemberSpec> {
        members.iter().map(|(id, spec)| ((*id).to_owned(), spec.clone())).collect()
    }

    fn counts(topics: &[(&str, u32)]) -> BTreeMap<String, u32> {
        topics.iter().map(|(t, n)| ((*t).to_owned(), *n)).collect()
    }

    fn expect(members: &[(&str, &str)]) -> Assignment {
        members.iter().map(|(id, list)| ((*id).to_owned(), tps(list))).collect()
    }

    /// The same members with `out` as their current assignment.
    fn with_current(members: &BTreeMap<String, MemberSpec>, out: &Assignment) -> BTreeMap<String, MemberSpec> {
        members
            .iter()
            .map(|(id, m)| {
                (id.clone(), MemberSpec { topics: m.topics.clone(), current: out.get(id).cloned().unwrap_or_default() })
            })
            .collect()
    }

    fn loads(out: &Assignment) -> Vec<usize> {
        out.values().map(Vec::len).collect()
    }

    fn spread(loads: &[usize]) -> usize {
        loads.iter().max().unwrap_or(&0) - loads.iter().min().unwrap_or(&0)
    }

    #[test]
    fn assignor_names_round_trip() {
        assert_eq!(Assignor::default(), Assignor::Range);
        for a in Assignor::ALL {
            assert_eq!(Assignor::parse(a.as_str()), Some(a));
            assert_eq!(a.to_string(), a.as_str());
            let json = serde_json::to_string(&a).expect("serialize");
            assert_eq!(json, format!("\"{}\"", a.as_str()));
            assert_eq!(serde_json::from_str::<Assignor>(&json).expect("deserialize"), a);
        }
        assert_eq!(Assignor::RoundRobin.as_str(), "roundrobin");
        assert_eq!(Assignor::parse("round_robin"), None);
        assert_eq!(Assignor::parse("Range"), None);
        assert_eq!(Assignor::parse(""), None);
    }

    /// The example in the javadoc of Kafka's `RangeAssignor`.
    #[test]
    fn range_matches_kafka_example() {
        let members = group(&[("C0", spec(&["t0", "t1"], "")), ("C1", spec(&["t0", "t1"], ""))]);
        let out = assign(Assignor::Range, &members, &counts(&[("t0", 3), ("t1", 3)]));
        assert_eq!(out, expect(&[("C0", "t0p0 t0p1 t1p0 t1p1"), ("C1", "t0p2 t1p2")]));
    }

    #[test]
    fn range_is_per_topic_over_its_subscribers() {
        let members = group(&[
            ("a", spec(&["t0", "t1"], "")),
            ("b", spec(&["t1"], "")),
            ("c", spec(&["t0", "t1"], "")),
            ("d", spec(&["t0"], "")),
        ]);
        let out = assign(Assignor::Range, &members, &counts(&[("t0", 7), ("t1", 2)]));
        assert_eq!(out, expect(&[("a", "t0p0 t0p1 t0p2 t1p0"), ("b", "t1p1"), ("c", "t0p3 t0p4"), ("d", "t0p5 t0p6")]));
    }

    /// Both examples in the javadoc of Kafka's `RoundRobinAssignor`.
    #[test]
    fn roundrobin_matches_kafka_examples() {
        let members = group(&[("C0", spec(&["t0", "t1"], "")), ("C1", spec(&["t0", "t1"], ""))]);
        let out = assign(Assignor::RoundRobin, &members, &counts(&[("t0", 3), ("t1", 3)]));
        assert_eq!(out, expect(&[("C0", "t0p0 t0p2 t1p1"), ("C1", "t0p1 t1p0 t1p2")]));

        let members =
            group(&[("C0", spec(&["t0"], "")), ("C1", spec(&["t0", "t1"], "")), ("C2", spec(&["t0", "t1", "t2"], ""))]);
        let out = assign(Assignor::RoundRobin, &members, &counts(&[("t0", 1), ("t1", 2), ("t2", 3)]));
        assert_eq!(out, expect(&[("C0", "t0p0"), ("C1", "t1p0"), ("C2", "t1p1 t2p0 t2p1 t2p2")]));
    }

    /// Both examples in the javadoc of Kafka's `StickyAssignor`, from scratch and then
    /// after a member leaves.
    #[test]
    fn sticky_matches_kafka_examples() {
        let all = ["t0", "t1", "t2", "t3"];
        let parts = counts(&[("t0", 2), ("t1", 2), ("t2", 2), ("t3", 2)]);
        let members = group(&[("C0", spec(&all, "")), ("C1", spec(&all, "")), ("C2", spec(&all, ""))]);
        let out = assign(Assignor::Sticky, &members, &parts);
        assert_eq!(out, expect(&[("C0", "t0p0 t1p1 t3p0"), ("C1", "t0p1 t2p0 t3p1"), ("C2", "t1p0 t2p1")]));
        let members = group(&[("C0", spec(&all, "t0p0 t1p1 t3p0")), ("C2", spec(&all, "t1p0 t2p1"))]);
        let out = assign(Assignor::Sticky, &members, &parts);
        assert_eq!(out, expect(&[("C0", "t0p0 t1p1 t2p0 t3p0"), ("C2", "t0p1 t1p0 t2p1 t3p1")]));

        let parts = counts(&[("t0", 1), ("t1", 2), ("t2", 3)]);
        let members =
            group(&[("C0", spec(&["t0"], "")), ("C1", spec(&["t0", "t1"], "")), ("C2", spec(&["t0", "t1", "t2"], ""))]);
        let out = assign(Assignor::Sticky, &members, &parts);
        assert_eq!(out, expect(&[("C0", "t0p0"), ("C1", "t1p0 t1p1"), ("C2", "t2p0 t2p1 t2p2")]));
        let members =
            group(&[("C1", spec(&["t0", "t1"], "t1p0 t1p1")), ("C2", spec(&["t0", "t1", "t2"], "t2p0 t2p1 t2p2"))]);
        let out = assign(Assignor::Sticky, &members, &parts);
        assert_eq!(out, expect(&[("C1", "t0p0 t1p0 t1p1"), ("C2", "t2p0 t2p1 t2p2")]));
    }

    /// Kafka's sticky balance goal is met here (no direct move helps `c`); a two-hop chain
    /// `b → a → c` evens the loads.
    #[test]
    fn sticky_balances_along_chains() {
        let members = group(&[
            ("a", spec(&["x0", "y0"], "y0p0 y0p1")),
            ("b", spec(&["x0"], "x0p0 x0p1 x0p2")),
            ("c", spec(&["y0"], "y0p2")),
        ]);
        let out = assign(Assignor::Sticky, &members, &counts(&[("x0", 3), ("y0", 3)]));
        assert_eq!(out, expect(&[("a", "x0p2 y0p0"), ("b", "x0p0 x0p1"), ("c", "y0p1 y0p2")]));
    }

    /// A partition two members claim stays with the one claiming fewer; claims on missing
    /// partitions or unsubscribed topics are dropped.
    #[test]
    fn sticky_settles_conflicting_and_stale_claims() {
        let members = group(&[
            ("a", spec(&["t0"], "t0p0 t0p1 t0p2")),
            ("b", spec(&["t0"], "t0p1 t0p9 t1p0")),
            ("c", spec(&["t0"], "t0p1 t0p3")),
        ]);
        let out = assign(Assignor::Sticky, &members, &counts(&[("t0", 4), ("t1", 1)]));
        assert_eq!(out, expect(&[("a", "t0p0 t0p2"), ("b", "t0p1"), ("c", "t0p3")]));
    }

    /// One member held everything; 49 join. Also a smoke test that the balancing loop
    /// stays fast with thousands of moves.
    #[test]
    fn sticky_spreads_a_monopoly() {
        let topics = ["t0", "t1", "t2"];
        let parts = counts(&[("t0", 1000), ("t1", 700), ("t2", 300)]);
        let solo = group(&[("m00", spec(&topics, ""))]);
        let before = assign(Assignor::Sticky, &solo, &parts);
        let mut members = with_current(&solo, &before);
        for i in 1..50 {
            members.insert(format!("m{i:02}"), spec(&topics, ""));
        }
        let out = assign(Assignor::Sticky, &members, &parts);
        assert!(out.values().all(|list| list.len() == 40));
        assert!(out["m00"].iter().all(|tp| before["m00"].contains(tp)));
    }

    #[test]
    fn degenerate_inputs_give_empty_entries() {
        let none: BTreeMap<String, MemberSpec> = BTreeMap::new();
        let no_topics: BTreeMap<String, u32> = BTreeMap::new();
        let members = group(&[
            ("idle", spec(&[], "t0p0")),
            ("ghost", spec(&["missing"], "missing0p0")),
            ("empty", spec(&["t0"], "t0p0")),
        ]);
        for a in Assignor::ALL {
            assert!(assign(a, &none, &counts(&[("t0", 3)])).is_empty());
            assert!(assign(a, &none, &no_topics).is_empty());
            let want = expect(&[("idle", ""), ("ghost", ""), ("empty", "")]);
            assert_eq!(assign(a, &members, &no_topics), want);
            assert_eq!(assign(a, &members, &counts(&[("t0", 0), ("t1", 4)])), want);
        }
    }

    /// Pinned: with different subscriptions the sticky assignor is greedy. All members end
    /// with 2 partitions, but only `t2p0` stays with its previous owner where two could:
    /// `a: t0p0 t2p0, b: t1p0 t1p1, c: t0p1 t0p2, d: t2p1 t2p2`. Its first chain moves
    /// `t0p0` from `a` to `c`; moving `t0p1` from `b` costs the same then, but leaves a
    /// cheaper second step.
    #[test]
    fn sticky_is_greedy_with_different_subscriptions() {
        let members = group(&[
            ("a", spec(&["t0", "t2"], "t0p0 t2p0 t2p2")),
            ("b", spec(&["t0", "t1"], "t0p1")),
            ("c", spec(&["t0"], "")),
            ("d", spec(&["t2"], "")),
        ]);
        let out = assign(Assignor::Sticky, &members, &counts(&[("t0", 3), ("t1", 2), ("t2", 3)]));
        assert_eq!(out, expect(&[("a", "t0p1 t2p0"), ("b", "t1p0 t1p1"), ("c", "t0p0 t0p2"), ("d", "t2p1 t2p2")]));
    }

    const TOPICS: [&str; 5] = ["t0", "t1", "t2", "t3", "ghost"];

    fn arb_partitions(max: u32) -> impl Strategy<Value = BTreeMap<String, u32>> {
        btree_map(select(&TOPICS[..4]).prop_map(str::to_owned), 0..=max, 0..=4)
    }

    fn arb_current() -> impl Strategy<Value = Vec<TopicPartition>> {
        vec((select(&TOPICS[..]), 0u32..9).prop_map(|(t, p)| TopicPartition::new(t, p)), 0..8)
    }

    fn arb_members() -> impl Strategy<Value = BTreeMap<String, MemberSpec>> {
        let spec = (btree_set(select(&TOPICS[..]).prop_map(str::to_owned), 0..=3), arb_current())
            .prop_map(|(topics, current)| MemberSpec { topics, current });
        btree_map("m[0-9]", spec, 0..7)
    }

    /// Members that all subscribe to the same topics.
    fn arb_same_subscriptions(
        members: std::ops::Range<usize>,
    ) -> impl Strategy<Value = (BTreeMap<String, MemberSpec>, BTreeMap<String, u32>)> {
        (
            btree_set(select(&TOPICS[..]).prop_map(str::to_owned), 0..=4),
            btree_map("m[0-9]{1,2}", arb_current(), members),
        )
            .prop_flat_map(|(topics, currents)| {
                let members: BTreeMap<String, MemberSpec> = currents
                    .into_iter()
                    .map(|(id, current)| (id, MemberSpec { topics: topics.clone(), current }))
                    .collect();
                (Just(members), arb_partitions(16))
            })
    }

    /// Every member has a sorted entry, and every partition of a subscribed existing topic
    /// is in exactly one entry, of a member subscribed to its topic.
    fn check_valid(
        members: &BTreeMap<String, MemberSpec>,
        partitions: &BTreeMap<String, u32>,
        out: &Assignment,
    ) -> Result<(), TestCaseError> {
        prop_assert!(out.keys().eq(members.keys()), "entries {:?}", out.keys().collect::<Vec<_>>());
        let mut seen = BTreeSet::new();
        for (id, list) in out {
            prop_assert!(list.windows(2).all(|w| w[0] < w[1]), "{id}: not sorted: {list:?}");
            for tp in list {
                prop_assert!(members[id].topics.contains(&tp.topic), "{id} got {tp} without subscribing");
                prop_assert!(seen.insert(tp.clone()), "{tp} assigned twice");
            }
        }
        let want: BTreeSet<TopicPartition> = partitions
            .iter()
            .filter(|(t, _)| members.values().any(|m| m.topics.contains(*t)))
            .flat_map(|(t, &n)| (0..n).map(move |p| TopicPartition::new(t, p)))
            .collect();
        prop_assert_eq!(seen, want);
        Ok(())
    }

    proptest! {
        #![proptest_config(ProptestConfig { cases: 512, failure_persistence: None, ..ProptestConfig::default() })]

        #[test]
        fn every_partition_goes_once_to_a_subscriber(
            assignor in select(&Assignor::ALL[..]),
            members in arb_members(),
            partitions in arb_partitions(8),
        ) {
            let out = assign(assignor, &members, &partitions);
            check_valid(&members, &partitions, &out)?;
        }

        /// Round robin and sticky balance the whole assignment; range only each topic
        /// (Kafka's range gives the first members one extra partition of every topic, so
        /// with several topics they can be ahead by as many partitions as there are topics).
        #[test]
        fn same_subscriptions_are_balanced(
            assignor in select(&Assignor::ALL[..]),
            (members, partitions) in arb_same_subscriptions(1..8),
        ) {
            let out = assign(assignor, &members, &partitions);
            check_valid(&members, &partitions, &out)?;
            if assignor == Assignor::Range {
                for topic in partitions.keys() {
                    let per_topic: Vec<usize> =
                        out.values().map(|list| list.iter().filter(|tp| &tp.topic == topic).count()).collect();
                    prop_assert!(spread(&per_topic) <= 1, "{topic}: {per_topic:?}");
                }
            } else {
                prop_assert!(spread(&loads(&out)) <= 1, "{:?}", loads(&out));
            }
        }

        /// The order of and duplicates in `current` do not matter.
        #[test]
        fn sticky_reads_current_as_a_set(members in arb_members(), partitions in arb_partitions(8)) {
            let out = assign(Assignor::Sticky, &members, &partitions);
            let shuffled = members
                .iter()
                .map(|(id, m)| {
                    let mut current: Vec<TopicPartition> = m.current.iter().rev().cloned().collect();
                    current.extend(m.current.iter().cloned());
                    (id.clone(), MemberSpec { topics: m.topics.clone(), current })
                })
                .collect();
            prop_assert_eq!(assign(Assignor::Sticky, &shuffled, &partitions), out);
        }

        /// Re-running the sticky assignor on its own output, with any subscriptions,
        /// changes nothing.
        #[test]
        fn sticky_is_a_fixpoint(members in arb_members(), partitions in arb_partitions(8)) {
            let out = assign(Assignor::Sticky, &members, &partitions);
            prop_assert_eq!(assign(Assignor::Sticky, &with_current(&members, &out), &partitions), out);
        }

        /// With the same subscriptions, a joining member takes exactly its fair share,
        /// floor(N / members), and only from members above their new count: each previous
        /// member keeps min(its old count, its new count) of its partitions.
        #[test]
        fn sticky_join_moves_only_what_balance_requires(
            (members, partitions) in arb_same_subscriptions(1..8),
            joiner in "j[0-9]",
        ) {
            let before = assign(Assignor::Sticky, &members, &partitions);
            let mut after_members = with_current(&members, &before);
            let topics = members.values().next().map(|m| m.topics.clone()).unwrap_or_default();
            after_members.insert(joiner.clone(), MemberSpec { topics, current: Vec::new() });
            let after = assign(Assignor::Sticky, &after_members, &partitions);
            check_valid(&after_members, &partitions, &after)?;
            prop_assert!(spread(&loads(&after)) <= 1, "{:?}", loads(&after));

            let total: usize = loads(&before).iter().sum();
            prop_assert_eq!(after[&joiner].len(), total / after_members.len());
            for (id, old) in &before {
                let new = &after[id];
                let kept = old.iter().filter(|tp| new.contains(tp)).count();
                prop_assert_eq!(kept, old.len().min(new.len()), "{} had {:?}, has {:?}", id, old, new);
            }
        }

        /// With the same subscriptions, when a member leaves only its partitions move.
        #[test]
        fn sticky_leave_moves_only_the_leavers_partitions(
            (members, partitions) in arb_same_subscriptions(2..8),
            pick in any::<prop::sample::Index>(),
        ) {
            let before = assign(Assignor::Sticky, &members, &partitions);
            let mut after_members = with_current(&members, &before);
            let leaver = pick.get(&members.keys().cloned().collect::<Vec<_>>()).clone();
            after_members.remove(&leaver);
            let after = assign(Assignor::Sticky, &after_members, &partitions);
            check_valid(&after_members, &partitions, &after)?;
            prop_assert!(spread(&loads(&after)) <= 1, "{:?}", loads(&after));
            for (id, new) in &after {
                prop_assert!(before[id].iter().all(|tp| new.contains(tp)), "{} had {:?}, has {:?}", id, before[id], new);
            }
        }
    }

    /// Every assignment of `parts` to eligible members, for brute-force comparisons.
    fn all_assignments(members: &BTreeMap<String, MemberSpec>, parts: &[TopicPartition]) -> Vec<Assignment> {
        let mut out = vec![members.keys().map(|id| (id.clone(), Vec::new())).collect::<Assignment>()];
        for tp in parts {
            let eligible: Vec<&String> =
                members.iter().filter(|(_, m)| m.topics.contains(&tp.topic)).map(|(id, _)| id).collect();
            out = out
                .into_iter()
                .flat_map(|a| {
                    eligible.iter().map(move |id| {
                        let mut a = a.clone();
                        a.entry((*id).clone()).or_default().push(tp.clone());
                        a
                    })
                })
                .collect();
        }
        out
    }

    fn sum_of_squares(out: &Assignment) -> usize {
        out.values().map(|l| l.len() * l.len()).sum()
    }

    proptest! {
        #![proptest_config(ProptestConfig { cases: 256, failure_persistence: None, ..ProptestConfig::default() })]

        /// On small groups, against every possible assignment: the sticky assignor's loads
        /// have the least sum of squares and the least maximum.
        #[test]
        fn sticky_balance_is_optimal(
            members in btree_map(
                "[abcd]",
                (btree_set(select(&TOPICS[..3]).prop_map(str::to_owned), 0..=3), arb_current())
                    .prop_map(|(topics, current)| MemberSpec { topics, current }),
                1..=4,
            ),
            partitions in (0u32..=3, 0u32..=3, 0u32..=2)
                .prop_map(|(a, b, c)| counts(&[("t0", a), ("t1", b), ("t2", c)])),
        ) {
            let out = assign(Assignor::Sticky, &members, &partitions);
            check_valid(&members, &partitions, &out)?;
            let parts: Vec<TopicPartition> = out.values().flatten().cloned().collect();
            let all = all_assignments(&members, &parts);
            let best_squares = all.iter().map(sum_of_squares).min().unwrap_or(0);
            let best_max = all.iter().map(|a| loads(a).into_iter().max().unwrap_or(0)).min().unwrap_or(0);
            prop_assert_eq!(sum_of_squares(&out), best_squares);
            prop_assert_eq!(loads(&out).into_iter().max().unwrap_or(0), best_max);
        }
    }
}
