//! The `fjord` command.

use clap::{Parser, Subcommand};
use fjord::config::{Overrides, StandaloneConfig};
use std::path::PathBuf;
use std::process::ExitCode;

#[derive(Parser)]
#[command(name = "fjord", version, about = "Fjord: a Kafka-style commit log with an HTTP API")]
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
    },
    /// Print the OpenAPI document (YAML) of the HTTP API.
    Openapi,
}

fn init_tracing() {
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    tracing_subscriber::fmt().with_env_filter(filter).with_writer(std::io::stderr).init();
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
        Command::Standalone { config, data_dir, listen } => {
            init_tracing();
            let config = match StandaloneConfig::load(config.as_deref(), &Overrides { data_dir, listen }) {
                Ok(c) => c,
                Err(e) => {
                    eprintln!("fjord: bad configuration: {e}");
                    return ExitCode::from(2);
                }
            };
            let runtime = match tokio::runtime::Runtime::new() {
                Ok(r) => r,
                Err(e) => {
                    eprintln!("fjord: cannot start the async runtime: {e}");
                    return ExitCode::FAILURE;
                }
            };
            match runtime.block_on(fjord::standalone::run(config, shutdown_signal())) {
                Ok(()) => ExitCode::SUCCESS,
                Err(e) => {
                    tracing::error!("{e:#}");
                    eprintln!("fjord: {e:#}");
                    ExitCode::FAILURE
                }
            }
        }
    }
}
