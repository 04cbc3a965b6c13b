//! Security against real processes: the internal API refuses callers without the
//! cluster secret; tokens are cluster-wide (minted through one gateway, honoured and
//! revoked on another); `fjord standalone --auth` writes its bootstrap token once
//! (owner-only, never logged) and keeps every token across a restart; and neither a
//! gateway nor a storage node serves a non-loopback address open without being told to.

mod common;

use common::cluster::{Cluster, CLUSTER_SECRET};
use common::{free_port, wait_until, Standalone};
use fjord_rpc::contract::{Method, Route, HEALTH_PATH};
use std::process::Command;
use std::time::Duration;

/// Every internal route, and the node's `/metrics`, answer `401 unauthenticated` to a
/// caller without the cluster secret or with a wrong one — so nobody outside the
/// cluster can append to a partition or rewrite a group by calling a storage node
/// directly — while the cluster's own calls, which carry it, work (the gateway reads
/// through the node). The health check stays open for probes.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_internal_api_refuses_callers_without_the_cluster_secret() {
    let c = Cluster::start(1, 1).await;
    c.create_topic("t", 1, 1, serde_json::json!({})).await;
    let base = format!("http://127.0.0.1:{}", c.nodes[0].port);
    let http = reqwest::Client::new();
    let wrong = format!("Bearer {}x", &CLUSTER_SECRET[..CLUSTER_SECRET.len() - 1]);
    let mut paths: Vec<(Method, &str)> = Route::ALL.iter().map(|r| (r.method(), r.path())).collect();
    paths.push((Method::Get, "/metrics"));
    for (method, path) in paths {
        let url = format!("{base}{path}?topic=t&partition=0");
        for auth in [None, Some(wrong.clone()), Some("Basic dXNlcjpwdw==".to_owned())] {
            let mut req = match method {
                Method::Get => http.get(&url),
                Method::Post => http.post(&url).header("content-type", "application/json").body("{}"),
            };
            if let Some(a) = &auth {
                req = req.header("authorization", a);
            }
            let resp = req.send().await.expect("the node answers");
            assert_eq!(resp.status().as_u16(), 401, "{path} with {auth:?}");
            let body: serde_json::Value = resp.json().await.expect("JSON error");
            assert_eq!(body["code"], "unauthenticated", "{path}");
        }
        let with = match method {
            Method::Get => http.get(&url),
            Method::Post => http.post(&url).header("content-type", "application/json").body("{}"),
        };
        let resp = with.header("authorization", format!("Bearer {CLUSTER_SECRET}")).send().await.expect("answer");
        assert_ne!(resp.status().as_u16(), 401, "{path} refused the right secret");
    }
    let health = http.get(format!("{base}{HEALTH_PATH}")).send().await.expect("health");
    assert_eq!(health.status().as_u16(), 200);
    let read = c.api(0).offsets("t", 0, None).await.expect("the gateway's calls carry the secret");
    assert_eq!(read.high_watermark, 0);
}

/// A token minted through gateway A works on gateway B; revoked through A, gateway B
/// refuses it within 5 s (each gateway sees the change with its ZooKeeper watch); the
/// bootstrap token file both gateways were given was written once and serves both.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tokens_are_cluster_wide_and_revocation_reaches_every_gateway() {
    let c = Cluster::start_with(1, 2, true).await;
    let admin = c.token.clone().expect("bootstrap token");
    let a = fjord_client::Client::with_token(&c.gateway(0), &admin).expect("client");
    let b_anon = fjord_client::Client::new(&c.gateway(1)).expect("client");
    let e = b_anon.cluster().await.expect_err("no token");
    assert_eq!(e.code(), Some("unauthenticated"));

    let minted = a
        .create_token(&fjord_client::NewToken {
            principal: Some("ops".into()),
            ttl_ms: Some(600_000),
            ..Default::default()
        })
        .await
        .expect("mint on A");
    c.api(0)
        .create_acls(&[fjord_client::AclBinding {
            principal: "ops".into(),
            resource_type: "cluster".into(),
            pattern_type: "literal".into(),
            name: "cluster".into(),
            operation: "describe".into(),
            permission: "allow".into(),
        }])
        .await
        .expect("ACL on A");
    let b = fjord_client::Client::with_token(&c.gateway(1), &minted.token).expect("client");
    wait_until("gateway B honours the token minted on A", Duration::from_secs(5), || async {
        b.cluster().await.is_ok()
    })
    .await;
    assert_eq!(b.whoami().await.expect("whoami").principal, "ops");

    a.revoke_token(&minted.info.id).await.expect("revoke on A");
    wait_until("gateway B refuses the revoked token", Duration::from_secs(5), || async {
        b.cluster().await.err().and_then(|e| e.code().map(str::to_owned)).as_deref() == Some("unauthenticated")
    })
    .await;
    let admin_b = fjord_client::Client::with_token(&c.gateway(1), &admin).expect("client");
    assert_eq!(admin_b.whoami().await.expect("bootstrap token on B").principal, "admin");
}

/// `fjord standalone --auth` writes a bootstrap token to `<data-dir>/bootstrap-token`
/// readable by its owner only, never prints it, refuses calls without it, and after a
/// restart honours the same bootstrap token and the tokens minted before.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn standalone_auth_bootstraps_once_and_keeps_tokens_across_restarts() {
    let dir = tempfile::tempdir().expect("tempdir");
    let data = dir.path().join("data");
    let port = free_port();
    let mut s = Standalone::start_with(&data, port, &["--auth"]).await;
    let file = data.join("bootstrap-token");
    let token = std::fs::read_to_string(&file).expect("bootstrap token file").trim().to_owned();
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        let mode = std::fs::metadata(&file).expect("stat").permissions().mode() & 0o777;
        assert_eq!(mode, 0o600, "the bootstrap token file is readable by others");
    }
    let admin = fjord_client::Client::with_token(&s.base, &token).expect("client");
    assert!(s.api().list_topics().await.is_err(), "no token, no answer");
    let minted = admin.create_token(&fjord_client::NewToken::default()).await.expect("mint");
    admin.list_topics().await.expect("bootstrap token works");
    s.terminate();

    let s2 = Standalone::start_with(&data, port, &["--auth"]).await;
    let again = std::fs::read_to_string(&file).expect("file").trim().to_owned();
    assert_eq!(again, token, "the bootstrap token is written once");
    let admin = fjord_client::Client::with_token(&s2.base, &token).expect("client");
    admin.list_topics().await.expect("bootstrap token after restart");
    let minted_client = fjord_client::Client::with_token(&s2.base, &minted.token).expect("client");
    assert_eq!(minted_client.whoami().await.expect("minted token after restart").principal, "admin");
    let logs = format!("{}{}", s.log_text(), s2.log_text());
    let secret = token.rsplit('_').next().expect("secret part");
    assert!(!logs.contains(secret) && !logs.contains(&minted.token), "a token reached the log");
}

/// A gateway or standalone asked to listen on a non-loopback address without
/// authentication, and a storage node without a cluster secret, refuse to start (exit
/// 2, naming the way out) unless `--insecure` says so.
#[test]
fn open_non_loopback_listeners_need_insecure() {
    let dir = tempfile::tempdir().expect("tempdir");
    let run = |args: &[&str]| Command::new(env!("CARGO_BIN_EXE_fjord")).args(args).output().expect("run fjord");
    let data = dir.path().join("d").display().to_string();
    let any = format!("0.0.0.0:{}", free_port());
    for args in [
        vec!["standalone", "--data-dir", &data, "--listen", &any],
        vec!["gateway", "--listen", &any, "--zookeeper", "127.0.0.1:1"],
        vec!["storage-node", "--data-dir", &data, "--listen", &any, "--zookeeper", "127.0.0.1:1"],
    ] {
        let out = run(&args);
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(2), "{args:?}: {stderr}");
        assert!(stderr.contains("--insecure"), "{args:?}: {stderr}");
    }
    assert!(!std::path::Path::new(&data).exists(), "a refused start created its data dir");
}

/// The README's authenticated session, run verbatim (only the port and the data
/// directory differ) against `fjord standalone --auth`: without a token the API answers
/// 401; the bootstrap token grants an ACL and mints a scoped token; that token produces
/// (auto-creating its topic) and is refused elsewhere with 403.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn readme_auth_session_works_as_printed() {
    let session = &common::readme_block(&common::readme(), "auth-session");
    assert!(session.contains("localhost:8080") && session.contains("data/bootstrap-token"));

    let dir = tempfile::tempdir().expect("tempdir");
    let data = dir.path().join("data");
    let fjord = Standalone::start_with(&data, free_port(), &["--auth"]).await;
    fjord.api().ready().await;
    let script = format!(
        "set -euo pipefail\ncurl() {{ command curl -sS -w '\\n' \"$@\"; }}\nfjord() {{ {} \"$@\"; }}\nexport FJORD_URL=http://127.0.0.1:{}\n{}",
        env!("CARGO_BIN_EXE_fjord"),
        fjord.port,
        session
            .replace("localhost:8080", &format!("127.0.0.1:{}", fjord.port))
            .replace("data/bootstrap-token", &data.join("bootstrap-token").display().to_string())
    );
    let out = tokio::process::Command::new("bash").arg("-c").arg(&script).output().await.expect("bash");
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "session failed: {}\nstdout:\n{stdout}\nstderr:\n{stderr}", out.status);
    let lines: Vec<&str> = stdout.lines().filter(|l| !l.trim().is_empty()).collect();
    assert_eq!(lines.len(), 4, "{stdout}");
    assert!(lines[0].contains("\"code\":\"unauthenticated\""), "{}", lines[0]);
    assert_eq!(lines[1], "added 1 binding(s)");
    let produced: serde_json::Value = serde_json::from_str(lines[2]).expect("produce answer");
    assert_eq!(produced["offsets"][0]["offset"], 0, "{produced}");
    assert!(lines[3].contains("\"code\":\"forbidden\""), "{}", lines[3]);
    assert!(!stdout.contains("fjord_"), "the minted token was printed where the session did not put it");
}
