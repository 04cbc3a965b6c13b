//! `fjord processor`: runs a pipeline definition (JSON, jq expressions) as one processor
//! instance. Start any number with the same definition: they share its tasks through
//! the pipeline's consumer group, and take over each other's when one stops or dies.

use std::future::Future;
use std::path::PathBuf;

use fjord_streams::pipeline::PipelineDef;
use fjord_streams::{Processor, ProcessorConfig};

use super::{Conn, Exit, Failure, Outcome};

#[derive(Debug, clap::Args)]
pub struct ProcessorArgs {
    #[command(flatten)]
    pub conn: Conn,
    /// The pipeline definition to run (a JSON file; see the README's stream processing section).
    #[arg(long)]
    pub pipeline: PathBuf,
    /// This instance's name in the pipeline's group.
    #[arg(long, default_value = "processor")]
    pub instance: String,
    /// An instance silent this long loses its tasks to the others.
    #[arg(long, default_value_t = 10_000)]
    pub session_timeout_ms: u64,
    /// Replication factor of the internal topics (default: the cluster's).
    #[arg(long)]
    pub replication_factor: Option<u32>,
}

pub async fn run(args: ProcessorArgs, shutdown: impl Future<Output = ()>) -> Outcome {
    let text = std::fs::read_to_string(&args.pipeline)
        .map_err(|e| Failure::usage(format!("reading {}: {e}", args.pipeline.display())))?;
    let def: PipelineDef = serde_json::from_str(&text)
        .map_err(|e| Failure::usage(format!("{}: not a pipeline definition: {e}", args.pipeline.display())))?;
    let compiled = def.compile().map_err(|problems| {
        let lines: Vec<String> = problems.iter().map(ToString::to_string).collect();
        Failure::usage(format!("{}: {}", args.pipeline.display(), lines.join("; ")))
    })?;
    let mut cfg = ProcessorConfig::new(def.name.clone());
    cfg.instance = args.instance;
    cfg.session_timeout_ms = args.session_timeout_ms;
    cfg.replication_factor = args.replication_factor;
    let processor =
        Processor::new(args.conn.client()?, compiled.topology, cfg).map_err(|e| Failure::usage(e.to_string()))?;
    tracing::info!(pipeline = def.name, "processor starting");
    processor.run(shutdown).await.map_err(|e| Failure::new(Exit::Failed, e.to_string()))?;
    tracing::info!(pipeline = def.name, "processor stopped");
    Ok(Exit::Ok)
}
