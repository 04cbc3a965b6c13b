//! Who is calling and what they may do: bearer tokens (stored as SHA-256 hashes in the
//! coordinator, so every gateway knows every token and a revocation reaches all of them
//! with the metadata snapshot), token scopes, and Kafka's ACL rule
//! ([`fjord_protocol::auth`]). The HTTP side — the middleware, the route rules and the
//! token and ACL routes — is `http::auth` and `http::security`.

use crate::config::AuthConfig;
use crate::error::{ApiError, ApiResult};
use fjord_coordinator::ClusterMetadata;
use fjord_protocol::auth::{acls_allow, scopes_allow, Operation, ResourceType, Scope, TokenRecord, CLUSTER_NAME};
use fjord_protocol::ErrorCode;
use std::fmt::Write;
use std::sync::Arc;

/// Every token starts with this, so a leaked one is recognisable (secret scanners).
pub const TOKEN_PREFIX: &str = "fjord_";

/// Longest chain of tokens minted by tokens that is followed when checking a token.
pub const MAX_ISSUER_DEPTH: usize = 16;

/// The authenticated caller of one request.
#[derive(Debug, Clone)]
pub struct Caller(Arc<Identity>);

#[derive(Debug)]
enum Identity {
    /// Authentication is off: everything is allowed.
    Anyone,
    Token {
        record: Arc<TokenRecord>,
        super_user: bool,
    },
    /// A verified TLS client certificate: its subject's common name, every scope (the
    /// ACLs decide).
    Certificate {
        principal: String,
        super_user: bool,
    },
}

/// A new token: the string the caller gets once, and the record stored.
pub struct MintedToken {
    pub token: String,
    pub record: TokenRecord,
}

fn hex(bytes: &[u8]) -> String {
    let mut s = String::with_capacity(bytes.len() * 2);
    for b in bytes {
        let _ = write!(s, "{b:02x}");
    }
    s
}

fn sha256_hex(secret: &str) -> String {
    hex(ring::digest::digest(&ring::digest::SHA256, secret.as_bytes()).as_ref())
}

/// Whether `secret`'s SHA-256, in lower-case hex, is `stored_hex` (no allocation: this
/// runs on every request).
fn digest_matches(secret: &str, stored_hex: &str) -> bool {
    const HEX: &[u8; 16] = b"0123456789abcdef";
    let digest = ring::digest::digest(&ring::digest::SHA256, secret.as_bytes());
    let mut hex = [0u8; 64];
    for (i, b) in digest.as_ref().iter().enumerate() {
        hex[2 * i] = HEX[usize::from(b >> 4)];
        hex[2 * i + 1] = HEX[usize::from(b & 15)];
    }
    constant_time_eq(&hex, stored_hex.as_bytes())
}

fn random_hex(bytes: usize) -> ApiResult<String> {
    let mut buf = vec![0u8; bytes];
    ring::rand::SecureRandom::fill(&ring::rand::SystemRandom::new(), &mut buf)
        .map_err(|_| ApiError::new(ErrorCode::Internal, "the system random source failed"))?;
    Ok(hex(&buf))
}

/// Makes a new token (`fjord_{id}_{secret}`: 8 random bytes of id, 32 of secret, hex).
pub fn mint(
    principal: &str,
    scopes: Vec<Scope>,
    expires_ms: Option<i64>,
    issued_by: Option<String>,
    description: String,
) -> ApiResult<MintedToken> {
    let id = random_hex(8)?;
    let secret = random_hex(32)?;
    Ok(MintedToken {
        token: format!("{TOKEN_PREFIX}{id}_{secret}"),
        record: TokenRecord {
            id,
            principal: principal.to_owned(),
            secret_sha256: sha256_hex(&secret),
            created_ms: fjord_protocol::now_ms(),
            expires_ms,
            scopes,
            issued_by,
            description,
        },
    })
}

/// The record a token string would be stored as (a bootstrap token read from a file),
/// or `None` if it is not shaped as a Fjord token.
pub fn record_of(token: &str, principal: &str) -> Option<TokenRecord> {
    let (id, secret) = split(token)?;
    Some(TokenRecord {
        id: id.to_owned(),
        principal: principal.to_owned(),
        secret_sha256: sha256_hex(secret),
        created_ms: fjord_protocol::now_ms(),
        expires_ms: None,
        scopes: Scope::everything(),
        issued_by: None,
        description: "bootstrap token".into(),
    })
}

fn split(token: &str) -> Option<(&str, &str)> {
    let rest = token.strip_prefix(TOKEN_PREFIX)?;
    let (id, secret) = rest.split_once('_')?;
    let ok = |s: &str, len: usize| s.len() == len && s.bytes().all(|b| b.is_ascii_hexdigit());
    (ok(id, 16) && ok(secret, 64)).then_some((id, secret))
}

/// Why a presented token is refused (said to the client; never the token itself).
fn refused(why: &str) -> ApiError {
    ApiError::new(ErrorCode::Unauthenticated, why.to_owned())
}

/// Whether `record` and every token that issued it are present and unexpired at `now`.
fn chain_valid(meta: &ClusterMetadata, record: &TokenRecord, now: i64) -> Result<(), &'static str> {
    let mut at = record;
    for _ in 0..MAX_ISSUER_DEPTH {
        if at.expires_ms.is_some_and(|e| e <= now) {
            return Err(if std::ptr::eq(at, record) {
                "the token has expired"
            } else {
                "the token that issued this one has expired"
            });
        }
        match &at.issued_by {
            None => return Ok(()),
            Some(parent) => match meta.tokens.get(parent) {
                Some(p) => at = p.as_ref(),
                None => return Err("the token that issued this one was revoked"),
            },
        }
    }
    Err("the token was issued through too many tokens")
}

impl Caller {
    /// The caller when authentication is off.
    pub fn anyone() -> Self {
        Self(Arc::new(Identity::Anyone))
    }

    /// The caller presenting `authorization` (an `Authorization` header's value), or
    /// `unauthenticated` saying why not.
    pub fn authenticate(config: &AuthConfig, meta: &ClusterMetadata, authorization: Option<&str>) -> ApiResult<Self> {
        let header = authorization.ok_or_else(|| refused("this API needs a bearer token (Authorization: Bearer …)"))?;
        let token = header
            .strip_prefix("Bearer ")
            .or_else(|| header.strip_prefix("bearer "))
            .ok_or_else(|| refused("the Authorization header must be `Bearer <token>`"))?
            .trim();
        let (id, secret) = split(token).ok_or_else(|| refused("the bearer token is not a Fjord token"))?;
        let record = meta.tokens.get(id).ok_or_else(|| refused("unknown or revoked token"))?;
        if !digest_matches(secret, &record.secret_sha256) {
            return Err(refused("unknown or revoked token"));
        }
        chain_valid(meta, record, fjord_protocol::now_ms()).map_err(refused)?;
        let super_user = config.is_super_user(&record.principal);
        Ok(Self(Arc::new(Identity::Token { record: record.clone(), super_user })))
    }

    /// The caller a verified client certificate names (its subject's common name).
    pub fn from_certificate(config: &AuthConfig, principal: &str) -> ApiResult<Self> {
        if !fjord_protocol::auth::is_valid_principal(principal) {
            return Err(refused("the client certificate's common name is not a valid principal"));
        }
        let super_user = config.is_super_user(principal);
        Ok(Self(Arc::new(Identity::Certificate { principal: principal.to_owned(), super_user })))
    }

    /// Whether this caller's token is still valid (not revoked, not expired, nor any
    /// token that issued it): streams check it as they go.
    pub fn still_valid(&self, meta: &ClusterMetadata) -> ApiResult<()> {
        match &*self.0 {
            Identity::Anyone | Identity::Certificate { .. } => Ok(()),
            Identity::Token { record, .. } => {
                if meta.tokens.get(&record.id).map(|r| &r.secret_sha256) != Some(&record.secret_sha256) {
                    return Err(refused("the token was revoked"));
                }
                chain_valid(meta, record, fjord_protocol::now_ms()).map_err(refused)
            }
        }
    }

    /// The principal (`*` stands for anyone when authentication is off).
    pub fn principal(&self) -> &str {
        match &*self.0 {
            Identity::Anyone => "ANONYMOUS",
            Identity::Token { record, .. } => &record.principal,
            Identity::Certificate { principal, .. } => principal,
        }
    }

    /// The token, when authentication is on.
    pub fn token(&self) -> Option<&TokenRecord> {
        match &*self.0 {
            Identity::Anyone | Identity::Certificate { .. } => None,
            Identity::Token { record, .. } => Some(record),
        }
    }

    pub fn is_super_user(&self) -> bool {
        match &*self.0 {
            Identity::Anyone => true,
            Identity::Token { super_user, .. } | Identity::Certificate { super_user, .. } => *super_user,
        }
    }

    /// Whether this caller may do `op` on `(rt, name)`: its token's scopes allow it,
    /// and its principal is a super user or the cluster's ACLs allow it.
    pub fn may(&self, meta: &ClusterMetadata, rt: ResourceType, name: &str, op: Operation) -> bool {
        match &*self.0 {
            Identity::Anyone => true,
            Identity::Token { record, super_user } => {
                scopes_allow(&record.scopes, rt, name, op)
                    && (*super_user
                        || (!meta.acls_unreadable && acls_allow(&meta.acls, &record.principal, rt, name, op)))
            }
            Identity::Certificate { principal, super_user } => {
                *super_user || (!meta.acls_unreadable && acls_allow(&meta.acls, principal, rt, name, op))
            }
        }
    }

    /// [`may`](Self::may), as an answer: `forbidden` naming what was missing. Every
    /// decision is an audit line (denials at info, grants at debug).
    pub fn require(&self, meta: &ClusterMetadata, rt: ResourceType, name: &str, op: Operation) -> ApiResult<()> {
        let allowed = self.may(meta, rt, name, op);
        audit(self.principal(), rt, name, op, allowed);
        if allowed {
            return Ok(());
        }
        Err(ApiError::new(ErrorCode::Forbidden, format!("principal `{}` may not {op} {rt} `{name}`", self.principal())))
    }

    /// Creating topic `name` (explicitly or by auto-creation): `create` on the topic or
    /// on the cluster, as Kafka allows either.
    pub fn require_create_topic(&self, meta: &ClusterMetadata, name: &str) -> ApiResult<()> {
        if self.may(meta, ResourceType::Cluster, CLUSTER_NAME, Operation::Create) {
            audit(self.principal(), ResourceType::Topic, name, Operation::Create, true);
            return Ok(());
        }
        self.require(meta, ResourceType::Topic, name, Operation::Create)
    }

    /// [`require`](Self::require) on the cluster resource.
    pub fn require_cluster(&self, meta: &ClusterMetadata, op: Operation) -> ApiResult<()> {
        self.require(meta, ResourceType::Cluster, CLUSTER_NAME, op)
    }
}

/// One authorization decision in the audit log (target `audit`).
pub fn audit(principal: &str, rt: ResourceType, name: &str, op: Operation, allowed: bool) {
    if allowed {
        tracing::debug!(target: "audit", principal, resource = %rt, name, operation = %op, decision = "allow");
    } else {
        tracing::info!(target: "audit", principal, resource = %rt, name, operation = %op, decision = "deny");
    }
}

/// Makes sure the bootstrap token exists (`auth.bootstrap_token_file`): the token in the
/// file if there is one, else a new one written there (mode 0600; a file another
/// process created first wins). Its record — principal `auth.bootstrap_principal`, every
/// scope, no expiry — is stored if missing. Returns the file used, if any. The token is
/// never logged: only the file's path.
pub async fn bootstrap(
    coordinator: &dyn fjord_coordinator::Coordinator,
    config: &AuthConfig,
) -> Result<Option<std::path::PathBuf>, String> {
    let Some(path) = config.bootstrap_token_file.clone() else { return Ok(None) };
    let token = match std::fs::read_to_string(&path) {
        Ok(t) => t.trim().to_owned(),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            let minted = mint(&config.bootstrap_principal, Scope::everything(), None, None, "bootstrap token".into())
                .map_err(|e| e.0.message)?;
            match write_new_secret_file(&path, &minted.token) {
                Ok(()) => minted.token,
                // Another process wrote it between our read and our write: use theirs.
                Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => std::fs::read_to_string(&path)
                    .map_err(|e| format!("reading {}: {e}", path.display()))?
                    .trim()
                    .to_owned(),
                Err(e) => return Err(format!("writing {}: {e}", path.display())),
            }
        }
        Err(e) => return Err(format!("reading {}: {e}", path.display())),
    };
    let record = record_of(&token, &config.bootstrap_principal)
        .ok_or_else(|| format!("{} does not hold a Fjord token (fjord_<16 hex>_<64 hex>)", path.display()))?;
    let meta = coordinator.metadata().borrow().clone();
    match meta.tokens.get(&record.id) {
        Some(stored) if stored.secret_sha256 == record.secret_sha256 => {}
        Some(_) => return Err(format!("{}: a different token with the same id is stored", path.display())),
        None => match coordinator.create_token(record).await {
            Ok(()) => {}
            // Another gateway stored the same file's token first.
            Err(e) if e.code == ErrorCode::InvalidRequest => {}
            Err(e) => return Err(format!("storing the bootstrap token: {e}")),
        },
    }
    Ok(Some(path))
}

/// Creates `path` (which must not exist) readable by its owner only, holding `secret`.
/// The file appears whole or not at all — written under a temporary name, then
/// hard-linked into place, which fails with `AlreadyExists` if another process got there
/// first — so a process sharing the path never reads it half-written.
pub fn write_new_secret_file(path: &std::path::Path, secret: &str) -> std::io::Result<()> {
    use std::io::Write as _;
    let suffix = random_hex(8).map_err(|e| std::io::Error::other(e.0.message))?;
    let tmp = path.with_file_name(format!(
        ".{}.{suffix}.tmp",
        path.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default()
    ));
    let written = (|| {
        let mut options = std::fs::OpenOptions::new();
        options.write(true).create_new(true);
        #[cfg(unix)]
        std::os::unix::fs::OpenOptionsExt::mode(&mut options, 0o600);
        let mut f = options.open(&tmp)?;
        f.write_all(secret.as_bytes())?;
        f.write_all(b"\n")?;
        f.sync_all()?;
        std::fs::hard_link(&tmp, path)
    })();
    let _ = std::fs::remove_file(&tmp);
    written
}

/// A new random secret (64 hex characters), for a cluster secret file.
pub fn new_secret() -> ApiResult<String> {
    random_hex(32)
}

/// Equal bytes, in a time that does not depend on where they differ.
fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len() && a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

#[cfg(test)]
mod tests {
    use super::*;
    use fjord_protocol::auth::{AclBinding, PatternType, Permission, ResourcePattern};

    fn config() -> AuthConfig {
        AuthConfig { enabled: true, super_users: vec!["root".into()], ..Default::default() }
    }

    fn bearer(t: &str) -> String {
        format!("Bearer {t}")
    }

    /// A stored token authenticates; a wrong secret, an unknown id, an expired token, a
    /// token whose issuer was revoked, and malformed headers are refused — and no
    /// refusal message contains the presented secret.
    #[test]
    fn tokens_authenticate_only_while_they_and_their_issuers_are_valid() {
        let mut meta = ClusterMetadata::default();
        let parent = mint("alice", Scope::everything(), None, None, String::new()).expect("mint");
        let child =
            mint("alice", Scope::everything(), None, Some(parent.record.id.clone()), String::new()).expect("mint");
        let expired = mint("bob", Scope::everything(), Some(1), None, String::new()).expect("mint");
        for t in [&parent, &child, &expired] {
            meta.tokens.insert(t.record.id.clone(), Arc::new(t.record.clone()));
        }
        let c = config();
        let who = Caller::authenticate(&c, &meta, Some(&bearer(&child.token))).expect("valid");
        assert_eq!(who.principal(), "alice");
        assert!(!who.is_super_user());

        let (head, last) = child.token.split_at(child.token.len() - 1);
        let wrong = format!("{head}{}", if last == "0" { "1" } else { "0" });
        for bad in [
            None,
            Some("Basic abc".to_owned()),
            Some(bearer("nonsense")),
            Some(bearer(&wrong)),
            Some(bearer(&expired.token)),
            Some(bearer(&format!("{TOKEN_PREFIX}{}_{}", "0".repeat(16), "0".repeat(64)))),
        ] {
            let e = Caller::authenticate(&c, &meta, bad.as_deref()).expect_err("refused");
            assert_eq!(e.code(), ErrorCode::Unauthenticated);
            assert!(!e.0.message.contains(&child.token[24..]), "{}", e.0.message);
        }
        meta.tokens.remove(&parent.record.id);
        let e = Caller::authenticate(&c, &meta, Some(&bearer(&child.token))).expect_err("issuer revoked");
        assert!(e.0.message.contains("revoked"), "{}", e.0.message);
        assert!(who.still_valid(&meta).is_err(), "a stream of the child ends too");
    }

    /// Scopes narrow ACLs and ACLs narrow scopes; a super user skips ACLs, not scopes;
    /// unreadable ACLs allow only super users.
    #[test]
    fn scopes_and_acls_must_both_allow() {
        let mut meta = ClusterMetadata::default();
        let topic = |name: &str| ResourcePattern {
            resource_type: ResourceType::Topic,
            pattern_type: PatternType::Literal,
            name: name.into(),
        };
        meta.acls.insert(AclBinding {
            principal: "alice".into(),
            resource: topic("orders"),
            operation: Operation::Produce,
            permission: Permission::Allow,
        });
        let narrow = vec![Scope { resource: topic("orders"), operations: vec![Operation::Describe] }];
        let alice = mint("alice", narrow.clone(), None, None, String::new()).expect("mint");
        let root = mint("root", narrow, None, None, String::new()).expect("mint");
        for t in [&alice, &root] {
            meta.tokens.insert(t.record.id.clone(), Arc::new(t.record.clone()));
        }
        let c = config();
        let a = Caller::authenticate(&c, &meta, Some(&bearer(&alice.token))).expect("alice");
        let r = Caller::authenticate(&c, &meta, Some(&bearer(&root.token))).expect("root");
        assert!(a.may(&meta, ResourceType::Topic, "orders", Operation::Describe));
        assert!(!a.may(&meta, ResourceType::Topic, "orders", Operation::Produce), "the scope says describe only");
        assert!(r.is_super_user() && r.may(&meta, ResourceType::Topic, "orders", Operation::Describe));
        assert!(!r.may(&meta, ResourceType::Topic, "payments", Operation::Describe), "scopes bind super users");
        meta.acls_unreadable = true;
        assert!(!a.may(&meta, ResourceType::Topic, "orders", Operation::Describe));
        assert!(r.may(&meta, ResourceType::Topic, "orders", Operation::Describe));
        let e = a.require(&meta, ResourceType::Topic, "orders", Operation::Describe).expect_err("denied");
        assert_eq!(e.code(), ErrorCode::Forbidden);
        assert!(Caller::anyone().may(&meta, ResourceType::Cluster, CLUSTER_NAME, Operation::Admin));
    }

    /// A secret file is created whole and only once: a second writer gets
    /// `AlreadyExists` and the first one's content stays; no temporary file is left.
    #[test]
    fn secret_files_appear_whole_and_once() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("bootstrap-token");
        write_new_secret_file(&path, "first").expect("first");
        let e = write_new_secret_file(&path, "second").expect_err("second");
        assert_eq!(e.kind(), std::io::ErrorKind::AlreadyExists);
        assert_eq!(std::fs::read_to_string(&path).expect("read"), "first\n");
        assert_eq!(std::fs::read_dir(dir.path()).expect("list").count(), 1, "a temporary file was left");
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            let mode = std::fs::metadata(&path).expect("stat").permissions().mode() & 0o777;
            assert_eq!(mode, 0o600);
        }
    }

    #[test]
    fn bootstrap_records_hash_the_token_they_were_read_from() {
        let t = mint("admin", Scope::everything(), None, None, String::new()).expect("mint");
        let r = record_of(&t.token, "admin").expect("shaped");
        assert_eq!((r.id, r.secret_sha256), (t.record.id, t.record.secret_sha256));
        assert!(record_of("fjord_xyz", "admin").is_none());
    }
}
