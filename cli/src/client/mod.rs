//! `fjord` as a client of a running Fjord, for people who like kcat and rpk: `topic`,
//! `produce`, `consume`, `group`, `cluster`. Built on `fjord-client`.
//!
//! Output: human tables by default, `--json` for scripts. Errors: one line on stderr,
//! `fjord: <code>: <message>`. Exit codes ([`Exit`]) say what kind of failure it was.
//!
//! # Layout
//! - [`topic`], [`produce`], [`consume`], [`group`], [`cluster`], [`security`] (`token`,
//!   `acl`) — the subcommands.
//! - [`output`] — tables and JSON output.
//! - [`time`] — `--from`/`--to` points in time (`@ms`, RFC 3339, `-10m`).

pub mod cluster;
pub mod consume;
pub mod group;
pub mod output;
pub mod pipeline;
pub mod processor;
pub mod produce;
pub mod security;
pub mod time;
pub mod topic;

use std::process::ExitCode;

/// Where Fjord is and how to print.
#[derive(Debug, Clone, clap::Args)]
pub struct Conn {
    /// The gateway (or load balancer) to talk to.
    #[arg(long, env = "FJORD_URL", default_value = "http://127.0.0.1:8080", global = true)]
    pub url: String,
    /// Machine-readable output: JSON (one document, or one line per record).
    #[arg(long, global = true)]
    pub json: bool,
    /// Bearer token for a gateway with authentication on.
    #[arg(long, env = "FJORD_TOKEN", hide_env_values = true, global = true)]
    pub token: Option<String>,
    /// A file holding the bearer token (such as a bootstrap token file).
    #[arg(long, env = "FJORD_TOKEN_FILE", global = true, conflicts_with = "token")]
    pub token_file: Option<std::path::PathBuf>,
    /// PEM CA certificate(s) to trust for an https:// gateway (e.g. `fjord certs`'s ca.pem).
    #[arg(long, env = "FJORD_CA_FILE", global = true)]
    pub ca_file: Option<std::path::PathBuf>,
}

impl Conn {
    pub fn client(&self) -> Result<fjord_client::Client, Failure> {
        let token = match (&self.token, &self.token_file) {
            (Some(t), _) => Some(t.clone()),
            (None, Some(path)) => Some(
                std::fs::read_to_string(path)
                    .map_err(|e| Failure::usage(format!("reading the token file {}: {e}", path.display())))?,
            ),
            (None, None) => None,
        };
        let ca = match &self.ca_file {
            Some(path) => Some(
                std::fs::read(path)
                    .map_err(|e| Failure::usage(format!("reading the CA file {}: {e}", path.display())))?,
            ),
            None => None,
        };
        fjord_client::Client::connect(&self.url, token.as_deref(), ca.as_deref()).map_err(Failure::from)
    }
}

/// The exit codes scripts can rely on.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Exit {
    /// Done.
    Ok = 0,
    /// Anything not covered below (a server error, an unexpected answer).
    Failed = 1,
    /// Bad usage or input the server refused as invalid (4xx `invalid_*`, 413, 415, 416).
    Usage = 2,
    /// No such topic, partition, group or member.
    NotFound = 3,
    /// A conflict: the topic exists, the group is not empty, a stale generation.
    Conflict = 4,
    /// Unavailable for now (no answer, no leader, not enough replicas, a timeout): retry later.
    Unavailable = 5,
    /// Some records of a produce were written and some were not.
    Partial = 6,
    /// No valid token (401), or the token may not do this (403).
    Denied = 7,
}

/// A failed command: its exit code and the one line to print.
#[derive(Debug)]
pub struct Failure {
    pub exit: Exit,
    pub message: String,
}

impl Failure {
    pub fn usage(message: impl Into<String>) -> Self {
        Self { exit: Exit::Usage, message: message.into() }
    }

    pub fn new(exit: Exit, message: impl Into<String>) -> Self {
        Self { exit, message: message.into() }
    }
}

impl From<fjord_client::Error> for Failure {
    fn from(e: fjord_client::Error) -> Self {
        match &e {
            fjord_client::Error::Api { status, code, message, retriable, .. } => {
                let exit = match (*status, code.as_str()) {
                    (_, _) if *retriable => Exit::Unavailable,
                    (401 | 403, _) => Exit::Denied,
                    (404, _) => Exit::NotFound,
                    (409, _) => Exit::Conflict,
                    (400 | 413 | 415 | 416, _) => Exit::Usage,
                    (500..=599, _) => Exit::Unavailable,
                    _ => Exit::Failed,
                };
                Self { exit, message: format!("{code}: {message}") }
            }
            fjord_client::Error::Transport(m) => Self { exit: Exit::Unavailable, message: format!("transport: {m}") },
            fjord_client::Error::Decode(m) => Self { exit: Exit::Failed, message: format!("unexpected answer: {m}") },
        }
    }
}

impl From<std::io::Error> for Failure {
    fn from(e: std::io::Error) -> Self {
        Self { exit: Exit::Failed, message: format!("io: {e}") }
    }
}

pub type Outcome = Result<Exit, Failure>;

/// Runs a client command on a fresh runtime: prints a failure as one line and turns
/// the outcome into the process's exit code.
pub fn run(f: impl std::future::Future<Output = Outcome>) -> ExitCode {
    let runtime = match tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build() {
        Ok(r) => r,
        Err(e) => {
            eprintln!("fjord: cannot start the async runtime: {e}");
            return ExitCode::from(Exit::Failed as u8);
        }
    };
    match runtime.block_on(f) {
        Ok(exit) => ExitCode::from(exit as u8),
        Err(f) => {
            eprintln!("fjord: {}", f.message);
            ExitCode::from(f.exit as u8)
        }
    }
}
