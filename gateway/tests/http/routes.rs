//! Routing errors, cluster and health routes, and the OpenAPI document.

use crate::common::*;
use axum::http::Method;
use serde_json::json;
use std::collections::BTreeSet;

/// Unknown routes are 404 `not_found` and known routes with the wrong method are 405
/// `method_not_allowed`, both in the API's JSON error shape.
#[tokio::test]
async fn unknown_routes_and_wrong_methods() {
    let h = harness_with_topic(1).await;
    for uri in
        ["/", "/nope", "/v1", "/v1/topic", "/v1/topics/t/partitions/0", "/v1/topics/t/records/extra", "/v2/topics"]
    {
        h.get(uri).await.expect_error(404, "not_found");
    }
    for (method, uri) in [
        (Method::PUT, "/v1/topics"),
        (Method::DELETE, "/v1/topics"),
        (Method::PUT, "/v1/topics/t"),
        (Method::POST, "/v1/topics/t"),
        (Method::GET, "/v1/topics/t/records"),
        (Method::DELETE, "/v1/topics/t/partitions/0/records"),
        (Method::POST, "/v1/topics/t/partitions/0/offsets"),
        (Method::POST, "/healthz"),
        (Method::POST, "/openapi.json"),
    ] {
        h.request(method, uri, Some("application/json"), "{}").await.expect_error(405, "method_not_allowed");
    }
    h.shutdown().await;
}

/// The cluster route lists the one live node, and both health routes answer ok.
#[tokio::test]
async fn cluster_and_health() {
    let h = Harness::new().await;
    let cluster = h.get("/v1/cluster").await.expect_status(200);
    assert_eq!(cluster["nodes"], json!([{"id": 0, "endpoint": "in-process", "rack": null}]));
    assert_eq!(cluster["controller"], 0);
    assert!(!cluster["cluster_id"].as_str().unwrap_or("").is_empty());
    assert_eq!(h.get("/healthz").await.expect_status(200), json!({"status": "ok"}));
    assert_eq!(h.get("/readyz").await.expect_status(200), json!({"status": "ok"}));
    h.shutdown().await;
}

/// The routes of the README's API table, as (method, path with parameters blanked).
fn readme_routes() -> BTreeSet<(String, String)> {
    let readme = std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/../README.md")).expect("README.md");
    let table = readme.split("| route | what |").nth(1).expect("the README has the route table");
    let mut out = BTreeSet::new();
    let rows = table
        .lines()
        .map(str::trim)
        .skip_while(|l| l.is_empty() || l.starts_with("|---"))
        .take_while(|l| l.starts_with('|'));
    for row in rows {
        let cell = row.trim_start_matches('|').split('|').next().expect("first cell");
        let mut methods: Vec<String> = Vec::new();
        for span in cell.split('`').skip(1).step_by(2) {
            let tokens: Vec<&str> = span.split_whitespace().collect();
            let named: Vec<String> = tokens
                .iter()
                .filter(|t| t.chars().all(|c| c.is_ascii_uppercase()))
                .map(|t| t.to_ascii_lowercase())
                .collect();
            if !named.is_empty() {
                methods = named;
            }
            let path = tokens.iter().rev().find(|t| t.starts_with('/') && t.len() > 1).expect("a path in the span");
            for m in &methods {
                out.insert((m.clone(), blank_params(path)));
            }
        }
    }
    out
}

/// `/v1/topics/{topic}/partitions/{p}` → `/v1/topics/{}/partitions/{}`.
fn blank_params(path: &str) -> String {
    let mut out = String::new();
    let mut in_param = false;
    for c in path.chars() {
        match c {
            '{' => {
                in_param = true;
                out.push('{');
            }
            '}' => {
                in_param = false;
                out.push('}');
            }
            _ if in_param => {}
            _ => out.push(c),
        }
    }
    out
}

/// GET /openapi.json serves the same OpenAPI 3 document as `fjord_gateway::openapi()`,
/// and it documents every route of the README's API table, and no other.
#[tokio::test]
async fn openapi_json_documents_every_readme_route() {
    let h = Harness::new().await;
    let served = h.get("/openapi.json").await.expect_status(200);
    assert!(served["openapi"].as_str().is_some_and(|v| v.starts_with("3.")), "openapi version: {}", served["openapi"]);
    let built = serde_json::to_value(fjord_gateway::openapi()).expect("spec serializes");
    assert_eq!(served, built);

    let mut documented = BTreeSet::new();
    for (path, item) in served["paths"].as_object().expect("paths") {
        for method in item.as_object().expect("path item").keys() {
            if ["get", "put", "post", "delete", "patch", "head", "options"].contains(&method.as_str()) {
                documented.insert((method.clone(), blank_params(path)));
            }
        }
    }
    let listed = readme_routes();
    assert!(listed.len() >= 12, "the README table parsed to too few routes: {listed:?}");
    let missing: Vec<_> = listed.difference(&documented).collect();
    assert!(missing.is_empty(), "README routes missing from the OpenAPI document: {missing:?}");
    let unlisted: Vec<_> = documented.difference(&listed).collect();
    assert!(unlisted.is_empty(), "OpenAPI routes missing from the README table: {unlisted:?}");
    h.shutdown().await;
}

/// The committed `openapi.yaml` is exactly what the handlers generate.
/// `FJORD_UPDATE_OPENAPI=1 cargo test -p fjord-gateway openapi` rewrites it.
#[test]
fn openapi_yaml_is_in_sync() {
    let path = concat!(env!("CARGO_MANIFEST_DIR"), "/../openapi.yaml");
    let rendered = fjord_gateway::openapi().to_yaml().expect("the spec renders as YAML");
    if std::env::var("FJORD_UPDATE_OPENAPI").as_deref() == Ok("1") {
        std::fs::write(path, &rendered).expect("write openapi.yaml");
        return;
    }
    let fix = "run `FJORD_UPDATE_OPENAPI=1 cargo test -p fjord-gateway openapi` \
               (or `cargo run -p fjord -- openapi > openapi.yaml`)";
    let committed = std::fs::read_to_string(path).unwrap_or_else(|e| panic!("cannot read {path} ({e}); {fix}"));
    if committed != rendered {
        let line = committed
            .lines()
            .zip(rendered.lines())
            .position(|(a, b)| a != b)
            .map_or_else(|| committed.lines().count().min(rendered.lines().count()) + 1, |i| i + 1);
        panic!("openapi.yaml is out of date (first difference at line {line}); {fix}");
    }
}

/// Every path parameter that names a topic, group or pipeline carries the name rule
/// in its schema (pattern and lengths), as do the topic names in group request bodies,
/// and each route refuses, with a 4xx and before doing anything, a name the schema
/// rejects: one with a character outside the pattern and one a character too long.
#[tokio::test]
async fn name_rules_in_the_schema_are_the_ones_the_routes_enforce() {
    let h = Harness::new().await;
    let spec = serde_json::to_value(fjord_gateway::openapi()).expect("spec serializes");
    let mut checked = 0;
    for (path, item) in spec["paths"].as_object().expect("paths") {
        for (method, op) in item.as_object().expect("path item") {
            let params = op["parameters"].as_array().cloned().unwrap_or_default();
            for p in params.iter().filter(|p| p["in"] == "path") {
                let name = p["name"].as_str().expect("name");
                if !["topic", "group", "pipeline"].contains(&name) {
                    continue;
                }
                let s = &p["schema"];
                assert_eq!(s["pattern"], "^[a-zA-Z0-9._-]+$", "{method} {path} {name}");
                assert_eq!(s["minLength"], 1, "{method} {path} {name}");
                let max = s["maxLength"].as_u64().expect("maxLength") as usize;
                for bad in ["a%20b".to_owned(), "x".repeat(max + 1)] {
                    let mut uri = path.replace(&format!("{{{name}}}"), &bad);
                    for other in ["topic", "group", "pipeline", "member_id", "token_id"] {
                        uri = uri.replace(&format!("{{{other}}}"), "ok");
                    }
                    uri = uri.replace("{partition}", "0");
                    let m = Method::from_bytes(method.to_uppercase().as_bytes()).expect("method");
                    let body = if m == Method::POST || m == Method::PATCH { "{}" } else { "" };
                    let ct = (!body.is_empty()).then_some("application/json");
                    let r = h.request(m.clone(), &uri, ct, body).await;
                    assert!(r.status.is_client_error(), "{m} {uri}: {} {}", r.status, r.text());
                    checked += 1;
                }
            }
        }
    }
    assert!(checked >= 30, "only {checked} refusals checked");
    for (schema, field) in [("JoinRequest", "topics"), ("SeekRequest", "topic"), ("CommitEntry", "topic")] {
        let s = &spec["components"]["schemas"][schema]["properties"][field];
        let s = if s["type"] == "array" { &s["items"] } else { s };
        assert_eq!(s["pattern"], "^[a-zA-Z0-9._-]+$", "{schema}.{field}: {s}");
        assert_eq!(s["maxLength"], 249, "{schema}.{field}: {s}");
    }
    assert!(h.topic_names().await.is_empty(), "nothing was created");
    h.shutdown().await;
}
