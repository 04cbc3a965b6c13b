//! Authentication and authorization through the whole router: every route of the
//! OpenAPI document refuses callers without a valid token or without the right, and
//! changes nothing when it refuses; tokens mint only within their issuer; Kafka's ACL
//! rule on real calls (prefixed allow with a literal deny, group without topic, topic
//! auto-creation); streams end when their token is revoked.

use crate::common::*;
use axum::http::{header, Method};
use fjord_protocol::auth::{Operation, PatternType, ResourcePattern, ResourceType, Scope};
use serde_json::{json, Value};
use std::time::Duration;

fn scope(rt: ResourceType, pt: PatternType, name: &str, ops: &[Operation]) -> Scope {
    Scope {
        resource: ResourcePattern { resource_type: rt, pattern_type: pt, name: name.into() },
        operations: ops.to_vec(),
    }
}

fn acl(principal: &str, rt: &str, pt: &str, name: &str, op: &str, permission: &str) -> Value {
    json!({"principal": principal, "resource_type": rt, "pattern_type": pt, "name": name,
           "operation": op, "permission": permission})
}

/// Everything a refused request could have changed: topics with their high watermarks,
/// the group's description and offsets, every token id and every ACL binding.
async fn state_of(h: &Harness) -> Value {
    let meta = h.coordinator.metadata().borrow().clone();
    let mut group = h.get("/v1/groups/g").await.expect_status(200);
    // A clock reading, not state.
    for m in group["members"].as_array_mut().into_iter().flatten() {
        m.as_object_mut().map(|m| m.remove("last_seen_ms_ago"));
    }
    let offsets = h.get("/v1/groups/g/offsets").await.expect_status(200);
    json!({
        "topics": h.snapshot().await,
        "group": group,
        "offsets": offsets,
        "tokens": meta.tokens.keys().collect::<Vec<_>>(),
        "acls": meta.acls.iter().collect::<Vec<_>>(),
        "producers": meta.producers.len(),
        "pipelines": meta.pipelines.keys().collect::<Vec<_>>(),
    })
}

/// A concrete request for each documented operation: path parameters filled with things
/// that exist (topic `t`, group `g` and its member, the admin's token) and a body the
/// handler would act on if allowed.
fn concrete(method: &Method, template: &str, member: &str, admin_token_id: &str) -> (String, Option<Value>) {
    let path = template
        .replace("{topic}", "t")
        .replace("{partition}", "0")
        .replace("{group}", "g")
        .replace("{member_id}", member)
        .replace("{token_id}", admin_token_id)
        .replace("{pipeline}", "p");
    let body = match (method.as_str(), template) {
        ("POST", "/v1/topics") => Some(json!({"name": "created-by-intruder"})),
        ("PATCH", "/v1/topics/{topic}") => Some(json!({"partitions": 3})),
        ("POST", t) if t.ends_with("/records") => Some(json!({"records": [{"value": "x"}]})),
        ("POST", "/v1/producers") => Some(json!({"name": "intruder"})),
        ("POST", "/v1/groups/{group}/members") => Some(json!({"topics": ["t"]})),
        ("POST", "/v1/groups/{group}/offsets") => Some(
            json!({"member_id": member, "generation": 1, "offsets": [{"topic": "t", "partition": 0, "offset": 1}]}),
        ),
        ("POST", "/v1/groups/{group}/seek") => Some(json!({"topic": "t", "to": "latest"})),
        ("POST", "/v1/tokens") => Some(json!({"principal": "intruder", "scopes": [
            {"resource_type": "topic", "pattern_type": "literal", "name": "*", "operations": ["all"]}]})),
        ("POST", "/v1/acls") => Some(json!({"acls": [acl("intruder", "topic", "literal", "*", "all", "allow")]})),
        ("POST", "/v1/pipelines") => Some(json!({"name": "p2", "source": ["t"], "sink": "t-out"})),
        ("POST", "/v1/elections") => Some(json!({"partitions": [{"topic": "t", "partition": 0}]})),
        _ => None,
    };
    let path = match (method.as_str(), template) {
        ("DELETE", "/v1/acls") => format!(
            "{path}?principal=admin&resource_type=topic&pattern_type=literal&name=t&operation=consume&permission=allow"
        ),
        ("GET", t) if t.ends_with("/records") => format!("{path}?timeout_ms=0"),
        _ => path,
    };
    (path, body)
}

/// Every operation of the OpenAPI document, walked three ways: no token and a forged
/// token are `401 unauthenticated` with `WWW-Authenticate`; a valid token whose
/// principal has no ACLs, and one whose ACLs allow everything but whose scopes cover
/// only another topic, are `403 forbidden` — except the routes that only need a caller
/// (whoami, listing tokens, topics, groups and pipelines, which then show nothing of
/// `t`, `g` or pipeline `p`)
/// and the public ones. Nothing any of them sent changed the topics, high watermarks,
/// the group, tokens or ACLs.
#[tokio::test]
async fn every_route_refuses_callers_without_the_right_and_changes_nothing() {
    let h = Harness::secured().await;
    h.create_topic(json!({"name": "t", "partitions": 1})).await;
    h.produce("t", json!([{"value": 1}, {"value": 2}])).await;
    let joined = h.post_json("/v1/groups/g/members", &json!({"topics": ["t"], "auto_commit": false})).await;
    let member = joined.expect_status(200)["member_id"].as_str().expect("member id").to_owned();
    h.post_json("/v1/acls", &json!({"acls": [acl("admin", "topic", "literal", "t", "consume", "allow")]}))
        .await
        .expect_status(201);
    let admin_id = h.get("/v1/whoami").await.expect_status(200)["token"]["id"].as_str().expect("id").to_owned();
    h.create_topic(json!({"name": "t-out", "partitions": 1})).await;
    h.post_json("/v1/pipelines", &json!({"name": "p", "source": ["t"], "sink": "t-out"})).await.expect_status(201);

    let no_acls = h.mint("mallory", Scope::everything(), None, None).await;
    h.post_json(
        "/v1/acls",
        &json!({"acls": [
            acl("scoped", "topic", "literal", "*", "all", "allow"),
            acl("scoped", "group", "literal", "*", "all", "allow"),
            acl("scoped", "producer", "literal", "*", "all", "allow"),
            acl("scoped", "cluster", "literal", "cluster", "all", "allow"),
        ]}),
    )
    .await
    .expect_status(201);
    let elsewhere = vec![scope(ResourceType::Topic, PatternType::Literal, "other", &[Operation::All])];
    let narrow = h.mint("scoped", elsewhere, None, None).await;
    let forged = format!("fjord_{}_{}", &admin_id, "0".repeat(64));
    let before = state_of(&h).await;

    let mut walked = 0;
    for (method, template) in fjord_gateway::http::auth::documented_operations(&fjord_gateway::openapi()) {
        walked += 1;
        let (path, body) = concrete(&method, &template, &member, &admin_id);
        let send = |token: Option<String>| {
            let (method, path, body) = (method.clone(), path.clone(), body.clone());
            let h = &h;
            async move {
                let ct = body.as_ref().map(|_| "application/json");
                let body = body.map(|b| b.to_string()).unwrap_or_default();
                h.request_as(token.as_deref(), method, &path, ct, body).await
            }
        };
        let what = format!("{method} {path}");
        if matches!(template.as_str(), "/healthz" | "/readyz" | "/openapi.json") {
            assert_eq!(send(None).await.status.as_u16(), 200, "{what} is public");
            continue;
        }
        for token in [None, Some(forged.clone())] {
            let r = send(token).await;
            r.expect_error(401, "unauthenticated");
            let challenge = r.headers.get(header::WWW_AUTHENTICATE).and_then(|v| v.to_str().ok());
            assert_eq!(challenge, Some("Bearer realm=\"fjord\""), "{what}");
        }
        for token in [&no_acls, &narrow] {
            let r = send(Some(token.clone())).await;
            match (method.as_str(), template.as_str()) {
                ("GET", "/v1/whoami") => assert_eq!(r.status.as_u16(), 200, "{what}: {}", r.text()),
                ("GET", "/v1/topics") => {
                    let topics = r.expect_status(200)["topics"].clone();
                    assert!(!topics.to_string().contains("\"t\""), "{what} shows t: {topics}");
                }
                ("GET", "/v1/groups") => {
                    assert!(!r.expect_status(200)["groups"].to_string().contains("\"g\""), "{what}");
                }
                ("GET", "/v1/tokens") => {
                    assert!(!r.expect_status(200).to_string().contains(&admin_id), "{what} lists the admin's token");
                }
                ("GET", "/v1/pipelines") => {
                    assert_eq!(r.expect_status(200)["pipelines"], json!([]), "{what} shows p");
                }
                _ => {
                    r.expect_error(403, "forbidden");
                }
            }
        }
    }
    assert!(walked >= 30, "walked only {walked} operations");
    assert_eq!(state_of(&h).await, before, "a refused request changed something");
    h.shutdown().await;
}

/// A token mints only within itself: narrower scopes and a shorter life pass (and the
/// minted token works); broader scopes, a longer life or another principal are 403 and
/// store nothing. Revoking the issuer ends the minted token; an expired token is 401.
#[tokio::test]
async fn tokens_mint_within_their_issuer_and_die_with_it() {
    let h = Harness::secured().await;
    h.create_topic(json!({"name": "orders.eu", "partitions": 1})).await;
    h.post_json("/v1/acls", &json!({"acls": [acl("alice", "topic", "prefixed", "orders.", "all", "allow")]}))
        .await
        .expect_status(201);
    let soon = fjord_protocol::now_ms() + 3_600_000;
    let alice = h
        .mint(
            "alice",
            vec![scope(
                ResourceType::Topic,
                PatternType::Prefixed,
                "orders.",
                &[Operation::Produce, Operation::Consume],
            )],
            Some(soon),
            None,
        )
        .await;
    let post = |token: &str, body: Value| {
        let token = token.to_owned();
        let h = &h;
        async move {
            h.request_as(Some(&token), Method::POST, "/v1/tokens", Some("application/json"), body.to_string()).await
        }
    };
    let tokens_before = h.coordinator.metadata().borrow().tokens.len();
    for refused in [
        json!({"scopes": [{"resource_type": "topic", "pattern_type": "prefixed", "name": "o", "operations": ["produce"]}]}),
        json!({"scopes": [{"resource_type": "topic", "pattern_type": "literal", "name": "orders.eu", "operations": ["delete"]}]}),
        json!({"ttl_ms": 7_200_000u64}),
        json!({"principal": "bob"}),
    ] {
        post(&alice, refused.clone()).await.expect_error(403, "forbidden");
    }
    assert_eq!(h.coordinator.metadata().borrow().tokens.len(), tokens_before, "a refused mint stored a token");

    let minted = post(
        &alice,
        json!({"ttl_ms": 60_000, "scopes": [{"resource_type": "topic", "pattern_type": "literal", "name": "orders.eu", "operations": ["consume"]}]}),
    )
    .await
    .expect_status(201);
    let child = minted["token"].as_str().expect("token").to_owned();
    assert_eq!(minted["principal"], "alice");
    assert!(minted["expires_ms"].as_i64().expect("expiry") <= soon);
    let read = |t: &str| {
        let t = t.to_owned();
        let h = &h;
        async move { h.request_as(Some(&t), Method::GET, "/v1/topics/orders.eu/partitions/0/records", None, "").await }
    };
    assert_eq!(read(&child).await.status.as_u16(), 200);
    let produce = h
        .request_as(
            Some(&child),
            Method::POST,
            "/v1/topics/orders.eu/records",
            Some("application/json"),
            json!({"records": [{"value": 1}]}).to_string(),
        )
        .await;
    produce.expect_error(403, "forbidden");

    let alice_id = alice.split('_').nth(1).expect("id").to_owned();
    h.delete(&format!("/v1/tokens/{alice_id}")).await.expect_no_content();
    read(&alice).await.expect_error(401, "unauthenticated");
    let msg = read(&child).await.expect_error(401, "unauthenticated");
    assert!(msg.contains("revoked"), "{msg}");

    let short = h.mint("alice", Scope::everything(), Some(fjord_protocol::now_ms() + 300), None).await;
    assert_eq!(read(&short).await.status.as_u16(), 200);
    wait_until_async("the short token expires", Duration::from_secs(5), || async {
        read(&short).await.status.as_u16() == 401
    })
    .await;
    h.shutdown().await;
}

async fn wait_until_async<F, Fut>(what: &str, within: Duration, mut cond: F)
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = bool>,
{
    let deadline = tokio::time::Instant::now() + within;
    while !cond().await {
        assert!(tokio::time::Instant::now() < deadline, "timed out waiting until {what}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// Kafka's ACL rule on real calls: a prefixed allow with a literal deny (the deny wins
/// on its one topic), a group the principal may use without read on its topic (join is
/// 403, nothing joined), and auto-creation that needs create (403 and no topic without
/// it; created with it).
#[tokio::test]
async fn acls_decide_real_calls() {
    let h = Harness::secured().await;
    for t in ["orders.eu", "orders.secret", "payments"] {
        h.create_topic(json!({"name": t, "partitions": 1})).await;
    }
    h.post_json(
        "/v1/acls",
        &json!({"acls": [
            acl("alice", "topic", "prefixed", "orders.", "produce", "allow"),
            acl("alice", "topic", "literal", "orders.secret", "all", "deny"),
            acl("alice", "group", "literal", "billing", "consume", "allow"),
        ]}),
    )
    .await
    .expect_status(201);
    let alice = h.mint("alice", Scope::everything(), None, None).await;
    let produce = |topic: &str| {
        let uri = format!("/v1/topics/{topic}/records");
        let (h, alice) = (&h, alice.clone());
        async move {
            h.request_as(
                Some(&alice),
                Method::POST,
                &uri,
                Some("application/json"),
                json!({"records": [{"value": 1}]}).to_string(),
            )
            .await
        }
    };
    produce("orders.eu").await.expect_status(200);
    produce("orders.secret").await.expect_error(403, "forbidden");
    produce("payments").await.expect_error(403, "forbidden");
    assert_eq!(h.high_watermarks("orders.secret").await, vec![0]);

    // The group is allowed, its topic is not readable: joining is refused.
    let join = h
        .request_as(
            Some(&alice),
            Method::POST,
            "/v1/groups/billing/members",
            Some("application/json"),
            json!({"topics": ["payments"]}).to_string(),
        )
        .await;
    join.expect_error(403, "forbidden");
    h.get("/v1/groups/billing").await.expect_error(404, "unknown_group");

    // Auto-creation needs create: refused, and no topic appears; allowed once granted.
    produce("orders.new").await.expect_error(403, "forbidden");
    assert!(!h.topic_names().await.contains(&"orders.new".to_owned()));
    h.post_json("/v1/acls", &json!({"acls": [acl("alice", "topic", "prefixed", "orders.", "create", "allow")]}))
        .await
        .expect_status(201);
    produce("orders.new").await.expect_status(200);
    assert!(h.topic_names().await.contains(&"orders.new".to_owned()));

    // Removing the allow takes the right away at once.
    let q = "principal=alice&resource_type=topic&pattern_type=prefixed&name=orders.&operation=produce&permission=allow";
    h.delete(&format!("/v1/acls?{q}")).await.expect_no_content();
    produce("orders.eu").await.expect_error(403, "forbidden");
    h.delete(&format!("/v1/acls?{q}")).await.expect_error(404, "not_found");
    h.shutdown().await;
}

/// An SSE stream ends with an `unauthenticated` error event once its token is revoked.
#[tokio::test]
async fn a_stream_ends_when_its_token_is_revoked() {
    let h = Harness::secured().await;
    h.create_topic(json!({"name": "t", "partitions": 1})).await;
    h.produce("t", json!([{"value": 1}])).await;
    let reader = h.mint("admin", Scope::everything(), None, None).await;
    let response = {
        let req = axum::http::Request::get("/v1/topics/t/partitions/0/records?offset=0&heartbeat_ms=100")
            .header(header::ACCEPT, "text/event-stream")
            .header(header::AUTHORIZATION, format!("Bearer {reader}"))
            .body(axum::body::Body::empty())
            .expect("request");
        tower::ServiceExt::oneshot(h.app.clone(), req).await.expect("infallible")
    };
    assert_eq!(response.status().as_u16(), 200);
    let reader_id = reader.split('_').nth(1).expect("id").to_owned();
    h.delete(&format!("/v1/tokens/{reader_id}")).await.expect_no_content();
    let body = tokio::time::timeout(Duration::from_secs(10), http_body_util::BodyExt::collect(response.into_body()))
        .await
        .expect("the stream ended within 10 s")
        .expect("body")
        .to_bytes();
    let text = String::from_utf8_lossy(&body);
    assert!(text.contains("event: record"), "{text}");
    assert!(text.contains("event: error") && text.contains("unauthenticated"), "{text}");
    h.shutdown().await;
}

/// A producer past its byte rate gets `429 quota_exceeded` with `Retry-After` and the
/// wait in `details.retry_after_ms`, and nothing is written; another principal is
/// unaffected; once the wait has passed the first produces again. Over a request rate,
/// any call is refused the same way.
#[tokio::test]
async fn quotas_refuse_over_rate_principals_only_and_recover() {
    let mut config = fjord_gateway::GatewayConfig::default();
    config.quotas.default.produce_bytes_per_second = 2_000;
    config.quotas.principals.insert(
        "counted".into(),
        fjord_gateway::config::QuotaOverride { requests_per_second: Some(3), ..Default::default() },
    );
    let h = Harness::secured_with(config).await;
    h.create_topic(json!({"name": "t", "partitions": 1})).await;
    let alice = h.mint("alice", Scope::everything(), None, None).await;
    let bob = h.mint("bob", Scope::everything(), None, None).await;
    h.post_json(
        "/v1/acls",
        &json!({"acls": [acl("*", "topic", "literal", "t", "all", "allow"),
        acl("*", "cluster", "literal", "cluster", "describe", "allow")]}),
    )
    .await
    .expect_status(201);
    let big = json!({"records": [{"value": "x".repeat(5_000)}]}).to_string();
    let produce = |token: &str| {
        let (h, token, big) = (&h, token.to_owned(), big.clone());
        async move { h.request_as(Some(&token), Method::POST, "/v1/topics/t/records", Some("application/json"), big).await }
    };
    produce(&alice).await.expect_status(200);
    let hw = h.high_watermarks("t").await;
    let refused = produce(&alice).await;
    refused.expect_error(429, "quota_exceeded");
    let retry: u64 = refused.headers[header::RETRY_AFTER].to_str().expect("text").parse().expect("seconds");
    let wait = refused.json()["error"]["details"]["retry_after_ms"].as_u64().expect("retry_after_ms");
    assert!((1..=3).contains(&retry) && (1_000..=2_600).contains(&wait), "{retry} s, {wait} ms");
    assert_eq!(h.high_watermarks("t").await, hw, "a refused produce wrote");
    produce(&bob).await.expect_status(200);
    wait_until_async("alice is within her quota again", Duration::from_secs(5), || async {
        produce(&alice).await.status.as_u16() == 200
    })
    .await;

    let counted = h.mint("counted", Scope::everything(), None, None).await;
    let mut statuses = Vec::new();
    for _ in 0..6 {
        statuses.push(h.request_as(Some(&counted), Method::GET, "/v1/cluster", None, "").await.status.as_u16());
    }
    assert!(statuses.starts_with(&[200, 200, 200]) && statuses.contains(&429), "{statuses:?}");
    h.shutdown().await;
}
