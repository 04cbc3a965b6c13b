//! `fjord token` and `fjord acl`: bearer tokens and Kafka-style ACL bindings.
//!
//! Scopes and bindings are written as `TYPE:PATTERN:NAME`, like `topic:prefixed:orders.`
//! or `group:literal:billing` (`topic:*` is short for `topic:literal:*`).

use super::output::{opt, print_json, Table};
use super::{Conn, Exit, Failure, Outcome};
use fjord_client::{AclBinding, NewToken, Scope};

#[derive(Debug, clap::Args)]
pub struct TokenArgs {
    #[command(subcommand)]
    pub command: TokenCommand,
    #[command(flatten)]
    pub conn: Conn,
}

#[derive(Debug, clap::Subcommand)]
pub enum TokenCommand {
    /// Who the token is: principal, scopes, expiry.
    Whoami,
    /// Mint a token (printed once; Fjord keeps only its hash).
    Create {
        /// Whose token (default: the calling token's principal).
        #[arg(long)]
        principal: Option<String>,
        /// A scope, `TYPE:PATTERN:NAME=OP[,OP…]`, e.g. `topic:prefixed:orders.=produce,consume`;
        /// repeatable. Default: the calling token's scopes.
        #[arg(long = "scope")]
        scopes: Vec<String>,
        /// Lifetime, e.g. `3600s`, `90m`, `24h`, `30d` (default: the server's).
        #[arg(long)]
        ttl: Option<String>,
        #[arg(long)]
        description: Option<String>,
    },
    /// Tokens of the calling principal (all of them with admin on the cluster).
    List,
    /// Revoke a token by id (and every token it minted).
    Revoke { id: String },
}

#[derive(Debug, clap::Args)]
pub struct AclArgs {
    #[command(subcommand)]
    pub command: AclCommand,
    #[command(flatten)]
    pub conn: Conn,
}

/// One binding on the command line.
#[derive(Debug, Clone, clap::Args)]
pub struct BindingArgs {
    /// The principal, or `*` for every principal.
    #[arg(long)]
    pub principal: String,
    /// `TYPE:PATTERN:NAME`, e.g. `topic:prefixed:orders.`, `group:literal:billing`, `cluster`.
    #[arg(long)]
    pub resource: String,
    /// `all`, `produce`, `consume`, `describe`, `create`, `alter`, `delete`, `admin`.
    #[arg(long)]
    pub operation: String,
    /// A deny binding (default: allow). Deny wins.
    #[arg(long)]
    pub deny: bool,
}

#[derive(Debug, clap::Subcommand)]
pub enum AclCommand {
    /// List bindings, optionally of one principal.
    List {
        #[arg(long)]
        principal: Option<String>,
    },
    /// Add a binding.
    Add(BindingArgs),
    /// Remove a binding (every field must match).
    Remove(BindingArgs),
}

/// `TYPE:PATTERN:NAME` (or `TYPE:*`, `cluster`) as (type, pattern, name).
fn resource(s: &str) -> Result<(String, String, String), Failure> {
    let parts: Vec<&str> = s.splitn(3, ':').collect();
    match parts.as_slice() {
        ["cluster"] => Ok(("cluster".into(), "literal".into(), "cluster".into())),
        [t, "*"] => Ok(((*t).into(), "literal".into(), "*".into())),
        [t, p @ ("literal" | "prefixed"), n] if !n.is_empty() => Ok(((*t).into(), (*p).into(), (*n).into())),
        _ => Err(Failure::usage(format!(
            "resource `{s}`: use TYPE:literal:NAME, TYPE:prefixed:PREFIX, TYPE:* or cluster \
             (TYPE: topic, group, producer, cluster)"
        ))),
    }
}

fn scope(s: &str) -> Result<Scope, Failure> {
    let (res, ops) =
        s.rsplit_once('=').ok_or_else(|| Failure::usage(format!("scope `{s}`: use TYPE:PATTERN:NAME=OP[,OP…]")))?;
    let (resource_type, pattern_type, name) = resource(res)?;
    let operations: Vec<String> = ops.split(',').filter(|o| !o.is_empty()).map(str::to_owned).collect();
    Ok(Scope { resource_type, pattern_type, name, operations })
}

/// `90s`, `15m`, `24h`, `30d` (or plain milliseconds) in ms.
fn ttl_ms(s: &str) -> Result<u64, Failure> {
    let bad = || Failure::usage(format!("ttl `{s}`: use a number with s, m, h or d (e.g. 24h)"));
    let (n, unit) = s.split_at(s.find(|c: char| !c.is_ascii_digit()).unwrap_or(s.len()));
    let n: u64 = n.parse().map_err(|_| bad())?;
    let ms = match unit {
        "" | "ms" => 1,
        "s" => 1_000,
        "m" => 60_000,
        "h" => 3_600_000,
        "d" => 86_400_000,
        _ => return Err(bad()),
    };
    n.checked_mul(ms).ok_or_else(bad)
}

fn binding(b: &BindingArgs) -> Result<AclBinding, Failure> {
    let (resource_type, pattern_type, name) = resource(&b.resource)?;
    Ok(AclBinding {
        principal: b.principal.clone(),
        resource_type,
        pattern_type,
        name,
        operation: b.operation.clone(),
        permission: if b.deny { "deny" } else { "allow" }.into(),
    })
}

fn scopes_text(scopes: &[Scope]) -> String {
    scopes
        .iter()
        .map(|s| format!("{}:{}:{}={}", s.resource_type, s.pattern_type, s.name, s.operations.join(",")))
        .collect::<Vec<_>>()
        .join(" ")
}

pub async fn token(args: TokenArgs) -> Outcome {
    let api = args.conn.client()?;
    match args.command {
        TokenCommand::Whoami => {
            let w = api.whoami().await?;
            if args.conn.json {
                print_json(&w)?;
            } else {
                println!("principal {}  super user {}  authentication {}", w.principal, w.super_user, w.authentication);
                if let Some(t) = w.token {
                    println!("token {}  expires {}  scopes {}", t.id, opt(t.expires_ms), scopes_text(&t.scopes));
                }
            }
        }
        TokenCommand::Create { principal, scopes, ttl, description } => {
            let scopes = match scopes.is_empty() {
                true => None,
                false => Some(scopes.iter().map(|s| scope(s)).collect::<Result<Vec<_>, _>>()?),
            };
            let ttl_ms = ttl.as_deref().map(ttl_ms).transpose()?;
            let t = api.create_token(&NewToken { principal, scopes, ttl_ms, description }).await?;
            if args.conn.json {
                print_json(&t)?;
            } else {
                // The token alone on stdout, so `fjord token create > file` keeps it;
                // what it is goes to stderr.
                eprintln!(
                    "token {} for {}  expires {}  scopes {}",
                    t.info.id,
                    t.info.principal,
                    opt(t.info.expires_ms),
                    scopes_text(&t.info.scopes)
                );
                println!("{}", t.token);
            }
        }
        TokenCommand::List => {
            let tokens = api.list_tokens().await?;
            if args.conn.json {
                print_json(&tokens)?;
            } else {
                let mut t = Table::new(&["ID", "PRINCIPAL", "EXPIRES", "ISSUED-BY", "SCOPES"]);
                for k in tokens {
                    t.row(vec![k.id, k.principal, opt(k.expires_ms), opt(k.issued_by), scopes_text(&k.scopes)]);
                }
                t.print()?;
            }
        }
        TokenCommand::Revoke { id } => {
            api.revoke_token(&id).await?;
            if !args.conn.json {
                println!("revoked token {id}");
            }
        }
    }
    Ok(Exit::Ok)
}

pub async fn acl(args: AclArgs) -> Outcome {
    let api = args.conn.client()?;
    match args.command {
        AclCommand::List { principal } => {
            let filter: Vec<(&str, &str)> = principal.as_deref().map(|p| ("principal", p)).into_iter().collect();
            let acls = api.list_acls(&filter).await?;
            if args.conn.json {
                print_json(&acls)?;
            } else {
                let mut t = Table::new(&["PRINCIPAL", "RESOURCE", "PATTERN", "NAME", "OPERATION", "PERMISSION"]);
                for a in acls {
                    t.row(vec![a.principal, a.resource_type, a.pattern_type, a.name, a.operation, a.permission]);
                }
                t.print()?;
            }
        }
        AclCommand::Add(b) => {
            let added = api.create_acls(&[binding(&b)?]).await?;
            if args.conn.json {
                print_json(&added)?;
            } else {
                println!("added {} binding(s)", added.len());
            }
        }
        AclCommand::Remove(b) => {
            api.delete_acl(&binding(&b)?).await?;
            if !args.conn.json {
                println!("removed 1 binding");
            }
        }
    }
    Ok(Exit::Ok)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn resources_scopes_and_lifetimes_parse() {
        assert_eq!(
            resource("topic:prefixed:orders.").ok(),
            Some(("topic".into(), "prefixed".into(), "orders.".into()))
        );
        assert_eq!(resource("group:*").ok(), Some(("group".into(), "literal".into(), "*".into())));
        assert_eq!(resource("cluster").ok(), Some(("cluster".into(), "literal".into(), "cluster".into())));
        assert!(resource("topic:fuzzy:x").is_err() && resource("topic").is_err());
        let s = scope("topic:literal:a=produce,consume").expect("scope");
        assert_eq!(s.operations, ["produce", "consume"]);
        assert!(scope("topic:literal:a").is_err());
        assert_eq!(ttl_ms("24h").ok(), Some(86_400_000));
        assert_eq!(ttl_ms("1500").ok(), Some(1500));
        assert!(ttl_ms("1y").is_err() && ttl_ms("h").is_err());
    }
}
