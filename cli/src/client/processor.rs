//! `fjord processor`: a stream processor. Without `--pipeline` it runs every pipeline
//! stored in the cluster (`POST /v1/pipelines`, `fjord pipeline create`); with it, the
//! one definition in that file. Start any number: the instances of a pipeline share its
//! tasks through the pipeline's consumer group, and take over each other's when one
//! stops or dies.

use std::future::Future;
use std::path::PathBuf;

use fjord_streams::pipeline::PipelineDef;
use fjord_streams::{Processor, ProcessorConfig};

use super::{Conn, Exit, Failure, Outcome};

#[derive(Debug, clap::Args)]
pub struct ProcessorArgs {
    #[command(flatten)]
    pub conn: Conn,
    /// Run only this pipeline definition (a JSON file; see the README's stream
    /// processing section) instead of the ones stored in the cluster.
    #[arg(long)]
    pub pipeline: Option<PathBuf>,
    /// This instance's name in the pipeline's group.
    #[arg(long, default_value = "processor")]
    pub instance: String,
    /// An instance silent this long loses its tasks to the others.
    #[arg(long, default_value_t = 10_000)]
    pub session_timeout_ms: u64,
    /// Replication factor of the internal topics (default: the cluster's).
    #[arg(long)]
    pub replication_factor: Option<u32>,
    /// Where task state is kept, in a local RocksDB per pipeline (wiped at start: it is
    /// restored from the changelogs). Default: a temporary directory removed at exit.
    #[arg(long)]
    pub state_dir: Option<PathBuf>,
    /// Keep task state in memory instead.
    #[arg(long, conflicts_with = "state_dir")]
    pub in_memory_state: bool,
    /// The longest `timeout_ms` of any one request: at most the gateway's
    /// `gateway.max_timeout_ms` (default 60000), which refuses longer ones.
    #[arg(long, default_value_t = fjord_streams::runtime::DEFAULT_MAX_REQUEST_TIMEOUT_MS,
          value_parser = clap::value_parser!(u64).range(1..))]
    pub max_request_timeout_ms: u64,
}

pub async fn run(args: ProcessorArgs, shutdown: impl Future<Output = ()>) -> Outcome {
    // Held until the processor stops: a temporary state directory goes with it.
    let temp = match (&args.state_dir, args.in_memory_state) {
        (None, false) => Some(tempfile::Builder::new().prefix("fjord-processor-").tempdir()?),
        _ => None,
    };
    let state_dir = args.state_dir.clone().or_else(|| temp.as_ref().map(|t| t.path().to_owned()));
    let Some(path) = &args.pipeline else {
        let cfg = fjord_streams::worker::WorkerConfig {
            instance: args.instance.clone(),
            session_timeout_ms: args.session_timeout_ms,
            replication_factor: args.replication_factor,
            state_dir,
            max_request_timeout_ms: args.max_request_timeout_ms,
            ..Default::default()
        };
        tracing::info!(instance = cfg.instance, "processor running the cluster's pipelines");
        fjord_streams::worker::run(args.conn.client()?, cfg, shutdown).await;
        return Ok(Exit::Ok);
    };
    let text = std::fs::read_to_string(path).map_err(|e| Failure::usage(format!("reading {}: {e}", path.display())))?;
    let def: PipelineDef = serde_json::from_str(&text)
        .map_err(|e| Failure::usage(format!("{}: not a pipeline definition: {e}", path.display())))?;
    let compiled = def.compile().map_err(|problems| {
        let lines: Vec<String> = problems.iter().map(ToString::to_string).collect();
        Failure::usage(format!("{}: {}", path.display(), lines.join("; ")))
    })?;
    let mut cfg = ProcessorConfig::new(def.name.clone());
    cfg.instance = args.instance;
    cfg.session_timeout_ms = args.session_timeout_ms;
    cfg.replication_factor = args.replication_factor;
    cfg.expression_errors = Some(compiled.expression_errors.clone());
    cfg.state_dir = state_dir;
    cfg.max_request_timeout_ms = args.max_request_timeout_ms;
    let processor =
        Processor::new(args.conn.client()?, compiled.topology, cfg).map_err(|e| Failure::usage(e.to_string()))?;
    tracing::info!(pipeline = def.name, "processor starting");
    processor.run(shutdown).await.map_err(|e| Failure::new(Exit::Failed, e.to_string()))?;
    tracing::info!(pipeline = def.name, "processor stopped");
    Ok(Exit::Ok)
}
