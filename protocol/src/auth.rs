//! The vocabulary of authorization and its pure rules: resources, operations, Kafka's
//! ACL model (principal × resource pattern × operation × allow/deny, deny wins, default
//! deny) and the scopes a bearer token carries (allow-only, and a minted token's scopes
//! must lie within its issuer's). No I/O: the gateway decides with these, the
//! coordinator stores the bindings and token records.

use serde::{Deserialize, Serialize};
use std::fmt;

/// What a permission is about (Kafka's resource types; `producer` is Kafka's
/// `TransactionalId`: a producer-session name).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum ResourceType {
    Topic,
    Group,
    Producer,
    /// The cluster as a whole (its description, metrics, ACLs, tokens of others). Its
    /// one name is `cluster`.
    Cluster,
}

/// The one name of the [`ResourceType::Cluster`] resource.
pub const CLUSTER_NAME: &str = "cluster";

/// How a pattern's name matches resource names.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum PatternType {
    /// Exactly this name; `*` matches every name.
    Literal,
    /// Every name that starts with this one.
    Prefixed,
}

/// An operation on a resource. `produce`, `consume`, `alter` and `delete` each imply
/// `describe` when allowed (as Kafka's Write, Read, Alter and Delete imply Describe);
/// `all` is every operation.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum Operation {
    All,
    Produce,
    Consume,
    Describe,
    Create,
    Alter,
    Delete,
    Admin,
}

impl Operation {
    pub const fn as_str(self) -> &'static str {
        match self {
            Self::All => "all",
            Self::Produce => "produce",
            Self::Consume => "consume",
            Self::Describe => "describe",
            Self::Create => "create",
            Self::Alter => "alter",
            Self::Delete => "delete",
            Self::Admin => "admin",
        }
    }

    /// Whether being allowed `self` allows `wanted`.
    pub fn allows(self, wanted: Operation) -> bool {
        self == Operation::All
            || self == wanted
            || (wanted == Operation::Describe
                && matches!(self, Operation::Produce | Operation::Consume | Operation::Alter | Operation::Delete))
    }

    /// Whether denying `self` denies `wanted` (no implication: denying `consume` still
    /// lets a principal describe).
    pub fn denies(self, wanted: Operation) -> bool {
        self == Operation::All || self == wanted
    }
}

impl fmt::Display for Operation {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl fmt::Display for ResourceType {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Self::Topic => "topic",
            Self::Group => "group",
            Self::Producer => "producer",
            Self::Cluster => "cluster",
        })
    }
}

/// Resources by type and name pattern.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize, utoipa::ToSchema)]
pub struct ResourcePattern {
    pub resource_type: ResourceType,
    pub pattern_type: PatternType,
    /// A name (`literal`; `*` for every name) or a name prefix (`prefixed`).
    #[schema(min_length = 1, max_length = 255)]
    pub name: String,
}

impl ResourcePattern {
    /// Whether this pattern covers the resource `(resource_type, name)`.
    pub fn matches(&self, resource_type: ResourceType, name: &str) -> bool {
        self.resource_type == resource_type
            && match self.pattern_type {
                PatternType::Literal => self.name == "*" || self.name == name,
                PatternType::Prefixed => name.starts_with(&self.name),
            }
    }

    /// Whether every resource `other` covers, this one covers too.
    pub fn contains(&self, other: &ResourcePattern) -> bool {
        if self.resource_type != other.resource_type {
            return false;
        }
        match (self.pattern_type, other.pattern_type) {
            (PatternType::Literal, _) if self.name == "*" => true,
            (PatternType::Literal, PatternType::Literal) => self.name == other.name && other.name != "*",
            (PatternType::Literal, PatternType::Prefixed) => false,
            (PatternType::Prefixed, PatternType::Literal) => other.name != "*" && other.name.starts_with(&self.name),
            (PatternType::Prefixed, PatternType::Prefixed) => other.name.starts_with(&self.name),
        }
    }
}

/// Allow or deny.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum Permission {
    Allow,
    Deny,
}

/// One ACL: `principal` (or `*`, every principal) is allowed or denied `operation` on
/// the resources of `resource`.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize, utoipa::ToSchema)]
pub struct AclBinding {
    /// A principal name, or `*` for every principal.
    #[schema(min_length = 1, max_length = 255)]
    pub principal: String,
    #[serde(flatten)]
    pub resource: ResourcePattern,
    pub operation: Operation,
    pub permission: Permission,
}

impl AclBinding {
    fn applies(&self, principal: &str, resource_type: ResourceType, name: &str) -> bool {
        (self.principal == "*" || self.principal == principal) && self.resource.matches(resource_type, name)
    }
}

/// Kafka's rule: a matching deny wins; else a matching allow allows; else denied.
pub fn acls_allow<'a>(
    acls: impl IntoIterator<Item = &'a AclBinding>,
    principal: &str,
    resource_type: ResourceType,
    name: &str,
    operation: Operation,
) -> bool {
    let mut allowed = false;
    for acl in acls {
        if !acl.applies(principal, resource_type, name) {
            continue;
        }
        match acl.permission {
            Permission::Deny if acl.operation.denies(operation) => return false,
            Permission::Allow if acl.operation.allows(operation) => allowed = true,
            _ => {}
        }
    }
    allowed
}

/// What a token may be used for: operations on the resources of a pattern. A token's
/// scopes only narrow what its principal's ACLs allow; they never add to it.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize, utoipa::ToSchema)]
pub struct Scope {
    #[serde(flatten)]
    pub resource: ResourcePattern,
    #[schema(min_items = 1)]
    pub operations: Vec<Operation>,
}

impl Scope {
    /// Every operation on every resource.
    pub fn everything() -> Vec<Scope> {
        [ResourceType::Topic, ResourceType::Group, ResourceType::Producer, ResourceType::Cluster]
            .into_iter()
            .map(|resource_type| Scope {
                resource: ResourcePattern { resource_type, pattern_type: PatternType::Literal, name: "*".into() },
                operations: vec![Operation::All],
            })
            .collect()
    }

    /// Whether everything `other` allows, this scope allows too.
    fn contains(&self, other: &Scope) -> bool {
        self.resource.contains(&other.resource)
            && other.operations.iter().all(|&op| self.operations.iter().any(|&mine| mine.allows(op)))
    }
}

/// Whether `scopes` allow `operation` on `(resource_type, name)`.
pub fn scopes_allow(scopes: &[Scope], resource_type: ResourceType, name: &str, operation: Operation) -> bool {
    scopes.iter().any(|s| s.resource.matches(resource_type, name) && s.operations.iter().any(|op| op.allows(operation)))
}

/// Whether every scope of `wanted` lies within one scope of `held` (S2's rule for a
/// token minted by a token: it cannot exceed its issuer).
pub fn scopes_within(held: &[Scope], wanted: &[Scope]) -> bool {
    wanted.iter().all(|w| held.iter().any(|h| h.contains(w)))
}

/// A bearer token as stored: never the secret, only its SHA-256.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct TokenRecord {
    /// Public, the first part of the token (`fjord_{id}_{secret}`).
    pub id: String,
    pub principal: String,
    /// Hex SHA-256 of the secret part.
    pub secret_sha256: String,
    pub created_ms: i64,
    /// After this the token is refused; `None`: never (only a bootstrap token).
    pub expires_ms: Option<i64>,
    pub scopes: Vec<Scope>,
    /// The token that minted this one: revoking or expiring it ends this one too.
    pub issued_by: Option<String>,
    /// A label for people.
    #[serde(default)]
    pub description: String,
}

/// The character rule of a principal name: `[A-Za-z0-9._@:=+-]`, 1 to 255 characters.
pub fn is_valid_principal(s: &str) -> bool {
    !s.is_empty()
        && s.len() <= 255
        && s.bytes().all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b'@' | b':' | b'=' | b'+' | b'-'))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pattern(t: ResourceType, p: PatternType, name: &str) -> ResourcePattern {
        ResourcePattern { resource_type: t, pattern_type: p, name: name.into() }
    }

    fn acl(principal: &str, p: ResourcePattern, op: Operation, permission: Permission) -> AclBinding {
        AclBinding { principal: principal.into(), resource: p, operation: op, permission }
    }

    use Operation::*;
    use PatternType::*;
    use ResourceType::*;

    /// A prefixed allow with a literal deny: the deny wins on exactly its name; describe
    /// is implied by produce but not denied by a consume deny; nothing else is allowed.
    #[test]
    fn deny_wins_and_describe_is_implied() {
        let acls = vec![
            acl("alice", pattern(Topic, Prefixed, "orders."), Produce, Permission::Allow),
            acl("alice", pattern(Topic, Prefixed, "orders."), Consume, Permission::Allow),
            acl("alice", pattern(Topic, Literal, "orders.secret"), All, Permission::Deny),
            acl("*", pattern(Topic, Literal, "orders.eu"), Consume, Permission::Deny),
        ];
        assert!(acls_allow(&acls, "alice", Topic, "orders.us", Produce));
        assert!(acls_allow(&acls, "alice", Topic, "orders.us", Describe));
        assert!(!acls_allow(&acls, "alice", Topic, "orders.us", Delete));
        assert!(!acls_allow(&acls, "alice", Topic, "orders.secret", Describe));
        assert!(!acls_allow(&acls, "alice", Topic, "orders.eu", Consume));
        assert!(acls_allow(&acls, "alice", Topic, "orders.eu", Describe), "a consume deny leaves describe");
        assert!(!acls_allow(&acls, "alice", Topic, "payments", Produce));
        assert!(!acls_allow(&acls, "bob", Topic, "orders.us", Produce), "default deny");
        assert!(!acls_allow(&acls, "alice", Group, "orders.us", Consume), "types do not mix");
    }

    #[test]
    fn patterns_contain_what_they_match() {
        let all = pattern(Topic, Literal, "*");
        let pre = pattern(Topic, Prefixed, "a.");
        assert!(all.contains(&pre) && all.contains(&pattern(Topic, Literal, "x")));
        assert!(pre.contains(&pattern(Topic, Literal, "a.b")) && pre.contains(&pattern(Topic, Prefixed, "a.b")));
        assert!(!pre.contains(&pattern(Topic, Prefixed, "a")) && !pre.contains(&all));
        assert!(!pattern(Topic, Literal, "a.b").contains(&pattern(Topic, Prefixed, "a.b")));
        assert!(!pre.contains(&pattern(Group, Literal, "a.b")));
    }

    /// A minted token's scopes must each lie within one of the issuer's: narrower names
    /// and fewer operations pass; a broader pattern, another type or `all` from a
    /// produce-only scope do not.
    #[test]
    fn minted_scopes_cannot_exceed_the_issuer() {
        let held = vec![Scope { resource: pattern(Topic, Prefixed, "orders"), operations: vec![Produce, Consume] }];
        let ok = vec![Scope { resource: pattern(Topic, Literal, "orders.eu"), operations: vec![Produce, Describe] }];
        assert!(scopes_within(&held, &ok));
        for bad in [
            Scope { resource: pattern(Topic, Prefixed, "o"), operations: vec![Produce] },
            Scope { resource: pattern(Topic, Literal, "*"), operations: vec![Produce] },
            Scope { resource: pattern(Group, Literal, "orders"), operations: vec![Consume] },
            Scope { resource: pattern(Topic, Literal, "orders"), operations: vec![All] },
            Scope { resource: pattern(Topic, Literal, "orders"), operations: vec![Delete] },
        ] {
            assert!(!scopes_within(&held, std::slice::from_ref(&bad)), "{bad:?}");
        }
        assert!(scopes_within(&Scope::everything(), &held));
        assert!(scopes_allow(&held, Topic, "orders.x", Describe));
        assert!(!scopes_allow(&held, Topic, "orders.x", Alter));
    }

    #[test]
    fn principal_names() {
        assert!(is_valid_principal("User:alice@example.com"));
        assert!(is_valid_principal("CN=gw-1"));
        assert!(!is_valid_principal("") && !is_valid_principal("a b") && !is_valid_principal("*"));
        assert!(!is_valid_principal(&"a".repeat(256)));
    }
}
