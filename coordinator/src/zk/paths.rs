//! Every ZooKeeper path Fjord uses, built in one place. Paths include the chroot: the
//! client itself is not chrooted, so what is logged is what is stored.

use fjord_protocol::{ErrorCode, FjordError, NodeId, Result};

/// The persistent directories created at connect time, parents first.
pub const BASE_DIRS: [&str; 11] = [
    "/brokers",
    "/brokers/ids",
    "/brokers/topics",
    "/config",
    "/config/topics",
    "/gateways",
    "/producers",
    "/security",
    "/security/tokens",
    "/security/acls",
    "/pipelines",
];

/// The persistent directories created at connect time after [`BASE_DIRS`].
pub const ADMIN_DIRS: [&str; 3] = ["/admin", "/admin/delete_topics", "/cluster"];

/// Checks that `s` can be one path segment: non-empty, no `/`, not `.` or `..`, and no
/// control characters.
pub fn check_segment(what: &str, s: &str) -> Result<()> {
    if s.is_empty() || s == "." || s == ".." || s.contains('/') || s.chars().any(char::is_control) {
        return Err(FjordError::new(
            ErrorCode::InvalidRequest,
            format!("{what} {s:?} cannot be a ZooKeeper path segment (empty, `.`, `..`, `/` or control characters)"),
        ));
    }
    Ok(())
}

/// Builds the paths under one chroot.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ZkPaths {
    /// The chroot without a trailing slash; empty for `/`.
    root: String,
}

impl ZkPaths {
    /// `chroot` is absolute (`/fjord`, `/a/b`); `/` means the ZooKeeper root.
    pub fn new(chroot: &str) -> Result<Self> {
        let bad = |why: &str| FjordError::new(ErrorCode::InvalidRequest, format!("ZooKeeper chroot {chroot:?}: {why}"));
        if !chroot.starts_with('/') {
            return Err(bad("must start with `/`"));
        }
        let trimmed = chroot.trim_end_matches('/');
        for segment in trimmed.split('/').skip(1) {
            check_segment("chroot segment", segment).map_err(|_| bad("has an empty, `.` or `..` segment"))?;
        }
        Ok(Self { root: trimmed.to_owned() })
    }

    /// The chroot itself and its ancestors, outermost first (nothing for `/`).
    pub fn chroot_and_ancestors(&self) -> Vec<String> {
        let mut out = Vec::new();
        let mut at = String::new();
        for segment in self.root.split('/').skip(1) {
            at.push('/');
            at.push_str(segment);
            out.push(at.clone());
        }
        out
    }

    /// `rel` (starting with `/`) under the chroot.
    pub fn under(&self, rel: &str) -> String {
        format!("{}{rel}", self.root)
    }

    pub fn cluster_id(&self) -> String {
        self.under("/cluster/id")
    }

    pub fn broker_ids(&self) -> String {
        self.under("/brokers/ids")
    }

    pub fn broker(&self, id: NodeId) -> String {
        format!("{}/brokers/ids/{id}", self.root)
    }

    pub fn topics(&self) -> String {
        self.under("/brokers/topics")
    }

    /// Caller has validated `topic` with `validate_topic_name` (which excludes `/`).
    pub fn topic(&self, topic: &str) -> String {
        format!("{}/brokers/topics/{topic}", self.root)
    }

    pub fn partitions(&self, topic: &str) -> String {
        format!("{}/partitions", self.topic(topic))
    }

    pub fn partition(&self, topic: &str, partition: u32) -> String {
        format!("{}/partitions/{partition}", self.topic(topic))
    }

    pub fn partition_state(&self, topic: &str, partition: u32) -> String {
        format!("{}/partitions/{partition}/state", self.topic(topic))
    }

    pub fn topic_configs(&self) -> String {
        self.under("/config/topics")
    }

    pub fn topic_config(&self, topic: &str) -> String {
        format!("{}/config/topics/{topic}", self.root)
    }

    pub fn controller(&self) -> String {
        self.under("/controller")
    }

    pub fn controller_epoch(&self) -> String {
        self.under("/controller_epoch")
    }

    pub fn producers(&self) -> String {
        self.under("/producers")
    }

    /// `/producers/{name}`: its creation zxid is the producer id, its data version the
    /// epoch (each registration rewrites it).
    pub fn producer(&self, name: &str) -> String {
        format!("{}/producers/{name}", self.root)
    }

    pub fn tokens(&self) -> String {
        self.under("/security/tokens")
    }

    /// `/security/tokens/{id}`: a token record (its secret's hash, never the secret).
    /// Caller has checked `id` with [`check_segment`].
    pub fn token(&self, id: &str) -> String {
        format!("{}/security/tokens/{id}", self.root)
    }

    pub fn pipelines(&self) -> String {
        self.under("/pipelines")
    }

    /// `/pipelines/{name}`: a pipeline's definition.
    pub fn pipeline(&self, name: &str) -> String {
        format!("{}/pipelines/{name}", self.root)
    }

    /// `/admin/preferred_replica_election`: the pending preferred-leader election, as in
    /// Kafka (created by a gateway, removed by the controller once it has run it).
    pub fn preferred_election(&self) -> String {
        self.under("/admin/preferred_replica_election")
    }

    pub fn acls(&self) -> String {
        self.under("/security/acls")
    }

    /// `/security/acls/{key}`: one ACL binding, named by [`acl_key`] (refused if the
    /// key cannot be a path segment).
    pub fn acl(&self, acl: &fjord_protocol::auth::AclBinding) -> Result<String> {
        let key = acl_key(acl);
        check_segment("ACL binding", &key)?;
        Ok(format!("{}/security/acls/{key}", self.root))
    }

    pub fn gateways(&self) -> String {
        self.under("/gateways")
    }

    /// Caller has checked `id` with [`check_segment`].
    pub fn gateway(&self, id: &str) -> String {
        format!("{}/gateways/{id}", self.root)
    }
}

/// The znode name of an ACL binding: its fields joined by `~` (no field may hold `~`
/// or `/`: principals and names follow Fjord's name rules), so the same binding is
/// always the same znode and creating it twice is one binding.
pub fn acl_key(acl: &fjord_protocol::auth::AclBinding) -> String {
    let r = &acl.resource;
    format!(
        "{}~{}~{}~{}~{}~{}",
        acl.principal,
        r.resource_type,
        if r.pattern_type == fjord_protocol::auth::PatternType::Literal { "literal" } else { "prefixed" },
        r.name,
        acl.operation,
        if acl.permission == fjord_protocol::auth::Permission::Allow { "allow" } else { "deny" },
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn paths_follow_the_kafka_style_layout_under_the_chroot() {
        let p = ZkPaths::new("/fjord").expect("chroot");
        assert_eq!(p.broker(3), "/fjord/brokers/ids/3");
        assert_eq!(p.topic("orders"), "/fjord/brokers/topics/orders");
        assert_eq!(p.partition_state("orders", 7), "/fjord/brokers/topics/orders/partitions/7/state");
        assert_eq!(p.topic_config("orders"), "/fjord/config/topics/orders");
        assert_eq!(p.controller(), "/fjord/controller");
        assert_eq!(p.controller_epoch(), "/fjord/controller_epoch");
        assert_eq!(p.gateway("g1"), "/fjord/gateways/g1");
        assert_eq!(p.producer("writer-1"), "/fjord/producers/writer-1");
        assert_eq!(p.cluster_id(), "/fjord/cluster/id");
    }

    #[test]
    fn chroots_are_normalised_and_checked() {
        assert_eq!(ZkPaths::new("/").expect("root").broker(1), "/brokers/ids/1");
        assert_eq!(ZkPaths::new("/a/b/").expect("trailing").chroot_and_ancestors(), vec!["/a", "/a/b"]);
        assert!(ZkPaths::new("/").expect("root").chroot_and_ancestors().is_empty());
        for bad in ["", "fjord", "/a//b", "/a/../b", "/a/./b"] {
            assert_eq!(ZkPaths::new(bad).expect_err(bad).code, ErrorCode::InvalidRequest, "{bad}");
        }
    }

    #[test]
    fn gateway_ids_must_be_one_segment() {
        assert!(check_segment("gateway id", "gw-1").is_ok());
        for bad in ["", ".", "..", "a/b", "a\nb"] {
            assert!(check_segment("gateway id", bad).is_err(), "{bad:?}");
        }
    }
}
