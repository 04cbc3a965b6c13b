//! The `fjord` command.

use clap::{Parser, Subcommand};
use fjord::config::{self as cfg, GatewayProcessConfig, StandaloneConfig, StorageNodeConfig};
use std::path::PathBuf;
use std::process::ExitCode;

/// jemalloc, also for RocksDB's C++ (unprefixed `malloc`), with background purging.
/// Under glibc's malloc a storage node's RSS grew from 200 to 470-590 MiB over a
/// 10-minute produce run while its live data stayed ~180 MiB (`malloc_trim(0)` gave the
/// rest back): arena fragmentation from the 1 MB request buffers. See bench/README.md.
#[global_allocator]
static ALLOCATOR: tikv_jemallocator::Jemalloc = tikv_jemallocator::Jemalloc;

#[derive(Parser)]
#[command(
    name = "fjord",
    version,
    about = "Fjord: a Kafka-style commit log with an HTTP API",
    after_help = "Client commands (topic, produce, consume, group, cluster) talk to --url / FJORD_URL and exit with:\n  \
        0 ok, 1 failed, 2 usage or invalid input, 3 not found, 4 conflict, 5 unavailable (retry later),\n  \
        6 partial (some records not written), 7 denied (no valid token, or not allowed).\n\
        With authentication on, pass --token / FJORD_TOKEN or --token-file / FJORD_TOKEN_FILE."
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Run storage node, gateway and an embedded coordinator in one process.
    Standalone {
        /// TOML config file (sections [storage] and [gateway]).
        #[arg(long)]
        config: Option<PathBuf>,
        /// Data directory (default ./data).
        #[arg(long)]
        data_dir: Option<PathBuf>,
        /// HTTP listen address (default 127.0.0.1:8080).
        #[arg(long)]
        listen: Option<String>,
        /// Require bearer tokens (gateway.auth.enabled); the bootstrap token is written
        /// to <data-dir>/bootstrap-token at first start.
        #[arg(long)]
        auth: bool,
        /// Serve a non-loopback address without authentication (gateway.insecure).
        #[arg(long)]
        insecure: bool,
    },
    /// Run a storage node of a cluster (ZooKeeper-coordinated).
    StorageNode {
        /// TOML config file (sections [storage], [internal], [zookeeper]).
        #[arg(long)]
        config: Option<PathBuf>,
        /// This node's id (unique in the cluster).
        #[arg(long)]
        node_id: Option<u32>,
        /// Data directory.
        #[arg(long)]
        data_dir: Option<PathBuf>,
        /// Internal API listen address (gateways and followers connect here).
        #[arg(long)]
        listen: Option<String>,
        /// ZooKeeper connect string.
        #[arg(long)]
        zookeeper: Option<String>,
        /// Rack, for rack-aware replica placement.
        #[arg(long)]
        rack: Option<String>,
        /// File holding the cluster secret every internal call carries (cluster.secret_file).
        #[arg(long)]
        cluster_secret_file: Option<PathBuf>,
        /// Serve the internal API on a non-loopback address without a cluster secret
        /// (cluster.insecure).
        #[arg(long)]
        insecure: bool,
    },
    /// Run a stateless gateway of a cluster (the public HTTP API).
    Gateway {
        /// TOML config file (sections [gateway], [zookeeper]).
        #[arg(long)]
        config: Option<PathBuf>,
        /// HTTP listen address.
        #[arg(long)]
        listen: Option<String>,
        /// ZooKeeper connect string.
        #[arg(long)]
        zookeeper: Option<String>,
        /// File holding the cluster secret (cluster.secret_file).
        #[arg(long)]
        cluster_secret_file: Option<PathBuf>,
        /// Require bearer tokens (gateway.auth.enabled).
        #[arg(long)]
        auth: bool,
        /// File of the bootstrap token: read, or written at first start
        /// (gateway.auth.bootstrap_token_file).
        #[arg(long)]
        bootstrap_token_file: Option<PathBuf>,
        /// Serve a non-loopback address without authentication (gateway.insecure).
        #[arg(long)]
        insecure: bool,
    },
    /// Print a new random secret (64 hex characters) for cluster.secret_file.
    NewSecret,
    /// Write a development CA and server/client certificates signed by it (for gateway.tls).
    Certs(fjord::certs::CertsArgs),
    /// Topics: list, create, describe, alter, delete (a client of a running Fjord).
    Topic(fjord::client::topic::TopicArgs),
    /// Produce records from stdin or files, one per line.
    Produce(fjord::client::produce::ProduceArgs),
    /// Consume records as JSON lines or through a kcat-style template.
    Consume(fjord::client::consume::ConsumeArgs),
    /// Consumer groups: list, describe, lag, seek, delete.
    Group(fjord::client::group::GroupArgs),
    /// The cluster: id, controller, live storage nodes.
    Cluster(fjord::client::cluster::ClusterArgs),
    /// Run a stream processor: the pipelines stored in the cluster, or one definition
    /// file (--pipeline); instances of a pipeline share its work.
    Processor(fjord::client::processor::ProcessorArgs),
    /// Create, list, describe and delete stream-processing pipelines.
    Pipeline(fjord::client::pipeline::PipelineArgs),
    /// Bearer tokens: whoami, create, list, revoke.
    Token(fjord::client::security::TokenArgs),
    /// ACL bindings (Kafka's model): list, add, remove.
    Acl(fjord::client::security::AclArgs),
    /// Print the OpenAPI document (YAML) of the HTTP API.
    Openapi,
    /// Load-test a running Fjord over its HTTP API (with --baselines: against the
    /// storage engine alone and a no-op HTTP server too).
    Bench(fjord::bench::Args),
}

/// A boolean flag as a config layer: only when given (absent leaves the key alone).
fn on(flag: bool) -> Option<serde_json::Value> {
    flag.then_some(serde_json::Value::Bool(true))
}

fn text(s: Option<String>) -> Option<serde_json::Value> {
    s.map(serde_json::Value::String)
}

fn path_str(p: Option<PathBuf>) -> Option<serde_json::Value> {
    text(p.map(|p| p.to_string_lossy().into_owned()))
}

/// Loads and validates a config, or exits with status 2 naming the bad key.
fn load_or_exit<T: serde::Serialize + serde::de::DeserializeOwned + Default + cfg::Sections>(
    file: Option<&std::path::Path>,
    flags: &[(&str, Option<serde_json::Value>)],
    validate: impl Fn(&T) -> Result<(), String>,
) -> Result<T, ExitCode> {
    match cfg::load::<T>(file, flags).and_then(|c| validate(&c).map(|()| c)) {
        Ok(c) => Ok(c),
        Err(e) => {
            eprintln!("fjord: bad configuration: {e}");
            Err(ExitCode::from(2))
        }
    }
}

fn run_async(f: impl std::future::Future<Output = anyhow::Result<()>>) -> ExitCode {
    let runtime = match tokio::runtime::Runtime::new() {
        Ok(r) => r,
        Err(e) => {
            eprintln!("fjord: cannot start the async runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    match runtime.block_on(f) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            tracing::error!("{e:#}");
            eprintln!("fjord: {e:#}");
            ExitCode::FAILURE
        }
    }
}

fn init_tracing() {
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    // Colours only for a terminal: logs collected by files or containers stay plain text.
    let ansi = std::io::IsTerminal::is_terminal(&std::io::stderr());
    tracing_subscriber::fmt().with_env_filter(filter).with_ansi(ansi).with_writer(std::io::stderr).init();
}

async fn shutdown_signal() {
    let ctrl_c = async {
        if let Err(e) = tokio::signal::ctrl_c().await {
            tracing::error!(error = %e, "cannot listen for Ctrl-C");
            std::future::pending::<()>().await;
        }
    };
    #[cfg(unix)]
    let term = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut s) => {
                s.recv().await;
            }
            Err(e) => {
                tracing::error!(error = %e, "cannot listen for SIGTERM");
                std::future::pending::<()>().await;
            }
        }
    };
    #[cfg(not(unix))]
    let term = std::future::pending::<()>();
    tokio::select! {
        () = ctrl_c => {}
        () = term => {}
    }
    tracing::info!("shutdown signal received");
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    match cli.command {
        Command::Openapi => match fjord_gateway::openapi().to_yaml() {
            Ok(yaml) => {
                print!("{yaml}");
                ExitCode::SUCCESS
            }
            Err(e) => {
                eprintln!("fjord: cannot render the OpenAPI document: {e}");
                ExitCode::FAILURE
            }
        },
        Command::Bench(args) => run_async(fjord::bench::run(args)),
        Command::Topic(args) => fjord::client::run(fjord::client::topic::run(args)),
        Command::Produce(args) => fjord::client::run(fjord::client::produce::run(args)),
        Command::Consume(args) => fjord::client::run(fjord::client::consume::run(args)),
        Command::Group(args) => fjord::client::run(fjord::client::group::run(args)),
        Command::Cluster(args) => fjord::client::run(fjord::client::cluster::run(args)),
        Command::Pipeline(args) => fjord::client::run(fjord::client::pipeline::run(args)),
        Command::Processor(args) => {
            init_tracing();
            fjord::client::run(fjord::client::processor::run(args, shutdown_signal()))
        }
        Command::Token(args) => fjord::client::run(fjord::client::security::token(args)),
        Command::Acl(args) => fjord::client::run(fjord::client::security::acl(args)),
        Command::Certs(args) => match fjord::certs::run(args) {
            Ok(()) => ExitCode::SUCCESS,
            Err(e) => {
                eprintln!("fjord: {e:#}");
                ExitCode::FAILURE
            }
        },
        Command::NewSecret => match fjord_gateway::auth::new_secret() {
            Ok(s) => {
                println!("{s}");
                ExitCode::SUCCESS
            }
            Err(e) => {
                eprintln!("fjord: {}", e.0.message);
                ExitCode::FAILURE
            }
        },
        Command::Standalone { config, data_dir, listen, auth, insecure } => {
            init_tracing();
            let flags = [
                ("storage.data_dir", path_str(data_dir)),
                ("gateway.listen", text(listen)),
                ("gateway.auth.enabled", on(auth)),
                ("gateway.insecure", on(insecure)),
            ];
            match load_or_exit(config.as_deref(), &flags, StandaloneConfig::validate) {
                Ok(c) => run_async(fjord::standalone::run(c, shutdown_signal())),
                Err(code) => code,
            }
        }
        Command::StorageNode { config, node_id, data_dir, listen, zookeeper, rack, cluster_secret_file, insecure } => {
            init_tracing();
            let flags = [
                ("storage.node_id", node_id.map(serde_json::Value::from)),
                ("storage.data_dir", path_str(data_dir)),
                ("storage.rack", text(rack)),
                ("internal.listen", text(listen)),
                ("zookeeper.connect", text(zookeeper)),
                ("cluster.secret_file", path_str(cluster_secret_file)),
                ("cluster.insecure", on(insecure)),
            ];
            match load_or_exit(config.as_deref(), &flags, StorageNodeConfig::validate) {
                Ok(c) => run_async(fjord::cluster::run_storage_node(c, shutdown_signal())),
                Err(code) => code,
            }
        }
        Command::Gateway { config, listen, zookeeper, cluster_secret_file, auth, bootstrap_token_file, insecure } => {
            init_tracing();
            let flags = [
                ("gateway.listen", text(listen)),
                ("zookeeper.connect", text(zookeeper)),
                ("cluster.secret_file", path_str(cluster_secret_file)),
                ("gateway.auth.enabled", on(auth)),
                ("gateway.auth.bootstrap_token_file", path_str(bootstrap_token_file)),
                ("gateway.insecure", on(insecure)),
            ];
            match load_or_exit(config.as_deref(), &flags, GatewayProcessConfig::validate) {
                Ok(c) => run_async(fjord::cluster::run_gateway(c, shutdown_signal())),
                Err(code) => code,
            }
        }
    }
}
