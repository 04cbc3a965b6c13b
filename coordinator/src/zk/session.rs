//! One ZooKeeper session: a `zookeeper-async` client with deadlines on every call and
//! its connection-state changes forwarded to the coordinator's refresh task.
//!
//! `zookeeper-async` queues requests while it reconnects and, with the server gone,
//! retries the TCP connect forever; every call here therefore has a deadline, so a
//! caller gets a retriable error instead of hanging. It never revives an expired session
//! (ARCHITECTURE.md, "ZooKeeper layout"): it reports [`ZkState::NotConnected`] and we
//! replace the whole client.
//!
//! Its I/O and watch tasks end only once a close request reaches a server: with the
//! server unreachable, a dropped client would reconnect for the life of the process. So
//! each session runs its client on a runtime of its own, on its own thread, and that
//! runtime — with every task of the client — is dropped with the [`Session`].

use fjord_protocol::{ErrorCode, FjordError, Result};
use std::future::Future;
use std::sync::atomic::{AtomicBool, AtomicI64, Ordering};
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::mpsc::UnboundedSender;
use zookeeper_async::{Acl, CreateMode, Stat, WatchedEvent, ZkError, ZkResult, ZkState, ZooKeeper};

/// What the client tells the refresh task.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Event {
    /// A watch fired, or a writer wants a fresh snapshot.
    Changed,
    /// The connection state of the session with this generation changed.
    State { generation: u64, state: SessionState },
}

/// Connection states the coordinator cares about (no `zookeeper-async` type leaves
/// this module).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SessionState {
    Connected,
    Connecting,
    /// The server refused the session: it expired. Only a new client helps.
    Expired,
    Closed,
}

#[allow(deprecated)] // `NotConnected` is how zookeeper-async 5 reports an expired session.
fn session_state(s: ZkState) -> SessionState {
    match s {
        ZkState::Connected | ZkState::ConnectedReadOnly => SessionState::Connected,
        ZkState::NotConnected | ZkState::AuthFailed => SessionState::Expired,
        ZkState::Closed => SessionState::Closed,
        ZkState::Connecting | ZkState::Associating => SessionState::Connecting,
    }
}

/// Maps a ZooKeeper failure to Fjord's error codes. Connection trouble is retriable.
pub fn zk_error(what: &str, e: ZkError) -> FjordError {
    match e {
        ZkError::ConnectionLoss | ZkError::OperationTimeout | ZkError::SessionExpired | ZkError::SessionMoved => {
            FjordError::new(
                ErrorCode::LeaderNotAvailable,
                format!("coordinator unavailable ({what}: ZooKeeper {e:?}); retry"),
            )
        }
        other => FjordError::new(ErrorCode::Internal, format!("ZooKeeper {what}: {other:?}")),
    }
}

pub struct Session {
    zk: ZooKeeper,
    pub generation: u64,
    op_timeout: Duration,
    /// This session's id once learnt from an ephemeral znode we created (0: unknown).
    id: AtomicI64,
    /// The client's runtime; dropped after `zk` (fields drop in order).
    #[cfg_attr(not(test), allow(dead_code))]
    runtime: ClientRuntime,
}

/// A current-thread runtime on a thread of its own, running until this is dropped.
struct ClientRuntime {
    handle: tokio::runtime::Handle,
    /// Dropping it ends the thread's `block_on`, and the runtime with it.
    _stop: tokio::sync::oneshot::Sender<()>,
    /// Set when the thread has dropped the runtime (every client task is gone).
    #[cfg_attr(not(test), allow(dead_code))]
    stopped: Arc<AtomicBool>,
}

impl ClientRuntime {
    fn start(generation: u64) -> Result<Self> {
        let (handle_tx, handle_rx) = std::sync::mpsc::channel();
        let (stop, stop_rx) = tokio::sync::oneshot::channel::<()>();
        let stopped = Arc::new(AtomicBool::new(false));
        let done = Arc::clone(&stopped);
        std::thread::Builder::new()
            .name(format!("fjord-zk-{generation}"))
            .spawn(move || {
                let rt = match tokio::runtime::Builder::new_current_thread().enable_all().build() {
                    Ok(rt) => rt,
                    Err(e) => {
                        let _ = handle_tx.send(Err(e.to_string()));
                        return;
                    }
                };
                let _ = handle_tx.send(Ok(rt.handle().clone()));
                rt.block_on(async move {
                    let _ = stop_rx.await;
                });
                drop(rt);
                done.store(true, Ordering::SeqCst);
            })
            .map_err(|e| FjordError::new(ErrorCode::Internal, format!("starting the ZooKeeper client thread: {e}")))?;
        let handle =
            handle_rx.recv().map_err(|e| e.to_string()).and_then(|r| r).map_err(|e| {
                FjordError::new(ErrorCode::Internal, format!("starting the ZooKeeper client runtime: {e}"))
            })?;
        Ok(Self { handle, _stop: stop, stopped })
    }
}

impl Session {
    /// Connects a new session; watch events and state changes go to `events`.
    pub async fn connect(
        hosts: &str,
        session_timeout: Duration,
        op_timeout: Duration,
        generation: u64,
        events: UnboundedSender<Event>,
    ) -> Result<Self> {
        let watch_events = events.clone();
        let watcher = move |_: WatchedEvent| {
            let _ = watch_events.send(Event::Changed);
        };
        let runtime = ClientRuntime::start(generation)?;
        // Without a retry pause the client spins on a refused TCP connect.
        let owned_hosts = hosts.to_owned();
        let connecting = runtime.handle.spawn(async move {
            ZooKeeper::connect_with_retry_time(&owned_hosts, session_timeout, watcher, RETRY_PAUSE).await
        });
        let zk = match tokio::time::timeout(op_timeout, connecting).await {
            Ok(Ok(Ok(zk))) => zk,
            Ok(Ok(Err(e))) => return Err(zk_error(&format!("connecting to {hosts}"), e)),
            Ok(Err(e)) => {
                return Err(FjordError::new(ErrorCode::Internal, format!("ZooKeeper client task failed: {e}")))
            }
            Err(_) => {
                return Err(FjordError::new(
                    ErrorCode::LeaderNotAvailable,
                    format!("coordinator unavailable: no ZooKeeper server at {hosts} answered within {op_timeout:?}"),
                ))
            }
        };
        zk.add_listener(move |s| {
            let _ = events.send(Event::State { generation, state: session_state(s) });
        });
        let session = Self { zk, generation, op_timeout, id: AtomicI64::new(0), runtime };
        // Requests sent before the handshake completes are lost if the client gives up
        // on a slow handshake (after a fixed 2 s) and reconnects: probe until it answers.
        let deadline = tokio::time::Instant::now() + op_timeout.max(Duration::from_secs(10));
        loop {
            match session.exists("/", false).await {
                Ok(_) => return Ok(session),
                Err(ZkError::ConnectionLoss | ZkError::OperationTimeout) if tokio::time::Instant::now() < deadline => {
                    tokio::time::sleep(Duration::from_millis(50)).await;
                }
                Err(e) => {
                    tokio::spawn(async move { session.close().await });
                    return Err(zk_error(&format!("opening a session with {hosts}"), e));
                }
            }
        }
    }

    async fn timed<T>(&self, f: impl Future<Output = ZkResult<T>>) -> ZkResult<T> {
        tokio::time::timeout(self.op_timeout, f).await.unwrap_or(Err(ZkError::OperationTimeout))
    }

    /// Whether the client's runtime has stopped (set shortly after the session is
    /// dropped; tests watch it through this flag).
    #[cfg(test)]
    pub fn stopped_flag(&self) -> Arc<AtomicBool> {
        Arc::clone(&self.runtime.stopped)
    }

    /// The session id, if an ephemeral znode created by this session revealed it.
    pub fn id(&self) -> Option<i64> {
        Some(self.id.load(Ordering::Relaxed)).filter(|id| *id != 0)
    }

    /// Data and stat, or `None` if the znode does not exist. With `watch`, a watch is
    /// left on the znode (only when it exists: use [`Self::exists`] to watch for creation).
    pub async fn get(&self, path: &str, watch: bool) -> ZkResult<Option<(Vec<u8>, Stat)>> {
        match self.timed(self.zk.get_data(path, watch)).await {
            Ok(v) => Ok(Some(v)),
            Err(ZkError::NoNode) => Ok(None),
            Err(e) => Err(e),
        }
    }

    pub async fn exists(&self, path: &str, watch: bool) -> ZkResult<Option<Stat>> {
        self.timed(self.zk.exists(path, watch)).await
    }

    pub async fn children(&self, path: &str, watch: bool) -> ZkResult<Option<Vec<String>>> {
        match self.timed(self.zk.get_children(path, watch)).await {
            Ok(v) => Ok(Some(v)),
            Err(ZkError::NoNode) => Ok(None),
            Err(e) => Err(e),
        }
    }

    pub async fn create(&self, path: &str, data: Vec<u8>, ephemeral: bool) -> ZkResult<Stat> {
        let mode = if ephemeral { CreateMode::Ephemeral } else { CreateMode::Persistent };
        let (_, stat) = self.timed(self.zk.create2(path, data, Acl::open_unsafe().clone(), mode)).await?;
        if ephemeral {
            self.id.store(stat.ephemeral_owner, Ordering::Relaxed);
        }
        Ok(stat)
    }

    /// Creates a persistent znode; one that already exists is fine.
    pub async fn ensure(&self, path: &str, data: Vec<u8>) -> ZkResult<()> {
        match self.create(path, data, false).await {
            Ok(_) | Err(ZkError::NodeExists) => Ok(()),
            Err(e) => Err(e),
        }
    }

    pub async fn set(&self, path: &str, data: Vec<u8>, version: Option<i32>) -> ZkResult<Stat> {
        self.timed(self.zk.set_data(path, data, version)).await
    }

    /// Deletes a znode; one already gone is fine.
    pub async fn delete(&self, path: &str) -> ZkResult<()> {
        match self.timed(self.zk.delete(path, None)).await {
            Ok(()) | Err(ZkError::NoNode) => Ok(()),
            Err(e) => Err(e),
        }
    }

    /// Deletes a znode if its data version is still `version`.
    pub async fn delete_version(&self, path: &str, version: i32) -> ZkResult<()> {
        self.timed(self.zk.delete(path, Some(version))).await
    }

    /// Deletes `path` and everything below it, deepest first.
    pub async fn delete_tree(&self, path: &str) -> ZkResult<()> {
        let mut all = vec![path.to_owned()];
        let mut i = 0;
        while i < all.len() {
            let children = self.children(&all[i], false).await?.unwrap_or_default();
            let parent = all[i].clone();
            all.extend(children.into_iter().map(|c| format!("{parent}/{c}")));
            i += 1;
        }
        for p in all.iter().rev() {
            self.delete(p).await?;
        }
        Ok(())
    }

    /// Ends the session (its ephemeral znodes go at once); the client's tasks stop when
    /// the session is dropped, reachable server or not.
    pub async fn close(&self) {
        if let Err(e) = self.timed(self.zk.close()).await {
            tracing::debug!(generation = self.generation, error = ?e, "closing ZooKeeper session");
        }
    }
}

const RETRY_PAUSE: Duration = Duration::from_millis(200);

#[cfg(all(test, feature = "testing"))]
mod tests {
    use super::*;
    use crate::testing::{ZkProxy, ZkServer};

    /// zookeeper-async's I/O task ends only when a close request reaches a server, so a
    /// client dropped while its server is unreachable used to reconnect for the life of
    /// the process. A dropped [`Session`] takes its client's runtime with it: the
    /// runtime's thread ends although the server stays cut off.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_dropped_session_stops_its_client_with_the_server_unreachable() {
        let server = ZkServer::start();
        let proxy = ZkProxy::start(&server.connect_string()).await;
        let (events, _rx) = tokio::sync::mpsc::unbounded_channel();
        let timeout = Duration::from_secs(2);
        let s = Session::connect(&proxy.connect_string(), Duration::from_secs(4), timeout, 1, events)
            .await
            .expect("connect");
        s.exists("/", false).await.expect("served through the proxy");
        let stopped = s.stopped_flag();
        proxy.cut();
        // The client has noticed once a call fails: it is reconnecting now.
        let deadline = tokio::time::Instant::now() + Duration::from_secs(20);
        while s.exists("/", false).await.is_ok() {
            assert!(tokio::time::Instant::now() < deadline, "calls still answered with the server cut off");
        }
        assert!(!stopped.load(Ordering::SeqCst), "the client runs while the session lives");
        drop(s);
        while !stopped.load(Ordering::SeqCst) {
            assert!(tokio::time::Instant::now() < deadline, "the client's runtime outlived its session");
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }
}
