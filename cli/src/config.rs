//! Layered configuration: built-in defaults → TOML file → `FJORD_*` environment
//! (nested keys joined by `__`, e.g. `FJORD_GATEWAY__LISTEN`) → command-line flags.

use figment::providers::{Env, Format, Serialized, Toml};
use figment::Figment;
use fjord_gateway::GatewayConfig;
use fjord_storage_node::NodeConfig;
use serde::{Deserialize, Serialize};
use std::path::{Path, PathBuf};

/// Configuration of `fjord standalone`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct StandaloneConfig {
    pub storage: NodeConfig,
    pub gateway: GatewayConfig,
}

/// Values given as flags; `None` leaves the lower layers' value.
#[derive(Debug, Clone, Default)]
pub struct Overrides {
    pub data_dir: Option<PathBuf>,
    pub listen: Option<String>,
}

impl StandaloneConfig {
    /// Loads the layers; `file` must exist when given. Errors name the bad key.
    pub fn load(file: Option<&Path>, overrides: &Overrides) -> Result<Self, String> {
        let mut fig = Figment::from(Serialized::defaults(Self::default()));
        if let Some(path) = file {
            if !path.exists() {
                return Err(format!("config file {} does not exist", path.display()));
            }
            fig = fig.merge(Toml::file(path));
        }
        // Only nested keys (`FJORD_<SECTION>__<KEY>`): other FJORD_* variables are not config.
        fig = fig.merge(Env::prefixed("FJORD_").filter(|k| k.as_str().contains("__")).split("__"));
        if let Some(d) = &overrides.data_dir {
            fig = fig.merge(Serialized::default("storage.data_dir", d));
        }
        if let Some(l) = &overrides.listen {
            fig = fig.merge(Serialized::default("gateway.listen", l));
        }
        let config: Self = fig.extract().map_err(|e| e.to_string())?;
        config.storage.validate()?;
        config.gateway.validate()?;
        Ok(config)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

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
            let c = StandaloneConfig::load(Some(Path::new("f.toml")), &Overrides::default()).expect("load");
            assert_eq!(c.gateway.listen, "127.0.0.1:9000");
            assert_eq!(c.gateway.max_request_bytes, 8192, "env beats file");
            assert_eq!(c.storage.wal_sync, fjord_storage_node::WalSync::Always);
            let flags = Overrides { listen: Some("127.0.0.1:9001".into()), data_dir: Some("d".into()) };
            let c = StandaloneConfig::load(Some(Path::new("f.toml")), &flags).expect("load");
            assert_eq!(c.gateway.listen, "127.0.0.1:9001", "flags beat env and file");
            assert_eq!(c.storage.data_dir, PathBuf::from("d"));

            jail.create_file("bad.toml", "[gateway]\nlisten_addr = \"x\"\n")?;
            let err =
                StandaloneConfig::load(Some(Path::new("bad.toml")), &Overrides::default()).expect_err("unknown key");
            assert!(err.contains("listen_addr"), "{err}");
            jail.set_env("FJORD_GATEWAY__LISTEN", "nonsense");
            let err = StandaloneConfig::load(None, &Overrides::default()).expect_err("bad listen");
            assert!(err.contains("gateway.listen"), "{err}");
            Ok(())
        });
    }
}
