//! `fjord group list|describe|lag|seek|delete`.

use super::output::{opt, print_json, Table};
use super::{time, Conn, Exit, Failure, Outcome};
use fjord_client::{Seek, SeekTo, TopicPartition};

#[derive(Debug, clap::Args)]
pub struct GroupArgs {
    #[command(subcommand)]
    pub command: GroupCommand,
    #[command(flatten)]
    pub conn: Conn,
}

#[derive(Debug, clap::Subcommand)]
pub enum GroupCommand {
    /// Consumer groups with their state and member count.
    List,
    /// State, generation, assignor, members and committed offsets of a group.
    Describe { group: String },
    /// Committed offset, high watermark and lag per partition, and the total lag.
    Lag { group: String },
    /// Move a group's committed offsets (and its members' positions).
    Seek {
        group: String,
        #[arg(short, long)]
        topic: String,
        /// Only these partitions (repeatable; default: all).
        #[arg(short, long)]
        partition: Vec<u32>,
        /// `earliest`, `latest`, an offset, or a time (`@<ms>`, RFC 3339, `-10m`).
        #[arg(long, allow_hyphen_values = true)]
        to: String,
    },
    /// Delete a group without members, with its committed offsets.
    Delete { group: String },
}

fn tps(v: &[TopicPartition]) -> String {
    v.iter().map(|tp| format!("{}-{}", tp.topic, tp.partition)).collect::<Vec<_>>().join(",")
}

fn seek_to(to: &str) -> Result<SeekTo, Failure> {
    Ok(match to {
        "earliest" => SeekTo::Earliest,
        "latest" => SeekTo::Latest,
        s if s.bytes().all(|b| b.is_ascii_digit()) => {
            SeekTo::Offset(s.parse().map_err(|_| Failure::usage(format!("--to: `{s}` is not an offset")))?)
        }
        s => SeekTo::Timestamp(
            time::parse(s, fjord_protocol::now_ms()).map_err(|e| Failure::usage(format!("--to: {e}")))?,
        ),
    })
}

pub async fn run(args: GroupArgs) -> Outcome {
    let api = args.conn.client()?;
    let json = args.conn.json;
    match args.command {
        GroupCommand::List => {
            let groups = api.list_groups().await?;
            if json {
                return print_json(&groups).map(|()| Exit::Ok);
            }
            let mut t = Table::new(&["GROUP", "STATE", "MEMBERS"]);
            for g in groups {
                t.row(vec![g.group, g.state, g.members.to_string()]);
            }
            t.print()?;
        }
        GroupCommand::Describe { group } => {
            let d = api.describe_group(&group).await?;
            if json {
                return print_json(&d).map(|()| Exit::Ok);
            }
            println!(
                "group {}  state {}  generation {}  assignor {}",
                d.group,
                d.state,
                d.generation,
                opt(d.assignor.as_ref())
            );
            let mut members = Table::new(&["MEMBER", "CLIENT", "ASSIGNMENT", "PENDING", "LAST-SEEN-MS"]);
            for m in &d.members {
                members.row(vec![
                    m.member_id.clone(),
                    opt(m.client_id.as_ref()),
                    tps(&m.assignment),
                    tps(&m.pending),
                    m.last_seen_ms_ago.to_string(),
                ]);
            }
            members.print()?;
            let mut offsets = Table::new(&["TOPIC", "PARTITION", "COMMITTED", "METADATA"]);
            for o in &d.offsets {
                offsets.row(vec![
                    o.topic.clone(),
                    o.partition.to_string(),
                    o.offset.to_string(),
                    opt(o.metadata.as_ref()),
                ]);
            }
            offsets.print()?;
        }
        GroupCommand::Lag { group } => {
            let o = api.group_offsets(&group).await?;
            if json {
                return print_json(&o).map(|()| Exit::Ok);
            }
            let mut t = Table::new(&["TOPIC", "PARTITION", "COMMITTED", "HIGH-WATERMARK", "LAG", "MEMBER"]);
            let mut total = 0u64;
            for r in &o.offsets {
                total += r.lag.unwrap_or(0);
                t.row(vec![
                    r.topic.clone(),
                    r.partition.to_string(),
                    opt(r.offset),
                    opt(r.high_watermark),
                    opt(r.lag),
                    opt(r.member_id.as_ref()),
                ]);
            }
            t.print()?;
            println!("total lag {total}");
        }
        GroupCommand::Seek { group, topic, partition, to } => {
            let seek = Seek { topic, partitions: (!partition.is_empty()).then_some(partition), to: seek_to(&to)? };
            let r = api.seek(&group, &seek).await?;
            if json {
                return print_json(&r).map(|()| Exit::Ok);
            }
            let mut t = Table::new(&["TOPIC", "PARTITION", "OFFSET"]);
            for o in r.offsets {
                t.row(vec![o.topic, o.partition.to_string(), o.offset.to_string()]);
            }
            t.print()?;
        }
        GroupCommand::Delete { group } => {
            api.delete_group(&group).await?;
            if json {
                print_json(&serde_json::json!({"deleted": group}))?;
            } else {
                eprintln!("deleted group {group}");
            }
        }
    }
    Ok(Exit::Ok)
}
