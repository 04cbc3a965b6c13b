//! The `fjord` client commands (`topic`, `produce`, `consume`, `group`, `cluster`): the
//! real binary against a real `fjord standalone`, checking what it prints and its exit
//! codes.

mod common;

use common::{free_port, Standalone};
use serde_json::Value;
use std::io::Write;
use std::process::{Command, Stdio};

/// What one `fjord …` run gave: exit code, stdout, stderr.
struct Run {
    code: i32,
    stdout: String,
    stderr: String,
}

impl Run {
    #[track_caller]
    fn ok(self) -> Self {
        assert_eq!(self.code, 0, "exit {}; stdout:\n{}\nstderr:\n{}", self.code, self.stdout, self.stderr);
        self
    }

    #[track_caller]
    fn json(&self) -> Value {
        serde_json::from_str(&self.stdout).unwrap_or_else(|e| panic!("not JSON ({e}): {}", self.stdout))
    }

    fn json_lines(&self) -> Vec<Value> {
        self.stdout.lines().map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("{e}: {l}"))).collect()
    }
}

/// Runs `fjord <args>` against `url` with `stdin`, waiting for it to exit.
fn fjord(url: &str, args: &[&str], stdin: &[u8]) -> Run {
    let mut child = Command::new(env!("CARGO_BIN_EXE_fjord"))
        .args(args)
        .env("FJORD_URL", url)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn fjord");
    child.stdin.take().expect("stdin").write_all(stdin).expect("write stdin");
    let out = child.wait_with_output().expect("fjord exits");
    Run {
        code: out.status.code().unwrap_or(-1),
        stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
        stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
    }
}

/// Topic administration through the CLI: create with config, list and describe as
/// tables and as JSON, alter (grow, set, reset), delete; and the exit codes of what
/// fails: 3 for an unknown topic, 4 for one that exists, 2 for bad usage, 5 when
/// nothing answers.
#[tokio::test]
async fn topic_commands_and_exit_codes() {
    let dir = tempfile::tempdir().expect("tempdir");
    let fjord_server = Standalone::start(&dir.path().join("data")).await;
    let url = fjord_server.base.clone();
    let run = |args: &[&str]| fjord(&url, args, b"");

    let created = run(&["topic", "create", "orders", "-p", "3", "-c", "retention.ms=86400000", "--json"]).ok();
    assert_eq!(created.json()["partitions"].as_array().map(Vec::len), Some(3));
    assert_eq!(created.json()["config"]["retention.ms"], 86_400_000);
    let list = run(&["topic", "list"]).ok();
    assert!(list.stdout.lines().next().is_some_and(|h| h.starts_with("NAME")), "{}", list.stdout);
    assert!(
        list.stdout.lines().any(|l| l.split_whitespace().collect::<Vec<_>>() == ["orders", "3", "1"]),
        "{}",
        list.stdout
    );
    let described = run(&["topic", "describe", "orders"]).ok();
    let rows: Vec<&str> = described.stdout.lines().filter(|l| l.starts_with(|c: char| c.is_ascii_digit())).collect();
    assert_eq!(rows.len(), 3, "{}", described.stdout);
    assert!(rows.iter().all(|r| r.split_whitespace().nth(1) == Some("0")), "node 0 leads: {}", described.stdout);
    assert!(described.stdout.contains("retention.ms") && described.stdout.contains("86400000"), "{}", described.stdout);

    let altered = run(&["topic", "alter", "orders", "-p", "4", "-c", "cleanup.policy=compact,delete", "--json"]).ok();
    assert_eq!(altered.json()["partitions"].as_array().map(Vec::len), Some(4));
    assert_eq!(altered.json()["config"]["cleanup.policy"], "compact,delete");
    let reset = run(&["topic", "alter", "orders", "--reset", "retention.ms", "--json"]).ok();
    assert_eq!(reset.json()["config"]["retention.ms"], 604_800_000);

    for (args, code, what) in [
        (&["topic", "describe", "nope"][..], 3, "unknown_topic"),
        (&["topic", "create", "orders"], 4, "topic_already_exists"),
        (&["topic", "create", "bad name"], 2, "invalid_topic_name"),
        (&["topic", "alter", "orders"], 2, "nothing to change"),
        (&["topic", "create", "x", "-c", "novalue"], 2, "KEY=VALUE"),
        (&["topic", "frobnicate"], 2, "unrecognized subcommand"),
    ] {
        let r = run(args);
        assert_eq!(r.code, code, "{args:?}: {}", r.stderr);
        assert!(r.stderr.contains(what), "{args:?}: {}", r.stderr);
        assert_eq!(r.stderr.trim().lines().count().min(1), 1, "an error is reported on stderr");
    }
    let closed = fjord(&format!("http://127.0.0.1:{}", free_port()), &["topic", "list"], b"");
    assert_eq!(closed.code, 5, "nothing listening is retriable: {}", closed.stderr);
    assert!(
        closed.stderr.starts_with("fjord: transport:") && closed.stderr.trim().lines().count() == 1,
        "{}",
        closed.stderr
    );

    run(&["topic", "delete", "orders"]).ok();
    assert_eq!(run(&["topic", "describe", "orders"]).code, 3);
    let cluster = run(&["cluster", "--json"]).ok();
    assert_eq!(cluster.json()["nodes"][0]["id"], 0);
    assert_eq!(cluster.json()["controller"], 0);

    // Preferred-leader elections: on one node every partition already has its preferred
    // leader (the cluster test moves leadership for real: tests/cluster_faults.rs).
    run(&["topic", "create", "led", "-p", "2"]).ok();
    let all = run(&["cluster", "elect-leaders", "--json"]).ok().json();
    let outcomes: Vec<&str> =
        all["results"].as_array().expect("results").iter().map(|r| r["outcome"].as_str().expect("outcome")).collect();
    assert_eq!(outcomes, ["already_preferred"; 2], "{all}");
    let one = run(&["cluster", "elect-leaders", "-t", "led", "-p", "1"]).ok();
    let rows: Vec<Vec<&str>> = one.stdout.lines().skip(1).map(|l| l.split_whitespace().collect()).collect();
    assert_eq!(rows, [["led", "1", "already_preferred", "0", "0"]], "{}", one.stdout);
    for (args, code, what) in [
        (&["cluster", "elect-leaders", "-t", "nope"][..], 3, "unknown_topic"),
        (&["cluster", "elect-leaders", "-t", "led", "-p", "7"], 3, "unknown_partition"),
        (&["cluster", "elect-leaders", "-p", "1"], 2, "--topic"),
    ] {
        let r = run(args);
        assert_eq!(r.code, code, "{args:?}: {}", r.stderr);
        assert!(r.stderr.contains(what), "{args:?}: {}", r.stderr);
    }
}

/// Produce from stdin and files in every input format, with keys, then consume: JSON
/// lines by default (keys where Kafka's partitioner puts them, JSON values inline), a
/// kcat-style template with raw bytes, `--count`, partitions chosen, and a point in
/// time. Bad input lines are refused with exit 2 and nothing of their batch written.
#[tokio::test]
async fn produce_and_consume_round_trip() {
    let dir = tempfile::tempdir().expect("tempdir");
    let server = Standalone::start(&dir.path().join("data")).await;
    let url = server.base.clone();
    fjord(&url, &["topic", "create", "events", "-p", "3"], b"").ok();

    let produced = fjord(&url, &["produce", "events", "-K", ":", "--json"], b"alice:hello\nbob:world\ncarol:!\n").ok();
    let offsets = produced.json_lines();
    assert_eq!(offsets.len(), 3, "{}", produced.stdout);
    assert!(offsets.iter().all(|o| o["offset"].is_u64()), "{}", produced.stdout);
    assert_eq!(offsets[0]["partition"], 0, "alice goes where Kafka puts her (partition 0 of 3)");

    let file = dir.path().join("values.jsonl");
    std::fs::write(&file, "{\"n\": 1}\n{\"n\": 2}\n[1, 2]\n").expect("write file");
    let r = fjord(
        &url,
        &["produce", "events", "-p", "1", "--input", "json", "--progress", file.to_str().expect("path")],
        b"",
    )
    .ok();
    assert!(r.stderr.contains("produced 3 record(s) to events"), "{}", r.stderr);
    assert!(r.stderr.contains('%'), "a progress bar for files: {}", r.stderr);
    fjord(&url, &["produce", "events", "-p", "2", "--input", "base64"], b"AP8=\n").ok();

    let bad = fjord(&url, &["produce", "events", "--input", "json"], b"{\"ok\": 1}\nnot json\n");
    assert_eq!(bad.code, 2, "{}", bad.stderr);
    assert!(bad.stderr.contains("line 2: not JSON"), "{}", bad.stderr);

    let all = fjord(&url, &["consume", "events"], b"").ok().json_lines();
    assert_eq!(all.len(), 7, "every record, and nothing of the refused batch: {all:?}");
    let alice = all.iter().find(|r| r["key"] == "alice").expect("alice");
    assert_eq!(
        (alice["partition"].clone(), alice["value_base64"].as_str().is_some() || alice["value"].is_string()),
        (0.into(), true)
    );
    let p1: Vec<&Value> = all.iter().filter(|r| r["partition"] == 1).collect();
    assert!(p1.iter().any(|r| r["value"] == serde_json::json!({"n": 1})), "JSON values inline: {p1:?}");

    // Partition 2 holds the base64 record (0x00 0xff) and, maybe, keyed ones; the
    // template prints raw bytes.
    let mut want = b":-1:2:".to_vec();
    want.extend([0x00, 0xff, b'\n']);
    let raw = Command::new(env!("CARGO_BIN_EXE_fjord"))
        .args(["consume", "events", "-p", "2", "-F", "%p:%o:%K:%S:%v\\n", "--url", &url])
        .output()
        .expect("run");
    assert!(raw.stdout.windows(want.len()).any(|w| w == want.as_slice()), "raw bytes: {:?}", raw.stdout);

    let two = fjord(&url, &["consume", "events", "-n", "2"], b"").ok().json_lines();
    assert_eq!(two.len(), 2);
    let later = fjord(&url, &["consume", "events", "--from", "-1d", "-p", "1", "-F", "%o\\n"], b"").ok();
    assert_eq!(later.stdout, "0\n1\n2\n", "records from a day ago on");
    let none = fjord(&url, &["consume", "events", "--from", "latest"], b"").ok();
    assert_eq!(none.stdout, "", "nothing after the end");
    assert_eq!(fjord(&url, &["consume", "events", "--from", "someday"], b"").code, 2);
}

/// A consumer group through the CLI: `consume --group` prints every record once and
/// commits exactly what it printed (lag 0), a second run prints nothing new; `group
/// list|describe|lag` show it; `group seek` moves it back (lag = everything); `--count`
/// commits only what it printed; `group delete` removes it. `consume --follow -n N`
/// waits for records produced after it started.
#[tokio::test]
async fn consumer_groups_through_the_cli() {
    let dir = tempfile::tempdir().expect("tempdir");
    let server = Standalone::start(&dir.path().join("data")).await;
    let url = server.base.clone();
    fjord(&url, &["topic", "create", "jobs", "-p", "2"], b"").ok();
    let lines: String = (0..10).map(|i| format!("k{i}:job-{i}\n")).collect();
    fjord(&url, &["produce", "jobs", "-K", ":"], lines.as_bytes()).ok();

    let first = fjord(&url, &["consume", "jobs", "--group", "workers", "-F", "%k=%v\\n"], b"").ok();
    let mut got: Vec<&str> = first.stdout.lines().collect();
    got.sort_unstable();
    let mut want: Vec<String> = (0..10).map(|i| format!("k{i}=job-{i}")).collect();
    want.sort_unstable();
    assert_eq!(got, want);
    let again = fjord(&url, &["consume", "jobs", "--group", "workers"], b"").ok();
    assert_eq!(again.stdout, "", "committed: nothing is read twice");

    let lag = fjord(&url, &["group", "lag", "workers", "--json"], b"").ok().json();
    let rows = lag["offsets"].as_array().expect("offsets");
    assert_eq!(rows.len(), 2);
    assert!(rows.iter().all(|r| r["lag"] == 0), "{lag}");
    let list = fjord(&url, &["group", "list"], b"").ok();
    assert!(
        list.stdout.lines().any(|l| l.split_whitespace().collect::<Vec<_>>() == ["workers", "empty", "0"]),
        "{}",
        list.stdout
    );
    let described = fjord(&url, &["group", "describe", "workers"], b"").ok();
    assert!(described.stdout.contains("state empty"), "{}", described.stdout);

    fjord(&url, &["group", "seek", "workers", "--topic", "jobs", "--to", "earliest"], b"").ok();
    let human = fjord(&url, &["group", "lag", "workers"], b"").ok();
    assert!(human.stdout.contains("total lag 10"), "{}", human.stdout);
    let three = fjord(&url, &["consume", "jobs", "--group", "workers", "-n", "3"], b"").ok().json_lines();
    assert_eq!(three.len(), 3);
    let human = fjord(&url, &["group", "lag", "workers"], b"").ok();
    assert!(human.stdout.contains("total lag 7"), "only what was printed is committed: {}", human.stdout);

    fjord(&url, &["group", "delete", "workers"], b"").ok();
    assert_eq!(fjord(&url, &["group", "describe", "workers"], b"").code, 3);

    // A follower from the current end of partition 0 has nothing to print until records
    // produced after it started arrive; it prints those two and exits.
    let end = server.api().offsets("jobs", 0, None).await.expect("offsets").high_watermark.to_string();
    let follower = Command::new(env!("CARGO_BIN_EXE_fjord"))
        .args(["consume", "jobs", "-p", "0", "--from", &end, "--follow", "-n", "2", "-F", "%v\\n", "--url", &url])
        .stdout(Stdio::piped())
        .spawn()
        .expect("spawn follower");
    fjord(&url, &["produce", "jobs", "-p", "0"], b"late-1\nlate-2\n").ok();
    let out = tokio::task::spawn_blocking(move || follower.wait_with_output()).await.expect("join").expect("wait");
    assert!(out.status.success());
    assert_eq!(String::from_utf8_lossy(&out.stdout), "late-1\nlate-2\n");
}
