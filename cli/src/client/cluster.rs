//! `fjord cluster`: the cluster id, the controller and the live storage nodes;
//! `fjord cluster elect-leaders`: preferred-leader elections (Kafka's
//! `kafka-leader-election --election-type preferred`).

use super::output::{opt, print_json, Table};
use super::{Conn, Exit, Failure, Outcome};
use fjord_client::PartitionRef;

#[derive(Debug, clap::Args)]
pub struct ClusterArgs {
    #[command(subcommand)]
    pub command: Option<ClusterCommand>,
    #[command(flatten)]
    pub conn: Conn,
}

#[derive(Debug, clap::Subcommand)]
pub enum ClusterCommand {
    /// Hand leadership back to each partition's preferred replica (the first assigned)
    /// where it is live and in sync. Exits 5 if any partition could not be elected
    /// (its preferred replica is unavailable) or was not done within the timeout.
    ElectLeaders {
        /// Only this topic (default: every partition of the cluster).
        #[arg(short, long)]
        topic: Option<String>,
        /// Only these partitions of --topic (repeatable; default: all of them).
        #[arg(short, long, requires = "topic")]
        partition: Vec<u32>,
        /// How long to wait for the controller (default: the gateway's, 10 s).
        #[arg(long)]
        timeout_ms: Option<u64>,
    },
}

pub async fn run(args: ClusterArgs) -> Outcome {
    match args.command {
        None => describe(args.conn).await,
        Some(ClusterCommand::ElectLeaders { topic, partition, timeout_ms }) => {
            elect(args.conn, topic, partition, timeout_ms).await
        }
    }
}

async fn describe(conn: Conn) -> Outcome {
    let c = conn.client()?.cluster().await?;
    if conn.json {
        print_json(&c)?;
        return Ok(Exit::Ok);
    }
    println!("cluster {}  controller {}", c.cluster_id, opt(c.controller));
    let mut t = Table::new(&["NODE", "ENDPOINT", "RACK"]);
    for n in c.nodes {
        t.row(vec![n.id.to_string(), n.endpoint, opt(n.rack)]);
    }
    t.print()?;
    Ok(Exit::Ok)
}

async fn elect(conn: Conn, topic: Option<String>, partitions: Vec<u32>, timeout_ms: Option<u64>) -> Outcome {
    let api = conn.client()?;
    let selected: Option<Vec<PartitionRef>> = match topic {
        None => None,
        Some(topic) => {
            let partitions = if partitions.is_empty() {
                let t = api.describe_topic(&topic).await?;
                t.partitions.iter().map(|p| p.partition).collect()
            } else {
                partitions
            };
            if partitions.is_empty() {
                return Err(Failure::usage(format!("topic {topic} has no partitions")));
            }
            Some(partitions.into_iter().map(|partition| PartitionRef { topic: topic.clone(), partition }).collect())
        }
    };
    let r = api.elect_preferred_leaders(selected.as_deref(), timeout_ms).await?;
    let settled = r.results.iter().all(|x| x.outcome == "elected" || x.outcome == "already_preferred");
    if conn.json {
        print_json(&r)?;
    } else {
        let mut t = Table::new(&["TOPIC", "PARTITION", "OUTCOME", "PREFERRED", "LEADER"]);
        for x in r.results {
            t.row(vec![x.topic, x.partition.to_string(), x.outcome, opt(x.preferred), opt(x.leader)]);
        }
        t.print()?;
    }
    Ok(if settled { Exit::Ok } else { Exit::Unavailable })
}
