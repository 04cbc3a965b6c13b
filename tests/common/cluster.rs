//! A real cluster for tests: a ZooKeeper server, storage nodes and gateways as separate
//! `fjord` processes on free loopback ports with temp data dirs. Processes can be
//! killed (`kill -9`), restarted, paused (`SIGSTOP`) and resumed; every process's log is
//! printed when the test fails.

use super::netns::Net;
use super::{free_port, wait_until};
use fjord_client::{Acks, ProduceOptions, ProduceReply, Record, Start, TopicDescription};
use fjord_coordinator::testing::{command_in, ZkServer};
use serde_json::{Map, Value};
use std::fs::File;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// One `fjord` process that can be stopped and started again with the same arguments.
pub struct Proc {
    pub name: String,
    /// The address it listens on.
    pub host: String,
    /// Its network namespace, when the cluster runs in [`Net`]'s.
    netns: Option<String>,
    args: Vec<String>,
    env: Vec<(String, String)>,
    log: PathBuf,
    child: Option<Child>,
    pub port: u16,
}

impl Proc {
    fn spawn(&mut self) {
        use std::io::Write;
        let mut out = File::options().create(true).append(true).open(&self.log).expect("log file");
        let _ = writeln!(out, "===== start {} =====", self.name);
        let child = command_in(self.netns.as_deref(), env!("CARGO_BIN_EXE_fjord"))
            .args(&self.args)
            .envs(self.env.iter().map(|(k, v)| (k.as_str(), v.as_str())))
            .env("RUST_LOG", "info,fjord_storage_node=debug")
            .stdin(Stdio::null())
            .stdout(out.try_clone().expect("log"))
            .stderr(out)
            .spawn()
            .expect("spawn fjord");
        self.child = Some(child);
    }

    pub fn is_running(&self) -> bool {
        self.child.is_some()
    }

    fn pid(&self) -> i32 {
        self.child.as_ref().map(|c| c.id() as i32).expect("process is running")
    }

    /// `kill -9`.
    pub fn kill9(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }

    /// SIGTERM, then wait (bounded) for it to exit by itself.
    pub fn terminate(&mut self, within: Duration) -> bool {
        let Some(mut c) = self.child.take() else { return true };
        signal(c.id() as i32, "-TERM");
        let deadline = Instant::now() + within;
        loop {
            if let Ok(Some(_)) = c.try_wait() {
                return true;
            }
            if Instant::now() > deadline {
                let _ = c.kill();
                let _ = c.wait();
                return false;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    pub fn pause(&self) {
        signal(self.pid(), "-STOP");
    }

    pub fn resume(&self) {
        signal(self.pid(), "-CONT");
    }

    pub fn log_text(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }
}

/// Sends a signal with kill(1) (the workspace forbids `unsafe`, so no libc call).
fn signal(pid: i32, sig: &str) {
    let _ = Command::new("kill").args([sig, &pid.to_string()]).status();
}

impl Drop for Proc {
    fn drop(&mut self) {
        if let Some(c) = &self.child {
            // A paused process must be resumed to die of SIGKILL promptly.
            signal(c.id() as i32, "-CONT");
        }
        self.kill9();
    }
}

/// One cluster at a time per test binary: failure detection is timing-based (lag time,
/// session timeout) and two clusters on a 2-core machine would starve each other.
static ONE_AT_A_TIME: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());

pub struct Cluster {
    pub zk: ZkServer,
    pub nodes: Vec<Proc>,
    pub gateways: Vec<Proc>,
    pub client: reqwest::Client,
    /// The bootstrap token, when the gateways require authentication.
    pub token: Option<String>,
    /// The network namespaces the processes run in ([`Cluster::start_partitionable`]);
    /// removed after every process is gone.
    pub net: Option<Net>,
    /// Each node's data dir, when on a small disk of its own
    /// ([`Cluster::start_partitionable_on_small_disks`]); unmounted after the processes.
    disks: Vec<super::Tmpfs>,
    dir: tempfile::TempDir,
    /// Last field: released only after every process above has been killed.
    _turn: tokio::sync::MutexGuard<'static, ()>,
}

/// How a cluster starts besides its size.
struct Options {
    /// Gateways require bearer tokens.
    auth: bool,
    /// The processes' network namespaces.
    net: Option<Net>,
    /// Each node's data dir on a small tmpfs.
    small_disks: bool,
    /// More `FJORD_*` variables for every process, after (so over) the harness's own.
    env: Vec<(String, String)>,
}

/// The size of a node's small disk, and the free space below which it takes no writes.
pub const SMALL_DISK: &str = "256m";
pub const SMALL_DISK_MIN_FREE: u64 = 64 << 20;

/// Settings that make failure detection fast enough for tests.
pub const LAG_TIME_MAX_MS: u64 = 2_000;
pub const SESSION_TIMEOUT_MS: u64 = 3_000;

/// The cluster secret every process of a test cluster is given (internal calls carry it).
/// The nodes' `controller.leader_imbalance_check_interval_seconds`.
pub const IMBALANCE_CHECK_INTERVAL_S: u64 = 1;

pub const CLUSTER_SECRET: &str = "test-cluster-secret-0123456789abcdef0123456789";

impl Cluster {
    /// ZooKeeper, `nodes` storage nodes (ids 1..=nodes) and `gateways` gateways, all up,
    /// sharing a cluster secret; the public API without authentication.
    pub async fn start(nodes: usize, gateways: usize) -> Self {
        Self::start_with(nodes, gateways, false).await
    }

    /// [`start`](Self::start), with `auth`: gateways require bearer tokens, share one
    /// bootstrap token file (the first gateway up writes it, the other reads it), and
    /// this harness's own client carries that token.
    pub async fn start_with(nodes: usize, gateways: usize, auth: bool) -> Self {
        let turn = ONE_AT_A_TIME.lock().await;
        Self::start_locked(nodes, gateways, Options { auth, net: None, small_disks: false, env: Vec::new() }, turn)
            .await
    }

    /// [`start`](Self::start), with `env` set for every process as well (a node's
    /// `[controller]` settings, say).
    pub async fn start_with_env(nodes: usize, gateways: usize, env: &[(&str, &str)]) -> Self {
        let turn = ONE_AT_A_TIME.lock().await;
        let env = env.iter().map(|(k, v)| ((*k).to_owned(), (*v).to_owned())).collect();
        Self::start_locked(nodes, gateways, Options { auth: false, net: None, small_disks: false, env }, turn).await
    }

    /// [`start`](Self::start), each process in its own network namespace of one
    /// [`Net`] — hosts `zk`, `n1`..`n{nodes}`, `g0`.. — so the test can cut links
    /// between them.
    pub async fn start_partitionable(nodes: usize, gateways: usize) -> Self {
        Self::start_partitionable_with(nodes, gateways, false).await
    }

    /// [`start_partitionable`](Self::start_partitionable), each node's data dir on a
    /// tmpfs of [`SMALL_DISK`] with `storage.min_free_bytes` [`SMALL_DISK_MIN_FREE`], for
    /// [`fill_disk`](Self::fill_disk).
    pub async fn start_partitionable_on_small_disks(nodes: usize, gateways: usize) -> Self {
        Self::start_partitionable_with(nodes, gateways, true).await
    }

    async fn start_partitionable_with(nodes: usize, gateways: usize, small_disks: bool) -> Self {
        let mut hosts = vec!["zk".to_owned()];
        hosts.extend((1..=nodes).map(|i| format!("n{i}")));
        hosts.extend((0..gateways).map(|i| format!("g{i}")));
        let turn = ONE_AT_A_TIME.lock().await;
        let net = Net::new(&hosts.iter().map(String::as_str).collect::<Vec<_>>());
        let opts = Options { auth: false, net: Some(net), small_disks, env: Vec::new() };
        Self::start_locked(nodes, gateways, opts, turn).await
    }

    /// Fills node `id`'s small disk until less than [`SMALL_DISK_MIN_FREE`] is free (but
    /// enough for RocksDB's own flushes): its writes are refused from now on.
    pub fn fill_disk(&self, id: usize) {
        let disk = &self.disks[id - 1];
        let leave = SMALL_DISK_MIN_FREE / 2;
        let size = disk.available().saturating_sub(leave);
        std::fs::write(disk.0.join("filler"), vec![0u8; size as usize]).expect("fill the disk");
    }

    /// Frees what [`fill_disk`](Self::fill_disk) took.
    pub fn free_disk(&self, id: usize) {
        let _ = std::fs::remove_file(self.disks[id - 1].0.join("filler"));
    }

    async fn start_locked(
        nodes: usize,
        gateways: usize,
        opts: Options,
        turn: tokio::sync::MutexGuard<'static, ()>,
    ) -> Self {
        let Options { auth, net, small_disks, env: extra_env } = opts;
        // Where each host runs: its namespace and address, or loopback.
        let place = |host: &str| match &net {
            Some(n) => (n.ip(host).to_string(), Some(n.ns(host))),
            None => ("127.0.0.1".to_owned(), None),
        };
        let zk = match &net {
            Some(n) => ZkServer::start_in(&n.ns("zk"), &n.ip("zk").to_string()),
            None => ZkServer::start(),
        };
        let dir = tempfile::tempdir().expect("tempdir");
        let secret_file = dir.path().join("cluster-secret");
        std::fs::write(&secret_file, CLUSTER_SECRET).expect("secret file");
        let token_file = dir.path().join("bootstrap-token");
        let env = vec![
            ("FJORD_CLUSTER__SECRET_FILE".to_owned(), secret_file.display().to_string()),
            ("FJORD_STORAGE__REPLICA_LAG_TIME_MAX_MS".to_owned(), LAG_TIME_MAX_MS.to_string()),
            ("FJORD_STORAGE__REPLICA_FETCH_WAIT_MAX_MS".to_owned(), "200".to_owned()),
            ("FJORD_STORAGE__RETENTION_CHECK_INTERVAL_MS".to_owned(), "1000".to_owned()),
            ("FJORD_ZOOKEEPER__SESSION_TIMEOUT_MS".to_owned(), SESSION_TIMEOUT_MS.to_string()),
            ("FJORD_INTERNAL__CONTROLLED_SHUTDOWN_TIMEOUT_MS".to_owned(), "5000".to_owned()),
            // Leadership goes back to preferred replicas within a second (Kafka's default
            // check interval is five minutes).
            (
                "FJORD_CONTROLLER__LEADER_IMBALANCE_CHECK_INTERVAL_SECONDS".to_owned(),
                IMBALANCE_CHECK_INTERVAL_S.to_string(),
            ),
        ];
        let mut env = env;
        env.extend(extra_env);
        if small_disks {
            env.push(("FJORD_STORAGE__MIN_FREE_BYTES".to_owned(), SMALL_DISK_MIN_FREE.to_string()));
        }
        let mut c = Cluster {
            zk,
            nodes: Vec::new(),
            gateways: Vec::new(),
            client: reqwest::Client::new(),
            token: None,
            net: None,
            disks: Vec::new(),
            dir,
            _turn: turn,
        };
        for i in 1..=nodes {
            let port = free_port();
            let (host, netns) = place(&format!("n{i}"));
            let data = c.dir.path().join(format!("node{i}"));
            if small_disks {
                c.disks.push(super::Tmpfs::mount(&data, SMALL_DISK));
            }
            let args = vec![
                "storage-node".into(),
                "--node-id".into(),
                i.to_string(),
                "--data-dir".into(),
                data.display().to_string(),
                "--listen".into(),
                format!("{host}:{port}"),
                "--zookeeper".into(),
                c.zk.connect_string(),
            ];
            let log = c.dir.path().join(format!("node{i}.log"));
            let mut p = Proc { name: format!("node{i}"), host, netns, args, env: env.clone(), log, child: None, port };
            p.spawn();
            c.nodes.push(p);
        }
        for i in 0..gateways {
            let port = free_port();
            let (host, netns) = place(&format!("g{i}"));
            let mut args = vec![
                "gateway".into(),
                "--listen".into(),
                format!("{host}:{port}"),
                "--zookeeper".into(),
                c.zk.connect_string(),
            ];
            if netns.is_some() && !auth {
                // A private test subnet, not loopback: serving it open must be explicit.
                args.push("--insecure".into());
            }
            let log = c.dir.path().join(format!("gateway{i}.log"));
            let mut env = env.clone();
            env.push(("FJORD_GATEWAY__AUTO_CREATE_TOPICS".into(), "false".into()));
            if auth {
                env.push(("FJORD_GATEWAY__AUTH__ENABLED".into(), "true".into()));
                env.push(("FJORD_GATEWAY__AUTH__BOOTSTRAP_TOKEN_FILE".into(), token_file.display().to_string()));
            }
            let mut p = Proc { name: format!("gateway{i}"), host, netns, args, env, log, child: None, port };
            p.spawn();
            c.gateways.push(p);
        }
        if auth {
            let path = token_file.clone();
            wait_until("the bootstrap token file is written", Duration::from_secs(60), || {
                let path = path.clone();
                async move { std::fs::read_to_string(&path).is_ok_and(|t| t.trim().len() > 80) }
            })
            .await;
            let token = std::fs::read_to_string(&token_file).expect("token file");
            let mut headers = reqwest::header::HeaderMap::new();
            headers.insert(
                reqwest::header::AUTHORIZATION,
                format!("Bearer {}", token.trim()).parse().expect("header value"),
            );
            c.client = reqwest::Client::builder().default_headers(headers).build().expect("client");
            c.token = Some(token.trim().to_owned());
        }
        c.net = net;
        let n = nodes;
        c.wait_until("every node registered and the gateways answer", Duration::from_secs(60), |c| async move {
            let mut ok = true;
            for g in 0..c.gateways.len() {
                match c.get(g, "/v1/cluster").await {
                    Some(v) => ok &= v["nodes"].as_array().map(Vec::len) == Some(n),
                    None => ok = false,
                }
            }
            ok
        })
        .await;
        c
    }

    pub fn gateway(&self, i: usize) -> String {
        format!("http://{}:{}", self.gateways[i].host, self.gateways[i].port)
    }

    /// A client of gateway `g`.
    pub fn api(&self, g: usize) -> fjord_client::Client {
        fjord_client::Client::with_http(self.client.clone(), &self.gateway(g))
    }

    /// GET through gateway `g`; `None` on any failure.
    pub async fn get(&self, g: usize, path: &str) -> Option<Value> {
        let r =
            self.client.get(format!("{}{path}", self.gateway(g))).timeout(Duration::from_secs(10)).send().await.ok()?;
        if !r.status().is_success() {
            return None;
        }
        r.json().await.ok()
    }

    /// Produces one record with `value` to `topic`/`partition` through gateway `g`,
    /// waiting up to 10 s for it.
    pub async fn produce(&self, g: usize, topic: &str, partition: u32, acks: Acks, value: &Value) -> Produced {
        let opts = ProduceOptions { acks, timeout_ms: Some(10_000), ..Default::default() };
        let api = fjord_client::Client::with_http(self.client.clone(), &self.gateway(g));
        let sent = tokio::time::timeout(
            Duration::from_secs(15),
            api.produce(topic, Some(partition), &[Record::value(value.clone())], &opts),
        )
        .await;
        match sent {
            Ok(Ok(reply)) => Produced::Reply(reply),
            Ok(Err(e)) => Produced::Failed(e),
            Err(_) => Produced::Failed(fjord_client::Error::Transport("no answer within 15 s".into())),
        }
    }

    /// Every record of a partition below its high watermark, as `(offset, value)`, read
    /// through gateway `g`; `None` if any read fails.
    pub async fn read_all(&self, g: usize, topic: &str, partition: u32) -> Option<Vec<(u64, Value)>> {
        let records = self.api(g).read_to_end(topic, partition, Start::Offset(0)).await.ok()?;
        Some(records.into_iter().map(|r| (r.offset, r.value.unwrap_or(Value::Null))).collect())
    }

    /// Polls `cond` until it holds, failing the test after `within`.
    pub async fn wait_until<'a, F, Fut>(&'a self, what: &str, within: Duration, cond: F)
    where
        F: Fn(&'a Cluster) -> Fut,
        Fut: std::future::Future<Output = bool>,
    {
        wait_until(what, within, || cond(self)).await;
    }

    /// Creates a topic through gateway 0, asserting it was created.
    pub async fn create_topic(&self, name: &str, partitions: u32, rf: u32, config: Value) {
        let spec = fjord_client::NewTopic {
            name: name.into(),
            partitions: Some(partitions),
            replication_factor: Some(rf),
            config: config.as_object().cloned().unwrap_or_else(Map::new),
        };
        self.api(0).create_topic(&spec).await.unwrap_or_else(|e| panic!("create topic {name}: {e}"));
    }

    /// The topic's description through gateway 0.
    pub async fn describe(&self, topic: &str) -> Option<TopicDescription> {
        self.api(0).describe_topic(topic).await.ok()
    }

    /// Waits until every partition of `topic` has a leader and `isr` in-sync replicas.
    pub async fn wait_for_isr(&self, topic: &str, isr: usize, within: Duration) {
        self.wait_until(
            &format!("every partition of {topic} has a leader and {isr} in-sync replicas"),
            within,
            |c| async move {
                c.describe(topic)
                    .await
                    .is_some_and(|t| t.partitions.iter().all(|p| p.leader.is_some() && p.isr.len() == isr))
            },
        )
        .await;
    }

    /// The leader node id (1-based) of a partition, per gateway 0.
    pub async fn leader(&self, topic: &str, partition: usize) -> Option<u32> {
        self.describe(topic).await?.partitions.get(partition)?.leader
    }

    /// The storage engine's directory of node `id` (1-based), to open while it is down.
    pub fn node_storage_dir(&self, id: usize) -> PathBuf {
        self.dir.path().join(format!("node{id}")).join("storage")
    }

    /// Restarts a stopped storage node (`id` 1-based) with its data.
    pub fn restart_node(&mut self, id: usize) {
        self.nodes[id - 1].spawn();
    }

    pub fn node(&mut self, id: usize) -> &mut Proc {
        &mut self.nodes[id - 1]
    }
}

/// What a produce through a gateway came to.
#[derive(Debug)]
pub enum Produced {
    /// An answer (some records may carry an error: see [`Produced::offset`]).
    Reply(ProduceReply),
    Failed(fjord_client::Error),
}

impl Produced {
    /// The offset of the (one) record, if it was written.
    pub fn offset(&self) -> Option<u64> {
        match self {
            Produced::Reply(r) if r.all_written() => r.offsets.first()?.offset,
            _ => None,
        }
    }

    /// The error code of a failed produce (the API's, or `transport`).
    pub fn code(&self) -> Option<String> {
        match self {
            Produced::Reply(r) => r.offsets.iter().find_map(|o| o.error.as_ref().map(|e| e.code.clone())),
            Produced::Failed(fjord_client::Error::Api { code, .. }) => Some(code.clone()),
            Produced::Failed(_) => Some("transport".into()),
        }
    }
}

impl Drop for Cluster {
    fn drop(&mut self) {
        if std::thread::panicking() {
            for p in self.nodes.iter().chain(&self.gateways) {
                eprintln!("----- {} log -----\n{}", p.name, p.log_text());
            }
        }
    }
}
