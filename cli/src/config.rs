//! Layered configuration: built-in defaults → TOML file → `FJORD_*` environment
//! (nested keys joined by `__`, e.g. `FJORD_GATEWAY__LISTEN`) → command-line flags.

use figment::providers::{Env, Format, Serialized, Toml};
use figment::Figment;
use fjord_gateway::GatewayConfig;
use fjord_storage_node::NodeConfig;
use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};
use std::path::Path;

/// Configuration of `fjord standalone`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct StandaloneConfig {
    pub storage: NodeConfig,
    pub gateway: GatewayConfig,
    pub processor: StandaloneProcessorConfig,
}

/// The stream processor inside `fjord standalone` (`[processor]`): it runs the
/// pipelines stored with `POST /v1/pipelines`, as `fjord processor` does.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct StandaloneProcessorConfig {
    pub enabled: bool,
}

impl Default for StandaloneProcessorConfig {
    fn default() -> Self {
        Self { enabled: true }
    }
}

/// Where ZooKeeper is.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct ZookeeperConfig {
    /// Connect string, `host:port[,host:port…]`.
    pub connect: String,
    /// Every Fjord path lives under this chroot.
    pub chroot: String,
    pub session_timeout_ms: u64,
}

impl Default for ZookeeperConfig {
    fn default() -> Self {
        Self { connect: "127.0.0.1:2181".into(), chroot: "/fjord".into(), session_timeout_ms: 6_000 }
    }
}

/// The storage node's internal API (gateways and followers call it).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct InternalApiConfig {
    pub listen: String,
    /// The `host:port` others reach this node at; default: the bound address.
    pub advertised: Option<String>,
    /// How long a controlled shutdown (SIGTERM) waits for leaderships to move away.
    pub controlled_shutdown_timeout_ms: u64,
}

impl Default for InternalApiConfig {
    fn default() -> Self {
        Self { listen: "127.0.0.1:9200".into(), advertised: None, controlled_shutdown_timeout_ms: 10_000 }
    }
}

/// The cluster's internal-API credential (`[cluster]`), shared by its storage nodes and
/// gateways.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct ClusterConfig {
    /// A file holding the cluster secret (`fjord new-secret > file`): every internal
    /// call carries it and every internal listener requires it.
    pub secret_file: Option<std::path::PathBuf>,
    /// A storage node: serve the internal API on an address other than loopback
    /// without a secret (`--insecure`). Refused otherwise.
    pub insecure: bool,
}

impl ClusterConfig {
    /// The secret from `secret_file`, if configured.
    pub fn secret(&self) -> Result<Option<fjord_rpc::ClusterSecret>, String> {
        match &self.secret_file {
            None => Ok(None),
            Some(path) => {
                fjord_rpc::ClusterSecret::from_file(path).map(Some).map_err(|e| format!("cluster.secret_file: {e}"))
            }
        }
    }
}

/// Configuration of `fjord storage-node`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct StorageNodeConfig {
    pub storage: NodeConfig,
    pub internal: InternalApiConfig,
    pub zookeeper: ZookeeperConfig,
    pub cluster: ClusterConfig,
    /// Leader balancing by the controller, when this node is it (`[controller]`).
    pub controller: fjord_coordinator::controller::LeaderBalance,
}

/// Configuration of `fjord gateway`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct GatewayProcessConfig {
    /// Registered under `/gateways/{id}`; default: a random id.
    pub id: Option<String>,
    pub gateway: GatewayConfig,
    pub zookeeper: ZookeeperConfig,
    pub cluster: ClusterConfig,
}

impl Default for GatewayProcessConfig {
    fn default() -> Self {
        Self {
            id: None,
            gateway: GatewayConfig { default_replication_factor: 1, ..Default::default() },
            zookeeper: ZookeeperConfig::default(),
            cluster: ClusterConfig::default(),
        }
    }
}

/// A config with top-level sections; `FJORD_<SECTION>__…` variables of other
/// processes' sections are ignored, so one environment can serve every process.
pub trait Sections {
    const SECTIONS: &'static [&'static str];
}

impl Sections for StandaloneConfig {
    const SECTIONS: &'static [&'static str] = &["storage", "gateway", "processor"];
}

impl Sections for StorageNodeConfig {
    const SECTIONS: &'static [&'static str] = &["storage", "internal", "zookeeper", "cluster", "controller"];
}

impl Sections for GatewayProcessConfig {
    const SECTIONS: &'static [&'static str] = &["id", "gateway", "zookeeper", "cluster"];
}

/// Loads `T` from its defaults, `file` (which must exist when given), the environment
/// and `flags` (dotted key → value). Errors name the bad key.
pub fn load<T: Serialize + DeserializeOwned + Default + Sections>(
    file: Option<&Path>,
    flags: &[(&str, Option<serde_json::Value>)],
) -> Result<T, String> {
    let mut fig = Figment::from(Serialized::defaults(T::default()));
    if let Some(path) = file {
        if !path.exists() {
            return Err(format!("config file {} does not exist", path.display()));
        }
        fig = fig.merge(Toml::file(path));
    }
    // Only this process's sections (`FJORD_<SECTION>__<KEY>`, or `FJORD_ID` for the
    // gateway's id): other FJORD_* variables belong to other processes or are not config.
    fig = fig.merge(
        Env::prefixed("FJORD_")
            .filter(|k| {
                let k = k.as_str().to_ascii_lowercase();
                T::SECTIONS.iter().any(|s| k == *s || k.starts_with(&format!("{s}__")))
            })
            .split("__"),
    );
    for (key, value) in flags {
        if let Some(v) = value {
            fig = fig.merge(Serialized::default(key, v));
        }
    }
    fig.extract().map_err(|e| e.to_string())
}

impl StandaloneConfig {
    pub fn validate(&self) -> Result<(), String> {
        self.storage.validate()?;
        self.gateway.validate()
    }
}

impl StorageNodeConfig {
    pub fn validate(&self) -> Result<(), String> {
        self.storage.validate()?;
        let Ok(addr) = self.internal.listen.parse::<std::net::SocketAddr>() else {
            return Err(format!("internal.listen: `{}` is not an address like 127.0.0.1:9200", self.internal.listen));
        };
        if !addr.ip().is_loopback() && self.cluster.secret_file.is_none() && !self.cluster.insecure {
            return Err(format!(
                "internal.listen: refusing to serve the internal API on {addr} without a cluster secret; set \
                 cluster.secret_file (fjord new-secret > file), or pass --insecure (cluster.insecure)"
            ));
        }
        self.cluster.secret()?;
        self.controller.validate().map_err(|e| format!("controller.{e}"))?;
        validate_zookeeper(&self.zookeeper)
    }
}

impl GatewayProcessConfig {
    pub fn validate(&self) -> Result<(), String> {
        self.gateway.validate()?;
        self.cluster.secret()?;
        validate_zookeeper(&self.zookeeper)
    }
}

fn validate_zookeeper(z: &ZookeeperConfig) -> Result<(), String> {
    if z.connect.trim().is_empty() {
        return Err("zookeeper.connect must name at least one host:port".into());
    }
    if !z.chroot.starts_with('/') {
        return Err(format!("zookeeper.chroot must start with `/`, got `{}`", z.chroot));
    }
    if z.session_timeout_ms < 1_000 {
        return Err("zookeeper.session_timeout_ms must be at least 1000".into());
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::path::PathBuf;

    #[test]
    #[allow(clippy::result_large_err)] // figment::Jail's closure signature, not ours
    fn layers_apply_in_order_and_errors_name_the_key() {
        figment::Jail::expect_with(|jail| {
            jail.create_file(
                "f.toml",
                "[gateway]\nlisten = \"127.0.0.1:9000\"\nmax_request_bytes = 4096\n[storage]\nwal_sync = \"always\"\n",
            )?;
            jail.set_env("FJORD_GATEWAY__MAX_REQUEST_BYTES", "8192");
            jail.set_env("FJORD_SOMETHING_ELSE", "1");
            let c: StandaloneConfig = load(Some(Path::new("f.toml")), &[]).expect("load");
            assert_eq!(c.gateway.listen, "127.0.0.1:9000");
            assert_eq!(c.gateway.max_request_bytes, 8192, "env beats file");
            assert_eq!(c.storage.wal_sync, fjord_log::WalSync::Always);
            let flags = [("gateway.listen", Some("127.0.0.1:9001".into())), ("storage.data_dir", Some("d".into()))];
            let c: StandaloneConfig = load(Some(Path::new("f.toml")), &flags).expect("load");
            assert_eq!(c.gateway.listen, "127.0.0.1:9001", "flags beat env and file");
            assert_eq!(c.storage.data_dir, PathBuf::from("d"));

            jail.create_file("bad.toml", "[gateway]\nlisten_addr = \"x\"\n")?;
            let err = load::<StandaloneConfig>(Some(Path::new("bad.toml")), &[]).expect_err("unknown key");
            assert!(err.contains("listen_addr"), "{err}");
            jail.set_env("FJORD_GATEWAY__LISTEN", "nonsense");
            let c: StandaloneConfig = load(None, &[]).expect("load");
            let err = c.validate().expect_err("bad listen");
            assert!(err.contains("gateway.listen"), "{err}");

            jail.set_env("FJORD_STORAGE__NODE_ID", "3");
            let c: StorageNodeConfig =
                load(None, &[("zookeeper.connect", Some("127.0.0.1:2999".into())), ("storage.rack", Some("1".into()))])
                    .expect("node");
            assert_eq!(c.storage.node_id, 3);
            assert_eq!(c.zookeeper.connect, "127.0.0.1:2999");
            assert_eq!(c.storage.rack.as_deref(), Some("1"), "a numeric-looking rack stays text");
            Ok(())
        });
    }

    #[test]
    #[allow(clippy::result_large_err)] // figment::Jail's closure signature, not ours
    fn the_controller_section_takes_kafkas_defaults_and_refuses_bad_values() {
        figment::Jail::expect_with(|jail| {
            let c: StorageNodeConfig = load(None, &[]).expect("defaults");
            assert_eq!(c.controller, fjord_coordinator::controller::LeaderBalance::default());
            assert!(c.controller.auto_leader_rebalance_enable);
            assert_eq!(
                (
                    c.controller.leader_imbalance_per_broker_percentage,
                    c.controller.leader_imbalance_check_interval_seconds
                ),
                (10, 300)
            );
            jail.set_env("FJORD_CONTROLLER__LEADER_IMBALANCE_CHECK_INTERVAL_SECONDS", "1");
            jail.set_env("FJORD_CONTROLLER__AUTO_LEADER_REBALANCE_ENABLE", "false");
            let c: StorageNodeConfig = load(None, &[]).expect("env");
            assert_eq!(c.controller.leader_imbalance_check_interval_seconds, 1);
            assert!(!c.controller.auto_leader_rebalance_enable);
            c.validate().expect("valid");
            jail.set_env("FJORD_CONTROLLER__LEADER_IMBALANCE_PER_BROKER_PERCENTAGE", "101");
            let c: StorageNodeConfig = load(None, &[]).expect("env");
            let err = c.validate().expect_err("over 100%");
            assert!(err.contains("controller.leader_imbalance_per_broker_percentage"), "{err}");
            jail.create_file("bad.toml", "[controller]\nleader_imbalance_check_interval = 5\n")?;
            let err = load::<StorageNodeConfig>(Some(Path::new("bad.toml")), &[]).expect_err("unknown key");
            assert!(err.contains("leader_imbalance_check_interval"), "{err}");
            Ok(())
        });
    }
}
