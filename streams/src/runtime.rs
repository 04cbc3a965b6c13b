//! A processor instance: runs a [`Topology`]'s tasks over a Fjord cluster through any
//! gateway.
//!
//! The instance is a member of the consumer group named after the pipeline
//! (`app_id`), subscribed to every stage's inputs with the `range` assignor, so the
//! same partition of co-partitioned inputs lands on the same member. A task (stage,
//! partition) runs while the member owns all of its inputs' partitions: it restores its
//! state from its changelog, then loops poll → process → write (changelog, outputs) →
//! commit, in the order [`crate::changelog`] explains. The poll is the heartbeat, and a
//! partition handed over to another member moves after this member's next poll, by
//! which time its batch is committed.

use std::collections::{BTreeMap, BTreeSet, VecDeque};
use std::future::Future;
use std::sync::{Arc, Mutex, RwLock};
use std::time::{Duration, Instant};

use fjord_client::{
    Acks, Client, Commit, CommitOffset, ConsumedRecord, Error, Join, NewTopic, ProduceOptions, ReadOptions, Record,
    Start, TopicPartition,
};
use serde::Serialize;
use serde_json::Value;

use crate::changelog::{self, Intent};
use crate::record::Rec;
use crate::store::{AnyStore, LocalDb, Store};
use crate::task::{self, InputRecord, Tables, TaskState};
use crate::topology::{Dest, Source, Stage, Topology};

/// How a processor instance runs.
#[derive(Debug, Clone)]
pub struct ProcessorConfig {
    /// The pipeline's name: its consumer group, and the prefix of its internal topics
    /// (`{app_id}-repartition-{stage}`, `{app_id}-changelog-{stage}`).
    pub app_id: String,
    /// This instance's name in the group (its `client_id`).
    pub instance: String,
    /// Long-poll wait when nothing is there.
    pub poll_timeout_ms: u64,
    /// At most this many records per poll (and so per batch).
    pub max_poll_records: u32,
    /// The group session: an instance silent this long loses its tasks.
    pub session_timeout_ms: u64,
    /// Replication factor of the internal topics (`None`: the cluster's default).
    pub replication_factor: Option<u32>,
    /// Config of the internal topics it creates (`min.insync.replicas`, say; changelogs
    /// are always `cleanup.policy=compact`).
    pub topic_config: serde_json::Map<String, Value>,
    /// How long a write is retried (retriable errors) before the processor gives up.
    pub retry_for: Duration,
    /// Records a pipeline's expressions failed on (`pipeline::Compiled`), shown with the
    /// task tallies.
    pub expression_errors: Option<Arc<std::sync::atomic::AtomicU64>>,
    /// Keep task state in a local RocksDB here (wiped at start: state comes from the
    /// changelogs) instead of in memory.
    pub state_dir: Option<std::path::PathBuf>,
    /// Which life of the pipeline this is (its creation time, for a stored one): part of
    /// every idempotency key.
    pub incarnation: String,
    /// The longest `timeout_ms` any one request asks for: at most the gateway's
    /// `max_timeout_ms`, which refuses longer ones (a write is retried past it until
    /// `retry_for`).
    pub max_request_timeout_ms: u64,
}

/// [`ProcessorConfig::max_request_timeout_ms`] unless set: below the gateway's default
/// maximum (60 s), and the longest wait a processor needs.
pub const DEFAULT_MAX_REQUEST_TIMEOUT_MS: u64 = 5_000;

impl ProcessorConfig {
    pub fn new(app_id: impl Into<String>) -> Self {
        Self {
            app_id: app_id.into(),
            instance: "processor".into(),
            poll_timeout_ms: 1_000,
            max_poll_records: 5_000,
            session_timeout_ms: 10_000,
            replication_factor: None,
            topic_config: serde_json::Map::new(),
            retry_for: Duration::from_secs(60),
            expression_errors: None,
            state_dir: None,
            incarnation: "0".into(),
            max_request_timeout_ms: DEFAULT_MAX_REQUEST_TIMEOUT_MS,
        }
    }
}

/// Why a processor stopped or could not start.
#[derive(Debug, thiserror::Error)]
pub enum ProcessorError {
    #[error("invalid pipeline name {0:?}: 1–100 characters of [a-zA-Z0-9._-]")]
    InvalidName(String),
    #[error("topic {topic}: {message}")]
    Topic { topic: String, message: String },
    #[error("{what}: {source}")]
    Api { what: String, source: Box<Error> },
    #[error("local state store: {0}")]
    Store(String),
    /// Writes kept failing with retriable errors (a failover taking long): the processor
    /// stops writing, gives up its tasks and joins again.
    #[error("{0}")]
    Unavailable(String),
}

fn api(what: impl Into<String>) -> impl FnOnce(Error) -> ProcessorError {
    let what = what.into();
    move |source| ProcessorError::Api { what, source: Box::new(source) }
}

/// What an instance is doing, for `GET` status and tests.
#[derive(Debug, Clone, Default, Serialize)]
pub struct ProcessorStatus {
    pub member_id: Option<String>,
    pub generation: Option<u32>,
    pub tasks: Vec<TaskStatus>,
    /// Batches written and committed since start.
    pub batches: u64,
    /// Batches processed again after a restore (begun by an earlier owner).
    pub replayed_batches: u64,
    /// Writes answered `idempotency_key_reused`: a replayed batch computed differently
    /// from its first run (a table changed meanwhile); the first run's write stands.
    pub diverged_writes: u64,
    pub last_error: Option<String>,
}

#[derive(Debug, Clone, Serialize)]
pub struct TaskStatus {
    pub stage: usize,
    pub partition: u32,
    /// Next offset per input topic.
    pub positions: BTreeMap<String, u64>,
    pub state_keys: usize,
    pub late_records: u64,
    pub skipped_records: u64,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
struct TaskId {
    stage: usize,
    partition: u32,
}

struct Task {
    id: TaskId,
    /// The stage's input topics, by input index.
    inputs: Vec<String>,
    state: TaskState<AnyStore>,
    /// Next offset to take, per input.
    positions: Vec<u64>,
    /// The batch number of the next batch.
    seq: u64,
    /// A begun batch to redo exactly: the offsets it ends before, per input.
    redo: Option<Intent>,
}

/// A processor instance.
pub struct Processor {
    client: Client,
    topology: Arc<Topology>,
    cfg: ProcessorConfig,
    status: Arc<Mutex<ProcessorStatus>>,
    tables: Arc<RwLock<Tables>>,
}

/// Records polled and not yet processed, per input partition.
type Buffers = BTreeMap<(String, u32), VecDeque<ConsumedRecord>>;

/// Records per output request.
const OUTPUT_CHUNK: usize = 5_000;

/// A changelog write for after the commit: topic, partition, records, idempotency key.
type Tombstones = (String, u32, Vec<Record>, String);

/// Partition counts of the topics a pipeline reads and writes internally.
struct Layout {
    /// Per stage, its input topics (by input index).
    inputs: Vec<Vec<String>>,
    /// Per stage, its task count (the partition count of its inputs).
    partitions: Vec<u32>,
}

/// Fjord's name rule (topics, groups): 1 to `max` characters of `[a-zA-Z0-9._-]`.
pub fn valid_name(s: &str, max: usize) -> bool {
    (1..=max).contains(&s.len()) && s.bytes().all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b'-'))
}

/// The longest pipeline name (application id): it prefixes internal topic names.
pub const MAX_APP_ID_LEN: usize = 100;

/// A pipeline's name: the name rule, at most [`MAX_APP_ID_LEN`] characters.
pub fn valid_app_id(s: &str) -> bool {
    valid_name(s, MAX_APP_ID_LEN)
}

impl Processor {
    pub fn new(client: Client, topology: Topology, cfg: ProcessorConfig) -> Result<Self, ProcessorError> {
        if !valid_app_id(&cfg.app_id) {
            return Err(ProcessorError::InvalidName(cfg.app_id));
        }
        Ok(Self { client, topology: Arc::new(topology), cfg, status: Arc::default(), tables: Arc::default() })
    }

    pub fn status(&self) -> ProcessorStatus {
        self.status.lock().map(|s| s.clone()).unwrap_or_default()
    }

    fn repartition_topic(&self, stage: usize) -> String {
        format!("{}-repartition-{stage}", self.cfg.app_id)
    }

    fn changelog_topic(&self, stage: usize) -> String {
        format!("{}-changelog-{stage}", self.cfg.app_id)
    }

    fn source_topic(&self, source: &Source) -> String {
        match source {
            Source::Topic(t) => t.clone(),
            Source::Repartition(s) => self.repartition_topic(*s),
        }
    }

    fn dest_topic(&self, dest: &Dest) -> String {
        match dest {
            Dest::Topic(t) => t.clone(),
            Dest::Repartition(s) => self.repartition_topic(*s),
        }
    }

    async fn partitions_of(&self, topic: &str) -> Result<u32, ProcessorError> {
        let d = self.client.describe_topic(topic).await.map_err(|e| match e.code() {
            Some("unknown_topic") => ProcessorError::Topic { topic: topic.into(), message: "does not exist".into() },
            _ => ProcessorError::Api { what: format!("describe {topic}"), source: Box::new(e) },
        })?;
        Ok(d.partitions.len() as u32)
    }

    async fn ensure(&self, name: String, partitions: u32, compact: bool) -> Result<(), ProcessorError> {
        let mut spec = NewTopic::new(name.clone(), partitions);
        spec.replication_factor = self.cfg.replication_factor;
        spec.config.clone_from(&self.cfg.topic_config);
        // A batch redone after a long outage must still find its writes' idempotency
        // records (the longest window a topic takes: 7 days).
        spec.config.entry("idempotency.window.ms").or_insert(Value::from(604_800_000u64));
        if compact {
            spec.config.insert("cleanup.policy".into(), Value::from("compact"));
        } else {
            // A repartition topic's records keep their event times: time-based retention
            // must not drop them before the next stage has read them.
            spec.config.entry("retention.ms").or_insert(Value::from(-1));
        }
        let d = self.client.ensure_topic(&spec).await.map_err(api(format!("create {name}")))?;
        if d.partitions.len() as u32 != partitions {
            return Err(ProcessorError::Topic {
                topic: name,
                message: format!("has {} partitions, the pipeline needs {partitions}", d.partitions.len()),
            });
        }
        Ok(())
    }

    /// Checks the external topics (they exist; a stage's inputs are co-partitioned) and
    /// creates the internal ones.
    async fn layout(&self) -> Result<Layout, ProcessorError> {
        let mut inputs = Vec::new();
        let mut partitions = Vec::new();
        for (s, stage) in self.topology.stages.iter().enumerate() {
            let mut count = None;
            let mut names = Vec::new();
            for input in &stage.inputs {
                let topic = self.source_topic(&input.source);
                let n = match &input.source {
                    Source::Topic(t) => self.partitions_of(t).await?,
                    // A repartition topic has as many partitions as stage 0's inputs.
                    Source::Repartition(_) => {
                        let n = partitions.first().copied().unwrap_or(1);
                        self.ensure(topic.clone(), n, false).await?;
                        n
                    }
                };
                match count {
                    None => count = Some(n),
                    Some(c) if c != n => {
                        return Err(ProcessorError::Topic {
                            topic,
                            message: format!("has {n} partitions but the other inputs of its stage have {c}: joined streams must be co-partitioned"),
                        })
                    }
                    Some(_) => {}
                }
                names.push(topic);
            }
            let n = count.unwrap_or(1);
            // Every stage has one: its batches' intents (and a stateful stage's state).
            self.ensure(self.changelog_topic(s), n, true).await?;
            for table in stage.tables() {
                self.partitions_of(table).await?;
            }
            inputs.push(names);
            partitions.push(n);
        }
        for sink in self.topology.sinks() {
            self.partitions_of(sink).await?;
        }
        Ok(Layout { inputs, partitions })
    }

    /// Reads every table topic to its end, then follows each in the background.
    async fn load_tables(&self) -> Result<Vec<tokio::task::JoinHandle<()>>, ProcessorError> {
        let mut followers = Vec::new();
        let wait_ms = self.cfg.max_request_timeout_ms;
        let names: BTreeSet<String> = self.topology.stages.iter().flat_map(|s| s.tables().map(str::to_owned)).collect();
        for table in names {
            let n = self.partitions_of(&table).await?;
            for p in 0..n {
                let records =
                    self.client.read_to_end(&table, p, Start::Earliest).await.map_err(api(format!("read {table}")))?;
                let next = records.last().map_or(0, |r| r.offset + 1);
                apply_table(&self.tables, &table, &records);
                let (client, tables, table) = (self.client.clone(), self.tables.clone(), table.clone());
                followers.push(tokio::spawn(follow_table(client, tables, table, p, next, wait_ms)));
            }
        }
        Ok(followers)
    }

    /// Runs until `shutdown` completes (then leaves the group) or a write fails for
    /// good.
    pub async fn run(&self, shutdown: impl Future<Output = ()>) -> Result<(), ProcessorError> {
        let layout = self.layout().await?;
        let local = match &self.cfg.state_dir {
            Some(dir) => {
                Some(blocking(|| LocalDb::open_fresh(&dir.join(&self.cfg.app_id))).map_err(ProcessorError::Store)?)
            }
            None => None,
        };
        let followers = self.load_tables().await?;
        let result = self.run_loop(&layout, local.as_ref(), shutdown).await;
        for f in followers {
            f.abort();
        }
        if let Err(e) = &result {
            self.set_error(e.to_string());
        }
        result
    }

    fn set_error(&self, e: String) {
        if let Ok(mut s) = self.status.lock() {
            s.last_error = Some(e);
        }
    }

    async fn run_loop(
        &self,
        layout: &Layout,
        local: Option<&LocalDb>,
        shutdown: impl Future<Output = ()>,
    ) -> Result<(), ProcessorError> {
        tokio::pin!(shutdown);
        let topics: BTreeSet<String> = layout.inputs.iter().flatten().cloned().collect();
        let join = Join {
            topics: topics.into_iter().collect(),
            session_timeout_ms: Some(self.cfg.session_timeout_ms),
            auto_offset_reset: Some("earliest".into()),
            assignor: Some("range".into()),
            auto_commit: Some(false),
            client_id: Some(self.cfg.instance.clone()),
        };
        let mut member: Option<String> = None;
        let mut tasks: BTreeMap<TaskId, Task> = BTreeMap::new();
        let mut buffers: Buffers = BTreeMap::new();
        let opts = ReadOptions {
            timeout_ms: Some(self.cfg.poll_timeout_ms.min(self.cfg.max_request_timeout_ms)),
            max_records: Some(self.cfg.max_poll_records),
            ..ReadOptions::default()
        };
        loop {
            let id = match &member {
                Some(id) => id.clone(),
                None => {
                    let m = tokio::select! {
                        _ = &mut shutdown => return Ok(()),
                        m = self.client.join(&self.cfg.app_id, &join) => m,
                    };
                    match m {
                        Ok(m) => {
                            member = Some(m.member_id.clone());
                            m.member_id
                        }
                        Err(e) if e.retriable() => {
                            self.set_error(format!("join: {e}"));
                            tokio::time::sleep(Duration::from_millis(500)).await;
                            continue;
                        }
                        Err(e) => return Err(api("join")(e)),
                    }
                }
            };
            let reply = tokio::select! {
                _ = &mut shutdown => {
                    let _ = self.client.leave(&self.cfg.app_id, &id).await;
                    return Ok(());
                }
                r = self.client.poll(&self.cfg.app_id, &id, &opts) => r,
            };
            let reply = match reply {
                Ok(r) => r,
                Err(e) => {
                    if !e.retriable() && !matches!(e.code(), Some("unknown_member_id")) {
                        return Err(api("poll")(e));
                    }
                    // A poll whose answer was lost may still have moved the member's read
                    // positions past records it never got: start over from the committed
                    // offsets (leave, drop the tasks, join again).
                    self.start_over(&id, format!("poll: {e}"), (&mut member, &mut tasks, &mut buffers)).await;
                    tokio::time::sleep(Duration::from_millis(200)).await;
                    continue;
                }
            };
            let owned: BTreeSet<(String, u32)> = reply
                .assignment
                .iter()
                .map(|TopicPartition { topic, partition }| (topic.clone(), *partition))
                .collect();
            buffers.retain(|tp, _| owned.contains(tp));
            for r in reply.records {
                buffers.entry((r.topic.clone(), r.partition)).or_default().push_back(r);
            }
            // Tasks whose every input partition this member owns.
            let mut wanted = BTreeSet::new();
            for (s, names) in layout.inputs.iter().enumerate() {
                for p in 0..layout.partitions[s] {
                    if names.iter().all(|t| owned.contains(&(t.clone(), p))) {
                        wanted.insert(TaskId { stage: s, partition: p });
                    }
                }
            }
            tasks.retain(|t, _| wanted.contains(t));
            let mut fresh_commits = Vec::new();
            for t in &wanted {
                if !tasks.contains_key(t) {
                    // A task that cannot start yet (its changelog not readable whole) is
                    // tried again after the next poll; its records wait in the buffers.
                    match self.start_task(*t, &layout.inputs[t.stage], local).await {
                        Ok((task, commits)) => {
                            fresh_commits.extend(commits);
                            tasks.insert(*t, task);
                        }
                        Err(e) => {
                            tracing::warn!(stage = t.stage, partition = t.partition, error = %e, "task not started yet");
                            self.set_error(e.to_string());
                        }
                    }
                }
            }
            // Where new tasks start (inputs never committed: their log start) is committed
            // before any of their batches, so a batch begun and not committed is always
            // recognised as begun.
            if !fresh_commits.is_empty() {
                let c =
                    Commit { member_id: Some(id.clone()), generation: Some(reply.generation), offsets: fresh_commits };
                if let Err(e) = self.client.commit(&self.cfg.app_id, &c).await {
                    self.start_over(&id, format!("commit: {e}"), (&mut member, &mut tasks, &mut buffers)).await;
                    continue;
                }
            }
            let mut commits = Vec::new();
            let mut tombstones = Vec::new();
            let mut done = 0;
            let mut replayed = 0;
            let mut gave_up = None;
            // Every task with records does its batch; tasks are independent, so their
            // writes go out at once.
            let mut work = Vec::new();
            for task in tasks.values_mut() {
                if let Some((batch, redo)) = take_batch(task, &mut buffers, self.cfg.max_poll_records as usize) {
                    work.push((task, batch, redo));
                }
            }
            let results = futures::future::join_all(work.into_iter().map(|(task, batch, redo)| async move {
                let r = self.write_batch(task, batch).await;
                (task, redo, r)
            }))
            .await;
            let mut fatal = None;
            for (task, redo, r) in results {
                match r {
                    Ok(t) => tombstones.extend(t),
                    Err(ProcessorError::Unavailable(e)) => {
                        gave_up = Some(e);
                        continue;
                    }
                    Err(e) => {
                        fatal = Some(e);
                        continue;
                    }
                }
                done += 1;
                replayed += u64::from(redo);
                // The task's tallies, and this instance's expression failures and last
                // error, ride along (a pipeline's status shows them).
                let c = task.state.counters;
                let expression_errors =
                    self.cfg.expression_errors.as_ref().map(|e| e.load(std::sync::atomic::Ordering::Relaxed));
                let last_error = self.status.lock().ok().and_then(|s| s.last_error.clone());
                let tallies = serde_json::json!({
                    "late": c.late, "skipped": c.skipped,
                    "expression_errors": expression_errors, "last_error": last_error,
                })
                .to_string();
                for (i, topic) in task.inputs.iter().enumerate() {
                    commits.push(CommitOffset {
                        topic: topic.clone(),
                        partition: task.id.partition,
                        offset: task.positions[i],
                        metadata: Some(tallies.clone()),
                    });
                }
            }
            if let Some(e) = fatal {
                return Err(e);
            }
            if let Some(e) = gave_up {
                // Nothing of the unfinished batch is committed: whoever owns its task next
                // (this member after joining again, or another) redoes it from its intent.
                tracing::warn!(error = e, "writes keep failing; giving up the tasks and joining again");
                self.start_over(&id, e, (&mut member, &mut tasks, &mut buffers)).await;
                tokio::time::sleep(Duration::from_millis(500)).await;
                continue;
            }
            if !commits.is_empty() {
                let c = Commit { member_id: Some(id.clone()), generation: Some(reply.generation), offsets: commits };
                if let Err(e) = self.client.commit(&self.cfg.app_id, &c).await {
                    // The writes stand (idempotent); whoever owns the tasks now redoes
                    // the batches and the server replays them.
                    // Rejoining resets the member's read positions to the committed
                    // offsets, which the tasks restart from.
                    self.start_over(&id, format!("commit: {e}"), (&mut member, &mut tasks, &mut buffers)).await;
                    continue;
                }
            }
            // Tombstones for state the committed batches removed: only now, so a batch
            // done again still finds its before-values; losing them (a crash) only
            // keeps changelog entries whose value is already gone.
            for (topic, partition, records, key) in tombstones {
                if let Err(e) = self.produce(&topic, Some(partition), &records, key).await {
                    tracing::warn!(topic, partition, error = %e, "changelog tombstones not written");
                }
            }
            if let Ok(mut s) = self.status.lock() {
                s.member_id = Some(id.clone());
                s.generation = Some(reply.generation);
                s.batches += done;
                s.replayed_batches += replayed;
                s.tasks = tasks.values().map(status_of).collect();
            }
        }
    }

    /// Leaves the group and drops every task and buffered record: joining again resets
    /// the member's read positions to the committed offsets, from which the tasks start
    /// over (a begun batch is redone from its intent).
    async fn start_over(
        &self,
        member_id: &str,
        why: String,
        (member, tasks, buffers): (&mut Option<String>, &mut BTreeMap<TaskId, Task>, &mut Buffers),
    ) {
        self.set_error(why);
        let _ = self.client.leave(&self.cfg.app_id, member_id).await;
        *member = None;
        tasks.clear();
        buffers.clear();
    }

    /// A task's state from its changelog and its positions from the group's committed
    /// offsets (inputs never committed start at their log start, committed first so a
    /// crash before the first batch's commit still finds its batch begun).
    async fn start_task(
        &self,
        id: TaskId,
        inputs: &[String],
        local: Option<&LocalDb>,
    ) -> Result<(Task, Vec<CommitOffset>), ProcessorError> {
        let offsets = self.client.group_offsets(&self.cfg.app_id).await.map_err(api("read the group's offsets"))?;
        let mut committed = Vec::new();
        let mut commits = Vec::new();
        for topic in inputs {
            let c = offsets
                .offsets
                .iter()
                .find(|o| &o.topic == topic && o.partition == id.partition)
                .and_then(|o| o.offset);
            let c = match c {
                Some(c) => c,
                None => {
                    let o = self
                        .client
                        .offsets(topic, id.partition, None)
                        .await
                        .map_err(api(format!("offsets of {topic}")))?;
                    commits.push(CommitOffset {
                        topic: topic.clone(),
                        partition: id.partition,
                        offset: o.log_start_offset,
                        metadata: None,
                    });
                    o.log_start_offset
                }
            };
            committed.push(Some(c));
        }
        let restored = {
            let topic = self.changelog_topic(id.stage);
            let records = self.read_changelog(&topic, id.partition).await?;
            let restored = changelog::restore(
                records.iter().map(|r| (r.key.clone().unwrap_or_default(), r.value.clone())),
                &committed,
            );
            // Every committed batch wrote its intent first, so the latest intent ends at
            // least where the commits are; a changelog read that ends earlier missed
            // some of it — restoring from it would lose state.
            if let Some(i) = &restored.intent {
                if i.ends.iter().zip(&committed).any(|(end, c)| c.is_some_and(|c| c > *end)) {
                    return Err(ProcessorError::Topic {
                        topic,
                        message: format!(
                            "partition {}: the latest intent ends at {:?} but the group committed {committed:?}: \
                             the changelog read is missing records",
                            id.partition, i.ends
                        ),
                    });
                }
            }
            if restored.undecodable > 0 {
                tracing::error!(
                    topic,
                    partition = id.partition,
                    count = restored.undecodable,
                    "changelog entries that do not decode were left out of the state"
                );
            }
            restored
        };
        let positions: Vec<u64> = committed.iter().map(|c| c.unwrap_or(0)).collect();
        let seq = match (&restored.intent, restored.pending) {
            (Some(i), true) => i.seq,
            (Some(i), false) => i.seq + 1,
            (None, _) => 0,
        };
        let redo = restored.intent.filter(|_| restored.pending);
        let counters = restored.state.counters;
        let store = match local {
            Some(db) => AnyStore::Rocks(
                blocking(|| db.task_store(&format!("{}/{}", id.stage, id.partition), restored.state.store.0))
                    .map_err(ProcessorError::Store)?,
            ),
            None => AnyStore::Mem(restored.state.store),
        };
        tracing::info!(
            stage = id.stage,
            partition = id.partition,
            keys = store.len(),
            redo = redo.is_some(),
            "task started"
        );
        Ok((Task { id, inputs: inputs.to_vec(), state: TaskState { store, counters }, positions, seq, redo }, commits))
    }

    /// A task's whole changelog partition. Only its task writes it, so everything in its
    /// leader's log was acknowledged or is a begun batch: the read waits until the high
    /// watermark reaches the log end — a leader elected moments ago learns its
    /// followers' progress on their next fetch (KAFKA-7128), and a read up to a high
    /// watermark that lags would miss the latest batches.
    async fn read_changelog(&self, topic: &str, partition: u32) -> Result<Vec<ConsumedRecord>, ProcessorError> {
        let deadline = Instant::now() + self.cfg.retry_for;
        loop {
            match self.client.offsets(topic, partition, None).await {
                Ok(o) if o.high_watermark >= o.log_end_offset => break,
                Ok(_) => {}
                Err(e) if !e.retriable() => return Err(api(format!("offsets of {topic}"))(e)),
                Err(_) => {}
            }
            if Instant::now() > deadline {
                return Err(ProcessorError::Topic {
                    topic: topic.into(),
                    message: format!("partition {partition}: its high watermark did not reach its log end"),
                });
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        let mut backoff = Duration::from_millis(50);
        loop {
            match self.client.read_to_end(topic, partition, Start::Earliest).await {
                Ok(records) => return Ok(records),
                Err(e) if e.retriable() && Instant::now() < deadline => {
                    tokio::time::sleep(backoff).await;
                    backoff = (backoff * 2).min(Duration::from_secs(1));
                }
                Err(e) => return Err(api(format!("restore from {topic}"))(e)),
            }
        }
    }

    /// Processes a batch and writes it: the changelog, then the outputs; the task moves on
    /// only when both are acknowledged.
    /// Returns the batch's changelog tombstones, to write once it is committed.
    async fn write_batch(
        &self,
        task: &mut Task,
        batch: Vec<InputRecord>,
    ) -> Result<Option<Tombstones>, ProcessorError> {
        let stage: &Stage = &self.topology.stages[task.id.stage];
        let starts = task.positions.clone();
        let ends = match &task.redo {
            Some(i) => i.ends.clone(),
            None => {
                let mut ends = starts.clone();
                for r in &batch {
                    ends[r.input] = ends[r.input].max(r.offset + 1);
                }
                ends
            }
        };
        let mut outcome = {
            let tables = self.tables.read().map_err(|_| ProcessorError::Store("a table follower panicked".into()))?;
            blocking(|| task::compute(stage, &tables, &task.state, batch))
        };
        let intent = Intent { seq: task.seq, starts, ends, before: outcome.before, after: outcome.after };
        // The pipeline, its incarnation (a pipeline recreated under the same name must
        // not hit its predecessor's keys), the task, the batch and its offsets; at most
        // ~170 characters whatever the names.
        let base = format!(
            "{}/{}/{}/{}/{}/{:016x}",
            self.cfg.app_id,
            self.cfg.incarnation,
            task.id.stage,
            task.id.partition,
            intent.seq,
            fingerprint(&intent.starts, &intent.ends)
        );
        {
            let records: Vec<Record> = changelog::records(&intent, &outcome.changes)
                .into_iter()
                .map(|(k, v)| Record { key: Some(k), value: Some(v), ..Record::default() })
                .collect();
            let topic = self.changelog_topic(task.id.stage);
            self.produce(&topic, Some(task.id.partition), &records, format!("{base}/c")).await?;
        }
        let mut by_topic: BTreeMap<String, Vec<Record>> = BTreeMap::new();
        for o in std::mem::take(&mut outcome.outputs) {
            by_topic.entry(self.dest_topic(&o.dest)).or_default().push(o.rec.into_produce());
        }
        for (topic, records) in by_topic {
            // Chunks one after another: a key's records stay in order.
            for (n, chunk) in records.chunks(OUTPUT_CHUNK).enumerate() {
                let t = fnv(topic.bytes());
                self.produce(&topic, None, chunk, format!("{base}/o/{t:016x}/{n}")).await?;
            }
        }
        let deleted = changelog::deleted_keys(&outcome.changes);
        let tombstones = (!deleted.is_empty()).then(|| {
            let records: Vec<Record> =
                deleted.into_iter().map(|k| Record { key: Some(k), ..Record::default() }).collect();
            (self.changelog_topic(task.id.stage), task.id.partition, records, format!("{base}/t"))
        });
        blocking(|| task.state.apply(&outcome)).map_err(ProcessorError::Store)?;
        task.positions = intent.ends;
        task.seq += 1;
        task.redo = None;
        Ok(tombstones)
    }

    /// One idempotent `acks=all` produce, retried while the error is retriable.
    /// How long a write is retried: at most half the session, so a member whose writes
    /// cannot get through gives up before it is expelled and another owns its tasks.
    fn retry_for(&self) -> Duration {
        self.cfg.retry_for.min(Duration::from_millis(self.cfg.session_timeout_ms / 2))
    }

    async fn produce(
        &self,
        topic: &str,
        partition: Option<u32>,
        records: &[Record],
        key: String,
    ) -> Result<(), ProcessorError> {
        let retry_for = self.retry_for();
        let opts = ProduceOptions {
            acks: Acks::All,
            idempotency_key: Some(key),
            timeout_ms: Some((retry_for.as_millis() as u64).clamp(1, self.cfg.max_request_timeout_ms.max(1))),
            ..ProduceOptions::default()
        };
        let deadline = Instant::now() + retry_for;
        let mut backoff = Duration::from_millis(50);
        loop {
            let err = match self.client.produce(topic, partition, records, &opts).await {
                Ok(reply) if reply.all_written() => return Ok(()),
                Ok(reply) => {
                    let e = reply.offsets.iter().find_map(|o| o.error.clone());
                    match e {
                        Some(e) if e.code == "idempotency_key_reused" => {
                            self.diverged();
                            return Ok(());
                        }
                        Some(e) if !e.retriable => {
                            return Err(ProcessorError::Topic {
                                topic: topic.into(),
                                message: format!("{}: {}", e.code, e.message),
                            })
                        }
                        Some(e) => format!("{}: {}", e.code, e.message),
                        None => "a record was not written".into(),
                    }
                }
                Err(e) if e.code() == Some("idempotency_key_reused") => {
                    self.diverged();
                    return Ok(());
                }
                Err(e) if !e.retriable() => return Err(api(format!("produce to {topic}"))(e)),
                Err(e) => e.to_string(),
            };
            if Instant::now() + backoff > deadline {
                return Err(ProcessorError::Unavailable(format!("{topic}: gave up retrying: {err}")));
            }
            tracing::debug!(topic, err, "retrying a pipeline write");
            tokio::time::sleep(backoff).await;
            backoff = (backoff * 2).min(Duration::from_secs(1));
        }
    }

    fn diverged(&self) {
        tracing::warn!("a replayed batch computed a different write than its first run; the first stands");
        if let Ok(mut s) = self.status.lock() {
            s.diverged_writes += 1;
        }
    }
}

/// Runs `f`, which may block (a local RocksDB), off the async workers where the
/// runtime has several (`block_in_place`); inline on a single-threaded runtime.
fn blocking<T>(f: impl FnOnce() -> T) -> T {
    match tokio::runtime::Handle::try_current().map(|h| h.runtime_flavor()) {
        Ok(tokio::runtime::RuntimeFlavor::MultiThread) => tokio::task::block_in_place(f),
        _ => f(),
    }
}

fn status_of(t: &Task) -> TaskStatus {
    TaskStatus {
        stage: t.id.stage,
        partition: t.id.partition,
        positions: t.inputs.iter().cloned().zip(t.positions.iter().copied()).collect(),
        state_keys: t.state.store.len(),
        late_records: t.state.counters.late,
        skipped_records: t.state.counters.skipped,
    }
}

/// FNV-1a of a batch's offsets: part of its idempotency keys.
fn fingerprint(starts: &[u64], ends: &[u64]) -> u64 {
    fnv(starts.iter().chain(ends).flat_map(|x| x.to_be_bytes()))
}

/// FNV-1a (64 bit).
fn fnv(bytes: impl IntoIterator<Item = u8>) -> u64 {
    bytes.into_iter().fold(0xcbf2_9ce4_8422_2325, |h, b| (h ^ u64::from(b)).wrapping_mul(0x0100_0000_01b3))
}

/// The task's next batch from its inputs' buffers: a batch being redone takes exactly
/// its records (and waits until they have all arrived); otherwise whatever is there, up
/// to `max`. Inputs are merged by their head records' timestamps (ties: input order),
/// each in offset order — a deterministic order for the same records.
fn take_batch(task: &mut Task, buffers: &mut Buffers, max: usize) -> Option<(Vec<InputRecord>, bool)> {
    let p = task.id.partition;
    let mut queues: Vec<VecDeque<ConsumedRecord>> = Vec::new();
    for (i, topic) in task.inputs.iter().enumerate() {
        let buf = buffers.entry((topic.clone(), p)).or_default();
        // Records before the position were already processed (a re-delivery).
        while buf.front().is_some_and(|r| r.offset < task.positions[i]) {
            buf.pop_front();
        }
        let take = match &task.redo {
            Some(intent) => {
                let end = intent.ends[i];
                if end > task.positions[i] && buf.back().is_none_or(|r| r.offset + 1 < end) {
                    // Not all of the batch has arrived yet: put back what was taken.
                    for (q, t) in queues.into_iter().zip(task.inputs.iter()) {
                        let b = buffers.entry((t.clone(), p)).or_default();
                        for r in q.into_iter().rev() {
                            b.push_front(r);
                        }
                    }
                    return None;
                }
                buf.iter().take_while(|r| r.offset < end).count()
            }
            None => buf.len().min(max),
        };
        queues.push(buf.drain(..take).collect());
    }
    let redo = task.redo.is_some();
    let total: usize = queues.iter().map(VecDeque::len).sum();
    if total == 0 && !redo {
        return None;
    }
    let mut batch = Vec::with_capacity(total);
    loop {
        let next = queues.iter().enumerate().filter_map(|(i, q)| q.front().map(|r| (r.timestamp, i))).min();
        let Some((_, i)) = next else { break };
        if let Some(r) = queues[i].pop_front() {
            batch.push(InputRecord { input: i, offset: r.offset, rec: Rec::from_consumed(r) });
        }
    }
    Some((batch, redo))
}

fn apply_table(tables: &RwLock<Tables>, table: &str, records: &[ConsumedRecord]) {
    let Ok(mut t) = tables.write() else { return };
    let t = t.entry(table.to_owned()).or_default();
    for r in records {
        let Some(key) = r.key.clone() else { continue };
        match &r.value {
            Some(v) => {
                t.insert(key, v.clone());
            }
            None => {
                t.remove(&key);
            }
        }
    }
}

/// Follows one partition of a table topic from `next`.
/// Each long poll waits up to `wait_ms`.
async fn follow_table(
    client: Client,
    tables: Arc<RwLock<Tables>>,
    table: String,
    partition: u32,
    mut next: u64,
    wait_ms: u64,
) {
    let opts = ReadOptions { timeout_ms: Some(wait_ms), ..ReadOptions::default() };
    loop {
        match client.consume(&table, partition, Start::Offset(next), &opts).await {
            Ok(reply) => {
                apply_table(&tables, &table, &reply.records);
                next = reply.next_offset.max(next);
            }
            Err(e) => {
                tracing::debug!(table, partition, %e, "table read failed; retrying");
                tokio::time::sleep(Duration::from_millis(500)).await;
            }
        }
    }
}
