//! Test support (feature `testing`): a throwaway ZooKeeper server and a TCP proxy that
//! can cut clients off from it.
//!
//! [`ZkServer`] runs Debian's ZooKeeper (`apt-get install zookeeper`) in the foreground
//! with its own data directory and a free port on 127.0.0.1. It is killed with its
//! whole process group on drop, and also when the test process dies some other way: a
//! tiny shell supervisor kills it once its stdin (a pipe from the test process) closes.
//! Its output is printed only when the test panics.
//!
//! This is test code: failures to set up panic with a message saying what to install
//! or what went wrong.

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpListener as StdListener, TcpStream};
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};
use tokio::net::{TcpSocket, TcpStream as TokioStream};
use tokio::sync::watch;
use tokio::task::JoinHandle;

/// Debian's launcher; `zkServer.sh start-foreground` execs the JVM.
const ZK_SERVER_SH: &str = "/usr/share/zookeeper/bin/zkServer.sh";
/// How long a server may take to answer `ruok` (a cold JVM takes about a second).
const START_DEADLINE: Duration = Duration::from_secs(60);

/// A ZooKeeper server for one test.
pub struct ZkServer {
    dir: tempfile::TempDir,
    /// The address it listens on: 127.0.0.1, or its network namespace's address.
    host: String,
    port: u16,
    /// The network namespace it runs in (`ip netns exec`), if not the test's own.
    netns: Option<String>,
    child: Option<Child>,
}

/// A command running `program` in the network namespace `netns` (`ip netns exec`, which
/// enters it and execs the program: same pid), or in the caller's when `None`.
pub fn command_in(netns: Option<&str>, program: &str) -> Command {
    match netns {
        Some(ns) => {
            let mut c = Command::new("ip");
            c.args(["netns", "exec", ns, program]);
            c
        }
        None => Command::new(program),
    }
}

/// The ports [`free_port`] hands out: below Linux's ephemeral range (32768–60999 by
/// default), so the kernel never gives one of them to a `bind(0)` or an outgoing
/// connection while a test has it reserved (a killed node's port stays reserved for its
/// restart).
const TEST_PORTS: std::ops::Range<u16> = 20_000..32_000;

/// The lock files of the ports this process has reserved, held until it exits.
static RESERVED: std::sync::Mutex<Vec<std::fs::File>> = std::sync::Mutex::new(Vec::new());

/// A TCP port on 127.0.0.1 that is free now and stays reserved for this test process
/// until it exits: no other call, in this process or in another test binary running
/// beside it, gets it (each port has a lock file under the temp dir, `flock`ed for the
/// process's lifetime; the kernel drops the lock when the process dies), and the kernel
/// does not hand it out as an ephemeral port. Binding port 0 and closing the listener,
/// as this did before, raced with parallel test binaries: a node once failed to start
/// with "Address already in use" on such a port.
pub fn free_port() -> u16 {
    let dir = std::env::temp_dir().join("fjord-test-ports");
    std::fs::create_dir_all(&dir).unwrap_or_else(|e| panic!("creating {}: {e}", dir.display()));
    let span = TEST_PORTS.end - TEST_PORTS.start;
    // Start at a different place in each process so that parallel binaries rarely contend.
    let seed = std::process::id() as u64
        ^ std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.subsec_nanos() as u64)
            .unwrap_or(0);
    let mut reserved = RESERVED.lock().unwrap_or_else(|p| p.into_inner());
    for i in 0..span {
        let port = TEST_PORTS.start + ((seed + reserved.len() as u64 + i as u64) % span as u64) as u16;
        let path = dir.join(format!("{port}.lock"));
        let Ok(file) = std::fs::File::options().create(true).truncate(false).write(true).open(&path) else {
            continue;
        };
        if file.try_lock().is_err() {
            continue; // reserved by this or another test process
        }
        if StdListener::bind(("127.0.0.1", port)).is_err() {
            continue; // something else listens there
        }
        reserved.push(file);
        return port;
    }
    panic!("no free port in {TEST_PORTS:?} on 127.0.0.1");
}

impl ZkServer {
    /// Starts a standalone server (tickTime 500 ms, so session timeouts from 1 s to
    /// 10 s are allowed) and waits until it answers `ruok`. The transaction log is not
    /// fsynced (`forceSync=no`): tests kill the process, not the machine, and the page
    /// cache survives that.
    pub fn start() -> ZkServer {
        Self::start_on("127.0.0.1", None)
    }

    /// [`start`](Self::start), inside the network namespace `netns` (which must have
    /// `host`, reachable from the test's own namespace), listening on `host`.
    pub fn start_in(netns: &str, host: &str) -> ZkServer {
        Self::start_on(host, Some(netns.to_owned()))
    }

    fn start_on(host: &str, netns: Option<String>) -> ZkServer {
        assert!(
            Path::new(ZK_SERVER_SH).exists(),
            "{ZK_SERVER_SH} is missing: install Debian's ZooKeeper (`apt-get install zookeeper`)"
        );
        let dir = tempfile::tempdir().unwrap_or_else(|e| panic!("tempdir for ZooKeeper: {e}"));
        let port = free_port();
        let data = dir.path().join("data");
        let cfg = format!(
            "dataDir={}\nclientPort={port}\nclientPortAddress={host}\nadmin.enableServer=false\n\
             tickTime=500\ninitLimit=10\nsyncLimit=5\nmaxClientCnxns=0\n4lw.commands.whitelist=ruok,srvr\n\
             preAllocSize=1024\nforceSync=no\n",
            data.display()
        );
        std::fs::write(dir.path().join("zoo.cfg"), cfg).unwrap_or_else(|e| panic!("writing zoo.cfg: {e}"));
        let mut server = ZkServer { dir, host: host.to_owned(), port, netns, child: None };
        server.start_again();
        server
    }

    /// `host:port`, for [`crate::ZkCoordinator::connect`].
    pub fn connect_string(&self) -> String {
        format!("{}:{}", self.host, self.port)
    }

    pub fn port(&self) -> u16 {
        self.port
    }

    fn log_path(&self) -> PathBuf {
        self.dir.path().join("zookeeper.out")
    }

    /// Everything the server printed so far (all its runs).
    pub fn log(&self) -> String {
        std::fs::read_to_string(self.log_path()).unwrap_or_default()
    }

    /// Kills the server (SIGKILL to its process group: a crash, not a clean shutdown)
    /// and waits until its port is closed. Data stays for [`Self::start_again`].
    pub fn stop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let pgid = child.id();
            let _ = Command::new("kill").args(["-KILL", "--", &format!("-{pgid}")]).status();
            let _ = child.kill();
            let _ = child.wait();
        }
        let deadline = Instant::now() + START_DEADLINE;
        while TcpStream::connect((self.host.as_str(), self.port)).is_ok() {
            assert!(Instant::now() < deadline, "ZooKeeper on port {} did not stop", self.port);
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// Starts the server again on the same port and data directory and waits until it
    /// answers `ruok`. A no-op if it is running.
    pub fn start_again(&mut self) {
        if self.child.is_some() {
            return;
        }
        let cfg = self.dir.path().join("zoo.cfg");
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(self.log_path())
            .unwrap_or_else(|e| panic!("ZooKeeper log file: {e}"));
        let log2 = log.try_clone().unwrap_or_else(|e| panic!("ZooKeeper log file: {e}"));
        // The supervisor shell starts the server in the background (same process
        // group) and kills it when the pipe on its stdin closes: the test process died.
        let script = r#""$0" start-foreground "$1" </dev/null & pid=$!; cat >/dev/null; kill -9 "$pid" 2>/dev/null"#;
        let child = command_in(self.netns.as_deref(), "sh")
            .args(["-c", script, ZK_SERVER_SH])
            .arg(&cfg)
            .env("JMXDISABLE", "true")
            .env("ZOO_LOG_DIR", self.dir.path())
            .env("SERVER_JVMFLAGS", "-Xmx256m -XX:+UseSerialGC -XX:TieredStopAtLevel=1")
            .stdin(Stdio::piped())
            .stdout(log)
            .stderr(log2)
            .process_group(0)
            .spawn()
            .unwrap_or_else(|e| panic!("starting {ZK_SERVER_SH}: {e}"));
        self.child = Some(child);
        let deadline = Instant::now() + START_DEADLINE;
        loop {
            if self.four_letter("ruok").as_deref() == Some("imok") {
                return;
            }
            if let Some(child) = self.child.as_mut() {
                if let Ok(Some(status)) = child.try_wait() {
                    panic!("ZooKeeper exited with {status} before serving; its output:\n{}", self.log());
                }
            }
            assert!(Instant::now() < deadline, "ZooKeeper did not answer within {START_DEADLINE:?}:\n{}", self.log());
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// Sends a four-letter command (`ruok`, `srvr`) and returns the answer.
    pub fn four_letter(&self, cmd: &str) -> Option<String> {
        let addr = SocketAddr::new(self.host.parse().ok()?, self.port);
        let mut s = TcpStream::connect_timeout(&addr, Duration::from_secs(1)).ok()?;
        s.set_read_timeout(Some(Duration::from_secs(2))).ok()?;
        s.write_all(cmd.as_bytes()).ok()?;
        let mut out = String::new();
        s.read_to_string(&mut out).ok()?;
        Some(out)
    }
}

impl Drop for ZkServer {
    fn drop(&mut self) {
        self.stop();
        if std::thread::panicking() {
            eprintln!("----- ZooKeeper output (port {}) -----\n{}\n-----", self.port, self.log());
        }
    }
}

/// A TCP proxy in front of a ZooKeeper server that can simulate a network partition:
/// [`ZkProxy::cut`] drops every connection and stops listening (so clients' connects
/// are refused), [`ZkProxy::heal`] listens again on the same port.
pub struct ZkProxy {
    port: u16,
    cut: watch::Sender<bool>,
    task: JoinHandle<()>,
}

impl ZkProxy {
    /// Starts forwarding a free local port to `target` (`host:port`).
    pub async fn start(target: &str) -> ZkProxy {
        let target: SocketAddr = target.parse().unwrap_or_else(|e| panic!("proxy target {target:?}: {e}"));
        let port = free_port();
        let (cut, cut_rx) = watch::channel(false);
        let first = bind(port).await;
        let task = tokio::spawn(proxy_loop(first, port, target, cut_rx));
        ZkProxy { port, cut, task }
    }

    pub fn connect_string(&self) -> String {
        format!("127.0.0.1:{}", self.port)
    }

    /// Partitions the clients from the server.
    pub fn cut(&self) {
        self.cut.send_replace(true);
    }

    pub fn heal(&self) {
        self.cut.send_replace(false);
    }
}

impl Drop for ZkProxy {
    fn drop(&mut self) {
        self.task.abort();
    }
}

async fn bind(port: u16) -> tokio::net::TcpListener {
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let bound = TcpSocket::new_v4().and_then(|s| {
            s.set_reuseaddr(true)?;
            s.bind(SocketAddr::from(([127, 0, 0, 1], port)))?;
            s.listen(64)
        });
        match bound {
            Ok(l) => return l,
            Err(e) => {
                assert!(Instant::now() < deadline, "proxy cannot listen on port {port} again: {e}");
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
        }
    }
}

async fn proxy_loop(first: tokio::net::TcpListener, port: u16, target: SocketAddr, mut cut: watch::Receiver<bool>) {
    let mut listener = Some(first);
    loop {
        if *cut.borrow_and_update() {
            listener = None;
            if cut.wait_for(|c| !*c).await.is_err() {
                return;
            }
            continue;
        }
        let l = match listener.take() {
            Some(l) => l,
            None => bind(port).await,
        };
        tokio::select! {
            accepted = l.accept() => {
                if let Ok((client, _)) = accepted {
                    tokio::spawn(forward(client, target, cut.clone()));
                }
                listener = Some(l);
            }
            changed = cut.changed() => {
                if changed.is_err() {
                    return;
                }
                listener = Some(l);
            }
        }
    }
}

async fn forward(mut client: TokioStream, target: SocketAddr, mut cut: watch::Receiver<bool>) {
    let Ok(mut server) = TokioStream::connect(target).await else { return };
    tokio::select! {
        _ = tokio::io::copy_bidirectional(&mut client, &mut server) => {}
        _ = cut.wait_for(|c| *c) => {}
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reserved_ports_are_distinct_outside_the_ephemeral_range_and_locked_against_other_processes() {
        let ports: Vec<u16> = (0..50).map(|_| free_port()).collect();
        let distinct: std::collections::BTreeSet<u16> = ports.iter().copied().collect();
        assert_eq!(distinct.len(), ports.len(), "a port was handed out twice: {ports:?}");
        assert!(ports.iter().all(|p| TEST_PORTS.contains(p)), "{ports:?}");
        // Another process opens the lock file afresh: its own open file description, whose
        // flock conflicts with ours until this process exits.
        let path = std::env::temp_dir().join("fjord-test-ports").join(format!("{}.lock", ports[0]));
        let other = std::fs::File::options().write(true).open(&path).expect("lock file exists");
        assert!(other.try_lock().is_err(), "port {} is not locked against others", ports[0]);
        // And the port is still free to bind for whoever it was handed to.
        StdListener::bind(("127.0.0.1", ports[0])).expect("the reserved port can be bound");
    }
}
