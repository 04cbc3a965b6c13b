//! Tokens and ACLs: `/v1/whoami`, `/v1/tokens` (mint, list, revoke) and `/v1/acls`
//! (Kafka's ACL bindings). Stored in the coordinator, so every gateway sees a change
//! with its next metadata snapshot.

use crate::auth::{self, Caller};
use crate::error::{parse_json, ApiError, ApiResult, ErrorBody};
use crate::http::extract::{require_json, ApiPath, ApiQuery};
use crate::state::AppState;
use axum::extract::rejection::BytesRejection;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use axum::{Extension, Json};
use bytes::Bytes;
use fjord_protocol::auth::{
    is_valid_principal, scopes_within, AclBinding, Operation, PatternType, Permission, ResourcePattern, ResourceType,
    Scope, TokenRecord, CLUSTER_NAME,
};
use fjord_protocol::names::is_valid_name;
use fjord_protocol::ErrorCode;
use serde::{Deserialize, Serialize};
use utoipa::{IntoParams, ToSchema};
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

pub fn router() -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
        .routes(routes!(whoami))
        .routes(routes!(create_token, list_tokens))
        .routes(routes!(revoke_token))
        .routes(routes!(list_acls, create_acls, delete_acl))
}

/// A token as shown to people: everything but its secret.
#[derive(Debug, Serialize, ToSchema)]
pub struct TokenInfo {
    pub id: String,
    pub principal: String,
    pub created_ms: i64,
    /// `null`: never expires (a bootstrap token).
    pub expires_ms: Option<i64>,
    pub scopes: Vec<Scope>,
    /// The token that minted this one; revoking it ends this one too.
    pub issued_by: Option<String>,
    pub description: String,
}

impl From<&TokenRecord> for TokenInfo {
    fn from(r: &TokenRecord) -> Self {
        Self {
            id: r.id.clone(),
            principal: r.principal.clone(),
            created_ms: r.created_ms,
            expires_ms: r.expires_ms,
            scopes: r.scopes.clone(),
            issued_by: r.issued_by.clone(),
            description: r.description.clone(),
        }
    }
}

#[derive(Debug, Serialize, ToSchema)]
pub struct WhoAmI {
    /// `ANONYMOUS` when authentication is off.
    pub principal: String,
    pub authentication: bool,
    pub super_user: bool,
    /// The token this request carried; `null` when authentication is off.
    pub token: Option<TokenInfo>,
}

/// Who this request is authenticated as, with its token's scopes.
#[utoipa::path(
    get,
    path = "/v1/whoami",
    tag = "security",
    responses(
        (status = 200, body = WhoAmI),
        (status = 401, description = "No valid token", body = ErrorBody),
    )
)]
pub async fn whoami(State(state): State<AppState>, Extension(caller): Extension<Caller>) -> Json<WhoAmI> {
    Json(WhoAmI {
        principal: caller.principal().to_owned(),
        authentication: state.config.auth.enabled,
        super_user: caller.is_super_user(),
        token: caller.token().map(TokenInfo::from),
    })
}

#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
#[schema(example = json!({"principal": "billing", "ttl_ms": 86400000, "description": "billing service",
    "scopes": [{"resource_type": "topic", "pattern_type": "prefixed", "name": "billing.", "operations": ["produce", "consume"]},
               {"resource_type": "group", "pattern_type": "literal", "name": "billing", "operations": ["consume"]}]}))]
pub struct CreateToken {
    /// Whose token: default the caller's principal; another one needs `admin` on the
    /// cluster.
    #[schema(min_length = 1, max_length = 255, pattern = "^[A-Za-z0-9._@:=+-]+$")]
    pub principal: Option<String>,
    /// What the token may be used for; each scope must lie within one of the calling
    /// token's. Default: the caller's own scopes.
    pub scopes: Option<Vec<Scope>>,
    /// Lifetime in ms (default `gateway.auth.default_token_ttl_ms`); never past the
    /// calling token's expiry.
    #[schema(minimum = 1)]
    pub ttl_ms: Option<u64>,
    #[schema(max_length = 200)]
    pub description: Option<String>,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct CreatedToken {
    /// The bearer token. Shown only here: Fjord keeps only its hash.
    pub token: String,
    #[serde(flatten)]
    pub info: TokenInfo,
}

/// A pattern's name follows the resource's name rule (or is `*`, literal only).
fn check_pattern(p: &ResourcePattern) -> ApiResult<()> {
    let ok = match p.resource_type {
        ResourceType::Cluster => p.name == CLUSTER_NAME || (p.name == "*" && p.pattern_type == PatternType::Literal),
        _ => (p.name == "*" && p.pattern_type == PatternType::Literal) || is_valid_name(&p.name, 249),
    };
    if ok {
        Ok(())
    } else {
        Err(ApiError::bad_request(format!(
            "{} pattern name `{}` is invalid: a name of 1 to 249 characters from [a-zA-Z0-9._-], `*` (literal), \
             or `cluster` for the cluster",
            p.resource_type, p.name
        )))
    }
}

/// Mint a token. It can do at most what the calling token can (its scopes lie within
/// the caller's) for no longer than the caller's lasts, and ends when the caller's token
/// is revoked. A token for another principal needs `admin` on the cluster.
#[utoipa::path(
    post,
    path = "/v1/tokens",
    tag = "security",
    request_body(content = CreateToken, content_type = "application/json"),
    responses(
        (status = 201, description = "Minted; the token is in the answer only", body = CreatedToken),
        (status = 400, description = "Malformed body, bad scope or principal", body = ErrorBody),
        (status = 401, description = "No valid token", body = ErrorBody),
        (status = 403, description = "Scopes or lifetime beyond the caller's, or another principal without admin", body = ErrorBody),
        (status = 415, description = "Not JSON", body = ErrorBody),
        (status = "5XX", description = "Server error; retriable ones carry Retry-After", body = ErrorBody),
    )
)]
pub async fn create_token(
    State(state): State<AppState>,
    Extension(caller): Extension<Caller>,
    headers: HeaderMap,
    body: Result<Bytes, BytesRejection>,
) -> ApiResult<(StatusCode, Json<CreatedToken>)> {
    require_json(&headers)?;
    let req: CreateToken = parse_json(&body?)?;
    let meta = state.metadata();
    let cfg = &state.config.auth;
    let principal = match (req.principal, caller.token()) {
        (Some(p), _) => p,
        (None, Some(t)) => t.principal.clone(),
        (None, None) => return Err(ApiError::bad_request("`principal` is required when authentication is off")),
    };
    if !is_valid_principal(&principal) {
        return Err(ApiError::bad_request(format!(
            "principal `{principal}` is invalid: use 1 to 255 characters from [A-Za-z0-9._@:=+-]"
        )));
    }
    if Some(principal.as_str()) != caller.token().map(|t| t.principal.as_str()) {
        caller.require_cluster(&meta, Operation::Admin)?;
    }
    let held = caller.token().map_or_else(Scope::everything, |t| t.scopes.clone());
    let scopes = req.scopes.unwrap_or_else(|| held.clone());
    if scopes.is_empty() {
        return Err(ApiError::bad_request("`scopes` must hold at least one scope"));
    }
    for s in &scopes {
        check_pattern(&s.resource)?;
        if s.operations.is_empty() {
            return Err(ApiError::bad_request(format!(
                "the scope on {} `{}` has no operations",
                s.resource.resource_type, s.resource.name
            )));
        }
    }
    if !scopes_within(&held, &scopes) {
        return Err(ApiError::new(ErrorCode::Forbidden, "a token can only mint tokens within its own scopes"));
    }
    if req.description.as_ref().is_some_and(|d| d.len() > 200 || d.chars().any(char::is_control)) {
        return Err(ApiError::bad_request("`description` must be at most 200 characters, without control characters"));
    }
    let ttl = req.ttl_ms.unwrap_or(cfg.default_token_ttl_ms);
    if ttl == 0 || ttl > cfg.max_token_ttl_ms {
        return Err(ApiError::bad_request(format!("`ttl_ms` must be between 1 and {}", cfg.max_token_ttl_ms)));
    }
    let mut expires = fjord_protocol::now_ms().saturating_add(ttl as i64);
    if let Some(limit) = caller.token().and_then(|t| t.expires_ms) {
        if req.ttl_ms.is_some() && expires > limit {
            return Err(ApiError::new(ErrorCode::Forbidden, "a token cannot outlive the token that mints it"));
        }
        expires = expires.min(limit);
    }
    let issued_by = caller.token().map(|t| t.id.clone());
    let minted = auth::mint(&principal, scopes, Some(expires), issued_by, req.description.unwrap_or_default())?;
    state.coordinator.create_token(minted.record.clone()).await?;
    tracing::info!(target: "audit", by = caller.principal(), principal, token = minted.record.id, "token minted");
    Ok((StatusCode::CREATED, Json(CreatedToken { token: minted.token, info: TokenInfo::from(&minted.record) })))
}

#[derive(Debug, Serialize, ToSchema)]
pub struct TokenList {
    pub tokens: Vec<TokenInfo>,
}

/// Tokens: the caller principal's own, or every token with `admin` on the cluster.
#[utoipa::path(
    get,
    path = "/v1/tokens",
    tag = "security",
    responses(
        (status = 200, body = TokenList),
        (status = 401, description = "No valid token", body = ErrorBody),
    )
)]
pub async fn list_tokens(State(state): State<AppState>, Extension(caller): Extension<Caller>) -> Json<TokenList> {
    let meta = state.metadata();
    let all = caller.may(&meta, ResourceType::Cluster, CLUSTER_NAME, Operation::Admin);
    Json(TokenList {
        tokens: meta
            .tokens
            .values()
            .filter(|t| all || t.principal == caller.principal())
            .map(|t| TokenInfo::from(t.as_ref()))
            .collect(),
    })
}

/// Revoke a token (and so every token it minted). Gateways refuse it once their
/// metadata snapshot has the change: at once in standalone, within a ZooKeeper watch
/// round trip (milliseconds to a second or so) in a cluster. Open streams carrying it
/// end at their next check.
#[utoipa::path(
    delete,
    path = "/v1/tokens/{token_id}",
    tag = "security",
    params(("token_id" = String, Path, description = "The token's id (the part after `fjord_`, before the next `_`)")),
    responses(
        (status = 204, description = "Revoked"),
        (status = 401, description = "No valid token", body = ErrorBody),
        (status = 403, description = "Another principal's token, without admin on the cluster", body = ErrorBody),
        (status = 404, description = "No such token", body = ErrorBody),
        (status = "5XX", description = "Server error; retriable ones carry Retry-After", body = ErrorBody),
    )
)]
pub async fn revoke_token(
    State(state): State<AppState>,
    Extension(caller): Extension<Caller>,
    ApiPath(id): ApiPath<String>,
) -> ApiResult<StatusCode> {
    let meta = state.metadata();
    let not_found = || ApiError::new(ErrorCode::NotFound, format!("no token with id `{id}`"));
    let record = meta.tokens.get(&id).ok_or_else(not_found)?;
    if record.principal != caller.principal() {
        caller.require_cluster(&meta, Operation::Admin)?;
    }
    if !state.coordinator.delete_token(&id).await? {
        return Err(not_found());
    }
    tracing::info!(target: "audit", by = caller.principal(), token = id, "token revoked");
    Ok(StatusCode::NO_CONTENT)
}

#[derive(Debug, Serialize, ToSchema)]
pub struct AclList {
    pub acls: Vec<AclBinding>,
}

/// Which bindings to list: every given field must match.
#[derive(Debug, Deserialize, IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub struct AclFilter {
    pub principal: Option<String>,
    pub resource_type: Option<ResourceType>,
    pub pattern_type: Option<PatternType>,
    /// The pattern's name exactly.
    pub name: Option<String>,
}

/// ACL bindings (Kafka's model: deny wins, default deny). Needs `describe` on the
/// cluster.
#[utoipa::path(
    get,
    path = "/v1/acls",
    tag = "security",
    params(AclFilter),
    responses(
        (status = 200, body = AclList),
        (status = 400, description = "Bad filter", body = ErrorBody),
        (status = 401, description = "No valid token", body = ErrorBody),
        (status = 403, description = "No describe on the cluster", body = ErrorBody),
    )
)]
pub async fn list_acls(State(state): State<AppState>, ApiQuery(f): ApiQuery<AclFilter>) -> Json<AclList> {
    let meta = state.metadata();
    let keep = |a: &&AclBinding| {
        f.principal.as_ref().is_none_or(|p| &a.principal == p)
            && f.resource_type.is_none_or(|t| a.resource.resource_type == t)
            && f.pattern_type.is_none_or(|t| a.resource.pattern_type == t)
            && f.name.as_ref().is_none_or(|n| &a.resource.name == n)
    };
    Json(AclList { acls: meta.acls.iter().filter(keep).cloned().collect() })
}

#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
#[schema(example = json!({"acls": [{"principal": "billing", "resource_type": "topic", "pattern_type": "prefixed",
    "name": "billing.", "operation": "produce", "permission": "allow"}]}))]
pub struct CreateAcls {
    #[schema(min_items = 1, max_items = 1000)]
    pub acls: Vec<AclBinding>,
}

fn check_binding(a: &AclBinding) -> ApiResult<()> {
    if a.principal != "*" && !is_valid_principal(&a.principal) {
        return Err(ApiError::bad_request(format!(
            "principal `{}` is invalid: `*` or 1 to 255 characters from [A-Za-z0-9._@:=+-]",
            a.principal
        )));
    }
    check_pattern(&a.resource)
}

/// Add ACL bindings (all or none: each is checked first). Needs `alter` on the cluster.
#[utoipa::path(
    post,
    path = "/v1/acls",
    tag = "security",
    request_body(content = CreateAcls, content_type = "application/json"),
    responses(
        (status = 201, description = "Added (a binding already there is kept once)", body = AclList),
        (status = 400, description = "Malformed body or binding", body = ErrorBody),
        (status = 401, description = "No valid token", body = ErrorBody),
        (status = 403, description = "No alter on the cluster", body = ErrorBody),
        (status = 415, description = "Not JSON", body = ErrorBody),
        (status = "5XX", description = "Server error; retriable ones carry Retry-After", body = ErrorBody),
    )
)]
pub async fn create_acls(
    State(state): State<AppState>,
    Extension(caller): Extension<Caller>,
    headers: HeaderMap,
    body: Result<Bytes, BytesRejection>,
) -> ApiResult<(StatusCode, Json<AclList>)> {
    require_json(&headers)?;
    let req: CreateAcls = parse_json(&body?)?;
    if req.acls.is_empty() || req.acls.len() > 1000 {
        return Err(ApiError::bad_request("`acls` must hold 1 to 1000 bindings"));
    }
    req.acls.iter().try_for_each(check_binding)?;
    state.coordinator.create_acls(req.acls.clone()).await?;
    tracing::info!(target: "audit", by = caller.principal(), count = req.acls.len(), "ACL bindings added");
    Ok((StatusCode::CREATED, Json(AclList { acls: req.acls })))
}

/// Exactly one binding, every field given.
#[derive(Debug, Deserialize, IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub struct AclKey {
    pub principal: String,
    pub resource_type: ResourceType,
    pub pattern_type: PatternType,
    pub name: String,
    pub operation: Operation,
    pub permission: Permission,
}

/// Remove one ACL binding, named by all its fields. Needs `alter` on the cluster.
#[utoipa::path(
    delete,
    path = "/v1/acls",
    tag = "security",
    params(AclKey),
    responses(
        (status = 204, description = "Removed"),
        (status = 400, description = "A field is missing or bad", body = ErrorBody),
        (status = 401, description = "No valid token", body = ErrorBody),
        (status = 403, description = "No alter on the cluster", body = ErrorBody),
        (status = 404, description = "No such binding", body = ErrorBody),
        (status = "5XX", description = "Server error; retriable ones carry Retry-After", body = ErrorBody),
    )
)]
pub async fn delete_acl(
    State(state): State<AppState>,
    Extension(caller): Extension<Caller>,
    ApiQuery(k): ApiQuery<AclKey>,
) -> ApiResult<StatusCode> {
    let binding = AclBinding {
        principal: k.principal,
        resource: ResourcePattern { resource_type: k.resource_type, pattern_type: k.pattern_type, name: k.name },
        operation: k.operation,
        permission: k.permission,
    };
    if !state.metadata().acls.contains(&binding) {
        return Err(ApiError::new(ErrorCode::NotFound, "no such ACL binding"));
    }
    state.coordinator.delete_acls(vec![binding]).await?;
    tracing::info!(target: "audit", by = caller.principal(), "ACL binding removed");
    Ok(StatusCode::NO_CONTENT)
}
