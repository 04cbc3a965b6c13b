//! A real `fjord standalone` on a free loopback port with a temp data dir; its log is
//! printed only when the test fails.

use super::free_port;
use std::fs::File;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// A running `fjord standalone`.
pub struct Standalone {
    child: Option<Child>,
    pub port: u16,
    pub base: String,
    data_dir: PathBuf,
    log: PathBuf,
}

impl Standalone {
    /// The process id, while it runs.
    #[allow(dead_code)]
    pub fn pid(&self) -> Option<u32> {
        self.child.as_ref().map(Child::id)
    }

    /// Starts `fjord standalone` on `data_dir` and waits until it is ready.
    pub async fn start(data_dir: &Path) -> Self {
        Self::start_on(data_dir, free_port()).await
    }

    /// Starts `fjord standalone` on `data_dir` listening on `port` (a restart keeps its
    /// address) and waits until it is ready.
    pub async fn start_on(data_dir: &Path, port: u16) -> Self {
        Self::start_with(data_dir, port, &[]).await
    }

    /// [`start_on`](Self::start_on) with more arguments (`--auth`, say).
    pub async fn start_with(data_dir: &Path, port: u16, extra: &[&str]) -> Self {
        let log = data_dir.with_extension(format!("{port}.log"));
        let out = File::options().create(true).append(true).open(&log).expect("log file");
        let child = Command::new(env!("CARGO_BIN_EXE_fjord"))
            .args(["standalone", "--data-dir"])
            .arg(data_dir)
            .args(["--listen", &format!("127.0.0.1:{port}")])
            .args(extra)
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
        let api = self.api();
        let deadline = Instant::now() + Duration::from_secs(60);
        loop {
            if let Some(status) = self.child.as_mut().and_then(|c| c.try_wait().ok().flatten()) {
                panic!("fjord exited during start-up ({status}); log:\n{}", self.log_text());
            }
            if api.ready().await {
                return;
            }
            assert!(Instant::now() < deadline, "fjord not ready within 60 s; log:\n{}", self.log_text());
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    /// A client of its API.
    pub fn api(&self) -> fjord_client::Client {
        fjord_client::Client::new(&self.base).expect("HTTP client")
    }

    /// SIGTERM, then wait (bounded) for it to exit by itself: the graceful path.
    pub fn terminate(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = Command::new("kill").args(["-TERM", &c.id().to_string()]).status();
            let deadline = Instant::now() + Duration::from_secs(30);
            while c.try_wait().ok().flatten().is_none() {
                assert!(Instant::now() < deadline, "fjord did not stop within 30 s of SIGTERM");
                std::thread::sleep(Duration::from_millis(20));
            }
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
