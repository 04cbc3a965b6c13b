//! `fjord bench` smoke run: every mode for about a second against a real
//! `fjord standalone`, with the baselines once, checking the JSON report is complete and
//! sane. It keeps the program from rotting; it does not measure anything.

mod common;

use common::Standalone;
use serde_json::Value;
use std::process::Command;

/// Runs `fjord bench <args> --json` and parses its report.
fn bench(base: &str, args: &[&str]) -> Value {
    let out = Command::new(env!("CARGO_BIN_EXE_fjord"))
        .arg("bench")
        .args(args)
        .args(["--url", base, "--json", "--warmup", "0s", "--duration", "1s"])
        .output()
        .expect("run fjord bench");
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "fjord bench {args:?} failed ({}):\nstdout: {stdout}\nstderr: {}",
        out.status,
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_str(&stdout).unwrap_or_else(|e| panic!("bench output is not JSON ({e}): {stdout}"))
}

fn num(v: &Value, path: &str) -> f64 {
    v.pointer(path).and_then(Value::as_f64).unwrap_or_else(|| panic!("no number at {path} in {v}"))
}

/// Records, throughput and ordered percentiles of one throughput object at `at`.
fn assert_sane(report: &Value, at: &str) {
    assert!(num(report, &format!("{at}/records")) > 0.0, "no records at {at}: {report}");
    assert!(num(report, &format!("{at}/records_per_s")) > 0.0, "{report}");
    assert!(num(report, &format!("{at}/mb_per_s")) > 0.0, "{report}");
    assert_latency(report, &format!("{at}/latency_ms"));
    assert!(report.pointer(&format!("{at}/errors")).is_some_and(Value::is_object), "{report}");
}

fn assert_latency(report: &Value, at: &str) {
    let (p50, p90, p99, p999, max) = (
        num(report, &format!("{at}/p50")),
        num(report, &format!("{at}/p90")),
        num(report, &format!("{at}/p99")),
        num(report, &format!("{at}/p99_9")),
        num(report, &format!("{at}/max")),
    );
    assert!(p50 > 0.0 && p50 <= p90 && p90 <= p99 && p99 <= p999 && p999 <= max, "percentiles at {at}: {report}");
}

fn assert_baselines(report: &Value) {
    assert_sane(report, "/baselines/storage");
    assert_sane(report, "/baselines/http");
    assert!(num(report, "/baselines/fraction_of_storage") > 0.0, "{report}");
    assert!(num(report, "/baselines/fraction_of_http") > 0.0, "{report}");
}

#[tokio::test(flavor = "multi_thread")]
async fn every_mode_reports_sane_figures() {
    let dir = tempfile::tempdir().expect("temp dir");
    let fjord = Standalone::start(&dir.path().join("data")).await;
    let base = fjord.base.clone();
    let small = ["--topic", "smoke", "--partitions", "2", "--record-size", "64"];

    let base2 = base.clone();
    let pid = fjord.pid().expect("running").to_string();
    let reports = tokio::task::spawn_blocking(move || {
        let with = |extra: &[&str]| -> Vec<String> { small.iter().chain(extra).map(|s| s.to_string()).collect() };
        let run = |mode: &str, extra: &[&str]| {
            let mut args = vec![mode.to_owned()];
            args.extend(with(extra));
            let args: Vec<&str> = args.iter().map(String::as_str).collect();
            bench(&base2, &args)
        };
        let produce =
            run("produce", &["--concurrency", "2", "--records-per-request", "10", "--baselines", "--server-pid", &pid]);
        let consume = run(
            "consume",
            &["--concurrency", "2", "--records-per-request", "10", "--prefill-bytes", "64KiB", "--baselines"],
        );
        let e2e = run("e2e", &["--concurrency", "2", "--records-per-request", "5", "--rate", "100"]);
        let requests = run("requests", &["--format", "octet"]);
        let binary = run("produce", &["--concurrency", "2", "--records-per-request", "10", "--format", "binary"]);
        let binary_consume = run(
            "consume",
            &[
                "--concurrency",
                "2",
                "--records-per-request",
                "10",
                "--prefill-bytes",
                "64KiB",
                "--format",
                "binary",
                "--baselines",
            ],
        );
        (produce, consume, e2e, requests, binary, binary_consume)
    })
    .await
    .expect("bench runs");
    let (produce, consume, e2e, requests, binary, binary_consume) = reports;

    // Binary reads count the same records and payload bytes per request as JSON ones.
    assert_sane(&binary_consume, "");
    assert_baselines(&binary_consume);
    assert_eq!(binary_consume["settings"]["format"], "binary");
    assert!(binary_consume["errors"].as_object().is_some_and(|e| e.is_empty()), "{binary_consume}");
    let per_record = num(&binary_consume, "/bytes") / num(&binary_consume, "/records");
    assert_eq!(per_record, 64.0, "payload bytes per record: {binary_consume}");

    assert_sane(&binary, "");
    assert_eq!(binary["settings"]["format"], "binary");
    assert_eq!(num(&binary, "/records"), num(&binary, "/requests") * 10.0, "{binary}");
    assert!(binary["errors"].as_object().is_some_and(|e| e.is_empty()), "{binary}");

    assert_eq!(produce["settings"]["mode"], "produce");
    assert_sane(&produce, "");
    assert_eq!(num(&produce, "/records"), num(&produce, "/requests") * 10.0, "{produce}");
    assert_baselines(&produce);
    assert_eq!(produce["baselines"]["storage_kind"], "append");
    // --server-pid: the server's disk writes against the acknowledged payload, warm-up
    // included (so at least the measured bytes).
    let disk = &produce["disk"];
    assert!(num(&produce, "/disk/payload_bytes") >= num(&produce, "/bytes"), "{produce}");
    let ratio = num(&produce, "/disk/write_bytes") / num(&produce, "/disk/payload_bytes");
    assert!((num(&produce, "/disk/per_payload_byte") - ratio).abs() < 1e-9, "{disk}");

    assert_sane(&consume, "");
    assert_baselines(&consume);
    assert_eq!(consume["baselines"]["storage_kind"], "read");

    assert_sane(&e2e, "");
    assert!(num(&e2e, "/e2e/records") > 0.0, "{e2e}");
    assert_latency(&e2e, "/e2e/latency_ms");
    // Open loop at 100 requests/s for a second.
    assert!((50.0..=110.0).contains(&num(&e2e, "/requests")), "{e2e}");

    assert_sane(&requests, "");
    assert_eq!(num(&requests, "/records"), num(&requests, "/requests"), "{requests}");
    assert_eq!(requests["settings"]["concurrency"], 16, "requests defaults to 16 connections");

    drop(fjord);
}

/// `fjord bench idle` opens its consumers (SSE streams and long polls), measures the
/// server while they wait, and every one of them gets the wake-up record.
#[tokio::test(flavor = "multi_thread")]
async fn idle_mode_wakes_every_waiting_consumer() {
    let dir = tempfile::tempdir().expect("temp dir");
    let fjord = Standalone::start(&dir.path().join("data")).await;
    let (base, pid) = (fjord.base.clone(), fjord.pid().expect("running").to_string());
    let reports = tokio::task::spawn_blocking(move || {
        ["sse", "poll"].map(|consumer| {
            let args = ["idle", "--topic", "quiet", "--partitions", "3", "--concurrency", "60", "--consumer", consumer];
            let mut args: Vec<&str> = args.to_vec();
            args.extend(["--server-pid", &pid]);
            bench(&base, &args)
        })
    })
    .await
    .expect("bench runs");
    for report in &reports {
        assert_eq!(report["connections"], 60, "{report}");
        assert_eq!(report["woken"], 60, "every consumer got the record: {report}");
        assert_eq!(num(report, "/wake_latency_ms/count"), 60.0, "{report}");
        assert!(num(report, "/wake_latency_ms/p99") > 0.0, "{report}");
        assert!(num(report, "/server/rss_open_bytes") > 0.0, "{report}");
        assert!(num(report, "/server/idle_window_s") >= 1.0, "{report}");
        assert!(num(report, "/server/idle_cpu_share") >= 0.0, "{report}");
    }
    assert_eq!((reports[0]["consumer"].as_str(), reports[1]["consumer"].as_str()), (Some("sse"), Some("poll")));
    drop(fjord);
}

/// `fjord bench partitions` creates its topic, sees every partition take a record, and
/// reports times in order; a second run on the same topic (as after a restart) probes it
/// without creating it; one asking for another partition count is refused.
#[tokio::test(flavor = "multi_thread")]
async fn partitions_mode_reports_when_a_new_topic_is_writable() {
    let dir = tempfile::tempdir().expect("temp dir");
    let fjord = Standalone::start(&dir.path().join("data")).await;
    let base = fjord.base.clone();
    let run = move |partitions: &str| {
        Command::new(env!("CARGO_BIN_EXE_fjord"))
            .args(["bench", "partitions", "--topic", "scale-smoke", "--partitions", partitions, "--duration", "60s"])
            .args(["--json", "--url", &base])
            .output()
            .expect("run fjord bench")
    };
    let (first, second, third) =
        tokio::task::spawn_blocking(move || (run("5"), run("5"), run("6"))).await.expect("bench runs");
    let stdout = String::from_utf8_lossy(&first.stdout);
    assert!(first.status.success(), "{stdout}\n{}", String::from_utf8_lossy(&first.stderr));
    let report: Value = serde_json::from_str(&stdout).expect("JSON report");
    assert_eq!(report["mode"], "partitions");
    assert_eq!(report["partitions"], 5);
    assert!(num(&report, "/probes") >= 5.0, "{report}");
    let (create, first_ok, all) =
        (num(&report, "/create_ms"), num(&report, "/first_writable_ms"), num(&report, "/writable_ms"));
    assert!(0.0 < create && create <= first_ok && first_ok <= all, "{report}");
    let stdout = String::from_utf8_lossy(&second.stdout);
    assert!(second.status.success(), "{stdout}\n{}", String::from_utf8_lossy(&second.stderr));
    let again: Value = serde_json::from_str(&stdout).expect("JSON report");
    assert_eq!(again["create_ms"], Value::Null, "the topic existed: {again}");
    assert!(num(&again, "/writable_ms") >= num(&again, "/first_writable_ms"), "{again}");
    assert!(!third.status.success(), "another partition count must be refused");
    assert!(String::from_utf8_lossy(&third.stderr).contains("exists with 5 partitions"), "{third:?}");
    drop(fjord);
}

/// `fjord bench pipeline` runs its three shapes over the same input, each to the end
/// (the sink holds one output per input), reports sane figures, and deletes every topic
/// and group it made.
#[tokio::test(flavor = "multi_thread")]
async fn pipeline_mode_reports_each_shape_and_cleans_up() {
    let dir = tempfile::tempdir().expect("temp dir");
    let fjord = Standalone::start(&dir.path().join("data")).await;
    let base = fjord.base.clone();
    let out = tokio::task::spawn_blocking(move || {
        Command::new(env!("CARGO_BIN_EXE_fjord"))
            .args(["bench", "pipeline", "--topic", "pipe-smoke", "--partitions", "2", "--records", "3000", "--json"])
            .args(["--url", &base])
            .output()
            .expect("run fjord bench")
    })
    .await
    .expect("bench runs");
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "{stdout}\n{}", String::from_utf8_lossy(&out.stderr));
    let report: Value = serde_json::from_str(&stdout).expect("JSON report");
    assert_eq!(report["mode"], "pipeline");
    let names: Vec<&str> =
        report["shapes"].as_array().into_iter().flatten().filter_map(|s| s["name"].as_str()).collect();
    assert_eq!(names, vec!["copy", "filter-map", "windowed-count"]);
    for s in report["shapes"].as_array().into_iter().flatten() {
        assert!(s["records_per_s"].as_f64().unwrap_or(0.0) > 0.0, "{report}");
    }
    assert_eq!(report["shapes"][0]["ratio_to_copy"], 1.0);
    let api = fjord.api();
    let left: Vec<String> = api.list_topics().await.expect("topics").into_iter().map(|t| t.name).collect();
    assert_eq!(left, vec!["__consumer_offsets"], "every topic it made is gone");
    let groups = api.list_groups().await.expect("groups");
    assert!(groups.is_empty(), "{groups:?}");
    drop(fjord);
}

#[test]
fn bad_flags_are_refused_clearly() {
    let out = Command::new(env!("CARGO_BIN_EXE_fjord"))
        .args(["bench", "requests", "--records-per-request", "10", "--url", "http://127.0.0.1:1"])
        .output()
        .expect("run fjord bench");
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("single-record"), "{err}");

    let out = Command::new(env!("CARGO_BIN_EXE_fjord"))
        .args(["bench", "produce", "--duration", "ten"])
        .output()
        .expect("run fjord bench");
    assert_eq!(out.status.code(), Some(2), "clap rejects unparsable values");
    assert!(String::from_utf8_lossy(&out.stderr).contains("not a duration"));

    let out = Command::new(env!("CARGO_BIN_EXE_fjord"))
        .args(["bench", "consume", "--server-pid", "1", "--url", "http://127.0.0.1:1"])
        .output()
        .expect("run fjord bench");
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("--server-pid"), "{}", String::from_utf8_lossy(&out.stderr));
}
