//! `tenure elect NAME --id ID`: campaign, print every change of leadership,
//! campaign again after losing it, resign on Ctrl-C.

use crate::client_cmds::{parse_duration, print_json, print_line, Conn};
use anyhow::Result;
use futures_util::StreamExt;
use serde_json::json;
use std::time::Duration;
use tenure_client::LeaderElection;

#[derive(clap::Args, Debug)]
pub struct ElectArgs {
    /// The election: the name of the lease the leader holds.
    pub name: String,
    /// This candidate's id, unique among the candidates; default
    /// HOST:PID:RANDOM.
    #[arg(long)]
    pub id: Option<String>,
    /// How long leadership outlives a leader that dies without resigning.
    #[arg(long, default_value = "10s", value_parser = parse_duration)]
    pub ttl: Duration,
    #[command(flatten)]
    pub conn: Conn,
}

pub async fn elect(args: ElectArgs) -> Result<()> {
    let client = args.conn.client()?;
    let id = args
        .id
        .clone()
        .unwrap_or_else(tenure_client::default_holder_id);
    let election = LeaderElection::new(&client, &args.name).ttl(args.ttl);

    // Every change of leadership, this candidate's included, as the
    // cluster reports it.
    let mut changes = election.observe()?;
    let json_out = args.conn.json;
    let name = args.name.clone();
    let printer = tokio::spawn(async move {
        while let Some(leader) = changes.next().await {
            let printed = match (&leader, json_out) {
                (Some(l), true) => {
                    print_json(&json!({ "name": name, "leader": l.id, "token": l.token }))
                }
                (None, true) => print_json(&json!({ "name": name, "leader": null })),
                (Some(l), false) => {
                    print_line(&format!("{name}: {} leads (token {})", l.id, l.token))
                }
                (None, false) => print_line(&format!("{name}: no leader")),
            };
            if printed.is_err() {
                return; // stdout closed: nobody is reading.
            }
        }
    });

    let mut stop = std::pin::pin!(crate::signal::stop_requested());
    let result = loop {
        let won = tokio::select! {
            won = election.campaign(&id) => won,
            () = &mut stop => break Ok(()),
        };
        let me = match won {
            Ok(me) => me,
            Err(e) => break Err(e.into()),
        };
        eprintln!(
            "tenure elect: {id} leads {} with token {}",
            args.name, me.token
        );
        tokio::select! {
            reason = election.lost() => {
                eprintln!("tenure elect: {id} lost leadership: {reason}; campaigning again");
            }
            () = &mut stop => {
                break election.resign().await.map_err(anyhow::Error::from).map(|()| {
                    eprintln!("tenure elect: {id} resigned");
                });
            }
        }
    };
    printer.abort();
    result
}
