//! `fjord pipeline create|list|describe|delete`: stream-processing pipelines stored in
//! the cluster, run by processors (`fjord processor`, and `fjord standalone`'s own).

use std::path::PathBuf;

use super::output::{opt, print_json, Table};
use super::{Conn, Exit, Failure, Outcome};

#[derive(Debug, clap::Args)]
pub struct PipelineArgs {
    #[command(subcommand)]
    pub command: PipelineCommand,
    #[command(flatten)]
    pub conn: Conn,
}

#[derive(Debug, clap::Subcommand)]
pub enum PipelineCommand {
    /// Store a pipeline definition (a JSON file, or `-` for standard input); it is
    /// checked whole first.
    Create { file: PathBuf },
    /// The stored pipelines.
    List,
    /// A pipeline's definition, instances, and lag and tallies per input partition.
    Describe { name: String },
    /// Stop a pipeline and delete its group and internal topics.
    Delete { name: String },
}

pub async fn run(args: PipelineArgs) -> Outcome {
    let api = args.conn.client()?;
    let json = args.conn.json;
    match args.command {
        PipelineCommand::Create { file } => {
            let text = if file.as_os_str() == "-" {
                std::io::read_to_string(std::io::stdin())?
            } else {
                std::fs::read_to_string(&file)
                    .map_err(|e| Failure::usage(format!("reading {}: {e}", file.display())))?
            };
            let def: serde_json::Value = serde_json::from_str(&text)
                .map_err(|e| Failure::usage(format!("{}: not JSON: {e}", file.display())))?;
            let created = api.create_pipeline(&def).await?;
            if json {
                print_json(&created)?;
            } else {
                println!("created pipeline {}", created.name);
            }
        }
        PipelineCommand::List => {
            let list = api.list_pipelines().await?;
            if json {
                print_json(&list)?;
            } else {
                let mut t = Table::new(&["PIPELINE", "SOURCE", "SINK", "STEPS", "PRINCIPAL"]);
                for p in list {
                    let d = &p.definition;
                    let source: Vec<&str> = d["source"]
                        .as_array()
                        .map(|a| a.iter().filter_map(|v| v.as_str()).collect())
                        .unwrap_or_default();
                    t.row(vec![
                        p.name.clone(),
                        source.join(","),
                        d["sink"].as_str().unwrap_or_default().to_owned(),
                        d["steps"].as_array().map_or(0, Vec::len).to_string(),
                        p.principal,
                    ]);
                }
                t.print()?;
            }
        }
        PipelineCommand::Describe { name } => {
            let d = api.describe_pipeline(&name).await?;
            if json {
                print_json(&d)?;
                return Ok(Exit::Ok);
            }
            println!("pipeline {}  state {}", name, d["state"].as_str().unwrap_or("?"));
            println!("definition {}", d["definition"]);
            let mut t = Table::new(&["INSTANCE", "MEMBER", "PARTITIONS"]);
            for m in d["instances"].as_array().into_iter().flatten() {
                let parts: Vec<String> = m["assignment"]
                    .as_array()
                    .into_iter()
                    .flatten()
                    .map(|tp| format!("{}-{}", tp["topic"].as_str().unwrap_or("?"), tp["partition"]))
                    .collect();
                t.row(vec![
                    m["client_id"].as_str().unwrap_or("-").to_owned(),
                    m["member_id"].as_str().unwrap_or("-").to_owned(),
                    parts.join(","),
                ]);
            }
            t.print()?;
            let mut t = Table::new(&["TOPIC", "PARTITION", "COMMITTED", "HIGH-WATERMARK", "LAG", "LATE", "SKIPPED"]);
            for i in d["inputs"].as_array().into_iter().flatten() {
                t.row(vec![
                    i["topic"].as_str().unwrap_or("?").to_owned(),
                    i["partition"].to_string(),
                    opt(i["offset"].as_u64()),
                    opt(i["high_watermark"].as_u64()),
                    opt(i["lag"].as_u64()),
                    opt(i["late_records"].as_u64()),
                    opt(i["skipped_records"].as_u64()),
                ]);
            }
            t.print()?;
        }
        PipelineCommand::Delete { name } => {
            api.delete_pipeline(&name).await?;
            if !json {
                println!("deleted pipeline {name}");
            }
        }
    }
    Ok(Exit::Ok)
}
