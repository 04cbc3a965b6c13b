//! Reads the whole metadata tree into a [`ClusterMetadata`], leaving a watch on every
//! znode it depends on. Watches are one-shot and set by the same read that returns the
//! data, so a change after the read fires a watch and a change before it is in the data
//! (re-arm before re-reading; ARCHITECTURE.md, "ZooKeeper layout").
//!
//! The result is always internally consistent: a topic whose config or partition states
//! are not all there yet (being created or deleted) is left out, with an `exists` watch
//! on what is missing so its arrival triggers the next read.

use super::data::{decode, decode_epoch, ClusterIdZnode, ControllerZnode, ProducerZnode, StateZnode, TopicZnode};
use super::paths::ZkPaths;
use super::session::Session;
use crate::model::{
    ClusterMetadata, ElectionRequest, GatewayInfo, NodeInfo, PartitionState, PipelineRecord, ProducerInfo, TopicConfig,
    TopicMetadata,
};
use fjord_protocol::auth::{AclBinding, TokenRecord};
use fjord_protocol::NodeId;
use futures::stream::{self, StreamExt, TryStreamExt};
use std::collections::{BTreeMap, BTreeSet};
use zookeeper_async::{Stat, ZkResult};

/// Requests kept in flight at once while reading many znodes.
const PARALLEL_READS: usize = 32;

pub async fn read(s: &Session, paths: &ZkPaths) -> ZkResult<ClusterMetadata> {
    let cluster_id = match s.get(&paths.cluster_id(), false).await? {
        Some((bytes, _)) => decode::<ClusterIdZnode>(&paths.cluster_id(), &bytes).map(|c| c.id).unwrap_or_default(),
        None => String::new(),
    };
    let controller = read_watched(s, &paths.controller())
        .await?
        .and_then(|bytes| ok_or_log(decode::<ControllerZnode>(&paths.controller(), &bytes)))
        .map(|c| c.id);
    let controller_epoch = read_watched(s, &paths.controller_epoch())
        .await?
        .and_then(|bytes| ok_or_log(decode_epoch(&paths.controller_epoch(), &bytes)))
        .unwrap_or(0);

    let mut gateways = BTreeMap::new();
    for (name, bytes) in read_children(s, &paths.gateways()).await? {
        if let Some(g) = ok_or_log(decode::<GatewayInfo>(&format!("{}/{name}", paths.gateways()), &bytes)) {
            gateways.insert(g.id.clone(), g);
        }
    }

    let mut producers = BTreeMap::new();
    for (name, bytes, stat) in read_children_with_stat(s, &paths.producers()).await? {
        let path = format!("{}/{name}", paths.producers());
        if let Some(znode) = ok_or_log(decode::<ProducerZnode>(&path, &bytes)) {
            let id = stat.czxid as u64;
            producers.insert(id, ProducerInfo { name: znode.name, id, epoch: stat.version as u32 });
        }
    }

    let mut tokens = BTreeMap::new();
    for (name, bytes) in read_children(s, &paths.tokens()).await? {
        if let Some(t) = ok_or_log(decode::<TokenRecord>(&format!("{}/{name}", paths.tokens()), &bytes)) {
            tokens.insert(t.id.clone(), std::sync::Arc::new(t));
        }
    }
    let (mut acls, mut acls_unreadable) = (BTreeSet::new(), false);
    for (name, bytes) in read_children(s, &paths.acls()).await? {
        // Leaving out a binding that does not decode could drop a deny and widen access:
        // the snapshot says so, and gateways then allow only super users.
        match decode::<AclBinding>(&format!("{}/{name}", paths.acls()), &bytes) {
            Ok(acl) => {
                acls.insert(acl);
            }
            Err(e) => {
                tracing::error!(error = %e, znode = name, "an ACL binding does not decode: only super users are allowed");
                acls_unreadable = true;
            }
        }
    }

    let mut pipelines = BTreeMap::new();
    for (name, bytes) in read_children(s, &paths.pipelines()).await? {
        if let Some(p) = ok_or_log(decode::<PipelineRecord>(&format!("{}/{name}", paths.pipelines()), &bytes)) {
            pipelines.insert(p.name.clone(), p);
        }
    }

    // A request that does not decode shows as an empty one, which the controller runs
    // (doing nothing) and removes; left out, it would block every later request.
    let preferred_election = read_watched(s, &paths.preferred_election()).await?.map(|bytes| {
        ok_or_log(decode::<ElectionRequest>(&paths.preferred_election(), &bytes))
            .unwrap_or_else(|| ElectionRequest { id: String::new(), partitions: BTreeSet::new() })
    });

    let names = s.children(&paths.topics(), true).await?.unwrap_or_default();
    // Futures collected first: a lazy `map` in the stream type trips the compiler's
    // higher-ranked lifetime check once this future is spawned.
    let reads: Vec<_> = names.iter().map(|name| read_topic(s, paths, name)).collect();
    let read: Vec<TopicRead> = stream::iter(reads).buffered(PARALLEL_READS).try_collect().await?;
    let (mut topics, mut held_topic_ids, mut unreadable_topics) = (BTreeMap::new(), BTreeSet::new(), false);
    let mut incomplete_topics = BTreeMap::new();
    for t in read {
        match t {
            TopicRead::Whole(t) => {
                topics.insert(t.name.clone(), t);
            }
            TopicRead::Held(id) => {
                held_topic_ids.insert(id);
            }
            TopicRead::Incomplete { name, id } => {
                held_topic_ids.insert(id.clone());
                incomplete_topics.insert(name, id);
            }
            TopicRead::Unreadable => unreadable_topics = true,
            TopicRead::Gone => {}
        }
    }

    // Registrations after partition states: a leader adds a node to an ISR only once it
    // has seen the node registered (KIP-841), so a state read first has every ISR member
    // it names registered before this read, and the snapshot has them as live unless they
    // left since. Read the other way round, a registration and the ISR expansion it
    // allows could both land in between, and the controller would take a live, in-sync
    // node out of the ISR as unregistered.
    let mut nodes = BTreeMap::new();
    for (name, bytes) in read_children(s, &paths.broker_ids()).await? {
        if name.parse::<NodeId>().is_err() {
            continue;
        }
        if let Some(node) = ok_or_log(decode::<NodeInfo>(&format!("{}/{name}", paths.broker_ids()), &bytes)) {
            nodes.insert(node.id, node);
        }
    }

    Ok(ClusterMetadata {
        cluster_id,
        controller,
        controller_epoch,
        nodes,
        gateways,
        topics,
        producers,
        tokens,
        acls,
        acls_unreadable,
        pipelines,
        preferred_election,
        held_topic_ids,
        incomplete_topics,
        unreadable_topics,
    })
}

/// What reading one topic's znodes found.
pub(super) enum TopicRead {
    Whole(std::sync::Arc<TopicMetadata>),
    /// It exists (by this id) but is not whole: a config or partition state that does
    /// not decode, or partitions not numbered `0..n`.
    Held(String),
    /// It exists (by this id), everything of it that is stored decodes, but its config or
    /// some partition state is missing: being created or deleted, or a creator or
    /// deleter that failed half-way.
    Incomplete {
        name: String,
        id: String,
    },
    /// Its topic znode does not decode: which topic it is, is unknown.
    Unreadable,
    /// Deleted since the listing.
    Gone,
}

fn ok_or_log<T>(r: fjord_protocol::Result<T>) -> Option<T> {
    r.map_err(|e| tracing::warn!(error = %e, "skipping a znode Fjord cannot read")).ok()
}

/// The data of `path` with a watch on it; if it does not exist, a watch on its creation.
async fn read_watched(s: &Session, path: &str) -> ZkResult<Option<Vec<u8>>> {
    if let Some((bytes, _)) = s.get(path, true).await? {
        return Ok(Some(bytes));
    }
    // Created between the two calls: the exists watch would never fire, so read again.
    match s.exists(path, true).await? {
        Some(_) => Ok(s.get(path, true).await?.map(|(bytes, _)| bytes)),
        None => Ok(None),
    }
}

/// `(name, data)` of every child, watching the child list and each child's data.
async fn read_children(s: &Session, dir: &str) -> ZkResult<Vec<(String, Vec<u8>)>> {
    Ok(read_children_with_stat(s, dir).await?.into_iter().map(|(name, bytes, _)| (name, bytes)).collect())
}

/// [`read_children`] with each child's stat.
async fn read_children_with_stat(s: &Session, dir: &str) -> ZkResult<Vec<(String, Vec<u8>, Stat)>> {
    let names = s.children(dir, true).await?.unwrap_or_default();
    let reads: Vec<_> = names
        .into_iter()
        .map(|name| async move {
            // A child gone since the listing has fired the child watch; skip it.
            Ok::<_, zookeeper_async::ZkError>(
                s.get(&format!("{dir}/{name}"), true).await?.map(|(bytes, stat)| (name, bytes, stat)),
            )
        })
        .collect();
    let children: Vec<_> = stream::iter(reads).buffered(PARALLEL_READS).try_collect().await?;
    Ok(children.into_iter().flatten().collect())
}

pub(super) async fn read_topic(s: &Session, paths: &ZkPaths, name: &str) -> ZkResult<TopicRead> {
    let topic_path = paths.topic(name);
    let Some((bytes, _)) = s.get(&topic_path, true).await? else { return Ok(TopicRead::Gone) };
    let Some(znode) = ok_or_log(decode::<TopicZnode>(&topic_path, &bytes)) else {
        tracing::error!(topic = name, "topic znode does not decode: storage nodes drop no data until it does");
        return Ok(TopicRead::Unreadable);
    };
    let held = TopicRead::Held(znode.topic_id.clone());
    let incomplete = || TopicRead::Incomplete { name: name.to_owned(), id: znode.topic_id.clone() };
    let Some(assignment) = znode.dense_assignment() else {
        tracing::warn!(topic = name, "skipping a topic whose partitions are not numbered 0..n");
        return Ok(held);
    };
    let config = match read_watched(s, &paths.topic_config(name)).await? {
        None => None,
        Some(bytes) => match ok_or_log(decode::<TopicConfig>(&paths.topic_config(name), &bytes)) {
            Some(config) => Some(config),
            None => {
                tracing::error!(topic = name, "topic config does not decode: the topic is left out, its data kept");
                return Ok(held);
            }
        },
    };

    let reads: Vec<_> = assignment
        .into_iter()
        .zip(0u32..)
        .map(|(replicas, p)| async move {
            let path = paths.partition_state(name, p);
            let found = match s.get(&path, true).await? {
                Some(found) => Some(found),
                None => match s.exists(&path, true).await? {
                    Some(_) => s.get(&path, true).await?,
                    None => None,
                },
            };
            Ok::<_, zookeeper_async::ZkError>(found.map(|(bytes, stat)| {
                let state = ok_or_log(decode::<StateZnode>(&path, &bytes))?;
                Some(PartitionState {
                    partition: p,
                    replicas,
                    leader: state.leader,
                    leader_epoch: state.leader_epoch,
                    isr: state.isr,
                    version: stat.version,
                })
            }))
        })
        .collect();
    // Per partition: `None` missing, `Some(None)` undecodable.
    let states: Vec<Option<Option<PartitionState>>> =
        stream::iter(reads).buffered(PARALLEL_READS).try_collect().await?;
    if states.iter().any(|s| matches!(s, Some(None))) {
        return Ok(held);
    }
    let states: Vec<Option<PartitionState>> = states.into_iter().map(Option::flatten).collect();
    if let (Some(config), Some(partitions)) = (&config, states.iter().cloned().collect::<Option<Vec<_>>>()) {
        return Ok(TopicRead::Whole(std::sync::Arc::new(TopicMetadata {
            name: name.to_owned(),
            topic_id: znode.topic_id,
            config: config.clone(),
            partitions,
        })));
    }
    // Something is missing. Only a partition that had a leader can have data, and no
    // partition has one before its topic is whole: a topic none of whose stored states
    // was ever led is a creation that stopped half-way (or a deletion that got past
    // every state) and can go; one that was led keeps its data until a person decides.
    if states.iter().flatten().all(|p| p.leader.is_none() && p.leader_epoch == 0) {
        return Ok(incomplete());
    }
    tracing::error!(
        topic = name,
        "topic has lost its config or a partition state but was led: left out, its data kept, \
         until it is repaired or deleted by hand"
    );
    Ok(held)
}
