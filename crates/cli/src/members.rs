//! `tenure members list|add|remove|replace`: see and change a running
//! cluster's members, one change at a time (docs/operations.md).

use crate::client_cmds::Conn;
use anyhow::{bail, Context, Result};
use std::collections::BTreeMap;
use tenure_client::Members;
use tenure_server::parse_peers;

#[derive(clap::Args, Debug)]
pub struct MembersArgs {
    #[command(subcommand)]
    what: MembersCommand,
    #[command(flatten)]
    conn: Conn,
}

#[derive(clap::Subcommand, Debug)]
enum MembersCommand {
    /// The configuration: members, their peer addresses, the epoch, and
    /// any change under way.
    List,
    /// Add a member: ID=HOST:PORT, its peer address. Start it with
    /// `tenure server --id ID --join URL` before or after.
    Add { member: String },
    /// Remove a member by id. Stop it once the change is over.
    Remove { id: u16 },
    /// Replace member OLD (dead, or its disk lost) with NEW=HOST:PORT.
    Replace { old: u16, new: String },
    /// Finish a change that was interrupted (by a crash, or a lost
    /// quorum): ask for its members again.
    Resume,
}

impl MembersArgs {
    pub fn json(&self) -> bool {
        self.conn.json
    }
}

pub async fn members(args: MembersArgs) -> Result<()> {
    let client = args.conn.one_shot_client()?;
    let now = client.members().await.context("cannot read the members")?;
    let target = match &args.what {
        MembersCommand::List => {
            print(&now, args.conn.json);
            return Ok(());
        }
        MembersCommand::Resume if !now.changing() => {
            bail!("no change of members is under way (epoch {})", now.epoch)
        }
        MembersCommand::Resume => joining(&now),
        _ if now.changing() => bail!(
            "a change to members {:?} is under way: finish it first with `tenure members resume`",
            now.joining
        ),
        MembersCommand::Add { member } => {
            let mut target = settled(&now);
            for (id, address) in one_member(member)? {
                if target.contains_key(&id) {
                    bail!("node {id} is a member already");
                }
                target.insert(id, address);
            }
            target
        }
        MembersCommand::Remove { id } => {
            let mut target = settled(&now);
            if target.remove(id).is_none() {
                bail!(
                    "node {id} is not a member: the members are {:?}",
                    now.members
                );
            }
            target
        }
        MembersCommand::Replace { old, new } => {
            let mut target = settled(&now);
            if target.remove(old).is_none() {
                bail!(
                    "node {old} is not a member: the members are {:?}",
                    now.members
                );
            }
            for (id, address) in one_member(new)? {
                if target.insert(id, address).is_some() {
                    bail!("node {id} is a member already");
                }
            }
            target
        }
    };
    if !args.conn.json {
        let ids: Vec<_> = target.keys().collect();
        eprintln!(
            "changing the members from {:?} to {ids:?} (epoch {}); waiting for it to finish",
            now.members, now.epoch
        );
    }
    let (after, finished) = client
        .change_members(&target, now.epoch)
        .await
        .context("the change of members was not made")?;
    print(&after, args.conn.json);
    if !finished {
        bail!(
            "the change is under way but not finished (step {}); run `tenure members resume` \
             to go on once a majority of the old members is reachable",
            after.change.as_deref().unwrap_or("unknown")
        );
    }
    Ok(())
}

fn one_member(text: &str) -> Result<BTreeMap<u16, String>> {
    let parsed = parse_peers(text).context("a member is ID=HOST:PORT")?;
    if parsed.len() != 1 {
        bail!("one member, ID=HOST:PORT, not {text:?}");
    }
    Ok(parsed.into_iter().map(|(id, a)| (id.0, a)).collect())
}

/// The members with their addresses, no change under way.
fn settled(now: &Members) -> BTreeMap<u16, String> {
    with_addresses(now, &now.members)
}

fn joining(now: &Members) -> BTreeMap<u16, String> {
    with_addresses(now, &now.joining)
}

fn with_addresses(now: &Members, ids: &[u16]) -> BTreeMap<u16, String> {
    ids.iter()
        .map(|id| (*id, now.addresses.get(id).cloned().unwrap_or_default()))
        .collect()
}

fn print(now: &Members, json: bool) {
    if json {
        println!("{}", serde_json::to_string(now).unwrap_or_default());
        return;
    }
    println!(
        "cluster {} epoch {} (as node {} has it)",
        now.cluster_id, now.epoch, now.node
    );
    let mut everyone: Vec<u16> = now.members.iter().chain(&now.joining).copied().collect();
    everyone.sort_unstable();
    everyone.dedup();
    for id in everyone {
        let role = match (now.members.contains(&id), now.joining.contains(&id)) {
            (true, false) if now.changing() => "leaving",
            (false, true) => "joining",
            _ => "member",
        };
        let address = now.addresses.get(&id).map_or("?", String::as_str);
        println!("  {id}  {address}  {role}");
    }
    if let Some(step) = &now.change {
        println!("  change under way, coordinated here: {step}");
    }
}
