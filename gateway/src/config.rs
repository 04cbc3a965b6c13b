//! Gateway configuration.

use serde::{Deserialize, Serialize};
use std::path::PathBuf;

/// TLS on the public listener (`[gateway.tls]`; see `tls`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct TlsConfig {
    /// PEM certificate chain, leaf first.
    pub cert_file: PathBuf,
    /// PEM private key (PKCS#8, PKCS#1 or SEC1).
    pub key_file: PathBuf,
    /// PEM CA certificates client certificates are verified against; a verified
    /// certificate's subject common name is the caller's principal.
    pub client_ca_file: Option<PathBuf>,
    /// Refuse connections without a client certificate (with `client_ca_file`).
    pub require_client_cert: bool,
    /// How often the files are checked for changes (they are also read again on SIGHUP).
    pub reload_check_interval_ms: u64,
}

impl Default for TlsConfig {
    fn default() -> Self {
        Self {
            cert_file: PathBuf::new(),
            key_file: PathBuf::new(),
            client_ca_file: None,
            require_client_cert: false,
            reload_check_interval_ms: 10_000,
        }
    }
}

/// Rates of one principal; 0 is unlimited.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct QuotaLimits {
    pub produce_bytes_per_second: u64,
    pub consume_bytes_per_second: u64,
    pub requests_per_second: u64,
}

/// One principal's overrides of the default rates (unset: the default).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct QuotaOverride {
    pub produce_bytes_per_second: Option<u64>,
    pub consume_bytes_per_second: Option<u64>,
    pub requests_per_second: Option<u64>,
}

/// Client quotas per principal, per gateway (`[gateway.quotas]`; see `quota`).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct QuotaConfig {
    /// Every principal's rates unless overridden (`ANONYMOUS` with authentication off).
    pub default: QuotaLimits,
    /// Overrides by principal.
    pub principals: std::collections::BTreeMap<String, QuotaOverride>,
}

impl QuotaConfig {
    pub fn is_set(&self) -> bool {
        self.default != QuotaLimits::default() || self.principals.values().any(|o| *o != QuotaOverride::default())
    }

    /// The rates of `principal`.
    pub fn limits(&self, principal: &str) -> QuotaLimits {
        let d = &self.default;
        match self.principals.get(principal) {
            None => d.clone(),
            Some(o) => QuotaLimits {
                produce_bytes_per_second: o.produce_bytes_per_second.unwrap_or(d.produce_bytes_per_second),
                consume_bytes_per_second: o.consume_bytes_per_second.unwrap_or(d.consume_bytes_per_second),
                requests_per_second: o.requests_per_second.unwrap_or(d.requests_per_second),
            },
        }
    }
}

/// Authentication and authorization of the public API (`[gateway.auth]`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct AuthConfig {
    /// Require a bearer token on every route but `/healthz`, `/readyz` and
    /// `/openapi.json`, and authorize each call by the token's scopes and the ACLs.
    pub enabled: bool,
    /// Principals allowed everything their token's scopes allow, whatever the ACLs say
    /// (Kafka's `super.users`).
    pub super_users: Vec<String>,
    /// A file holding the bootstrap token: read if it exists, else written (mode 0600)
    /// with a new token at first start. Its principal is `bootstrap_principal`, a super
    /// user with every scope and no expiry. `fjord standalone` defaults it to
    /// `<data_dir>/bootstrap-token`.
    pub bootstrap_token_file: Option<PathBuf>,
    pub bootstrap_principal: String,
    /// Lifetime of a minted token that asks for none (capped by its issuer's expiry).
    pub default_token_ttl_ms: u64,
    /// Longest lifetime a minted token may ask for.
    pub max_token_ttl_ms: u64,
}

impl Default for AuthConfig {
    fn default() -> Self {
        Self {
            enabled: false,
            super_users: Vec::new(),
            bootstrap_token_file: None,
            bootstrap_principal: "admin".into(),
            default_token_ttl_ms: 30 * 24 * 3600 * 1000,
            max_token_ttl_ms: 365 * 24 * 3600 * 1000,
        }
    }
}

impl AuthConfig {
    pub fn is_super_user(&self, principal: &str) -> bool {
        principal == self.bootstrap_principal || self.super_users.iter().any(|s| s == principal)
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct GatewayConfig {
    /// Address the public HTTP API listens on.
    pub listen: String,
    /// Largest request body accepted.
    pub max_request_bytes: usize,
    /// Create a topic on its first produce (Kafka's `auto.create.topics.enable`).
    pub auto_create_topics: bool,
    /// Partition count of auto-created topics (Kafka's `num.partitions`).
    pub default_partitions: u32,
    /// Replication factor of auto-created topics.
    pub default_replication_factor: u32,
    /// Upper bound on any request's `timeout_ms`.
    pub max_timeout_ms: u64,
    /// Bytes of `acks=0` batches this gateway holds that no storage node has answered
    /// yet (Kafka's producer `buffer.memory`). A request that does not fit waits for
    /// room up to its `timeout_ms`, then is refused `429 throttled` with nothing written:
    /// fire-and-forget producers are slowed to what the cluster takes instead of piling
    /// up tasks and memory without bound.
    pub max_unacknowledged_bytes: usize,
    /// Partition count of the internal `__consumer_offsets` topic, created on the first
    /// consumer-group call (Kafka's `offsets.topic.num.partitions`). Fixed once created.
    pub offsets_topic_partitions: u32,
    /// Its replication factor (Kafka's `offsets.topic.replication.factor`), capped at
    /// the live storage nodes when it is created.
    pub offsets_topic_replication_factor: u32,
    /// Authentication and authorization.
    pub auth: AuthConfig,
    /// Client quotas per principal.
    pub quotas: QuotaConfig,
    /// Serve HTTPS (HTTP/2 or 1.1 by ALPN) instead of plain HTTP.
    pub tls: Option<TlsConfig>,
    /// Serve without authentication on an address other than loopback. Without it, a
    /// gateway whose `listen` is not a loopback address refuses to start unless
    /// `auth.enabled` is set (`--insecure`).
    pub insecure: bool,
}

impl Default for GatewayConfig {
    fn default() -> Self {
        Self {
            listen: "127.0.0.1:8080".to_owned(),
            max_request_bytes: 64 << 20,
            auto_create_topics: true,
            default_partitions: 1,
            default_replication_factor: 1,
            max_timeout_ms: 60_000,
            max_unacknowledged_bytes: 64 << 20,
            offsets_topic_partitions: 16,
            offsets_topic_replication_factor: 3,
            auth: AuthConfig::default(),
            quotas: QuotaConfig::default(),
            tls: None,
            insecure: false,
        }
    }
}

impl GatewayConfig {
    /// Checks values that serde cannot, naming the bad key.
    pub fn validate(&self) -> Result<(), String> {
        if self.listen.parse::<std::net::SocketAddr>().is_err() {
            return Err(format!("gateway.listen: `{}` is not an address like 127.0.0.1:8080", self.listen));
        }
        if self.max_request_bytes < 1024 {
            return Err("gateway.max_request_bytes must be at least 1024".into());
        }
        if self.max_unacknowledged_bytes < 1024 || self.max_unacknowledged_bytes > u32::MAX as usize {
            return Err("gateway.max_unacknowledged_bytes must be between 1024 and 4294967295".into());
        }
        if self.default_partitions == 0 {
            return Err("gateway.default_partitions must be at least 1".into());
        }
        if self.offsets_topic_partitions == 0 || self.offsets_topic_partitions > 1000 {
            return Err("gateway.offsets_topic_partitions must be between 1 and 1000".into());
        }
        if self.offsets_topic_replication_factor == 0 {
            return Err("gateway.offsets_topic_replication_factor must be at least 1".into());
        }
        if self.default_replication_factor == 0 {
            return Err("gateway.default_replication_factor must be at least 1".into());
        }
        for p in self.auth.super_users.iter().chain([&self.auth.bootstrap_principal]) {
            if !fjord_protocol::auth::is_valid_principal(p) {
                return Err(format!(
                    "gateway.auth: principal `{p}` is invalid: use 1 to 255 characters from [A-Za-z0-9._@:=+-]"
                ));
            }
        }
        if self.auth.default_token_ttl_ms == 0 || self.auth.default_token_ttl_ms > self.auth.max_token_ttl_ms {
            return Err("gateway.auth.default_token_ttl_ms must be between 1 and max_token_ttl_ms".into());
        }
        if let Some(t) = &self.tls {
            if t.cert_file.as_os_str().is_empty() || t.key_file.as_os_str().is_empty() {
                return Err("gateway.tls needs cert_file and key_file".into());
            }
            if t.require_client_cert && t.client_ca_file.is_none() {
                return Err("gateway.tls.require_client_cert needs client_ca_file".into());
            }
        }
        let loopback = self.listen.parse::<std::net::SocketAddr>().is_ok_and(|a| a.ip().is_loopback());
        if !loopback && !self.auth.enabled && !self.insecure {
            return Err(format!(
                "gateway.listen: refusing to serve {} without authentication; set gateway.auth.enabled = true, \
                 or pass --insecure (gateway.insecure) to serve it open",
                self.listen
            ));
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The acks=0 budget is refused outside 1 KiB..4 GiB, naming the key.
    #[test]
    fn max_unacknowledged_bytes_is_bounded() {
        assert_eq!(GatewayConfig::default().validate(), Ok(()));
        for bad in [0, 1023, u32::MAX as usize + 1] {
            let e = GatewayConfig { max_unacknowledged_bytes: bad, ..Default::default() }.validate();
            assert!(e.as_ref().is_err_and(|m| m.contains("gateway.max_unacknowledged_bytes")), "{bad}: {e:?}");
        }
        assert_eq!(GatewayConfig { max_unacknowledged_bytes: 1024, ..Default::default() }.validate(), Ok(()));
    }
}
