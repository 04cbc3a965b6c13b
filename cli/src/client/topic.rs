//! `fjord topic list|create|describe|alter|delete`.

use super::output::{ids, opt, print_json, Table};
use super::{Conn, Exit, Failure, Outcome};
use fjord_client::{NewTopic, TopicChange, TopicDescription};
use serde_json::{Map, Value};

#[derive(Debug, clap::Args)]
pub struct TopicArgs {
    #[command(subcommand)]
    pub command: TopicCommand,
    #[command(flatten)]
    pub conn: Conn,
}

#[derive(Debug, clap::Subcommand)]
pub enum TopicCommand {
    /// List topics.
    List,
    /// Create a topic.
    Create {
        name: String,
        #[arg(short, long, default_value_t = 1)]
        partitions: u32,
        #[arg(short, long)]
        replication_factor: Option<u32>,
        /// A config key, `key=value` (repeatable), e.g. `-c retention.ms=86400000`.
        #[arg(short, long = "config", value_name = "KEY=VALUE")]
        config: Vec<String>,
    },
    /// Partitions (leader, replicas, ISR, offsets) and config of a topic.
    Describe { name: String },
    /// Grow the partition count, change or reset config keys.
    Alter {
        name: String,
        #[arg(short, long)]
        partitions: Option<u32>,
        /// A config key to set, `key=value` (repeatable).
        #[arg(short, long = "config", value_name = "KEY=VALUE")]
        config: Vec<String>,
        /// A config key to reset to its default (repeatable).
        #[arg(long, value_name = "KEY")]
        reset: Vec<String>,
    },
    /// Delete a topic and all its data.
    Delete { name: String },
}

/// `key=value` pairs as a config map; a value that reads as a JSON number or boolean
/// is sent as one, anything else as a string (the server accepts both for numbers).
fn config_map(pairs: &[String]) -> Result<Map<String, Value>, Failure> {
    let mut out = Map::new();
    for pair in pairs {
        let (k, v) = pair.split_once('=').ok_or_else(|| Failure::usage(format!("`{pair}`: expected KEY=VALUE")))?;
        let value = match serde_json::from_str::<Value>(v) {
            Ok(n @ (Value::Number(_) | Value::Bool(_))) => n,
            _ => Value::String(v.to_owned()),
        };
        out.insert(k.trim().to_owned(), value);
    }
    Ok(out)
}

pub async fn run(args: TopicArgs) -> Outcome {
    let api = args.conn.client()?;
    let json = args.conn.json;
    match args.command {
        TopicCommand::List => {
            let topics = api.list_topics().await?;
            if json {
                print_json(&topics)?;
            } else {
                let mut t = Table::new(&["NAME", "PARTITIONS", "REPLICATION"]);
                for topic in topics {
                    t.row(vec![topic.name, topic.partitions.to_string(), topic.replication_factor.to_string()]);
                }
                t.print()?;
            }
        }
        TopicCommand::Create { name, partitions, replication_factor, config } => {
            let spec =
                NewTopic { name, partitions: Some(partitions), replication_factor, config: config_map(&config)? };
            show(&api.create_topic(&spec).await?, json)?;
        }
        TopicCommand::Describe { name } => show(&api.describe_topic(&name).await?, json)?,
        TopicCommand::Alter { name, partitions, config, reset } => {
            let mut changes = config_map(&config)?;
            for key in reset {
                changes.insert(key, Value::Null);
            }
            if partitions.is_none() && changes.is_empty() {
                return Err(Failure::usage("nothing to change: give --partitions, --config or --reset"));
            }
            let change = TopicChange { partitions, config: (!changes.is_empty()).then_some(changes) };
            show(&api.alter_topic(&name, &change).await?, json)?;
        }
        TopicCommand::Delete { name } => {
            api.delete_topic(&name).await?;
            if json {
                print_json(&serde_json::json!({"deleted": name}))?;
            } else {
                eprintln!("deleted topic {name}");
            }
        }
    }
    Ok(Exit::Ok)
}

fn show(t: &TopicDescription, json: bool) -> Result<(), Failure> {
    if json {
        return print_json(t);
    }
    println!(
        "topic {}  id {}  partitions {}  replication {}",
        t.name,
        t.topic_id,
        t.partitions.len(),
        t.replication_factor
    );
    let mut table = Table::new(&["PARTITION", "LEADER", "EPOCH", "REPLICAS", "ISR", "LOG-START", "HIGH-WATERMARK"]);
    for p in &t.partitions {
        table.row(vec![
            p.partition.to_string(),
            opt(p.leader),
            p.leader_epoch.to_string(),
            ids(&p.replicas),
            ids(&p.isr),
            opt(p.log_start_offset),
            opt(p.high_watermark),
        ]);
    }
    table.print()?;
    let mut config = Table::new(&["CONFIG", "VALUE"]);
    for (k, v) in &t.config {
        config.row(vec![k.clone(), v.as_str().map_or_else(|| v.to_string(), str::to_owned)]);
    }
    config.print()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn config_pairs_keep_numbers_and_strings() {
        let m = config_map(&["retention.ms=1000".into(), "cleanup.policy=compact,delete".into(), "x=true".into()])
            .expect("valid");
        assert_eq!(m["retention.ms"], 1000);
        assert_eq!(m["cleanup.policy"], "compact,delete");
        assert_eq!(m["x"], true);
        assert_eq!(config_map(&["novalue".into()]).expect_err("bad").exit, Exit::Usage);
    }
}
