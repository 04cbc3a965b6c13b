//! The one harness of every real-process test: the real `fjord` binary — as
//! `fjord standalone` ([`Standalone`]) or as a ZooKeeper cluster of storage nodes and
//! gateways ([`cluster::Cluster`]) — on free loopback ports with temp data dirs, reached
//! through `fjord-client`; waits are conditions polled against deadlines, never sleeps;
//! a process's log is printed only when its test fails.
//!
//! Each test binary uses a different subset of it.

#![allow(dead_code)]

pub mod cluster;
pub mod groups;
pub mod netns;
mod standalone;

pub use fjord_coordinator::testing::free_port;
#[allow(unused_imports)]
pub use standalone::Standalone;

use serde_json::{json, Value};
use std::future::Future;
use std::time::{Duration, Instant};

/// Polls `cond` until it holds, failing the test after `within`.
pub async fn wait_until<F, Fut>(what: &str, within: Duration, mut cond: F)
where
    F: FnMut() -> Fut,
    Fut: Future<Output = bool>,
{
    let deadline = Instant::now() + within;
    while !cond().await {
        assert!(Instant::now() < deadline, "timed out after {within:?} waiting until {what}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// One raw answer, for tests of what goes over the wire: the status (0 when the request
/// itself failed) and the JSON body (`null` if it is not JSON).
pub async fn send(req: reqwest::RequestBuilder) -> (u16, Value) {
    match req.timeout(Duration::from_secs(30)).send().await {
        Ok(r) => {
            let status = r.status().as_u16();
            (status, r.json().await.unwrap_or(Value::Null))
        }
        Err(e) => (0, json!({"transport_error": e.to_string()})),
    }
}

/// Produces `records` to `topic` with `acks=all`, asserting every one was written.
pub async fn produce(api: &fjord_client::Client, topic: &str, records: Vec<fjord_client::Record>) {
    let opts = fjord_client::ProduceOptions { acks: fjord_client::Acks::All, ..Default::default() };
    let reply = api.produce(topic, None, &records, &opts).await.unwrap_or_else(|e| panic!("produce to {topic}: {e}"));
    assert!(reply.all_written(), "produce to {topic}: {reply:?}");
}

/// Creates `name` with `partitions`, asserting it was created.
pub async fn create_topic(api: &fjord_client::Client, name: &str, partitions: u32) -> fjord_client::TopicDescription {
    api.create_topic(&fjord_client::NewTopic::new(name, partitions))
        .await
        .unwrap_or_else(|e| panic!("create topic {name}: {e}"))
}

/// The README, as the tests that run its examples read it.
pub fn readme() -> String {
    std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/../README.md")).expect("README")
}

/// The text between `<!-- {name}:start -->` and `<!-- {name}:end -->` in `readme`,
/// inside its code fence.
pub fn readme_block(readme: &str, name: &str) -> String {
    let start = readme.find(&format!("<!-- {name}:start -->")).unwrap_or_else(|| panic!("{name} start marker"));
    let end = readme.find(&format!("<!-- {name}:end -->")).unwrap_or_else(|| panic!("{name} end marker"));
    let block = &readme[start..end];
    let body_start = block.find("```").and_then(|i| block[i..].find('\n').map(|j| i + j + 1)).expect("fence");
    let body_end = block.rfind("```").expect("closing fence");
    block[body_start..body_end].to_owned()
}

/// A tmpfs mounted for a test (root), unmounted on drop: a small disk to fill.
pub struct Tmpfs(pub std::path::PathBuf);

impl Tmpfs {
    pub fn mount(at: &std::path::Path, size: &str) -> Tmpfs {
        std::fs::create_dir_all(at).expect("mount point");
        let out = std::process::Command::new("mount")
            .args(["-t", "tmpfs", "-o", &format!("size={size}"), "tmpfs"])
            .arg(at)
            .output()
            .expect("run mount");
        assert!(
            out.status.success(),
            "mount a tmpfs (needs root, as CI runs): {}",
            String::from_utf8_lossy(&out.stderr)
        );
        Tmpfs(at.to_owned())
    }

    /// Bytes available to writers now.
    pub fn available(&self) -> u64 {
        let out = std::process::Command::new("df").args(["--output=avail", "-B1"]).arg(&self.0).output().expect("df");
        String::from_utf8_lossy(&out.stdout).lines().nth(1).and_then(|l| l.trim().parse().ok()).expect("df's answer")
    }
}

impl Drop for Tmpfs {
    fn drop(&mut self) {
        let _ = std::process::Command::new("umount").arg("-l").arg(&self.0).status();
    }
}
