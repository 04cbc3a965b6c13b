//! TLS on the public listener, against the real binary with certificates from
//! `fjord certs`, checked with curl as a user would: HTTP/2 and HTTP/1.1 by ALPN, a
//! client certificate as the principal, and certificates reloaded without a restart —
//! on SIGHUP, and when the files change.

mod common;

use common::{free_port, wait_until};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::time::Duration;

fn fjord(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_fjord")).args(args).output().expect("run fjord")
}

/// A CA and certificates for `localhost` (server) and `alice` (client) in `dir`.
fn certs(dir: &Path) {
    let out = fjord(&["certs", "--dir", &dir.display().to_string(), "--server", "localhost", "--client", "alice"]);
    assert!(out.status.success(), "fjord certs: {}", String::from_utf8_lossy(&out.stderr));
}

/// `fjord standalone --auth` serving HTTPS with `served`'s certificate (copied into the
/// data dir, so the test can replace it), client certificates verified against `ca`.
struct Server {
    child: Child,
    port: u16,
    data: PathBuf,
    log: PathBuf,
}

impl Server {
    fn start(root: &Path, served: &Path, ca: &Path, reload_ms: u64) -> Self {
        let data = root.join(format!("data-{reload_ms}"));
        std::fs::create_dir_all(&data).expect("data dir");
        for f in ["localhost.pem", "localhost.key"] {
            std::fs::copy(served.join(f), data.join(f)).expect("copy certificate");
        }
        let port = free_port();
        let log = root.join(format!("server-{reload_ms}.log"));
        let out = std::fs::File::create(&log).expect("log");
        let child = Command::new(env!("CARGO_BIN_EXE_fjord"))
            .args(["standalone", "--auth", "--listen", &format!("127.0.0.1:{port}"), "--data-dir"])
            .arg(&data)
            .env("FJORD_GATEWAY__TLS__CERT_FILE", data.join("localhost.pem"))
            .env("FJORD_GATEWAY__TLS__KEY_FILE", data.join("localhost.key"))
            .env("FJORD_GATEWAY__TLS__CLIENT_CA_FILE", ca.join("ca.pem"))
            .env("FJORD_GATEWAY__TLS__RELOAD_CHECK_INTERVAL_MS", reload_ms.to_string())
            .stdin(Stdio::null())
            .stdout(out.try_clone().expect("log"))
            .stderr(out)
            .spawn()
            .expect("spawn");
        Self { child, port, data, log }
    }

    /// Replaces the served certificate and key with `from`'s (each by a rename, as a
    /// certificate manager would).
    fn swap_certificate(&self, from: &Path) {
        for f in ["localhost.pem", "localhost.key"] {
            let tmp = self.data.join(format!("{f}.new"));
            std::fs::copy(from.join(f), &tmp).expect("copy");
            std::fs::rename(&tmp, self.data.join(f)).expect("rename");
        }
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        if std::thread::panicking() {
            eprintln!("----- log -----\n{}", std::fs::read_to_string(&self.log).unwrap_or_default());
        }
    }
}

/// Two CAs with their certificates, and a server on the first, answering.
struct Setup {
    root: tempfile::TempDir,
    one: PathBuf,
    two: PathBuf,
    ca1: String,
    ca2: String,
    server: Server,
}

impl Setup {
    async fn up(reload_ms: u64) -> Self {
        let root = tempfile::tempdir().expect("tempdir");
        let (one, two) = (root.path().join("one"), root.path().join("two"));
        certs(&one);
        certs(&two);
        let ca1 = one.join("ca.pem").display().to_string();
        let ca2 = two.join("ca.pem").display().to_string();
        let server = Server::start(root.path(), &one, &one, reload_ms);
        let port = server.port;
        wait_until("the server answers over TLS", Duration::from_secs(60), || {
            let ca1 = ca1.clone();
            async move { curl(port, "/healthz", &["--cacert", &ca1]).0 }
        })
        .await;
        Self { root, one, two, ca1, ca2, server }
    }
}

/// `curl` against the server: (exit status ok, stdout).
fn curl(port: u16, path: &str, extra: &[&str]) -> (bool, String) {
    let out = Command::new("curl")
        .args(["-sS", "--max-time", "10", "--resolve", &format!("localhost:{port}:127.0.0.1")])
        .args(extra)
        .arg(format!("https://localhost:{port}{path}"))
        .output()
        .expect("curl");
    (out.status.success(), String::from_utf8_lossy(&out.stdout).into_owned())
}

/// HTTPS with the certificate `fjord certs` made: HTTP/2 by ALPN (and HTTP/1.1 when the
/// client offers only that), a client certificate signed by the CA authenticates as its
/// common name, a client without one and without a token is 401, a client that does not
/// trust the CA cannot connect; the bootstrap token works over TLS through the `fjord`
/// client. Then the certificate is replaced by one from another CA and the server sent
/// SIGHUP: new connections get the new certificate, without a restart.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn https_with_alpn_client_certificates_and_reload_on_sighup() {
    let Setup { root: _root, one, two, ca1, ca2, server: s } = Setup::up(3_600_000).await;
    let port = s.port;

    let (ok, version) = curl(port, "/healthz", &["--cacert", &ca1, "-o", "/dev/null", "-w", "%{http_version}"]);
    assert!(ok && version == "2", "ALPN h2: {version}");
    let (ok, version) =
        curl(port, "/healthz", &["--cacert", &ca1, "--http1.1", "-o", "/dev/null", "-w", "%{http_version}"]);
    assert!(ok && version == "1.1", "ALPN http/1.1: {version}");
    assert!(!curl(port, "/healthz", &[]).0, "a client that does not trust the CA connected");

    let alice = [
        "--cacert",
        &ca1,
        "--cert",
        &one.join("alice.pem").display().to_string(),
        "--key",
        &one.join("alice.key").display().to_string(),
    ]
    .map(str::to_owned);
    let alice: Vec<&str> = alice.iter().map(String::as_str).collect();
    let (ok, body) = curl(port, "/v1/whoami", &alice);
    assert!(ok, "{body}");
    let who: serde_json::Value = serde_json::from_str(&body).expect("JSON");
    assert_eq!(who["principal"], "alice", "{who}");
    let (_, body) = curl(port, "/v1/whoami", &["--cacert", &ca1]);
    assert!(body.contains("\"unauthenticated\""), "{body}");

    let url = format!("https://localhost:{port}");
    let token = s.data.join("bootstrap-token").display().to_string();
    let cli = Command::new(env!("CARGO_BIN_EXE_fjord"))
        .args(["cluster", "--url", &url, "--ca-file", &ca1, "--token-file", &token, "--json"])
        .output()
        .expect("fjord cluster");
    // `localhost` resolves to 127.0.0.1 here; the certificate is for localhost.
    assert!(cli.status.success(), "{}", String::from_utf8_lossy(&cli.stderr));

    s.swap_certificate(&two);
    assert!(curl(port, "/healthz", &["--cacert", &ca1]).0, "reloaded without being told to");
    let _ = Command::new("kill").args(["-HUP", &s.child.id().to_string()]).status();
    wait_until("SIGHUP: the new certificate is served", Duration::from_secs(10), || {
        let ca2 = ca2.clone();
        async move { curl(port, "/healthz", &["--cacert", &ca2]).0 }
    })
    .await;
    assert!(!curl(port, "/healthz", &["--cacert", &ca1]).0, "the old certificate is still served");
    let (ok, _) = curl(port, "/healthz", &["--cacert", &ca2]);
    assert!(ok && s.child.id() > 0, "still the same process");
}

/// With a short check interval, replacing the certificate files is enough: new
/// connections get the new certificate within seconds; a half-written replacement (a key
/// that does not match) is refused and the previous certificate kept.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn certificates_reload_when_the_files_change_and_bad_ones_are_refused() {
    let Setup { root: _root, one: _, two, ca1, ca2, server: s } = Setup::up(200).await;
    let port = s.port;
    // A certificate with the wrong key: refused, the old one stays.
    std::fs::copy(two.join("localhost.pem"), s.data.join("localhost.pem")).expect("copy");
    let log = s.log.clone();
    wait_until("the mismatched pair is refused", Duration::from_secs(10), || {
        let log = log.clone();
        async move { std::fs::read_to_string(&log).unwrap_or_default().contains("TLS reload failed") }
    })
    .await;
    assert!(curl(port, "/healthz", &["--cacert", &ca1]).0, "a bad reload stopped the old certificate");
    s.swap_certificate(&two);
    wait_until("the new certificate is served", Duration::from_secs(10), || {
        let ca2 = ca2.clone();
        async move { curl(port, "/healthz", &["--cacert", &ca2]).0 }
    })
    .await;
}
