//! `fjord cluster`: the cluster id, the controller and the live storage nodes.

use super::output::{opt, print_json, Table};
use super::{Conn, Exit, Outcome};

#[derive(Debug, clap::Args)]
pub struct ClusterArgs {
    #[command(flatten)]
    pub conn: Conn,
}

pub async fn run(args: ClusterArgs) -> Outcome {
    let c = args.conn.client()?.cluster().await?;
    if args.conn.json {
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
