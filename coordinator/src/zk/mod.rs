//! The ZooKeeper backend of [`Coordinator`], laid out like Kafka's
//! ZooKeeper mode under a chroot (default `/fjord`).
//!
//! Reads come from a snapshot kept by a background task: every watch event or session
//! change triggers a full re-read that re-arms every watch, and a new snapshot is
//! published if anything differs. Writes go straight to ZooKeeper, conditional on znode
//! versions where two writers could race, and then wait (bounded) for a snapshot read
//! that started after the write, so a caller sees its own change.
//!
//! Sessions: ephemeral registrations (nodes, gateways) are remembered and re-created on
//! a new session when the old one expires; `/controller` is not (campaigning again is
//! the caller's business).
//!
//! # Layout
//! - [`paths`] — every znode path.
//! - `data` — znode JSON encodings.
//! - `session` — one client session with deadlines and error mapping.
//! - `snapshot` — the full read that builds a [`ClusterMetadata`].

pub mod paths;

mod data;
mod session;
mod snapshot;

use crate::api::{Coordinator, SessionStats};
use crate::model::{
    validate_topic_name, ClusterMetadata, ElectionRequest, GatewayInfo, NewTopic, NodeInfo, PartitionState,
    PipelineRecord, ProducerInfo, TopicChange, TopicConfig, TopicMetadata,
};
use crate::producers;
use crate::topics::{self, unknown_topic};
use async_trait::async_trait;
use data::{encode, encode_epoch, ClusterIdZnode, ControllerZnode, ProducerZnode, StateZnode, TopicZnode};
use fjord_protocol::auth::{AclBinding, TokenRecord};
use fjord_protocol::{ErrorCode, FjordError, NodeId, Result};
use futures::stream::{self, StreamExt, TryStreamExt};
use parking_lot::{Mutex, RwLock};
use paths::{check_segment, ZkPaths, ADMIN_DIRS, BASE_DIRS};
use session::{zk_error, Event, Session, SessionState};
use std::collections::BTreeMap;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};
use tokio::sync::mpsc::{unbounded_channel, UnboundedReceiver, UnboundedSender};
use tokio::sync::watch;
use tokio::task::JoinHandle;
use zookeeper_async::ZkError;

/// The chroot used when none is configured.
pub const DEFAULT_CHROOT: &str = "/fjord";

/// How long a write waits for the snapshot to show it before returning anyway.
const READ_YOUR_WRITES_WAIT: Duration = Duration::from_secs(5);
/// Watch events arriving this close together are served by one re-read.
const DEBOUNCE: Duration = Duration::from_millis(5);
/// zookeeper-async 5 derives a read deadline of `2 × whole seconds of (⅔ × timeout)`:
/// below 1.5 s that is zero and the client reconnects in a loop.
const MIN_SESSION_TIMEOUT: Duration = Duration::from_secs(2);
/// Conditional writes retried internally (lost races on the topic znode, the epoch).
const CAS_ATTEMPTS: usize = 10;
/// Requests kept in flight at once when creating many partition znodes or writing a plan.
const PARALLEL_WRITES: usize = 32;

/// A [`Coordinator`] backed by a ZooKeeper ensemble.
pub struct ZkCoordinator {
    inner: Arc<Inner>,
    refresher: JoinHandle<()>,
}

struct Inner {
    hosts: String,
    paths: ZkPaths,
    session_timeout: Duration,
    op_timeout: Duration,
    session: RwLock<Arc<Session>>,
    next_generation: AtomicU64,
    events: UnboundedSender<Event>,
    /// Ephemeral znodes this coordinator registered: path → data, re-created on a new session.
    ephemerals: Mutex<BTreeMap<String, Vec<u8>>>,
    tx: watch::Sender<Arc<ClusterMetadata>>,
    /// Read-your-writes tickets: a writer takes `requested + 1`; the refresh task
    /// publishes in `refreshed` the ticket current when a successful read started.
    requested: AtomicU64,
    refreshed: watch::Sender<u64>,
    closed: AtomicBool,
    /// [`SessionStats`] of the current session, from its state events.
    connected: AtomicBool,
    disconnects: AtomicU64,
    expirations: AtomicU64,
    disconnected_since: Mutex<Option<Instant>>,
}

impl ZkCoordinator {
    /// Connects to `connect` (`host:port[,host:port...]`, no chroot suffix), creates the
    /// chroot and Fjord's base znodes if missing, reads the metadata and starts keeping
    /// it current. `session_timeout` below 2 s is raised to 2 s (a zookeeper-async limit);
    /// the server may negotiate it into its own `[2, 20] × tickTime` range.
    pub async fn connect(connect: &str, chroot: &str, session_timeout: Duration) -> Result<Self> {
        if connect.contains('/') {
            return Err(FjordError::new(
                ErrorCode::InvalidRequest,
                format!("ZooKeeper connect string {connect:?}: give the chroot separately, not as a `/` suffix"),
            ));
        }
        let paths = ZkPaths::new(chroot)?;
        let session_timeout = session_timeout.max(MIN_SESSION_TIMEOUT);
        let op_timeout = session_timeout.max(Duration::from_secs(3));
        let (events, events_rx) = unbounded_channel();
        let session = Session::connect(connect, session_timeout, op_timeout, 0, events.clone()).await?;
        let session = Arc::new(session);
        let first = async {
            ensure_layout(&session, &paths).await?;
            snapshot::read(&session, &paths).await.map_err(|e| zk_error("reading the metadata", e))
        };
        let meta = match first.await {
            Ok(meta) => meta,
            Err(e) => {
                close_in_background(session);
                return Err(e);
            }
        };
        let inner = Arc::new(Inner {
            hosts: connect.to_owned(),
            paths,
            session_timeout,
            op_timeout,
            session: RwLock::new(session),
            next_generation: AtomicU64::new(1),
            events,
            ephemerals: Mutex::new(BTreeMap::new()),
            tx: watch::channel(Arc::new(meta)).0,
            requested: AtomicU64::new(0),
            refreshed: watch::channel(0).0,
            closed: AtomicBool::new(false),
            connected: AtomicBool::new(true),
            disconnects: AtomicU64::new(0),
            expirations: AtomicU64::new(0),
            disconnected_since: Mutex::new(None),
        });
        let refresher = tokio::spawn(refresh_loop(Arc::clone(&inner), events_rx));
        Ok(Self { inner, refresher })
    }

    /// Ends the session now: this coordinator's ephemeral znodes (node and gateway
    /// registrations, `/controller` if it holds it) disappear at once instead of after
    /// the session timeout. Later calls fail.
    pub async fn close(&self) {
        self.inner.closed.store(true, Ordering::SeqCst);
        self.refresher.abort();
        let session = self.inner.session();
        session.close().await;
    }
}

impl Drop for ZkCoordinator {
    fn drop(&mut self) {
        self.refresher.abort();
        if !self.inner.closed.swap(true, Ordering::SeqCst) {
            close_in_background(self.inner.session());
        }
    }
}

/// Closes a session from a spawned task (if a runtime is there to run it): dropping a
/// zookeeper-async client does not end its session nor its background tasks.
fn close_in_background(session: Arc<Session>) {
    if let Ok(rt) = tokio::runtime::Handle::try_current() {
        rt.spawn(async move { session.close().await });
    }
}

async fn ensure_layout(s: &Session, paths: &ZkPaths) -> Result<()> {
    let dirs = paths
        .chroot_and_ancestors()
        .into_iter()
        .chain(BASE_DIRS.iter().chain(ADMIN_DIRS.iter()).map(|d| paths.under(d)));
    for dir in dirs {
        s.ensure(&dir, Vec::new()).await.map_err(|e| zk_error(&format!("creating {dir}"), e))?;
    }
    let id = ClusterIdZnode { id: uuid::Uuid::new_v4().simple().to_string() };
    let path = paths.cluster_id();
    s.ensure(&path, encode(&path, &id)?).await.map_err(|e| zk_error("creating the cluster id", e))
}

/// Keeps the snapshot current until the coordinator is dropped or closed.
async fn refresh_loop(inner: Arc<Inner>, mut events: UnboundedReceiver<Event>) {
    let mut retry_after: Option<Duration> = None;
    let mut need_new_session = false;
    loop {
        let first = match retry_after {
            Some(pause) => tokio::select! {
                e = events.recv() => e,
                () = tokio::time::sleep(pause) => Some(Event::Changed),
            },
            None => events.recv().await,
        };
        let Some(first) = first else { return };
        tokio::time::sleep(DEBOUNCE).await;
        let generation = inner.session().generation;
        let mut handle = |e: Event| {
            if let Event::State { generation: g, state } = e {
                if g == generation {
                    inner.note_state(state);
                    if state == SessionState::Expired {
                        need_new_session = true;
                    }
                }
                tracing::debug!(generation = g, ?state, "ZooKeeper session state");
            }
        };
        handle(first);
        while let Ok(e) = events.try_recv() {
            handle(e);
        }
        if inner.closed.load(Ordering::SeqCst) {
            return;
        }
        if need_new_session {
            match inner.renew_session().await {
                Ok(()) => need_new_session = false,
                Err(e) => {
                    tracing::warn!(error = %e, "could not replace the expired ZooKeeper session; retrying");
                    retry_after = Some(Duration::from_secs(1));
                    continue;
                }
            }
        }
        let ticket = inner.requested.load(Ordering::SeqCst);
        let session = inner.session();
        match snapshot::read(&session, &inner.paths).await {
            Ok(meta) => {
                inner.tx.send_if_modified(|cur| {
                    let changed = **cur != meta;
                    if changed {
                        *cur = Arc::new(meta);
                    }
                    changed
                });
                inner.refreshed.send_if_modified(|done| {
                    let newer = ticket > *done;
                    if newer {
                        *done = ticket;
                    }
                    newer
                });
                retry_after = None;
            }
            Err(e) => {
                if e == ZkError::SessionExpired {
                    need_new_session = true;
                }
                tracing::warn!(error = ?e, "reading ZooKeeper metadata failed; retrying");
                retry_after =
                    Some(retry_after.map_or(Duration::from_millis(100), |d| (d * 2).min(Duration::from_secs(2))));
            }
        }
    }
}

impl Inner {
    fn session(&self) -> Arc<Session> {
        Arc::clone(&self.session.read())
    }

    /// Counts a state change of the current session.
    fn note_state(&self, state: SessionState) {
        let mut since = self.disconnected_since.lock();
        match state {
            SessionState::Connected => {
                self.connected.store(true, Ordering::SeqCst);
                *since = None;
            }
            SessionState::Connecting | SessionState::Closed | SessionState::Expired => {
                if self.connected.swap(false, Ordering::SeqCst) {
                    self.disconnects.fetch_add(1, Ordering::SeqCst);
                    since.get_or_insert_with(Instant::now);
                }
            }
        }
    }

    /// Replaces an expired session: a new client, the base layout, then every
    /// ephemeral registration again. The caller re-reads (re-arming every watch).
    async fn renew_session(&self) -> Result<()> {
        let generation = self.next_generation.fetch_add(1, Ordering::SeqCst);
        let session =
            Session::connect(&self.hosts, self.session_timeout, self.op_timeout, generation, self.events.clone())
                .await?;
        let session = Arc::new(session);
        if let Err(e) = ensure_layout(&session, &self.paths).await {
            close_in_background(session);
            return Err(e);
        }
        let old = std::mem::replace(&mut *self.session.write(), Arc::clone(&session));
        self.expirations.fetch_add(1, Ordering::SeqCst);
        self.connected.store(true, Ordering::SeqCst);
        *self.disconnected_since.lock() = None;
        close_in_background(old);
        tracing::info!(generation, "replaced the expired ZooKeeper session");
        let ephemerals = self.ephemerals.lock().clone();
        for (path, data) in ephemerals {
            // The new session is in place: a registration that cannot be restored is
            // reported, not a reason to throw this session away too.
            if let Err(e) = self.claim_ephemeral(&session, &path, data).await {
                tracing::error!(%path, error = %e, "could not register again on the new ZooKeeper session");
            }
        }
        Ok(())
    }

    /// Creates ephemeral `path`, or takes over one this session already owns. One owned
    /// by another session (a previous run of this process whose session has not timed
    /// out yet) is waited for up to a session timeout.
    async fn claim_ephemeral(&self, s: &Session, path: &str, data: Vec<u8>) -> Result<()> {
        let deadline = Instant::now() + self.session_timeout + Duration::from_secs(2);
        loop {
            match s.create(path, data.clone(), true).await {
                Ok(_) => return Ok(()),
                Err(ZkError::NodeExists) => {}
                Err(e) => return Err(zk_error(&format!("creating {path}"), e)),
            }
            let owner = s.exists(path, false).await.map_err(|e| zk_error(&format!("reading {path}"), e))?;
            match owner {
                Some(stat) if Some(stat.ephemeral_owner) == s.id() => {
                    s.set(path, data, None).await.map_err(|e| zk_error(&format!("updating {path}"), e))?;
                    return Ok(());
                }
                Some(_) if Instant::now() >= deadline => {
                    return Err(FjordError::new(
                        ErrorCode::InvalidRequest,
                        format!("{path} is registered by another live ZooKeeper session"),
                    ))
                }
                Some(_) => tokio::time::sleep(Duration::from_millis(200)).await,
                None => {}
            }
        }
    }

    /// Writes one partition's state znode if its version is still `state.version`,
    /// stamped with `controller_epoch` (as Kafka stamps its LeaderAndIsr znodes).
    async fn write_state(&self, s: &Session, topic: &str, state: PartitionState, controller_epoch: u32) -> Result<i32> {
        validate_topic_name(topic).map_err(|_| unknown_topic(topic))?;
        let path = self.paths.partition_state(topic, state.partition);
        let stored =
            StateZnode { leader: state.leader, leader_epoch: state.leader_epoch, isr: state.isr, controller_epoch };
        match s.set(&path, encode(&path, &stored)?, Some(state.version)).await {
            Ok(stat) => Ok(stat.version),
            Err(ZkError::BadVersion) => Err(FjordError::new(
                ErrorCode::StaleVersion,
                format!("{topic}-{}: state version {} is no longer current", state.partition, state.version),
            )),
            Err(ZkError::NoNode) => {
                let topic_path = self.paths.topic(topic);
                let exists = s.exists(&topic_path, false).await.map_err(|e| zk_error("reading a topic", e))?;
                Err(match exists {
                    None => unknown_topic(topic),
                    Some(_) => FjordError::new(
                        ErrorCode::UnknownPartition,
                        format!("{topic} has no partition {}", state.partition),
                    ),
                })
            }
            Err(e) => Err(zk_error(&format!("writing {path}"), e)),
        }
    }

    /// Waits (bounded) until a snapshot read that started after this call is published.
    async fn await_refresh(&self) {
        let ticket = self.requested.fetch_add(1, Ordering::SeqCst) + 1;
        let mut done = self.refreshed.subscribe();
        let _ = self.events.send(Event::Changed);
        let waited = tokio::time::timeout(READ_YOUR_WRITES_WAIT, done.wait_for(|d| *d >= ticket)).await;
        if !matches!(waited, Ok(Ok(_))) {
            tracing::warn!("the metadata snapshot did not catch up with a write within {READ_YOUR_WRITES_WAIT:?}");
        }
    }

    fn snapshot(&self) -> Arc<ClusterMetadata> {
        Arc::clone(&self.tx.borrow())
    }

    /// Ids and racks of the registered nodes not shutting down, sorted by id.
    async fn live_nodes(&self, s: &Session) -> Result<Vec<(NodeId, Option<String>)>> {
        let dir = self.paths.broker_ids();
        let names = s.children(&dir, false).await.map_err(|e| zk_error("listing nodes", e))?.unwrap_or_default();
        let mut live = Vec::new();
        for name in names {
            let Ok(id) = name.parse::<NodeId>() else { continue };
            let path = self.paths.broker(id);
            let Some((bytes, _)) = s.get(&path, false).await.map_err(|e| zk_error("reading a node", e))? else {
                continue;
            };
            match data::decode::<NodeInfo>(&path, &bytes) {
                Ok(node) if !node.shutting_down => live.push((id, node.rack)),
                Ok(_) => {}
                Err(e) => tracing::warn!(error = %e, "skipping an unreadable node registration"),
            }
        }
        live.sort_unstable();
        Ok(live)
    }

    /// Creates the znodes of partitions `first..` with a leaderless state whose ISR is
    /// the replica list. A state left behind by an interrupted change is overwritten.
    async fn create_partition_states(
        &self,
        s: &Session,
        topic: &str,
        first: u32,
        assignment: &[Vec<NodeId>],
    ) -> Result<()> {
        let controller_epoch = self.snapshot().controller_epoch;
        let dir = self.paths.partitions(topic);
        s.ensure(&dir, Vec::new()).await.map_err(|e| zk_error(&format!("creating {dir}"), e))?;
        let writes: Vec<_> = assignment
            .iter()
            .zip(first..)
            .map(|(replicas, p)| async move {
                let state = StateZnode { leader: None, leader_epoch: 0, isr: replicas.clone(), controller_epoch };
                let path = self.paths.partition_state(topic, p);
                let bytes = encode(&path, &state)?;
                let zk = |e| zk_error(&format!("creating {path}"), e);
                s.ensure(&self.paths.partition(topic, p), Vec::new()).await.map_err(zk)?;
                match s.create(&path, bytes.clone(), false).await {
                    Ok(_) => Ok(()),
                    Err(ZkError::NodeExists) => s.set(&path, bytes, None).await.map(|_| ()).map_err(zk),
                    Err(e) => Err(zk(e)),
                }
            })
            .collect();
        stream::iter(writes).buffer_unordered(PARALLEL_WRITES).try_collect::<()>().await
    }

    async fn put_config(&self, s: &Session, topic: &str, config: &TopicConfig) -> Result<()> {
        let path = self.paths.topic_config(topic);
        let bytes = encode(&path, config)?;
        let zk = |e| zk_error(&format!("writing {path}"), e);
        match s.create(&path, bytes.clone(), false).await {
            Ok(_) => Ok(()),
            Err(ZkError::NodeExists) => s.set(&path, bytes, None).await.map(|_| ()).map_err(zk),
            Err(e) => Err(zk(e)),
        }
    }

    async fn create_topic_znodes(&self, s: &Session, spec: &NewTopic, znode: &TopicZnode) -> Result<()> {
        self.put_config(s, &spec.name, &spec.config).await?;
        let assignment: Vec<_> = znode.partitions.values().cloned().collect();
        self.create_partition_states(s, &spec.name, 0, &assignment).await
    }

    /// The topic as the snapshot shows it, if it is the incarnation `topic_id`.
    fn topic_in_snapshot(&self, name: &str, topic_id: &str) -> Option<TopicMetadata> {
        self.snapshot().topics.get(name).filter(|t| t.topic_id == topic_id).map(|t| TopicMetadata::clone(t))
    }
}

/// Deletes a persistent znode; whether it was there. The session's delete takes a
/// missing znode as done, so this asks first.
async fn delete_if_present(inner: &Inner, path: &str) -> Result<bool> {
    let s = inner.session();
    let zk = |e| zk_error(&format!("deleting {path}"), e);
    let found = s.exists(path, false).await.map_err(zk)?.is_some();
    if found {
        s.delete(path).await.map_err(zk)?;
    }
    inner.await_refresh().await;
    Ok(found)
}

#[async_trait]
impl Coordinator for ZkCoordinator {
    fn metadata(&self) -> watch::Receiver<Arc<ClusterMetadata>> {
        self.inner.tx.subscribe()
    }

    fn session_stats(&self) -> Option<SessionStats> {
        let i = &self.inner;
        Some(SessionStats {
            connected: i.connected.load(Ordering::SeqCst),
            disconnects: i.disconnects.load(Ordering::SeqCst),
            expirations: i.expirations.load(Ordering::SeqCst),
            disconnected_since: *i.disconnected_since.lock(),
        })
    }

    async fn register_node(&self, node: NodeInfo) -> Result<()> {
        let inner = &self.inner;
        let path = inner.paths.broker(node.id);
        let bytes = encode(&path, &node)?;
        inner.claim_ephemeral(&inner.session(), &path, bytes.clone()).await?;
        inner.ephemerals.lock().insert(path, bytes);
        inner.await_refresh().await;
        Ok(())
    }

    async fn unregister_node(&self, id: NodeId) -> Result<()> {
        let inner = &self.inner;
        let path = inner.paths.broker(id);
        if inner.ephemerals.lock().remove(&path).is_none() {
            return Ok(());
        }
        match inner.session().delete(&path).await {
            Ok(()) | Err(ZkError::NoNode) => {}
            Err(e) => return Err(zk_error(&format!("deleting {path}"), e)),
        }
        inner.await_refresh().await;
        Ok(())
    }

    async fn create_topic(&self, spec: NewTopic) -> Result<TopicMetadata> {
        topics::check_new_topic(&spec)?;
        let inner = &self.inner;
        let s = inner.session();
        let nodes = inner.live_nodes(&s).await?;
        let partitions = topics::new_partitions(&nodes, 0, spec.partitions, spec.replication_factor)?;
        let znode = TopicZnode {
            topic_id: topics::new_topic_id(),
            partitions: partitions.iter().map(|p| (p.partition, p.replicas.clone())).collect(),
        };
        let path = inner.paths.topic(&spec.name);
        // The topic znode is the claim on the name: a concurrent creator gets NodeExists.
        match s.create(&path, encode(&path, &znode)?, false).await {
            Ok(_) => {}
            Err(ZkError::NodeExists) => return Err(topics::already_exists(&spec.name)),
            Err(e) => return Err(zk_error(&format!("creating {path}"), e)),
        }
        if let Err(e) = inner.create_topic_znodes(&s, &spec, &znode).await {
            // Readers skip the half-made topic; remove it so the name can be used again.
            if let Err(cleanup) = s.delete_tree(&path).await {
                tracing::warn!(topic = %spec.name, error = ?cleanup, "could not remove a half-created topic");
            }
            return Err(e);
        }
        inner.await_refresh().await;
        Ok(inner.topic_in_snapshot(&spec.name, &znode.topic_id).unwrap_or_else(|| TopicMetadata {
            name: spec.name.clone(),
            topic_id: znode.topic_id.clone(),
            config: spec.config.clone(),
            partitions,
        }))
    }

    async fn delete_topic(&self, name: &str) -> Result<()> {
        validate_topic_name(name).map_err(|_| unknown_topic(name))?;
        let inner = &self.inner;
        let s = inner.session();
        let path = inner.paths.topic(name);
        if s.exists(&path, false).await.map_err(|e| zk_error(&format!("reading {path}"), e))?.is_none() {
            return Err(unknown_topic(name));
        }
        // Deepest first: partition states go before the topic znode, so readers skip
        // the topic from the first deletion on.
        s.delete_tree(&path).await.map_err(|e| zk_error(&format!("deleting {path}"), e))?;
        let config = inner.paths.topic_config(name);
        s.delete(&config).await.map_err(|e| zk_error(&format!("deleting {config}"), e))?;
        inner.await_refresh().await;
        Ok(())
    }

    async fn alter_topic(&self, name: &str, change: TopicChange) -> Result<TopicMetadata> {
        validate_topic_name(name).map_err(|_| unknown_topic(name))?;
        let inner = &self.inner;
        let s = inner.session();
        let path = inner.paths.topic(name);
        let zk_read = |e| zk_error(&format!("reading {path}"), e);
        let mut attempts = 0;
        let topic_id = loop {
            attempts += 1;
            let (bytes, stat) = s.get(&path, false).await.map_err(zk_read)?.ok_or_else(|| unknown_topic(name))?;
            let mut znode: TopicZnode = data::decode(&path, &bytes)?;
            let current = znode.partitions.len() as u32;
            let count = topics::added_partitions(name, current, &change)?;
            if count == 0 {
                break znode.topic_id;
            }
            let rf = znode.partitions.values().next().map_or(1, |r| r.len() as u32);
            let nodes = inner.live_nodes(&s).await?;
            let added: Vec<Vec<NodeId>> =
                topics::new_partitions(&nodes, current, count, rf)?.into_iter().map(|p| p.replicas).collect();
            // States first: readers only look at partitions the topic znode lists, so
            // the topic never shows a partition without its state.
            inner.create_partition_states(&s, name, current, &added).await?;
            znode.partitions.extend((current..).zip(added));
            match s.set(&path, encode(&path, &znode)?, Some(stat.version)).await {
                Ok(_) => break znode.topic_id,
                Err(ZkError::BadVersion) if attempts < CAS_ATTEMPTS => continue,
                Err(ZkError::BadVersion) => {
                    return Err(FjordError::new(
                        ErrorCode::StaleVersion,
                        format!("topic `{name}` kept changing while its partitions were being added; retry"),
                    ))
                }
                Err(e) => return Err(zk_error(&format!("writing {path}"), e)),
            }
        };
        if let Some(config) = &change.config {
            inner.put_config(&s, name, config).await?;
        }
        inner.await_refresh().await;
        inner.topic_in_snapshot(name, &topic_id).ok_or_else(|| {
            FjordError::new(
                ErrorCode::LeaderNotAvailable,
                format!("topic `{name}` changed; its metadata is not visible yet"),
            )
        })
    }

    async fn update_node(&self, node: NodeInfo) -> Result<()> {
        let inner = &self.inner;
        let path = inner.paths.broker(node.id);
        let bytes = encode(&path, &node)?;
        match inner.session().set(&path, bytes.clone(), None).await {
            Ok(_) => {}
            Err(ZkError::NoNode) => {
                return Err(FjordError::new(ErrorCode::InvalidRequest, format!("node {} is not registered", node.id)))
            }
            Err(e) => return Err(zk_error(&format!("writing {path}"), e)),
        }
        if let Some(remembered) = inner.ephemerals.lock().get_mut(&path) {
            *remembered = bytes;
        }
        inner.await_refresh().await;
        Ok(())
    }

    async fn register_gateway(&self, gateway: GatewayInfo) -> Result<()> {
        check_segment("gateway id", &gateway.id)?;
        let inner = &self.inner;
        let path = inner.paths.gateway(&gateway.id);
        let bytes = encode(&path, &gateway)?;
        inner.claim_ephemeral(&inner.session(), &path, bytes.clone()).await?;
        inner.ephemerals.lock().insert(path, bytes);
        inner.await_refresh().await;
        Ok(())
    }

    async fn update_partition_state(&self, topic: &str, state: PartitionState) -> Result<i32> {
        let inner = &self.inner;
        let stamp = inner.snapshot().controller_epoch;
        let version = inner.write_state(&inner.session(), topic, state, stamp).await?;
        inner.await_refresh().await;
        Ok(version)
    }

    async fn write_plan(
        &self,
        controller_epoch: u32,
        states: Vec<(String, PartitionState)>,
    ) -> Result<Vec<Result<i32>>> {
        let inner = &self.inner;
        let s = inner.session();
        // ZooKeeper's multi-op is not in the client: the fence is a read of
        // /controller_epoch before the conditional writes. A controller deposed between
        // that read and a write can still land that one write — but only on a partition
        // nobody changed since its snapshot (the version check), with a decision the
        // rules allowed there, and the new controller re-plans from whatever is stored.
        let path = inner.paths.controller_epoch();
        let current = match s.get(&path, false).await.map_err(|e| zk_error(&format!("reading {path}"), e))? {
            Some((bytes, _)) => data::decode_epoch(&path, &bytes)?,
            None => 0,
        };
        if current != controller_epoch {
            return Err(crate::api::fenced(controller_epoch, current));
        }
        // Pipelined on the one session, a bounded number in flight.
        let results: Vec<Result<i32>> = stream::iter(states)
            .map(|(topic, state)| {
                let s = &s;
                async move { inner.write_state(s, &topic, state, controller_epoch).await }
            })
            .buffered(PARALLEL_WRITES)
            .collect()
            .await;
        inner.await_refresh().await;
        Ok(results)
    }

    async fn register_producer(&self, name: &str) -> Result<ProducerInfo> {
        producers::check_producer_name(name)?;
        let inner = &self.inner;
        let info = register_producer_znode(&inner.session(), &inner.paths.producer(name), name).await?;
        inner.await_refresh().await;
        Ok(info)
    }

    async fn create_token(&self, token: TokenRecord) -> Result<()> {
        check_segment("token id", &token.id)?;
        let inner = &self.inner;
        let path = inner.paths.token(&token.id);
        match inner.session().create(&path, encode(&path, &token)?, false).await {
            Ok(_) => {}
            Err(ZkError::NodeExists) => return Err(crate::api::token_exists(&token.id)),
            Err(e) => return Err(zk_error(&format!("creating {path}"), e)),
        }
        inner.await_refresh().await;
        Ok(())
    }

    async fn delete_token(&self, id: &str) -> Result<bool> {
        check_segment("token id", id)?;
        let inner = &self.inner;
        // (Two clients revoking the same token at once may both hear `true`.)
        delete_if_present(inner, &inner.paths.token(id)).await
    }

    async fn create_acls(&self, acls: Vec<AclBinding>) -> Result<()> {
        let inner = &self.inner;
        let s = inner.session();
        for acl in &acls {
            let path = inner.paths.acl(acl)?;
            match s.create(&path, encode(&path, acl)?, false).await {
                Ok(_) | Err(ZkError::NodeExists) => {}
                Err(e) => return Err(zk_error(&format!("creating {path}"), e)),
            }
        }
        inner.await_refresh().await;
        Ok(())
    }

    async fn create_pipeline(&self, pipeline: PipelineRecord) -> Result<()> {
        check_segment("pipeline name", &pipeline.name)?;
        let inner = &self.inner;
        let path = inner.paths.pipeline(&pipeline.name);
        match inner.session().create(&path, encode(&path, &pipeline)?, false).await {
            Ok(_) => {}
            Err(ZkError::NodeExists) => return Err(crate::api::pipeline_exists(&pipeline.name)),
            Err(e) => return Err(zk_error(&format!("creating {path}"), e)),
        }
        inner.await_refresh().await;
        Ok(())
    }

    async fn delete_pipeline(&self, name: &str) -> Result<bool> {
        check_segment("pipeline name", name)?;
        let inner = &self.inner;
        delete_if_present(inner, &inner.paths.pipeline(name)).await
    }

    async fn request_preferred_election(&self, request: ElectionRequest) -> Result<()> {
        let inner = &self.inner;
        let path = inner.paths.preferred_election();
        match inner.session().create(&path, encode(&path, &request)?, false).await {
            Ok(_) => {}
            Err(ZkError::NodeExists) => return Err(crate::api::election_in_progress()),
            Err(e) => return Err(zk_error(&format!("creating {path}"), e)),
        }
        inner.await_refresh().await;
        Ok(())
    }

    async fn clear_preferred_election(&self, id: &str) -> Result<bool> {
        let inner = &self.inner;
        let s = inner.session();
        let path = inner.paths.preferred_election();
        let zk = |e| zk_error(&format!("removing {path}"), e);
        let Some((bytes, stat)) = s.get(&path, false).await.map_err(zk)? else { return Ok(false) };
        // One that does not decode can never be run: it goes too, or it would block
        // every later request.
        let theirs = data::decode::<ElectionRequest>(&path, &bytes).map_or(true, |r| r.id == id);
        if !theirs {
            return Ok(false);
        }
        let removed = match s.delete_version(&path, stat.version).await {
            Ok(()) => true,
            Err(ZkError::NoNode | ZkError::BadVersion) => false,
            Err(e) => return Err(zk(e)),
        };
        inner.await_refresh().await;
        Ok(removed)
    }

    async fn delete_acls(&self, acls: Vec<AclBinding>) -> Result<()> {
        let inner = &self.inner;
        let s = inner.session();
        for acl in &acls {
            let path = inner.paths.acl(acl)?;
            match s.delete(&path).await {
                Ok(()) | Err(ZkError::NoNode) => {}
                Err(e) => return Err(zk_error(&format!("deleting {path}"), e)),
            }
        }
        inner.await_refresh().await;
        Ok(())
    }

    async fn remove_incomplete_topic(&self, name: &str, topic_id: &str) -> Result<bool> {
        validate_topic_name(name).map_err(|_| unknown_topic(name))?;
        let inner = &self.inner;
        let s = inner.session();
        let path = inner.paths.topic(name);
        let read =
            snapshot::read_topic(&s, &inner.paths, name).await.map_err(|e| zk_error(&format!("reading {path}"), e))?;
        if !matches!(&read, snapshot::TopicRead::Incomplete { id, .. } if id == topic_id) {
            return Ok(false);
        }
        // The topic znode is the claim on the name, so it goes last: until then no one
        // else can create this topic (or its config). A creator that finished between
        // the read and here would lose its topic; the controller's grace (a minute of
        // silence from a creation that takes milliseconds) is what rules that out.
        let config = inner.paths.topic_config(name);
        s.delete(&config).await.map_err(|e| zk_error(&format!("deleting {config}"), e))?;
        s.delete_tree(&path).await.map_err(|e| zk_error(&format!("deleting {path}"), e))?;
        inner.await_refresh().await;
        Ok(true)
    }

    async fn campaign_controller(&self, node: NodeId) -> Result<Option<u32>> {
        let inner = &self.inner;
        let s = inner.session();
        let path = inner.paths.controller();
        let epoch_path = inner.paths.controller_epoch();
        let zk = |what: &str, e| zk_error(&format!("{what} {path}"), e);
        let epoch = loop {
            match s.create(&path, encode(&path, &ControllerZnode { id: node })?, true).await {
                Ok(_) => match bump_epoch(&s, &epoch_path).await {
                    Ok(epoch) => break Some(epoch),
                    Err(e) => {
                        // Do not hold /controller without a fresh epoch.
                        let _ = s.delete(&path).await;
                        return Err(e);
                    }
                },
                Err(ZkError::NodeExists) => {}
                Err(e) => return Err(zk("creating", e)),
            }
            let Some((bytes, _)) = s.get(&path, false).await.map_err(|e| zk("reading", e))? else {
                continue; // the controller just went away: campaign again
            };
            let holder: ControllerZnode = data::decode(&path, &bytes)?;
            if holder.id != node {
                break None;
            }
            let current = s.get(&epoch_path, false).await.map_err(|e| zk("reading", e))?;
            break Some(match current {
                Some((bytes, _)) => data::decode_epoch(&epoch_path, &bytes)?,
                None => 0,
            });
        };
        inner.await_refresh().await;
        Ok(epoch)
    }
}

/// Creates `/producers/{name}` (epoch 0) or rewrites it conditionally (the next epoch).
async fn register_producer_znode(s: &Session, path: &str, name: &str) -> Result<ProducerInfo> {
    let zk = |e| zk_error(&format!("registering {path}"), e);
    let data = encode(path, &ProducerZnode { name: name.to_owned() })?;
    let info = |stat: &zookeeper_async::Stat| ProducerInfo {
        name: name.to_owned(),
        id: stat.czxid as u64,
        epoch: stat.version as u32,
    };
    for _ in 0..CAS_ATTEMPTS {
        match s.get(path, false).await.map_err(zk)? {
            None => match s.create(path, data.clone(), false).await {
                Ok(stat) => return Ok(info(&stat)),
                Err(ZkError::NodeExists) => continue,
                Err(e) => return Err(zk(e)),
            },
            Some((_, stat)) => {
                if stat.version == i32::MAX {
                    return Err(producers::producer_epoch_exhausted(name));
                }
                match s.set(path, data.clone(), Some(stat.version)).await {
                    Ok(stat) => return Ok(info(&stat)),
                    Err(ZkError::BadVersion | ZkError::NoNode) => continue,
                    Err(e) => return Err(zk(e)),
                }
            }
        }
    }
    Err(FjordError::new(ErrorCode::StaleVersion, format!("{path} kept changing; register again")))
}

/// Increments `/controller_epoch` with a conditional write (creating it at 1).
async fn bump_epoch(s: &Session, path: &str) -> Result<u32> {
    let zk = |e| zk_error(&format!("writing {path}"), e);
    for _ in 0..CAS_ATTEMPTS {
        match s.get(path, false).await.map_err(zk)? {
            None => match s.create(path, encode_epoch(1), false).await {
                Ok(_) => return Ok(1),
                Err(ZkError::NodeExists) => continue,
                Err(e) => return Err(zk(e)),
            },
            Some((bytes, stat)) => {
                let next = data::decode_epoch(path, &bytes)?.saturating_add(1);
                match s.set(path, encode_epoch(next), Some(stat.version)).await {
                    Ok(_) => return Ok(next),
                    Err(ZkError::BadVersion) => continue,
                    Err(e) => return Err(zk(e)),
                }
            }
        }
    }
    Err(FjordError::new(ErrorCode::StaleVersion, format!("{path} kept changing; campaign again")))
}
