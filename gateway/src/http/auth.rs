//! Authentication and authorization of every route: one rule per route of the OpenAPI
//! document ([`rule`]), applied by one middleware before the handler runs. A rule names
//! the resource and operation the route needs, from the path (`{topic}`, `{group}`) or
//! the cluster; routes whose resources are in the body (a topic to create, a group's
//! topics, a token to mint) are `Authenticated` here and checked by their handler with
//! the [`Caller`] this middleware leaves in the request's extensions.

use crate::auth::Caller;
use crate::quota::Kind;
use crate::state::AppState;
use axum::extract::{MatchedPath, RawPathParams, Request, State};
use axum::http::Method;
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use axum::RequestPartsExt;
use fjord_protocol::auth::{Operation, ResourceType, CLUSTER_NAME};

/// What a route needs of its caller.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Rule {
    /// Nothing: liveness, readiness and the API document.
    Public,
    /// A valid token; the handler decides the rest.
    Authenticated,
    /// `op` on the resource named by the path parameter (`""`: the cluster).
    On(ResourceType, &'static str, Operation),
}

/// The rule of `method` on the route `template`; `None` for a pair the API does not
/// serve (answered 404 or 405 by the router). Every operation of the OpenAPI document
/// has one (a test walks them).
pub fn rule(method: &Method, template: &str) -> Option<Rule> {
    use Operation::*;
    use ResourceType::{Cluster, Group, Topic};
    let m = method.as_str();
    Some(match (m, template) {
        ("GET", "/healthz" | "/readyz" | "/openapi.json") => Rule::Public,
        ("GET", "/metrics" | "/v1/cluster") => Rule::On(Cluster, "", Describe),
        ("GET" | "POST", "/v1/topics") => Rule::Authenticated,
        ("GET", "/v1/topics/{topic}") => Rule::On(Topic, "topic", Describe),
        ("PATCH", "/v1/topics/{topic}") => Rule::On(Topic, "topic", Alter),
        ("DELETE", "/v1/topics/{topic}") => Rule::On(Topic, "topic", Delete),
        ("GET", "/v1/topics/{topic}/partitions/{partition}/offsets") => Rule::On(Topic, "topic", Describe),
        ("GET", "/v1/topics/{topic}/partitions/{partition}/records") => Rule::On(Topic, "topic", Consume),
        ("POST", "/v1/topics/{topic}/partitions/{partition}/records" | "/v1/topics/{topic}/records") => {
            Rule::On(Topic, "topic", Produce)
        }
        ("POST", "/v1/producers") => Rule::Authenticated,
        ("GET", "/v1/groups") => Rule::Authenticated,
        ("GET", "/v1/groups/{group}" | "/v1/groups/{group}/offsets") => Rule::On(Group, "group", Describe),
        ("DELETE", "/v1/groups/{group}") => Rule::On(Group, "group", Delete),
        ("POST", "/v1/groups/{group}/members" | "/v1/groups/{group}/offsets" | "/v1/groups/{group}/seek")
        | ("DELETE", "/v1/groups/{group}/members/{member_id}")
        | ("GET", "/v1/groups/{group}/members/{member_id}/records") => Rule::On(Group, "group", Consume),
        ("GET", "/v1/whoami") | ("GET" | "POST", "/v1/tokens") | ("DELETE", "/v1/tokens/{token_id}") => {
            Rule::Authenticated
        }
        // A pipeline is a consumer group of its name; creating one checks the topics it
        // reads and writes in the handler.
        ("GET" | "POST", "/v1/pipelines") => Rule::Authenticated,
        ("GET", "/v1/pipelines/{pipeline}") => Rule::On(Group, "pipeline", Describe),
        ("DELETE", "/v1/pipelines/{pipeline}") => Rule::On(Group, "pipeline", Delete),
        ("GET", "/v1/acls") => Rule::On(Cluster, "", Describe),
        ("POST" | "DELETE", "/v1/acls") => Rule::On(Cluster, "", Alter),
        // Kafka's ElectLeaders needs ALTER on the cluster.
        ("POST", "/v1/elections") => Rule::On(Cluster, "", Alter),
        _ => return None,
    })
}

/// Every (method, route template) of an OpenAPI document, in its order.
pub fn documented_operations(spec: &utoipa::openapi::OpenApi) -> Vec<(Method, String)> {
    let mut out = Vec::new();
    for (path, item) in spec.paths.paths.iter() {
        let ops = [
            (Method::GET, item.get.is_some()),
            (Method::POST, item.post.is_some()),
            (Method::PUT, item.put.is_some()),
            (Method::PATCH, item.patch.is_some()),
            (Method::DELETE, item.delete.is_some()),
        ];
        out.extend(ops.into_iter().filter(|(_, present)| *present).map(|(m, _)| (m, path.clone())));
    }
    out
}

/// Authenticates the caller and applies the route's [`Rule`]; leaves the [`Caller`] in
/// the request's extensions. With authentication off every caller is [`Caller::anyone`].
pub async fn authorize(State(state): State<AppState>, req: Request, next: Next) -> Response {
    if !state.config.auth.enabled {
        let mut req = req;
        let caller = Caller::anyone();
        if state.quotas.enabled() && req.extensions().get::<MatchedPath>().is_some() {
            if let Err(e) = state.quotas.spend(caller.principal(), Kind::Requests, 1) {
                return e.into_response();
            }
        }
        req.extensions_mut().insert(caller);
        return next.run(req).await;
    }
    let template = req.extensions().get::<MatchedPath>().cloned();
    let Some(rule) = template.as_ref().and_then(|t| rule(req.method(), t.as_str())) else {
        // Not a route of the API: the router answers 404 or 405, touching nothing.
        return next.run(req).await;
    };
    if rule == Rule::Public {
        return next.run(req).await;
    }
    let meta = state.metadata();
    let header = req.headers().get(axum::http::header::AUTHORIZATION).and_then(|v| v.to_str().ok());
    // A bearer token wins; without one, a verified client certificate names the caller.
    let certificate = req
        .extensions()
        .get::<axum::extract::ConnectInfo<crate::tls::Peer>>()
        .and_then(|c| c.0.certificate_principal.clone());
    let authenticated = match (header, certificate) {
        (None, Some(principal)) => Caller::from_certificate(&state.config.auth, &principal),
        (header, _) => Caller::authenticate(&state.config.auth, &meta, header),
    };
    let caller = match authenticated {
        Ok(c) => c,
        Err(e) => {
            tracing::info!(target: "audit", route = template.as_ref().map_or("", |t| t.as_str()), method = %req.method(),
                decision = "unauthenticated", reason = %e.0.message);
            return e.into_response();
        }
    };
    let (mut parts, body) = req.into_parts();
    if let Rule::On(rt, param, op) = rule {
        let name = if param.is_empty() {
            CLUSTER_NAME.to_owned()
        } else {
            match parts.extract::<RawPathParams>().await {
                Ok(params) => params.iter().find(|(k, _)| *k == param).map(|(_, v)| v.to_owned()).unwrap_or_default(),
                Err(r) => return r.into_response(),
            }
        };
        if let Err(e) = caller.require(&meta, rt, &name, op) {
            return e.into_response();
        }
    }
    if state.quotas.enabled() {
        if let Err(e) = state.quotas.spend(caller.principal(), Kind::Requests, 1) {
            return e.into_response();
        }
    }
    parts.extensions.insert(caller);
    next.run(Request::from_parts(parts, body)).await
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Every operation of the OpenAPI document has a rule, and only liveness,
    /// readiness and the document itself are public.
    #[test]
    fn every_documented_route_has_a_rule() {
        let mut public = Vec::new();
        for (method, path) in documented_operations(&crate::http::openapi()) {
            let r = rule(&method, &path).unwrap_or_else(|| panic!("no authorization rule for {method} {path}"));
            if r == Rule::Public {
                public.push(path);
            }
        }
        public.sort();
        assert_eq!(public, ["/healthz", "/openapi.json", "/readyz"]);
    }
}
