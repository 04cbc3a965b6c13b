//! Test harness: runs the real `fjord` binary on a free loopback port with a temp data
//! dir, waits on conditions with deadlines, and prints the process's log only when the
//! test fails.

#![allow(dead_code)]

pub mod cluster;

use std::fs::File;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

pub use fjord_coordinator::testing::free_port;

/// A running `fjord standalone`.
pub struct Standalone {
    child: Option<Child>,
    pub port: u16,
    pub base: String,
    data_dir: PathBuf,
    log: PathBuf,
}

impl Standalone {
    /// Starts `fjord standalone` on `data_dir` and waits until it is ready.
    pub async fn start(data_dir: &Path) -> Self {
        let port = free_port();
        let log = data_dir.with_extension(format!("{port}.log"));
        let out = File::create(&log).expect("log file");
        let child = Command::new(env!("CARGO_BIN_EXE_fjord"))
            .args(["standalone", "--data-dir"])
            .arg(data_dir)
            .args(["--listen", &format!("127.0.0.1:{port}")])
            .env("RUST_LOG", "info")
            .stdin(Stdio::null())
            .stdout(out.try_clone().expect("log file"))
            .stderr(out)
            .spawn()
            .expect("spawn fjord");
        let mut s = Self {
            child: Some(child),
            port,
            base: format!("http://127.0.0.1:{port}"),
            data_dir: data_dir.to_owned(),
            log,
        };
        s.wait_ready().await;
        s
    }

    async fn wait_ready(&mut self) {
        let client = reqwest::Client::new();
        let deadline = Instant::now() + Duration::from_secs(60);
        loop {
            if let Some(status) = self.child.as_mut().and_then(|c| c.try_wait().ok().flatten()) {
                panic!("fjord exited during start-up ({status}); log:\n{}", self.log_text());
            }
            if let Ok(r) = client.get(format!("{}/readyz", self.base)).send().await {
                if r.status().is_success() {
                    return;
                }
            }
            assert!(Instant::now() < deadline, "fjord not ready within 60 s; log:\n{}", self.log_text());
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    pub fn log_text(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    /// `kill -9`: no shutdown path runs.
    pub fn kill9(&mut self) {
        if let Some(mut c) = self.child.take() {
            c.kill().expect("SIGKILL");
            c.wait().expect("reap");
        }
    }

    pub fn data_dir(&self) -> &Path {
        &self.data_dir
    }
}

impl Drop for Standalone {
    fn drop(&mut self) {
        self.kill9();
        if std::thread::panicking() {
            eprintln!("----- fjord log ({}) -----\n{}", self.log.display(), self.log_text());
        }
    }
}
